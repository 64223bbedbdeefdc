"""Tenants as an operator makes them (the CLI) and as the web sees them (their URLs)."""

import pytest
from sqlalchemy import event
from sqlalchemy import func
from sqlalchemy import select

from authserver.audit.models import AuditRecord
from authserver.extensions import db
from authserver.tenancy.models import Tenant
from authserver.tokens.limits import ASSUMED_URL_LENGTH
from tests.fixtures.accounts import assert_not_framable
from tests.fixtures.commands import refused
from tests.fixtures.commands import run
from tests.fixtures.commands import unchanged

ISSUER = "https://auth.example.test/t/riverside"
TENANT_URLS = [
    "/t/{slug}/.well-known/smart-configuration",
    "/t/{slug}/fhir/.well-known/smart-configuration",
    "/t/{slug}/.well-known/openid-configuration",
    "/t/{slug}/.well-known/jwks.json",
]


def stored_tenants():
    """Every tenant row as it is in the database, to show that a refused command changed none."""
    db.session.expire_all()
    rows = db.session.scalars(select(Tenant).order_by(Tenant.slug))
    return [
        {column.name: getattr(row, column.key) for column in Tenant.__table__.columns}
        for row in rows
    ]


def audit_count():
    return db.session.scalar(select(func.count()).select_from(AuditRecord))


# --- Creating ---------------------------------------------------------------------------------


def test_create_prints_the_tenant_urls(cli):
    created = run(cli, "tenant", "create", "riverside", "--name", "Riverside Family Clinic")

    assert created["slug"] == "riverside"
    assert created["display_name"] == "Riverside Family Clinic"
    assert created["status"] == "active"
    assert created["issuer"] == ISSUER
    assert created["fhir_base_url"] == f"{ISSUER}/fhir"
    assert created["openid_configuration"] == f"{ISSUER}/.well-known/openid-configuration"
    assert created["smart_configuration"] == f"{ISSUER}/.well-known/smart-configuration"
    assert created["jwks_uri"] == f"{ISSUER}/.well-known/jwks.json"


def test_create_honours_a_fhir_base_url(cli, client):
    created = run(
        cli,
        "tenant",
        "create",
        "riverside",
        "--name",
        "Riverside Family Clinic",
        "--fhir-base-url",
        "https://fhir.riverside.example/r4/",
    )

    assert created["fhir_base_url"] == "https://fhir.riverside.example/r4"
    assert created["issuer"] == ISSUER
    assert run(cli, "tenant", "list")[0]["fhir_base_url"] == "https://fhir.riverside.example/r4"


def test_a_created_tenant_serves_its_discovery_at_the_printed_urls(cli, client):
    created = run(cli, "tenant", "create", "riverside", "--name", "Riverside Family Clinic")

    for member in ("smart_configuration", "openid_configuration", "jwks_uri"):
        path = created[member].removeprefix("https://auth.example.test")
        assert client.get(path).status_code == 200, member


@pytest.mark.parametrize("slug", ["abc", "a" * 63, "clinic-42", "9-lives", "a-b"])
def test_slugs_of_3_to_63_lowercase_letters_digits_and_inner_hyphens_are_accepted(cli, slug):
    assert run(cli, "tenant", "create", "--name", "A clinic", "--", slug)["slug"] == slug


@pytest.mark.parametrize(
    "slug",
    ["Clinic", "ab", "a" * 64, "-clinic", "clinic-", "clinic_a", "clínica", "", "clinic a"],
    ids=[
        "uppercase",
        "too-short",
        "64-chars",
        "leading-hyphen",
        "trailing-hyphen",
        "underscore",
        "unicode",
        "empty",
        "space",
    ],
)
def test_a_bad_slug_is_refused_and_nothing_is_stored(cli, tenant, slug):
    before = stored_tenants()

    message = refused(cli, "tenant", "create", "--name", "A clinic", "--", slug)

    assert "invalid tenant slug" in message
    assert "3 to 63 lowercase letters" in message
    assert stored_tenants() == before


@pytest.mark.parametrize("slug", ["admin", "static", "api"])
def test_a_reserved_slug_is_refused_and_nothing_is_stored(cli, tenant, slug):
    before = stored_tenants()

    message = refused(cli, "tenant", "create", slug, "--name", "A clinic")

    assert f"tenant slug '{slug}' is reserved" in message
    assert stored_tenants() == before


def test_a_duplicate_tenant_is_refused_and_the_first_is_unchanged(cli, tenant):
    before, audited = stored_tenants(), audit_count()

    message = refused(cli, "tenant", "create", "clinic-a", "--name", "Impostor Clinic")

    assert "tenant 'clinic-a' already exists" in message
    assert stored_tenants() == before
    assert audit_count() == audited


def test_a_tenant_created_elsewhere_meanwhile_is_a_conflict_not_a_crash(cli, tenant):
    # Another instance creates the same slug between this command's check and its insert.
    def create_it_elsewhere(session, context, instances):
        with db.engine.begin() as connection:
            connection.execute(
                Tenant.__table__.insert().values(slug="riverside", display_name="Other Riverside")
            )

    event.listen(db.session, "before_flush", create_it_elsewhere, once=True)
    try:
        message = refused(cli, "tenant", "create", "riverside", "--name", "Riverside Clinic")
    finally:
        if event.contains(db.session, "before_flush", create_it_elsewhere):
            event.remove(db.session, "before_flush", create_it_elsewhere)

    assert "tenant 'riverside' already exists" in message
    db.session.expire_all()
    names = db.session.scalars(select(Tenant.display_name).where(Tenant.slug == "riverside"))
    assert list(names) == ["Other Riverside"]


def test_an_over_long_display_name_is_refused_and_nothing_is_stored(cli, tenant):
    before = stored_tenants()

    message = refused(cli, "tenant", "create", "riverside", "--name", "N" * 201)

    assert "display name is longer than 200 characters" in message
    assert stored_tenants() == before


def test_a_display_name_of_200_characters_is_accepted(cli):
    created = run(cli, "tenant", "create", "riverside", "--name", "N" * 200)

    assert created["display_name"] == "N" * 200


@pytest.mark.parametrize(
    "url",
    [
        "http://fhir.example.test/r4",
        "ftp://fhir.example.test/r4",
        "fhir.example.test/r4",
        "/fhir",
        "https://fhir.example.test/r4#section",
        "https://",
        "https://fhir.example.test/r4?tenant=1",
        "https://fhir.example.test/r4?",
        "https://fhir.example.test:99999/r4",
    ],
)
def test_a_bad_fhir_base_url_is_refused_and_nothing_is_stored(cli, tenant, url):
    before = stored_tenants()

    message = refused(
        cli, "tenant", "create", "riverside", "--name", "Riverside", "--fhir-base-url", url
    )

    assert "FHIR base URL" in message
    assert stored_tenants() == before


# As long as a FHIR base URL may be: every access token carries it as aud (tokens/limits.py).
FHIR_BASE_AT_BOUND = "https://fhir.riverside.example/" + "r" * (ASSUMED_URL_LENGTH - 31)


@pytest.mark.parametrize(
    ("url", "length"),
    [
        (FHIR_BASE_AT_BOUND + "r", 257),
        # A non-ASCII character takes 6 in the token's JSON: 256 characters here are 261 there.
        (FHIR_BASE_AT_BOUND[:-1] + "é", 261),
    ],
    ids=["ascii", "non-ascii"],
)
def test_a_fhir_base_url_too_long_for_a_token_is_refused_and_nothing_is_stored(
    cli, tenant, url, length
):
    before, audited = stored_tenants(), audit_count()

    message = refused(
        cli, "tenant", "create", "riverside", "--name", "Riverside", "--fhir-base-url", url
    )

    assert message == (
        f"Error: the FHIR base URL takes {length} characters as a token writes it, more than "
        "the 256 an access token has for its aud"
    )
    assert stored_tenants() == before
    assert audit_count() == audited


def test_the_tenants_own_introspection_endpoint_is_no_fhir_base_url(cli, tenant):
    before, audited = stored_tenants(), audit_count()
    url = "https://auth.example.test/t/riverside/introspect"

    message = refused(cli, "tenant", "create", "riverside", "--name", "R", "--fhir-base-url", url)

    assert message == "Error: the FHIR base URL must not be the tenant's own introspection endpoint"
    assert stored_tenants() == before
    assert audit_count() == audited
    # Another tenant's breaks none of this one's tokens: each token's is under its own issuer.
    created = run(cli, "tenant", "create", "lakeside", "--name", "L", "--fhir-base-url", url)
    assert created["fhir_base_url"] == url


def test_a_fhir_base_url_at_the_bound_is_accepted(cli):
    created = run(
        cli, "tenant", "create", "riverside", "--name", "R", "--fhir-base-url", FHIR_BASE_AT_BOUND
    )

    assert created["fhir_base_url"] == FHIR_BASE_AT_BOUND


# --- Listing, suspending, branding -------------------------------------------------------------


def test_list_shows_every_tenant_in_slug_order(cli, make_tenant):
    make_tenant("zebra-clinic", "Zebra")
    make_tenant("alpha-clinic", "Alpha")

    listed = run(cli, "tenant", "list")

    assert [row["slug"] for row in listed] == ["alpha-clinic", "zebra-clinic"]
    assert listed[0]["issuer"] == "https://auth.example.test/t/alpha-clinic"


def test_list_with_no_tenants_is_empty(cli):
    assert run(cli, "tenant", "list") == []


def test_suspend_and_activate(cli, tenant):
    assert run(cli, "tenant", "suspend", "clinic-a")["status"] == "suspended"
    assert stored_tenants()[0]["status"] == "suspended"

    assert run(cli, "tenant", "activate", "clinic-a")["status"] == "active"
    assert stored_tenants()[0]["status"] == "active"


@pytest.mark.parametrize(("command", "status"), [("suspend", "suspended"), ("activate", "active")])
def test_a_status_the_tenant_already_has_is_said_and_not_audited_again(
    cli, tenant, command, status
):
    if command == "activate":
        run(cli, "tenant", "suspend", "clinic-a")
    run(cli, "tenant", command, "clinic-a")
    audited, before = audit_count(), stored_tenants()

    shown, line = unchanged(cli, "tenant", command, "clinic-a")

    assert line == f"Tenant clinic-a is already {status}; nothing changed."
    assert shown["status"] == status
    assert (audit_count(), stored_tenants()) == (audited, before)


@pytest.mark.parametrize("command", ["suspend", "activate", "brand"])
def test_commands_on_an_unknown_tenant_are_refused(cli, tenant, command):
    before = stored_tenants()

    assert "no tenant 'nope'" in refused(cli, "tenant", command, "nope")
    assert stored_tenants() == before


def test_brand_sets_the_branding_fields(cli, tenant):
    branded = run(
        cli,
        "tenant",
        "brand",
        "clinic-a",
        "--display-name",
        "Clinic A Family Medicine",
        "--logo-url",
        "https://cdn.clinic-a.example/logo.png",
        "--primary-color",
        "#1F6FEB",
        "--support-contact",
        "help@clinic-a.example, 555-0100",
    )

    assert branded["display_name"] == "Clinic A Family Medicine"
    assert branded["logo_url"] == "https://cdn.clinic-a.example/logo.png"
    assert branded["primary_color"] == "#1f6feb"
    assert branded["support_contact"] == "help@clinic-a.example, 555-0100"
    stored = stored_tenants()[0]
    assert stored["display_name"] == "Clinic A Family Medicine"
    assert stored["logo_url"] == "https://cdn.clinic-a.example/logo.png"
    assert stored["primary_color"] == "#1f6feb"
    assert stored["support_contact"] == "help@clinic-a.example, 555-0100"


def test_brand_with_empty_values_clears_the_optional_fields(cli, tenant):
    run(cli, "tenant", "brand", "clinic-a", "--logo-url", "https://cdn.example/l.png")
    run(cli, "tenant", "brand", "clinic-a", "--primary-color", "#123456")

    clear_all = ["--logo-url", "", "--primary-color", "", "--support-contact", ""]

    cleared = run(cli, "tenant", "brand", "clinic-a", *clear_all)

    assert cleared["logo_url"] is None
    assert cleared["primary_color"] is None
    assert cleared["support_contact"] is None
    assert cleared["display_name"] == "Clinic A"


@pytest.mark.parametrize("color", ["red", "#12345", "#1234567", "#gggggg", "1f6feb", "#1f6feb "])
def test_brand_refuses_a_bad_colour_and_changes_nothing(cli, tenant, color):
    run(cli, "tenant", "brand", "clinic-a", "--primary-color", "#123456")
    before = stored_tenants()

    message = refused(
        cli, "tenant", "brand", "clinic-a", "--display-name", "Renamed", "--primary-color", color
    )

    assert "primary colour must look like #1f6feb" in message
    assert stored_tenants() == before


@pytest.mark.parametrize(
    "logo_url",
    [
        "http://cdn.clinic-a.example/logo.png",
        "http://localhost/logo.png",
        "javascript:alert(1)",
        "data:image/png;base64,AAAA",
        "//cdn.clinic-a.example/logo.png",
    ],
)
def test_brand_refuses_a_logo_url_that_is_not_https_and_changes_nothing(cli, tenant, logo_url):
    before = stored_tenants()

    message = refused(
        cli, "tenant", "brand", "clinic-a", "--display-name", "Renamed", "--logo-url", logo_url
    )

    assert "logo URL" in message
    assert "https" in message
    assert stored_tenants() == before


def test_brand_refuses_an_over_long_display_name_and_changes_nothing(cli, tenant):
    before = stored_tenants()

    message = refused(cli, "tenant", "brand", "clinic-a", "--display-name", "N" * 201)

    assert "display name is longer than 200 characters" in message
    assert stored_tenants() == before


def test_brand_with_no_field_is_refused_and_not_audited(cli, tenant):
    before, audited = stored_tenants(), audit_count()

    message = refused(cli, "tenant", "brand", "clinic-a")

    assert "--display-name" in message and "--support-contact" in message
    assert stored_tenants() == before
    assert audit_count() == audited


def test_brand_is_audited_about_the_tenant_with_the_fields_changed(cli, tenant):
    run(cli, "tenant", "brand", "clinic-a", "--primary-color", "#123456", "--logo-url", "")

    (record,) = run(cli, "audit", "list", "clinic-a", "--event", "tenant:branded")

    assert (record["actor"], record["subject"]) == ("cli", "clinic-a")
    assert record["details"] == {"fields": ["logo_url", "primary_color"]}


# --- Unknown and suspended tenants on the web -------------------------------------------------


@pytest.mark.parametrize("path", TENANT_URLS)
def test_an_unknown_tenant_is_a_json_404(client, tenant, path):
    response = client.get(path.format(slug="nope"), headers={"Accept": "text/html"})

    assert response.status_code == 404
    assert response.mimetype == "application/json"
    assert response.json["error"] == "not_found"
    assert "nope" in response.json["error_description"]
    body = response.get_data(as_text=True)
    assert "clinic-a" not in body
    assert "Clinic A" not in body


def test_an_unknown_tenant_login_page_is_an_html_404(client, tenant):
    response = client.get("/t/nope/login")

    assert response.status_code == 404
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert "Not found" in page
    assert "Clinic A" not in page
    assert "csrf_token" not in page


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/t/clinic-a/login", {"GET", "POST"}),
        ("DELETE", "/t/clinic-a/logout", {"GET", "POST"}),
        ("POST", "/t/clinic-a/", {"GET"}),
        ("PATCH", "/t/clinic-a/authorize", {"GET", "POST"}),
    ],
)
def test_a_wrong_method_on_a_page_is_the_tenants_html_405(client, tenant, method, path, allowed):
    response = client.open(path, method=method)

    assert response.status_code == 405
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert "<title>405 · Clinic A</title>" in page
    assert "method_not_allowed" in page
    assert allowed <= set(response.allow)  # RFC 9110 §15.5.6
    assert_not_framable(response)
    assert response.headers["Cache-Control"] == "no-store"


def test_a_wrong_method_on_an_unknown_tenants_page_is_an_html_405(client, tenant):
    response = client.put("/t/nope/login")

    assert response.status_code == 405
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert "<title>405 · authserver</title>" in page
    assert "Clinic A" not in page


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/t/clinic-a/token"),
        ("GET", "/t/clinic-a/introspect"),
        ("PUT", "/t/clinic-a/revoke"),
        ("GET", "/t/clinic-a/launch"),
        ("POST", "/t/clinic-a/.well-known/jwks.json"),
        ("DELETE", "/t/clinic-a/.well-known/smart-configuration"),
    ],
)
def test_a_wrong_method_on_an_api_endpoint_stays_a_json_405(client, tenant, method, path):
    response = client.open(path, method=method, headers={"Accept": "text/html"})

    assert response.status_code == 405
    assert response.mimetype == "application/json"
    assert response.json["error"] == "method_not_allowed"
    assert response.allow


@pytest.mark.parametrize("path", TENANT_URLS)
def test_a_suspended_tenant_refuses_its_documents_until_activated(cli, client, tenant, path):
    path = path.format(slug="clinic-a")
    run(cli, "tenant", "suspend", "clinic-a")

    response = client.get(path)

    assert response.status_code == 403
    assert response.json == {
        "error": "tenant_suspended",
        "error_description": "Clinic A is suspended and cannot serve requests",
    }

    run(cli, "tenant", "activate", "clinic-a")

    assert client.get(path).status_code == 200


def test_a_suspended_tenant_refuses_its_login_page_until_activated(cli, client, tenant, make_user):
    make_user(tenant, "alice")
    run(cli, "tenant", "suspend", "clinic-a")

    response = client.get("/t/clinic-a/login")

    assert response.status_code == 403
    assert response.mimetype == "text/html"
    assert "Clinic A is suspended and cannot serve requests" in response.get_data(as_text=True)
    assert client.post("/t/clinic-a/login", data={"username": "alice"}).status_code == 403

    run(cli, "tenant", "activate", "clinic-a")

    assert client.get("/t/clinic-a/login").status_code == 200


def test_suspending_one_tenant_leaves_the_other_serving(cli, client, tenant, other_tenant):
    run(cli, "tenant", "suspend", "clinic-a")

    assert client.get("/t/clinic-b/.well-known/jwks.json").status_code == 200
    assert client.get("/t/clinic-b/login").status_code == 200

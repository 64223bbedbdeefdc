"""Registering apps and resource servers with ``authserver client``, as an operator does."""

import hashlib
import json

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from sqlalchemy import func
from sqlalchemy import select

from authserver.audit.models import AuditRecord
from authserver.clients import service
from authserver.clients.models import RESOURCE_SERVER
from authserver.clients.models import Client
from authserver.errors import ValidationError
from authserver.extensions import db
from tests.fixtures.commands import refused
from tests.fixtures.commands import run
from tests.fixtures.tokens import basic

REDIRECT = "https://app.example.test/callback"


def create(cli, *args):
    return run(cli, "client", "create", "clinic-a", "--name", "Test app", *args)


def stored_clients():
    db.session.expire_all()
    return [
        {column.name: getattr(row, column.key) for column in Client.__table__.columns}
        for row in db.session.scalars(select(Client).order_by(Client.id))
    ]


def audit_count():
    return db.session.scalar(select(func.count()).select_from(AuditRecord))


def stored(client_id):
    db.session.expire_all()
    return db.session.scalar(select(Client).where(Client.client_id == client_id))


def rsa_jwk(private=False):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = RSAAlgorithm.to_jwk(key if private else key.public_key(), as_dict=True)
    return {**jwk, "kid": "app-key-1", "alg": "RS384", "use": "sig"}


def jwks_file(tmp_path, *keys):
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": list(keys)}))
    return str(path)


# --- Registering ------------------------------------------------------------------------------


def test_a_public_app_has_no_secret_and_the_code_grant(cli, tenant):
    created = create(cli, "--public", "--redirect-uri", REDIRECT)

    assert created["client_id"].startswith("app_")
    assert created["token_endpoint_auth_method"] == "none"
    assert created["redirect_uris"] == [REDIRECT]
    assert created["grant_types"] == ["authorization_code", "refresh_token"]
    assert "client_secret" not in created
    row = stored(created["client_id"])
    assert row.tenant_id == tenant.id
    assert row.client_secret_digest is None
    assert row.is_public


def test_client_ids_are_random_and_prefixed(cli, tenant):
    ids = {create(cli, "--public", "--redirect-uri", REDIRECT)["client_id"] for _ in range(5)}

    assert len(ids) == 5
    for client_id in ids:
        assert client_id.startswith("app_")
        assert len(client_id) >= len("app_") + 20


def test_a_secret_is_shown_once_and_stored_only_as_its_sha256(cli, tenant):
    created = create(cli, "--secret", "--redirect-uri", REDIRECT)

    secret = created["client_secret"]
    assert secret.startswith("ascs_")
    assert created["token_endpoint_auth_method"] == "client_secret_basic"
    row = stored(created["client_id"])
    assert row.client_secret_digest == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in str(stored_clients())
    assert row.check_client_secret(secret)
    assert not row.check_client_secret(secret + "x")
    assert not row.check_client_secret("")


def test_client_list_never_shows_a_secret(cli, tenant):
    secret = create(cli, "--secret", "--redirect-uri", REDIRECT)["client_secret"]

    result = cli.invoke(args=["client", "list", "clinic-a"])

    assert result.exit_code == 0
    assert secret not in result.output
    (listed,) = json.loads(result.stdout)
    assert "client_secret" not in listed
    assert listed["status"] == "active"


def test_client_secret_post_is_recorded(cli, tenant):
    created = create(
        cli, "--secret", "--auth-method", "client_secret_post", "--redirect-uri", REDIRECT
    )

    assert created["token_endpoint_auth_method"] == "client_secret_post"
    assert created["client_secret"]


def test_an_app_with_an_inline_public_jwks(cli, tenant, tmp_path):
    jwk = rsa_jwk()

    created = create(cli, "--jwks-file", jwks_file(tmp_path, jwk), "--redirect-uri", REDIRECT)

    assert created["token_endpoint_auth_method"] == "private_key_jwt"
    assert "client_secret" not in created
    row = stored(created["client_id"])
    assert row.jwks == {"keys": [jwk]}
    assert row.client_secret_digest is None


def test_an_app_with_a_jwks_uri(cli, tenant):
    created = create(
        cli,
        "--jwks-uri",
        "https://app.example.test/.well-known/jwks.json",
        "--grant-type",
        "client_credentials",
        "--scope",
        "system/Observation.rs",
    )

    assert created["token_endpoint_auth_method"] == "private_key_jwt"
    assert created["jwks_uri"] == "https://app.example.test/.well-known/jwks.json"
    assert created["grant_types"] == ["client_credentials"]
    assert created["scope"] == "system/Observation.rs"


def test_an_app_with_keys_and_no_redirect_uri_is_a_backend_services_client(cli, tenant, tmp_path):
    created = create(cli, "--jwks-file", jwks_file(tmp_path, rsa_jwk()))

    assert created["grant_types"] == ["client_credentials"]


def test_a_resource_server_gets_a_secret_and_nothing_to_grant(cli, tenant):
    created = run(
        cli, "client", "create", "clinic-a", "--name", "FHIR gateway", "--resource-server"
    )

    assert created["client_id"].startswith("rs_")
    assert created["kind"] == "resource_server"
    assert created["client_secret"].startswith("ascs_")
    assert created["redirect_uris"] == []
    row = stored(created["client_id"])
    assert row.check_client_secret(created["client_secret"])
    # No grant or scope is registered; what it may get all the same is in the next test.
    assert row.grant_types == [] and row.allowed_scope == ""


def test_a_resource_server_is_shown_with_the_introspect_token_it_may_get(cli, client, tenant):
    """Every output of a resource server says what it may be issued, and what it says works."""
    created = run(
        cli, "client", "create", "clinic-a", "--name", "FHIR gateway", "--resource-server"
    )
    [listed] = run(cli, "client", "list", "clinic-a")
    reset = run(cli, "client", "reset-secret", "clinic-a", created["client_id"])

    for shown in (created, listed, reset):
        assert shown["grant_types"] == ["client_credentials"]
        assert shown["scope"] == "introspect"
    form = {"grant_type": shown["grant_types"][0], "scope": shown["scope"]}
    headers = basic(created["client_id"], reset["client_secret"])
    issued = client.post("/t/clinic-a/token", data=form, headers=headers)
    assert issued.status_code == 200, issued.json
    assert issued.json["scope"] == "introspect"


def test_scopes_and_grant_types_are_recorded(cli, tenant, tmp_path):
    created = create(
        cli,
        "--jwks-file",
        jwks_file(tmp_path, rsa_jwk()),
        "--redirect-uri",
        REDIRECT,
        "--scope",
        "openid",
        "--scope",
        "launch",
        "--scope",
        "user/Patient.rs",
        "--grant-type",
        "authorization_code",
        "--grant-type",
        "client_credentials",
    )

    assert created["scope"] == "openid launch user/Patient.rs"
    assert created["grant_types"] == ["authorization_code", "client_credentials"]
    row = stored(created["client_id"])
    assert row.get_allowed_scope("launch patient/Patient.rs openid") == "launch openid"
    assert row.check_grant_type("client_credentials")
    assert not row.check_grant_type("refresh_token")


@pytest.mark.parametrize(
    "scope",
    [
        "patient/Observation.sr",  # letters out of order
        "patient/Observation.rs,patient/Patient.rs",  # two scopes joined by a comma
        "Patient/Observation.rs",
        "bogus",
    ],
)
def test_a_malformed_scope_is_refused_and_nothing_is_stored(cli, tenant, scope):
    # Stored as typed, a scope that does not parse would restrict the app to nothing at all.
    before = stored_clients()

    line = refused(
        cli, "client", "create", "clinic-a", "--name", "Test app", "--public",
        "--redirect-uri", REDIRECT, "--scope", scope,
    )  # fmt: skip

    assert "malformed scope" in line and scope in line
    assert stored_clients() == before


BACKEND_ONLY = "is for backend clients (the client_credentials grant)"
NEEDS_A_USER = "needs a user signing in (the authorization_code grant)"


@pytest.mark.parametrize(
    ("options", "scope", "reason"),
    [
        (["--public", "--redirect-uri", REDIRECT], "system/Patient.rs", BACKEND_ONLY),
        (["--jwks-file", "JWKS"], "patient/*.rs", NEEDS_A_USER),
        (["--jwks-file", "JWKS"], "user/Observation.rs", NEEDS_A_USER),
        (["--jwks-file", "JWKS"], "openid", NEEDS_A_USER),
        (["--jwks-file", "JWKS"], "launch/patient", NEEDS_A_USER),
        (["--jwks-file", "JWKS"], "offline_access", NEEDS_A_USER),
    ],
    ids=[
        "app-system",
        "backend-patient",
        "backend-user",
        "backend-openid",
        "backend-launch",
        "backend-offline",
    ],
)
def test_a_scope_none_of_the_clients_grants_issues_is_refused(
    cli, tenant, tmp_path, options, scope, reason
):
    # Stored, it would bound nothing: the client's grants never issue a scope of that kind.
    options = [jwks_file(tmp_path, rsa_jwk()) if value == "JWKS" else value for value in options]
    before = stored_clients()

    line = refused(cli, "client", "create", "clinic-a", "--name", "Test app", *options,
                   "--scope", scope)  # fmt: skip

    assert line.startswith(f"Error: scope {scope!r} {reason}; ")
    assert stored_clients() == before


def test_a_client_with_both_grants_may_have_both_kinds_of_scope(cli, tenant, tmp_path):
    created = create(cli, "--jwks-file", jwks_file(tmp_path, rsa_jwk()), "--redirect-uri",
                     REDIRECT, "--grant-type", "authorization_code", "--grant-type",
                     "client_credentials", "--scope", "user/*.rs", "--scope", "system/*.rs",
                     "--scope", "__lab_feed")  # fmt: skip

    assert created["scope"] == "user/*.rs system/*.rs __lab_feed"


NEEDS_THE_REFRESH_GRANT = "needs the refresh_token grant: without it the client is never issued"


@pytest.mark.parametrize("scope", ["offline_access", "online_access"])
@pytest.mark.parametrize(
    "options",
    [
        ["--public", "--redirect-uri", REDIRECT, "--grant-type", "authorization_code"],
        ["--jwks-file", "JWKS", "--redirect-uri", REDIRECT, "--grant-type",
         "authorization_code", "--grant-type", "client_credentials"],
    ],
    ids=["code-only", "code-and-backend"],
)  # fmt: skip
def test_a_refresh_scope_without_the_refresh_grant_is_refused(
    cli, tenant, tmp_path, options, scope
):
    # Stored, it would bound nothing: without the grant no refresh token is ever issued.
    options = [jwks_file(tmp_path, rsa_jwk()) if value == "JWKS" else value for value in options]
    before, events = stored_clients(), audit_count()

    line = refused(cli, "client", "create", "clinic-a", "--name", "Test app", *options,
                   "--scope", "openid", "--scope", scope)  # fmt: skip

    assert line == f"Error: scope {scope!r} {NEEDS_THE_REFRESH_GRANT} a refresh token"
    assert stored_clients() == before
    assert audit_count() == events


@pytest.mark.parametrize("scope", ["offline_access", "online_access"])
@pytest.mark.parametrize(
    "grants",
    [[], ["--grant-type", "authorization_code", "--grant-type", "refresh_token"]],
    ids=["default-grants", "refresh-grant-given"],
)
def test_a_refresh_scope_with_the_refresh_grant_is_accepted(cli, tenant, grants, scope):
    created = create(cli, "--public", "--redirect-uri", REDIRECT, *grants, "--scope", scope)

    assert created["grant_types"] == ["authorization_code", "refresh_token"]
    assert created["scope"] == scope


def test_the_service_refuses_a_refresh_scope_without_the_refresh_grant(tenant):
    with pytest.raises(ValidationError, match=f"'online_access' {NEEDS_THE_REFRESH_GRANT}"):
        service.register(
            tenant,
            name="Code only",
            auth_method="none",
            redirect_uris=[REDIRECT],
            grant_types=["authorization_code"],
            scopes=["openid", "online_access"],
        )
    registered = service.register(
        tenant,
        name="Code and refresh",
        auth_method="none",
        redirect_uris=[REDIRECT],
        grant_types=["authorization_code", "refresh_token"],
        scopes=["openid", "online_access"],
    )
    assert registered.client.allowed_scope == "openid online_access"


@pytest.mark.parametrize(
    "uri",
    ["http://127.0.0.1:8000/cb", "http://localhost/cb", "http://[::1]:9000/cb"],
)
def test_loopback_http_redirect_uris_are_accepted(cli, tenant, uri):
    created = create(cli, "--public", "--redirect-uri", uri)

    assert created["redirect_uris"] == [uri]
    assert stored(created["client_id"]).check_redirect_uri(uri)


@pytest.mark.parametrize(
    ("uri", "lowercase"),
    [
        ("HTTPS://app.example.test/callback", "https://app.example.test/callback"),
        ("Https://App.Example.test/callback", "https://app.example.test/callback"),
        ("https://APP.example.test:8443/Callback", "https://app.example.test:8443/Callback"),
        ("HTTP://LOCALHOST:8000/cb", "http://localhost:8000/cb"),
    ],
)
def test_a_redirect_uri_with_an_upper_case_scheme_or_host_is_refused(cli, tenant, uri, lowercase):
    # Case-insensitive by RFC 3986, but matched exactly: stored so, it would match only itself.
    message = assert_refused(cli, "--public", "--redirect-uri", uri)

    assert f"write its scheme and host in lower case, as {lowercase!r}" in message


def test_the_path_of_a_redirect_uri_keeps_its_case(cli, tenant):
    uri = "https://app.example.test/Auth/CallBack?Tab=Main"

    row = stored(create(cli, "--public", "--redirect-uri", uri)["client_id"])

    assert row.redirect_uris == [uri]
    assert not row.check_redirect_uri(uri.lower())


def test_redirect_uris_match_exactly(cli, tenant):
    row = stored(create(cli, "--public", "--redirect-uri", REDIRECT)["client_id"])

    assert row.check_redirect_uri(REDIRECT)
    assert not row.check_redirect_uri(REDIRECT + "/evil")
    assert not row.check_redirect_uri(REDIRECT + "?next=https://evil.example")
    assert not row.check_redirect_uri("https://app.example.test/")


# --- Refused metadata: non-zero exit, one line, nothing stored --------------------------------


def assert_refused(cli, *args):
    before, audited = stored_clients(), audit_count()

    message = refused(cli, "client", "create", "clinic-a", "--name", "Test app", *args)

    assert stored_clients() == before
    assert audit_count() == audited
    return message


def test_an_http_redirect_uri_on_another_host_is_refused(cli, tenant):
    message = assert_refused(cli, "--public", "--redirect-uri", "http://app.example.test/cb")

    assert "redirect URI must use https" in message


def test_a_redirect_uri_with_a_fragment_is_refused(cli, tenant):
    message = assert_refused(cli, "--public", "--redirect-uri", f"{REDIRECT}#frag")

    assert "redirect URI must not have a fragment" in message


@pytest.mark.parametrize(
    "uri", ["https://app.example.test:99999/cb", "https://app.example.test:x/cb"]
)
def test_a_redirect_uri_with_an_impossible_port_is_refused(cli, tenant, uri):
    message = assert_refused(cli, "--public", "--redirect-uri", uri)

    assert "redirect URI is not a valid URL" in message


@pytest.mark.parametrize("uri", ["/callback", "callback", "app.example.test/cb", "https:///cb"])
def test_a_relative_redirect_uri_is_refused(cli, tenant, uri):
    message = assert_refused(cli, "--public", "--redirect-uri", uri)

    assert "redirect URI must be an absolute https URL" in message


@pytest.mark.parametrize(
    "uri", ["https://*.app.example.test/cb", "https://*/cb", "http://*.localhost/cb"]
)
def test_a_redirect_uri_with_a_wildcard_host_is_refused(cli, tenant, uri):
    # Redirect URIs match exactly: a pattern would be stored as a host no browser can reach.
    assert "wildcard" in assert_refused(cli, "--public", "--redirect-uri", uri)


@pytest.mark.parametrize("uri", [f"{REDIRECT}\x7f", f"{REDIRECT}\x1b[2J", f"{REDIRECT}\u200b"])
def test_a_redirect_uri_with_an_invisible_character_is_refused(cli, tenant, uri):
    assert "redirect URI" in assert_refused(cli, "--public", "--redirect-uri", uri)


@pytest.mark.parametrize(
    "uri", ["javascript:alert(1)", "data:text/html,hello", "ftp://app.example.test/cb"]
)
def test_a_redirect_uri_of_another_scheme_is_refused(cli, tenant, uri):
    assert "redirect URI" in assert_refused(cli, "--public", "--redirect-uri", uri)


def test_public_with_secret_is_refused(cli, tenant):
    message = assert_refused(cli, "--public", "--secret", "--redirect-uri", REDIRECT)

    assert "choose one of --public, --secret, --jwks-uri, --jwks-file" in message


@pytest.mark.parametrize(
    "choice",
    [
        ["--secret", "--jwks-uri", "https://app.example.test/jwks"],
        ["--public", "--jwks-uri", "https://app.example.test/jwks"],
        ["--jwks-uri", "https://app.example.test/jwks", "--jwks-file", "JWKS"],
    ],
    ids=["secret-and-jwks-uri", "public-and-jwks-uri", "jwks-uri-and-jwks-file"],
)
def test_two_ways_to_authenticate_are_refused(cli, tenant, tmp_path, choice):
    choice = [jwks_file(tmp_path, rsa_jwk()) if arg == "JWKS" else arg for arg in choice]

    message = assert_refused(cli, *choice, "--redirect-uri", REDIRECT)

    assert "choose one of" in message


def test_no_way_to_authenticate_is_refused(cli, tenant):
    message = assert_refused(cli, "--redirect-uri", REDIRECT)

    assert "choose one of --public, --secret, --jwks-uri, --jwks-file" in message


def test_a_jwks_holding_a_private_key_is_refused(cli, tenant, tmp_path):
    message = assert_refused(
        cli, "--jwks-file", jwks_file(tmp_path, rsa_jwk(private=True)), "--redirect-uri", REDIRECT
    )

    assert "jwks must hold public keys only" in message


def test_a_jwks_holding_a_symmetric_key_is_refused(cli, tenant, tmp_path):
    secret_key = {"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0", "kid": "hmac"}

    message = assert_refused(
        cli, "--jwks-file", jwks_file(tmp_path, secret_key), "--redirect-uri", REDIRECT
    )

    assert "jwks must hold public keys only" in message


@pytest.mark.parametrize(
    "unusable",
    [
        {"use": "enc"},
        {"key_ops": ["encrypt"]},
        {"alg": "RS512"},
        {"alg": "PS384"},
        {"kid": 7},
    ],
    ids=["for-encryption", "encrypt-only", "alg-not-accepted", "alg-other-family", "kid-not-text"],
)
def test_a_jwks_no_key_of_which_can_verify_an_assertion_is_refused(cli, tenant, tmp_path, unusable):
    # The client could never authenticate (as with no keys at all): refused, not stored.
    path = jwks_file(tmp_path, {**rsa_jwk(), **unusable})

    message = assert_refused(cli, "--jwks-file", path, "--scope", "system/*.rs")

    assert "no key" in message and "verify" in message


def test_a_jwks_with_an_okp_key_only_is_refused(cli, tenant, tmp_path):
    ed25519 = {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}

    message = assert_refused(cli, "--jwks-file", jwks_file(tmp_path, ed25519))

    assert "no key" in message and "verify" in message


def test_a_jwks_naming_two_keys_of_one_type_alike_is_refused(cli, tenant, tmp_path):
    # An assertion naming that kid would match both: refused every time (SMART asymmetric step 3).
    path = jwks_file(tmp_path, rsa_jwk(), rsa_jwk())

    message = assert_refused(cli, "--jwks-file", path, "--scope", "system/*.rs")

    assert "'app-key-1'" in message


def test_a_jwks_with_a_key_for_encryption_beside_one_for_signing_is_accepted(cli, tenant, tmp_path):
    signing = rsa_jwk()
    encryption = {**rsa_jwk(), "kid": "app-enc-1", "use": "enc", "alg": "RSA-OAEP"}

    created = create(cli, "--jwks-file", jwks_file(tmp_path, signing, encryption))

    assert stored(created["client_id"]).jwks == {"keys": [signing, encryption]}


def test_a_jwks_file_that_is_not_json_is_refused(cli, tenant, tmp_path):
    path = tmp_path / "jwks.json"
    path.write_text("{not json")

    assert "--jwks-file is not JSON" in assert_refused(
        cli, "--jwks-file", str(path), "--redirect-uri", REDIRECT
    )


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"\x30\x82\x01\x22\xff\xfe binary key material", "--jwks-file is not UTF-8 text"),
        (b'{"keys": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "its JSON nests too deeply"),
    ],
    ids=["der-key", "deeply-nested"],
)
def test_a_jwks_file_that_cannot_be_read_as_json_is_refused(
    cli, tenant, tmp_path, content, expected
):
    path = tmp_path / "jwks.json"
    path.write_bytes(content)

    assert expected in assert_refused(cli, "--jwks-file", str(path), "--redirect-uri", REDIRECT)


def test_an_http_jwks_uri_is_refused(cli, tenant):
    assert "jwks_uri must use https" in assert_refused(
        cli, "--jwks-uri", "http://app.example.test/jwks", "--redirect-uri", REDIRECT
    )


@pytest.mark.parametrize(
    "uri",
    [
        "https://partner:s3cret-pw@keys.partner.test/jwks.json",
        "https://s3cret-token@keys.partner.test/jwks.json",
        "https://partner:s3cret-pw@127.0.0.1:8443/jwks.json",
    ],
)
def test_a_jwks_uri_with_credentials_is_refused_without_showing_them(cli, tenant, uri):
    message = assert_refused(cli, "--jwks-uri", uri, "--scope", "system/*.rs")

    assert "jwks_uri must not hold a user name or password" in message
    assert "s3cret" not in message


@pytest.mark.parametrize(
    "uri",
    [
        "http://partner:s3cret-pw@keys.partner.test/jwks.json",
        "https://keys.partner.test/jwks.json?token=s3cret-query#top",
        "https://keys.partner.test/jwks.json?token=s3cret query",
        "https://partner:s3cret-pw@[::1/jwks.json",
    ],
    ids=["http", "fragment", "space", "malformed"],
)
def test_a_refused_jwks_uri_is_not_quoted_in_the_error(cli, tenant, uri):
    # Its user name, password or query may be a credential: the error names the rule only.
    message = assert_refused(cli, "--jwks-uri", uri, "--scope", "system/*.rs")

    assert message.startswith("Error: jwks_uri ")
    assert "s3cret" not in message


@pytest.fixture
def production_cli(make_instance):
    """``authserver`` as a production deployment runs it (the suite's app is TESTING)."""
    production = make_instance(TESTING=False)
    with production.app_context():  # a command runs in the app whose context is current
        yield production.test_cli_runner()


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("http://localhost:8080/jwks.json", "jwks_uri must use https"),
        ("http://127.0.0.1/jwks.json", "jwks_uri must use https"),
        ("http://[::1]/jwks.json", "jwks_uri must use https"),
        (
            "https://localhost/jwks.json",
            "is at an address this server does not fetch from (loopback)",
        ),
        ("https://keys.localhost/jwks.json", "(loopback)"),
        ("https://127.0.0.1/jwks.json", "(loopback)"),
        ("https://2130706433/jwks.json", "(loopback)"),  # 127.0.0.1 as a number
        ("https://[::ffff:127.0.0.1]/jwks.json", "(loopback)"),
        ("https://169.254.169.254/latest/meta-data", "(link-local)"),
        ("https://[fe80::1]/jwks.json", "(link-local)"),
        ("https://10.0.0.7/jwks.json", "(private)"),
        ("https://0.0.0.0/jwks.json", "(unspecified)"),  # noqa: S104 - refused, not bound
    ],
)
def test_production_refuses_a_jwks_uri_its_fetcher_would_refuse(
    production_cli, tenant, uri, expected
):
    message = assert_refused(production_cli, "--jwks-uri", uri, "--scope", "system/*.rs")

    assert expected in message


def test_a_refused_private_jwks_uri_names_the_setting_that_allows_it(production_cli, tenant):
    message = assert_refused(production_cli, "--jwks-uri", "https://192.168.3.3/jwks.json")

    assert "AUTHSERVER_JWKS_URI_ALLOW_PRIVATE=true" in message


def test_an_on_premises_deployment_registers_a_private_jwks_uri(make_instance, tenant):
    on_premises = make_instance(TESTING=False, AUTHSERVER_JWKS_URI_ALLOW_PRIVATE=True)

    with on_premises.app_context():
        created = run(
            on_premises.test_cli_runner(),
            "client", "create", "clinic-a", "--name", "Lab feed",
            "--jwks-uri", "https://10.0.0.7/jwks.json", "--scope", "system/*.rs",
        )  # fmt: skip

    assert created["jwks_uri"] == "https://10.0.0.7/jwks.json"


def test_production_registers_a_jwks_uri_host_name_without_asking_dns(
    production_cli, tenant, fake_dns
):
    # What a name resolves to may change: each fetch checks it, registration does not ask.
    fake_dns.add("keys.partner.test", "10.9.9.9")

    created = run(
        production_cli,
        "client", "create", "clinic-a", "--name", "Lab feed",
        "--jwks-uri", "https://keys.partner.test/jwks.json", "--scope", "system/*.rs",
    )  # fmt: skip

    assert created["jwks_uri"] == "https://keys.partner.test/jwks.json"
    assert fake_dns.lookups == []


@pytest.mark.parametrize("uri", ["http://localhost:8080/jwks.json", "https://127.0.0.1/jwks"])
def test_development_and_tests_register_a_loopback_jwks_uri(cli, tenant, uri):
    created = create(cli, "--jwks-uri", uri, "--scope", "system/*.rs")

    assert created["jwks_uri"] == uri


def test_an_unknown_grant_type_is_refused(cli, tenant):
    message = assert_refused(
        cli, "--secret", "--redirect-uri", REDIRECT, "--grant-type", "password"
    )

    assert "unknown grant type password" in message


@pytest.mark.parametrize(
    "options",
    [
        ["--public", "--redirect-uri", REDIRECT, "--grant-type", "client_credentials"],
        ["--secret", "--grant-type", "client_credentials"],
        ["--secret", "--redirect-uri", REDIRECT, "--grant-type", "client_credentials"],
    ],
    ids=["public", "secret", "secret-with-redirect-uri"],
)
def test_client_credentials_for_a_client_without_keys_is_refused(cli, tenant, options):
    # The token endpoint serves client_credentials to private_key_jwt clients only (SMART
    # Backend Services): registered, this client would get invalid_client on every request.
    message = assert_refused(cli, *options)

    assert "client_credentials needs a private_key_jwt client" in message
    assert "jwks or jwks_uri" in message


@pytest.mark.parametrize("options", [["--public"], ["--secret"]], ids=["public", "secret"])
def test_an_app_with_no_grant_it_could_use_is_refused(cli, tenant, options):
    # Without a redirect URI there is no code grant, and without keys no client_credentials.
    message = assert_refused(cli, *options)

    assert "an app needs a redirect URI (for authorization_code)" in message
    assert "private_key_jwt keys (jwks or jwks_uri) for client_credentials" in message


def test_the_code_grant_without_a_redirect_uri_is_refused(cli, tenant):
    message = assert_refused(cli, "--public", "--grant-type", "authorization_code")

    assert "needs at least one redirect URI" in message


def test_a_resource_server_with_redirect_uris_is_refused(cli, tenant):
    message = assert_refused(cli, "--resource-server", "--redirect-uri", REDIRECT)

    assert "a resource server has no redirect URIs or grant types" in message


@pytest.mark.parametrize(
    ("choice", "flag"),
    [
        (["--public", "--redirect-uri", REDIRECT], "--public"),
        (["--jwks-uri", "https://app.example.test/jwks", "--scope", "system/*.rs"], "--jwks-uri"),
        (["--jwks-file", "JWKS", "--scope", "system/*.rs"], "--jwks-file"),
        (["--resource-server", "--jwks-uri", "https://gw.example.test/jwks"], "--jwks-uri"),
    ],
    ids=["public", "jwks-uri", "jwks-file", "resource-server-with-keys"],
)
@pytest.mark.parametrize("method", ["client_secret_post", "client_secret_basic"])
def test_auth_method_without_a_secret_is_refused_naming_both_flags(
    cli, tenant, tmp_path, choice, flag, method
):
    # Given explicitly, even as the default: it would be dropped without a word.
    choice = [jwks_file(tmp_path, rsa_jwk()) if arg == "JWKS" else arg for arg in choice]

    message = assert_refused(cli, *choice, "--auth-method", method)

    assert f"--auth-method conflicts with {flag}" in message


def test_a_resource_server_sends_its_secret_as_auth_method_says(cli, tenant):
    created = run(
        cli, "client", "create", "clinic-a", "--name", "FHIR gateway", "--resource-server",
        "--auth-method", "client_secret_post",
    )  # fmt: skip

    assert created["token_endpoint_auth_method"] == "client_secret_post"
    assert created["client_secret"]


def test_a_resource_server_with_scopes_is_refused(cli, tenant):
    # Stored, its scopes would be used for nothing: no token is ever issued to it.
    message = assert_refused(cli, "--resource-server", "--scope", "system/Patient.rs")

    assert "a resource server has no scopes" in message


def test_the_service_refuses_a_resource_server_with_scopes(tenant):
    with pytest.raises(ValidationError, match="a resource server has no scopes"):
        service.register(
            tenant,
            name="FHIR gateway",
            kind=RESOURCE_SERVER,
            auth_method="client_secret_basic",
            scopes=["system/Patient.rs"],
        )


def test_a_client_at_an_unknown_tenant_is_refused(cli, tenant):
    before = stored_clients()

    message = refused(
        cli, "client", "create", "nope", "--name", "X", "--public", "--redirect-uri", REDIRECT
    )

    assert "no tenant 'nope'" in message
    assert stored_clients() == before


# --- Secrets and deletion ---------------------------------------------------------------------


def test_reset_secret_invalidates_the_old_secret(cli, tenant):
    created = create(cli, "--secret", "--redirect-uri", REDIRECT)
    old = created["client_secret"]

    reset = run(cli, "client", "reset-secret", "clinic-a", created["client_id"])

    new = reset["client_secret"]
    assert new != old
    row = stored(created["client_id"])
    assert row.check_client_secret(new)
    assert not row.check_client_secret(old)


def test_reset_secret_of_a_public_client_is_refused(cli, tenant):
    client_id = create(cli, "--public", "--redirect-uri", REDIRECT)["client_id"]
    before = stored_clients()

    message = refused(cli, "client", "reset-secret", "clinic-a", client_id)

    assert "does not use a client secret" in message
    assert stored_clients() == before


def test_delete_makes_the_client_unfindable(cli, tenant):
    created = create(cli, "--secret", "--redirect-uri", REDIRECT)
    client_id = created["client_id"]

    run(cli, "client", "delete", "clinic-a", client_id)

    assert service.find_client(tenant, client_id) is None
    listed = run(cli, "client", "list", "clinic-a")
    assert [row["status"] for row in listed] == ["deleted"]
    assert f"no client '{client_id}'" in refused(
        cli, "client", "reset-secret", "clinic-a", client_id
    )
    assert f"no client '{client_id}'" in refused(cli, "client", "delete", "clinic-a", client_id)


def test_deleting_an_unknown_client_is_refused(cli, tenant):
    create(cli, "--public", "--redirect-uri", REDIRECT)
    before = stored_clients()

    assert "no client 'app_nope'" in refused(cli, "client", "delete", "clinic-a", "app_nope")
    assert stored_clients() == before

"""Signing in through the tenant's real login page, as a browser does."""

import hashlib
import logging
import re
from datetime import timedelta
from unittest.mock import Mock

import pytest
from argon2 import PasswordHasher
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import update

from authserver.accounts import service
from authserver.accounts import usernames
from authserver.accounts.models import LoginSession
from authserver.accounts.sessions import COOKIE_NAME
from authserver.audit.models import AuditRecord
from authserver.extensions import db
from authserver.models import utcnow
from authserver.tenancy import service as tenants
from tests.fixtures.accounts import DUMMY_PASSWORD
from tests.fixtures.accounts import HTTPS
from tests.fixtures.accounts import assert_not_framable
from tests.fixtures.accounts import csrf_token
from tests.fixtures.accounts import form_referer
from tests.fixtures.accounts import login

LOGIN_FAILED = "Incorrect username or password."


def login_cookie(response):
    """The ``authserver_login`` Set-Cookie header of ``response``, or None."""
    for header in response.headers.getlist("Set-Cookie"):
        if header.startswith(f"{COOKIE_NAME}="):
            return header
    return None


def cookie_value(header):
    return header.split(";", 1)[0].split("=", 1)[1]


def session_count():
    return db.session.scalar(select(func.count()).select_from(LoginSession))


def audit_count():
    return db.session.scalar(select(func.count()).select_from(AuditRecord))


def post_login(client, slug, **fields):
    """Post the login form with ``fields``, adding a valid CSRF token unless one is given."""
    page = client.get(f"/t/{slug}/login").get_data(as_text=True)
    fields.setdefault("csrf_token", csrf_token(page))
    return client.post(f"/t/{slug}/login", data=fields)


# --- Success ----------------------------------------------------------------------------------


def test_a_login_sets_a_tenant_scoped_http_only_cookie(client, tenant, make_user):
    make_user(tenant, "alice")

    response = login(client, "clinic-a", "alice")

    assert response.status_code == 303
    assert response.headers["Location"] == "/t/clinic-a/"
    cookie = login_cookie(response)
    assert cookie is not None
    attributes = [part.strip() for part in cookie.split(";")]
    assert "Path=/t/clinic-a/" in attributes
    assert "HttpOnly" in attributes
    assert "SameSite=Lax" in attributes
    assert "Secure" in attributes


def test_the_login_cookie_ends_with_the_browser(client, tenant, make_user):
    # A shared clinic workstation: closing the browser signs its user out. Without Max-Age or
    # Expires the cookie is not written to the profile to outlive the browser.
    make_user(tenant, "alice")

    cookie = login_cookie(login(client, "clinic-a", "alice"))

    names = [part.strip().split("=", 1)[0].lower() for part in cookie.split(";")]
    assert "max-age" not in names
    assert "expires" not in names


def test_a_login_past_its_lifetime_signs_in_no_more_though_the_browser_stayed_open(
    client, tenant, make_user
):
    make_user(tenant, "alice")
    login(client, "clinic-a", "alice")
    assert client.get("/t/clinic-a/").status_code == 200
    # AUTHSERVER_LOGIN_SESSION_LIFETIME later, the browser still sends the cookie.
    db.session.execute(update(LoginSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()

    response = client.get("/t/clinic-a/")

    assert response.status_code == 302
    assert response.headers["Location"].startswith("/t/clinic-a/login")


def test_the_session_row_keeps_only_a_sha256_digest_of_the_cookie(client, tenant, make_user):
    make_user(tenant, "alice")

    token = cookie_value(login_cookie(login(client, "clinic-a", "alice")))

    (row,) = db.session.scalars(select(LoginSession)).all()
    assert row.token_digest == hashlib.sha256(token.encode()).hexdigest()
    stored = {column.name: getattr(row, column.key) for column in LoginSession.__table__.columns}
    assert token not in str(stored)
    assert row.tenant_id == tenant.id


def test_after_login_the_tenant_home_shows_the_user(client, tenant, make_user):
    make_user(tenant, "alice", roles=["nurse"])
    login(client, "clinic-a", "alice")

    page = client.get("/t/clinic-a/").get_data(as_text=True)

    assert "Signed in" in page
    assert "<strong>alice</strong>" in page
    assert "nurse" in page


def test_the_tenant_home_without_a_login_redirects_to_the_login_page(client, tenant):
    response = client.get("/t/clinic-a/")

    assert response.status_code == 302
    assert response.headers["Location"] == "/t/clinic-a/login"


def test_the_username_is_not_case_sensitive(client, tenant, make_user):
    make_user(tenant, "alice")

    assert login(client, "clinic-a", "  Alice ").status_code == 303


# --- Failure ----------------------------------------------------------------------------------


@pytest.fixture
def alice(tenant, make_user):
    return make_user(tenant, "alice")


def disable(tenant, user):
    service.set_status(tenant, user, False)
    db.session.commit()


@pytest.mark.parametrize(
    ("username", "password", "disabled", "reason"),
    [
        ("alice", "not her password", False, "wrong password"),
        ("nobody", DUMMY_PASSWORD, False, "unknown user"),
        ("alice", DUMMY_PASSWORD, True, "disabled"),
    ],
    ids=["wrong-password", "unknown-user", "disabled-user"],
)
def test_a_failed_login_is_a_generic_401_without_a_cookie(
    client, tenant, alice, username, password, disabled, reason
):
    if disabled:
        disable(tenant, alice)

    response = login(client, "clinic-a", username, password)

    assert response.status_code == 401
    page = response.get_data(as_text=True)
    assert f'<p class="error" role="alert">{LOGIN_FAILED}</p>' in page
    assert "disabled" not in page.lower()
    assert login_cookie(response) is None
    assert session_count() == 0
    assert client.get("/t/clinic-a/").status_code == 302
    # The operator's audit log says why; the page above does not.
    failure = db.session.scalars(
        select(AuditRecord).where(AuditRecord.event == "login:failed")
    ).one()
    if reason == "unknown user":  # what was typed is not kept (below)
        assert failure.subject.startswith("unknown-user:")
    else:
        assert failure.subject == username
    assert failure.details == {"reason": reason}


# People type their password where the username goes; a name nobody has is kept as a keyed digest.
TYPED_PASSWORD = "Tr0ub4dor&3-in-the-username-box"


def failed_login_subjects(tenant):
    query = AuditRecord.for_tenant(tenant).where(AuditRecord.event == "login:failed")
    return [record.subject for record in db.session.scalars(query.order_by(AuditRecord.id))]


def test_what_was_typed_as_an_unknown_username_is_neither_stored_nor_logged(
    client, tenant, alice, caplog
):
    caplog.set_level(logging.DEBUG)

    response = login(client, "clinic-a", TYPED_PASSWORD, "not the password")

    assert response.status_code == 401
    (record,) = db.session.scalars(select(AuditRecord).where(AuditRecord.event == "login:failed"))
    assert record.subject.startswith("unknown-user:")
    assert record.details == {"reason": "unknown user"}
    for shown in (str(record.describe()), caplog.text):
        assert TYPED_PASSWORD.lower() not in shown.lower()
        assert "troub4dor" not in shown.lower()
    assert f"login:failed tenant=clinic-a actor=None subject={record.subject}" in caplog.text


def test_repeated_attempts_at_one_unknown_name_can_be_correlated(client, tenant, other_tenant):
    for typed in ("mallory", " Mallory ", "MALLORY", "trudy"):
        login(client, "clinic-a", typed, "not the password")
    login(client, "clinic-b", "mallory", "not the password")

    mallory, *again, trudy = failed_login_subjects(tenant)
    assert again == [mallory, mallory]
    assert trudy != mallory
    # Keyed per tenant: clinic B's log cannot be matched against clinic A's.
    assert failed_login_subjects(other_tenant) != [mallory]


def test_the_digest_of_an_unknown_username_is_keyed_by_the_secret_key(make_app, tenant):
    subject = usernames.unknown_username_subject(tenant, "mallory")
    other_app = make_app(AUTHSERVER_SECRET_KEY="another-session-secret-of-32-chars")

    with other_app.app_context():
        assert usernames.unknown_username_subject(tenant, "mallory") != subject
    assert usernames.unknown_username_subject(tenant, "Mallory") == subject
    assert re.fullmatch(r"unknown-user:[0-9a-f]{32}", subject)


def test_a_known_users_failed_login_keeps_naming_the_user(client, tenant, alice):
    login(client, "clinic-a", " Alice ", "not her password")

    assert failed_login_subjects(tenant) == ["alice"]


@pytest.mark.parametrize("path", ["/t/clinic-a/login", "/t/clinic-a/logout", "/t/clinic-a/"])
def test_the_account_pages_cannot_be_framed(client, tenant, alice, path):
    login(client, "clinic-a", "alice")

    response = client.get(path)

    assert response.status_code == 200
    assert_not_framable(response)


@pytest.mark.parametrize("path", ["/t/clinic-a/login", "/t/clinic-a/logout", "/t/clinic-a/"])
def test_the_account_pages_are_never_stored(client, tenant, alice, path):
    # Each holds a CSRF token, and the signed-in ones who is signed in.
    login(client, "clinic-a", "alice")

    response = client.get(path)

    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"


def test_a_failed_login_page_cannot_be_framed(client, tenant, alice):
    response = login(client, "clinic-a", "alice", "wrong password")

    assert response.status_code == 401
    assert_not_framable(response)


def test_a_disabled_user_loses_their_live_session(client, tenant, alice):
    login(client, "clinic-a", "alice")

    disable(tenant, alice)

    assert client.get("/t/clinic-a/").status_code == 302


def test_a_password_reset_ends_the_users_live_sessions_and_no_one_elses(
    app, client, tenant, alice, make_user
):
    make_user(tenant, "bob")
    second_browser, bobs_browser = app.test_client(), app.test_client()
    token = cookie_value(login_cookie(login(client, "clinic-a", "alice")))
    login(second_browser, "clinic-a", "alice")
    login(bobs_browser, "clinic-a", "bob")

    service.set_password(tenant, alice, "a new sturdy passphrase", actor="cli")
    db.session.commit()

    assert client.get("/t/clinic-a/").status_code == 302
    assert second_browser.get("/t/clinic-a/").status_code == 302
    client.set_cookie(COOKIE_NAME, token, path="/t/clinic-a/")
    assert client.get("/t/clinic-a/").status_code == 302
    assert bobs_browser.get("/t/clinic-a/").status_code == 200
    changed = db.session.scalars(
        select(AuditRecord).where(AuditRecord.event == "user:password-changed")
    ).one()
    assert (changed.subject, changed.details) == ("alice", {"sessions_ended": 2})
    assert login(client, "clinic-a", "alice", "a new sturdy passphrase").status_code == 303
    assert client.get("/t/clinic-a/").status_code == 200


@pytest.mark.parametrize("username", ["nobody", "alice"])
def test_every_failed_login_costs_one_argon2_verification(
    app, client, tenant, alice, monkeypatch, username
):
    passwords = app.extensions["authserver.passwords"]
    expected_hash = passwords.dummy_hash if username == "nobody" else alice.password_hash
    spy = Mock(wraps=passwords.hasher)
    monkeypatch.setattr(passwords, "hasher", spy)

    assert login(client, "clinic-a", username, "not the password").status_code == 401

    assert spy.verify.call_count == 1
    assert spy.verify.call_args.args[0] == expected_hash


@pytest.mark.parametrize("token", [None, "", "not-a-real-token"], ids=["missing", "empty", "wrong"])
def test_a_login_without_a_valid_csrf_token_is_refused(client, tenant, alice, token):
    fields = {"username": "alice", "password": DUMMY_PASSWORD}
    if token is not None:
        fields["csrf_token"] = token
    client.get("/t/clinic-a/login")

    response = client.post("/t/clinic-a/login", data=fields)

    assert response.status_code == 400
    assert "This form has expired" in response.get_data(as_text=True)
    assert login_cookie(response) is None
    assert session_count() == 0


def test_a_login_over_https_works_for_a_browser_following_the_pages_referrer_policy(
    client, tenant, alice
):
    # Over https Flask-WTF refuses a form whose Referer is missing or from another origin.
    page_url = f"{HTTPS}/t/clinic-a/login"
    page = client.get(page_url)

    response = client.post(
        page_url,
        data={
            "username": "alice",
            "password": DUMMY_PASSWORD,
            "csrf_token": csrf_token(page.get_data(as_text=True)),
        },
        headers=form_referer(page, page_url),
    )

    assert response.status_code == 303
    assert login_cookie(response) is not None


def test_a_login_over_https_posted_from_another_site_is_refused(client, tenant, alice):
    page_url = f"{HTTPS}/t/clinic-a/login"
    page = client.get(page_url).get_data(as_text=True)

    response = client.post(
        page_url,
        data={"username": "alice", "password": DUMMY_PASSWORD, "csrf_token": csrf_token(page)},
        headers={"Referer": "https://evil.example/t/clinic-a/login"},
    )

    assert response.status_code == 400
    assert login_cookie(response) is None
    assert session_count() == 0


def test_a_csrf_token_from_another_browser_is_refused(app, client, tenant, alice):
    other_browser = app.test_client()
    token = csrf_token(other_browser.get("/t/clinic-a/login").get_data(as_text=True))
    client.get("/t/clinic-a/login")

    response = post_login(
        client, "clinic-a", username="alice", password=DUMMY_PASSWORD, csrf_token=token
    )

    assert response.status_code == 400
    assert session_count() == 0


@pytest.mark.parametrize(
    ("username", "password"),
    [("a" * 151, DUMMY_PASSWORD), ("alice", "p" * 1025), ("", DUMMY_PASSWORD), ("alice", "")],
    ids=["long-username", "long-password", "no-username", "no-password"],
)
def test_an_over_long_or_missing_field_is_refused_and_nothing_is_stored(
    client, tenant, alice, username, password
):
    audited = audit_count()

    response = post_login(client, "clinic-a", username=username, password=password)

    assert response.status_code == 400
    assert login_cookie(response) is None
    assert session_count() == 0
    assert audit_count() == audited


# --- Where a login goes next ------------------------------------------------------------------


def test_next_inside_the_tenant_is_followed(client, tenant, alice):
    response = post_login(
        client,
        "clinic-a",
        username="alice",
        password=DUMMY_PASSWORD,
        next="/t/clinic-a/authorize?client_id=app_1&state=xyz",
    )

    assert response.status_code == 303
    assert response.headers["Location"] == "/t/clinic-a/authorize?client_id=app_1&state=xyz"


def test_next_from_the_query_string_survives_the_form(client, tenant, alice):
    page = client.get("/t/clinic-a/login?next=/t/clinic-a/somewhere").get_data(as_text=True)

    response = client.post(
        "/t/clinic-a/login",
        data={
            "username": "alice",
            "password": DUMMY_PASSWORD,
            "csrf_token": csrf_token(page),
            "next": re.search(r'name="next" type="hidden" value="([^"]*)"', page).group(1),
        },
    )

    assert response.headers["Location"] == "/t/clinic-a/somewhere"


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/t/clinic-a/",
        "/\\evil.example",
        "/t/clinic-b/",
        "/t/clinic-a/../clinic-b/",
        "/t/clinic-a/%2e%2e/clinic-b/",
        "/t/clinic-a/./../clinic-b/",
        "/t/clinic-a//evil.example",
        "/t/clinic-ab/",
        "javascript:alert(1)",
        "",
    ],
)
def test_next_outside_the_tenant_falls_back_to_the_tenant_home(client, tenant, alice, target):
    response = post_login(
        client, "clinic-a", username="alice", password=DUMMY_PASSWORD, next=target
    )

    assert response.status_code == 303
    assert response.headers["Location"] == "/t/clinic-a/"


@pytest.mark.parametrize(
    "target",
    [
        "/t/clinic-a/\r\n",
        "/t/clinic-a/\r\nSet-Cookie: authserver_login=planted",
        "/t/clinic-a/\n",
        "/t/clinic-a/\t/evil.example",
        "/t/clinic-a/ x",
        "/t/clinic-a/\x7f",
        "/t/clinic-a/\u2028",
    ],
    ids=["crlf", "header-injection", "lf", "tab", "space", "delete", "line-separator"],
)
def test_next_with_a_line_break_or_another_unprintable_character_is_ignored(
    client, tenant, alice, target
):
    """Sent as a link (?next=/t/clinic-a/%0d%0a), a line break once made the sign-in a 500
    after its session was committed and audited, with no cookie to show for it."""
    response = post_login(
        client, "clinic-a", username="alice", password=DUMMY_PASSWORD, next=target
    )

    assert response.status_code == 303
    assert response.headers["Location"] == "/t/clinic-a/"
    assert login_cookie(response) is not None
    assert client.get("/t/clinic-a/").status_code == 200
    assert session_count() == 1


# --- Logout -----------------------------------------------------------------------------------


def test_logout_ends_the_session_and_the_old_cookie_no_longer_logs_in(client, tenant, alice):
    token = cookie_value(login_cookie(login(client, "clinic-a", "alice")))
    home = client.get("/t/clinic-a/").get_data(as_text=True)

    response = client.post("/t/clinic-a/logout", data={"csrf_token": csrf_token(home)})

    assert response.status_code == 303
    assert response.headers["Location"] == "/t/clinic-a/login"
    cleared = login_cookie(response)
    assert cleared is not None and "Path=/t/clinic-a/" in cleared
    assert client.get("/t/clinic-a/").status_code == 302
    client.set_cookie(COOKIE_NAME, token, path="/t/clinic-a/")
    assert client.get("/t/clinic-a/").status_code == 302
    assert service.find_session(tenant, token) is None
    db.session.expire_all()
    assert db.session.scalar(select(LoginSession)).ended_at is not None


def test_signing_in_again_ends_the_previous_login_and_starts_a_fresh_session(
    client, tenant, alice, make_user
):
    make_user(tenant, "bob")
    first = cookie_value(login_cookie(login(client, "clinic-a", "alice")))
    client.get("/t/clinic-a/")  # a page with a form (logout): the session holds a CSRF secret
    with client.session_transaction("/t/clinic-a/") as flask_session:
        csrf_secret = flask_session.get("csrf_token")
    assert csrf_secret

    second = cookie_value(login_cookie(login(client, "clinic-a", "bob")))

    assert service.find_session(tenant, first) is None  # ended, not just forgotten
    assert service.find_session(tenant, second).user.username == "bob"
    db.session.expire_all()
    ended = db.session.scalars(select(LoginSession).where(LoginSession.ended_at.is_not(None)))
    assert [row.user.username for row in ended] == ["alice"]
    client.get("/t/clinic-a/")
    with client.session_transaction("/t/clinic-a/") as flask_session:
        assert flask_session.get("csrf_token") not in (None, csrf_secret)


def test_logout_over_https_works_for_a_browser_following_the_pages_referrer_policy(
    client, tenant, alice
):
    login(client, "clinic-a", "alice")
    page_url = f"{HTTPS}/t/clinic-a/"
    home = client.get(page_url)

    response = client.post(
        f"{HTTPS}/t/clinic-a/logout",
        data={"csrf_token": csrf_token(home.get_data(as_text=True))},
        headers=form_referer(home, page_url),
    )

    assert response.status_code == 303
    assert client.get(page_url).status_code == 302


def test_logout_without_a_csrf_token_keeps_the_session(client, tenant, alice):
    login(client, "clinic-a", "alice")

    response = client.post("/t/clinic-a/logout", data={})

    assert response.status_code == 400
    assert client.get("/t/clinic-a/").status_code == 200


# --- Rehash on login --------------------------------------------------------------------------


def test_a_login_rehashes_a_password_made_with_other_argon2_parameters(make_app, tenant, alice):
    old_hash = alice.password_hash
    assert ",t=1," in old_hash
    stronger = make_app(
        AUTHSERVER_ARGON2_TIME_COST=2, AUTHSERVER_ARGON2_MEMORY_COST=2048
    ).test_client()

    assert login(stronger, "clinic-a", "alice").status_code == 303

    db.session.expire_all()
    new_hash = service.find_user(tenant, "alice").password_hash
    assert new_hash != old_hash
    assert new_hash.startswith("$argon2id$")
    assert "$m=2048,t=2,p=1$" in new_hash
    assert PasswordHasher().verify(new_hash, DUMMY_PASSWORD)


def test_a_login_with_the_same_parameters_keeps_the_hash(client, tenant, alice):
    old_hash = alice.password_hash

    login(client, "clinic-a", "alice")

    db.session.expire_all()
    assert service.find_user(tenant, "alice").password_hash == old_hash


# --- Branding ---------------------------------------------------------------------------------


def test_the_login_page_shows_the_tenants_branding_and_no_other_tenants(
    client, tenant, other_tenant
):
    tenants.brand(
        tenant,
        display_name="Riverside Family Clinic",
        primary_color="#1f6feb",
        logo_url="https://cdn.riverside.example/logo.png",
        support_contact="help@riverside.example",
    )
    tenants.brand(
        other_tenant,
        display_name="Hillcrest Community Hospital",
        primary_color="#8250df",
        logo_url="https://cdn.hillcrest.example/logo.png",
        support_contact="desk@hillcrest.example",
    )
    db.session.commit()

    page = client.get("/t/clinic-a/login").get_data(as_text=True)

    assert "Riverside Family Clinic" in page
    assert "#1f6feb" in page
    assert 'src="https://cdn.riverside.example/logo.png"' in page
    assert "help@riverside.example" in page
    for other in ("Hillcrest", "#8250df", "cdn.hillcrest.example", "desk@hillcrest.example"):
        assert other not in page


@pytest.mark.parametrize("name", ["login.html", "accounts/login.html"])
def test_a_tenant_template_override_is_used_for_that_tenant_only(
    make_app, tenant, other_tenant, tmp_path, name
):
    overrides = tmp_path / "overrides"
    template = overrides / "tenants" / "clinic-a" / name
    template.parent.mkdir(parents=True)
    template.write_text(
        "<h1>Custom sign-in for {{ tenant.display_name }}</h1>{{ form.csrf_token }}"
    )
    browser = make_app(AUTHSERVER_TEMPLATE_DIR=str(overrides)).test_client()

    own = browser.get("/t/clinic-a/login")
    other = browser.get("/t/clinic-b/login")

    assert own.status_code == 200
    assert "Custom sign-in for Clinic A" in own.get_data(as_text=True)
    assert other.status_code == 200
    assert "Custom sign-in" not in other.get_data(as_text=True)
    assert "Sign in" in other.get_data(as_text=True)

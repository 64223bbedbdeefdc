"""Every authorization-endpoint check of SMART-REQUIREMENTS §1.3, each with its exact error."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs
from urllib.parse import parse_qsl
from urllib.parse import urlencode
from urllib.parse import urlsplit

import jwt
import pytest
from sqlalchemy import update
from werkzeug.datastructures import MultiDict

from authserver.accounts.models import LoginSession
from authserver.clients import service as clients
from authserver.clients.metadata import MAX_SCOPES
from authserver.errors import ValidationError
from authserver.extensions import db
from authserver.launch import service as launches
from authserver.models import utcnow
from authserver.oauth.models import AuthorizationCode
from tests.fixtures.accounts import DUMMY_PASSWORD
from tests.fixtures.accounts import HTTPS
from tests.fixtures.accounts import assert_not_framable
from tests.fixtures.accounts import csrf_token
from tests.fixtures.accounts import form_referer
from tests.fixtures.accounts import login
from tests.fixtures.live import consent_boxes
from tests.oauth.conftest import REDIRECT_URI
from tests.oauth.conftest import authorization_params
from tests.oauth.conftest import authorize
from tests.oauth.conftest import consent_form
from tests.oauth.conftest import exchange
from tests.oauth.conftest import fhir_base
from tests.oauth.conftest import redirect_params
from tests.oauth.conftest import set_policy


@pytest.fixture
def signed_in(client, clinic):
    login(client, clinic.slug, "pat")
    return client


def error_page(response, code: str) -> None:
    """Shown, never redirected (RFC 6749 §4.1.2.1)."""
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert f'<code class="error-code">{code}</code>' in response.get_data(as_text=True)


def error_redirect(response, code: str, state: str = "state-123") -> dict:
    params = redirect_params(response)
    assert params["error"] == code
    assert params.get("state") == state
    assert "code" not in params
    return params


# --- AUTHZ-01, 03, 04: the happy path keeps state and the redirect URI's own query -----------


def test_approved_request_redirects_with_code_and_state(signed_in, clinic):
    params = redirect_params(authorize(signed_in, clinic, authorization_params(clinic)))
    assert params["code"].startswith("asac_")
    assert params["state"] == "state-123"


def test_state_round_trips_byte_for_byte(signed_in, clinic):
    state = "a+b/c=d~ é&x=%41"
    response = authorize(signed_in, clinic, authorization_params(clinic, state=state))
    assert redirect_params(response)["state"] == state


def test_redirect_uri_query_is_kept(signed_in, clinic, make_client):
    uri = "https://app.example.test/cb?x=1"
    app = make_client(clinic.tenant, redirect_uris=[uri]).client
    response = authorize(signed_in, clinic, authorization_params(clinic, app, redirect_uri=uri))
    location = urlsplit(response.headers["Location"])
    query = parse_qs(location.query)
    assert location.path == "/cb" and query["x"] == ["1"] and "code" in query
    assert not location.fragment


def test_authorize_answers_without_cors(signed_in, clinic):
    response = signed_in.get(
        "/t/clinic-a/authorize",
        query_string=authorization_params(clinic),
        headers={"Origin": "https://app.example.test"},
    )
    assert "Access-Control-Allow-Origin" not in response.headers


# --- AUTHZ-05/06/07: bad client or redirect URI: an error page, never a redirect -------------


def test_unknown_client_gets_an_error_page(signed_in, clinic):
    error_page(
        signed_in.get(
            "/t/clinic-a/authorize", query_string=authorization_params(clinic, client_id="nope")
        ),
        "invalid_client",
    )


def test_missing_client_id_gets_an_error_page(signed_in, clinic):
    params = authorization_params(clinic, client_id=None)
    error_page(signed_in.get("/t/clinic-a/authorize", query_string=params), "invalid_client")


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://evil.example/callback",
        REDIRECT_URI + "/",
        "http://app.example.test/callback",
        "https://APP.example.test/callback",
        "https://app.example.test/Callback",
        "https://app.example.test:8443/callback",
        REDIRECT_URI + "?extra=1",
        # Characters an error_description may not hold (RFC 6749 §4.1.2.1): a page, not a 500.
        'https://evil.example/"cb',
        "https://evil.example/cb\\x",
        "https://évil.example/cb",
    ],
    ids=[
        "other",
        "trailing-slash",
        "scheme",
        "host-case",
        "path-case",
        "port",
        "extra-query",
        "quote",
        "backslash",
        "non-ascii",
    ],
)
def test_unregistered_redirect_uri_gets_an_error_page(signed_in, clinic, redirect_uri):
    params = authorization_params(clinic, redirect_uri=redirect_uri)
    error_page(signed_in.get("/t/clinic-a/authorize", query_string=params), "invalid_request")


def test_missing_redirect_uri_gets_an_error_page(signed_in, clinic):
    params = authorization_params(clinic, redirect_uri=None)
    error_page(signed_in.get("/t/clinic-a/authorize", query_string=params), "invalid_request")


def test_client_of_another_tenant_is_unknown(signed_in, clinic, other_clinic):
    params = authorization_params(clinic, other_clinic.public_app)
    error_page(signed_in.get("/t/clinic-a/authorize", query_string=params), "invalid_client")


# --- AUTHZ-08/09/10: aud --------------------------------------------------------------------


def test_foreign_aud_gets_no_code(signed_in, clinic):
    params = authorization_params(clinic, aud="https://inferno.healthit.gov/invalid_aud")
    error_redirect(signed_in.get("/t/clinic-a/authorize", query_string=params), "invalid_request")


def test_aud_of_another_tenant_gets_no_code(signed_in, clinic):
    params = authorization_params(clinic, aud=fhir_base("clinic-b"))
    error_redirect(signed_in.get("/t/clinic-a/authorize", query_string=params), "invalid_request")


def test_missing_aud_is_invalid_request(signed_in, clinic):
    params = authorization_params(clinic, aud=None)
    error_redirect(signed_in.get("/t/clinic-a/authorize", query_string=params), "invalid_request")


def test_aud_with_trailing_slash_is_accepted(signed_in, clinic):
    params = authorization_params(clinic, aud=fhir_base("clinic-a") + "/")
    assert "code" in redirect_params(authorize(signed_in, clinic, params))


# --- AUTHZ-11, 19: response type and grant ---------------------------------------------------


def test_token_response_type_is_unsupported(signed_in, clinic):
    params = authorization_params(clinic, response_type="token")
    error_redirect(
        signed_in.get("/t/clinic-a/authorize", query_string=params), "unsupported_response_type"
    )


@pytest.mark.parametrize(
    "response_type",
    ['token"', "code\\", "cödé", "code\nforged"],
    ids=["quote", "backslash", "non-ascii", "newline"],
)
def test_odd_response_type_is_unsupported_not_a_500(signed_in, clinic, caplog, response_type):
    params = authorization_params(clinic, response_type=response_type)
    with caplog.at_level(logging.INFO, logger="authserver.oauth.server"):
        response = signed_in.get("/t/clinic-a/authorize", query_string=params)
    error = error_redirect(response, "unsupported_response_type")
    assert error["error_description"] == "The response type is not supported by the server."
    assert ascii(response_type) in caplog.text  # logged, escaped


def test_missing_response_type_is_invalid_request(signed_in, clinic):
    params = authorization_params(clinic, response_type=None)
    error_redirect(signed_in.get("/t/clinic-a/authorize", query_string=params), "invalid_request")


BAD_RESPONSE_TYPES = pytest.mark.parametrize(
    "response_type, error",
    [("token", "unsupported_response_type"), (None, "invalid_request")],
    ids=["token", "missing"],
)


@BAD_RESPONSE_TYPES
def test_a_bad_response_type_never_redirects_to_an_unregistered_uri(
    signed_in, clinic, response_type, error
):
    """AUTHZ-05 before AUTHZ-11: the response type is refused before the grant checks the
    redirect URI, and the refusal goes back only to a URI the client registered."""
    params = authorization_params(
        clinic, response_type=response_type, redirect_uri="https://evil.example/callback"
    )
    error_page(signed_in.get("/t/clinic-a/authorize", query_string=params), error)


@BAD_RESPONSE_TYPES
@pytest.mark.parametrize("client_id", ["unknown", "other-tenants", "missing"])
def test_a_bad_response_type_of_no_client_here_never_redirects(
    signed_in, clinic, other_clinic, response_type, error, client_id
):
    """AUTHZ-06: with no client of this tenant, no redirect URI is verified, not even one
    another tenant's client registered (``REDIRECT_URI``, as this request's). With the client's
    own registered URI the error is redirected (``test_token_response_type_is_unsupported``)."""
    client_ids = {"unknown": "app_nope", "other-tenants": other_clinic.public_app.client_id}
    params = authorization_params(
        clinic, response_type=response_type, client_id=client_ids.get(client_id)
    )
    error_page(signed_in.get("/t/clinic-a/authorize", query_string=params), error)


def test_client_without_the_code_grant_is_unauthorized(signed_in, clinic, make_backend_client):
    backend = make_backend_client(
        clinic.tenant, redirect_uris=[REDIRECT_URI], grant_types=["client_credentials"]
    ).registration.client
    params = authorization_params(clinic, backend)
    error_redirect(
        signed_in.get("/t/clinic-a/authorize", query_string=params), "unauthorized_client"
    )


# --- AUTHZ-12/13/14: PKCE -------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"code_challenge": None},
        {"code_challenge": None, "code_challenge_method": None},
        {"code_challenge_method": "plain"},
        {"code_challenge_method": None},
        {"code_challenge": "too-short"},
        {"code_challenge": "a" * 42 + "="},
        {"code_challenge": "a" * 42 + "+"},
        {"code_challenge": "a" * 44},
    ],
    ids=[
        "challenge-missing",
        "pkce-missing",
        "plain",
        "method-missing",
        "short",
        "padding",
        "plus",
        "not-s256-length",
    ],
)
def test_pkce_faults_are_invalid_request(signed_in, clinic, overrides):
    params = authorization_params(clinic, **overrides)
    error_redirect(signed_in.get("/t/clinic-a/authorize", query_string=params), "invalid_request")


def test_confidential_app_without_pkce_is_refused(signed_in, clinic):
    params = authorization_params(
        clinic, clinic.confidential_app, code_challenge=None, code_challenge_method=None
    )
    error_redirect(signed_in.get("/t/clinic-a/authorize", query_string=params), "invalid_request")


def test_legacy_smart_v1_confidential_app_may_omit_pkce(signed_in, clinic):
    set_policy(clinic.tenant, clinic.confidential_app, legacy_smart_v1=True)
    params = authorization_params(
        clinic, clinic.confidential_app, code_challenge=None, code_challenge_method=None
    )
    assert "code" in redirect_params(authorize(signed_in, clinic, params))


def test_legacy_smart_v1_app_still_may_not_use_plain(signed_in, clinic):
    set_policy(clinic.tenant, clinic.confidential_app, legacy_smart_v1=True)
    params = authorization_params(clinic, clinic.confidential_app, code_challenge_method="plain")
    error_redirect(signed_in.get("/t/clinic-a/authorize", query_string=params), "invalid_request")


def test_public_app_can_never_be_legacy(clinic):
    with pytest.raises(ValidationError):
        set_policy(clinic.tenant, clinic.public_app, legacy_smart_v1=True)


# --- AUTHZ-15, SCOPE-12: scopes --------------------------------------------------------------


@pytest.mark.parametrize("scope", [None, "", "patient/Observation.x bogus/scope"])
def test_no_valid_scope_is_invalid_scope(signed_in, clinic, scope):
    params = authorization_params(clinic, scope=scope)
    error_redirect(signed_in.get("/t/clinic-a/authorize", query_string=params), "invalid_scope")


def test_a_request_of_more_scopes_than_an_app_may_register_is_invalid_scope(signed_in, clinic):
    # Narrowing and consent take time quadratic in the scopes: 3,000 took 8 s of a worker.
    # Short ones (extension scopes), to stay within the length a token carries.
    scopes = [f"__s{number}" for number in range(MAX_SCOPES)]
    params = authorization_params(clinic, scope=" ".join(["launch/patient", *scopes[1:]]))
    assert "code" in redirect_params(authorize(signed_in, clinic, params))

    params = authorization_params(clinic, scope=" ".join(["launch/patient", *scopes]))
    error_redirect(signed_in.get("/t/clinic-a/authorize", query_string=params), "invalid_scope")


def test_malformed_scopes_are_dropped(signed_in, clinic, client):
    params = authorization_params(clinic, scope="openid patient/Observation.dus launch/patient")
    page = signed_in.get("/t/clinic-a/authorize", query_string=params).get_data(as_text=True)
    assert "patient/Observation.dus" not in page
    assert 'value="openid"' in page


def test_an_app_registered_with_only_unparseable_scopes_is_restricted_to_nothing(signed_in, clinic):
    # A registration stored before scopes were checked at registration: none of it parses.
    clinic.public_app.allowed_scope = "patient/Observation.sr patient/observation.rs"
    db.session.commit()
    params = authorization_params(clinic, scope="launch/patient openid patient/*.rs")

    error_redirect(signed_in.get("/t/clinic-a/authorize", query_string=params), "invalid_scope")


def test_nothing_grantable_to_the_user_is_invalid_scope(signed_in, clinic):
    params = authorization_params(clinic, scope="user/Observation.rs system/*.rs")
    error_redirect(signed_in.get("/t/clinic-a/authorize", query_string=params), "invalid_scope")


LABORATORY = (
    "patient/Observation.rs?category="
    "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
)
FORM = "application/x-www-form-urlencoded"


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_granular_scopes_arrive_decoded_and_are_echoed_exactly(signed_in, clinic, method):
    """SCOPE-05: a granular scope travels percent-encoded (``?``, ``=``, ``|``, ``&``, ``:``,
    ``/``), in the URL of a GET as in the body of a POST (``authorize-post``), and the token
    response names it exactly as the app spelt it: with a code system, without one, and with
    two ``&``-joined constraints."""
    scope = f"launch/patient {LABORATORY} patient/Observation.rs?category=vital-signs&status=final"
    encoded = urlencode(authorization_params(clinic, scope=scope))  # every reserved character
    assert "%3F" in encoded and "%7C" in encoded and "%26" in encoded and "%3A%2F%2F" in encoded
    if method == "POST":
        moved = signed_in.post("/t/clinic-a/authorize", data=encoded, content_type=FORM)
        assert moved.status_code == 303
        encoded = urlsplit(moved.headers["Location"]).query

    body = exchange(signed_in, clinic, approved_code(signed_in, encoded), "v" * 43).json

    assert body["scope"] == scope
    assert jwt.decode(body["access_token"], options={"verify_signature": False})["scope"] == scope


def test_extension_scopes_are_echoed_when_granted(signed_in, clinic):
    """SCOPE-11: extension scopes (a full URI, or a ``__`` prefix) the app is registered for
    and the user allowed are in the granted ``scope`` as sent."""
    scope = "launch/patient __app_feature https://example.org/scopes/export patient/Patient.rs"
    clients.set_scopes(clinic.tenant, clinic.public_app.client_id, scope.split())
    db.session.commit()
    response = authorize(signed_in, clinic, authorization_params(clinic, scope=scope))

    body = exchange(signed_in, clinic, redirect_params(response)["code"], "v" * 43).json

    assert body["scope"] == scope


EXTENSION_REQUEST = (
    "launch/patient openid offline_access patient/*.rs __admin https://rs.example/scopes/superuser"
)


def test_an_app_registered_without_scopes_is_offered_no_extension_scope(signed_in, clinic):
    """An extension scope is a resource server's own permission, which no role ceiling bounds:
    an app registered without ``--scope`` is offered its SMART and OpenID scopes, and not
    ``__admin`` for a patient, nor any URI scope; a forged box for one grants nothing."""
    params = authorization_params(clinic, scope=EXTENSION_REQUEST)
    page = signed_in.get("/t/clinic-a/authorize", query_string=params).get_data(as_text=True)
    offered = [value for value, _ in consent_boxes(page)]

    response = signed_in.post(
        "/t/clinic-a/authorize",
        query_string=params,
        data=consent_form(page, extra=["__admin", "https://rs.example/scopes/superuser"]),
    )
    body = exchange(signed_in, clinic, redirect_params(response)["code"], "v" * 43).json

    assert "offline_access" in offered
    assert not {"__admin", "https://rs.example/scopes/superuser"} & set(offered)
    assert body["scope"] == "launch/patient openid offline_access patient/*.rs"
    assert "refresh_token" in body  # offline_access needs no registration, as before


def test_a_trusted_app_registered_without_scopes_gets_no_extension_scope(signed_in, clinic):
    set_policy(clinic.tenant, clinic.public_app, trusted=True)
    params = authorization_params(clinic, scope=EXTENSION_REQUEST)

    response = signed_in.get("/t/clinic-a/authorize", query_string=params)
    body = exchange(signed_in, clinic, redirect_params(response)["code"], "v" * 43).json

    assert body["scope"] == "launch/patient openid offline_access patient/*.rs"


def test_an_app_asking_only_for_extension_scopes_it_is_not_registered_for_is_invalid_scope(
    signed_in, clinic, make_client
):
    registered = make_client(
        clinic.tenant, redirect_uris=[REDIRECT_URI], scopes=["launch/patient", "__read_notes"]
    ).client
    for app in (clinic.public_app, registered):
        params = authorization_params(clinic, app, scope="__admin")
        error_redirect(signed_in.get("/t/clinic-a/authorize", query_string=params), "invalid_scope")


def approved_code(client, query: str) -> str:
    """The code of the authorization request ``query`` (as encoded) once the user allows it."""
    page = client.get(f"/t/clinic-a/authorize?{query}").get_data(as_text=True)
    response = client.post(f"/t/clinic-a/authorize?{query}", data=consent_form(page))
    return redirect_params(response)["code"]


# --- AUTHZ-16: denial -----------------------------------------------------------------------


def test_user_denies(signed_in, clinic):
    response = authorize(signed_in, clinic, authorization_params(clinic), decision="deny")
    error_redirect(response, "access_denied")


def test_user_unticking_everything_is_a_denial(signed_in, clinic):
    response = authorize(
        signed_in,
        clinic,
        authorization_params(clinic, scope="openid patient/Patient.rs"),
        untick=("openid", "patient/Patient.rs"),
    )
    error_redirect(response, "access_denied")


# --- AUTHZ-18: repeated parameters ----------------------------------------------------------


@pytest.mark.parametrize("name", ["scope", "state", "redirect_uri", "response_type"])
def test_repeated_oauth_parameter_is_invalid_request(signed_in, clinic, name):
    params = list(authorization_params(clinic).items()) + [(name, "again")]
    error_page(signed_in.get("/t/clinic-a/authorize", query_string=params), "invalid_request")


@pytest.mark.parametrize("name", ["aud", "code_challenge", "nonce", "max_age"])
def test_repeated_smart_parameter_is_invalid_request(signed_in, clinic, name):
    params = list(authorization_params(clinic, nonce="n").items()) + [(name, "again")]
    error_redirect(signed_in.get("/t/clinic-a/authorize", query_string=params), "invalid_request")


def send_authorization_request(browser, params: list[tuple[str, str]], sent_by: str) -> Any:
    """Send ``params`` as an app would: a GET, or a form POST (``authorize-post``), whose 303 the
    browser follows; ``post-and-url`` posts the form to a URL already holding the last one."""
    if sent_by == "GET":
        return browser.get("/t/clinic-a/authorize", query_string=params)
    in_url = params[-1:] if sent_by == "post-and-url" else []
    in_form = params[:-1] if sent_by == "post-and-url" else params
    posted = browser.post("/t/clinic-a/authorize", query_string=in_url, data=MultiDict(in_form))
    assert posted.status_code == 303
    return browser.get(posted.headers["Location"])


@pytest.mark.parametrize("sent_by", ["GET", "POST", "post-and-url"])
@pytest.mark.parametrize("name", ["launch", "code_challenge_method", "prompt"])
def test_a_repeated_launch_pkce_method_or_prompt_is_invalid_request(
    signed_in, clinic, name, sent_by
):
    """AUTHZ-18: a second ``launch``, ``code_challenge_method`` or ``prompt`` is refused, even one
    repeating the first (each alone would be served: the consent page, a new sign-in), however
    the request came; the refusal goes to the verified redirect URI with ``state``."""
    launch_id, _ = launches.create_launch(
        clinic.tenant, patient="p-clinic-a", client_id=clinic.public_app.client_id, actor="ehr"
    )
    db.session.commit()
    once = {"launch": launch_id, "code_challenge_method": "S256", "prompt": "login"}
    params = authorization_params(clinic, scope="launch openid patient/*.rs", launch=launch_id)
    sent = [*{**params, name: once[name]}.items(), (name, once[name])]

    response = send_authorization_request(signed_in, sent, sent_by)

    error = error_redirect(response, "invalid_request")
    assert error["error_description"] == f"Multiple '{name}' in request."
    assert "code" in redirect_params(authorize(signed_in, clinic, params))  # the launch is unspent


def test_unknown_parameters_are_ignored(signed_in, clinic):
    params = authorization_params(clinic, color="blue")
    assert "code" in redirect_params(authorize(signed_in, clinic, params))


@pytest.mark.parametrize("state", [None, ""], ids=["missing", "empty"])
def test_a_request_without_state_gets_a_code_and_no_state(signed_in, clinic, state):
    """AUTHZ-21: a request without ``state`` is served (the server MAY refuse it; SMART obliges
    the app to send one). AUTHZ-18: ``state=`` counts as not sent (RFC 6749 §3.1), and the
    redirect carries ``state`` only when the request had one (§4.1.2)."""
    response = authorize(signed_in, clinic, authorization_params(clinic, state=state))

    query = parse_qs(urlsplit(response.headers["Location"]).query, keep_blank_values=True)
    assert query["code"] and "state" not in query


# --- Sign-in and consent ---------------------------------------------------------------------


def test_anonymous_user_is_sent_to_the_tenant_login_with_next(client, clinic):
    response = client.get("/t/clinic-a/authorize", query_string=authorization_params(clinic))
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert location.path == "/t/clinic-a/login"
    following = parse_qs(location.query)["next"][0]
    assert following.startswith("/t/clinic-a/authorize?")
    assert parse_qs(urlsplit(following).query)["state"] == ["state-123"]


def test_prompt_none_without_login_is_login_required(client, clinic):
    params = authorization_params(clinic, prompt="none", scope="openid patient/Patient.rs")
    error_redirect(client.get("/t/clinic-a/authorize", query_string=params), "login_required")


# --- OpenID Connect Core §3.1.2.1: prompt=login and max_age ask for a new sign-in ------------

REAUTHENTICATION = pytest.mark.parametrize(
    "extra", [{"prompt": "login"}, {"max_age": "0"}], ids=["prompt-login", "max-age-0"]
)


def sent_to_sign_in(response) -> str:
    """The authorization request the sign-in page will continue with."""
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert location.path == "/t/clinic-a/login"
    return parse_qs(location.query)["next"][0]


def sign_in_again(client, following: str) -> dict:
    """Sign in through the page, as sent there; the request the login then continues."""
    page = client.get("/t/clinic-a/login", query_string={"next": following})
    response = client.post(
        "/t/clinic-a/login",
        data={
            "username": "pat",
            "password": DUMMY_PASSWORD,
            "csrf_token": csrf_token(page.get_data(as_text=True)),
            "next": following,
        },
    )
    assert response.status_code == 303
    location = urlsplit(response.headers["Location"])
    assert location.path == "/t/clinic-a/authorize"
    return dict(parse_qsl(location.query))


@REAUTHENTICATION
def test_reauthentication_sends_a_signed_in_user_to_sign_in_again(signed_in, clinic, extra):
    params = authorization_params(clinic, scope="openid patient/Patient.rs", **extra)
    following = sent_to_sign_in(signed_in.get("/t/clinic-a/authorize", query_string=params))
    assert parse_qs(urlsplit(following).query)["state"] == ["state-123"]
    # The old login does not answer it: the way back leads to the sign-in page again.
    assert sent_to_sign_in(signed_in.get(following))


@REAUTHENTICATION
def test_after_signing_in_again_the_flow_completes(signed_in, clinic, extra):
    params = authorization_params(clinic, scope="openid patient/Patient.rs", **extra)
    following = sent_to_sign_in(signed_in.get("/t/clinic-a/authorize", query_string=params))
    resumed = sign_in_again(signed_in, following)
    code = redirect_params(authorize(signed_in, clinic, resumed))["code"]
    logins = db.session.scalars(LoginSession.for_tenant(clinic.tenant).order_by(LoginSession.id))
    first, newest = logins.all()
    row = db.session.scalar(AuthorizationCode.for_tenant(clinic.tenant))
    assert row.login_session_id == newest.id != first.id
    body = exchange(signed_in, clinic, code, "v" * 43).json
    claims = jwt.decode(body["id_token"], options={"verify_signature": False})
    assert claims["auth_time"] == int(newest.auth_time.timestamp())


def test_signing_in_again_answers_only_the_request_that_asked(signed_in, clinic):
    params = authorization_params(clinic, scope="openid patient/Patient.rs", prompt="login")
    resumed = sign_in_again(
        signed_in,
        sent_to_sign_in(signed_in.get("/t/clinic-a/authorize", query_string=params)),
    )
    another = {**resumed, "state": "another-request"}
    assert sent_to_sign_in(signed_in.get("/t/clinic-a/authorize", query_string=another))
    forged = {**resumed, "reauthentication": resumed["reauthentication"] + "x"}
    assert sent_to_sign_in(signed_in.get("/t/clinic-a/authorize", query_string=forged))


@REAUTHENTICATION
def test_a_user_not_yet_signed_in_signs_in_once(client, clinic, extra):
    # The sign-in the request sent them to is the new one it asked for.
    params = authorization_params(clinic, scope="openid patient/Patient.rs", **extra)
    resumed = sign_in_again(
        client, sent_to_sign_in(client.get("/t/clinic-a/authorize", query_string=params))
    )
    assert redirect_params(authorize(client, clinic, resumed))["code"]


@pytest.mark.parametrize("max_age, signs_in", [("3600", True), ("86400", False)])
def test_max_age_counts_from_the_login(signed_in, clinic, max_age, signs_in):
    db.session.execute(update(LoginSession).values(created_at=utcnow() - timedelta(hours=2)))
    db.session.commit()
    params = authorization_params(clinic, scope="openid patient/Patient.rs", max_age=max_age)
    response = signed_in.get("/t/clinic-a/authorize", query_string=params)
    assert (response.status_code == 302) is signs_in
    if signs_in:
        sent_to_sign_in(response)


def test_prompt_none_with_max_age_elapsed_is_login_required(signed_in, clinic):
    params = authorization_params(
        clinic, scope="openid patient/Patient.rs", prompt="none", max_age="0"
    )
    error_redirect(signed_in.get("/t/clinic-a/authorize", query_string=params), "login_required")


@pytest.mark.parametrize("max_age", ["soon", "-1", "1.5", "1" * 11])
def test_max_age_must_be_whole_seconds(signed_in, clinic, max_age):
    params = authorization_params(clinic, scope="openid patient/Patient.rs", max_age=max_age)
    error_redirect(signed_in.get("/t/clinic-a/authorize", query_string=params), "invalid_request")


def test_an_empty_max_age_is_as_if_absent(signed_in, clinic):
    # AUTHZ-18 / RFC 6749 §3.1: sent without a value, a parameter is treated as omitted.
    params = authorization_params(clinic, scope="openid patient/Patient.rs", max_age="")
    page = signed_in.get("/t/clinic-a/authorize", query_string=params)
    assert page.status_code == 200  # the consent page, neither an error nor a new sign-in
    assert 'name="decision"' in page.get_data(as_text=True)


def test_login_at_another_tenant_is_not_a_login_here(client, clinic, other_clinic):
    login(client, "clinic-b", "pat")
    response = client.get("/t/clinic-a/authorize", query_string=authorization_params(clinic))
    assert urlsplit(response.headers["Location"]).path == "/t/clinic-a/login"


def test_consent_lists_scopes_in_plain_words(signed_in, clinic):
    params = authorization_params(
        clinic, scope="openid fhirUser patient/Observation.rs?category=laboratory launch/patient"
    )
    page = signed_in.get("/t/clinic-a/authorize", query_string=params).get_data(as_text=True)
    assert "Read and search your lab results" in page
    assert "Know who you are" in page
    assert page.count('name="grant"') == 3  # openid and fhirUser share one box


def test_consent_post_without_csrf_token_is_refused(signed_in, clinic):
    params = authorization_params(clinic)
    signed_in.get("/t/clinic-a/authorize", query_string=params)
    response = signed_in.post(
        "/t/clinic-a/authorize",
        query_string=params,
        data={"csrf_token": "forged", "decision": "allow", "grant": "openid"},
    )
    assert response.status_code == 400
    assert "Location" not in response.headers


def test_the_consent_page_cannot_be_framed(signed_in, clinic):
    response = signed_in.get("/t/clinic-a/authorize", query_string=authorization_params(clinic))

    assert 'name="decision"' in response.get_data(as_text=True)
    assert_not_framable(response)


def test_an_authorization_error_page_cannot_be_framed(signed_in, clinic):
    params = authorization_params(clinic, redirect_uri="https://evil.example/cb")

    response = signed_in.get("/t/clinic-a/authorize", query_string=params)

    error_page(response, "invalid_request")
    assert_not_framable(response)


def test_the_consent_page_and_the_code_redirect_are_never_stored(signed_in, clinic):
    # The page may list patients by name; the redirect carries the code. Neither may stay in a
    # browser's or a proxy's cache (RFC 9111 §5.2.2.5).
    params = authorization_params(clinic)
    page = signed_in.get("/t/clinic-a/authorize", query_string=params)
    assert 'name="decision"' in page.get_data(as_text=True)

    redirect = signed_in.post(
        "/t/clinic-a/authorize",
        query_string=params,
        data=consent_form(page.get_data(as_text=True)),
    )

    assert "code" in redirect_params(redirect)
    for response in (page, redirect):
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Pragma"] == "no-cache"


def test_consent_over_https_works_for_a_browser_following_the_pages_referrer_policy(
    signed_in, clinic
):
    # Over https Flask-WTF refuses a form whose Referer is missing or from another origin.
    page_url = f"{HTTPS}/t/clinic-a/authorize?{urlencode(authorization_params(clinic))}"
    page = signed_in.get(page_url)

    response = signed_in.post(
        page_url,
        data=consent_form(page.get_data(as_text=True)),
        headers=form_referer(page, page_url),
    )

    assert "code" in redirect_params(response)


def test_consent_over_https_posted_from_another_site_is_refused(signed_in, clinic):
    page_url = f"{HTTPS}/t/clinic-a/authorize?{urlencode(authorization_params(clinic))}"
    page = signed_in.get(page_url).get_data(as_text=True)

    response = signed_in.post(
        page_url, data=consent_form(page), headers={"Referer": "https://evil.example/consent"}
    )

    assert response.status_code == 400
    assert "Location" not in response.headers


def test_unticked_scope_is_not_granted(signed_in, clinic):
    params = authorization_params(clinic, scope="openid fhirUser patient/Observation.rs")
    code = redirect_params(authorize(signed_in, clinic, params, untick=("patient/Observation.rs",)))
    row = db.session.scalar(AuthorizationCode.for_tenant(clinic.tenant))
    assert row.scope == "openid fhirUser"
    assert code["code"]


def test_trusted_app_skips_consent(signed_in, clinic):
    set_policy(clinic.tenant, clinic.public_app, trusted=True)
    response = signed_in.get("/t/clinic-a/authorize", query_string=authorization_params(clinic))
    assert "code" in redirect_params(response)


def test_trusted_app_asking_for_consent_gets_the_consent_page(signed_in, clinic):
    # OIDC Core §3.1.2.1: prompt=consent, the user is asked, whatever the app's policy.
    set_policy(clinic.tenant, clinic.public_app, trusted=True)
    params = authorization_params(clinic, prompt="consent")

    page = signed_in.get("/t/clinic-a/authorize", query_string=params)

    assert page.status_code == 200 and 'name="decision"' in page.get_data(as_text=True)
    assert "code" in redirect_params(authorize(signed_in, clinic, params))
    denied = authorize(signed_in, clinic, params, decision="deny")
    error_redirect(denied, "access_denied")


def test_prompt_none_with_consent_due_is_consent_required(signed_in, clinic):
    params = authorization_params(clinic, prompt="none")
    error_redirect(signed_in.get("/t/clinic-a/authorize", query_string=params), "consent_required")


def test_authorize_post_continues_as_get(signed_in, clinic):
    params = authorization_params(clinic)
    response = signed_in.post("/t/clinic-a/authorize", data=params)
    assert response.status_code == 303
    location = urlsplit(response.headers["Location"])
    assert location.path == "/t/clinic-a/authorize"
    assert {k: v[0] for k, v in parse_qs(location.query).items()} == params

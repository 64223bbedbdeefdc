"""The discovery documents as a SMART app or an OpenID relying party reads them.

SMART App Launch 2.2 conformance §metadata, OpenID Connect Discovery 1.0 §3.
"""

from types import SimpleNamespace

import jwt
import pytest
from authlib.oauth2.rfc6749 import InvalidRequestError
from authlib.oauth2.rfc6749.grants import BaseGrant
from authlib.oauth2.rfc6749.grants import TokenEndpointMixin
from authlib.oauth2.rfc7636 import CodeChallenge

from tests.fixtures.accounts import login
from tests.oauth.conftest import authorization_params
from tests.oauth.conftest import authorize
from tests.oauth.conftest import exchange
from tests.oauth.conftest import redirect_params

SMART = "/t/{slug}/.well-known/smart-configuration"
SMART_UNDER_FHIR = "/t/{slug}/fhir/.well-known/smart-configuration"
OPENID = "/t/{slug}/.well-known/openid-configuration"
JWKS = "/t/{slug}/.well-known/jwks.json"
PUBLIC_DOCUMENTS = [SMART, SMART_UNDER_FHIR, OPENID, JWKS]


def document(client, path, slug="clinic-a", **headers):
    response = client.get(path.format(slug=slug), headers=headers)
    assert response.status_code == 200
    return response.json


def issuer(slug="clinic-a"):
    return f"https://auth.example.test/t/{slug}"


# --- Each tenant's own URLs -------------------------------------------------------------------


@pytest.mark.parametrize("slug", ["clinic-a", "clinic-b"])
def test_openid_configuration_names_the_tenants_own_issuer_and_jwks(
    client, tenant, other_tenant, slug
):
    openid = document(client, OPENID, slug)

    assert openid["issuer"] == issuer(slug)
    assert openid["jwks_uri"] == f"{issuer(slug)}/.well-known/jwks.json"


@pytest.mark.parametrize("slug", ["clinic-a", "clinic-b"])
def test_smart_configuration_names_the_tenants_own_jwks(client, tenant, other_tenant, slug):
    smart = document(client, SMART, slug)

    assert smart["jwks_uri"] == f"{issuer(slug)}/.well-known/jwks.json"
    other = "clinic-b" if slug == "clinic-a" else "clinic-a"
    assert other not in str(smart)


def test_urls_follow_the_public_url_not_the_request_host(make_app, tenant):
    app = make_app(AUTHSERVER_PUBLIC_URL="https://login.example.org/auth/")

    openid = app.test_client().get(OPENID.format(slug="clinic-a"), base_url="http://10.0.0.5")

    assert openid.json["issuer"] == "https://login.example.org/auth/t/clinic-a"
    assert openid.json["jwks_uri"] == (
        "https://login.example.org/auth/t/clinic-a/.well-known/jwks.json"
    )


# --- Required members -------------------------------------------------------------------------


def test_openid_configuration_has_the_required_members(client, tenant):
    openid = document(client, OPENID)

    assert openid["issuer"].encode() == b"https://auth.example.test/t/clinic-a"
    assert openid["jwks_uri"].startswith("https://")
    assert isinstance(openid["response_types_supported"], list)
    assert openid["subject_types_supported"] == ["public"]
    assert "RS256" in openid["id_token_signing_alg_values_supported"]


def test_smart_configuration_has_the_required_members(client, tenant):
    smart = document(client, SMART)

    assert isinstance(smart["capabilities"], list)
    assert all(isinstance(capability, str) for capability in smart["capabilities"])
    assert isinstance(smart["grant_types_supported"], list)
    assert isinstance(smart["code_challenge_methods_supported"], list)
    assert "plain" not in smart["code_challenge_methods_supported"]


def test_smart_configuration_is_the_same_under_the_fhir_base(client, tenant):
    assert document(client, SMART_UNDER_FHIR) == document(client, SMART)


@pytest.mark.parametrize("path", [SMART, SMART_UNDER_FHIR, OPENID, JWKS])
@pytest.mark.parametrize("accept", ["text/html", "application/xml", "application/fhir+json", None])
def test_documents_are_json_whatever_the_accept_header(client, tenant, path, accept):
    headers = {"Accept": accept} if accept else {}

    response = client.get(path.format(slug="clinic-a"), headers=headers)

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.json


@pytest.mark.parametrize("path", PUBLIC_DOCUMENTS)
def test_documents_are_readable_by_any_origin_and_cacheable(client, tenant, path):
    response = client.get(path.format(slug="clinic-a"), headers={"Origin": "https://app.example"})

    assert response.headers["Access-Control-Allow-Origin"] == "*"
    directives = [d.strip() for d in response.headers["Cache-Control"].split(",")]
    max_age = [int(d.split("=")[1]) for d in directives if d.startswith("max-age=")]
    assert max_age and max_age[0] > 0
    assert "no-store" not in directives
    assert "private" not in directives


# --- Derived from what is registered ----------------------------------------------------------


def test_documents_agree_with_what_the_server_registered(app, client, tenant):
    server = app.extensions["authserver.authorization"]
    smart = document(client, SMART)
    openid = document(client, OPENID)

    for shown in (smart, openid):
        assert shown["grant_types_supported"] == server.grant_types_supported
        assert shown["response_types_supported"] == server.response_types_supported
        assert shown["scopes_supported"] == server.advertised_scopes
    assert smart["capabilities"] == server.capabilities
    assert smart["code_challenge_methods_supported"] == server.code_challenge_methods_supported
    assert openid["claims_supported"] == server.claims_supported
    for member in server.published_endpoints:
        assert smart[member].startswith(issuer())
        assert openid[member] == smart[member]


# --- OpenID Connect: the claims ID tokens carry, the identity scopes behind them --------------


def test_claims_supported_are_exactly_the_claims_of_the_fullest_id_token(client, clinic):
    """OIDC Discovery §3 ``claims_supported``: an ID token with all it may hold (a ``nonce``,
    ``fhirUser`` and SMART v1's ``profile``, OIDC-04/05/06) carries each claim listed, and no
    other."""
    claims_supported = document(client, OPENID)["claims_supported"]
    login(client, clinic.slug, "pat")
    verifier = "v" * 43
    params = authorization_params(
        clinic, verifier=verifier, scope="openid fhirUser profile patient/*.rs", nonce="n-1"
    )
    code = redirect_params(authorize(client, clinic, params))["code"]
    id_token = exchange(client, clinic, code, verifier).json["id_token"]

    claims = jwt.decode(id_token, options={"verify_signature": False})
    assert sorted(claims_supported) == sorted(claims)
    assert len(set(claims_supported)) == len(claims_supported)


@pytest.mark.parametrize("path", [SMART, OPENID])
def test_scopes_supported_list_the_identity_scopes_the_id_token_answers(client, tenant, path):
    """``profile`` too: SMART v1's name for ``fhirUser`` (OIDC-06), which the server honours."""
    scopes_supported = document(client, path)["scopes_supported"]

    assert {"openid", "fhirUser", "profile"} <= set(scopes_supported)


def test_without_sso_openid_connect_smart_configuration_has_no_issuer(app, client, tenant):
    capabilities = app.extensions["authserver.authorization"].capabilities
    assert "issuer" in document(client, SMART)

    capabilities.remove("sso-openid-connect")

    assert "issuer" not in document(client, SMART)


class DeviceCodeLikeGrant(BaseGrant, TokenEndpointMixin):
    """A grant type the server does not have, to watch the documents grow when it is wired."""

    GRANT_TYPE = "urn:example:params:oauth:grant-type:test"
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic"]


@pytest.fixture
def grown_app(make_app, tenant):
    """A fresh app whose server registers one more grant."""
    app = make_app()
    app.extensions["authserver.authorization"].register_grant(DeviceCodeLikeGrant)
    return app


def test_documents_grow_with_the_registered_grants(grown_app, client):
    before = document(client, SMART)
    grown = grown_app.test_client()

    smart = document(grown, SMART)
    openid = document(grown, OPENID)

    assert DeviceCodeLikeGrant.GRANT_TYPE not in before["grant_types_supported"]
    assert smart["grant_types_supported"] == before["grant_types_supported"] + [
        DeviceCodeLikeGrant.GRANT_TYPE
    ]
    assert openid["grant_types_supported"] == smart["grant_types_supported"]
    assert smart["issuer"] == openid["issuer"] == issuer()


def test_the_registered_code_challenge_refuses_plain(app):
    """What discovery leaves out, the server must refuse (SMART 2.2: never PKCE "plain")."""
    server = app.extensions["authserver.authorization"]
    (extension,) = [
        e
        for _, extensions in server._authorization_grants
        for e in extensions
        if isinstance(e, CodeChallenge)
    ]
    assert server.code_challenge_methods_supported == ["S256"]
    client = SimpleNamespace(legacy_smart_v1=False, is_public=True)
    grant = SimpleNamespace(
        request=SimpleNamespace(
            client=client,
            payload=SimpleNamespace(
                data={"code_challenge": "A" * 43, "code_challenge_method": "plain"},
                datalist={"code_challenge": ["A" * 43], "code_challenge_method": ["plain"]},
            ),
        )
    )

    with pytest.raises(InvalidRequestError):
        extension.validate_code_challenge(grant, "https://app.example/cb")
    grant.request.payload.data["code_challenge_method"] = "S256"
    grant.request.payload.datalist["code_challenge_method"] = ["S256"]
    extension.validate_code_challenge(grant, "https://app.example/cb")

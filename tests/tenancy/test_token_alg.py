"""A tenant may sign access tokens with ES256; id_tokens stay RS256."""

from __future__ import annotations

import jwt
import pytest

from authserver.errors import ValidationError
from authserver.extensions import db
from authserver.keys import service as keys
from authserver.tenancy import service
from tests.fixtures.assertions import token_form

TOKEN_URL = "https://auth.example.test/t/clinic-a/token"


def test_setting_es256_makes_the_key_and_signs_access_tokens_with_it(
    client, tenant, make_backend_client
):
    service.set_access_token_alg(tenant, "ES256")
    db.session.commit()
    assert keys.active_algorithms(tenant) == ["ES256", "RS256"]
    backend = make_backend_client(tenant)
    token = client.post("/t/clinic-a/token", data=token_form(backend.assertion(TOKEN_URL)))
    header = jwt.get_unverified_header(token.json["access_token"])
    assert header["alg"] == "ES256"
    assert header["kid"] in {key["kid"] for key in keys.jwks(tenant)["keys"]}


def test_setting_it_twice_keeps_one_key(tenant):
    service.set_access_token_alg(tenant, "ES256")
    service.set_access_token_alg(tenant, "ES256")
    assert [key.alg for key in keys.list_keys(tenant)].count("ES256") == 1


def test_unknown_alg_is_refused_and_changes_nothing(tenant):
    with pytest.raises(ValidationError):
        service.set_access_token_alg(tenant, "HS256")
    assert tenant.access_token_alg == "RS256"


def test_cli_sets_the_alg(cli, tenant):
    result = cli.invoke(args=["tenant", "set-token-alg", "clinic-a", "ES256"])
    assert result.exit_code == 0, result.output
    assert '"access_token_alg": "ES256"' in result.output
    db.session.refresh(tenant)
    assert tenant.access_token_alg == "ES256"


def test_cli_refuses_an_unknown_alg(cli, tenant):
    result = cli.invoke(args=["tenant", "set-token-alg", "clinic-a", "none"])
    assert result.exit_code != 0

"""No secret in any log: a whole code flow with a refresh, logged at DEBUG, names none of them."""

from __future__ import annotations

import logging

import pytest

from tests.fixtures.accounts import login
from tests.fixtures.tokens import basic
from tests.oauth.conftest import PATIENT_SCOPE
from tests.oauth.conftest import REDIRECT_URI
from tests.oauth.conftest import get_code
from tests.oauth.conftest import new_verifier


@pytest.fixture
def signed_in(client, clinic):
    login(client, clinic.slug, "pat")
    return client


def test_tokens_codes_and_secrets_stay_out_of_debug_logs(signed_in, clinic, caplog):
    verifier = new_verifier()
    app = clinic.confidential_app
    with caplog.at_level(logging.DEBUG):
        code = get_code(signed_in, clinic, verifier, app, scope=PATIENT_SCOPE)
        issued = signed_in.post(
            f"/t/{clinic.slug}/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT_URI,
                "code_verifier": verifier,
            },
            headers=basic(app.client_id, clinic.secret),
        )
        assert issued.status_code == 200, issued.json
        refreshed = signed_in.post(
            f"/t/{clinic.slug}/token",
            data={"grant_type": "refresh_token", "refresh_token": issued.json["refresh_token"]},
            headers=basic(app.client_id, clinic.secret),
        )
        assert refreshed.status_code == 200, refreshed.json

    assert caplog.records  # the flow was logged at DEBUG
    secrets = [
        code,
        verifier,
        clinic.secret,
        issued.json["access_token"],
        issued.json["refresh_token"],
        issued.json["id_token"],
        refreshed.json["access_token"],
        refreshed.json["refresh_token"],
    ]
    assert [secret[:12] for secret in secrets if secret in caplog.text] == []

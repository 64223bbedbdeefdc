"""A user's ``sub``: their opaque subject in every token and introspection answer, never the row
id (which would tell a tenant's apps how many users all tenants have, and in what order), and the
same at every login and refresh (OIDC Core §2: locally unique, never reassigned)."""

from __future__ import annotations

import uuid

import jwt

from tests.fixtures.accounts import login
from tests.oauth.conftest import exchange
from tests.oauth.conftest import get_code
from tests.oauth.conftest import new_verifier

VERIFIER = new_verifier()


def claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def sign_in_and_exchange(client, clinic, username: str = "pat") -> dict:
    """Sign in at ``clinic`` through its login page and exchange a fresh code for tokens."""
    login(client, clinic.slug, username)
    response = exchange(client, clinic, get_code(client, clinic, VERIFIER), VERIFIER)
    assert response.status_code == 200, response.json
    return response.json


def refresh(client, clinic, refresh_token: str) -> dict:
    data = {
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "client_id": clinic.public_app.client_id,
    }
    response = client.post(f"/t/{clinic.slug}/token", data=data)
    assert response.status_code == 200, response.json
    return response.json


def test_every_sub_about_a_user_is_their_subject_not_their_row_id(
    client, clinic, make_gateway, fast_answers
):
    body = sign_in_and_exchange(client, clinic)
    gateway = make_gateway(clinic.tenant)

    access_answers = [gateway.introspect(client, body["access_token"]).json for _ in range(2)]
    refresh_answer = gateway.introspect(client, body["refresh_token"]).json

    subject = clinic.patient.subject
    assert subject != str(clinic.patient.id)
    assert claims(body["id_token"])["sub"] == subject
    assert claims(body["access_token"])["sub"] == subject
    assert [answer["sub"] for answer in access_answers] == [subject, subject]
    assert refresh_answer["active"] is True and refresh_answer["sub"] == subject
    # The second access-token answer came from the fast path, whose sub is the token's claim.
    assert fast_answers[1] == access_answers[1]


def test_a_users_sub_stays_the_same_across_logins_and_refreshes(app, client, clinic):
    first = sign_in_and_exchange(client, clinic)
    refreshed = refresh(client, clinic, first["refresh_token"])
    second = sign_in_and_exchange(app.test_client(), clinic)  # another browser, another login

    subs = {
        claims(first["id_token"])["sub"],
        claims(first["access_token"])["sub"],
        claims(refreshed["access_token"])["sub"],
        claims(second["id_token"])["sub"],
        claims(second["access_token"])["sub"],
    }

    assert subs == {clinic.patient.subject}


def test_users_made_one_after_another_in_two_tenants_have_unrelated_subs(
    app, client, clinic, other_clinic
):
    """The four users were made in a row (consecutive row ids): their subs say nothing of that,
    nor of each other."""
    users = [clinic.patient, clinic.physician, other_clinic.patient, other_clinic.physician]
    at_a = sign_in_and_exchange(client, clinic)
    at_b = sign_in_and_exchange(app.test_client(), other_clinic)

    subjects = [user.subject for user in users]
    assert len(set(subjects)) == len(users)
    assert all(uuid.UUID(subject).version == 4 for subject in subjects)
    assert not {str(user.id) for user in users} & set(subjects)
    assert claims(at_a["access_token"])["sub"] == clinic.patient.subject
    assert claims(at_b["access_token"])["sub"] == other_clinic.patient.subject

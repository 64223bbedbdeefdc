"""A refresh applies the tenant's policy as it is now, not as it was at login: role ceilings,
the user's roles and the client's registration narrow every refresh (RFC 6749 §3.3, §5.1)."""

from __future__ import annotations

import jwt
import pytest

from authserver.accounts import service as accounts
from authserver.audit.models import AuditRecord
from authserver.extensions import db
from authserver.tokens import service as tokens
from tests.fixtures.accounts import login
from tests.fixtures.commands import run
from tests.oauth.conftest import PATIENT_SCOPE
from tests.oauth.test_refresh import assert_error
from tests.oauth.test_refresh import refresh
from tests.oauth.test_refresh import tokens_for

STAFF_SCOPE = "openid fhirUser offline_access user/Observation.rs user/Condition.rs"
NARROWED = "openid fhirUser offline_access user/Observation.rs"
NARROWED_EVENT = "refresh-token:scope-narrowed"
CHAIN_ENDED_EVENT = "refresh-token:chain-ended"


@pytest.fixture
def doc(client, clinic):
    login(client, clinic.slug, "doc")
    return client


@pytest.fixture
def pat(client, clinic):
    login(client, clinic.slug, "pat")
    return client


def set_ceiling(tenant, role, *scopes):
    accounts.set_role_ceiling(tenant, role, list(scopes))
    db.session.commit()


def claims_of(body):
    return jwt.decode(body["access_token"], options={"verify_signature": False})


def narrowings(tenant):
    db.session.expire_all()
    query = AuditRecord.for_tenant(tenant).where(AuditRecord.event == NARROWED_EVENT)
    return db.session.scalars(query).all()


def chain_ends(cli, clinic):
    """The tenant's ``refresh-token:chain-ended`` records, as an operator lists them."""
    return run(cli, "audit", "list", clinic.slug, "--event", CHAIN_ENDED_EVENT)


def grant_of(clinic, refresh_token):
    return tokens.find_refresh_token(clinic.tenant, refresh_token).grant_id


# --- A role's ceiling narrowed after the login ------------------------------------------------


def test_a_narrowed_role_ceiling_narrows_the_next_refresh(doc, clinic, make_gateway):
    gateway = make_gateway(clinic.tenant)
    first = tokens_for(doc, clinic, scope=STAFF_SCOPE)
    assert first["scope"] == STAFF_SCOPE

    set_ceiling(clinic.tenant, "physician", "user/Observation.rs", "user/Patient.rs")
    response = refresh(doc, clinic, first["refresh_token"])

    assert response.status_code == 200, response.json
    second = response.json
    assert second["scope"] == NARROWED
    assert claims_of(second)["scope"] == NARROWED
    assert gateway.introspect(doc, second["access_token"]).json["scope"] == NARROWED
    # RFC 6749 §6: the new refresh token's scope is the presented one's; the policy bounds
    # what each refresh mints from it.
    assert gateway.introspect(doc, second["refresh_token"]).json["scope"] == STAFF_SCOPE
    [event] = narrowings(clinic.tenant)
    assert event.subject == clinic.public_app.client_id
    assert event.details["user"] == "doc"
    assert event.details["dropped"] == ["user/Condition.rs"]
    assert event.details["scope"] == NARROWED


def test_a_narrowed_ceiling_widened_again_gives_back_what_it_allows_then(doc, clinic):
    first = tokens_for(doc, clinic, scope=STAFF_SCOPE)
    set_ceiling(clinic.tenant, "physician", "user/Observation.rs")
    second = refresh(doc, clinic, first["refresh_token"]).json
    # Asking for the whole grant regains nothing the ceiling forbids now.
    third = refresh(doc, clinic, second["refresh_token"], scope=STAFF_SCOPE).json
    assert second["scope"] == third["scope"] == NARROWED

    set_ceiling(clinic.tenant, "physician", "user/Observation.rs", "user/Condition.r")
    fourth = refresh(doc, clinic, third["refresh_token"]).json
    set_ceiling(clinic.tenant, "physician", "user/Observation.rs", "user/Condition.rs")
    fifth = refresh(doc, clinic, fourth["refresh_token"]).json

    assert fourth["scope"] == NARROWED + " user/Condition.r"
    assert claims_of(fourth)["scope"] == NARROWED + " user/Condition.r"
    assert fifth["scope"] == claims_of(fifth)["scope"] == STAFF_SCOPE
    dropped = [event.details["dropped"] for event in narrowings(clinic.tenant)]
    assert dropped == [["user/Condition.rs"]] * 3  # none once the ceiling allows it all again


def test_a_narrowed_patient_ceiling_narrows_a_patients_refresh(pat, clinic):
    first = tokens_for(pat, clinic)
    set_ceiling(clinic.tenant, "patient", "patient/Observation.rs", "patient/Patient.r")

    body = refresh(pat, clinic, first["refresh_token"]).json

    kept = "launch/patient openid fhirUser offline_access patient/Observation.rs patient/Patient.r"
    assert body["scope"] == kept
    assert body["patient"] == "p-clinic-a"  # the patient's own record, as before
    assert claims_of(body)["scope"] == kept
    [event] = narrowings(clinic.tenant)
    assert event.details["dropped"] == ["patient/*.rs"]  # only part of it is left


def test_a_refresh_asking_only_for_what_was_removed_is_invalid_scope(doc, clinic):
    first = tokens_for(doc, clinic, scope=STAFF_SCOPE)
    set_ceiling(clinic.tenant, "physician", "user/Observation.rs")

    asking = refresh(doc, clinic, first["refresh_token"], scope="user/Condition.rs")

    assert_error(asking, 400, "invalid_scope")
    assert asking.json["error_description"] == "None of the requested scopes can be granted."
    # Refused, so not spent: what is left can still be refreshed.
    assert refresh(doc, clinic, first["refresh_token"]).json["scope"] == NARROWED


# --- The user's roles changed ----------------------------------------------------------------


def test_a_role_taken_from_the_user_narrows_the_next_refresh(client, clinic, make_user):
    user = make_user(clinic.tenant, "doc-desk", roles=["physician", "front-desk"])
    login(client, clinic.slug, "doc-desk")
    first = tokens_for(client, clinic, scope="offline_access user/Observation.rs user/Patient.rs")

    user.roles.remove(accounts.get_role(clinic.tenant, "physician"))
    db.session.commit()
    body = refresh(client, clinic, first["refresh_token"]).json

    assert body["scope"] == "offline_access user/Patient.rs"  # front-desk's ceiling
    assert claims_of(body)["roles"] == ["front-desk"]
    [event] = narrowings(clinic.tenant)
    assert event.details["dropped"] == ["user/Observation.rs"]


def test_a_physician_demoted_to_front_desk_gets_narrowed_tokens_at_the_next_refresh(
    doc, clinic, cli, make_gateway
):
    gateway = make_gateway(clinic.tenant)
    first = tokens_for(doc, clinic, scope="offline_access user/Observation.rs user/Patient.rs")
    assert first["scope"] == "offline_access user/Observation.rs user/Patient.rs"

    run(cli, "user", "set-roles", clinic.slug, "doc", "--role", "front-desk")
    response = refresh(doc, clinic, first["refresh_token"])

    assert response.status_code == 200, response.json
    body = response.json
    narrowed = "offline_access user/Patient.rs"  # what front-desk's ceiling allows of it
    assert body["scope"] == claims_of(body)["scope"] == narrowed
    assert claims_of(body)["roles"] == ["front-desk"]
    assert gateway.introspect(doc, body["access_token"]).json["scope"] == narrowed
    # The refresh token keeps the family's scope (RFC 6749 §6); each refresh applies the policy.
    assert gateway.introspect(doc, body["refresh_token"]).json["scope"] == first["scope"]
    asking = refresh(doc, clinic, body["refresh_token"], scope="user/Observation.rs")
    assert_error(asking, 400, "invalid_scope")
    [event] = narrowings(clinic.tenant)
    assert event.details["dropped"] == ["user/Observation.rs"]


def test_a_user_without_any_role_at_the_tenant_refreshes_nothing(doc, clinic):
    first = tokens_for(doc, clinic, scope=STAFF_SCOPE)
    clinic.physician.roles.clear()
    db.session.commit()

    assert_error(refresh(doc, clinic, first["refresh_token"]), 400, "invalid_grant")


# --- The client's registration narrowed --------------------------------------------------------


@pytest.fixture
def registered_app(clinic, make_client):
    scopes = ["launch/patient", "openid", "fhirUser", "offline_access", "patient/*.rs"]
    return make_client(clinic.tenant, name="Registered app", scopes=scopes).client


def set_scopes(cli, clinic, app, scope):
    """``authserver client set-scopes``, as an operator narrows a registration."""
    options = [part for item in scope.split() for part in ("--scope", item)]
    run(cli, "client", "set-scopes", clinic.slug, app.client_id, *options)


def test_a_narrowed_client_registration_narrows_the_next_refresh(cli, pat, clinic, registered_app):
    first = tokens_for(pat, clinic, app=registered_app)
    assert first["scope"] == PATIENT_SCOPE

    narrowed = "launch/patient openid offline_access patient/Observation.rs"
    set_scopes(cli, clinic, registered_app, narrowed)
    body = refresh(pat, clinic, first["refresh_token"], registered_app).json

    assert body["scope"] == narrowed
    claims = claims_of(body)
    assert "fhirUser" not in claims  # the identity scope went with the registration
    assert claims["patient"] == "p-clinic-a"
    assert "refresh_token" in body
    [event] = narrowings(clinic.tenant)
    assert event.details["dropped"] == ["fhirUser", "patient/*.rs"]
    assert chain_ends(cli, clinic) == []  # offline_access is still allowed: the chain goes on


def test_a_client_registration_widened_again_gives_back_scope_and_fhir_user(
    cli, pat, clinic, registered_app
):
    first = tokens_for(pat, clinic, app=registered_app)
    set_scopes(
        cli, clinic, registered_app, "launch/patient openid offline_access patient/Observation.rs"
    )
    narrowed = refresh(pat, clinic, first["refresh_token"], registered_app).json
    assert "fhirUser" not in claims_of(narrowed)

    set_scopes(cli, clinic, registered_app, PATIENT_SCOPE)  # as it was registered
    body = refresh(pat, clinic, narrowed["refresh_token"], registered_app).json

    assert body["scope"] == PATIENT_SCOPE
    claims = claims_of(body)
    assert claims["fhirUser"].endswith("/Patient/p-clinic-a")  # the context was kept whole
    assert claims["patient"] == body["patient"] == "p-clinic-a"


def test_a_registration_without_offline_access_ends_the_refresh_chain_on_the_record(
    cli, pat, clinic, registered_app
):
    first = tokens_for(pat, clinic, app=registered_app)
    grant_id = grant_of(clinic, first["refresh_token"])

    set_scopes(cli, clinic, registered_app, "launch/patient openid fhirUser patient/*.rs")
    body = refresh(pat, clinic, first["refresh_token"], registered_app).json

    assert body["scope"] == "launch/patient openid fhirUser patient/*.rs"
    assert "refresh_token" not in body
    [ended] = chain_ends(cli, clinic)
    assert (ended["subject"], ended["actor"]) == (registered_app.client_id, None)
    assert ended["details"] == {
        "user": "pat",
        "grant_id": grant_id,
        "dropped": ["offline_access"],
        "scope": "launch/patient openid fhirUser patient/*.rs",
    }
    # Recorded once: the spent refresh token presented again is a reuse, not another end.
    assert_error(refresh(pat, clinic, first["refresh_token"], registered_app), 400, "invalid_grant")
    assert len(chain_ends(cli, clinic)) == 1


@pytest.fixture
def online_app(clinic, make_client):
    scopes = ["launch/patient", "offline_access", "online_access", "patient/*.rs"]
    return make_client(clinic.tenant, name="Online app", scopes=scopes).client


def test_a_registration_without_online_access_ends_an_online_chain_on_the_record(
    cli, pat, clinic, online_app
):
    first = tokens_for(
        pat, clinic, scope="launch/patient online_access patient/*.rs", app=online_app
    )
    assert "refresh_token" in first

    set_scopes(cli, clinic, online_app, "launch/patient offline_access patient/*.rs")
    body = refresh(pat, clinic, first["refresh_token"], online_app).json

    assert "refresh_token" not in body
    [ended] = chain_ends(cli, clinic)
    assert ended["subject"] == online_app.client_id
    assert ended["details"]["grant_id"] == grant_of(clinic, first["refresh_token"])
    assert ended["details"]["dropped"] == ["online_access"]
    assert ended["details"]["scope"] == "launch/patient patient/*.rs"


def test_a_chain_keeping_one_of_its_refresh_scopes_goes_on_with_nothing_recorded(
    cli, pat, clinic, online_app
):
    both = "launch/patient offline_access online_access patient/*.rs"
    first = tokens_for(pat, clinic, scope=both, app=online_app)

    set_scopes(cli, clinic, online_app, "launch/patient online_access patient/*.rs")
    second = refresh(pat, clinic, first["refresh_token"], online_app).json
    # A request for less keeps the family's refresh token coming too.
    third = refresh(pat, clinic, second["refresh_token"], online_app, scope="patient/*.rs").json

    assert second["scope"] == "launch/patient online_access patient/*.rs"
    assert "refresh_token" in second and "refresh_token" in third
    assert chain_ends(cli, clinic) == []


def test_a_narrowed_request_does_not_keep_what_the_registration_no_longer_allows(
    cli, pat, clinic, registered_app
):
    # The family's scope decides whether a refresh token is due, as the policy allows it now:
    # a request that leaves offline_access out keeps it only while the registration allows it.
    first = tokens_for(pat, clinic, app=registered_app)
    registered_app.allowed_scope = "launch/patient openid fhirUser patient/*.rs"
    db.session.commit()

    body = refresh(pat, clinic, first["refresh_token"], registered_app, scope="patient/*.rs").json

    assert body["scope"] == "patient/*.rs"
    assert "refresh_token" not in body
    [ended] = chain_ends(cli, clinic)
    assert ended["details"]["dropped"] == ["offline_access"]
    assert ended["details"]["scope"] == "patient/*.rs"


def test_an_extension_scope_an_unregistered_app_got_earlier_is_dropped_at_its_next_refresh(
    pat, clinic
):
    # Before registrations bounded extension scopes, an app registered without scopes was
    # granted any it asked for, and its refresh tokens still hold them.
    family = "launch/patient offline_access patient/*.rs __admin"
    authorization = tokens.Authorization(
        tenant=clinic.tenant,
        client=clinic.public_app,
        scope=family,
        user=clinic.patient,
        context={"patient": "p-clinic-a"},
    )
    refresh_token = tokens.issue_refresh_token(authorization)
    db.session.commit()

    body = refresh(pat, clinic, refresh_token).json
    asking = refresh(pat, clinic, body["refresh_token"], scope="__admin")

    assert body["scope"] == claims_of(body)["scope"] == "launch/patient offline_access patient/*.rs"
    assert "refresh_token" in body
    assert_error(asking, 400, "invalid_scope")
    [event] = narrowings(clinic.tenant)
    assert event.details["dropped"] == ["__admin"]


# --- Nothing changed, and another tenant ----------------------------------------------------


@pytest.mark.parametrize(
    ("username", "scope"),
    [
        # Narrowed by the physician's ceiling at login into one v1 scope per type.
        ("doc", "openid fhirUser offline_access user/*.read"),
        ("pat", "launch/patient offline_access patient/*.read patient/Observation.rs?category=lab"),
    ],
    ids=["staff-wildcard-v1", "patient-granular"],
)
def test_a_refresh_with_nothing_changed_keeps_the_scope_exactly(
    cli, client, clinic, username, scope
):
    login(client, clinic.slug, username)
    first = tokens_for(client, clinic, scope=scope)

    second = refresh(client, clinic, first["refresh_token"]).json
    third = refresh(client, clinic, second["refresh_token"]).json

    assert second["scope"] == third["scope"] == first["scope"]
    assert claims_of(third)["scope"] == first["scope"]
    assert "refresh_token" in third
    assert narrowings(clinic.tenant) == []
    assert chain_ends(cli, clinic) == []


def test_narrowing_a_role_at_one_tenant_leaves_another_tenants_family_alone(
    client, clinic, other_clinic
):
    login(client, clinic.slug, "doc")
    login(client, other_clinic.slug, "doc")
    here = tokens_for(client, clinic, scope=STAFF_SCOPE)
    there = tokens_for(client, other_clinic, scope=STAFF_SCOPE)

    set_ceiling(clinic.tenant, "physician", "user/Observation.rs")

    assert refresh(client, clinic, here["refresh_token"]).json["scope"] == NARROWED
    body = refresh(client, other_clinic, there["refresh_token"], other_clinic.public_app).json
    assert body["scope"] == STAFF_SCOPE
    assert narrowings(other_clinic.tenant) == []

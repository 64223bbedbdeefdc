"""The arithmetic of tokens/limits.py, checked against real claims and a real signature."""

from __future__ import annotations

import json

from authserver.accounts.roles import DEFAULT_ROLES
from authserver.accounts.roles import PATIENT_ROLE
from authserver.keys import service as keys
from authserver.tokens import limits
from authserver.tokens.claims import AccessTokenSubject
from authserver.tokens.claims import access_token_claims
from authserver.tokens.service import ACCESS_TOKEN_TYPE

URL = "https://" + "u" * (limits.ASSUMED_URL_LENGTH - len("https://"))


def widest_claims(scope: str, fhir_context: list) -> dict:
    """Access-token claims with every member as long as the bounds let it be."""
    subject = AccessTokenSubject(
        issuer=URL,
        audience=URL,
        tenant="t" * 63,
        client_id="c" * 64,
        scope=scope,
        jti="j" * 22,
        issued_at=9_999_999_999,
        expires_in=0,
        subject="s" * 64,
        roles=tuple(role for role in DEFAULT_ROLES if role != PATIENT_ROLE),
        context={
            "patient": "p" * 64,
            "encounter": "e" * 64,
            "fhirContext": fhir_context,
            "need_patient_banner": False,
            "smart_style_url": URL + "/smart-style.json",
            "intent": "i" * limits.MAX_INTENT_LENGTH,
            "fhirUser": f"{URL}/PractitionerRole/{'f' * 64}",
        },
    )
    return access_token_claims(subject)


def compact_json(claims: dict) -> str:
    return json.dumps(claims, separators=(",", ":"))


def test_the_claims_budget_is_what_is_left_of_the_token():
    header = {"alg": "RS256", "kid": "k" * 43, "typ": ACCESS_TOKEN_TYPE}
    assert len(compact_json(header)) == 82  # base64url: 110 characters
    assert limits.JWT_HEADER_LENGTH == 110 and limits.MAX_SIGNATURE_LENGTH == 342
    assert limits.MAX_CLAIMS_LENGTH == 5803


def test_the_other_claims_take_what_the_arithmetic_says():
    # Every claim but the values of scope and fhirContext: what those two share is what is left.
    others = compact_json(widest_claims("", []))
    assert len(others) + len(',"fhirContext":') <= limits.OTHER_CLAIMS_LENGTH
    shared = limits.MAX_TOKEN_SCOPE_LENGTH + limits.MAX_FHIR_CONTEXT_LENGTH
    assert limits.OTHER_CLAIMS_LENGTH + shared <= limits.MAX_CLAIMS_LENGTH


def test_the_widest_claims_sign_a_token_that_fits(app, tenant):
    """RS256 (the longer signature) over every claim at its bound: the tenant's real key."""
    fhir_context = [{"canonical": "https://x.test/" + "c" * (limits.MAX_FHIR_CONTEXT_LENGTH - 34)}]
    assert len(json.dumps(fhir_context)) == limits.MAX_FHIR_CONTEXT_LENGTH
    claims = widest_claims("s" * limits.MAX_TOKEN_SCOPE_LENGTH, fhir_context)

    token = keys.sign(tenant, claims, alg="RS256", typ=ACCESS_TOKEN_TYPE)

    header, _, signature = token.split(".")
    assert len(header) == limits.JWT_HEADER_LENGTH
    assert len(signature) == limits.MAX_SIGNATURE_LENGTH
    assert len(token) <= limits.MAX_TOKEN_LENGTH
    assert limits.fits(token) and not limits.fits(token + "x" * (8193 - len(token)))

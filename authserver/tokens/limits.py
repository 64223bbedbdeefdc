"""How long an access token may be, and the bounds that keep what goes into one within it. Pure.

An access token travels in an HTTP header with every FHIR call (SMART: keep tokens under about
8 kB, "Scope size over the wire"), and introspection takes anything longer than
:data:`MAX_TOKEN_LENGTH` for not ours. So every token the server signs must be no longer, and
what clients control (registered and requested scopes, an EHR's launch context) is bounded so
that it is, with a clear error where the input comes in, not a token nobody accepts.

A JWT is ``BASE64URL(header).BASE64URL(claims).BASE64URL(signature)`` (RFC 7515 §7.1), and
base64url writes 3 bytes as 4 characters:

- header: ``{"alg":"RS256","kid":"<43-character RFC 7638 thumbprint>","typ":"at+jwt"}``,
  82 bytes: 110 characters;
- signature: RS256 with a 2048-bit key, 256 bytes: 342 characters (ES256: 64 bytes, 86);
- so the claims may take (8192 - 110 - 342 - 2) * 3 / 4 = 5,803 bytes of JSON.

Of those, all claims but the values of ``scope`` and ``fhirContext`` take at most 2,021 bytes
(:data:`OTHER_CLAIMS_LENGTH`): member names and punctuation; ``iss``, ``aud``,
``smart_style_url`` and ``fhirUser``, made of an issuer and a FHIR base URL of at most
:data:`ASSUMED_URL_LENGTH` characters each; ``sub`` and ``client_id`` (64 each), ``tenant``
(63), ``jti``, ``iat``, ``exp``; ``roles`` (all eight staff roles); ``patient`` and
``encounter`` (64 each), ``need_patient_banner``, and ``intent`` (:data:`MAX_INTENT_LENGTH`).
That leaves 3,782 bytes for the scope, whose characters are ASCII and never escaped (RFC 6749
§3.3), and the EHR's ``fhirContext``: 2,048 (:data:`MAX_TOKEN_SCOPE_LENGTH`) + 1,536
(:data:`MAX_FHIR_CONTEXT_LENGTH`) = 3,584, with 198 to spare. ``tests/tokens/test_limits.py``
signs this worst case.

Within these bounds no client input makes a token too long: a longer scope is refused when
registered, requested or about to be granted (narrowing can spell ``patient/*.rs`` out as the
many scopes of a registration or a role ceiling), a longer fhirContext or intent when an EHR
launches. The operator's URLs are refused longer than assumed where they are set: the public
URL when the app starts (``config.public_url``: room for ``/t/``, the longest slug and the
default ``/fhir``), a tenant's FHIR base URL when it is given
(``tenancy.service.validate_fhir_base_url``). What those checks never saw (a FHIR base URL
stored before them) is refused where the token is signed (:func:`fits`): the grants answer
``invalid_scope``, never with a token our own introspection would call inactive.
"""

from __future__ import annotations

MAX_TOKEN_LENGTH = 8192
JWT_HEADER_LENGTH = 110
MAX_SIGNATURE_LENGTH = 342
MAX_CLAIMS_LENGTH = (MAX_TOKEN_LENGTH - JWT_HEADER_LENGTH - MAX_SIGNATURE_LENGTH - 2) * 3 // 4
# The issuer ({AUTHSERVER_PUBLIC_URL}/t/{slug}) and the FHIR base URL, as the arithmetic counts.
ASSUMED_URL_LENGTH = 256
# An EHR launch's intent, counted as the token's JSON writes it (non-ASCII as \uXXXX escapes).
MAX_INTENT_LENGTH = 200
OTHER_CLAIMS_LENGTH = 2021
# The scope a token carries, so also a registration's scopes and a request's, all together.
MAX_TOKEN_SCOPE_LENGTH = 2048
# An EHR launch's fhirContext, as JSON.
MAX_FHIR_CONTEXT_LENGTH = 1536


def scope_length(scope: str) -> int:
    """The characters ``scope`` takes in a token: its words, one space apart."""
    return len(" ".join(scope.split()))


def scope_fits(scope: str) -> bool:
    """Whether a token may carry ``scope`` (:data:`MAX_TOKEN_SCOPE_LENGTH`)."""
    return scope_length(scope) <= MAX_TOKEN_SCOPE_LENGTH


def scope_too_long(scope: str, whose: str) -> str | None:
    """Why no token can carry ``scope`` (``whose`` names it: "the scopes", "the ceiling's
    scopes"), or None when one can."""
    if scope_fits(scope):
        return None
    return (
        f"{whose} take {scope_length(scope)} characters, more than the "
        f"{MAX_TOKEN_SCOPE_LENGTH} an access token can carry"
    )


def fits(token: str) -> bool:
    """Whether ``token`` is short enough for a header and for our introspection."""
    return len(token) <= MAX_TOKEN_LENGTH

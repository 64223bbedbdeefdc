"""PKCE as SMART 2.2 wants it: S256 only, required for every client (RFC 7636; IG-launch
#considerations-for-pkce-support), except a confidential client a tenant marked legacy SMART v1.
"""

from __future__ import annotations

import re
from typing import Any

from authlib.oauth2.rfc6749 import InvalidRequestError
from authlib.oauth2.rfc7636 import CodeChallenge

# RFC 7636 §4.2: an S256 challenge is BASE64URL(SHA-256), 32 bytes: 43 characters, no padding.
S256_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")


class RequiredS256(CodeChallenge):
    """Authlib's PKCE extension with ``plain`` removed and a challenge required."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    # RFC 7636 §4.3: an absent method means plain, which SMART servers SHALL NOT support.
    DEFAULT_CODE_CHALLENGE_METHOD = "plain"

    def __init__(self) -> None:
        super().__init__(required=True)

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        challenge, method = data.get("code_challenge"), data.get("code_challenge_method")
        if not challenge and not method and _may_omit_pkce(grant.request.client):
            return
        if not challenge:
            raise InvalidRequestError("Missing 'code_challenge': PKCE with S256 is required.")
        if not method:
            raise InvalidRequestError("Missing 'code_challenge_method': it must be S256.")
        super().validate_code_challenge(grant, redirect_uri)
        if not S256_CHALLENGE.fullmatch(challenge):
            raise InvalidRequestError("Invalid 'code_challenge': expected 43 base64url characters.")


def _may_omit_pkce(client: Any) -> bool:
    return bool(client.legacy_smart_v1) and not client.is_public

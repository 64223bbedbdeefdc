"""Request input no endpoint can use, refused before any view reads it.

No protocol value this server accepts (a client id, a username, a nonce, a scope, a member of a
JSON body...) can hold a NUL character, and PostgreSQL can neither compare nor store text that
does: without this check such a value would reach a query and fail there as a server error. A
JSON string can also spell a lone UTF-16 surrogate (``"\ud800"``), which no database driver can
encode, so a JSON body is held to :func:`authserver.validation.storable`; parameters, the path
and Basic credentials cannot carry one (Werkzeug decodes them with replacement characters, and
Basic credentials are decoded strictly). Nor does any JSON body nest more than a few levels,
while Python's parser gives up with a ``RecursionError`` at about a thousand.
HTTP Basic credentials must be base64 of UTF-8 text (RFC 7617 §2.1 with ``charset="UTF-8"``,
RFC 6749 §2.3.1); anything else is a failed client authentication, answered as one.

The tenant slug in the path is checked by :func:`authserver.tenancy.resolution.load_tenant_by_slug`
before this runs; the two fast paths in front of Flask decline such requests, which then come
here.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote

from authlib.oauth2.rfc6749 import InvalidClientError
from flask import Flask
from flask import Response
from flask import request

from authserver.errors import ValidationError
from authserver.validation import json_depth
from authserver.validation import json_strings
from authserver.validation import storable

NUL = "\x00"
# A token presented for introspection or revocation is never read as text by the database (it
# is verified, or looked up by digest), and anything not a token of ours has an answer of its
# own there: ``{"active": false}``, or a 200 that changes nothing.
ANSWERED_AS_UNKNOWN = frozenset({"token"})
# The JSON this server reads (an EHR's launch context) nests a few levels; Python's parser
# recurses once per level and fails, past its recursion limit, with an error no caller expects.
MAX_JSON_DEPTH = 32
# RFC 6749 §5.2: an error_description holds only %x20-21 / %x23-5B / %x5D-7E.
NOT_DESCRIBABLE = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")


def init_app(app: Flask) -> None:
    app.before_request(refuse_unusable_input)


def refuse_unusable_input() -> Response | None:
    """``before_request``: a 401 for unreadable Basic credentials; raises for a NUL anywhere, or
    a lone surrogate or too deep a nesting in a JSON body."""
    if NUL in request.path or _has_nul(request.args) or _has_nul(request.form):
        raise ValidationError("The request holds a NUL character, which no parameter may contain.")
    if request.is_json and not all(map(storable, json_strings(json_body()))):
        raise ValidationError(
            "The JSON body holds a NUL character or a lone surrogate, which no member may contain."
        )
    if not basic_credentials_readable(request.headers.get("Authorization", "")):
        error = InvalidClientError(
            status_code=401, description="The client credentials are not readable."
        )
        status, body, headers = error()
        return Response(json.dumps(dict(body)), status=status, headers=headers)
    return None


def json_body() -> Any:
    """The request's JSON body (``None`` when it is not JSON), parsed once for every reader.

    :raises ValidationError: when it nests more than :data:`MAX_JSON_DEPTH` arrays and objects.
    """
    too_deep = ValidationError(f"The JSON body nests deeper than {MAX_JSON_DEPTH} levels.")
    try:
        body = request.get_json(silent=True)  # silent covers a ValueError only
    except RecursionError:
        raise too_deep from None
    if json_depth(body) > MAX_JSON_DEPTH:
        raise too_deep
    return body


def _has_nul(values: Any) -> bool:
    return holds_nul(values.items(multi=True))


def holds_nul(pairs: Iterable[tuple[str, str]]) -> bool:
    """Whether a parameter's name, or the value of one other than a token, holds a NUL."""
    return any(
        NUL in name or (NUL in value and name not in ANSWERED_AS_UNKNOWN) for name, value in pairs
    )


def basic_credentials_readable(authorization: str) -> bool:
    """Whether an ``Authorization`` header, if Basic, holds credentials this server can read."""
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return True  # not Basic: the endpoint that reads it judges it
    try:
        text = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    # RFC 6749 §2.3.1: the client id and secret are form-encoded before base64.
    return ":" in text and all(NUL not in unquote(part) for part in text.split(":", 1))


def describable(text: str) -> str:
    """``text`` (which quotes the request) fit for an ``error_description``: every character
    RFC 6749 §5.2 keeps out (``"``, ``\\``, controls, non-ASCII) becomes ``?``. Authlib refuses
    them with a ValueError, which would answer the client's mistake with a 500."""
    return NOT_DESCRIBABLE.sub("?", text)

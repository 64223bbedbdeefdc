"""Checks shared by every domain's metadata: URLs, lengths, colours."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from authserver.errors import ValidationError

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
HEX_COLOR = re.compile(r"#[0-9a-fA-F]{6}")
MAX_URL_LENGTH = 2000
# What no database can hold or compare: NUL (PostgreSQL refuses it) and a lone UTF-16 surrogate,
# which no driver can encode as UTF-8. JSON spells one as "\ud800"; Python holds a command-line
# byte that is not UTF-8 as one (PEP 383).
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def text(value: str | None, field: str, *, max_length: int, required: bool = True) -> str | None:
    """Strip ``value`` and enforce its length; ``None`` or blank is allowed unless ``required``.

    :raises ValidationError: when blank but required, over-long, holding control characters
        or not text a database can hold (:func:`storable`).
    """
    value = (value or "").strip()
    if not value:
        if required:
            raise ValidationError(f"{field} is required")
        return None
    if len(value) > max_length:
        raise ValidationError(f"{field} is longer than {max_length} characters")
    if any(ord(char) < 32 for char in value):
        raise ValidationError(f"{field} contains control characters")
    if not storable(value):
        raise ValidationError(f"{field} is not valid UTF-8 text")
    return value


def storable(value: str) -> bool:
    """Whether a database can hold and compare ``value``: it holds no NUL and no lone surrogate.

    Anything else reaching a query fails there as a server error; a value from a request that
    is not storable names nothing this server holds.
    """
    return UNSTORABLE.search(value) is None


def web_url(
    value: str,
    field: str,
    *,
    allow_query: bool = True,
    allow_loopback_http: bool = True,
    quote: bool = True,
) -> str:
    """An absolute https URL (http only for loopback hosts, if allowed), without a fragment, a
    wildcard host or a character that does not print.

    :param quote: whether errors quote the URL; not for one that may hold a credential.
    :raises ValidationError: for anything else.
    """
    shown = f": {value!r}" if quote else ""
    if len(value) > MAX_URL_LENGTH:
        raise ValidationError(f"{field} is longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(value)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        raise ValidationError(f"{field} is not a valid URL{shown}") from None
    if parts.scheme not in ("https", "http") or not host:
        raise ValidationError(f"{field} must be an absolute https URL{shown}")
    if not value.isprintable():
        raise ValidationError(f"{field} must not contain control or invisible characters")
    if "*" in host:
        # Matched exactly, a pattern would only be a host no browser can reach.
        raise ValidationError(f"{field} must name one host, not a wildcard{shown}")
    if parts.scheme == "http" and not allow_loopback_http:
        raise ValidationError(f"{field} must use https{shown}")
    if parts.scheme == "http" and host not in LOOPBACK_HOSTS:
        raise ValidationError(f"{field} must use https (http only for loopback){shown}")
    if parts.fragment or value.endswith("#"):
        raise ValidationError(f"{field} must not have a fragment{shown}")
    if "?" in value and not allow_query:
        raise ValidationError(f"{field} must not have a query{shown}")
    if any(char.isspace() for char in value):
        raise ValidationError(f"{field} must not contain spaces{shown}")
    return value


def color(value: str, field: str = "primary colour") -> str:
    """A ``#rrggbb`` colour, normalised to lower case."""
    if not HEX_COLOR.fullmatch(value or ""):
        raise ValidationError(f"{field} must look like #1f6feb, got {value!r}")
    return value.lower()


def json_strings(value: Any) -> Iterator[str]:
    """Every string in a parsed JSON value, object keys included, in no particular order.

    Walked without recursion, so a value of any depth is walked in full.
    """
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)


def json_depth(value: Any) -> int:
    """How deeply arrays and objects nest in a parsed JSON value: 0 for a string, a number,
    true, false or null, 1 for ``[]`` or ``{"a": 1}``. Counted without recursion."""
    deepest = 0
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        members = item.values() if isinstance(item, dict) else item
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            pending.extend((member, depth + 1) for member in members)
    return deepest

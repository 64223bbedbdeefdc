"""WSGI middleware in front of Flask for the two requests that come by the thousand a second.

``POST /t/{slug}/introspect`` (the FHIR gateway, on every FHIR call) and ``POST /t/{slug}/token``
(Backend Services clients) are first offered to their fast paths,
:func:`authserver.tokens.fastpath.answer` and :func:`authserver.oauth.fastpath.answer`, which
either answer a success outright or decline. Flask's routing, request context, session and
response objects are skipped for the answered ones. Everything declined, and every other
request, goes to Flask unchanged: the body, once read here, is handed on intact.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Callable
from typing import Any

from flask import Flask

from authserver.oauth import fastpath as token_fastpath
from authserver.oauth.views import FAST_TOKEN_HEADERS
from authserver.tenancy.urls import SLUG
from authserver.tokens import fastpath as introspection_fastpath
from authserver.tokens.limits import MAX_TOKEN_LENGTH
from authserver.web import NO_STORE
from authserver.web import response_headers

log = logging.getLogger(__name__)
Answer = Callable[[str, dict[str, Any], bytes], "bytes | None"]

# A tenant slug as tenants are named (tenancy.urls.SLUG); anything else is not ours.
ROUTE = re.compile(rf"/t/({SLUG.pattern})/(introspect|token)")
FORM_TYPE = "application/x-www-form-urlencoded"
# Larger bodies go to Flask, which refuses them properly; so do bodies over the deployment's
# limit (MAX_CONTENT_LENGTH), which Flask refuses unread.
MAX_BODY = MAX_TOKEN_LENGTH + 1024
INTROSPECTION_HEADERS = [("Content-Type", "application/json"), *NO_STORE.items()]


class HotPaths:
    """Wraps ``app.wsgi_app``: ``app.wsgi_app = HotPaths(app)``."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.wsgi_app = app.wsgi_app
        self.max_body = min(MAX_BODY, app.config["MAX_CONTENT_LENGTH"])
        # What Flask adds to every response (nosniff, no Referer, HSTS), listed once here: an
        # answer costs no header work beyond its Content-Length.
        every_response = list(response_headers(app).items())
        self.paths: dict[str, tuple[Answer, list[tuple[str, str]]]] = {
            "introspect": (
                introspection_fastpath.answer,
                [*INTROSPECTION_HEADERS, *every_response],
            ),
            "token": (token_fastpath.answer, [*FAST_TOKEN_HEADERS, *every_response]),
        }

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        match = self._candidate(environ)
        if match is not None:
            body = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
            environ["wsgi.input"] = io.BytesIO(body)
            answer, headers = self.paths[match.group(2)]
            with self.app.app_context():
                try:
                    content = answer(match.group(1), environ, body)
                except Exception as error:  # noqa: BLE001 - a fast path only answers successes
                    # The type only: a message could quote the request's credentials.
                    log.warning("%s fast path failed (%s)", match.group(2), type(error).__name__)
                    content = None
            if content is not None:
                start_response("200 OK", [*headers, ("Content-Length", str(len(content)))])
                return [content]
        return self.wsgi_app(environ, start_response)

    def _candidate(self, environ: dict[str, Any]) -> re.Match[str] | None:
        if environ.get("REQUEST_METHOD") != "POST" or environ.get("QUERY_STRING"):
            return None  # parameters in the URL too: the full path decides what they mean
        content_type = environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
        length = environ.get("CONTENT_LENGTH", "")
        if content_type != FORM_TYPE or not length.isdigit() or int(length) > self.max_body:
            return None
        return ROUTE.fullmatch(environ.get("PATH_INFO", ""))

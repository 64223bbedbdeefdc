"""The other side of a launch: a SMART app's web server, its OAuth client, and a FHIR server.

``AppServer`` is what a browser reaches: the app's launch URL (the EHR opens it with ``iss``
and ``launch``), a page that posts an authorization request as a form, and its redirect URI,
which records every query the authorization server sent back. ``SmartClient`` is the app's
OAuth client, Authlib's own, configured from the FHIR server's SMART discovery.
``PatientSearch`` is the tenant's FHIR ``Patient?name=`` search that the consent page's picker
calls.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from html import escape
from typing import Any
from urllib.parse import parse_qs
from urllib.parse import parse_qsl
from urllib.parse import urlsplit

import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from werkzeug.utils import redirect
from werkzeug.wrappers import Request
from werkzeug.wrappers import Response

from tests.fixtures.live import serve_in_thread


class AppServer:
    """The app's own pages on a loopback port (http is allowed for loopback redirect URIs)."""

    def __init__(self) -> None:
        self.server, self.url = serve_in_thread(self)
        #: Every URL the browser was sent back to, as the browser requested it.
        self.redirects: list[str] = []
        #: ``(iss, launch) -> authorization URL``: what the app does when the EHR opens it.
        self.on_launch: Callable[[str, str], str] | None = None
        #: The authorization URL whose request the ``/authorize-by-post`` page posts.
        self.posted_authorization: str | None = None

    @property
    def redirect_uri(self) -> str:
        return f"{self.url}/callback"

    @property
    def launch_uri(self) -> str:
        return f"{self.url}/launch"

    @property
    def cross_site_url(self) -> str:
        """These pages by the name ``localhost``: another site than the authorization server at
        ``127.0.0.1``, whatever the ports (a site is a scheme and a host), so a browser sends a
        SameSite=Lax cookie of the server along on a top-level GET from here, and on no POST."""
        return self.url.replace("//127.0.0.1:", "//localhost:", 1)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        if request.path == "/callback":
            # The raw query, exactly as the authorization server's redirect put it.
            self.redirects.append(f"{self.redirect_uri}?{environ.get('QUERY_STRING', '')}")
            response = Response("<title>Growth chart</title><h1>Back in the app</h1>")
            response.content_type = "text/html"
        elif request.path == "/launch" and self.on_launch is not None:
            response = redirect(self.on_launch(request.args["iss"], request.args["launch"]))
        elif request.path == "/authorize-by-post" and self.posted_authorization is not None:
            response = Response(auto_posted_form(self.posted_authorization))
            response.content_type = "text/html"
        else:
            response = Response("not found", status=404)
        return response(environ, start_response)

    def last_redirect(self) -> dict[str, str]:
        """The query parameters of the latest redirect back to the app."""
        assert self.redirects, "the browser was never sent back to the app"
        query = parse_qs(urlsplit(self.redirects[-1]).query, keep_blank_values=True)
        return {name: values[0] for name, values in query.items()}

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def auto_posted_form(authorization_url: str) -> str:
    """A page that posts the request of ``authorization_url`` to its endpoint as a form as soon
    as it loads (SMART ``authorize-post``)."""
    endpoint, _, query = authorization_url.partition("?")
    fields = "".join(
        f'<input type="hidden" name="{escape(name)}" value="{escape(value)}">'
        for name, value in parse_qsl(query, keep_blank_values=True)
    )
    return (
        f'<title>Growth chart</title><form method="post" action="{escape(endpoint)}">{fields}'
        "</form><script>document.forms[0].submit()</script>"
    )


class SmartClient:
    """A public SMART app's OAuth client for one FHIR server (``iss``), with PKCE S256."""

    def __init__(self, client_id: str, redirect_uri: str, scope: str, iss: str) -> None:
        self.iss = iss
        self.configuration = requests.get(
            f"{iss}/.well-known/smart-configuration", timeout=10
        ).json()
        self.session = OAuth2Session(
            client_id,
            scope=scope,
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
            token_endpoint_auth_method="none",
        )
        self.code_verifier = generate_token(64)
        self.state = ""

    def authorization_url(self, **extra: str) -> str:
        """Where the app sends the browser; remembers the ``state`` it put there."""
        url, self.state = self.session.create_authorization_url(
            self.configuration["authorization_endpoint"],
            code_verifier=self.code_verifier,
            aud=self.iss,
            **extra,
        )
        return url

    def fetch_token(self, redirect_url: str) -> dict[str, Any]:
        """Exchange the code of ``redirect_url``; Authlib checks its ``state`` is ours."""
        return self.session.fetch_token(
            self.configuration["token_endpoint"],
            authorization_response=redirect_url,
            code_verifier=self.code_verifier,
            state=self.state,
        )


class PatientSearch:
    """``GET /{tenant}/Patient?name=``: the patients whose name contains ``name``."""

    def __init__(self, patients: list[dict[str, Any]]) -> None:
        self.patients = patients
        #: The ``name`` of every search, in order.
        self.searches: list[str] = []
        self.server, self.url = serve_in_thread(self)

    def url_for(self, slug: str) -> str:
        return f"{self.url}/{slug}/Patient"

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        name = Request(environ).args.get("name", "")
        self.searches.append(name)
        found = [patient for patient in self.patients if name.lower() in _words(patient)]
        bundle = {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [{"resource": patient} for patient in found],
        }
        response = Response(json.dumps(bundle), content_type="application/fhir+json")
        return response(environ, start_response)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _words(patient: dict[str, Any]) -> str:
    name = patient["name"][0]
    return " ".join([*name.get("given", []), name.get("family", "")]).lower()

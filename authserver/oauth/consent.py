"""The authorization decision: what the user may grant, which patient, and what they approved.

An explicit sequence, re-run on every step of the flow from the validated request (nothing is
carried between steps but the request itself and the login, and a picked patient only as a value
signed for both, ``picker.py``): :func:`prepare` narrows the request by the client's registration
and the user's role ceilings and works out the launch context; :func:`decide` applies the consent
form; :func:`issue` hands the decision to Authlib for a code.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
from typing import Any

from authlib.oauth2.rfc6749 import AccessDeniedError
from authlib.oauth2.rfc6749 import InvalidScopeError
from authlib.oauth2.rfc6749 import OAuth2Error
from flask import Response
from werkzeug.datastructures import MultiDict

from authserver.accounts import service as accounts
from authserver.accounts.models import LoginSession
from authserver.accounts.models import User
from authserver.accounts.roles import PATIENT_ROLE
from authserver.audit import service as audit
from authserver.audit.events import AuditEvent
from authserver.clients.models import Client
from authserver.extensions import db
from authserver.oauth import picker
from authserver.oauth.server import authorization_server
from authserver.oauth.tokens import GRANTED_SCOPE_TOO_LONG
from authserver.smart import context as launch_context
from authserver.smart import granular
from authserver.smart import policy
from authserver.smart.scopes import LaunchScope
from authserver.smart.scopes import Scope
from authserver.smart.scopes import ScopeSet
from authserver.smart.scopes import describe
from authserver.smart.scopes import parse_scopes
from authserver.tenancy import service as tenants
from authserver.tenancy.resolution import current_tenant
from authserver.tokens.limits import scope_fits

# What an EHR launch contributes to the context (everything but the user's own fhirUser).
LAUNCH_MEMBERS = frozenset(launch_context.RESPONSE_MEMBERS)


class PatientNotChosen(Exception):
    """The consent form came back without a usable patient; the page asks again."""


@dataclass
class Decision:
    """What the user granted: handed to the grant, which saves it with the code."""

    login: LoginSession
    scope: ScopeSet
    context: dict[str, Any]
    launch: Any = None

    def on_code_issued(self) -> None:
        if self.launch is not None:
            self.launch.consume()


@dataclass(frozen=True)
class Choice:
    """One consent checkbox: ``value`` holds its scopes; ``narrower`` are ``(plain words,
    scope)`` boxes the user may tick instead, to share only part of it (SCOPE-06)."""

    words: str
    value: str
    narrower: tuple[tuple[str, str], ...] = ()


@dataclass
class Offer:
    """What the consent page offers the signed-in user."""

    grant: Any
    login: LoginSession
    #: The authorization request's parameters: what a picked patient's value is bound to.
    params: list[tuple[str, str]]
    grantable: ScopeSet
    context: dict[str, Any] = field(default_factory=dict)
    pick_patient: bool = False
    launch: Any = None

    @property
    def client(self) -> Any:
        return self.grant.client

    @property
    def skips_consent(self) -> bool:
        """A trusted app is not shown the consent page, unless a patient must be picked or the
        request asks for consent (``prompt=consent``, OpenID Connect Core §3.1.2.1)."""
        prompts = (self.grant.request.payload.data.get("prompt") or "").split()
        return bool(self.client.trusted) and not self.pick_patient and "consent" not in prompts

    def choices(self) -> list[Choice]:
        """One :class:`Choice` per checkbox; scopes described alike share one box."""
        groups: dict[str, list[Scope]] = {}
        for scope in self.grantable:
            groups.setdefault(describe(scope), []).append(scope)
        return [_choice(words, scopes, self.grantable) for words, scopes in groups.items()]

    def approved(self, values: list[str]) -> ScopeSet:
        """The scopes of the ticked boxes; a value the page did not offer counts for nothing."""
        offered = {choice.value for choice in self.choices()}
        offered.update(value for choice in self.choices() for _, value in choice.narrower)
        return parse_scopes(" ".join(value for value in values if value in offered))

    def patient_value(self, patient_id: str) -> str:
        """The picker's form value for ``patient_id``, good for this request and login only."""
        return picker.offer(self.login, self.params, patient_id)

    def picked_patient(self, value: str | None) -> str | None:
        """The patient the form picked; a value the page did not offer picks nobody."""
        return picker.picked(self.login, self.params, value)


def _choice(words: str, scopes: list[Scope], grantable: ScopeSet) -> Choice:
    narrower = (sub for scope in scopes for sub in granular.sub_scopes(scope))
    # A granular scope the app asked for by itself already has its own box.
    boxes = ((describe(sub), sub.text) for sub in narrower if sub not in grantable)
    return Choice(words, " ".join(scope.text for scope in scopes), tuple(boxes))


def prepare(grant: Any, login: LoginSession, params: list[tuple[str, str]]) -> Offer:
    """What ``login``'s user could grant this request, and the context it comes with.

    :param params: the authorization request's parameters, without the page's own fields.

    :raises OAuth2Error: redirected to the client: ``invalid_scope`` when nothing can be
        granted or more than an access token can carry, ``access_denied`` when no patient
        context can be established.
    """
    user = login.user
    request = grant.request
    grantable = grantable_scope(request.requested_scope, grant.client, user)
    launch = getattr(request, "launch", None)
    # The EHR's context only with a grantable ``launch`` scope: an app not registered for it
    # gets none (and the launch stays unspent).
    ehr_launch = launch is not None and grantable.has("launch")
    if ehr_launch:
        grantable = launch_context.served_scope(grantable, launch.token_context())
    else:
        grantable = without_standalone_unservable(grantable)
    if not len(grantable):
        raise refuse(grant, InvalidScopeError, "None of the requested scopes can be granted.")
    check_token_room(grant, grantable)
    offer = Offer(grant, login, params, grantable, identity_context(user))
    if ehr_launch:
        _apply_launch(offer, launch)
    elif needs_patient(grantable):
        _standalone_patient(offer)
    return offer


def check_token_room(grant: Any, scope: ScopeSet) -> None:
    """Refuse, before any code exists, a grant whose scope no access token can carry: a short
    request (``patient/*.rs``) narrowed by a registration or a role ceiling can be spelt out as
    many scopes, and so can the granular boxes a user ticks (:mod:`authserver.tokens.limits`).

    :raises OAuth2Error: ``invalid_scope``, redirected to the client.
    """
    if not scope_fits(str(scope)):
        raise refuse(grant, InvalidScopeError, GRANTED_SCOPE_TOO_LONG)


def grantable_scope(requested: ScopeSet, client: Client, user: User) -> ScopeSet:
    """The most ``user`` could let ``client`` have of ``requested`` under the tenant's policy as
    it is now: the client's registered scopes and the union of the user's role ceilings
    (:func:`policy.grantable`). Asked before consent, and again at every refresh, so that a
    narrowed ceiling, a role taken away or a narrowed registration bounds every token minted
    from then on (``grants/refresh_token.py``)."""
    return policy.grantable(
        requested, parse_scopes(client.allowed_scope), accounts.role_ceiling(user)
    )


def identity_context(user: User) -> dict[str, Any]:
    fhir_base = tenants.urls(current_tenant()).fhir_base_url
    return {"fhirUser": launch_context.fhir_user_url(fhir_base, user.fhir_user)}


def without_standalone_unservable(scope: ScopeSet) -> ScopeSet:
    """``scope`` less the context scopes only an EHR launch could fill. Outside one, the patient
    is the only context we establish (the picker); ``launch/encounter`` and the experimental
    ``launch/<type>`` would be granted with nothing in context, which an app may read as "there
    is none" (we do not advertise ``context-standalone-encounter``, SA-02)."""
    return ScopeSet(
        granted
        for granted in scope
        if not isinstance(granted, LaunchScope) or granted.context_type in (None, "patient")
    )


def needs_patient(scope: ScopeSet) -> bool:
    """``launch/patient`` (with a ``?role=`` too), or any ``patient/`` scope, needs a patient in
    context (TOK-08, SCOPE-09)."""
    return scope.asks_context("patient") or any(
        resource.level == "patient" for resource in scope.resource_scopes
    )


def is_patient_user(user: User) -> bool:
    return PATIENT_ROLE in user.role_names


def _apply_launch(offer: Offer, launch: Any) -> None:
    context = launch.token_context()
    user = offer.login.user
    if is_patient_user(user) and context.get("patient") != launch_context.own_patient_id(
        user.fhir_user
    ):
        raise refuse(offer.grant, AccessDeniedError, "This launch is for another patient.")
    offer.context.update(context)
    offer.launch = launch


def _standalone_patient(offer: Offer) -> None:
    """A patient user is their own context; a staff user picks one (SA-01)."""
    user = offer.login.user
    if not is_patient_user(user):
        offer.pick_patient = True
        return
    own = launch_context.own_patient_id(user.fhir_user)
    if own is None:
        raise refuse(offer.grant, AccessDeniedError, "No patient record is linked to this account.")
    offer.context["patient"] = own


def decide(offer: Offer, form: MultiDict) -> Decision:
    """Apply the consent form: the approved scopes, the picked patient.

    :raises OAuth2Error: ``access_denied`` when the user denied or approved nothing.
    :raises PatientNotChosen: when a patient was to be picked and none usable came back.
    """
    if form.get("decision") != "allow":
        raise refuse(offer.grant, AccessDeniedError, "The user denied the request.")
    approved = offer.approved(form.getlist("grant"))
    scope = offer.grantable if offer.client.trusted else policy.granted(offer.grantable, approved)
    if offer.launch is not None and not scope.has("launch"):
        # Without ``launch`` the EHR's context stays behind (:func:`_decision`), and with it
        # what only the launch could fill.
        scope = without_standalone_unservable(scope)
    if not len(scope):
        raise refuse(offer.grant, AccessDeniedError, "The user approved no scope.")
    check_token_room(offer.grant, scope)
    return _decision(offer, scope, offer.picked_patient(form.get("patient")))


def decide_trusted(offer: Offer) -> Decision:
    return _decision(offer, offer.grantable, None)


def _decision(offer: Offer, scope: ScopeSet, picked: str | None) -> Decision:
    """The context ``scope`` carries (SCOPE-08: what the user unticked, the app does not get).

    Without ``launch`` the EHR's context stays behind (and the launch unspent); without
    ``launch/patient`` or a ``patient/`` scope, no patient is named, nor picked.
    """
    context = launch_context.granted_context(offer.context, scope)
    launch = offer.launch
    if launch is not None and not scope.has("launch"):
        context = {name: value for name, value in context.items() if name not in LAUNCH_MEMBERS}
        launch = None
    if launch is None and not needs_patient(scope):
        context.pop("patient", None)
    elif launch is None and offer.pick_patient:
        try:
            context["patient"] = launch_context.fhir_id(picked, "patient")
        except ValueError:
            raise PatientNotChosen from None
    elif "patient" not in context:  # patient/ scopes kept, the EHR's patient not shared
        raise refuse(
            offer.grant,
            AccessDeniedError,
            "The patient scopes need the patient of the EHR session, which was not shared.",
        )
    return Decision(offer.login, scope, context, launch)


def issue(offer: Offer, decision: Decision) -> Response:
    """Let Authlib make the code and the redirect back to the client, and keep them."""
    offer.grant.decision = decision
    response = authorization_server().create_authorization_response(
        grant=offer.grant, grant_user=decision.login.user
    )
    db.session.commit()
    return response


def refuse(grant: Any, error_class: type[OAuth2Error], description: str) -> OAuth2Error:
    """An error to redirect to the client with its state; the refusal is audited first."""
    audit.record(
        current_tenant(),
        AuditEvent.AUTHORIZATION_DENIED,
        subject=grant.client.client_id,
        error=error_class.error,
        reason=description,
    )
    db.session.commit()
    return error_class(
        description, redirect_uri=grant.redirect_uri, state=grant.request.payload.state
    )

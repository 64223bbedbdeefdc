"""SMART on FHIR scope grammar (v1, v2, granular) and scope narrowing.

SMART App Launch 2.2, "Scopes and Launch Context": "SMART on FHIR's authorization scheme uses
OAuth scopes to communicate (and negotiate) access requirements."  This module parses scope strings,
compares scopes in access terms and narrows a request against the ceilings that policy sets
(client registration, role ceilings, the user's consent).

Pure: it imports neither Flask nor the database, so callers decide what a malformed scope means
(refuse with ``invalid_scope`` or drop it silently, RFC 6749 §3.3).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import unquote

LEVELS = ("patient", "user", "system")
PERMISSION_LETTERS = "cruds"
V1_PERMISSIONS = {
    "read": frozenset("rs"),
    "write": frozenset("cud"),
    "*": frozenset("cruds"),
}
IDENTITY_SCOPES = frozenset({"openid", "fhirUser", "profile"})
REFRESH_SCOPES = frozenset({"offline_access", "online_access"})
# SCOPE-13: the IG appendix names these prefixes for the URI form of SMART and OpenID scopes.
URI_PREFIXES = (
    "http://smarthealthit.org/fhir/scopes/",
    "http://openid.net/specs/openid-connect-core-1_0#",
)

# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
_RESOURCE = re.compile(
    r"(?P<level>patient|user|system)/(?P<type>[A-Z][A-Za-z]*|\*)"
    r"\.(?P<perms>[^?]+)(?:\?(?P<query>.+))?"
)
_V2_PERMISSIONS = re.compile(r"c?r?u?d?s?")
_SEARCH_PARAM = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]*")
_SEARCH_VALUE = re.compile(r"[^&=?#]+")
_LAUNCH = re.compile(
    r"launch(?:/(?P<context>[a-z][A-Za-z]*)"
    r"(?:\?role=(?P<role>[A-Za-z][A-Za-z0-9+.-]*:[^&?]+))?)?"
)
_ABSOLUTE_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:.+")


class InvalidScope(ValueError):
    """A scope token does not follow the SMART scope grammar.

    SCOPE-02: undefined or out-of-order interactions "MAY be ignored, replaced with server default
    scopes, or rejected"; this module never reinterprets them, it reports them.
    """

    def __init__(self, scope: str, reason: str) -> None:
        super().__init__(f"malformed scope {scope!r}: {reason}")
        self.scope = scope
        self.reason = reason


@dataclass(frozen=True, eq=False)
class ResourceScope:
    """``<patient|user|system>/<ResourceType|*>.<perms>[?param=value&...]``.

    Equality is in access terms (``patient/Observation.read == patient/Observation.rs``);
    :attr:`text` keeps the exact string the client sent, for echoing (SCOPE-01, SCOPE-05).
    """

    level: str
    resource_type: str
    permissions: frozenset[str]
    query: tuple[tuple[str, str], ...]
    version: int
    text: str
    query_text: str = ""

    def __str__(self) -> str:
        return self.text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ResourceScope) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    @property
    def key(self) -> tuple:
        """What the scope grants; several ``&``-joined params are ANDed, so order is irrelevant."""
        return ("resource", self.level, self.resource_type, self.permissions, frozenset(self.query))


@dataclass(frozen=True, eq=False)
class NamedScope:
    """A scope granted only by name: identity, refresh, launch or extension scope.

    :attr:`kind` is ``"identity"``, ``"refresh"``, ``"launch"`` or ``"extension"``; :attr:`name`
    is the short form (the URI form of SCOPE-13 is reduced to it); :attr:`text` is as sent.
    """

    kind: str
    name: str
    text: str

    def __str__(self) -> str:
        return self.text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NamedScope) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    @property
    def key(self) -> tuple:
        return (self.kind, self.name)


@dataclass(frozen=True, eq=False)
class LaunchScope(NamedScope):
    """``launch``, ``launch/patient``, ``launch/encounter`` or ``launch/<type>[?role=<uri>]``.

    SCOPE-09: :attr:`context_type` is ``None`` for the EHR-launch scope ``launch``; "each
    ``?role=`` scope has at most one role".
    """

    context_type: str | None = None
    role: str | None = None


Scope = ResourceScope | NamedScope


def parse_scope(text: str) -> Scope:
    """Parse one scope token.

    :param text: one token, without surrounding spaces.
    :raises InvalidScope: when the token is not a SMART scope, an OpenID scope, or an extension
        scope (absolute URI or ``__`` prefix, SCOPE-11).
    """
    if not _SCOPE_TOKEN.fullmatch(text):
        raise InvalidScope(text, "not an RFC 6749 scope-token")
    for prefix in URI_PREFIXES:
        if text.startswith(prefix):
            return _parse_smart(text[len(prefix) :], text)
    try:
        return _parse_smart(text, text)
    except InvalidScope:
        if _is_extension(text):
            return NamedScope("extension", text, text)
        raise


def _parse_smart(body: str, text: str) -> Scope:
    """Parse a scope the SMART or OpenID specs define; ``text`` is what the client sent."""
    head = body.partition("/")[0]
    if head in LEVELS:
        return _parse_resource(body, text)
    if head == "launch":
        return _parse_launch(body, text)
    if body in IDENTITY_SCOPES:
        return NamedScope("identity", body, text)
    if body in REFRESH_SCOPES:
        return NamedScope("refresh", body, text)
    raise InvalidScope(text, "unknown scope")


def _is_extension(text: str) -> bool:
    # A token starting with a SMART level or "launch" must never fall through to here: an
    # absolute URI needs a scheme, and "patient/..." has a "/" before any ":".
    return (text.startswith("__") and len(text) > 2) or bool(_ABSOLUTE_URI.fullmatch(text))


def _parse_resource(body: str, text: str) -> ResourceScope:
    match = _RESOURCE.fullmatch(body)
    if not match:
        raise InvalidScope(text, "expected <level>/<ResourceType|*>.<permissions>[?query]")
    permissions, version = _parse_permissions(match["perms"], text)
    query_text = match["query"] or ""
    if query_text and version == 1:
        raise InvalidScope(text, "search-parameter constraints need v2 permissions (e.g. .rs)")
    query = _parse_query(query_text, text) if query_text else ()
    return ResourceScope(
        match["level"], match["type"], permissions, query, version, text, query_text
    )


def _parse_permissions(perms: str, text: str) -> tuple[frozenset[str], int]:
    """SCOPE-02: "permission letters out of order or undefined ... never interpreted so as to grant
    extra rights"; only the exact v1 words and in-order subsets of ``cruds`` are accepted.
    """
    if perms in V1_PERMISSIONS:
        return V1_PERMISSIONS[perms], 1
    if _V2_PERMISSIONS.fullmatch(perms):
        return frozenset(perms), 2
    raise InvalidScope(text, "permissions must be read, write, * or an in-order subset of cruds")


def _parse_query(query_text: str, text: str) -> tuple[tuple[str, str], ...]:
    """SCOPE-05: values are compared percent-decoded, so ``%7C`` and ``|`` mean the same."""
    pairs = []
    for part in query_text.split("&"):
        param, equals, value = part.partition("=")
        if not (equals and _SEARCH_PARAM.fullmatch(param) and _SEARCH_VALUE.fullmatch(value)):
            raise InvalidScope(text, f"bad search-parameter constraint {part!r}")
        pairs.append((param, unquote(value)))
    return tuple(pairs)


def _parse_launch(body: str, text: str) -> LaunchScope:
    match = _LAUNCH.fullmatch(body)
    if not match:
        raise InvalidScope(text, "expected launch, launch/<type> or launch/<type>?role=<uri>")
    return LaunchScope("launch", body, text, match["context"], match["role"])


class ScopeSet:
    """An ordered, duplicate-free set of scopes, as in the ``scope`` parameter.

    Duplicates are judged in access terms; the first spelling wins.  :attr:`dropped` lists the
    malformed tokens that :func:`parse_scopes` left out.
    """

    def __init__(self, scopes: Iterable[Scope] = (), dropped: Iterable[str] = ()) -> None:
        self._scopes = tuple(dict.fromkeys(scopes))
        self.dropped = tuple(dropped)

    def __iter__(self) -> Iterator[Scope]:
        return iter(self._scopes)

    def __len__(self) -> int:
        return len(self._scopes)

    def __str__(self) -> str:
        return " ".join(scope.text for scope in self._scopes)

    def __repr__(self) -> str:
        return f"ScopeSet({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ScopeSet) and set(self._scopes) == set(other._scopes)

    def __hash__(self) -> int:
        return hash(frozenset(self._scopes))

    def __contains__(self, item: object) -> bool:
        """Exact membership (in access terms); use :meth:`covers` for "is this allowed"."""
        if isinstance(item, str):
            try:
                item = parse_scope(item)
            except InvalidScope:
                return False
        return item in self._scopes

    @property
    def resource_scopes(self) -> tuple[ResourceScope, ...]:
        return tuple(scope for scope in self._scopes if isinstance(scope, ResourceScope))

    def has(self, name: str) -> bool:
        """Whether the non-resource scope ``name`` (``openid``, ``launch/patient``) is in."""
        return any(isinstance(scope, NamedScope) and scope.name == name for scope in self)

    def asks_context(self, context_type: str) -> bool:
        """Whether a launch scope asks for ``context_type`` (``patient``...), with a ``?role=``
        or without: SCOPE-09, an unsupported role "SHOULD still yield context for the type"."""
        return any(
            isinstance(scope, LaunchScope) and scope.context_type == context_type for scope in self
        )

    def covers(self, other: Scope | ScopeSet) -> bool:
        """Whether every access ``other`` describes is granted by this set.

        SCOPE-03: "union of scopes = union of access", so ``patient/Observation.r
        patient/Observation.s`` covers ``patient/Observation.rs``.
        """
        if isinstance(other, ScopeSet):
            return all(self.covers(scope) for scope in other)
        if isinstance(other, NamedScope):
            return other in self._scopes
        return all(self._covers_letter(other, letter) for letter in other.permissions)

    def _covers_letter(self, requested: ResourceScope, letter: str) -> bool:
        return any(
            letter in ceiling.permissions and _covers_target(ceiling, requested)
            for ceiling in self.resource_scopes
        )

    def permits(
        self,
        level: str,
        resource_type: str,
        letter: str,
        query: Iterable[tuple[str, str]] = (),
    ) -> bool:
        """Whether ``letter`` (one of ``cruds``) is granted on ``resource_type`` at ``level``.

        Without ``query`` only unconstrained access counts: a granted
        ``patient/Observation.rs?category=laboratory`` does not permit every Observation.
        """
        if len(letter) != 1 or letter not in PERMISSION_LETTERS:
            return False
        wanted = ResourceScope(level, resource_type, frozenset(letter), tuple(query), 2, "")
        return self.covers(wanted)


def parse_scopes(text: str, strict: bool = False) -> ScopeSet:
    """Parse a space-separated ``scope`` string (RFC 6749 §3.3), keeping request order.

    Repeated spaces are collapsed and duplicates removed.  Malformed tokens are left out and listed
    in :attr:`ScopeSet.dropped`, so the caller chooses between dropping them and ``invalid_scope``.

    :param strict: raise instead of dropping.
    :raises InvalidScope: with ``strict``, for the first malformed token.
    """
    scopes, dropped = [], []
    for token in filter(None, text.split(" ")):
        try:
            scopes.append(parse_scope(token))
        except InvalidScope:
            if strict:
                raise
            dropped.append(token)
    return ScopeSet(scopes, dict.fromkeys(dropped))


def union(*scope_sets: ScopeSet) -> ScopeSet:
    """All scopes of the given sets, in order, e.g. the ceilings of a user's several roles."""
    return ScopeSet(scope for scope_set in scope_sets for scope in scope_set)


def covers(ceiling: Scope, requested: Scope) -> bool:
    """Whether the single scope ``ceiling`` grants everything ``requested`` asks for.

    Resource scopes: ``user/`` covers ``patient/`` ("patient/ access is a subset of what the user
    may see"), ``system/`` and ``patient/`` cover only themselves; ``*`` covers any type; letters
    must be a subset; a ceiling's search constraints must all appear in the request (AND).
    Other scopes cover only an identical scope.
    """
    if isinstance(ceiling, ResourceScope) and isinstance(requested, ResourceScope):
        return requested.permissions <= ceiling.permissions and _covers_target(ceiling, requested)
    return isinstance(ceiling, NamedScope) and ceiling == requested


def _covers_target(ceiling: ResourceScope, requested: ResourceScope) -> bool:
    """Level, type and search constraints of ``ceiling`` include those of ``requested``."""
    return (
        _level_covers(ceiling.level, requested.level)
        and ceiling.resource_type in ("*", requested.resource_type)
        and set(ceiling.query) <= set(requested.query)
    )


def _level_covers(ceiling_level: str, requested_level: str) -> bool:
    return ceiling_level == requested_level or (
        ceiling_level == "user" and requested_level == "patient"
    )


def narrow(requested: ScopeSet, *ceilings: ScopeSet) -> ScopeSet:
    """What may be granted: ``requested`` intersected with each ceiling in turn.

    Typical use: ``narrow(requested, client_allowed, union(*role_ceilings), user_approved)``.
    The result never grants what was not requested nor what a ceiling does not grant (AUTHZ-15,
    BS-05, SCOPE-12); it keeps request order; a scope granted in full keeps its original spelling
    (so v1 requests come back as v1, SCOPE-04).  Non-resource scopes pass only when the identical
    scope is in the ceiling.
    """
    for ceiling in ceilings:
        # A narrowed part that means the same as a scope requested verbatim takes that spelling.
        spelled = {scope: scope for scope in requested}
        granted = (part for scope in requested for part in _grant(scope, ceiling))
        requested = ScopeSet(spelled.get(part, part) for part in granted)
    return requested


def _grant(requested: Scope, ceiling: ScopeSet) -> list[Scope]:
    """The parts of one requested scope that ``ceiling`` allows, smallest complete description."""
    if ceiling.covers(requested):
        return [requested]
    if isinstance(requested, NamedScope):
        return []
    parts = (_intersect(requested, scope) for scope in ceiling.resource_scopes)
    return _drop_subsumed(_merge(requested, [part for part in parts if part]))


def _intersect(requested: ResourceScope, ceiling: ResourceScope) -> ResourceScope | None:
    """The access both scopes grant, or None; stays at the requested level."""
    resource_type = _narrower_type(requested.resource_type, ceiling.resource_type)
    permissions = requested.permissions & ceiling.permissions
    constrained = _narrower_query(requested, ceiling)
    if not _level_covers(ceiling.level, requested.level):
        return None
    if resource_type is None or not permissions or constrained is None:
        return None
    return _build(requested, resource_type, permissions, constrained)


def _narrower_type(requested_type: str, ceiling_type: str) -> str | None:
    """A requested ``*`` narrowed by ``Patient`` gives ``Patient``; two different types, nothing."""
    if ceiling_type in ("*", requested_type):
        return requested_type
    return ceiling_type if requested_type == "*" else None


def _narrower_query(requested: ResourceScope, ceiling: ResourceScope) -> ResourceScope | None:
    """The side whose search constraints include the other's (AND semantics, SCOPE-07).

    Two constraint sets neither of which contains the other are not combined: nothing is granted
    rather than a constraint string nobody asked for.
    """
    if set(ceiling.query) <= set(requested.query):
        return requested
    if set(requested.query) < set(ceiling.query):
        return ceiling
    return None


def _build(
    requested: ResourceScope,
    resource_type: str,
    permissions: frozenset[str],
    constrained: ResourceScope,
) -> ResourceScope:
    """A narrowed scope, spelled in the request's version when that version can express it."""
    v1_word = next((word for word, letters in V1_PERMISSIONS.items() if letters == permissions), "")
    version = 1 if requested.version == 1 and v1_word and not constrained.query else 2
    letters = v1_word if version == 1 else "".join(sorted(permissions, key="cruds".index))
    text = f"{requested.level}/{resource_type}.{letters}"
    if constrained.query_text:
        text = f"{text}?{constrained.query_text}"
    return ResourceScope(
        requested.level,
        resource_type,
        permissions,
        constrained.query,
        version,
        text,
        constrained.query_text,
    )


def _merge(requested: ResourceScope, parts: list[ResourceScope]) -> list[ResourceScope]:
    """SCOPE-03: ``X.r`` and ``X.s`` on the same target are written as one ``X.rs``."""
    merged: dict[tuple, ResourceScope] = {}
    for part in parts:
        target = (part.resource_type, frozenset(part.query))
        if target in merged:
            permissions = merged[target].permissions | part.permissions
            part = _build(requested, part.resource_type, permissions, merged[target])
        merged[target] = part
    return list(merged.values())


def _drop_subsumed(parts: list[ResourceScope]) -> list[ResourceScope]:
    return [
        part for part in parts if not any(other != part and covers(other, part) for other in parts)
    ]


# --- Plain words for the consent page -------------------------------------------------------

_VERBS = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}
_RESOURCE_NAMES = {
    "AllergyIntolerance": "allergies",
    "Appointment": "appointments",
    "CarePlan": "care plans",
    "CareTeam": "care teams",
    "Condition": "conditions",
    "Coverage": "insurance coverage",
    "Device": "medical devices",
    "DiagnosticReport": "test reports",
    "DocumentReference": "clinical documents",
    "Encounter": "visits",
    "Goal": "health goals",
    "Immunization": "immunizations",
    "Medication": "medications",
    "MedicationRequest": "medications",
    "MedicationStatement": "medications",
    "Observation": "observations",
    "Patient": "demographics",
    "Practitioner": "care providers",
    "Procedure": "procedures",
    "ServiceRequest": "orders and referrals",
}
# Keyed by category code; the system part of "system|code" does not change the wording.
_CATEGORY_NAMES = {
    ("Observation", "laboratory"): "lab results",
    ("Observation", "vital-signs"): "vital signs",
    ("Observation", "social-history"): "social history",
    ("Observation", "survey"): "survey answers",
    ("Observation", "sdoh"): "social needs information",
    ("Observation", "imaging"): "imaging results",
    ("Observation", "exam"): "exam findings",
    ("Condition", "problem-list-item"): "problem list",
    ("Condition", "encounter-diagnosis"): "visit diagnoses",
    ("Condition", "health-concern"): "health concerns",
}
_NAMED_DESCRIPTIONS = {
    "openid": "Know who you are",
    "fhirUser": "Know who you are",
    "profile": "Know who you are",
    "offline_access": "Keep access when you are not using it",
    "online_access": "Keep access while you are using it",
    "launch": "Use the context of the EHR session it was opened from",
    "launch/patient": "Know which patient is selected",
    "launch/encounter": "Know which encounter is selected",
}


def describe(scope: Scope | str) -> str:
    """A plain-words description of one scope for the consent page.

    :raises InvalidScope: when given a malformed scope string.
    """
    if isinstance(scope, str):
        scope = parse_scope(scope)
    if isinstance(scope, ResourceScope):
        return f"{_verb_phrase(scope.permissions)} {_subject(scope)}"
    if scope.name in _NAMED_DESCRIPTIONS:
        return _NAMED_DESCRIPTIONS[scope.name]
    if isinstance(scope, LaunchScope):
        role = f" (as {scope.role})" if scope.role else ""
        return f"Know which {scope.context_type} is selected{role}"
    return f"Use the additional permission {scope.text}"


def describe_all(scopes: ScopeSet) -> list[str]:
    """One line per distinct description, in scope order (``openid fhirUser`` gives one line)."""
    return list(dict.fromkeys(describe(scope) for scope in scopes))


def _verb_phrase(permissions: frozenset[str]) -> str:
    words = [_VERBS[letter] for letter in PERMISSION_LETTERS if letter in permissions]
    phrase = words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"
    return phrase.capitalize()


def _subject(scope: ResourceScope) -> str:
    if scope.resource_type == "*":
        return {
            "patient": "all your data",
            "user": "all data you can access",
            "system": "all data on this server",
        }[scope.level]
    noun = _noun(scope)
    return {
        "patient": f"your {noun}",
        "user": f"{noun} you can access",
        "system": f"all {noun} on this server",
    }[scope.level]


def _noun(scope: ResourceScope) -> str:
    if len(scope.query) == 1 and scope.query[0][0] == "category":
        code = scope.query[0][1].rpartition("|")[2]
        if (scope.resource_type, code) in _CATEGORY_NAMES:
            return _CATEGORY_NAMES[scope.resource_type, code]
    noun = _RESOURCE_NAMES.get(scope.resource_type) or _type_words(scope.resource_type)
    if not scope.query:
        return noun
    return f"{noun} where " + " and ".join(f"{param} is {value}" for param, value in scope.query)


def _type_words(resource_type: str) -> str:
    """``MedicationDispense`` -> ``medication dispense records``."""
    return " ".join(re.findall(r"[A-Z][a-z]*", resource_type)).lower() + " records"

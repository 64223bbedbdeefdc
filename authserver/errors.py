"""Domain errors raised by services; views and CLI commands render them in their own format."""

from __future__ import annotations


class ServiceError(Exception):
    """A request a service refuses; ``str(error)`` is safe to show (it never holds a secret)."""

    status = 400
    code = "invalid_request"


class ValidationError(ServiceError):
    """Input that breaks a rule (bad slug, unknown role, over-long field...)."""


class NotFound(ServiceError):
    status = 404
    code = "not_found"


class Conflict(ServiceError):
    """The thing exists already (duplicate slug, username taken in this tenant...)."""

    status = 409
    code = "conflict"

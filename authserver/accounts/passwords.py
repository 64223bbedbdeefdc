"""argon2id password hashing with the deployment's cost settings."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError
from argon2.exceptions import VerificationError
from flask import current_app


@dataclass
class Passwords:
    """Hash, verify and tell when a stored hash was made with other parameters."""

    hasher: PasswordHasher
    _dummy_hash: str | None = field(default=None, repr=False)

    @classmethod
    def from_config(cls, config: dict) -> Passwords:
        return cls(
            PasswordHasher(
                time_cost=config["AUTHSERVER_ARGON2_TIME_COST"],
                memory_cost=config["AUTHSERVER_ARGON2_MEMORY_COST"],
                parallelism=config["AUTHSERVER_ARGON2_PARALLELISM"],
            )
        )

    def hash(self, password: str) -> str:
        return self.hasher.hash(password)

    def verify(self, stored_hash: str | None, password: str) -> bool:
        """Check ``password``; with no stored hash, spend the same time on a dummy and fail.

        An unknown username costs what a wrong password costs, so timing tells nothing.
        """
        if stored_hash is None:
            stored_hash, password = self.dummy_hash, password + "\x00not-the-dummy"
        try:
            return self.hasher.verify(stored_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        return self.hasher.check_needs_rehash(stored_hash)

    @property
    def dummy_hash(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = self.hasher.hash("dummy password for unknown users")
        return self._dummy_hash


def passwords() -> Passwords:
    """The app's :class:`Passwords`, made once from its config."""
    return current_app.extensions["authserver.passwords"]

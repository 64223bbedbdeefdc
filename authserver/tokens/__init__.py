"""Issued tokens: JWT access tokens, opaque refresh tokens, their records and revocation state."""

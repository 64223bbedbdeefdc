"""Key material: generation, JWK export and encryption at rest. Imports neither Flask nor the DB."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from jwt.algorithms import ECAlgorithm
from jwt.algorithms import RSAAlgorithm

RSA_KEY_BITS = 2048
SUPPORTED_ALGORITHMS = ("RS256", "ES256")
PUBLIC_MEMBERS = {
    "RSA": ("kty", "n", "e"),
    "EC": ("kty", "crv", "x", "y"),
}
_CIPHERTEXT_VERSION = b"\x01"

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


class KeyDecryptionError(Exception):
    """No configured key-encryption key opens this private key (wrong KEK or tampered row)."""


@dataclass(frozen=True)
class GeneratedKey:
    kid: str
    alg: str
    public_jwk: dict[str, Any]
    private_pem: bytes


def generate(alg: str) -> GeneratedKey:
    """Make a new signing key for ``alg`` (RS256: RSA 2048; ES256: P-256).

    The ``kid`` is the RFC 7638 JWK thumbprint, so it names the key and nothing else.
    """
    if alg == "RS256":
        private: PrivateKey = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
        jwk = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    elif alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
        jwk = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    else:
        raise ValueError(f"unsupported algorithm {alg!r}; use one of {SUPPORTED_ALGORITHMS}")
    kid = thumbprint(jwk)
    public_jwk = {**_public_members(jwk), "kid": kid, "alg": alg, "use": "sig"}
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return GeneratedKey(kid=kid, alg=alg, public_jwk=public_jwk, private_pem=pem)


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 §3: SHA-256 over the required members in lexicographic order, no whitespace."""
    members = {name: jwk[name] for name in sorted(PUBLIC_MEMBERS[jwk["kty"]])}
    digest = hashlib.sha256(json.dumps(members, separators=(",", ":")).encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _public_members(jwk: dict[str, Any]) -> dict[str, Any]:
    return {name: jwk[name] for name in PUBLIC_MEMBERS[jwk["kty"]]}


def associated_data(tenant_id: int, kid: str) -> str:
    """What a private key's ciphertext is bound to: its tenant and its kid."""
    return f"tenant:{tenant_id}:kid:{kid}"


def encrypt_private_key(pem: bytes, keks: list[bytes], associated: str) -> bytes:
    """AES-256-GCM under the first key-encryption key.

    ``associated`` (tenant id and kid) is authenticated, so a ciphertext copied onto another
    tenant's row, or another key's, does not decrypt.
    """
    nonce = os.urandom(12)
    return _CIPHERTEXT_VERSION + nonce + AESGCM(keks[0]).encrypt(nonce, pem, associated.encode())


def decrypt_private_key(blob: bytes, keks: list[bytes], associated: str) -> PrivateKey:
    """Open ``blob`` with whichever configured key-encryption key sealed it.

    An RSA key is loaded without OpenSSL's consistency check (``RSA_check_key``, which tests
    the primes and takes about 45 ms for a 2048-bit key, where a signature takes one): the
    GCM tag has just proved that the PEM is, byte for byte, one :func:`generate` wrote from a
    key OpenSSL made, for this tenant and ``kid``. Each worker opens each tenant's key once
    it signs with it (:func:`authserver.keys.service.signer`), so with thousands of tenants
    the check would cost minutes of CPU after every start.

    :raises KeyDecryptionError: when none does.
    """
    if blob[:1] != _CIPHERTEXT_VERSION:
        raise KeyDecryptionError("unknown ciphertext format")
    nonce, sealed = blob[1:13], blob[13:]
    for kek in keks:
        try:
            pem = AESGCM(kek).decrypt(nonce, sealed, associated.encode())
        except Exception:  # noqa: BLE001, S112 - InvalidTag: try the next KEK
            continue
        return serialization.load_pem_private_key(  # type: ignore[return-value]
            pem, password=None, unsafe_skip_rsa_key_validation=True
        )
    raise KeyDecryptionError("no configured key-encryption key opens this private key")

"""RS256 signing keys: loading, first-start generation in development, and the JWKS.

`AUTH_KEYS_DIR/current.pem` signs new tokens; `AUTH_KEYS_DIR/previous.pem`, when present, is
only published so tokens signed before a rotation keep verifying until they expire.
To rotate: move current.pem to previous.pem, put the new key in current.pem, restart.

Each key's `kid` is its RFC 7638 JWK thumbprint, so it is derived from the key itself and
identical in every worker and replica.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

logger = logging.getLogger(__name__)

CURRENT_KEY_FILE = "current.pem"
PREVIOUS_KEY_FILE = "previous.pem"
KEY_SIZE = 2048


class KeyConfigurationError(RuntimeError):
    pass


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def public_jwk(public_key: rsa.RSAPublicKey) -> dict[str, str]:
    numbers = public_key.public_numbers()
    return {"e": _b64url_uint(numbers.e), "kty": "RSA", "n": _b64url_uint(numbers.n)}


def thumbprint(public_key: rsa.RSAPublicKey) -> str:
    """RFC 7638: SHA-256 over the required members, sorted, without whitespace."""
    canonical = json.dumps(public_jwk(public_key), sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_key: rsa.RSAPrivateKey

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        return self.private_key.public_key()

    def jwk(self) -> dict[str, str]:
        return {**public_jwk(self.public_key), "kid": self.kid, "alg": "RS256", "use": "sig"}


@dataclass(frozen=True)
class KeySet:
    current: SigningKey
    previous: SigningKey | None = None

    @property
    def all(self) -> list[SigningKey]:
        return [self.current, *([self.previous] if self.previous else [])]

    def public_keys(self) -> dict[str, Any]:
        """kid -> public key, for the in-process token verifier."""
        return {key.kid: key.public_key for key in self.all}

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.jwk() for key in self.all]}


def load_key(path: Path) -> SigningKey:
    try:
        private_key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise KeyConfigurationError(f"{path} is not an unencrypted PEM private key: {exc}") from exc
    if not isinstance(private_key, rsa.RSAPrivateKey) or private_key.key_size < KEY_SIZE:
        raise KeyConfigurationError(
            f"{path} must hold an RSA private key of at least {KEY_SIZE} bits"
        )
    return SigningKey(kid=thumbprint(private_key.public_key()), private_key=private_key)


def generate_key_file(path: Path) -> None:
    """Write a new key to `path` unless one appears there first (several workers may race:
    the key is written to a temporary file and hard-linked into place, which fails if the
    name exists, so every worker ends up using the same key)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_SIZE)
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=".key-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(pem)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp_name, 0o600)
        with contextlib.suppress(FileExistsError):
            os.link(tmp_name, path)
            logger.warning("generated a new RS256 signing key at %s (development only)", path)
    finally:
        os.unlink(tmp_name)


def load_key_set(keys_dir: Path, *, generate_if_missing: bool) -> KeySet:
    current_path = keys_dir / CURRENT_KEY_FILE
    if not current_path.exists():
        if not generate_if_missing:
            raise KeyConfigurationError(
                f"no signing key: {current_path} does not exist. In production the RS256 "
                f"private key must be provided (PEM, set AUTH_KEYS_DIR); only development "
                f"generates one."
            )
        generate_key_file(current_path)
    previous_path = keys_dir / PREVIOUS_KEY_FILE
    previous = load_key(previous_path) if previous_path.exists() else None
    return KeySet(current=load_key(current_path), previous=previous)

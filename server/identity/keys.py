"""The app's public keys: one PEM file (`--jwt-public-key`), or a JWKS (server/identity/jwks.py).

Each key verifies exactly one algorithm, chosen by its type (RSA: RS256, EC P-256: ES256,
Ed25519: EdDSA), never by the token: a token cannot ask for HS256 with the public key as the
HMAC secret, nor for `none`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

__all__ = ["ALGORITHMS", "KeySource", "SigningKey", "StaticKey", "load_public_key"]

ALGORITHMS = frozenset({"RS256", "ES256", "EdDSA"})


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A public key and the one algorithm it verifies."""

    key: Any
    algorithm: str


class KeySource(Protocol):
    def known(self, kid: str | None) -> SigningKey:
        """The key for `kid` among those already at hand (no I/O); `InvalidToken` if none."""
        ...

    async def refresh(self, kid: str | None) -> None:
        """Make sure `kid` is looked up where the keys live (may fetch; bounded)."""
        ...

    async def prefetch(self) -> None:
        """Get the keys at start, so that the first tokens need no fetch."""
        ...


def load_public_key(path: Path) -> SigningKey:
    """The PEM public key in `path` and its algorithm; `ValueError` naming what is wrong."""
    try:
        key = load_pem_public_key(path.read_bytes())
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError:
        raise ValueError(f"{path} is not a PEM public key") from None
    if isinstance(key, rsa.RSAPublicKey):
        return SigningKey(key, "RS256")
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return SigningKey(key, "ES256")
    if isinstance(key, ed25519.Ed25519PublicKey):
        return SigningKey(key, "EdDSA")
    raise ValueError(f"{path}: unsupported key; use RSA (RS256), EC P-256 (ES256) or Ed25519")


class StaticKey:
    """One key for every token; a `kid` in the token is not needed and not checked."""

    def __init__(self, key: SigningKey) -> None:
        self._key = key

    def known(self, kid: str | None) -> SigningKey:
        return self._key

    async def refresh(self, kid: str | None) -> None:
        return None

    async def prefetch(self) -> None:
        return None

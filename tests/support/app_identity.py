"""The app's side of its own tokens, for tests: generated keys, JWTs signed with them, and a
JWKS served over real HTTP on loopback (`http.server` in a thread) that a test can rotate."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from tests.support.server_process import ServerProcess

__all__ = [
    "AUDIENCE",
    "ISSUER",
    "AppKey",
    "JwksServer",
    "app_claims",
    "app_server_process",
    "claims_for",
    "hs256_signed_with",
    "new_key",
]

ISSUER = "https://app.example"
AUDIENCE = "draftsync"


@dataclass
class AppKey:
    """One of the app's signing keys: its private half, algorithm and key id."""

    private: Any
    algorithm: str
    kid: str

    def sign(self, claims: dict[str, Any], *, kid: str | None = "", **header: Any) -> str:
        """`claims` signed with this key; `kid=""` (default) puts this key's id in the header,
        None leaves it out, anything else is put there as given."""
        headers = dict(header)
        if kid is not None:
            headers["kid"] = kid or self.kid
        return jwt.encode(claims, self.private, algorithm=self.algorithm, headers=headers)

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def write_public_pem(self, path: Path) -> Path:
        path.write_bytes(self.public_pem())
        return path

    def jwk(self) -> dict[str, Any]:
        converter = {"RS256": RSAAlgorithm, "ES256": ECAlgorithm, "EdDSA": OKPAlgorithm}
        jwk = converter[self.algorithm].to_jwk(self.private.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, "use": "sig", "alg": self.algorithm}


def new_key(algorithm: str, kid: str) -> AppKey:
    if algorithm == "RS256":
        private: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif algorithm == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    elif algorithm == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        raise ValueError(algorithm)
    return AppKey(private, algorithm, kid)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_signed_with(secret: bytes, claims: dict[str, Any], **header: Any) -> str:
    """An HS256 JWT whose HMAC key is `secret` (the public key's PEM, in the confusion attack):
    made by hand, as PyJWT refuses to use a PEM key as an HMAC secret."""
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT", **header}).encode())
    body = _b64(json.dumps(claims).encode())
    signature = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(signature)}"


def claims_for(user: str, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": user, "iat": now, "exp": now + 600, **extra}


def app_claims(user: str, **extra: Any) -> dict[str, Any]:
    """`claims_for` with the app's issuer and audience (`app_server_process`)."""
    return claims_for(user, **{"iss": ISSUER, "aud": AUDIENCE, **extra})


def app_server_process(data: Path, jwks: JwksServer, *flags: str) -> ServerProcess:
    """A server (not started) that takes the app's tokens: keys from `jwks`, the app's issuer
    and audience, roles in the `drafts` claim."""
    return ServerProcess(
        data,
        "--room-grace", "0.3",
        "--jwks-url", jwks.url,
        "--jwt-issuer", ISSUER,
        "--jwt-audience", AUDIENCE,
        "--jwt-roles-claim", "drafts",
        *flags,
    )  # fmt: skip


class JwksServer:
    """`GET /jwks.json` answers the current `keys`; `fetches` counts the requests."""

    def __init__(self, keys: list[AppKey]) -> None:
        self.keys = list(keys)
        self.fetches = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.fetches += 1
                body = json.dumps({"keys": [key.jwk() for key in owner.keys]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}/jwks.json"

    def __enter__(self) -> JwksServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(timeout=10)

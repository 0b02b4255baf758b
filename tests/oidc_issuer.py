"""A real OpenID Connect issuer for tests: an HTTP server on a free loopback port.

It serves ``{issuer}/.well-known/openid-configuration`` and ``{issuer}/jwks`` from a
background thread (``http.server``), holds one signing key per algorithm (RS256, PS256,
ES256, EdDSA, made with ``cryptography``) and signs tokens with them, so City OS verifies
tokens over HTTP exactly as it would Keycloak's::

    with OidcIssuer() as issuer:
        token = issuer.token("alice", aud="cityos", tenants=["takamatsu"], roles=["viewer"])

``realm`` puts the issuer under a path, as Keycloak does (``.../realms/takamatsu``).
``jwks_requests`` and ``discovery_requests`` count what was served, to check caching.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

__all__ = ["ALGORITHMS", "OidcIssuer", "SigningKey"]

ALGORITHMS = ("RS256", "PS256", "ES256", "EdDSA")


class SigningKey:
    """A private key, its kid and algorithm, and its public JWK."""

    def __init__(self, alg: str) -> None:
        self.alg = alg
        self.kid = f"{alg.lower()}-{uuid.uuid4().hex[:12]}"
        self.private: Any
        if alg in ("RS256", "PS256"):
            self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            jwk = RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        elif alg == "ES256":
            self.private = ec.generate_private_key(ec.SECP256R1())
            jwk = ECAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        elif alg == "EdDSA":
            self.private = ed25519.Ed25519PrivateKey.generate()
            jwk = OKPAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        else:
            raise ValueError(f"Unsupported algorithm {alg}")
        self.jwk: dict[str, Any] = {**jwk, "kid": self.kid, "use": "sig", "alg": alg}

    @property
    def public(self) -> Any:
        return self.private.public_key()


class OidcIssuer:
    """A running issuer. Use as a context manager, or call :meth:`stop`."""

    def __init__(self, *, realm: str = "") -> None:
        self._lock = threading.Lock()
        self._keys = {alg: SigningKey(alg) for alg in ALGORITHMS}
        self._retired: list[SigningKey] = []
        self.jwks_requests = 0
        self.discovery_requests = 0
        self._path = f"/realms/{realm}" if realm else ""
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="oidc-issuer", daemon=True
        )
        self._thread.start()
        self._running = True

    # -- addresses -----------------------------------------------------------------------------

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}{self._path}"

    @property
    def jwks_uri(self) -> str:
        return self.issuer + "/jwks"

    @property
    def discovery_uri(self) -> str:
        return self.issuer + "/.well-known/openid-configuration"

    # -- keys ----------------------------------------------------------------------------------

    def key(self, alg: str = "RS256") -> SigningKey:
        """The current signing key of an algorithm."""
        with self._lock:
            return self._keys[alg]

    def kid(self, alg: str = "RS256") -> str:
        return self.key(alg).kid

    def jwks(self) -> dict[str, Any]:
        with self._lock:
            return {"keys": [k.jwk for k in self._keys.values()]}

    def jwks_file(self, path: Path) -> Path:
        """Writes the JWKS to ``path`` (as for ``jwks_file``) and returns it."""
        path.write_text(json.dumps(self.jwks()), encoding="utf-8")
        return path

    def rotate(self) -> None:
        """New keys with new kids are published; the old ones are removed (kept in
        :attr:`retired`, so tests can still sign with them)."""
        fresh = {alg: SigningKey(alg) for alg in ALGORITHMS}
        with self._lock:
            self._retired.extend(self._keys.values())
            self._keys = fresh

    @property
    def retired(self) -> list[SigningKey]:
        return list(self._retired)

    # -- tokens --------------------------------------------------------------------------------

    def claims(  # noqa: PLR0913 - one keyword per claim a test sets
        self,
        sub: str,
        *,
        tenants: list[str] | str | None = None,
        roles: list[str] | None = None,
        azp: str | None = None,
        persons: list[str] | None = None,
        aud: str | list[str] | None = None,
        exp_in: float = 300,
        nbf_in: float | None = None,
        iat_in: float = 0,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The claims :meth:`token` signs. Times are relative to now, in seconds; a value
        of None in ``extra`` removes that claim."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": sub,
            "iat": now + int(iat_in),
            "exp": now + int(exp_in),
        }
        optional: dict[str, Any] = {"tenants": tenants, "roles": roles, "azp": azp}
        optional |= {"persons": persons, "aud": aud}
        optional["nbf"] = None if nbf_in is None else now + int(nbf_in)
        claims |= {name: value for name, value in optional.items() if value is not None}
        for name, value in (extra or {}).items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        return claims

    def token(
        self,
        sub: str,
        *,
        alg: str = "RS256",
        kid: str | None = None,
        headers: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        """A token for ``sub`` signed by this issuer's current ``alg`` key. The keyword
        arguments of :meth:`claims` (``tenants``, ``roles``, ``azp``, ``persons``, ``aud``,
        ``exp_in``, ``nbf_in``, ``iat_in``, ``extra``) set its claims; ``kid`` overrides the
        header's kid (the key stays this issuer's)."""
        return self.sign(self.claims(sub, **claims), alg=alg, kid=kid, headers=headers)

    def sign(
        self,
        claims: dict[str, Any],
        *,
        alg: str = "RS256",
        kid: str | None = None,
        key: SigningKey | None = None,
        headers: dict[str, Any] | None = None,
    ) -> str:
        """Any claims, signed with ``key`` (default: the current ``alg`` key)."""
        signer = key or self.key(alg)
        header = {"kid": signer.kid if kid is None else kid, **(headers or {})}
        return jwt.encode(claims, signer.private, algorithm=signer.alg, headers=header)

    # -- the server ----------------------------------------------------------------------------

    def _discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "jwks_uri": self.jwks_uri,
            "authorization_endpoint": self.issuer + "/auth",
            "token_endpoint": self.issuer + "/token",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": list(ALGORITHMS),
        }

    def _serve(self, path: str) -> dict[str, Any] | None:
        with self._lock:
            if path == self._path + "/.well-known/openid-configuration":
                self.discovery_requests += 1
                return self._discovery()
            if path == self._path + "/jwks":
                self.jwks_requests += 1
                return {"keys": [k.jwk for k in self._keys.values()]}
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
                doc = issuer._serve(self.path.split("?", 1)[0])
                body = json.dumps(doc if doc is not None else {"error": "not_found"}).encode()
                self.send_response(200 if doc is not None else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def stop(self) -> None:
        """Stops serving; the port is closed (requests to it are refused)."""
        if self._running:
            self._running = False
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()

    def __enter__(self) -> OidcIssuer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

"""OpenID Connect / OAuth 2.0 bearer tokens (JWT, RFC 7519) from configured issuers.

The issuers City OS trusts are listed in a TOML file (the ``auth_issuers`` setting), one
``[[issuer]]`` table each (docs/howto/oidc.md). Several may be trusted at once, e.g. a
neighbouring city's identity provider for cross-city services. A token is verified only
with the keys its own issuer publishes (JWKS, RFC 7517) and becomes a
:class:`~cityos.core.principal.Principal` through that issuer's claim mapping.

Keys: an issuer's JWKS is loaded on first need and kept ``cache_seconds``. A token signed
with an unknown ``kid`` (the issuer rotated its keys) causes one refetch, at most once per
10 s per issuer, so forged ``kid`` values cannot make City OS hammer the identity
provider. When a refresh fails, the keys already known stay in use; when none are known,
the token is refused. Concurrent verifications share one in-flight fetch.

Only asymmetric algorithms are accepted: an ``HS256`` token checked against a key the
issuer publishes could be signed by anyone (algorithm confusion, RFC 8725, section 2.1).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import math
import re
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
from jwt.algorithms import Algorithm, get_default_algorithms

from cityos.core.principal import Principal
from cityos.errors import Unauthorized

__all__ = [
    "DEFAULT_ALGORITHMS",
    "IssuerConfig",
    "TokenVerifier",
    "load_issuers",
    "principal_from_claims",
]

log = logging.getLogger("cityos.auth")

DEFAULT_ALGORITHMS: tuple[str, ...] = ("RS256", "ES256", "PS256", "EdDSA")
_ASYMMETRIC = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
# PyJWT's algorithm objects do the cryptography; City OS only parses the compact form itself,
# once per token: PyJWT's own parser checks base64url one character at a time in Python and
# made a verification cost 300 µs instead of 100.
_VERIFIERS: dict[str, Algorithm] = {
    name: algorithm for name, algorithm in get_default_algorithms().items() if name in _ASYMMETRIC
}
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")
_REFETCH_SECONDS = 10.0
_TIMEOUT_SECONDS = 5.0
_MAX_TOKEN_LENGTH = 16 * 1024
_DISCOVERY = "/.well-known/openid-configuration"


@dataclass(frozen=True, slots=True)
class IssuerConfig:
    """One trusted issuer: where its keys are, what its tokens must say, and how their
    claims map to a Principal (each ``*_claim`` is a claim name or a dotted path into the
    claims, e.g. Keycloak's ``realm_access.roles``)."""

    issuer: str
    jwks_uri: str = ""
    jwks_file: Path | None = None
    audience: tuple[str, ...] = ()
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    leeway: float = 60.0
    cache_seconds: float = 300.0
    tenants_claim: str = "tenants"
    default_tenants: tuple[str, ...] = ()
    roles_claim: str = "roles"
    scopes_claim: str = "scope"
    client_claim: str = "azp"
    persons_claim: str = "persons"
    person_prefix: str = ""
    role_prefix: str = ""

    def __post_init__(self) -> None:
        if not self.issuer:
            raise ValueError("An issuer needs 'issuer', the exact 'iss' of its tokens")
        where = f"Issuer {self.issuer}"
        if self.jwks_uri and self.jwks_file is not None:
            raise ValueError(f"{where} has both jwks_uri and jwks_file; give one")
        if not self.algorithms:
            raise ValueError(f"{where} has no algorithms")
        for algorithm in self.algorithms:
            if algorithm not in _ASYMMETRIC:
                raise ValueError(
                    f"{where}: algorithm {algorithm!r} is not allowed; "
                    f"use one of {', '.join(sorted(_ASYMMETRIC))}"
                )
        if self.leeway < 0 or self.cache_seconds <= 0:
            raise ValueError(f"{where}: leeway must be >= 0 and cache_seconds > 0")
        if not self.jwks_uri and self.jwks_file is None and not _is_http(self.issuer):
            raise ValueError(
                f"{where}: without jwks_uri or jwks_file the issuer must be an http(s) URL, "
                "to discover its keys"
            )

    @property
    def discovery_uri(self) -> str:
        return self.issuer.rstrip("/") + _DISCOVERY


def _is_http(url: str) -> bool:
    return url.startswith(("https://", "http://"))


# -- the issuers file --------------------------------------------------------------------------

_STRING_KEYS = frozenset(
    {
        "issuer",
        "jwks_uri",
        "jwks_file",
        "tenants_claim",
        "roles_claim",
        "scopes_claim",
        "client_claim",
        "persons_claim",
        "person_prefix",
        "role_prefix",
    }
)
_LIST_KEYS = frozenset({"audience", "algorithms", "default_tenants"})
_NUMBER_KEYS = frozenset({"leeway", "cache_seconds"})


def load_issuers(path: Path) -> list[IssuerConfig]:
    """The issuers of a TOML file of ``[[issuer]]`` tables. Raises ValueError, naming the
    issuer and key, for anything wrong in it."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: {exc}") from None
    for key in doc:
        if key != "issuer":
            raise ValueError(f"{path}: unknown key {key!r}; list issuers as [[issuer]] tables")
    tables = doc.get("issuer", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ValueError(f"{path}: list issuers as [[issuer]] tables")
    if not tables:
        raise ValueError(f"{path}: no [[issuer]] table")
    issuers = [_issuer(path, number, table) for number, table in enumerate(tables, 1)]
    seen: set[str] = set()
    for config in issuers:
        if config.issuer in seen:
            raise ValueError(f"{path}: issuer {config.issuer} is listed twice")
        seen.add(config.issuer)
    return issuers


def _issuer(path: Path, number: int, table: dict[str, Any]) -> IssuerConfig:
    name = table.get("issuer")
    if not isinstance(name, str) or not name:
        raise ValueError(
            f"{path}: [[issuer]] number {number} has no 'issuer' (the exact 'iss' of its tokens)"
        )
    where = f"{path}: issuer {name}"
    values: dict[str, Any] = {key: _value(where, key, value) for key, value in table.items()}
    if "jwks_file" in values:
        jwks_file = Path(values["jwks_file"])
        values["jwks_file"] = jwks_file if jwks_file.is_absolute() else path.parent / jwks_file
    try:
        return IssuerConfig(**values)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def _value(where: str, key: str, value: object) -> object:
    if key in _STRING_KEYS:
        if isinstance(value, str):
            return value
        raise ValueError(f"{where}: {key} must be a string")
    if key in _LIST_KEYS:
        items = [value] if isinstance(value, str) else value
        if isinstance(items, list) and all(isinstance(item, str) for item in items):
            return tuple(items)
        raise ValueError(f"{where}: {key} must be a string or a list of strings")
    if key in _NUMBER_KEYS:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ValueError(f"{where}: {key} must be a number of seconds")
    raise ValueError(f"{where}: unknown key {key!r}")


# -- keys ----------------------------------------------------------------------------------


class _Unreachable(Exception):
    """The keys of an issuer cannot be loaded (for the log, never for the client)."""


@dataclass(frozen=True, slots=True)
class _Key:
    jwk: jwt.PyJWK
    alg: str  # as the JWKS declares it; "" when it does not


@dataclass
class _IssuerKeys:
    """One issuer's parsed signing keys, and when they were (or were tried to be) loaded."""

    config: IssuerConfig
    jwks_uri: str  # configured, or discovered
    by_kid: dict[str, _Key] = field(default_factory=dict)
    keys: list[_Key] = field(default_factory=list)
    loaded: bool = False
    fetched_at: float = -math.inf
    attempted_at: float = -math.inf
    inflight: asyncio.Future[None] | None = None

    def find(self, kid: str | None) -> _Key | None:
        if kid is not None:
            return self.by_kid.get(kid)
        # A token without kid is usable only when the issuer has a single key.
        return self.keys[0] if len(self.keys) == 1 else None

    def install(self, keys: list[_Key], now: float) -> None:
        self.keys = keys
        self.by_kid = {k.jwk.key_id: k for k in keys if k.jwk.key_id}
        self.loaded = True
        self.fetched_at = now


def _parse_jwks(doc: dict[str, Any]) -> list[_Key]:
    entries = doc.get("keys")
    if not isinstance(entries, list):
        raise _Unreachable("the JWKS has no 'keys' list")
    keys = []
    for entry in entries:
        # Symmetric ("oct") and encryption keys are never signing keys of an issuer.
        if not isinstance(entry, dict) or entry.get("kty") == "oct":
            continue
        if entry.get("use", "sig") != "sig":
            continue
        try:
            jwk = jwt.PyJWK(entry)
        except jwt.PyJWTError as exc:
            log.info("Skipping a JWKS key (kid %s): %s", entry.get("kid"), exc)
            continue
        alg = entry.get("alg")
        keys.append(_Key(jwk, alg if isinstance(alg, str) else ""))
    return keys


def _age(now: float, since: float) -> float:
    # A clock that went backwards counts as "long ago", so nothing is stuck.
    return now - since if now >= since else math.inf


# -- the verifier ----------------------------------------------------------------------------


class TokenVerifier:
    """Verifies bearer tokens of the configured issuers and maps them to Principals.

    ``client`` is used to fetch discovery documents and JWKS (one is made, and closed by
    :meth:`close`, when none is given). ``clock`` gives the time in seconds since the
    epoch, for token times and caches. Verified tokens are remembered ``memo_seconds``
    (never past their expiry), at most ``memo_size`` of them. Loading an issuer's keys
    (discovery and JWKS together) gives up after ``timeout`` seconds.
    """

    def __init__(
        self,
        issuers: Sequence[IssuerConfig],
        client: httpx.AsyncClient | None = None,
        *,
        clock: Callable[[], float] = time.time,
        memo_seconds: float = 5.0,
        memo_size: int = 1024,
        timeout: float = _TIMEOUT_SECONDS,
    ) -> None:
        self._issuers = {c.issuer: _IssuerKeys(c, c.jwks_uri) for c in issuers}
        self._client = client
        self._owns_client = client is None
        self._clock = clock
        self._timeout = timeout
        self._memo_seconds = memo_seconds
        self._memo_size = memo_size
        self._memo: dict[str, tuple[float, Principal]] = {}

    async def verify(self, token: str) -> Principal:
        """The Principal of a bearer token; raises Unauthorized when it is not valid."""
        hit = self._memo.get(token)
        if hit is not None:
            if self._clock() < hit[0]:
                return hit[1]
            del self._memo[token]
        jws = _parse(token)
        header, claims = jws.header, jws.claims
        iss = claims.get("iss")
        issuer = self._issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            raise Unauthorized("Token issuer is not trusted")
        config = issuer.config
        alg = _algorithm(config, header)
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise Unauthorized("Token is malformed")
        key = await self._signing_key(issuer, kid)
        _check_signature(jws, key, alg)
        now = self._clock()
        exp = _check_times(claims, now, config.leeway)
        _check_audience(config, claims)
        principal = principal_from_claims(config, claims)
        self._remember(token, principal, min(exp + config.leeway, now + self._memo_seconds))
        return principal

    async def close(self) -> None:
        for issuer in self._issuers.values():
            if issuer.inflight is not None:
                issuer.inflight.cancel()
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    def _remember(self, token: str, principal: Principal, until: float) -> None:
        if self._memo_seconds <= 0 or self._memo_size <= 0:
            return
        if len(self._memo) >= self._memo_size:
            del self._memo[next(iter(self._memo))]
        self._memo[token] = (until, principal)

    # -- keys ----------------------------------------------------------------------------------

    async def _signing_key(self, issuer: _IssuerKeys, kid: str | None) -> _Key:
        if issuer.inflight is not None and not issuer.inflight.done():
            await asyncio.shield(issuer.inflight)
        if self._due(issuer, kid):
            issuer.attempted_at = self._clock()
            issuer.inflight = asyncio.ensure_future(self._load(issuer))
            await asyncio.shield(issuer.inflight)
        if not issuer.loaded:
            raise Unauthorized(f"Identity provider {issuer.config.issuer} cannot be reached")
        key = issuer.find(kid)
        if key is None:
            raise Unauthorized("Token signing key is not known")
        return key

    def _due(self, issuer: _IssuerKeys, kid: str | None) -> bool:
        now = self._clock()
        if _age(now, issuer.attempted_at) < _REFETCH_SECONDS:
            return False
        if not issuer.loaded or _age(now, issuer.fetched_at) >= issuer.config.cache_seconds:
            return True
        return issuer.find(kid) is None

    async def _load(self, issuer: _IssuerKeys) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                keys = _parse_jwks(await self._jwks(issuer))
        except (_Unreachable, TimeoutError) as exc:
            log.warning(
                "The keys of issuer %s cannot be loaded: %s",
                issuer.config.issuer,
                str(exc) or "timed out",
            )
            return
        issuer.install(keys, self._clock())

    async def _jwks(self, issuer: _IssuerKeys) -> dict[str, Any]:
        config = issuer.config
        if config.jwks_file is not None:
            return _read_json(config.jwks_file)
        if not issuer.jwks_uri:
            issuer.jwks_uri = await self._discover(config)
        try:
            return await self._get_json(issuer.jwks_uri)
        except _Unreachable:
            if not config.jwks_uri:
                issuer.jwks_uri = ""  # discover again next time: the provider may have moved
            raise

    async def _discover(self, config: IssuerConfig) -> str:
        doc = await self._get_json(config.discovery_uri)
        if doc.get("issuer") != config.issuer:
            raise _Unreachable(f"{config.discovery_uri} names another issuer")
        uri = doc.get("jwks_uri")
        if not isinstance(uri, str) or not _is_http(uri):
            raise _Unreachable(f"{config.discovery_uri} has no http(s) jwks_uri")
        return uri

    async def _get_json(self, url: str) -> dict[str, Any]:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout)
        try:
            response = await self._client.get(url, headers={"Accept": "application/json"})
            response.raise_for_status()
            doc = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise _Unreachable(f"{url}: {exc!r}") from exc
        if not isinstance(doc, dict):
            raise _Unreachable(f"{url} is not a JSON object")
        return doc


def _read_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise _Unreachable(f"{path}: {exc}") from exc
    if not isinstance(doc, dict):
        raise _Unreachable(f"{path} is not a JSON object")
    return doc


# -- the token ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Jws:
    """A token in JWS compact serialization (RFC 7515, section 7.1), decoded, unverified."""

    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes


def _parse(token: str) -> _Jws:
    if len(token) > _MAX_TOKEN_LENGTH:
        raise Unauthorized("Token is too large")
    parts = token.split(".")
    if len(parts) != 3:
        raise Unauthorized("Token is malformed")
    try:
        header = json.loads(_base64url(parts[0]))
        claims = json.loads(_base64url(parts[1]))
        signature = _base64url(parts[2])
    except (ValueError, RecursionError):  # JSON, UTF-8 and base64 errors are ValueErrors
        raise Unauthorized("Token is malformed") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise Unauthorized("Token is malformed")
    if "crit" in header or "b64" in header:
        # RFC 7515, section 4.1.11: extensions a recipient does not understand are refused.
        raise Unauthorized("Token uses header parameters that are not supported")
    return _Jws(header, claims, f"{parts[0]}.{parts[1]}".encode("ascii"), signature)


def _base64url(segment: str) -> bytes:
    # Strict: Python's decoder would skip characters outside the alphabet.
    if len(segment) % 4 == 1 or not _BASE64URL.fullmatch(segment):
        raise binascii.Error("not base64url")
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _check_signature(jws: _Jws, key: _Key, alg: str) -> None:
    if key.alg and key.alg != alg:
        raise Unauthorized("Token algorithm does not match its key")
    verifier = _VERIFIERS[alg]
    try:
        # prepare_key refuses a key of another type than the algorithm (EC for RS256).
        prepared = verifier.prepare_key(key.jwk.key)
        valid = verifier.verify(jws.signing_input, prepared, jws.signature)
    except (jwt.PyJWTError, ValueError, TypeError):
        valid = False
    if not valid:
        raise Unauthorized("Token signature is invalid")


# -- claims ----------------------------------------------------------------------------------


def _algorithm(config: IssuerConfig, header: dict[str, Any]) -> str:
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in config.algorithms:
        raise Unauthorized("Token algorithm is not accepted")
    return alg


def _check_times(claims: dict[str, Any], now: float, leeway: float) -> float:
    """Checks exp, nbf and iat against ``now`` with ``leeway`` of clock skew; the exp."""
    exp = _time(claims, "exp")
    if exp is None:
        raise Unauthorized("Token has no expiry (exp)")
    if now >= exp + leeway:
        raise Unauthorized("Token expired")
    nbf = _time(claims, "nbf")
    if nbf is not None and now + leeway < nbf:
        raise Unauthorized("Token is not yet valid")
    iat = _time(claims, "iat")
    if iat is not None and iat > now + leeway:
        raise Unauthorized("Token is issued in the future")
    return exp


def _time(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    # NaN (which Python's JSON accepts) would make every comparison false: never expiring.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Unauthorized(f"Token claim {name} is not a number")
    return float(value)


def _check_audience(config: IssuerConfig, claims: dict[str, Any]) -> None:
    if not config.audience:
        return
    aud = claims.get("aud")
    values = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if not any(isinstance(a, str) and a in config.audience for a in values):
        raise Unauthorized("Token audience is not accepted")


def principal_from_claims(config: IssuerConfig, claims: dict[str, Any]) -> Principal:
    """The Principal of a verified token's claims, by the issuer's claim mapping."""
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise Unauthorized("Token has no subject (sub)")
    tenants = _strings(claims, config.tenants_claim)
    roles = _strings(claims, config.roles_claim) or []
    persons = _strings(claims, config.persons_claim)
    if persons is None:
        persons = [config.person_prefix + sub] if config.person_prefix else []
    return Principal(
        subject=f"{config.issuer}|{sub}",
        kind="token",
        tenants=frozenset(config.default_tenants if tenants is None else tenants),
        roles=frozenset(config.role_prefix + role for role in roles),
        scopes=frozenset(_scopes(claims, config.scopes_claim)),
        client=_client(claims, config.client_claim),
        persons=frozenset(persons),
        issuer=config.issuer,
        claims=claims,
    )


def _claim(claims: dict[str, Any], path: str) -> object:
    """A claim by name or dotted path. The name is tried first: claim names may contain
    dots themselves (namespaced claims such as ``https://city.example/roles``)."""
    if path in claims:
        return claims[path]
    value: object = claims
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _strings(claims: dict[str, Any], path: str) -> list[str] | None:
    """A claim that is a string or a list of strings; None when absent."""
    value = _claim(claims, path)
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    raise Unauthorized(f"Token claim {path} is not a string or a list of strings")


def _scopes(claims: dict[str, Any], path: str) -> list[str]:
    value = _claim(claims, path)
    if isinstance(value, str):
        return value.split()  # RFC 8693, section 4.2: space-separated
    return _strings(claims, path) or []


def _client(claims: dict[str, Any], path: str) -> str:
    for value in (_claim(claims, path), claims.get("client_id")):
        if isinstance(value, str) and value:
            return value
    return ""

"""Bearer token verification against real OIDC issuers over HTTP (tests/oidc_issuer.py)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from oidc_issuer import ALGORITHMS, OidcIssuer

from cityos.auth.tokens import IssuerConfig, TokenVerifier, load_issuers
from cityos.core.principal import ANY_TENANT, Principal
from cityos.errors import Unauthorized

Make = Callable[..., TokenVerifier]


class Clock:
    """A clock the test moves by hand, starting now."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="module")
def issuer() -> Iterator[OidcIssuer]:
    """Shared by the tests that neither rotate its keys nor count its requests."""
    with OidcIssuer() as running:
        yield running


@pytest.fixture
def fresh() -> Iterator[OidcIssuer]:
    with OidcIssuer(realm="takamatsu") as running:
        yield running


@pytest.fixture
async def make() -> AsyncIterator[Make]:
    made: list[TokenVerifier] = []

    def build(*issuers: IssuerConfig, **options: Any) -> TokenVerifier:
        verifier = TokenVerifier(issuers, **options)
        made.append(verifier)
        return verifier

    yield build
    for verifier in made:
        await verifier.close()


def config(issuer: OidcIssuer, **options: Any) -> IssuerConfig:
    return IssuerConfig(issuer=issuer.issuer, **options)


async def refused(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(Unauthorized) as caught:
        await verifier.verify(token)
    detail = caught.value.detail
    assert token not in detail and token[-20:] not in detail  # never echoed
    return detail


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def compose(header: dict[str, Any], claims: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(sign(signing_input.encode()))}"


# -- mapping claims to a Principal --------------------------------------------------------------


async def test_a_valid_token_becomes_a_principal(issuer: OidcIssuer, make: Make) -> None:
    verifier = make(config(issuer, audience=("cityos",)))
    token = issuer.token(
        "alice",
        aud=["account", "cityos"],
        tenants=["takamatsu", "kagawa"],
        roles=["viewer", "editor"],
        azp="mimamori",
        persons=["urn:ngsi-ld:Person:child1"],
        extra={"scope": "openid entities:read"},
    )
    principal = await verifier.verify(token)
    assert principal == Principal(
        subject=f"{issuer.issuer}|alice",
        kind="token",
        tenants=frozenset({"takamatsu", "kagawa"}),
        roles=frozenset({"viewer", "editor"}),
        scopes=frozenset({"openid", "entities:read"}),
        client="mimamori",
        persons=frozenset({"urn:ngsi-ld:Person:child1"}),
        issuer=issuer.issuer,
    )
    assert principal.claims["sub"] == "alice"
    assert principal.authenticated and principal.member_of("kagawa")


async def test_keycloak_style_claims_and_prefixes(issuer: OidcIssuer, make: Make) -> None:
    verifier = make(
        config(
            issuer,
            roles_claim="realm_access.roles",
            tenants_claim="https://cityos.example/tenants",
            role_prefix="takamatsu:",
            person_prefix="urn:ngsi-ld:Person:",
        )
    )
    token = issuer.token(
        "u-123",
        extra={
            "realm_access": {"roles": ["viewer", "offline_access"]},
            "https://cityos.example/tenants": "*",
            "client_id": "portal",
            "scope": ["a", "b"],
        },
    )
    principal = await verifier.verify(token)
    assert principal.roles == {"takamatsu:viewer", "takamatsu:offline_access"}
    assert principal.persons == {"urn:ngsi-ld:Person:u-123"}
    assert principal.tenants == {ANY_TENANT} and principal.member_of("anywhere")
    assert principal.client == "portal"  # no azp: client_id
    assert principal.scopes == {"a", "b"}


async def test_default_tenants_apply_only_when_the_claim_is_absent(
    issuer: OidcIssuer, make: Make
) -> None:
    verifier = make(config(issuer, default_tenants=("takamatsu",)))
    assert (await verifier.verify(issuer.token("a"))).tenants == {"takamatsu"}
    assert (await verifier.verify(issuer.token("b", tenants=[]))).tenants == frozenset()
    bare = await verifier.verify(issuer.token("c", extra={"iat": None}))
    assert bare.roles == bare.persons == bare.scopes == frozenset() and bare.client == ""


@pytest.mark.parametrize("alg", ALGORITHMS)
async def test_every_default_algorithm_is_accepted(
    issuer: OidcIssuer, make: Make, alg: str
) -> None:
    principal = await make(config(issuer)).verify(issuer.token("alice", alg=alg))
    assert principal.subject == f"{issuer.issuer}|alice"


# -- what is refused ---------------------------------------------------------------------------


def _tampered_signature(issuer: OidcIssuer) -> str:
    head, body, signature = issuer.token("alice").split(".")
    middle = len(signature) // 2
    flipped = "A" if signature[middle] != "A" else "B"
    return f"{head}.{body}.{signature[:middle]}{flipped}{signature[middle + 1 :]}"


def _tampered_claims(issuer: OidcIssuer) -> str:
    head, _, signature = issuer.token("alice", roles=["viewer"]).split(".")
    claims = issuer.claims("alice", roles=["admin"])
    return f"{head}.{b64(json.dumps(claims).encode())}.{signature}"


def _alg_none(issuer: OidcIssuer) -> str:
    header = {"alg": "none", "kid": issuer.kid()}
    return compose(header, issuer.claims("alice"), lambda _: b"")


def _hs256_with_public_key(issuer: OidcIssuer) -> str:
    """Algorithm confusion: the issuer's public key (known to all) as an HMAC secret."""
    pem = issuer.key().public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": issuer.kid()}
    return compose(
        header, issuer.claims("alice"), lambda data: hmac.new(pem, data, hashlib.sha256).digest()
    )


def _unknown_issuer(issuer: OidcIssuer) -> str:
    return issuer.sign(issuer.claims("alice", extra={"iss": "https://idp.evil.example"}))


REFUSALS: list[tuple[str, Callable[[OidcIssuer], str], str]] = [
    ("expired", lambda i: i.token("a", aud="cityos", exp_in=-3600), "Token expired"),
    ("not yet valid", lambda i: i.token("a", aud="cityos", nbf_in=3600), "Token is not yet valid"),
    ("issued later", lambda i: i.token("a", aud="cityos", iat_in=3600), "issued in the future"),
    ("wrong audience", lambda i: i.token("a", aud="other"), "Token audience is not accepted"),
    ("no audience", lambda i: i.token("a"), "Token audience is not accepted"),
    ("unknown issuer", _unknown_issuer, "Token issuer is not trusted"),
    ("tampered signature", _tampered_signature, "Token signature is invalid"),
    ("tampered claims", _tampered_claims, "Token signature is invalid"),
    ("alg none", _alg_none, "Token algorithm is not accepted"),
    ("HS256 confusion", _hs256_with_public_key, "Token algorithm is not accepted"),
    ("unknown kid", lambda i: i.token("a", aud="cityos", kid="nope"), "key is not known"),
    ("no exp", lambda i: i.token("a", aud="cityos", extra={"exp": None}), "no expiry"),
    ("no sub", lambda i: i.sign({"iss": i.issuer, "aud": "cityos", "exp": 2**40}), "no subject"),
    ("bad exp", lambda i: i.token("a", aud="cityos", extra={"exp": "soon"}), "not a number"),
    ("bad roles", lambda i: i.token("a", aud="cityos", extra={"roles": {"x": 1}}), "claim roles"),
    ("crit", lambda i: i.token("a", aud="cityos", headers={"crit": ["exp"]}), "not supported"),
    ("NaN exp", lambda i: i.token("a", aud="cityos", extra={"exp": float("nan")}), "number"),
    ("garbage", lambda i: "not-a-token", "Token is malformed"),
    ("four parts", lambda i: i.token("a", aud="cityos") + ".e30", "Token is malformed"),
    ("not base64url", lambda i: i.token("a", aud="cityos")[:-8] + "!" * 8, "malformed"),
    ("too large", lambda i: i.token("a", aud="cityos", extra={"x": "y" * 20000}), "too large"),
    ("not JSON", lambda i: "e30.bm90IGpzb24.e30", "Token is malformed"),
    ("no iss", lambda i: "e30.e30.e30", "Token issuer is not trusted"),
]


@pytest.mark.parametrize(
    ("forge", "detail"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS]
)
async def test_invalid_tokens_are_refused(
    issuer: OidcIssuer, make: Make, forge: Callable[[OidcIssuer], str], detail: str
) -> None:
    verifier = make(config(issuer, audience=("cityos",)))
    assert await verifier.verify(issuer.token("ok", aud="cityos"))  # the keys are known
    assert detail in await refused(verifier, forge(issuer))


async def test_an_algorithm_the_issuer_does_not_allow_is_refused(
    issuer: OidcIssuer, make: Make
) -> None:
    verifier = make(config(issuer, algorithms=("ES256",)))
    assert await verifier.verify(issuer.token("alice", alg="ES256"))
    assert "algorithm is not accepted" in await refused(verifier, issuer.token("alice"))


async def test_a_key_used_with_another_algorithm_is_refused(issuer: OidcIssuer, make: Make) -> None:
    """The RS256 key (its JWK says alg RS256) signing a PS256 token."""
    verifier = make(config(issuer))
    token = issuer.sign(issuer.claims("alice"), alg="PS256", kid=issuer.kid("RS256"))
    assert "does not match its key" in await refused(verifier, token)


async def test_a_key_of_another_type_than_the_algorithm_is_refused(
    issuer: OidcIssuer, make: Make, tmp_path: Path
) -> None:
    """A JWKS whose keys declare no alg: an ES256 token naming the RSA key's kid."""
    jwks = issuer.jwks()
    for key in jwks["keys"]:
        del key["alg"]
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks), encoding="utf-8")
    verifier = make(config(issuer, jwks_file=path))
    assert await verifier.verify(issuer.token("alice", alg="ES256"))
    token = issuer.sign(issuer.claims("alice"), alg="ES256", kid=issuer.kid("RS256"))
    assert await refused(verifier, token) == "Token signature is invalid"


# -- clock skew --------------------------------------------------------------------------------


async def test_leeway_accepts_clock_skew_within_it(issuer: OidcIssuer, make: Make) -> None:
    lenient = make(config(issuer, leeway=60))
    strict = make(config(issuer, leeway=0))
    for token in (
        issuer.token("alice", exp_in=-30),
        issuer.token("alice", nbf_in=30),
        issuer.token("alice", iat_in=30),
    ):
        assert await lenient.verify(token)
        await refused(strict, token)
    assert "expired" in await refused(lenient, issuer.token("alice", exp_in=-90))


async def test_a_remembered_token_still_expires(issuer: OidcIssuer, make: Make) -> None:
    clock = Clock()
    verifier = make(config(issuer, leeway=0), clock=clock, memo_seconds=60)
    token = issuer.token("alice", exp_in=3)
    first = await verifier.verify(token)
    assert await verifier.verify(token) is first  # remembered
    clock.advance(4)
    assert await refused(verifier, token) == "Token expired"


# -- several issuers ---------------------------------------------------------------------------


async def test_two_issuers_are_trusted_each_with_its_own_keys(
    issuer: OidcIssuer, fresh: OidcIssuer, make: Make
) -> None:
    verifier = make(config(issuer), config(fresh, role_prefix="kagawa:"))
    ours = await verifier.verify(issuer.token("alice", roles=["viewer"]))
    theirs = await verifier.verify(fresh.token("alice", roles=["viewer"]))
    assert ours.subject != theirs.subject and theirs.issuer == fresh.issuer
    assert ours.roles == {"viewer"} and theirs.roles == {"kagawa:viewer"}

    claims = issuer.claims("mallory", roles=["admin"])  # claims ours, signed by theirs
    with_their_kid = fresh.sign(claims)
    assert "key is not known" in await refused(verifier, with_their_kid)
    with_our_kid = fresh.sign(claims, kid=issuer.kid())
    assert "signature is invalid" in await refused(verifier, with_our_kid)


# -- keys: caching, rotation, files, discovery, outages ----------------------------------------


async def test_the_jwks_is_fetched_once_for_many_verifications(
    fresh: OidcIssuer, make: Make
) -> None:
    verifier = make(config(fresh))
    tokens = [fresh.token(f"user{n}", alg=ALGORITHMS[n % 4]) for n in range(40)]
    await asyncio.gather(*(verifier.verify(t) for t in tokens[:20]))  # concurrent
    for token in tokens[20:]:
        await verifier.verify(token)
    assert (fresh.discovery_requests, fresh.jwks_requests) == (1, 1)


async def test_the_cache_expires(fresh: OidcIssuer, make: Make) -> None:
    clock = Clock()
    verifier = make(config(fresh, cache_seconds=300), clock=clock)
    await verifier.verify(fresh.token("alice"))
    clock.advance(299)
    await verifier.verify(fresh.token("bob"))
    assert fresh.jwks_requests == 1
    clock.advance(2)
    await verifier.verify(fresh.token("carol"))
    assert fresh.jwks_requests == 2


async def test_a_rotated_key_is_picked_up_and_refetches_are_rate_limited(
    fresh: OidcIssuer, make: Make
) -> None:
    clock = Clock()
    verifier = make(config(fresh), clock=clock)
    old = fresh.token("alice")
    await verifier.verify(old)
    assert fresh.jwks_requests == 1

    clock.advance(11)
    fresh.rotate()
    new = fresh.token("alice")
    assert (await verifier.verify(new)).subject == f"{fresh.issuer}|alice"
    assert fresh.jwks_requests == 2  # the unknown kid caused one refetch

    clock.advance(6)  # past the memo: the old key is gone for good
    for n in range(20):
        await refused(verifier, fresh.token(f"forged{n}", kid=f"unknown-{n}"))
        await refused(verifier, old)
    assert fresh.jwks_requests == 2  # within 10 s of the last fetch: none more

    fresh.rotate()
    newer = fresh.token("alice")
    assert "key is not known" in await refused(verifier, newer)
    clock.advance(5)
    assert await verifier.verify(newer)
    assert fresh.jwks_requests == 3


async def test_keys_from_a_jwks_file(fresh: OidcIssuer, make: Make, tmp_path: Path) -> None:
    clock = Clock()
    path = fresh.jwks_file(tmp_path / "jwks.json")
    verifier = make(config(fresh, jwks_file=path), clock=clock)
    assert await verifier.verify(fresh.token("alice"))
    fresh.rotate()
    fresh.jwks_file(path)
    clock.advance(11)
    assert await verifier.verify(fresh.token("alice"))
    assert (fresh.discovery_requests, fresh.jwks_requests) == (0, 0)


async def test_keys_are_discovered_through_the_well_known_document(
    fresh: OidcIssuer, make: Make
) -> None:
    discovered = make(config(fresh))
    assert fresh.issuer.endswith("/realms/takamatsu")
    assert await discovered.verify(fresh.token("alice"))
    assert (fresh.discovery_requests, fresh.jwks_requests) == (1, 1)

    direct = make(config(fresh, jwks_uri=fresh.jwks_uri))
    assert await direct.verify(fresh.token("alice"))
    assert (fresh.discovery_requests, fresh.jwks_requests) == (1, 2)


async def test_a_provider_that_is_down_refuses_quickly(make: Make) -> None:
    with OidcIssuer() as gone:
        token = gone.token("alice")
    verifier = make(IssuerConfig(issuer=gone.issuer))
    started = time.monotonic()
    detail = await refused(verifier, token)
    assert detail == f"Identity provider {gone.issuer} cannot be reached"
    assert await refused(verifier, token) == detail  # within 10 s: not even tried
    assert time.monotonic() - started < 2


async def test_a_provider_that_never_answers_times_out(issuer: OidcIssuer, make: Make) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        port = silent.getsockname()[1]
        verifier = make(config(issuer, jwks_uri=f"http://127.0.0.1:{port}/jwks"), timeout=0.3)
        started = time.monotonic()
        assert "cannot be reached" in await refused(verifier, issuer.token("alice"))
        assert time.monotonic() - started < 2


async def test_known_keys_stay_in_use_while_the_provider_is_down(make: Make) -> None:
    clock = Clock()
    with OidcIssuer() as provider:
        verifier = make(IssuerConfig(issuer=provider.issuer), clock=clock)
        assert await verifier.verify(provider.token("alice"))
    clock.advance(400)  # past cache_seconds: a refresh is tried, and fails
    assert await verifier.verify(provider.token("bob", exp_in=3600))


async def test_a_given_client_is_used_and_not_closed(fresh: OidcIssuer, make: Make) -> None:
    async with httpx.AsyncClient() as client:
        verifier = make(config(fresh), client=client)
        assert await verifier.verify(fresh.token("alice"))
        await verifier.close()
        assert not client.is_closed


# -- the issuers file --------------------------------------------------------------------------


def test_load_issuers_reads_every_key(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    path = tmp_path / "issuers.toml"
    path.write_text(
        """
[[issuer]]
issuer = "https://idp.takamatsu.example/realms/city"
audience = ["cityos", "account"]
algorithms = ["RS256"]
leeway = 30
cache_seconds = 600
tenants_claim = "cityos.tenants"
default_tenants = ["takamatsu"]
roles_claim = "realm_access.roles"
scopes_claim = "scp"
client_claim = "client_id"
persons_claim = "guardianOf"
person_prefix = "urn:ngsi-ld:Person:"

[[issuer]]
issuer = "https://idp.kagawa.example"
jwks_file = "keys/kagawa.json"
audience = "cityos"
role_prefix = "kagawa:"
""",
        encoding="utf-8",
    )
    city, neighbour = load_issuers(path)
    assert city == IssuerConfig(
        issuer="https://idp.takamatsu.example/realms/city",
        audience=("cityos", "account"),
        algorithms=("RS256",),
        leeway=30,
        cache_seconds=600,
        tenants_claim="cityos.tenants",
        default_tenants=("takamatsu",),
        roles_claim="realm_access.roles",
        scopes_claim="scp",
        client_claim="client_id",
        persons_claim="guardianOf",
        person_prefix="urn:ngsi-ld:Person:",
    )
    assert neighbour.jwks_file == tmp_path / "keys" / "kagawa.json"
    assert neighbour.audience == ("cityos",) and neighbour.role_prefix == "kagawa:"
    assert neighbour.algorithms == ("RS256", "ES256", "PS256", "EdDSA")


BAD_FILES = [
    (
        '[[issuer]]\nissuer = "https://a.example"\nrole = "x"\n',
        "https://a.example: unknown key 'role'",
    ),
    ('[[issuer]]\naudience = "cityos"\n', "number 1 has no 'issuer'"),
    (
        '[[issuer]]\nissuer = "https://a.example"\njwks_uri = "https://a.example/k"\n'
        'jwks_file = "k.json"\n',
        "Issuer https://a.example has both jwks_uri and jwks_file",
    ),
    ('[[issuer]]\nissuer = "https://a.example"\nalgorithms = ["none"]\n', "'none' is not allowed"),
    (
        '[[issuer]]\nissuer = "https://a.example"\nalgorithms = ["HS256"]\n',
        "'HS256' is not allowed",
    ),
    ('[[issuer]]\nissuer = "https://a.example"\naudience = 3\n', "audience must be a string"),
    ('[[issuer]]\nissuer = "https://a.example"\nleeway = "1m"\n', "leeway must be a number"),
    ('[[issuer]]\nissuer = "city"\n', "must be an http(s) URL"),
    ('issuer = "https://a.example"\n', "[[issuer]] tables"),
    ('[issuers]\nissuer = "https://a.example"\n', "unknown key 'issuers'"),
    ("", "no [[issuer]] table"),
    ('[[issuer]]\nissuer = "https://a.example"\n' * 2, "listed twice"),
    ("[[issuer]\n", "issuers.toml"),
]


@pytest.mark.parametrize(("text", "message"), BAD_FILES)
def test_load_issuers_refuses_a_bad_file(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "issuers.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError) as caught:
        load_issuers(path)
    assert message in str(caught.value)


def test_the_issuers_files_of_the_howto_load(tmp_path: Path) -> None:
    page = (Path(__file__).parents[2] / "docs" / "howto" / "oidc.md").read_text(encoding="utf-8")
    blocks = [b.split("```", 1)[0] for b in page.split("```toml\n")[1:]]
    files = [b for b in blocks if "[[issuer]]" in b]
    assert len(files) >= 3
    for number, text in enumerate(files):
        path = tmp_path / f"issuers{number}.toml"
        path.write_text(text, encoding="utf-8")
        assert load_issuers(path)

"""Identity: hostile member tokens, JWKS caching under floods, the FHS keyring, invocation tokens."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import stat
import time
import warnings
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from joserfc import jwt as joserfc_jwt
from joserfc.jwk import ECKey, OKPKey, RSAKey
from starlette.datastructures import Headers, QueryParams

from fhs.errors import BadRequest, Conflict, IdPUnavailable, Unauthenticated
from fhs.identity.invocation import InvocationToken, verify_invocation_token
from fhs.identity.keys import FHSKeyring
from fhs.identity.operator import OperatorSecret
from fhs.identity.replay import MemoryReplayGuard, StoreReplayGuard
from fhs.identity.schemas import Principal, TrustedIssuer
from fhs.identity.validation import TokenValidator, extract_bearer
from fhs.settings import Settings
from fhs.store import open_store

ISSUER = "https://idp.example.org"
AUDIENCE = "https://fhs.example.org"
JWKS_URI = "https://idp.example.org/jwks"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_jwk(private_key: Any, kid: str) -> dict[str, Any]:
    jwk = json.loads(
        jwt.algorithms.get_default_algorithms()[_alg_for(private_key)].to_jwk(private_key.public_key())
    )
    return {**jwk, "kid": kid}


def _alg_for(private_key: Any) -> str:
    if isinstance(private_key, rsa.RSAPrivateKey):
        return "RS256"
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        return "ES256"
    return "EdDSA"


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        public_url=AUDIENCE,
        data_dir=tmp_path,
        max_token_lifetime_s=3600,
        clock_skew_s=30,
        jwks_refresh_cooldown_s=30,
    )


@pytest.fixture
def issuers(rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey) -> dict[str, TrustedIssuer]:
    jwks = {"keys": [public_jwk(rsa_key, "rsa-1"), public_jwk(ec_key, "ec-1")]}
    return {ISSUER: TrustedIssuer(issuer=ISSUER, jwks=jwks)}


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"iss": ISSUER, "sub": "alice", "aud": AUDIENCE, "iat": now, "nbf": now, "exp": now + 300}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(private_key: Any, kid: str = "rsa-1", **overrides: Any) -> str:
    return jwt.encode(claims(**overrides), private_key, algorithm=_alg_for(private_key), headers={"kid": kid})


async def validate(settings: Settings, token: str, issuers: dict[str, TrustedIssuer]) -> Principal:
    async with httpx.AsyncClient() as client:
        return await TokenValidator(settings, client).validate(token, issuers=issuers)


# --- hostile tokens ---------------------------------------------------------------------------------


def _unsigned(header: dict[str, Any], payload: dict[str, Any]) -> str:
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"


def hostile_tokens(
    rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> dict[str, tuple[str, str]]:
    """name -> (token, the message the validator must give)."""
    pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = _unsigned({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}, claims())
    hs256_with_public_key = (
        f"{signing_input}.{b64(hmac.new(pem, signing_input.encode(), hashlib.sha256).digest())}"
    )
    valid = sign(rsa_key)
    head, payload, signature = valid.split(".")
    tampered_payload = b64(json.dumps(claims(sub="admin")).encode())
    attacker_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    return {
        "alg none": (
            _unsigned({"alg": "none", "kid": "rsa-1"}, claims()) + ".",
            "algorithm 'none' not allowed",
        ),
        "HS256 signed with the public key": (hs256_with_public_key, "algorithm 'HS256' not allowed"),
        "wrong iss": (sign(rsa_key, iss="https://evil.example"), "untrusted issuer 'https://evil.example'"),
        "wrong aud": (
            sign(rsa_key, aud="https://other-fhs.example"),
            f"audience mismatch: expected '{AUDIENCE}'",
        ),
        "expired": (sign(rsa_key, iat=now - 600, nbf=now - 600, exp=now - 120), "token expired"),
        "nbf in the future": (sign(rsa_key, nbf=now + 600, exp=now + 900), "token not yet valid (nbf"),
        "no exp": (sign(rsa_key, exp=None), "token has no 'exp' claim"),
        "lifetime over max": (
            sign(rsa_key, exp=now + 7200),
            "token lifetime 7200 s exceeds the maximum of 3600 s",
        ),
        "far exp without iat/nbf": (sign(rsa_key, iat=None, nbf=None, exp=now + 7200), "maximum lifetime"),
        "unknown kid": (sign(rsa_key, kid="who-knows"), "unknown signing key kid='who-knows'"),
        "tampered payload": (f"{head}.{tampered_payload}.{signature}", "invalid signature"),
        "signed by an untrusted key": (sign(attacker_key, kid="rsa-1"), "invalid signature"),
        "RSA kid with ES256": (sign(ec_key, kid="rsa-1"), "algorithm ES256 does not match"),
        "no sub": (sign(rsa_key, sub=None), "token has no 'sub' claim"),
        "garbage": ("not-a-jwt", "malformed token"),
        "huge": ("a." + "b" * 20000 + ".c", "larger than"),
    }


HOSTILE = [
    "alg none",
    "HS256 signed with the public key",
    "wrong iss",
    "wrong aud",
    "expired",
    "nbf in the future",
    "no exp",
    "lifetime over max",
    "far exp without iat/nbf",
    "unknown kid",
    "tampered payload",
    "signed by an untrusted key",
    "RSA kid with ES256",
    "no sub",
    "garbage",
    "huge",
]


@pytest.mark.parametrize("name", HOSTILE)
async def test_hostile_token_is_refused_with_a_clear_message(
    name: str, settings: Settings, issuers: dict[str, TrustedIssuer], rsa_key: Any, ec_key: Any
) -> None:
    token, message = hostile_tokens(rsa_key, ec_key)[name]
    with pytest.raises(Unauthenticated) as caught:
        await validate(settings, token, issuers)
    assert message in caught.value.message
    assert caught.value.status_code == 401
    assert "Traceback" not in caught.value.message


async def test_valid_tokens_of_each_algorithm_yield_the_principal(
    settings: Settings, issuers: dict[str, TrustedIssuer], rsa_key: Any, ec_key: Any
) -> None:
    for token in (sign(rsa_key, kid="rsa-1"), sign(ec_key, kid="ec-1")):
        principal = await validate(settings, token, issuers)
        assert principal.key == f"{ISSUER}#alice"
        assert principal.claims["aud"] == AUDIENCE


async def test_clock_skew_is_tolerated_but_no_more(
    settings: Settings, issuers: dict[str, TrustedIssuer], rsa_key: Any
) -> None:
    now = int(time.time())
    assert await validate(settings, sign(rsa_key, iat=now - 300, nbf=now - 300, exp=now - 10), issuers)
    with pytest.raises(Unauthenticated, match="token expired"):
        await validate(settings, sign(rsa_key, iat=now - 300, nbf=now - 300, exp=now - 60), issuers)


async def test_disallowed_algorithm_in_settings_is_refused(
    tmp_path: Path, issuers: dict[str, TrustedIssuer], ec_key: Any
) -> None:
    only_rsa = Settings(public_url=AUDIENCE, data_dir=tmp_path, allowed_algorithms=["RS256"])
    with pytest.raises(Unauthenticated, match="algorithm 'ES256' not allowed"):
        await validate(only_rsa, sign(ec_key, kid="ec-1"), issuers)


async def test_issuer_specific_audience_overrides_the_fhs_audience(settings: Settings, rsa_key: Any) -> None:
    jwks = {"keys": [public_jwk(rsa_key, "rsa-1")]}
    issuers = {ISSUER: TrustedIssuer(issuer=ISSUER, audience="fhs-a", jwks=jwks)}
    assert await validate(settings, sign(rsa_key, aud="fhs-a"), issuers)
    with pytest.raises(Unauthenticated, match="audience mismatch: expected 'fhs-a'"):
        await validate(settings, sign(rsa_key), issuers)


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
async def test_tokens_minted_by_joserfc_are_accepted(settings: Settings, alg: str) -> None:
    key: Any = {
        "RS256": lambda: RSAKey.generate_key(2048),
        "ES256": lambda: ECKey.generate_key("P-256"),
        "EdDSA": lambda: OKPKey.generate_key("Ed25519"),
    }[alg]()
    kid = key.thumbprint()
    issuers = {
        ISSUER: TrustedIssuer(issuer=ISSUER, jwks={"keys": [{**key.as_dict(private=False), "kid": kid}]})
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # joserfc flags "EdDSA" as superseded by RFC 9864's "Ed25519"
        token = joserfc_jwt.encode({"alg": alg, "kid": kid}, claims(sub="bob"), key, algorithms=[alg])
    principal = await validate(settings, token, issuers)
    assert (principal.issuer, principal.subject) == (ISSUER, "bob")


def test_trusted_issuer_needs_exactly_one_key_source() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        TrustedIssuer(issuer=ISSUER)
    with pytest.raises(ValueError, match="exactly one"):
        TrustedIssuer(issuer=ISSUER, jwks={"keys": []}, jwks_uri=JWKS_URI)


# --- remote JWKS ---------------------------------------------------------------------------------


class JwksServer:
    """A counting JWKS endpoint behind httpx.MockTransport."""

    def __init__(self, jwks: dict[str, Any]) -> None:
        self.jwks = jwks
        self.fetches = 0
        self.response: httpx.Response | None = None

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.fetches += 1
        await asyncio.sleep(0.01)  # let concurrent validations pile up behind the fetch
        return self.response or httpx.Response(200, json=self.jwks)


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def remote_issuers() -> dict[str, TrustedIssuer]:
    return {ISSUER: TrustedIssuer(issuer=ISSUER, jwks_uri=JWKS_URI)}


async def test_flood_of_random_kids_fetches_the_jwks_once_per_cooldown(
    settings: Settings, remote_issuers: dict[str, TrustedIssuer], rsa_key: Any
) -> None:
    server = JwksServer({"keys": [public_jwk(rsa_key, "rsa-1")]})
    clock = FakeMonotonic()
    async with httpx.AsyncClient(transport=httpx.MockTransport(server)) as client:
        validator = TokenValidator(settings, client, monotonic=clock)

        async def flood() -> list[Any]:
            tokens = [sign(rsa_key, kid=secrets.token_hex(8)) for _ in range(200)]
            return await asyncio.gather(
                *(validator.validate(t, issuers=remote_issuers) for t in tokens), return_exceptions=True
            )

        results = await flood()
        assert server.fetches == 1
        assert all(isinstance(r, Unauthenticated) and "unknown signing key" in r.message for r in results)
        # The known key keeps working from the cache.
        assert await validator.validate(sign(rsa_key), issuers=remote_issuers)
        clock.now += settings.jwks_refresh_cooldown_s / 2
        await flood()
        assert server.fetches == 1
        clock.now += settings.jwks_refresh_cooldown_s
        await flood()
        assert server.fetches == 2


async def test_unknown_kid_after_cooldown_picks_up_a_rotated_idp_key(
    settings: Settings, remote_issuers: dict[str, TrustedIssuer], rsa_key: Any, ec_key: Any
) -> None:
    server = JwksServer({"keys": [public_jwk(rsa_key, "rsa-1")]})
    clock = FakeMonotonic()
    async with httpx.AsyncClient(transport=httpx.MockTransport(server)) as client:
        validator = TokenValidator(settings, client, monotonic=clock)
        assert await validator.validate(sign(rsa_key), issuers=remote_issuers)
        server.jwks = {"keys": [public_jwk(rsa_key, "rsa-1"), public_jwk(ec_key, "ec-2")]}
        clock.now += settings.jwks_refresh_cooldown_s + 1
        principal = await validator.validate(sign(ec_key, kid="ec-2"), issuers=remote_issuers)
        assert principal.subject == "alice"
        assert server.fetches == 2


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (
            httpx.Response(302, headers={"Location": "https://evil.example/jwks"}),
            "redirects are not followed",
        ),
        (httpx.Response(200, content=b'{"keys": [' + b" " * 300_000 + b"]}"), "larger than"),
        (httpx.Response(200, content=b"<html>"), "is not JSON"),
        (httpx.Response(500), "HTTP 500"),
    ],
)
async def test_bad_jwks_endpoints_fail_closed_as_idp_unavailable(
    settings: Settings,
    remote_issuers: dict[str, TrustedIssuer],
    rsa_key: Any,
    response: httpx.Response,
    message: str,
) -> None:
    server = JwksServer({})
    server.response = response
    async with httpx.AsyncClient(transport=httpx.MockTransport(server)) as client:
        validator = TokenValidator(settings, client)
        # The IdP's fault, not the token's: 503 (retry later), not 401 (get a new token).
        with pytest.raises(IdPUnavailable, match=message):
            await validator.validate(sign(rsa_key), issuers=remote_issuers)
        # Within the cooldown the failing endpoint is not hammered again.
        with pytest.raises(IdPUnavailable, match="cooldown"):
            await validator.validate(sign(rsa_key), issuers=remote_issuers)
        assert server.fetches == 1


async def test_failed_jwks_refresh_keeps_serving_cached_keys(
    settings: Settings, remote_issuers: dict[str, TrustedIssuer], rsa_key: Any
) -> None:
    server = JwksServer({"keys": [public_jwk(rsa_key, "rsa-1")]})
    clock = FakeMonotonic()
    async with httpx.AsyncClient(transport=httpx.MockTransport(server)) as client:
        validator = TokenValidator(settings, client, monotonic=clock)
        assert await validator.validate(sign(rsa_key), issuers=remote_issuers)
        server.response = httpx.Response(503)
        clock.now += 10 * 24 * 3600  # the cached set is stale: a refresh is due and fails
        principal = await validator.validate(sign(rsa_key), issuers=remote_issuers)
        assert principal.subject == "alice"
        assert server.fetches == 2
        # A kid the stale set lacks is still an unknown key (401), not an outage.
        with pytest.raises(Unauthenticated, match="unknown signing key"):
            await validator.validate(sign(rsa_key, kid="other"), issuers=remote_issuers)


# --- bearer extraction ---------------------------------------------------------------------------


def test_extract_bearer_accepts_one_credential_and_refuses_two_different() -> None:
    assert extract_bearer(Headers({"authorization": "Bearer abc.def.ghi"})) == "abc.def.ghi"
    assert extract_bearer(Headers({})) is None
    same_twice = Headers(raw=[(b"authorization", b"Bearer tok"), (b"x-forwarded-access-token", b"tok")])
    assert extract_bearer(same_twice) == "tok"
    assert extract_bearer(Headers({}), QueryParams("access_token=q")) == "q"
    with pytest.raises(BadRequest, match="two different credentials"):
        extract_bearer(Headers(raw=[(b"authorization", b"Bearer a"), (b"authorization", b"Bearer b")]))
    with pytest.raises(BadRequest, match="two different credentials"):
        extract_bearer(Headers(raw=[(b"authorization", b"Bearer a"), (b"x-forwarded-access-token", b"b")]))
    with pytest.raises(BadRequest, match="two different credentials"):
        extract_bearer(Headers({"authorization": "Bearer a"}), QueryParams("access_token=b"))
    with pytest.raises(Unauthenticated, match="unsupported authorization scheme"):
        extract_bearer(Headers({"authorization": "Basic dXNlcjpwdw=="}))
    with pytest.raises(Unauthenticated, match="malformed bearer token"):
        extract_bearer(Headers({"authorization": "Bearer a, Bearer b"}))


# --- FHS keyring ---------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_keyring_is_created_once_and_persisted_owner_only(tmp_path: Path) -> None:
    first = FHSKeyring.open(tmp_path)
    second = FHSKeyring.open(tmp_path)
    assert first.current_kid == second.current_kid
    assert first.jwks() == second.jwks()
    key_dir = tmp_path / "keys"
    assert stat.S_IMODE(key_dir.stat().st_mode) == 0o700
    files = list(key_dir.iterdir())
    assert files and all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    # A token signed by one instance verifies with the other's JWKS.
    token = first.sign({"iss": "fhs", "aud": "svc", "exp": int(time.time()) + 60}, typ="JWT")
    jwk = jwt.PyJWK(second.jwks()["keys"][0])
    assert jwt.decode(token, jwk.key, algorithms=["EdDSA"], audience="svc")["iss"] == "fhs"


def test_keyring_kid_is_the_rfc7638_thumbprint(tmp_path: Path) -> None:
    jwk = FHSKeyring.open(tmp_path).jwks()["keys"][0]
    assert "d" not in jwk
    assert jwk["kid"] == OKPKey.import_key({k: jwk[k] for k in ("kty", "crv", "x")}).thumbprint()


def test_keyring_export_round_trip() -> None:
    keyring = FHSKeyring.generate()
    again = FHSKeyring.load_from(json.loads(json.dumps(keyring.export())))
    assert again.jwks() == keyring.jwks()
    assert again.current_kid == keyring.current_kid


def test_rotation_publishes_first_then_signs_and_keeps_old_key_through_overlap(tmp_path: Path) -> None:
    clock = FakeClock()
    keyring = FHSKeyring.open(tmp_path, clock=clock)
    old_kid = keyring.current_kid
    old_token = keyring.sign({"iss": "fhs", "exp": int(clock.now) + 10_000}, typ="JWT")

    new_kid = keyring.rotate(overlap_s=120, publish_delay_s=30)
    published = {k["kid"] for k in keyring.jwks()["keys"]}
    assert published == {old_kid, new_kid}
    assert keyring.current_kid == old_kid  # published, not yet used
    with pytest.raises(Conflict):
        keyring.rotate(overlap_s=120, publish_delay_s=30)

    clock.now += 31
    assert keyring.current_kid == new_kid
    # Rotation state survives a restart.
    reopened = FHSKeyring.open(tmp_path, clock=clock)
    assert reopened.current_kid == new_kid
    jwks = reopened.jwks()
    old_jwk = next(k for k in jwks["keys"] if k["kid"] == old_kid)
    assert jwt.decode(old_token, jwt.PyJWK(old_jwk).key, algorithms=["EdDSA"], options={"verify_exp": False})

    clock.now += 121
    assert {k["kid"] for k in reopened.jwks()["keys"]} == {new_kid}


# --- invocation tokens ---------------------------------------------------------------------------


def test_invocation_token_round_trip_and_refusals() -> None:
    keyring = FHSKeyring.generate()
    grant = InvocationToken(
        federation="fed-1",
        service_id="svc-42",
        member_issuer=ISSUER,
        member_subject="alice",
        attributes=("edge-users", "Member"),
    )
    token = grant.mint(keyring=keyring, issuer=AUDIENCE, ttl_s=60)
    verified = verify_invocation_token(token, jwks=keyring.jwks(), issuer=AUDIENCE, audience="svc-42")
    assert verified["member"] == {"iss": ISSUER, "sub": "alice"}
    assert verified["federation"] == "fed-1"
    assert verified["attributes"] == ["Member", "edge-users"]
    assert verified["exp"] - verified["iat"] == 60
    assert verified["jti"] != grant.claims(issuer=AUDIENCE, ttl_s=60)["jti"]  # a fresh id per token
    with pytest.raises(Unauthenticated, match="audience mismatch: expected 'svc-other'"):
        verify_invocation_token(token, jwks=keyring.jwks(), issuer=AUDIENCE, audience="svc-other")
    with pytest.raises(Unauthenticated, match="unknown FHS signing key"):
        verify_invocation_token(token, jwks=FHSKeyring.generate().jwks(), issuer=AUDIENCE, audience="svc-42")
    # Other things the FHS signs cannot be replayed as invocation tokens.
    other = keyring.sign({"iss": AUDIENCE, "aud": "svc-42", "exp": int(time.time()) + 60}, typ="JWT")
    with pytest.raises(Unauthenticated, match="wrong token type for invocation token"):
        verify_invocation_token(other, jwks=keyring.jwks(), issuer=AUDIENCE, audience="svc-42")
    # A member's own token (different algorithm and key) is refused by a resource service.
    member_token = jwt.encode(claims(aud="svc-42"), ed25519.Ed25519PrivateKey.generate(), algorithm="EdDSA")
    with pytest.raises(Unauthenticated):
        verify_invocation_token(member_token, jwks=keyring.jwks(), issuer=AUDIENCE, audience="svc-42")


# --- operator secret -----------------------------------------------------------------------------


def test_operator_secret_is_created_owner_only_and_checked(tmp_path: Path) -> None:
    checker = OperatorSecret.open(tmp_path)
    path = tmp_path / "operator.secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    secret = path.read_text().strip()
    assert secret.startswith("fhsop_")
    assert checker.check_operator_secret(secret)
    assert not checker.check_operator_secret(secret[:-1] + ("A" if secret[-1] != "A" else "B"))
    assert not checker.check_operator_secret("")
    assert OperatorSecret.open(tmp_path).check_operator_secret(secret)  # same secret after restart


# --- single-use token ids ---------------------------------------------------------------------------


async def test_memory_replay_guard_refuses_a_second_use_until_expiry() -> None:
    clock = FakeClock()
    guard = MemoryReplayGuard(leeway=30, clock=clock)
    assert await guard.first_use("a", exp=clock.now + 60)
    assert not await guard.first_use("a", exp=clock.now + 60)
    assert await guard.first_use("b", exp=clock.now + 60)
    clock.now += 91  # past exp + leeway: the token itself is refused as expired by then
    assert await guard.first_use("a", exp=clock.now + 60)


async def test_store_replay_guard_is_shared_by_every_process_on_the_store(store_url: str) -> None:
    clock = FakeClock()
    one, two = open_store(store_url), open_store(store_url)
    try:
        first = StoreReplayGuard(one, "jti", leeway=30, clock=clock)
        second = StoreReplayGuard(two, "jti", leeway=30, clock=clock)
        assert await first.first_use("k1", exp=clock.now + 60)
        assert not await second.first_use("k1", exp=clock.now + 60)
        assert not await first.first_use("k1", exp=clock.now + 60)
        assert await second.first_use("k2", exp=clock.now + 300)
        assert await first.purge() == 0
        clock.now += 100  # k1 expired (60 + 30 leeway), k2 not
        assert await second.purge() == 1
        assert [d.key for d in await one.list("jti")] == ["k2"]
    finally:
        await one.close()
        await two.close()


async def test_store_replay_guard_purges_by_itself(tmp_path: Path) -> None:
    clock = FakeClock()
    store = open_store(f"sqlite:///{tmp_path / 'jti.sqlite3'}")
    try:
        guard = StoreReplayGuard(store, "jti", leeway=0, purge_every=3, clock=clock)
        for key in ("a", "b"):
            assert await guard.first_use(key, exp=clock.now + 1)
        clock.now += 5
        assert await guard.first_use("c", exp=clock.now + 1)  # the third use purges a and b
        assert [d.key for d in await store.list("jti")] == ["c"]
    finally:
        await store.close()

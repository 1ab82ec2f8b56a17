"""The resource service app in process (ASGITransport, lifespan run): auth, describe, benchmarks, segments."""

from __future__ import annotations

import asyncio
import io
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import jwt
import keras
import numpy as np
import pytest

from fhs.identity.invocation import INVOCATION_TOKEN_TYP, InvocationToken
from fhs.identity.keys import FHSKeyring
from scission_service.benchmark_data import parse_benchmark_data
from scission_service.graph import analyze_model
from scission_service.models import load_model, model_digest
from scission_service.resource.app import create_resource_app
from scission_service.resource.settings import ResourceSettings
from scission_service.tensor_wire import MEDIA_TYPE, decode_array, encode_array

ISSUER = "https://fhs-a.example"
SID = "svc-edge-1"
BASE = "http://resource.test"
MAX_TENSOR_BYTES = 16 * 1024


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small functional model with a branch, saved as .keras."""
    keras.utils.set_random_seed(3)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    y = keras.layers.Conv2D(8, 3, padding="same")(x)
    x = keras.layers.Add()([x, keras.layers.Conv2D(8, 1)(y)])
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(4)(x))
    path = tmp_path_factory.mktemp("models") / "tiny.keras"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def keyring() -> FHSKeyring:
    """The FHS's signing keys."""
    return FHSKeyring.generate()


def mint(keyring: FHSKeyring, *, audience: str = SID, issuer: str = ISSUER, now: float | None = None) -> str:
    """An invocation token as the FHS would attach it."""
    token = InvocationToken(
        federation="fed-1", service_id=audience, member_issuer="https://idp-a", member_subject="alice",
        attributes=("edge-users",),
    )  # fmt: skip
    return token.mint(keyring=keyring, issuer=issuer, ttl_s=60, now=now)


def settings_for(tiny_path: Path, keyring: FHSKeyring, **extra: Any) -> ResourceSettings:
    """Settings of an edge node serving the tiny model, pinning the FHS keys inline."""
    values: dict[str, Any] = {
        "name": "edge-1",
        "tier": "edge",
        "models": [f"tiny={tiny_path}"],
        "fhs_issuer": ISSUER,
        "fhs_jwks": keyring.jwks(),
        "service_ids": [SID],
        "max_tensor_bytes": MAX_TENSOR_BYTES,
        "allowed_dtypes": ["float32", "float16"],
        **extra,
    }
    return ResourceSettings(**values)


@asynccontextmanager
async def running(settings: ResourceSettings, **kwargs: Any) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    """Run the app's lifespan and yield a client bound to it plus the app."""
    app = create_resource_app(settings, **kwargs)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
            yield client, app


@pytest.fixture
async def node(tiny_path: Path, keyring: FHSKeyring) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    """A running node and its app."""
    async with running(settings_for(tiny_path, keyring)) as pair:
        yield pair


@pytest.fixture
def auth(keyring: FHSKeyring) -> Callable[[], dict[str, str]]:
    """A fresh invocation token header for each call (tokens are single use)."""
    return lambda: {"Authorization": f"Bearer {mint(keyring)}"}


def npy(array: np.ndarray) -> bytes:
    return encode_array(array)


async def describe(client: httpx.AsyncClient, auth: Callable[[], dict[str, str]]) -> dict[str, Any]:
    response = await client.get("/describe", headers=auth())
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# --- authentication ---------------------------------------------------------------------------------


def assert_401(response: httpx.Response, fragment: str) -> None:
    assert response.status_code == 401, response.text
    error = response.json()["error"]
    assert error["code"] in ("unauthenticated", "unknown_signing_key") and fragment in error["message"]
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_calls_not_forwarded_by_the_fhs_are_refused(node: Any, keyring: FHSKeyring) -> None:
    client, _ = node
    assert_401(await client.get("/describe"), "only accepts calls forwarded by its FHS")
    # Auth comes before body parsing and routing: no 422 details, no 404 probing.
    assert_401(await client.post("/benchmarks", content=b"{not json"), "missing invocation token")
    assert_401(await client.get("/no-such-route"), "missing invocation token")
    assert_401(await client.get("/describe", headers={"Authorization": "Basic YTpi"}), "Bearer")
    wrong_aud = mint(keyring, audience="svc-someone-else")
    assert_401(await client.get("/describe", headers={"Authorization": f"Bearer {wrong_aud}"}), "audience")
    wrong_iss = mint(keyring, issuer="https://evil.example")
    assert_401(await client.get("/describe", headers={"Authorization": f"Bearer {wrong_iss}"}), "issuer")
    stranger = mint(FHSKeyring.generate())
    assert_401(await client.get("/describe", headers={"Authorization": f"Bearer {stranger}"}), "unknown")
    expired = mint(keyring, now=time.time() - 3600)
    assert_401(await client.get("/describe", headers={"Authorization": f"Bearer {expired}"}), "expired")


async def test_forged_kid_and_replayed_tokens_are_refused(node: Any, keyring: FHSKeyring) -> None:
    client, _ = node
    other = FHSKeyring.generate()
    claims = InvocationToken(
        federation="fed-1", service_id=SID, member_issuer="https://idp-a", member_subject="mallory"
    ).claims(issuer=ISSUER, ttl_s=60)
    # Signed by another key but naming the FHS's kid: the pinned key does not verify it.
    forged = jwt.encode(
        claims,
        other._current(time.time()).private_key,
        algorithm="EdDSA",
        headers={"kid": keyring.current_kid, "typ": INVOCATION_TOKEN_TYP},
    )
    assert_401(await client.get("/describe", headers={"Authorization": f"Bearer {forged}"}), "signature")
    token = {"Authorization": f"Bearer {mint(keyring)}"}
    assert (await client.get("/describe", headers=token)).status_code == 200
    assert_401(await client.get("/describe", headers=token), "replayed")


async def test_with_a_replay_store_a_restart_or_a_replica_still_refuses_a_used_token(
    tiny_path: Path, keyring: FHSKeyring, store_url: str
) -> None:
    settings = settings_for(tiny_path, keyring, replay_store_url=store_url)
    token = {"Authorization": f"Bearer {mint(keyring)}"}
    async with running(settings) as (client, _):
        assert (await client.get("/describe", headers=token)).status_code == 200
    # The same node restarted, and a second replica beside it: neither accepts the token again.
    async with running(settings) as (restarted, _), running(settings) as (replica, _):
        assert_401(await restarted.get("/describe", headers=token), "replayed")
        assert_401(await replica.get("/describe", headers=token), "replayed")
        fresh = {"Authorization": f"Bearer {mint(keyring)}"}
        assert (await replica.get("/describe", headers=fresh)).status_code == 200
    # Without one, memory is all a node has: a restarted node cannot know the token was used.
    plain = settings_for(tiny_path, keyring)
    async with running(plain) as (client, _):
        assert (await client.get("/describe", headers=token)).status_code == 200


def test_a_bad_replay_store_url_is_a_settings_error(tiny_path: Path, keyring: FHSKeyring) -> None:
    with pytest.raises(ValueError, match="unsupported store URL scheme 'postgres'"):
        settings_for(tiny_path, keyring, replay_store_url="postgres://user:secret@db/x")


async def test_healthz_needs_no_token(node: Any) -> None:
    client, _ = node
    response = await client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


async def test_metrics_need_no_invocation_token_but_the_metrics_token_when_one_is_set(
    tiny_path: Path, keyring: FHSKeyring, node: Any
) -> None:
    open_client, _ = node
    assert (await open_client.get("/metrics")).status_code == 200
    async with running(settings_for(tiny_path, keyring, metrics_token="scrape")) as (client, _):
        refused = await client.get("/metrics", headers={"Authorization": f"Bearer {mint(keyring)}"})
        assert refused.status_code == 401 and "SCISSION_RESOURCE_METRICS_TOKEN" in refused.text
        scraped = await client.get("/metrics", headers={"Authorization": "Bearer scrape"})
        assert scraped.status_code == 200 and "scission_benchmark_jobs" in scraped.text


async def test_jwks_by_url_refreshes_on_unknown_kid_at_most_once_per_cooldown(tiny_path: Path) -> None:
    fhs_keys = FHSKeyring.generate()
    fetches: list[str] = []

    def jwks_endpoint(request: httpx.Request) -> httpx.Response:
        fetches.append(str(request.url))
        return httpx.Response(200, json=fhs_keys.jwks())

    settings = settings_for(tiny_path, fhs_keys, fhs_jwks=None, jwks_refresh_cooldown_s=30)
    assert settings.fhs_jwks_url == f"{ISSUER}/.well-known/jwks.json"
    async with running(settings, transport=httpx.MockTransport(jwks_endpoint)) as (client, _):
        assert fetches == [f"{ISSUER}/.well-known/jwks.json"]  # fetched at start
        ok = await client.get("/describe", headers={"Authorization": f"Bearer {mint(fhs_keys)}"})
        assert ok.status_code == 200 and len(fetches) == 1
        fhs_keys.rotate(overlap_s=600, publish_delay_s=0)  # the FHS signs with a new key from now on
        rotated = await client.get("/describe", headers={"Authorization": f"Bearer {mint(fhs_keys)}"})
        assert rotated.status_code == 200 and len(fetches) == 2  # one refresh for the new kid
        for _ in range(3):  # unknown kids within the cooldown: refused without hammering the FHS
            stranger = mint(FHSKeyring.generate())
            assert_401(
                await client.get("/describe", headers={"Authorization": f"Bearer {stranger}"}), "unknown"
            )
        assert len(fetches) == 2


# --- describe and benchmarks ------------------------------------------------------------------------


async def test_describe_lists_tier_hardware_and_models_with_digests(
    node: Any, auth: Callable[[], dict[str, str]], tiny_path: Path
) -> None:
    client, _ = node
    body = await describe(client, auth)
    model = load_model(tiny_path)
    assert body["name"] == "edge-1" and body["tier"] == "edge"
    assert body["hardware"]["tier"] == "edge" and body["hardware"]["cores"] >= 1
    [served] = body["models"]
    assert served["name"] == "tiny" and served["digest"] == model_digest(model)
    assert served["blocks"] == len(analyze_model(model).blocks)
    assert served["input_shapes"] == [[None, 16, 16, 3]] and str(tiny_path.parent) not in served["source"]
    assert body["limits"] == {"max_tensor_bytes": MAX_TENSOR_BYTES, "dtypes": ["float16", "float32"]}


async def test_benchmark_job_lifecycle_to_benchmark_data(
    tiny_path: Path, keyring: FHSKeyring, auth: Callable[[], dict[str, str]], tmp_path: Path
) -> None:
    settings = settings_for(tiny_path, keyring, cache_dir=tmp_path / "cache")
    async with running(settings) as (client, app):
        digest = (await describe(client, auth))["models"][0]["digest"]
        missing = await client.get("/benchmark-data/tiny", headers=auth())
        assert missing.status_code == 404 and "POST /benchmarks" in missing.json()["error"]["message"]

        gate = threading.Event()  # hold the single benchmark thread so the job stays queued
        app.state.service.benchmark_executor.submit(gate.wait, 30)
        try:
            started = await client.post("/benchmarks", headers=auth(), json={"model": "tiny", "repeats": 3})
            assert started.status_code == 202, started.text
            job = started.json()
            assert job["status"] == "queued" and job["input_shape"] == [1, 16, 16, 3]
            joined = await client.post("/benchmarks", headers=auth(), json={"model": "tiny", "repeats": 3})
            assert joined.status_code == 202 and joined.json()["id"] == job["id"]
            other = await client.post(
                "/benchmarks",
                headers=auth(),
                json={"model": "tiny", "input_shape": [2, 16, 16, 3], "repeats": 3},
            )
            assert other.status_code == 409 and job["id"] in other.json()["error"]["message"]
        finally:
            gate.set()

        deadline = time.monotonic() + 30
        while True:
            state = (await client.get(f"/benchmarks/{job['id']}", headers=auth())).json()
            if state["status"] not in ("queued", "running") or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert state["status"] == "succeeded", state
        blocks = (await describe(client, auth))["models"][0]["blocks"]
        assert state["progress"]["done"] == state["progress"]["total"] == blocks + 3 + 3
        # one step per segment built (blocks, whole model, two halves), then one per round of 3 repeats

        fetched = await client.get("/benchmark-data/tiny", params={"input_shape": "16,16,3"}, headers=auth())
        assert fetched.status_code == 200
        data = parse_benchmark_data(fetched.content)
        assert data.model_digest == digest and data.model_name == "tiny" and data.repeats == 3
        assert len(data.blocks) == blocks and data.resource.name == "edge-1" and data.resource.tier == "edge"
        again = await client.post("/benchmarks", headers=auth(), json={"model": "tiny", "repeats": 3})
        assert again.status_code == 200 and again.json()["cached"] is True
        assert (await client.get("/benchmarks/nope", headers=auth())).status_code == 404
        bad = await client.post(
            "/benchmarks", headers=auth(), json={"model": "tiny", "input_shape": [9, 9, 3]}
        )
        assert bad.status_code == 422 and "does not fit" in bad.json()["error"]["message"]

    async with running(settings) as (client, _):  # restart: the persisted result is served again
        reloaded = await client.get("/benchmark-data/tiny", headers=auth())
        assert reloaded.status_code == 200 and parse_benchmark_data(reloaded.content) == data


# --- segment execution ------------------------------------------------------------------------------


async def run(
    client: httpx.AsyncClient,
    auth: Callable[[], dict[str, str]],
    body: bytes,
    first: int,
    last: int,
    digest: str,
) -> httpx.Response:
    return await client.post(
        "/segments/tiny/run",
        params={"first_block": first, "last_block": last},
        content=body,
        headers={**auth(), "X-Model-Digest": digest, "Content-Type": MEDIA_TYPE},
    )


async def test_segment_chain_over_all_blocks_equals_the_whole_model(
    node: Any, auth: Callable[[], dict[str, str]], tiny_path: Path
) -> None:
    client, _ = node
    served = (await describe(client, auth))["models"][0]
    x = np.random.default_rng(5).random((2, 16, 16, 3), dtype=np.float32)
    expected = keras.ops.convert_to_numpy(load_model(tiny_path)(x, training=False))
    value = x
    for k in range(served["blocks"]):
        response = await run(client, auth, npy(value), k, k, served["digest"])
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == MEDIA_TYPE
        assert response.headers["x-model-digest"] == served["digest"]
        assert float(response.headers["x-compute-seconds"]) >= 0
        value = decode_array(response.content)
    np.testing.assert_allclose(value, expected, rtol=1e-5, atol=1e-5)
    # A two-hop plan: blocks [0, 1] then [2, last].
    head = await run(client, auth, npy(x), 0, 1, served["digest"])
    tail = await run(client, auth, head.content, 2, served["blocks"] - 1, served["digest"])
    np.testing.assert_allclose(decode_array(tail.content), expected, rtol=1e-5, atol=1e-5)
    assert tail.headers["x-output-shape"] == "2x4"


async def test_segment_requests_that_do_not_fit_are_refused_with_clear_errors(
    node: Any, auth: Callable[[], dict[str, str]]
) -> None:
    client, _ = node
    served = (await describe(client, auth))["models"][0]
    digest, last = served["digest"], served["blocks"] - 1
    x = np.zeros((1, 16, 16, 3), dtype=np.float32)

    def error(response: httpx.Response, status: int) -> str:
        assert response.status_code == status, response.text
        message: str = response.json()["error"]["message"]
        return message

    assert "this node serves" in error(await run(client, auth, npy(x), 0, last, "sha256:" + "0" * 64), 409)
    missing = await client.post(
        "/segments/tiny/run", params={"first_block": 0, "last_block": 0}, content=npy(x), headers=auth()
    )
    assert "X-Model-Digest" in error(missing, 422)
    small = npy(np.zeros((1, 8, 8, 3), np.float32))
    assert "must have shape" in error(await run(client, auth, small, 0, 0, digest), 422)
    assert "invalid" in error(await run(client, auth, npy(x), 2, 1, digest), 422)
    assert "invalid" in error(await run(client, auth, npy(x), 0, last + 1, digest), 422)
    big = np.zeros((1, 64, 64, 3), dtype=np.float32)  # 48 KiB of data > 16 KiB limit
    assert str(MAX_TENSOR_BYTES) in error(await run(client, auth, npy(big), 0, 0, digest), 413)
    huge = b"\x93NUMPY" + b"\0" * (MAX_TENSOR_BYTES + 128 * 1024)  # refused from its Content-Length
    assert "accepts tensors up to" in error(await run(client, auth, huge, 0, 0, digest), 413)

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: refused while reading
        for _ in range(100):
            yield b"\0" * 4096

    streamed = await client.post(
        "/segments/tiny/run", params={"first_block": 0, "last_block": 0}, content=chunked(),
        headers={**auth(), "X-Model-Digest": digest},
    )  # fmt: skip
    assert "exceeds" in error(streamed, 413)
    ints = np.zeros((1, 16, 16, 3), dtype=np.int64)
    assert "int64 (<i8) is not allowed" in error(await run(client, auth, npy(ints), 0, 0, digest), 422)
    pickled = io.BytesIO()
    np.save(pickled, np.array([{"rm": "-rf"}], dtype=object), allow_pickle=True)
    assert "refused" in error(await run(client, auth, pickled.getvalue(), 0, 0, digest), 422)
    assert "not a valid .npy" in error(await run(client, auth, b"GIF89a....", 0, 0, digest), 422)
    unknown = await client.post(
        "/segments/other/run", params={"first_block": 0, "last_block": 0}, content=npy(x),
        headers={**auth(), "X-Model-Digest": digest},
    )  # fmt: skip
    assert "served models: tiny" in error(unknown, 404)

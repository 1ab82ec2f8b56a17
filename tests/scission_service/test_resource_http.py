"""The resource service over real HTTP (uvicorn on loopback, FHS JWKS fetched by URL), link emulation, CLI."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import keras
import numpy as np
import pytest
import uvicorn
from click.testing import CliRunner
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from fhs.identity.invocation import InvocationToken
from fhs.identity.keys import FHSKeyring
from scission_service.models import load_model
from scission_service.resource import cli as resource_cli
from scission_service.resource.app import create_resource_app
from scission_service.resource.link import LinkEmulator
from scission_service.resource.settings import NAMED_LINK_PROFILES, LinkProfile, ModelSpec, ResourceSettings
from scission_service.tensor_wire import decode_array, encode_array

SID = "svc-device-1"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def serve_in_thread() -> Iterator[Any]:
    """Start ASGI apps with uvicorn (lifespan on) on free loopback ports; stop them afterwards."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(app: Any) -> str:
        port = _free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
        deadline = time.monotonic() + 30
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.started, "server did not start"
        return f"http://127.0.0.1:{port}"

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small sequential-style functional model saved as .keras."""
    keras.utils.set_random_seed(4)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    path = tmp_path_factory.mktemp("models") / "mini.keras"
    model.save(path)
    return path


def test_real_http_node_fetches_fhs_keys_and_runs_segments_with_link_emulation(
    serve_in_thread: Any, tiny_path: Path
) -> None:
    keyring = FHSKeyring.generate()
    fhs_url = serve_in_thread(
        Starlette(routes=[Route("/.well-known/jwks.json", lambda _r: JSONResponse(keyring.jwks()))])
    )
    link = LinkProfile(latency_s=0.01, bandwidth_bytes_per_s=1e6, direction="both")
    settings = ResourceSettings(
        name="phone-1", tier="device", models=[f"mini={tiny_path}"], fhs_issuer=fhs_url, service_ids=[SID],
        link=link,
    )  # fmt: skip
    node_url = serve_in_thread(create_resource_app(settings))

    def token() -> dict[str, str]:
        minted = InvocationToken(
            federation="fed-1", service_id=SID, member_issuer="https://idp", member_subject="bob"
        ).mint(keyring=keyring, issuer=fhs_url, ttl_s=60)
        return {"Authorization": f"Bearer {minted}"}

    with httpx.Client(base_url=node_url, trust_env=False, timeout=30) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        refused = client.get("/describe")
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthenticated"
        described = client.get("/describe", headers=token()).json()
        assert described["tier"] == "device" and described["link"]["latency_s"] == 0.01
        [served] = described["models"]
        x = np.random.default_rng(1).random((1, 8, 8, 3), dtype=np.float32)
        body = encode_array(x)
        response = client.post(
            "/segments/mini/run",
            params={"first_block": 0, "last_block": served["blocks"] - 1},
            content=body,
            headers={**token(), "X-Model-Digest": served["digest"]},
        )
        assert response.status_code == 200, response.text
    expected = keras.ops.convert_to_numpy(load_model(tiny_path)(x, training=False))
    np.testing.assert_allclose(decode_array(response.content), expected, rtol=1e-5, atol=1e-5)
    emulated = float(response.headers["x-emulated-link-seconds"])
    assert emulated == pytest.approx(2 * 0.01 + (len(body) + len(response.content)) / 1e6, abs=1e-6)


async def test_link_emulator_delays_by_latency_plus_bytes_over_bandwidth() -> None:
    slept: list[float] = []

    async def record(seconds: float) -> None:
        slept.append(seconds)

    uplink = LinkEmulator(NAMED_LINK_PROFILES["3g"], sleep=record)
    assert await uplink.received(1000) == 0.0  # 'send' profiles shape only what the node sends
    assert await uplink.sending(200_000) == pytest.approx(0.067 + 200_000 / 200_000)
    assert slept == [pytest.approx(1.067)]
    assert await LinkEmulator(None, sleep=record).sending(10**9) == 0.0 and len(slept) == 1


def test_model_specs_and_settings_parse_or_explain() -> None:
    spec = ModelSpec.parse("mnv2=mobilenetv2:alpha=0.35:input_shape=96x96x3")
    assert (spec.name, spec.application, spec.alpha, spec.input_shape) == (
        "mnv2",
        "mobilenetv2",
        0.35,
        (96, 96, 3),
    )
    assert ModelSpec.parse("/models/My Net.keras").name == "my-net"
    with pytest.raises(ValueError, match="alpha=…, input_shape=…, seed=…"):
        ModelSpec.parse("resnet50:depth=3")
    common: dict[str, Any] = {"name": "n", "tier": "edge", "fhs_issuer": "http://fhs", "service_ids": ["s"]}
    settings = ResourceSettings(**common, models=["vgg16"], link="4g/receive")
    assert settings.link is not None and settings.link.direction == "receive"
    assert settings.link.bandwidth_bytes_per_s == 12.4e6 / 8
    with pytest.raises(ValueError, match="unique"):
        ResourceSettings(**common, models=["vgg16", "vgg16"])
    with pytest.raises(ValueError, match="unknown link profile"):
        ResourceSettings(**common, models=["vgg16"], link="5g")
    with pytest.raises(ValueError, match="cannot be sent"):
        ResourceSettings(**common, models=["vgg16"], allowed_dtypes=["object"])


def test_register_posts_a_scission_resource_and_prints_the_service_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    received: list[httpx.Request] = []

    def fhs(request: httpx.Request) -> httpx.Response:
        received.append(request)
        if request.headers["authorization"] != "Bearer member-jwt":
            return httpx.Response(401, json={"error": {"code": "unauthenticated", "message": "bad token"}})
        return httpx.Response(201, json={"id": "svc-abc", **json.loads(request.content)})

    real = resource_cli.register_resource
    monkeypatch.setattr(
        resource_cli, "register_resource", lambda **kw: real(**kw, transport=httpx.MockTransport(fhs))
    )
    args = [
        "register", "--fhs", "https://fhs-a.example", "--federation", "fed-1", "--name", "edge-1",
        "--endpoint", "http://10.0.0.5:8090", "--tier", "edge", "--model", "mnv2", "--no-detect-hardware",
        "--discover-any-of", "edge-users", "--access-any-of", "edge-users", "--meta", "site=lab",
    ]  # fmt: skip
    result = CliRunner().invoke(resource_cli.resource, [*args, "--token", "member-jwt"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "svc-abc"
    [request] = received
    assert request.url == "https://fhs-a.example/member/v1/federations/fed-1/services"
    body = json.loads(request.content)
    assert body["type"] == "scission.resource" and body["endpoint"] == "http://10.0.0.5:8090"
    assert body["metadata"] == {"tier": "edge", "models": "mnv2", "site": "lab"}
    assert body["discovery_policy"] == {"any_of": ["edge-users"]} == body["access_policy"]

    refused = CliRunner().invoke(resource_cli.resource, [*args, "--token", "stolen"])
    assert refused.exit_code == 2 and "HTTP 401" in refused.output and "bad token" in refused.output


def test_serve_refuses_bad_configuration_with_a_message(tmp_path: Path) -> None:
    base = ["serve", "--name", "n", "--tier", "edge", "--fhs-issuer", "http://fhs", "--service-id", "s"]
    missing = CliRunner().invoke(resource_cli.resource, [*base, "--model", str(tmp_path / "nope.keras")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    unknown = CliRunner().invoke(resource_cli.resource, [*base, "--model", "alexnet"])
    assert unknown.exit_code == 2 and "unknown application" in unknown.output
    no_models = CliRunner().invoke(resource_cli.resource, base)
    assert no_models.exit_code == 2 and "models" in no_models.output

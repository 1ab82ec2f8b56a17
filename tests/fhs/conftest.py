"""API fixtures: an in-process FHS (real store and keys), a test IdP minting RS256 JWTs, an echo upstream."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from fhs.app import create_app
from fhs.devtools.cluster import free_port
from fhs.ids import member_id
from fhs.settings import Settings

FHS_URL = "http://fhs-a.test"


@dataclass
class LocalIdP:
    """An IdP in the test process: an RSA key, its JWKS, and a token minter."""

    issuer: str = "https://idp-a.test"
    key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    kid: str = "test-key-1"

    def jwks(self) -> dict[str, Any]:
        """The public JWK Set."""
        jwk = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**jwk, "kid": self.kid, "alg": "RS256", "use": "sig"}]}

    def token(self, subject: str, *, audience: str = FHS_URL, ttl_s: int = 300, **claims: Any) -> str:
        """A valid RS256 JWT for ``subject``."""
        now = int(time.time())
        payload = {
            "iss": self.issuer,
            "sub": subject,
            "aud": audience,
            "iat": now,
            "nbf": now,
            "exp": now + ttl_s,
            "jti": uuid.uuid4().hex,
            **claims,
        }
        return jwt.encode(payload, self.key, algorithm="RS256", headers={"kid": self.kid})

    def headers(self, subject: str) -> dict[str, str]:
        """Authorization headers for ``subject``."""
        return {"Authorization": f"Bearer {self.token(subject)}"}


@pytest.fixture(scope="session")
def idp() -> LocalIdP:
    """One test IdP for the session (key generation is slow-ish)."""
    return LocalIdP()


@dataclass
class FHSHarness:
    """An FHS app in process, its client, the operator's headers and the IdP its members come from."""

    client: httpx.AsyncClient
    operator: dict[str, str]
    idp: LocalIdP
    settings: Settings
    runtime: Any
    """The app's :class:`fhs.runtime.Runtime` (for tests that look inside)."""

    def member(self, subject: str) -> dict[str, str]:
        """Headers of member ``subject``."""
        return self.idp.headers(subject)

    def key(self, subject: str) -> dict[str, str]:
        """The (issuer, subject) body identifying ``subject``."""
        return {"issuer": self.idp.issuer, "subject": subject}


@pytest.fixture
async def fhs(tmp_path: Any, idp: LocalIdP, store_url: str) -> AsyncIterator[FHSHarness]:
    """An FHS on each store backend that trusts ``idp``, with loopback allow-listed for the echo upstream."""
    async with RunningFHS(tmp_path, idp, store_url) as harness:
        yield harness


class RunningFHS:
    """Start an FHS app in process (lifespan included) and trust the test IdP."""

    def __init__(self, tmp_path: Any, idp: LocalIdP, store_url: str) -> None:
        self.settings = Settings(
            fhs_id="fhs-a",
            public_url=FHS_URL,
            data_dir=tmp_path / "fhs-a",
            store_url=store_url,
            proxy_allowlist=["127.0.0.1/32"],
        )
        self.idp = idp

    async def __aenter__(self) -> FHSHarness:
        self.app = create_app(self.settings)
        self.lifespan = self.app.router.lifespan_context(self.app)
        await self.lifespan.__aenter__()
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url=FHS_URL)
        secret = (self.settings.data_dir / "operator.secret").read_text().strip()
        operator = {"Authorization": f"Bearer {secret}"}
        response = await self.client.put(
            "/operator/v1/issuers/idp-a",
            headers=operator,
            json={"issuer": self.idp.issuer, "jwks": self.idp.jwks()},
        )
        assert response.status_code == 200, response.text
        return FHSHarness(
            client=self.client,
            operator=operator,
            idp=self.idp,
            settings=self.settings,
            runtime=self.app.state.runtime,
        )

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()
        await self.lifespan.__aexit__(None, None, None)


async def _echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answer with what was received, raw headers included (the tests check what the FHS forwarded)."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    record = {
        "method": scope["method"],
        "path": scope["path"],
        "query": scope["query_string"].decode(),
        "headers": {k.decode().lower(): v.decode() for k, v in scope["headers"]},
        "body": body.decode("utf-8", "replace"),
    }
    headers = [(b"content-type", b"application/json"), (b"set-cookie", b"s=1")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": json.dumps(record).encode()})


@contextlib.contextmanager
def serve_in_thread(app: Any) -> Iterator[str]:
    """Serve an ASGI app with uvicorn in a thread on a free loopback port; yield its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "the loopback test server did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=5)


@dataclass
class EchoUpstream:
    """A real HTTP service on loopback that echoes what it received."""

    url: str


@pytest.fixture(scope="session")
def echo_upstream() -> Iterator[EchoUpstream]:
    """The echo service, for the whole session."""
    with serve_in_thread(_echo_app) as base:
        yield EchoUpstream(url=f"{base}/echo")


EDGE_ONLY = {"any_of": ["edge-users"]}


@dataclass
class World:
    """A federation with a FedAdmin (alice), a ServiceOwner (bob), an edge user (carol), a plain member
    (dave), and eve who belongs only to another federation."""

    fhs: Any
    fid: str
    other_fid: str
    sid: str

    def headers(self, who: str) -> dict[str, str]:
        return self.fhs.member(who)

    def mid(self, who: str) -> str:
        return member_id(f"{self.fhs.idp.issuer}#{who}")


async def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


@pytest.fixture
async def world(fhs: Any, echo_upstream: Any) -> World:
    c = fhs.client
    await ok(await c.post("/operator/v1/fedadmins", headers=fhs.operator, json=fhs.key("alice")), 201)
    alice = fhs.member("alice")
    fed = await ok(await c.post("/member/v1/federations", headers=alice, json={"name": "scission-lab"}), 201)
    fid = fed["id"]
    await ok(
        await c.post(
            f"/member/v1/federations/{fid}/attributes",
            headers=alice,
            json={"name": "edge-users", "description": "may use edge resources"},
        ),
        201,
    )
    await ok(
        await c.post(
            f"/member/v1/federations/{fid}/members",
            headers=alice,
            json={**fhs.key("bob"), "attributes": ["ServiceOwner"]},
        ),
        201,
    )
    await ok(
        await c.post(
            f"/member/v1/federations/{fid}/members",
            headers=alice,
            json={**fhs.key("carol"), "attributes": ["edge-users"]},
        ),
        201,
    )
    await ok(await c.post(f"/member/v1/federations/{fid}/members", headers=alice, json=fhs.key("dave")), 201)
    other = await ok(await c.post("/member/v1/federations", headers=alice, json={"name": "other"}), 201)
    await ok(
        await c.post(f"/member/v1/federations/{other['id']}/members", headers=alice, json=fhs.key("eve")), 201
    )
    service = await ok(
        await c.post(
            f"/member/v1/federations/{fid}/services",
            headers=fhs.member("bob"),
            json={
                "name": "echo",
                "type": "test.echo",
                "endpoint": echo_upstream.url,
                "metadata": {"tier": "edge", "hardware": "loopback"},
                "discovery_policy": EDGE_ONLY,
                "access_policy": EDGE_ONLY,
            },
        ),
        201,
    )
    return World(fhs=fhs, fid=fid, other_fid=other["id"], sid=service["id"])

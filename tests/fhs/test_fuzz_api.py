"""Hostile input against the FHS API in process: no 5xx, and every error has the one error body shape.

Two parts: schemathesis cases generated from the FHS's own OpenAPI (valid and schema-violating) sent as a
FedAdmin member (Member API), as the operator (Operator API) and anonymously (public routes); then targeted
attacks a schema-driven fuzzer rarely produces: malformed JSON, wrong types, a 1 MB name, unknown ids,
odd unicode in path parameters, NaN in JSON.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from fhs.app import create_app
from fhs.ids import member_id
from fhs.settings import Settings
from tests.fhs import conftest as fhs_conftest
from tests.fhs.conftest import FHS_URL, EchoUpstream, FHSHarness, RunningFHS

MAX_EXAMPLES = 12
"""Per operation; keeps the whole module well under a minute on two cores."""
MAX_ERROR_BODY_BYTES = 16 * 1024
"""An error never echoes a huge input back."""

SCHEMA = schemathesis.openapi.from_dict(create_app(Settings(fhs_id="fhs-a", public_url=FHS_URL)).openapi())
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]


def _identity_of(path: str) -> str:
    if path.startswith("/operator/"):
        return "operator"
    if path.startswith("/member/"):
        return "fedadmin"
    return "anonymous"


@dataclass
class FuzzWorld:
    """A federation created by FedAdmin alice, with an attribute, a member and alice's echo service."""

    harness: FHSHarness
    fid: str
    sid: str

    def real_path_value(self, name: str) -> str | None:
        """A value for a path parameter that names something that exists."""
        return {
            "fid": self.fid,
            "sid": self.sid,
            "member_id": member_id(f"{self.harness.idp.issuer}#bob"),
            "name": "edge-users",
            "path": "echo/ping",
        }.get(name)


async def _expect(response: httpx.Response, status: int) -> Any:
    assert response.status_code == status, response.text
    return response.json()


async def _build_world(harness: FHSHarness, echo: EchoUpstream) -> FuzzWorld:
    c, alice = harness.client, harness.member("alice")
    await _expect(
        await c.post("/operator/v1/fedadmins", headers=harness.operator, json=harness.key("alice")), 201
    )
    fed = await _expect(await c.post("/member/v1/federations", headers=alice, json={"name": "fuzz"}), 201)
    fid = fed["id"]
    await _expect(
        await c.post(f"/member/v1/federations/{fid}/attributes", headers=alice, json={"name": "edge-users"}),
        201,
    )
    await _expect(
        await c.post(
            f"/member/v1/federations/{fid}/members",
            headers=alice,
            json={**harness.key("bob"), "attributes": ["edge-users"]},
        ),
        201,
    )
    service = await _expect(
        await c.post(
            f"/member/v1/federations/{fid}/services",
            headers=alice,
            json={
                "name": "echo",
                "type": "test.echo",
                "endpoint": echo.url,
                "access_policy": {"any_of": ["Member"]},
            },
        ),
        201,
    )
    return FuzzWorld(harness=harness, fid=fid, sid=service["id"])


def assert_error_contract(response: httpx.Response, method: str, label: str) -> None:
    """No 5xx; a 4xx carries ``{"error": {"code", "message"}}`` with a bounded size."""
    assert response.status_code < 500, f"{label}: HTTP {response.status_code}: {response.text[:500]}"
    if response.status_code < 400 or method.upper() == "HEAD":
        return
    assert len(response.content) <= MAX_ERROR_BODY_BYTES, f"{label}: {len(response.content)}-byte error body"
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, f"{label}: {response.text[:300]}"
    error = body["error"]
    assert isinstance(error.get("code"), str) and error["code"], f"{label}: {response.text[:300]}"
    assert isinstance(error.get("message"), str) and error["message"].strip(), (
        f"{label}: {response.text[:300]}"
    )


async def _send(client: httpx.AsyncClient, kwargs: dict[str, Any]) -> httpx.Response:
    request: dict[str, Any] = {
        "method": kwargs["method"],
        "url": kwargs["url"],
        "headers": kwargs.get("headers") or {},
        "params": kwargs.get("params") or None,
    }
    if "json" in kwargs:
        request["json"] = kwargs["json"]
    elif kwargs.get("data") is not None:
        request["content"] = kwargs["data"]
    return await client.request(**request)


def _strategy(operation: Any) -> Any:
    strategies = []
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        try:
            strategies.append(operation.as_strategy(generation_mode=mode))
        except Exception:  # noqa: BLE001  (some operations have nothing to make negative)
            continue
    return st.one_of(*strategies)


@pytest.mark.parametrize("operation", OPERATIONS, ids=[f"{op.method.upper()} {op.path}" for op in OPERATIONS])
async def test_generated_requests_get_no_5xx_and_one_error_shape(
    operation: Any, tmp_path: Any, idp: fhs_conftest.LocalIdP, echo_upstream: EchoUpstream
) -> None:
    label = f"{operation.method.upper()} {operation.path}"
    identity = _identity_of(operation.path)
    async with RunningFHS(tmp_path, idp, f"sqlite:///{tmp_path / 'fuzz.sqlite3'}") as harness:
        world = await _build_world(harness, echo_upstream)
        headers = {"operator": harness.operator, "fedadmin": harness.member("alice"), "anonymous": {}}[
            identity
        ]
        loop = asyncio.get_running_loop()

        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=_strategy(operation), use_real_ids=st.booleans())
        def check(case: Any, use_real_ids: bool) -> None:
            if use_real_ids:
                for name in list(case.path_parameters or {}):
                    value = world.real_path_value(name)
                    if value is not None:
                        case.path_parameters[name] = value
            kwargs = case.as_transport_kwargs(base_url=FHS_URL, headers=headers)
            future = asyncio.run_coroutine_threadsafe(_send(harness.client, kwargs), loop)
            response = future.result(timeout=30)
            assert_error_contract(response, kwargs["method"], f"{label} {kwargs['url'][:200]}")

        await asyncio.to_thread(check)


# --- targeted hostile input ------------------------------------------------------------------------


@pytest.fixture
async def hostile(fhs: FHSHarness, echo_upstream: EchoUpstream) -> FuzzWorld:
    return await _build_world(fhs, echo_upstream)


def _json_routes(w: FuzzWorld) -> list[tuple[str, str, dict[str, str]]]:
    h = w.harness
    alice = h.member("alice")
    return [
        ("PUT", "/operator/v1/issuers/extra", h.operator),
        ("POST", "/operator/v1/fedadmins", h.operator),
        ("POST", "/member/v1/federations", alice),
        ("POST", f"/member/v1/federations/{w.fid}/members", alice),
        ("POST", f"/member/v1/federations/{w.fid}/attributes", alice),
        ("POST", f"/member/v1/federations/{w.fid}/services", alice),
        ("PATCH", f"/member/v1/federations/{w.fid}/services/{w.sid}", alice),
    ]


BAD_BODIES = {
    "truncated JSON": b'{"name": "x"',
    "not JSON": b"name=x",
    "invalid UTF-8": b'{"name": "\xff\xfe"}',
    "empty body": b"",
    "a JSON list": b"[]",
    "a JSON string": b'"x"',
    "null": b"null",
    "name is a number": b'{"name": 123, "issuer": 1, "subject": 2, "type": 3, "endpoint": 4}',
    "name is a list": b'{"name": ["x"], "issuer": ["x"], "subject": {}, "endpoint": []}',
    "deep nesting": b'{"name": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
}


@pytest.mark.parametrize("kind", list(BAD_BODIES))
async def test_malformed_or_mistyped_json_is_a_4xx_with_a_message(hostile: FuzzWorld, kind: str) -> None:
    for method, path, headers in _json_routes(hostile):
        response = await hostile.harness.client.request(
            method, path, headers={**headers, "Content-Type": "application/json"}, content=BAD_BODIES[kind]
        )
        assert 400 <= response.status_code < 500, f"{kind} -> {method} {path}: {response.status_code}"
        assert_error_contract(response, method, f"{kind} -> {method} {path}")


async def test_a_one_megabyte_name_is_refused_without_echoing_it(hostile: FuzzWorld) -> None:
    huge = "n" * (1024 * 1024)
    client, alice = hostile.harness.client, hostile.harness.member("alice")
    bodies = [
        ("POST", "/member/v1/federations", {"name": huge}),
        ("POST", f"/member/v1/federations/{hostile.fid}/attributes", {"name": huge}),
        ("POST", f"/member/v1/federations/{hostile.fid}/members", {"issuer": huge, "subject": "x"}),
        ("PATCH", f"/member/v1/federations/{hostile.fid}/services/{hostile.sid}", {"name": huge}),
        (
            "POST",
            f"/member/v1/federations/{hostile.fid}/services",
            {"name": "x", "type": "test.echo", "endpoint": "http://127.0.0.1:9/", "metadata": {"k": huge}},
        ),
    ]
    for method, path, body in bodies:
        response = await client.request(method, path, headers=alice, json=body)
        assert response.status_code == 422, f"{method} {path}: {response.status_code}"
        assert_error_contract(response, method, f"{method} {path}")
        assert "at most" in response.json()["error"]["message"]
    response = await client.put(
        "/operator/v1/issuers/huge",
        headers=hostile.harness.operator,
        json={"issuer": huge, "jwks": {"keys": []}},
    )
    assert response.status_code == 422
    assert_error_contract(response, "PUT", "PUT issuer")


async def test_nan_and_infinity_are_refused_or_survive_a_read(hostile: FuzzWorld) -> None:
    """Python's JSON parser accepts NaN/Infinity; the FHS must not store what it cannot serialise later."""
    client, h = hostile.harness.client, hostile.harness
    response = await client.put(
        "/operator/v1/issuers/nan",
        headers={**h.operator, "Content-Type": "application/json"},
        content=b'{"issuer": "https://nan.test", "jwks": {"keys": [], "x": NaN}}',
    )
    assert response.status_code < 500, response.text
    assert_error_contract(response, "PUT", "PUT issuer with NaN")
    listing = await client.get("/operator/v1/issuers", headers=h.operator)
    assert listing.status_code == 200, listing.text
    response = await client.post(
        f"/member/v1/federations/{hostile.fid}/services",
        headers={**h.member("alice"), "Content-Type": "application/json"},
        content=b'{"name": "n", "type": "test.echo", "endpoint": "http://127.0.0.1:9/", '
        b'"metadata": {"x": Infinity}}',
    )
    assert response.status_code < 500, response.text
    assert_error_contract(response, "POST", "POST service with Infinity")
    listing = await client.get(f"/member/v1/federations/{hostile.fid}/services", headers=h.member("alice"))
    assert listing.status_code == 200, listing.text


UNKNOWN_OR_ODD = [
    "fed_0000000000000000",
    "svc_" + "A" * 40,
    "x" * 5000,
    "a%2fb",
    "%2e%2e",
    "\u202etxt.exe",
    "\u200b",
    "ｆｅｄ＿１",
    "😀",
    "a\u0301",
    "%7f",
    "%ff%fe",
    "%00",
    "null",
    "-1",
]


async def test_unknown_ids_and_odd_unicode_in_path_parameters_are_4xx(hostile: FuzzWorld) -> None:
    client, alice, operator = (
        hostile.harness.client,
        hostile.harness.member("alice"),
        hostile.harness.operator,
    )
    fid, sid = hostile.fid, hostile.sid
    for odd in UNKNOWN_OR_ODD:
        paths = [
            ("GET", f"/member/v1/federations/{odd}", alice),
            ("DELETE", f"/member/v1/federations/{odd}", alice),
            ("GET", f"/member/v1/federations/{fid}/services/{odd}", alice),
            ("GET", f"/member/v1/federations/{fid}/services/{odd}/invoke/x", alice),
            ("GET", f"/member/v1/federations/{fid}/services/{sid}/invoke/{odd}", alice),
            ("DELETE", f"/member/v1/federations/{fid}/members/{odd}", alice),
            ("PUT", f"/member/v1/federations/{fid}/members/{odd}/attributes/edge-users", alice),
            ("PUT", f"/member/v1/federations/{fid}/members/{member_id('x#y')}/attributes/{odd}", alice),
            ("DELETE", f"/member/v1/federations/{fid}/attributes/{odd}", alice),
            ("GET", f"/operator/v1/issuers/{odd}", operator),
            ("DELETE", f"/operator/v1/fedadmins/{odd}", operator),
        ]
        for method, path, headers in paths:
            response = await client.request(method, path, headers=headers)
            label = f"{method} {path[:120]!r}"
            if "/invoke/" in path and path.endswith(f"/{odd}") and sid in path:
                # A sub-path of a real service the caller may invoke goes to the upstream (the echo).
                assert response.status_code < 500, f"{label}: {response.status_code} {response.text[:300]}"
                continue
            assert 400 <= response.status_code < 500, f"{label}: {response.status_code} {response.text[:300]}"
            assert_error_contract(response, method, label)


async def test_wrong_query_parameter_types_are_422(hostile: FuzzWorld) -> None:
    client, alice = hostile.harness.client, hostile.harness.member("alice")
    queries = ("limit=abc", "limit=0", "limit=100000", "after=-1", "after=1e999", "after=" + "9" * 5000)
    for query in (*queries, f"after={2**63}"):  # one past SQLite's and Redis's largest integer
        response = await client.get(f"/member/v1/federations/{hostile.fid}/audit?{query}", headers=alice)
        assert response.status_code == 422, f"{query[:40]}: {response.status_code}"
        assert_error_contract(response, "GET", query[:40])
        operator = await client.get(f"/operator/v1/audit?{query}", headers=hostile.harness.operator)
        assert operator.status_code == 422, f"operator audit {query[:40]}: {operator.status_code}"
        assert (
            "after" in response.json()["error"]["message"] or "limit" in response.json()["error"]["message"]
        )


async def test_error_bodies_are_json_even_for_unknown_routes_and_methods(fhs: FHSHarness) -> None:
    for method, path in (("GET", "/nope"), ("DELETE", "/operator/v1/status"), ("PUT", "/healthz")):
        response = await fhs.client.request(method, path, headers=fhs.operator)
        assert response.status_code in (404, 405)
        assert_error_contract(response, method, f"{method} {path}")
    assert json.loads((await fhs.client.get("/nope")).text)["error"]["code"] == "not_found"

"""Property: a partition query never considers or plans a resource the member cannot discover AND invoke.

Real FHS (in process, SQLite), real Cedar policies from random attribute shorthands, real planner. The
resources are a small HTTP stand-in on loopback that serves `describe` and BenchmarkData only (this test is
about authorisation, not TensorFlow; the end-to-end flow with real models is tests/federation/).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scission_service.benchmark_data import BenchmarkData, BlockTiming, ResourceDescriptor
from tests.fhs.conftest import LocalIdP, RunningFHS, serve_in_thread

ATTRIBUTES = ["red", "green", "blue"]
TIERS = ["device", "edge", "cloud", "edge", "cloud", "device"]
DIGEST = "sha256:" + "ab" * 32


def _benchmark(index: int) -> BenchmarkData:
    tier = TIERS[index]
    speed = {"device": 1.0, "edge": 0.3, "cloud": 0.1}[tier] * (1 + index / 10)
    blocks = [
        BlockTiming(
            index=b,
            first_layer=2 * b,
            last_layer=2 * b + 1,
            median_s=speed * (b + 1) / 100,
            p10_s=0.0,
            p90_s=1.0,
            output_bytes=4000 // (b + 1),
        )
        for b in range(4)
    ]
    return BenchmarkData(
        resource=ResourceDescriptor(name=f"r{index}", tier=tier),
        model_name="m",
        model_digest=DIGEST,
        input_bytes=8000,
        blocks=blocks,
    )


async def _stand_in(scope: dict[str, Any], receive: Any, send: Any) -> None:
    index = int(scope["path"].split("/")[2])
    if scope["path"].endswith("/describe"):
        body = {"name": f"r{index}", "tier": TIERS[index], "models": [{"name": "m", "digest": DIGEST}]}
        payload = json.dumps(body).encode()
    else:
        payload = _benchmark(index).model_dump_json().encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": payload})


@pytest.fixture(scope="module")
def resources_url() -> Iterator[str]:
    with serve_in_thread(_stand_in) as base:
        yield f"{base}/r"


@pytest.fixture(scope="module")
def idp() -> LocalIdP:
    return LocalIdP()


policy = st.lists(st.sampled_from(ATTRIBUTES), min_size=1, max_size=2, unique=True)
resource_policies = st.lists(st.tuples(policy, policy), min_size=len(TIERS), max_size=len(TIERS))
member_attributes = st.lists(st.sampled_from(ATTRIBUTES), max_size=3, unique=True)


async def _scenario(
    base: Path, idp: LocalIdP, url: str, policies: list[tuple[list[str], list[str]]], attributes: list[str]
) -> None:
    async with RunningFHS(base, idp, "") as fhs:
        c, alice = fhs.client, fhs.member("alice")
        assert (
            await c.post("/operator/v1/fedadmins", headers=fhs.operator, json=fhs.key("alice"))
        ).status_code == 201
        fid = (await c.post("/member/v1/federations", headers=alice, json={"name": "p"})).json()["id"]
        for name in ATTRIBUTES:
            await c.post(f"/member/v1/federations/{fid}/attributes", headers=alice, json={"name": name})
        await c.post(
            f"/member/v1/federations/{fid}/members",
            headers=alice,
            json={**fhs.key("mia"), "attributes": attributes},
        )
        allowed = set()
        for index, (discover, access) in enumerate(policies):
            response = await c.post(
                f"/member/v1/federations/{fid}/services",
                headers=alice,
                json={
                    "name": f"r{index}",
                    "type": "scission.resource",
                    "endpoint": f"{url}/{index}",
                    "metadata": {"tier": TIERS[index]},
                    "discovery_policy": {"any_of": discover},
                    "access_policy": {"any_of": access},
                },
            )
            assert response.status_code == 201, response.text
            if set(attributes) & set(discover) and set(attributes) & set(access):
                allowed.add(response.json()["id"])
        response = await c.post(
            f"/member/v1/federations/{fid}/partition-queries",
            headers=fhs.member("mia"),
            json={"model": "m", "query": {"top": 10, "max_hops": 3}},
        )
        assert response.status_code == 201, response.text
        answer = response.json()
        considered = {r["id"] for r in answer["considered"]}
        assert considered == allowed
        planned = {s["resource"] for p in (answer["result"] or {}).get("plans", []) for s in p["segments"]}
        assert planned <= allowed
        if allowed and answer["result"]["feasible"]:
            assert planned, "a feasible answer plans on the allowed resources"


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(policies=resource_policies, attributes=member_attributes)
def test_only_resources_the_member_may_discover_and_invoke_are_considered_or_planned(
    resources_url: str, idp: LocalIdP, policies: list[tuple[list[str], list[str]]], attributes: list[str]
) -> None:
    with tempfile.TemporaryDirectory() as base:
        asyncio.run(_scenario(Path(base), idp, resources_url, policies, attributes))


async def _revocation(base: Path, idp: LocalIdP, url: str) -> None:
    async with RunningFHS(base, idp, "") as fhs:
        c, alice = fhs.client, fhs.member("alice")
        await c.post("/operator/v1/fedadmins", headers=fhs.operator, json=fhs.key("alice"))
        fid = (await c.post("/member/v1/federations", headers=alice, json={"name": "p"})).json()["id"]
        await c.post(f"/member/v1/federations/{fid}/attributes", headers=alice, json={"name": "red"})
        mia = (
            await c.post(
                f"/member/v1/federations/{fid}/members",
                headers=alice,
                json={**fhs.key("mia"), "attributes": ["red"]},
            )
        ).json()
        ids = []
        for index in (0, 1):
            response = await c.post(
                f"/member/v1/federations/{fid}/services",
                headers=alice,
                json={
                    "name": f"r{index}",
                    "type": "scission.resource",
                    "endpoint": f"{url}/{index}",
                    "discovery_policy": {"template": "all-members"},
                    "access_policy": {"any_of": ["red"]} if index else {"template": "all-members"},
                },
            )
            ids.append(response.json()["id"])

        async def considered() -> set[str]:
            response = await c.post(
                f"/member/v1/federations/{fid}/partition-queries",
                headers=fhs.member("mia"),
                json={"model": "m"},
            )
            return {r["id"] for r in response.json()["considered"]}

        assert await considered() == set(ids)
        await c.delete(f"/member/v1/federations/{fid}/members/{mia['id']}/attributes/red", headers=alice)
        assert await considered() == {ids[0]}


def test_revoking_an_attribute_removes_the_resource_from_the_next_answer(
    resources_url: str, idp: LocalIdP
) -> None:
    with tempfile.TemporaryDirectory() as base:
        asyncio.run(_revocation(Path(base), idp, resources_url))

"""Metrics, request ids and JSON logs (issue 6 observability)."""

from __future__ import annotations

import json
import logging
from typing import Any

from fhs.observability import REQUEST_ID, JsonFormatter
from tests.fhs.conftest import LocalIdP, RunningFHS, World


def _metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_metrics_count_requests_by_route_and_policy_decisions(world: World) -> None:
    c = world.fhs.client
    before = (await c.get("/metrics")).text
    await c.get(f"/member/v1/federations/{world.fid}/services", headers=world.headers("dave"))
    after = (await c.get("/metrics")).text
    route = "/member/v1/federations/{fid}/services"
    assert (
        _metric(after, "fedscission_http_requests_total", route=route, status="200")
        == _metric(before, "fedscission_http_requests_total", route=route, status="200") + 1
    )
    assert _metric(after, "fhs_policy_decisions_total", action="discover", decision="deny") > _metric(
        before, "fhs_policy_decisions_total", action="discover", decision="deny"
    )


async def test_the_request_id_is_returned_and_follows_the_call_upstream(
    world: World, echo_upstream: Any
) -> None:
    c = world.fhs.client
    path = f"/member/v1/federations/{world.fid}/services/{world.sid}/invoke/x"
    response = await c.get(path, headers={**world.headers("carol"), "X-Request-Id": "trace-42"})
    assert response.headers["x-request-id"] == "trace-42"
    assert response.json()["headers"]["x-request-id"] == "trace-42"
    forged = await c.get(path, headers={**world.headers("carol"), "X-Request-Id": "bad id\twith tab"})
    assert forged.headers["x-request-id"] != "bad id\twith tab" and len(forged.headers["x-request-id"]) == 32


def test_log_lines_are_json_with_the_request_id() -> None:
    token = REQUEST_ID.set("trace-7")
    try:
        record = logging.LogRecord(
            "fhs", logging.WARNING, __file__, 1, "peer %s unreachable", ("fhs-b",), None
        )
        line = json.loads(JsonFormatter().format(record))
    finally:
        REQUEST_ID.reset(token)
    assert line["request_id"] == "trace-7" and line["message"] == "peer fhs-b unreachable"
    assert line["level"] == "WARNING"


async def test_a_metrics_token_closes_metrics_to_everyone_else(
    tmp_path: Any, idp: LocalIdP, store_url: str
) -> None:
    harness = RunningFHS(tmp_path, idp, store_url)
    harness.settings = harness.settings.model_copy(update={"metrics_token": "scrape-secret"})
    async with harness as fhs:
        c = fhs.client
        for headers in ({}, {"Authorization": "Bearer wrong"}, fhs.operator, fhs.member("alice")):
            response = await c.get("/metrics", headers=headers)
            assert response.status_code == 401, response.text
            assert "FHS_METRICS_TOKEN" in response.json()["error"]["message"]
        scraped = await c.get("/metrics", headers={"Authorization": "Bearer scrape-secret"})
        assert scraped.status_code == 200 and "fedscission_http_requests_total" in scraped.text


async def test_replication_gauges_are_recomputed_at_most_every_few_seconds(world: World) -> None:
    runtime = world.fhs.runtime
    calls = 0
    status = runtime.replication.status

    async def counted() -> Any:
        nonlocal calls
        calls += 1
        return await status()

    runtime.replication.status = counted
    for _ in range(20):  # a flood of scrapes reads every federation's status once, not 20 times
        assert (await world.fhs.client.get("/metrics")).status_code == 200
    assert calls <= 2  # once, or twice should the 20 scrapes straddle the 5 s window on a slow machine

"""Request budgets: a member who floods the FHS gets 429 with Retry-After; other callers are unaffected."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from fhs.errors import RateLimited
from fhs.ratelimit import RateLimits
from fhs.settings import Settings
from tests.fhs.conftest import LocalIdP, RunningFHS, ok


async def test_a_member_over_budget_gets_429_with_retry_after(
    tmp_path: Any, idp: LocalIdP, store_url: str
) -> None:
    harness = RunningFHS(tmp_path, idp, store_url)
    harness.settings = harness.settings.model_copy(
        update={"rate_limit_member": "5/minute", "rate_limit_planning": "2/minute"}
    )
    async with harness as fhs:
        c, alice, bob = fhs.client, fhs.member("alice"), fhs.member("bob")
        for _ in range(5):
            await ok(await c.get("/member/v1/federations", headers=alice))
        response = await c.get("/member/v1/federations", headers=alice)
        assert response.status_code == 429
        error = response.json()["error"]
        assert error["code"] == "rate_limited" and "member budget is 5 per 60 s" in error["message"]
        assert 1 <= int(response.headers["Retry-After"]) <= 60
        assert error["details"]["retry_after_s"] == int(response.headers["Retry-After"])
        # Another member has a budget of its own; the operator is not a member and is not charged.
        await ok(await c.get("/member/v1/federations", headers=bob))
        await ok(await c.get("/operator/v1/status", headers=fhs.operator))

        # Partition queries and plan executions also spend the (smaller) planning budget.
        query = "/member/v1/federations/fed_0000000000000000/partition-queries"
        for _ in range(2):
            assert (await c.post(query, headers=bob, json={"model": "m"})).status_code != 429
        response = await c.post(query, headers=bob, json={"model": "m"})
        assert response.status_code == 429 and "planning budget is 2 per 60 s" in response.text
        # ...while bob's ordinary calls go on (his member budget has room).
        await ok(await c.get("/member/v1/federations", headers=bob))


async def test_budgets_are_per_kind_and_per_caller() -> None:
    limits = RateLimits(member="2/minute", planning="1/minute", peer="3/hour")
    for _ in range(3):
        await limits.spend("peer", "fhs-b")
    with pytest.raises(RateLimited, match="peer budget is 3 per 3600 s") as refused:
        await limits.spend("peer", "fhs-b")
    assert 1 <= refused.value.details["retry_after_s"] <= 3600
    await limits.spend("peer", "fhs-c")
    await limits.spend("member", "fhs-b")  # the same name under another budget


@pytest.mark.parametrize("bad", ["", "lots", "10 per fortnight", "-1/minute"])
def test_a_malformed_budget_stops_start_up_with_the_syntax(bad: str) -> None:
    with pytest.raises(ValidationError, match="use '<count>/<second|minute|hour|day>'"):
        Settings(rate_limit_peer=bad)

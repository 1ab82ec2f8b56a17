"""Request budgets per authenticated caller (the ``limits`` library, sliding window counters in memory).

Three budgets, each a ``limits`` string such as ``"3000/minute"`` from the settings: every Member API call of
one member (``member``); the expensive member calls that fan out to resources — partition queries and plan
executions — on top (``planning``); every FHS-FHS call of one peer FHS (``peer``). Callers are counted only
after they authenticated, so an anonymous flood cannot fill the table. Counters live in the process: behind
a load balancer with N replicas a caller may get up to N times its budget.
"""

from __future__ import annotations

import math
import time
from typing import Literal

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from fhs.errors import RateLimited

Budget = Literal["member", "planning", "peer"]


def parse_budget(text: str) -> RateLimitItem:
    """A ``limits`` rate string (e.g. ``"3000/minute"``, ``"10/second"``); ValueError with the reason."""
    try:
        return parse(text)
    except ValueError:
        raise ValueError(
            f"invalid rate limit {text!r}: use '<count>/<second|minute|hour|day>', e.g. '3000/minute'"
        ) from None


class RateLimits:
    """The process's request budgets; :meth:`spend` raises :class:`RateLimited` (429) when one is used up."""

    def __init__(self, *, member: str, planning: str, peer: str) -> None:
        self._items: dict[Budget, RateLimitItem] = {
            "member": parse_budget(member),
            "planning": parse_budget(planning),
            "peer": parse_budget(peer),
        }
        self._limiter = SlidingWindowCounterRateLimiter(MemoryStorage())

    async def spend(self, budget: Budget, caller: str) -> None:
        """Count one request of ``caller`` against ``budget``."""
        item = self._items[budget]
        if await self._limiter.hit(item, budget, caller):
            return
        stats = await self._limiter.get_window_stats(item, budget, caller)
        retry_after_s = max(1, math.ceil(stats.reset_time - time.time()))
        raise RateLimited(
            f"too many requests: the {budget} budget is {item.amount} per {item.get_expiry()} s; "
            f"retry in {retry_after_s} s",
            retry_after_s=retry_after_s,
        )

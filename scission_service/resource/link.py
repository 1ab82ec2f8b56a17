"""Optional link emulation: make measured tensor transfer times follow a declared network profile.

A node with a :class:`~scission_service.resource.settings.LinkProfile` delays each segment request by
``latency_s + bytes / bandwidth_bytes_per_s`` for the tensor bytes it receives (``receive``/``both``) and/or
sends back (``send``/``both``), with ``asyncio.sleep`` (the event loop keeps serving other requests). The
delay is added on top of the real transfer time, which on loopback is close to zero. See
``docs/resource-service.md`` for how this composes with plan execution.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from scission_service.resource.settings import LinkProfile


class LinkEmulator:
    """Applies one node's link profile to the tensor bytes of segment requests."""

    def __init__(
        self, profile: LinkProfile | None, *, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    ) -> None:
        self.profile = profile
        self._sleep = sleep

    def delay_s(self, nbytes: int) -> float:
        """Seconds one transfer of ``nbytes`` takes on this link (0 without a profile)."""
        if self.profile is None:
            return 0.0
        return self.profile.latency_s + nbytes / self.profile.bandwidth_bytes_per_s

    async def received(self, nbytes: int) -> float:
        """Delay for ``nbytes`` received, if the profile shapes the downlink; return the seconds slept."""
        if self.profile is None or self.profile.direction == "send":
            return 0.0
        return await self._wait(self.delay_s(nbytes))

    async def sending(self, nbytes: int) -> float:
        """Delay before sending ``nbytes``, if the profile shapes the uplink; return the seconds slept."""
        if self.profile is None or self.profile.direction == "receive":
            return 0.0
        return await self._wait(self.delay_s(nbytes))

    async def _wait(self, seconds: float) -> float:
        if seconds > 0:
            await self._sleep(seconds)
        return seconds

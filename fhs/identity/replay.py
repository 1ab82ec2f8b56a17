"""Single-use token ids (``jti``): remember each until its token expires, refuse a second use.

Two guards with one interface: :class:`MemoryReplayGuard` for one process, and :class:`StoreReplayGuard`,
which keeps the ids in a :class:`fhs.store.base.Store` so that every process sharing the store (FHS replicas
on one Redis, a resource node's replicas or restarts on one SQLite file or Redis) refuses a replay.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

from fhs.errors import Conflict
from fhs.store.base import Delete, Put, Store


class ReplayGuard(Protocol):
    """Remembers token ids until they expire."""

    async def first_use(self, key: str, exp: float) -> bool:
        """True the first time ``key`` is presented (it is then remembered until ``exp`` plus leeway)."""
        ...


class MemoryReplayGuard:
    """A :class:`ReplayGuard` in this process only: a restart or another replica forgets what it saw."""

    def __init__(self, *, leeway: float = 30, clock: Callable[[], float] = time.time) -> None:
        self._seen: dict[str, float] = {}
        self._leeway = leeway
        self._clock = clock
        self._lock = threading.Lock()

    async def first_use(self, key: str, exp: float) -> bool:
        """True the first time ``key`` is presented."""
        now = self._clock()
        with self._lock:
            if len(self._seen) > 1024:
                self._seen = {k: v for k, v in self._seen.items() if v > now}
            if key in self._seen and self._seen[key] > now:
                return False
            self._seen[key] = exp + self._leeway
            return True


class StoreReplayGuard:
    """A :class:`ReplayGuard` in a store collection, shared by every process using that store.

    A first use is one conditional write (``if_absent``, without a disk flush of its own: losing the last
    ids needs a power cut within a token's lifetime). Expired ids are deleted by :meth:`purge`, which runs
    by itself every ``purge_every`` first uses and may also be called on a timer.
    """

    def __init__(
        self,
        store: Store,
        collection: str,
        *,
        leeway: float = 30,
        purge_every: int = 1000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._collection = collection
        self._leeway = leeway
        self._purge_every = purge_every
        self._clock = clock
        self._uses = 0

    async def first_use(self, key: str, exp: float) -> bool:
        """True the first time ``key`` is presented to any process sharing the store."""
        try:
            await self._store.write(
                [Put(self._collection, key, {"exp": exp + self._leeway}, if_absent=True)], durable=False
            )
        except Conflict:
            return False
        self._uses += 1
        if self._uses % self._purge_every == 0:
            await self.purge()
        return True

    async def purge(self) -> int:
        """Forget the ids whose tokens have expired; return how many."""
        now = self._clock()
        expired = [
            Delete(self._collection, doc.key)
            for doc in await self._store.list(self._collection)
            if float(doc.value.get("exp", 0)) < now
        ]
        if expired:
            await self._store.write(expired, durable=False)
        return len(expired)

"""The Store interface every FHS component persists through.

A store holds JSON documents in named *collections* (``key -> dict``) and append-only *logs*
(``seq -> dict``, seq starting at 1 and increasing by one per log). All writes go through
:meth:`Store.write`, which applies a batch of operations atomically: either every operation is applied
or none is (no half-applied changes), and conditional operations (``Put(if_absent=True)``,
``Delete(must_exist=True)``, ``Put(if_version=n)``) make the whole batch fail with
:class:`fhs.errors.Conflict` when their condition does not hold. Several FHS processes sharing one
Redis see one consistent store.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Put:
    """Store ``value`` under ``collection/key``.

    ``if_absent``: fail the batch if the key exists. ``if_version``: fail unless the stored document's
    version equals it (0 = absent). Every document has a version that increases by one per Put.
    """

    collection: str
    key: str
    value: dict[str, Any]
    if_absent: bool = False
    if_version: int | None = None


@dataclass(frozen=True)
class Delete:
    """Remove ``collection/key``; with ``must_exist`` the batch fails if it is absent."""

    collection: str
    key: str
    must_exist: bool = False


@dataclass(frozen=True)
class Append:
    """Append ``entry`` to ``log``; the entry's sequence number is returned by ``write``."""

    log: str
    entry: dict[str, Any]


@dataclass(frozen=True)
class Expect:
    """Fail the batch unless ``collection/key`` is at ``version`` (0 = absent). Writes nothing."""

    collection: str
    key: str
    version: int


Op = Put | Delete | Append | Expect


@dataclass(frozen=True)
class Document:
    """A stored document with its version."""

    key: str
    value: dict[str, Any]
    version: int


@dataclass(frozen=True)
class LogEntry:
    """One entry of an append-only log."""

    seq: int
    entry: dict[str, Any] = field(default_factory=dict)


class Store(Protocol):
    """Async persistence for the FHS. Implementations: SQLite (embedded) and Redis."""

    async def get(self, collection: str, key: str) -> Document | None:
        """The document at ``collection/key`` or None."""
        ...

    async def list(self, collection: str) -> builtins.list[Document]:
        """Every document of ``collection``, ordered by key."""
        ...

    async def write(self, ops: Sequence[Op], *, durable: bool = True) -> builtins.list[int]:
        """Apply ``ops`` atomically; return the sequence numbers of the ``Append`` ops in order.

        Raises :class:`fhs.errors.Conflict` (and writes nothing) when a condition fails. ``durable=False``
        allows the backend to skip flushing to disk for this batch (still atomic, and safe against a crash
        of the process, but the last such batches may be lost on power loss): for audit entries, never for
        federation events.
        """
        ...

    async def read_log(self, log: str, *, after: int = 0, limit: int = 1000) -> builtins.list[LogEntry]:
        """Entries of ``log`` with ``seq > after``, oldest first, at most ``limit``."""
        ...

    async def log_length(self, log: str) -> int:
        """The highest sequence number of ``log`` (0 when empty)."""
        ...

    async def trim_log(self, log: str, *, keep_last: int) -> int:
        """Delete the oldest entries of ``log`` so at most ``keep_last`` (>= 1) remain; return how many went.

        Sequence numbers are never reused: ``log_length`` and the seqs of later appends are unchanged, and
        ``read_log(after=0)`` starts at the oldest entry kept. For bounded logs (audit), never event logs.
        """
        ...

    async def ping(self) -> bool:
        """True when the backend answers."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...

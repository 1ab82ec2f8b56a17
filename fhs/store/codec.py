"""What both store backends share: name and op validation, JSON encoding, the conflict error.

Keeping these in one place is what makes SQLite and Redis behave identically for the same input.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from fhs.errors import Conflict, InvalidInput
from fhs.store.base import Append, Delete, Expect, Op, Put

MAX_NAME_CHARS = 1024
"""Longest collection, key or log name accepted (names end up in SQL rows and Redis key names)."""


def check_name(kind: str, name: object) -> str:
    """Return ``name`` if it is a usable collection/key/log name, else raise :class:`InvalidInput`."""
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"store {kind} must be a non-empty string, got {type(name).__name__}")
    if len(name) > MAX_NAME_CHARS:
        raise InvalidInput(f"store {kind} is longer than {MAX_NAME_CHARS} characters")
    if "\x00" in name:
        raise InvalidInput(f"store {kind} must not contain NUL characters")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"store {kind} is not valid Unicode text (lone surrogate)") from None
    return name


def encode_value(value: object, where: str) -> str:
    """Serialise a document or log entry to compact ASCII JSON (lone surrogates survive as escapes)."""
    if not isinstance(value, dict):
        raise InvalidInput(f"value for {where} must be a JSON object (dict), got {type(value).__name__}")
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidInput(f"value for {where} is not JSON-serialisable: {exc}") from None


def decode_value(text: str | bytes) -> dict[str, Any]:
    """Parse a stored JSON object."""
    value = json.loads(text)
    if not isinstance(value, dict):  # only ever written by encode_value
        raise ValueError("stored value is not a JSON object")
    return value


def _check_version(name: str, version: object) -> int:
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise InvalidInput(f"{name} must be an integer >= 0, got {version!r}")
    return version


def validate_ops(ops: Sequence[Op]) -> list[Op]:
    """Check every op before any I/O so a malformed batch never reaches the backend."""
    if isinstance(ops, (str, bytes)) or not isinstance(ops, Sequence):
        raise InvalidInput("write() takes a sequence of Put/Delete/Append/Expect operations")
    checked: list[Op] = []
    for index, op in enumerate(ops):
        if isinstance(op, Put):
            check_name("collection", op.collection)
            check_name("key", op.key)
            if op.if_version is not None:
                _check_version("Put.if_version", op.if_version)
        elif isinstance(op, Delete):
            check_name("collection", op.collection)
            check_name("key", op.key)
        elif isinstance(op, Append):
            check_name("log", op.log)
        elif isinstance(op, Expect):
            check_name("collection", op.collection)
            check_name("key", op.key)
            _check_version("Expect.version", op.version)
        else:
            raise InvalidInput(f"operation #{index} is a {type(op).__name__}, not Put/Delete/Append/Expect")
        checked.append(op)
    return checked


def check_read_window(after: object, limit: object) -> tuple[int, int]:
    """Validate ``read_log`` paging arguments."""
    if isinstance(after, bool) or not isinstance(after, int) or after < 0:
        raise InvalidInput(f"read_log 'after' must be an integer >= 0, got {after!r}")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise InvalidInput(f"read_log 'limit' must be an integer >= 0, got {limit!r}")
    return after, limit


def check_keep_last(keep_last: object) -> int:
    """Validate ``trim_log``'s ``keep_last`` (at least one entry stays, so seqs continue from it)."""
    if isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 1:
        raise InvalidInput(f"trim_log 'keep_last' must be an integer >= 1, got {keep_last!r}")
    return keep_last


def failed_condition(op: Op, current_version: int) -> str | None:
    """Why ``op`` may not be applied when its document is at ``current_version`` (0 = absent), or None."""
    if isinstance(op, Put):
        if op.if_absent and current_version != 0:
            return "document already exists"
        if op.if_version is not None and op.if_version != current_version:
            return "document version differs"
    elif isinstance(op, Delete):
        if op.must_exist and current_version == 0:
            return "document does not exist"
    elif isinstance(op, Expect) and op.version != current_version:
        return "document version differs"
    return None


def conflict(index: int, op: Op, current_version: int, reason: str) -> Conflict:
    """The :class:`Conflict` raised when op ``index`` of a batch fails its condition (nothing written)."""
    assert not isinstance(op, Append)
    expected: int | None
    if isinstance(op, Put):
        expected = 0 if op.if_absent else op.if_version
    elif isinstance(op, Expect):
        expected = op.version
    else:
        expected = None
    return Conflict(
        f"write conflict on {op.collection}/{op.key}: {reason}; nothing was written",
        op_index=index,
        collection=op.collection,
        key=op.key,
        expected_version=expected,
        actual_version=current_version,
    )

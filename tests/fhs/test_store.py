"""One behavioural suite, run against both store backends (SQLite file and a real redis-server)."""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import sys
import textwrap
from pathlib import Path

import pytest

from fhs.errors import Conflict, InvalidInput
from fhs.store import Append, Delete, Expect, Op, Put, Store, open_store
from fhs.store.redis import RedisStore
from fhs.store.sqlite import SQLiteStore

REPO_ROOT = Path(__file__).resolve().parents[2]


async def increment(store: Store, key: str, *, log: str | None = None) -> None:
    """Read-modify-write a counter with if_version, retrying on Conflict (optionally logging it)."""
    while True:
        doc = await store.get("counters", key)
        count = 0 if doc is None else doc.value["n"]
        ops: list[Put | Append] = [
            Put("counters", key, {"n": count + 1}, if_version=doc.version if doc else 0)
        ]
        if log is not None:
            ops.append(Append(log, {"n": count + 1}))
        try:
            await store.write(ops)
            return
        except Conflict:
            await asyncio.sleep(0)


# -- documents --------------------------------------------------------------------------------------


async def test_put_get_and_list_ordered_by_key(store: Store) -> None:
    await store.write([Put("fed", key, {"name": key}) for key in ["b", "a", "c", "B", "é", "aa"]])
    await store.write([Put("other", "a", {"name": "elsewhere"})])

    doc = await store.get("fed", "a")
    assert doc is not None and doc.value == {"name": "a"} and doc.key == "a"
    assert await store.get("fed", "missing") is None
    assert await store.get("empty", "a") is None
    assert [d.key for d in await store.list("fed")] == ["B", "a", "aa", "b", "c", "é"]
    assert [d.value for d in await store.list("other")] == [{"name": "elsewhere"}]
    assert await store.list("empty") == []


async def test_versions_increase_by_one_per_put(store: Store) -> None:
    for expected in (1, 2, 3):
        await store.write([Put("c", "k", {"v": expected})])
        doc = await store.get("c", "k")
        assert doc is not None and doc.version == expected and doc.value == {"v": expected}

    await store.write([Delete("c", "k")])
    assert await store.get("c", "k") is None
    await store.write([Put("c", "k", {"v": "again"}, if_absent=True)])
    doc = await store.get("c", "k")
    assert doc is not None and doc.version == 1  # a re-created document starts over


async def test_delete_of_absent_key_is_fine_without_must_exist(store: Store) -> None:
    assert await store.write([Delete("c", "nothing")]) == []
    assert await store.write([]) == []


# -- conditions and atomicity -----------------------------------------------------------------------


async def _assert_nothing_written(store: Store) -> None:
    assert await store.get("c", "new") is None
    assert await store.log_length("audit") == 0
    existing = await store.get("c", "existing")
    assert existing is not None and existing.value == {"original": True} and existing.version == 1


@pytest.mark.parametrize(
    ("failing_op", "expected", "actual"),
    [
        (Put("c", "existing", {"x": 1}, if_absent=True), 0, 1),
        (Put("c", "existing", {"x": 1}, if_version=7), 7, 1),
        (Put("c", "ghost", {"x": 1}, if_version=1), 1, 0),
        (Delete("c", "ghost", must_exist=True), None, 0),
        (Expect("c", "existing", 2), 2, 1),
        (Expect("c", "existing", 0), 0, 1),
    ],
    ids=["if_absent", "if_version", "if_version-absent", "must_exist", "expect", "expect-absent"],
)
async def test_failed_condition_at_end_of_batch_writes_nothing(
    store: Store, failing_op: Put | Delete | Expect, expected: int | None, actual: int
) -> None:
    await store.write([Put("c", "existing", {"original": True})])
    batch: list[Op] = [Put("c", "new", {"x": 1}), Append("audit", {"action": "create"}), failing_op]

    with pytest.raises(Conflict) as info:
        await store.write(batch)

    assert info.value.details["op_index"] == 2
    assert info.value.details["expected_version"] == expected
    assert info.value.details["actual_version"] == actual
    assert "nothing was written" in info.value.message
    await _assert_nothing_written(store)


async def test_conflict_after_deletes_and_overwrites_rolls_all_back(store: Store) -> None:
    await store.write([Put("c", "existing", {"original": True})])
    with pytest.raises(Conflict):
        await store.write(
            [
                Put("c", "new", {"x": 1}),
                Append("audit", {"action": "create"}),
                Put("c", "existing", {"overwritten": True}),
                Delete("c", "existing"),
                Append("audit", {"action": "delete"}),
                Expect("c", "existing", 1),  # was deleted earlier in this batch, so it is at 0
            ]
        )
    await _assert_nothing_written(store)


async def test_conditions_see_earlier_ops_of_the_same_batch(store: Store) -> None:
    await store.write(
        [
            Put("c", "k", {"step": 1}, if_absent=True),
            Put("c", "k", {"step": 2}, if_version=1),
            Expect("c", "k", 2),
            Delete("c", "gone", must_exist=False),
        ]
    )
    doc = await store.get("c", "k")
    assert doc is not None and doc.value == {"step": 2} and doc.version == 2

    await store.write(
        [Delete("c", "k", must_exist=True), Expect("c", "k", 0), Put("c", "k", {}, if_absent=True)]
    )
    doc = await store.get("c", "k")
    assert doc is not None and doc.version == 1


async def test_successful_expect_writes_nothing_itself(store: Store) -> None:
    await store.write([Put("c", "k", {"a": 1})])
    await store.write([Expect("c", "k", 1), Put("c", "other", {"b": 2})])
    doc = await store.get("c", "k")
    assert doc is not None and doc.version == 1 and doc.value == {"a": 1}
    assert [d.key for d in await store.list("c")] == ["k", "other"]


# -- logs -------------------------------------------------------------------------------------------


async def test_append_numbers_each_log_from_one(store: Store) -> None:
    assert await store.log_length("a") == 0
    assert await store.read_log("a") == []
    assert await store.write([Append("a", {"i": 1})]) == [1]
    assert await store.write([Append("a", {"i": 2}), Append("b", {"i": 1}), Append("a", {"i": 3})]) == [
        2,
        1,
        3,
    ]
    for i in range(4, 11):
        assert await store.write([Append("a", {"i": i})]) == [i]

    assert await store.log_length("a") == 10
    assert await store.log_length("b") == 1
    entries = await store.read_log("a")
    assert [e.seq for e in entries] == list(range(1, 11))
    assert [e.entry["i"] for e in entries] == list(range(1, 11))
    assert [e.seq for e in await store.read_log("a", after=3, limit=4)] == [4, 5, 6, 7]
    assert [e.seq for e in await store.read_log("a", after=8)] == [9, 10]
    assert await store.read_log("a", after=10) == []
    assert await store.read_log("a", after=50, limit=5) == []
    assert await store.read_log("a", limit=0) == []
    assert [(e.seq, e.entry) for e in await store.read_log("b")] == [(1, {"i": 1})]


async def test_trim_log_drops_the_oldest_and_never_reuses_a_seq(store: Store) -> None:
    await store.write([Append("a", {"i": i}) for i in range(1, 11)])
    await store.write([Append("b", {"i": 1})])
    assert await store.trim_log("a", keep_last=20) == 0
    assert await store.trim_log("a", keep_last=4) == 6
    assert await store.trim_log("a", keep_last=4) == 0
    assert await store.log_length("a") == 10
    assert [(e.seq, e.entry["i"]) for e in await store.read_log("a")] == [(7, 7), (8, 8), (9, 9), (10, 10)]
    assert [e.seq for e in await store.read_log("a", after=3, limit=2)] == [7, 8]
    assert [e.seq for e in await store.read_log("a", after=8)] == [9, 10]
    # Appends continue the numbering, in a batch with another log too.
    assert await store.write([Append("a", {"i": 11}), Append("b", {"i": 2})]) == [11, 2]
    assert await store.trim_log("a", keep_last=1) == 4
    assert [(e.seq, e.entry["i"]) for e in await store.read_log("a")] == [(11, 11)]
    assert await store.log_length("a") == 11
    assert await store.write([Append("a", {"i": 12})]) == [12]
    # Other logs are untouched; trimming an empty log is fine.
    assert [e.seq for e in await store.read_log("b")] == [1, 2]
    assert await store.trim_log("empty", keep_last=1) == 0
    assert await store.log_length("empty") == 0


@pytest.mark.parametrize("keep_last", [0, -1, True, 2.5, "3"])
async def test_trim_log_keeps_at_least_one_entry(store: Store, keep_last: object) -> None:
    await store.write([Append("a", {"i": 1}), Append("a", {"i": 2})])
    with pytest.raises(InvalidInput, match="keep_last"):
        await store.trim_log("a", keep_last=keep_last)  # type: ignore[arg-type]
    assert await store.log_length("a") == 2


@pytest.mark.parametrize(("after", "limit"), [(-1, 10), (0, -1), ("0", 10), (0, 2.5)])
async def test_read_log_rejects_bad_window(store: Store, after: object, limit: object) -> None:
    await store.write([Append("a", {"i": 1})])
    with pytest.raises(InvalidInput):
        await store.read_log("a", after=after, limit=limit)  # type: ignore[arg-type]


# -- concurrency and sharing ------------------------------------------------------------------------


async def test_concurrent_if_version_increments_lose_no_update(store_url: str) -> None:
    first, second = open_store(store_url), open_store(store_url)
    try:
        await asyncio.gather(*(increment(first if i % 2 else second, "hits", log="hits") for i in range(50)))
        doc = await first.get("counters", "hits")
        assert doc is not None and doc.value == {"n": 50} and doc.version == 50
        assert [e.entry["n"] for e in await second.read_log("hits", limit=100)] == list(range(1, 51))
    finally:
        await first.close()
        await second.close()


async def test_two_instances_on_one_store_see_each_others_writes(store_url: str) -> None:
    first, second = open_store(store_url), open_store(store_url)
    try:
        await first.write([Put("fed", "f1", {"owner": "alice"}), Append("audit", {"by": "first"})])
        doc = await second.get("fed", "f1")
        assert doc is not None and doc.value == {"owner": "alice"}
        await second.write(
            [Put("fed", "f1", {"owner": "bob"}, if_version=1), Append("audit", {"by": "second"})]
        )
        doc = await first.get("fed", "f1")
        assert doc is not None and doc.value == {"owner": "bob"} and doc.version == 2
        assert [e.entry["by"] for e in await first.read_log("audit")] == ["first", "second"]
        with pytest.raises(Conflict):
            await first.write([Put("fed", "f1", {"owner": "mallory"}, if_version=1)])
    finally:
        await first.close()
        await second.close()


_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from fhs.errors import Conflict
    from fhs.store import Append, Put, open_store

    async def main(url, rounds):
        store = open_store(url)
        for _ in range(rounds):
            while True:
                doc = await store.get("counters", "shared")
                n = 0 if doc is None else doc.value["n"]
                try:
                    version = doc.version if doc else 0
                    await store.write([Put("counters", "shared", {"n": n + 1}, if_version=version),
                                       Append("shared", {"by": "child"})])
                    break
                except Conflict:
                    await asyncio.sleep(0)
        await store.write([Put("notes", "from child", {"pid": __import__("os").getpid()})])
        await store.close()

    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
    """
)


async def test_a_second_os_process_shares_the_store(store_url: str, store: Store) -> None:
    rounds = 20
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _CHILD, store_url, str(rounds),
        cwd=REPO_ROOT, env=env, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    for _ in range(600):  # start racing once the child writes (bounded: it may also fail early)
        if child.returncode is not None or await store.log_length("shared") > 0:
            break
        await asyncio.sleep(0.05)
    for _ in range(rounds):  # race the child on the same counter
        await increment(store, "shared")
        await store.write([Append("shared", {"by": "parent"})])
    _, stderr = await asyncio.wait_for(child.communicate(), timeout=60)
    assert child.returncode == 0, stderr.decode()

    note = await store.get("notes", "from child")
    assert note is not None and note.value["pid"] == child.pid
    doc = await store.get("counters", "shared")
    assert doc is not None and doc.value == {"n": 2 * rounds}
    entries = await store.read_log("shared")
    assert [e.seq for e in entries] == list(range(1, 2 * rounds + 1))
    assert sorted(e.entry["by"] for e in entries) == ["child"] * rounds + ["parent"] * rounds


# -- values and names -------------------------------------------------------------------------------


async def test_unicode_and_large_values_round_trip(store: Store) -> None:
    text = 'Grüße, 世界 🌍 — \u0000 nul, \ud83d lone surrogate, "quotes" and \\backslash | pipe : colon'
    big = {"blob": "x" * (1024 * 1024), "nested": {"list": [1, 2.5, None, True, "ü"], "empty": {}}}
    await store.write([Put("c", "text", {"t": text, "ключ": "значение"}), Put("c", "big", big)])
    await store.write([Append("log", {"t": text}), Append("log", big)])

    doc = await store.get("c", "text")
    assert doc is not None and doc.value == {"t": text, "ключ": "значение"}
    doc = await store.get("c", "big")
    assert doc is not None and doc.value == big
    assert [e.entry for e in await store.read_log("log")] == [{"t": text}, big]


ODD_NAMES = [
    "a:b",
    "a/b",
    "#x",
    "with space",
    "ünï©ødé 世界",
    "{braces}",
    '1:{"v"}',
    "|",
    "..",
    "'; DROP TABLE x;--",
]


async def test_keys_and_names_with_odd_characters(store: Store) -> None:
    await store.write([Put("odd", name, {"name": name}) for name in ODD_NAMES])
    for name in ODD_NAMES:
        doc = await store.get("odd", name)
        assert doc is not None and doc.value == {"name": name} and doc.version == 1
    assert [d.key for d in await store.list("odd")] == sorted(ODD_NAMES)

    for name in ODD_NAMES:  # as collection and log names too
        await store.write([Put(name, "k", {"c": name}), Append(name, {"l": name})])
    for name in ODD_NAMES:
        assert [d.value for d in await store.list(name)] == [{"c": name}]
        assert [e.entry for e in await store.read_log(name)] == [{"l": name}]


async def test_collection_and_log_namespaces_do_not_collide(store: Store) -> None:
    await store.write([Put("a", "b:c", {"which": "a / b:c"}), Put("a:b", "c", {"which": "a:b / c"})])
    await store.write([Append("a", {"log": True})])
    assert [d.key for d in await store.list("a")] == ["b:c"]
    assert [d.key for d in await store.list("a:b")] == ["c"]
    assert await store.log_length("a:b") == 0
    assert await store.log_length("a") == 1


@pytest.mark.parametrize(
    "bad_op",
    [
        Put("c", "", {}),
        Put("", "k", {}),
        Put("c", "nul\x00key", {}),
        Put("c", "\udc80", {}),
        Put("c", "k", ["not", "a", "dict"]),  # type: ignore[arg-type]
        Put("c", "k", {"nan": float("nan")}),
        Put("c", "k", {"bytes": b"raw"}),
        Put("c", "k", {}, if_version=-1),
        Put("c", "k", {}, if_version=True),
        Expect("c", "k", -3),
        Append("", {}),
        Append("log", {"set": {1, 2}}),
        "Put('c', 'k', {})",
    ],
)
async def test_bad_input_is_refused_before_anything_is_written(store: Store, bad_op: object) -> None:
    with pytest.raises(InvalidInput):
        await store.write([Put("c", "first", {}), Append("log", {}), bad_op])  # type: ignore[list-item]
    assert await store.list("c") == []
    assert await store.log_length("log") == 0


async def test_ping(store: Store) -> None:
    assert await store.ping() is True


# -- URLs -------------------------------------------------------------------------------------------


async def test_open_store_understands_sqlite_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    absolute = open_store(f"sqlite:///{tmp_path / 'deep' / 'dir' / 'a.sqlite3'}")
    monkeypatch.chdir(tmp_path)
    relative = open_store("sqlite:///rel/b.sqlite3")
    try:
        assert isinstance(absolute, SQLiteStore) and isinstance(relative, SQLiteStore)
        await absolute.write([Put("c", "k", {})])
        await relative.write([Put("c", "k", {})])
        assert (tmp_path / "deep" / "dir" / "a.sqlite3").is_file()
        assert (tmp_path / "rel" / "b.sqlite3").is_file()
    finally:
        await absolute.close()
        await relative.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "empty store URL"),
        ("postgres://user:secret@db/x", "unsupported store URL scheme 'postgres'"),
        ("/just/a/path", "unsupported store URL scheme '(none)'"),
        ("sqlite://relative.db", "three slashes"),
        ("sqlite:///", "names no file"),
        ("redis://:secret@localhost:6379/0?prefix=bad:prefix", "invalid Redis key prefix"),
    ],
)
def test_open_store_refuses_bad_urls_without_echoing_secrets(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        open_store(url)
    assert "secret" not in str(info.value)


async def test_redis_prefixes_keep_two_fhs_apart(redis_server: str) -> None:
    one = open_store(f"{redis_server}?prefix=fhs-one")
    two = RedisStore(redis_server, prefix="fhs-two")
    try:
        assert isinstance(one, RedisStore) and one.prefix == "fhs-one"
        await one.write([Put("fed", "f", {"by": "one"}), Append("audit", {"by": "one"})])
        assert await two.get("fed", "f") is None
        assert await two.log_length("audit") == 0
        await two.write([Put("fed", "f", {"by": "two"}, if_absent=True)])
        doc = await one.get("fed", "f")
        assert doc is not None and doc.value == {"by": "one"}
    finally:
        await one.close()
        await two.close()


async def test_unreachable_redis_pings_false() -> None:
    store = open_store("redis://127.0.0.1:1/0")
    try:
        assert await store.ping() is False
    finally:
        await store.close()


async def test_sqlite_writer_blocked_past_busy_timeout_gets_a_retryable_conflict(tmp_path: Path) -> None:
    path = tmp_path / "busy.sqlite3"
    store = SQLiteStore(path, busy_timeout_s=0.2)
    await store.write([Put("c", "k", {"v": 1})])
    other = sqlite3.connect(path, isolation_level=None)  # another process's connection, holding the lock
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(Conflict, match="busy"):
            await store.write([Put("c", "k", {"v": 2})])
        doc = await store.get("c", "k")  # WAL: readers are not blocked by the writer
        assert doc is not None and doc.value == {"v": 1}
    finally:
        other.execute("ROLLBACK")
        other.close()
    await store.write([Put("c", "k", {"v": 3})])
    doc = await store.get("c", "k")
    assert doc is not None and doc.value == {"v": 3} and doc.version == 2
    await store.close()


async def test_a_non_durable_batch_is_still_atomic_and_visible_to_other_instances(store_url: str) -> None:
    first, second = open_store(store_url), open_store(store_url)
    try:
        with pytest.raises(Conflict):
            await first.write(
                [Append("audit", {"n": 1}), Put("d", "k", {"v": 1}, if_version=7)], durable=False
            )
        assert await first.read_log("audit") == []
        assert await first.write([Append("audit", {"n": 1})], durable=False) == [1]
        await first.write([Put("d", "k", {"v": 2})])  # a durable write after it
        assert [e.entry for e in await second.read_log("audit")] == [{"n": 1}]
    finally:
        await first.close()
        await second.close()

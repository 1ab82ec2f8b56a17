"""Propagation delay: from a federation write at one FHS to its visibility at the other FHSs (issue 4).

Starts three trust domains on loopback (A, B, C: a dev IdP and an FHS each, SQLite stores), peers them all,
and creates a federation homed at A with B and C participating. Then, for ``--rounds`` rounds each:

1. ``home write``: ``alice`` (FedAdmin, at A) grants or revokes (alternately) an attribute of ``carol``
   at A, the home; the clock runs until B and C each show the change in their Member API (polled as ``bob``
   at B and as ``carol`` at C).
2. ``forwarded write``: ``bob`` (FedAdmin, member of B) makes the same kind of write at B, which forwards it
   to the home A; the clock runs until A and C (the third FHS) show it.

A write wakes the replication push at once; ``--sync-interval`` is the FHSs' periodic sync (push retries
and pulls), which bounds the delay when a push is missed. Delays are measured from sending the write, so
they include the write itself (its acknowledgement time is printed on its own row). Visibility is polled
every ``--poll-ms`` ms per FHS; a poll's round trip bounds the resolution and is printed too. All
processes share the machine, so absolute figures depend on it.

    .venv/bin/python bench/propagation.py [--rounds N] [--poll-ms MS] [--sync-interval S] [--keep DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from _common import percentile

from fhs.devtools.cluster import Domain, LocalFederation, call, converge
from fhs.ids import member_id, member_key

FLAG = "bench-flag"
ROUND_TIMEOUT_S = 30.0


class Bench:
    """The running three-domain federation and what the rounds need."""

    def __init__(self, cluster: LocalFederation, *, sync_interval_s: float) -> None:
        self.cluster = cluster
        env = {  # budgets lifted: the rounds poll every few ms
            "FHS_SYNC_INTERVAL_S": str(sync_interval_s),
            "FHS_RATE_LIMIT_MEMBER": "1000000/minute",
            "FHS_RATE_LIMIT_PEER": "1000000/minute",
        }
        a = cluster.add_domain("a", subjects=["alice"], env=env)
        b = cluster.add_domain("b", subjects=["bob"], env=env)
        c = cluster.add_domain("c", subjects=["carol"], env=env)
        self.a, self.b, self.c = a, b, c
        for x, y in (("a", "b"), ("a", "c"), ("b", "c")):
            cluster.peer(x, y)
        self.fid = cluster.create_federation("a", "alice", "bench", participants=("b", "c"))
        alice = a.member("alice")
        call("POST", self.url(a, "/attributes"), headers=alice, json_body={"name": FLAG}, expect=201)
        for identity, attributes in ((b.identity("bob"), ["FedAdmin"]), (c.identity("carol"), [])):
            call(
                "POST",
                self.url(a, "/members"),
                headers=alice,
                json_body={**identity, "attributes": attributes},
                expect=201,
            )
        self.carol_id = member_id(member_key(c.issuer, "carol"))
        self.flag_set = False
        converge([a, b, c], self.fid)

    def url(self, domain: Domain, suffix: str = "") -> str:
        """A Member API URL of the federation at ``domain``."""
        return f"{domain.fhs_url}/member/v1/federations/{self.fid}{suffix}"

    async def round(
        self,
        client: httpx.AsyncClient,
        *,
        writer: Domain,
        who: str,
        watchers: list[tuple[Domain, str]],
        poll_s: float,
    ) -> tuple[float, dict[str, float], list[float]]:
        """Toggle the flag at ``writer``; return (ack delay, delay per watcher, poll round trips)."""
        want = not self.flag_set
        method = "PUT" if want else "DELETE"
        polls: list[float] = []

        async def visible(domain: Domain, subject: str, started: float) -> float:
            headers = domain.member(subject)
            while True:
                sent = time.perf_counter()
                response = await client.get(self.url(domain, "/members"), headers=headers)
                polls.append(time.perf_counter() - sent)
                response.raise_for_status()
                carol = next(m for m in response.json() if m["id"] == self.carol_id)
                if (FLAG in carol["attributes"]) == want:
                    return time.perf_counter() - started
                if time.perf_counter() - started > ROUND_TIMEOUT_S:
                    raise RuntimeError(
                        f"{method} of {FLAG!r} not visible at {domain.fhs_id} after {ROUND_TIMEOUT_S} s"
                    )
                await asyncio.sleep(poll_s)

        headers = writer.member(who)
        for domain, subject in watchers:
            domain.member(subject)  # fetch tokens before the clock starts
        started = time.perf_counter()
        pollers = [asyncio.create_task(visible(d, s, started)) for d, s in watchers]
        response = await client.request(
            method, self.url(writer, f"/members/{self.carol_id}/attributes/{FLAG}"), headers=headers
        )
        ack = time.perf_counter() - started
        if response.status_code != 200:
            for task in pollers:
                task.cancel()
            raise RuntimeError(
                f"{method} at {writer.fhs_id} -> {response.status_code}: {response.text[:300]}"
            )
        delays = await asyncio.gather(*pollers)
        self.flag_set = want
        return ack, {d.fhs_id: delay for (d, _), delay in zip(watchers, delays, strict=True)}, polls


async def run_rounds(bench: Bench, *, rounds: int, poll_s: float) -> list[tuple[str, list[float]]]:
    """Run the home-write rounds and the forwarded-write rounds; return the rows to print."""
    a, b, c = bench.a, bench.b, bench.c
    scenarios = [
        ("home write at A", a, "alice", [(b, "bob"), (c, "carol")]),
        ("forwarded write at B", b, "bob", [(a, "alice"), (c, "carol")]),
    ]
    rows: list[tuple[str, list[float]]] = []
    polls: list[float] = []
    async with httpx.AsyncClient(timeout=30, trust_env=False) as client:
        for title, writer, who, watchers in scenarios:
            acks: list[float] = []
            seen: dict[str, list[float]] = {d.fhs_id: [] for d, _ in watchers}
            for _ in range(rounds):
                ack, delays, round_polls = await bench.round(
                    client, writer=writer, who=who, watchers=watchers, poll_s=poll_s
                )
                acks.append(ack)
                polls += round_polls
                for fhs_id, delay in delays.items():
                    seen[fhs_id].append(delay)
            rows.append((f"{title}: acknowledged", acks))
            rows += [(f"{title}: visible at {fhs_id}", values) for fhs_id, values in seen.items()]
    rows.append(("(poll round trip)", polls))
    return rows


def main(argv: list[str] | None = None) -> int:
    """Start the three domains, run the rounds, print the delays, stop everything."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40, help="writes per scenario (default 40)")
    parser.add_argument(
        "--poll-ms", type=float, default=5.0, help="pause between visibility polls (default 5)"
    )
    parser.add_argument(
        "--sync-interval", type=float, default=0.5, help="FHS background sync period in s (default 0.5)"
    )
    parser.add_argument("--keep", type=Path, default=None, help="keep data and logs in this directory")
    args = parser.parse_args(argv)
    if not 1 <= args.rounds <= 10_000 or not 0 <= args.poll_ms <= 1000 or not 0 < args.sync_interval <= 600:
        parser.error(
            "--rounds must be within 1..10000, --poll-ms within 0..1000, --sync-interval within (0, 600]"
        )
    with (
        tempfile.TemporaryDirectory(prefix="fhs-bench-") as tmp,
        LocalFederation(args.keep or Path(tmp)) as cluster,
    ):
        started = time.monotonic()
        bench = Bench(cluster, sync_interval_s=args.sync_interval)
        print(f"(three domains started and federated in {time.monotonic() - started:.1f} s)")
        rows = asyncio.run(run_rounds(bench, rounds=args.rounds, poll_s=args.poll_ms / 1000))
        converge([bench.a, bench.b, bench.c], bench.fid)
    print(
        f"propagation delay - {args.rounds} rounds per scenario, poll every {args.poll_ms:g} ms, "
        f"background sync interval {args.sync_interval:g} s "
        f"({platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()})"
    )
    print(f"{'measured from sending the write':<44} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for title, values in rows:
        print(
            f"{title:<44} {statistics.median(values) * 1000:>8.1f} "
            f"{percentile(values, 0.99) * 1000:>8.1f} {max(values) * 1000:>8.1f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

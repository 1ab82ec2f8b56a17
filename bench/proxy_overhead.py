"""Proxy overhead: a direct call to a service vs the same call via one FHS vs via two FHSs (issue 4).

Starts two trust domains on loopback (A and B: a dev IdP and an FHS each, SQLite stores) in a temp dir,
peers them, creates a federation homed at A with B participating, and registers an echo service at B
(owner ``bob`` at B). Then, at a fixed concurrency, the same small POST is sent

* ``direct``  - to the echo service itself;
* ``via-1``   - by ``bob`` (member of B) to B's Member API: B checks the access policy and proxies;
* ``via-2``   - by ``alice`` (member of A) to A: A signs an assertion to B, B checks and proxies.

It prints p50/p99 latency and requests/s per path, and the ratios via-1/direct and via-2/direct. The echo
runs without ``--fhs`` so it does the same (tiny) work on every path: the figures are the FHS hops' cost,
not the echo's token check. Client, FHSs and echo share the machine, so absolute figures depend on it; the
ratios are the point.

    .venv/bin/python bench/proxy_overhead.py [--requests N] [--concurrency C] [--body-bytes B] [--keep DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from _common import percentile

from fhs.devtools.cluster import Domain, LocalFederation, call, converge, free_port, wait_ready
from fhs.ids import member_id, member_key

ATTRIBUTE = "echo-users"


@dataclass
class Target:
    """One way of reaching the echo: a URL and the headers of the caller."""

    name: str
    url: str
    headers: dict[str, str]


@dataclass
class Result:
    """Latencies (seconds) and wall time of one measured run."""

    name: str
    latencies: list[float]
    wall_s: float
    errors: int

    @property
    def p50_ms(self) -> float:
        """Median latency in milliseconds."""
        return statistics.median(self.latencies) * 1000

    @property
    def p99_ms(self) -> float:
        """99th percentile latency in milliseconds."""
        return percentile(self.latencies, 0.99) * 1000

    @property
    def rps(self) -> float:
        """Completed requests per second over the run's wall time."""
        return len(self.latencies) / self.wall_s


def start_echo(cluster: LocalFederation, domain: Domain) -> str:
    """Start a plain echo service next to ``domain``; return its endpoint URL."""
    port = free_port()
    log = domain.data_dir / "echo.log"
    process = cluster.spawn(["-m", "fhs.devtools.echo", "--port", str(port)], log)
    wait_ready(f"http://127.0.0.1:{port}/health", process=process, log=log)
    return f"http://127.0.0.1:{port}/svc"


def set_up(cluster: LocalFederation) -> list[Target]:
    """Two peered domains, a federation homed at A, an echo service at B; the three ways to reach it."""
    # The FHS's request budgets are lifted: this measures the proxy path, not the limiter.
    unlimited = {"FHS_RATE_LIMIT_MEMBER": "1000000/minute", "FHS_RATE_LIMIT_PEER": "1000000/minute"}
    a = cluster.add_domain("a", subjects=["alice"], env=unlimited)
    b = cluster.add_domain("b", subjects=["bob"], env=unlimited)
    cluster.peer("a", "b")
    fid = cluster.create_federation("a", "alice", "bench", participants=("b",))
    alice = a.member("alice")
    base_a = f"{a.fhs_url}/member/v1/federations/{fid}"
    call("POST", f"{base_a}/attributes", headers=alice, json_body={"name": ATTRIBUTE}, expect=201)
    call(
        "POST",
        f"{base_a}/members",
        headers=alice,
        json_body={**b.identity("bob"), "attributes": ["ServiceOwner", ATTRIBUTE]},
        expect=201,
    )
    alice_id = member_id(member_key(a.issuer, "alice"))
    call("PUT", f"{base_a}/members/{alice_id}/attributes/{ATTRIBUTE}", headers=alice, expect=200)
    converge([a, b], fid)
    endpoint = start_echo(cluster, b)
    bob = b.member("bob")
    sid = call(
        "POST",
        f"{b.fhs_url}/member/v1/federations/{fid}/services",
        headers=bob,
        expect=201,
        json_body={
            "name": "echo-b",
            "type": "test.echo",
            "endpoint": endpoint,
            "discovery_policy": {"template": "all-members"},
            "access_policy": {"any_of": [ATTRIBUTE]},
        },
    )["id"]
    converge([a, b], fid)
    invoke = f"/member/v1/federations/{fid}/services/{sid}/invoke/ping"
    return [
        Target("direct", f"{endpoint}/ping", {}),
        Target("via-1", f"{b.fhs_url}{invoke}", bob),
        Target("via-2", f"{a.fhs_url}{invoke}", alice),
    ]


async def measure(target: Target, *, requests: int, concurrency: int, body: bytes) -> Result:
    """Send ``requests`` POSTs from each of ``concurrency`` clients; collect per-request latencies."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    latencies: list[float] = []
    errors = 0
    async with httpx.AsyncClient(timeout=30, limits=limits, trust_env=False) as client:

        async def one_client() -> None:
            nonlocal errors
            for _ in range(requests):
                started = time.perf_counter()
                response = await client.post(target.url, content=body, headers=target.headers)
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors += 1
                    if errors == 1:
                        print(
                            f"  {target.name}: {response.status_code} {response.text[:300]}", file=sys.stderr
                        )

        await asyncio.gather(*(one_client() for _ in range(min(concurrency, 4))))  # warm-up, not measured
        latencies.clear()
        started = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    if not latencies:
        raise RuntimeError(f"every call on path {target.name!r} failed; see the message above")
    return Result(target.name, latencies, wall, errors)


def report(results: list[Result], *, requests: int, concurrency: int, body_bytes: int) -> None:
    """Print one row per path and the overhead ratios against the direct call."""
    print(
        f"proxy overhead - {concurrency} concurrent clients x {requests} requests, POST {body_bytes} B body "
        f"({platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()})"
    )
    print(f"{'path':<8} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'errors':>7}")
    for r in results:
        print(f"{r.name:<8} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f} {r.rps:>8.1f} {r.errors:>7}")
    direct = results[0]
    for r in results[1:]:
        print(
            f"{r.name}/direct: p50 x{r.p50_ms / direct.p50_ms:.1f}, p99 x{r.p99_ms / direct.p99_ms:.1f}, "
            f"throughput x{r.rps / direct.rps:.2f}"
        )


def main(argv: list[str] | None = None) -> int:
    """Start the two domains, measure the three paths, print the figures, stop everything."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100, help="requests per client (default 100)")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--body-bytes", type=int, default=256, help="request body size (default 256)")
    parser.add_argument("--keep", type=Path, default=None, help="keep data and logs in this directory")
    args = parser.parse_args(argv)
    if not 1 <= args.requests <= 100_000 or not 1 <= args.concurrency <= 256:
        parser.error("--requests must be within 1..100000 and --concurrency within 1..256")
    if not 0 <= args.body_bytes <= 1024 * 1024:
        parser.error("--body-bytes must be within 0..1048576")
    body = os.urandom(args.body_bytes // 2).hex().encode().ljust(args.body_bytes, b"0")
    with tempfile.TemporaryDirectory(prefix="fhs-bench-") as tmp:
        base = args.keep or Path(tmp)
        with LocalFederation(base) as cluster:
            started = time.monotonic()
            targets = set_up(cluster)
            print(f"(two domains started and federated in {time.monotonic() - started:.1f} s)")
            results = [
                asyncio.run(measure(t, requests=args.requests, concurrency=args.concurrency, body=body))
                for t in targets
            ]
    report(results, requests=args.requests, concurrency=args.concurrency, body_bytes=args.body_bytes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

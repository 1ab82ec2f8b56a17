"""Cost of one proxied invocation as the federation grows: does the per-call path read the whole federation?

An FHS in process (SQLite store, the test IdP, an echo upstream on loopback), one federation grown to each
size in turn; the median latency of a member's POST through ``…/services/{sid}/invoke/`` is printed per size,
with its ratio to the smallest size (1.0 = independent of the federation's size).

Run: ``.venv/bin/python bench/invoke_scaling.py [--sizes 10,1000] [--calls 200]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fhs.conftest import LocalIdP, RunningFHS, _echo_app, ok, serve_in_thread  # noqa: E402


async def measure(members: int, calls: int, echo_url: str) -> float:
    """Median seconds of one invocation in a federation of ``members`` members and members/10 services."""
    with tempfile.TemporaryDirectory(prefix="fhs-bench-") as tmp:
        harness = RunningFHS(Path(tmp), LocalIdP(), "")
        harness.settings = harness.settings.model_copy(update={"rate_limit_member": "1000000/minute"})
        async with harness as fhs:
            c = fhs.client
            await ok(await c.post("/operator/v1/fedadmins", headers=fhs.operator, json=fhs.key("alice")), 201)
            alice = fhs.member("alice")
            fid = (await ok(await c.post("/member/v1/federations", headers=alice, json={"name": "b"}), 201))[
                "id"
            ]
            base = f"/member/v1/federations/{fid}"
            for i in range(members):
                await ok(await c.post(f"{base}/members", headers=alice, json=fhs.key(f"m{i}")), 201)
            service = {
                "type": "test.echo",
                "endpoint": f"{echo_url}/svc",
                "discovery_policy": {"template": "all-members"},
                "access_policy": {"template": "all-members"},
            }
            sids = [
                (
                    await ok(
                        await c.post(f"{base}/services", headers=alice, json={"name": f"s{i}", **service}),
                        201,
                    )
                )["id"]
                for i in range(max(1, members // 10))
            ]
            url, member = f"{base}/services/{sids[-1]}/invoke/x", fhs.member("m1")
            for _ in range(20):
                await ok(await c.post(url, headers=member, content=b"x" * 256))
            samples = []
            for _ in range(calls):
                start = time.perf_counter()
                response = await c.post(url, headers=member, content=b"x" * 256)
                samples.append(time.perf_counter() - start)
                assert response.status_code == 200, response.text
            return statistics.median(samples)


def main() -> None:
    """Print the median invocation latency per federation size and its ratio to the smallest."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,1000", help="member counts, comma-separated (default 10,1000)")
    parser.add_argument("--calls", type=int, default=200, help="timed calls per size (default 200)")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    print(f"{'members':>8}{'services':>10}{'median ms':>11}{'ratio':>8}")
    with serve_in_thread(_echo_app) as echo_url:
        first = None
        for size in sizes:
            median = asyncio.run(measure(size, args.calls, echo_url))
            first = first or median
            print(f"{size:>8}{max(1, size // 10):>10}{median * 1e3:>11.2f}{median / first:>8.2f}")


if __name__ == "__main__":
    main()

"""Planner query time vs the exhaustive enumerator (tests/scission_service/exhaustive.py), as ratios.

1. Every model of the shipped Scission data (1 device, 2 edges, 2 clouds): median in-process query time of
   the default top-5 latency query, next to the enumerator on the same input. Target: <= 5 ms per query.
2. A synthetic 100 blocks x (1 device + 50 edges + 5 clouds) instance. The enumerator over all ~1.3 M chains
   is estimated from a timed sample of its chains (said so in the output). Target: >= 100x faster.

Run: ``.venv/bin/python bench/planner_bench.py [--repeats N]``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

from _common import median_seconds

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scission_service.interop import read_network_csv, read_scission_folder, scission_problem  # noqa: E402
from scission_service.planner import (  # noqa: E402
    BlockSpan,
    Link,
    PlannerResource,
    PlanningProblem,
    PlanQuery,
    plan_partitions,
)
from tests.scission_service.exhaustive import chains, enumerate_top, evaluate, plan_key  # noqa: E402

DATA = REPO.parent / "shared" / "datasets" / "scission"


def synthetic(n_blocks: int = 100, n_edges: int = 50, n_clouds: int = 5, seed: int = 7) -> PlanningProblem:
    """A random instance shaped like a big federation: one device, many edges, a few clouds."""
    rng = random.Random(seed)
    sizes = [float(rng.randint(4_000, 2_000_000)) for _ in range(n_blocks)]
    base = [rng.uniform(0.001, 0.05) for _ in range(n_blocks)]
    resources = [PlannerResource("dev", "device", tuple(b * 8 for b in base), tuple(sizes))]
    for i in range(n_edges):
        factor = rng.uniform(1.5, 4)
        resources.append(
            PlannerResource(f"edge{i:02d}", "edge", tuple(b * factor for b in base), tuple(sizes))
        )
    for i in range(n_clouds):
        factor = rng.uniform(0.3, 1)
        resources.append(PlannerResource(f"cloud{i}", "cloud", tuple(b * factor for b in base), tuple(sizes)))
    links = {}
    for res in resources[1:]:
        links[("dev", res.id)] = Link(rng.uniform(0.005, 0.08), rng.uniform(1e6, 2e7))
    for edge in resources[1 : 1 + n_edges]:
        for cloud in resources[1 + n_edges :]:
            links[(edge.id, cloud.id)] = Link(rng.uniform(0.01, 0.03), rng.uniform(5e6, 1e8))
    return PlanningProblem(
        resources=tuple(resources), blocks=tuple(BlockSpan(i, i) for i in range(n_blocks)),
        input_bytes=150_000.0, links=links, model_name="synthetic",
    )  # fmt: skip


def main() -> None:
    """Print per-model and synthetic timings with ratios."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    query = PlanQuery(top=5)
    systems = read_scission_folder(DATA)
    links = read_network_csv(DATA / "network_stats.csv")
    print(f"{'model':<20}{'blocks':>7}{'planner ms':>12}{'enumerate ms':>14}{'ratio':>9}  same top-5")
    worst = 0.0
    ratios = []
    for model in sorted(systems[0].benchmarks):
        problem = scission_problem(systems, links, model)
        ours = median_seconds(lambda p=problem: plan_partitions(problem=p, query=query), args.repeats)
        brute = median_seconds(lambda p=problem: enumerate_top(p, query), max(1, args.repeats // 5))
        result = plan_partitions(problem=problem, query=query)
        same = [(p.objective_value, plan_key(p)) for p in result.plans] == enumerate_top(problem, query)
        worst = max(worst, ours)
        ratios.append(brute / ours)
        print(
            f"{model:<20}{len(problem.blocks):>7}{ours * 1e3:>12.2f}{brute * 1e3:>14.1f}"
            f"{brute / ours:>8.0f}x  {same}"
        )
    print(f"shipped data: worst median query {worst * 1e3:.2f} ms (target <= 5 ms); "
          f"speed-up min {min(ratios):.0f}x, median {statistics.median(ratios):.0f}x")  # fmt: skip

    problem = synthetic()
    ours = median_seconds(lambda: plan_partitions(problem=problem, query=query), max(3, args.repeats // 3))
    total = sum(1 for _ in chains(problem, query))
    sample = 200_000
    start = time.perf_counter()
    for count, (src, chain) in enumerate(chains(problem, query)):
        if count >= sample:
            break
        evaluate(problem, query, src, chain)
    per_chain = (time.perf_counter() - start) / sample
    estimate = per_chain * total
    print(
        f"synthetic 100 blocks x (1 device + 50 edges + 5 clouds): planner {ours * 1e3:.1f} ms; enumerator "
        f"ESTIMATED {estimate:.1f} s ({total} chains x {per_chain * 1e6:.2f} us/chain timed on the first "
        f"{sample}); ratio {estimate / ours:.0f}x (target >= 100x)"
    )


if __name__ == "__main__":
    main()

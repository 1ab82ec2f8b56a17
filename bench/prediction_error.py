"""Prediction error: the planner's cost (sum of per-block medians) against measured times, in one run.

For a few small Keras applications on this machine: benchmark block by block (which fits the per-call overhead
so the blocks add up to the whole model, and times the model's two halves as held-out checks), then measure a
three-segment split run segment after segment with the same execution mode, and print the held-out errors and
the split's predicted (sum of its blocks) vs measured time, one call overhead per segment subtracted like
every benchmark time. Run: ``python bench/prediction_error.py [--repeats 10]``.
"""

from __future__ import annotations

import argparse
import os
import statistics

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from scission_service.benchmarking import benchmark_model, run_segment  # noqa: E402
from scission_service.models import load_model  # noqa: E402

APPLICATIONS = [
    ("mobilenetv2", 0.35, (96, 96, 3)),
    ("mobilenet", 0.25, (128, 128, 3)),
    ("resnet50", None, (64, 64, 3)),
]


def _split_time(model: object, blocks: int, x: np.ndarray, repeats: int) -> float:
    """Median time of the model run as three consecutive segments (after warming each up)."""
    k1, k2 = blocks // 3, 2 * blocks // 3
    ranges = [(0, k1), (k1 + 1, k2), (k2 + 1, blocks - 1)]
    samples = []
    for attempt in range(repeats + 2):
        current, total = x, 0.0
        for first, last in ranges:
            current, seconds = run_segment(model, first_block=first, last_block=last, inputs=current)
            total += seconds
        if attempt >= 2:
            samples.append(total)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    print(
        f"{'model':<24} {'blocks':>6} {'overhead':>9} {'1st half':>8} {'2nd half':>8} "
        f"{'3-split':>9} {'measured':>9} {'error':>6}"
    )
    for name, alpha, shape in APPLICATIONS:
        model = load_model(name, alpha=alpha, input_shape=shape)
        data = benchmark_model(
            model, model_name=name, resource_name="bench", tier="edge", repeats=args.repeats
        )
        x = np.random.default_rng(0).random((1, *shape), dtype=np.float32)
        # Measured like the benchmark's own times: one call overhead per segment off.
        split = max(_split_time(model, len(data.blocks), x, args.repeats) - 3 * data.call_overhead_s, 0.0)
        predicted = data.block_sum_s
        halves = [f"{c.error:+.0%}" if c.error is not None else "n/a" for c in data.held_out]
        label = f"{name}" + (f" a={alpha}" if alpha else "") + f" {shape[0]}px"
        error = (predicted - split) / split
        print(
            f"{label:<24} {len(data.blocks):>6} {data.call_overhead_s * 1e6:>7.0f}us {halves[0]:>8} "
            f"{halves[1]:>8} {predicted * 1e3:>7.2f}ms {split * 1e3:>7.2f}ms {error:>+6.0%}"
        )


if __name__ == "__main__":
    main()

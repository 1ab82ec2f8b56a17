"""Prediction error: the planner's cost (sum of per-block medians) against measured times, in one run.

For a few small Keras applications on this machine: benchmark block by block, then measure (a) the whole model
and (b) a three-segment split run segment after segment with the same execution mode, and print predicted vs
measured with the relative error. Run: ``python bench/prediction_error.py [--repeats 10]``.
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
    header = ["model", "blocks", "predicted", "whole", "error", "3-split", "error"]
    print(
        f"{header[0]:<28} {header[1]:>6} {header[2]:>10} {header[3]:>10} {header[4]:>7} {header[5]:>10} "
        f"{header[6]:>7}"
    )
    for name, alpha, shape in APPLICATIONS:
        model = load_model(name, alpha=alpha, input_shape=shape)
        data = benchmark_model(
            model, model_name=name, resource_name="bench", tier="edge", repeats=args.repeats
        )
        predicted, whole = data.block_sum_s, data.whole_model_median_s or 0.0
        x = np.random.default_rng(0).random((1, *shape), dtype=np.float32)
        split = _split_time(model, len(data.blocks), x, args.repeats)
        label = f"{name}" + (f" a={alpha}" if alpha else "") + f" {shape[0]}px"
        print(
            f"{label:<28} {len(data.blocks):>6} {predicted * 1e3:>8.2f}ms {whole * 1e3:>8.2f}ms "
            f"{(predicted - whole) / whole:>+7.0%} {split * 1e3:>8.2f}ms {(predicted - split) / split:>+7.0%}"
        )


if __name__ == "__main__":
    main()

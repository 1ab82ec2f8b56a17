"""Benchmark overhead: total benchmarking wall time vs the time spent inside timed block calls.

    .venv/bin/python bench/benchmark_overhead.py [MODEL] [--repeats N] [--alpha A] [--input-shape H,W,C]

Default model: MobileNetV2 alpha 0.35 at 96x96 (small enough for a laptop). Prints the ratio wall/timed, the
share of wall time spent warming up (tracing + first calls), and the held-out check: each half of the model
timed as one segment against the sum of its blocks.
"""

from __future__ import annotations

import argparse

from scission_service.benchmarking import benchmark_model_with_stats
from scission_service.models import build_application


def main(argv: list[str] | None = None) -> int:
    """Run one benchmark and print where its time went."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="mobilenetv2")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--alpha", type=float, default=None)
    parser.add_argument("--input-shape", default=None, help="H,W,C")
    args = parser.parse_args(argv)
    shape = tuple(int(v) for v in args.input_shape.split(",")) if args.input_shape else None
    alpha = args.alpha
    if args.model == "mobilenetv2" and alpha is None and shape is None:
        alpha, shape = 0.35, (96, 96, 3)
    model = build_application(args.model, alpha=alpha, input_shape=shape)
    data, stats = benchmark_model_with_stats(
        model, model_name=args.model, resource_name="local", tier="edge", repeats=args.repeats
    )
    print(f"model                    {args.model} ({len(data.blocks)} blocks, {args.repeats} repeats)")
    print(f"benchmark wall time      {stats.wall_ns / 1e9:8.3f} s")
    print(f"inside timed calls       {stats.timed_ns / 1e9:8.3f} s ({stats.timed_calls} calls)")
    print(f"warm-up (incl. tracing)  {stats.warmup_ns / 1e9:8.3f} s")
    print(f"ratio wall / timed       {stats.wall_ns / stats.timed_ns:8.2f}x")
    print(
        f"per-call overhead        {data.call_overhead_s * 1e6:8.1f} us (fitted; subtracted from every time)"
    )
    print(f"sum of blocks            {data.block_sum_s * 1e3:8.3f} ms")
    print(f"whole model              {(data.whole_model_median_s or 0) * 1e3:8.3f} ms")
    for check in data.held_out:
        shown = f"{check.error * 100:+8.1f} %" if check.error is not None else "     n/a"
        print(
            f"blocks {check.first_block:>3}-{check.last_block:<3} predicted "
            f"{check.predicted_s * 1e3:8.3f} ms, measured {check.measured_s * 1e3:8.3f} ms, error {shown}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Tensor wire overhead (``scission_service.tensor_wire``, ``.npy`` with every check) vs raw bytes.

For tensor shapes that cross a hop in a partitioned CNN (an input image, early and late feature maps, a
classifier output), print the bytes on the wire against the raw payload, and the time to encode + decode a
tensor against a raw round trip (``tobytes`` + ``frombuffer`` + one copy, the least any format must do to hand
the receiver a writable array). Medians of repeated runs, measured in this one run.

Run: ``.venv/bin/python bench/tensor_wire.py [--repeats N]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from _common import median_seconds

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scission_service.tensor_wire import decode_array, encode_array  # noqa: E402

SHAPES: list[tuple[str, tuple[int, ...]]] = [
    ("classifier output", (1, 1000)),
    ("late feature map", (1, 7, 7, 1280)),
    ("mid feature map", (1, 28, 28, 192)),
    ("early feature map", (1, 112, 112, 96)),
    ("input image 224", (1, 224, 224, 3)),
]


def _raw_round_trip(array: np.ndarray) -> np.ndarray:
    data = array.tobytes()
    return np.frombuffer(data, dtype=array.dtype).reshape(array.shape).copy()


def main() -> None:
    """Print bytes and time ratios per shape."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'tensor (float32)':<20}{'shape':<20}{'raw B':>11}{'wire B':>11}{'bytes x':>9}"
          f"{'raw ms':>9}{'wire ms':>9}{'time x':>8}")  # fmt: skip
    for name, shape in SHAPES:
        array = rng.standard_normal(shape, dtype=np.float32)
        wire = encode_array(array)
        assert np.array_equal(decode_array(wire), array)
        raw_s = median_seconds(lambda a=array: _raw_round_trip(a), args.repeats)
        wire_s = median_seconds(lambda a=array: decode_array(encode_array(a)), args.repeats)
        print(
            f"{name:<20}{str(shape):<20}{array.nbytes:>11}{len(wire):>11}{len(wire) / array.nbytes:>9.4f}"
            f"{raw_s * 1e3:>9.3f}{wire_s * 1e3:>9.3f}{wire_s / raw_s:>8.2f}"
        )


if __name__ == "__main__":
    main()

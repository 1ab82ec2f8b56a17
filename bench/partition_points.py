"""Layer and partition-point counts of the 18 Table I applications, beside the original Scission tool's.

Builds every application with ``weights=None`` (no download), analyses its graph, and reads the number of
blocks the original tool benchmarked per model from its published data (``*.dat``, read with a restricted
unpickler that admits only ``__main__.LayerBenchmark``). Scission's point count = its blocks − 1 (the cuts
between consecutive blocks; e.g. ResNet50: 24 blocks, 23 points, as the paper states).

    .venv/bin/python bench/partition_points.py [--data DIR] [--markdown]
"""

from __future__ import annotations

import argparse
import gc
import pickle
import sys
import time
from pathlib import Path
from typing import Any

import keras

from scission_service.graph import analyze_model
from scission_service.models import APPLICATIONS, build_application

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "scission"
SCISSION_NAMES = {
    "VGG16": "vgg16", "VGG19": "vgg19", "ResNet50": "resnet50", "ResNet101": "resnet101",
    "ResNet152": "resnet152", "ResNet50V2": "resnet50v2", "ResNet101V2": "resnet101v2",
    "ResNet152V2": "resnet152v2", "InceptionV3": "inception_v3", "InceptionResNetV2": "inceptionresnet_v2",
    "Xception": "xception", "MobileNet": "mobilenet", "MobileNetV2": "mobilenetv2",
    "DenseNet121": "densenet121", "DenseNet169": "densenet169", "DenseNet201": "densenet201",
    "NASNetMobile": "nasnetmobile", "NASNetLarge": "nasnetlarge",
}  # fmt: skip


class _Record:
    """Inert stand-in for Scission's LayerBenchmark."""


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module == "__main__" and name == "LayerBenchmark":
            return _Record
        raise pickle.UnpicklingError(f"refusing {module}.{name}: only __main__.LayerBenchmark is allowed")


def scission_blocks(data_dir: Path) -> dict[str, tuple[int, int]]:
    """Per Scission model name: (blocks, last layer index + 1) from the first ``device-*.dat`` file."""
    files = sorted(data_dir.glob("device-*.dat")) or sorted(data_dir.glob("*.dat"))
    if not files:
        return {}
    with files[0].open("rb") as handle:
        raw = _RestrictedUnpickler(handle).load()
    return {name: (len(entries), entries[-1].output_layer + 1) for name, entries in raw.items()}


def main(argv: list[str] | None = None) -> int:
    """Print the table (plain or Markdown)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    reference = scission_blocks(args.data)
    header = ("model", "keras layers", "our points", "our blocks", "Scission layers", "Scission points",
              "Scission blocks", "points gained")  # fmt: skip
    rows = []
    for app in APPLICATIONS.values():
        start = time.perf_counter()
        model = build_application(app)
        graph = analyze_model(model)
        blocks, layers = reference.get(SCISSION_NAMES[app], (0, 0))
        ours = len(graph.points)
        rows.append(
            (app, len(model.layers), ours, len(graph.blocks), layers or "?", (blocks - 1) if blocks else "?",
             blocks or "?", (ours - (blocks - 1)) if blocks else "?")
        )  # fmt: skip
        print(f"# {app}: {time.perf_counter() - start:.1f}s", file=sys.stderr)
        del model, graph
        keras.backend.clear_session()
        gc.collect()
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for row in rows:
            print("| " + " | ".join(str(v) for v in row) + " |")
    else:
        print("  ".join(f"{h:>18}" for h in header))
        for row in rows:
            print("  ".join(f"{v!s:>18}" for v in row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

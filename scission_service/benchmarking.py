"""Per-block benchmarks on the local machine, and segment execution (DESIGN §5.4, §5.6).

Every block of :func:`scission_service.graph.analyze_model` is run as its own compiled segment (the execution
mode of :mod:`scission_service.segments`, the same one :func:`run_segment` uses, so the numbers predict
execution): ``warmup`` untimed calls, then ``repeats`` calls timed with ``time.perf_counter_ns``. The
segment is traced when it is built; its first calls are still slow (graph optimisation, oneDNN primitive
creation): on MobileNetV2's blocks the call time settles after about five calls, hence
:data:`WARMUP_CALLS`. Blocks are chained: block ``k`` is fed the real output of block ``k - 1``.

Per-call overhead (tensor conversion, function dispatch, copying the result out) is paid once per segment
call, so ``n`` small blocks would be overcharged ``n - 1`` times against the whole model. It is calibrated
with an identity model on a one-element tensor in the same execution mode and subtracted from every block and
from the whole model (never below 0). The whole model is timed too; :func:`sum_vs_whole_error` reports how
well the block sum predicts it.
"""

from __future__ import annotations

import os
import platform
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from scission_service.benchmark_data import BenchmarkData, BlockTiming, ResourceDescriptor, Tier  # noqa: E402
from scission_service.graph import ModelGraph, analyze_model  # noqa: E402
from scission_service.models import BUILD_LOCK  # noqa: E402
from scission_service.segments import (  # noqa: E402
    EXECUTION_MODE,
    Segment,
    SegmentError,
    SegmentOutput,
    get_segment,
    timed_call,
)
from scission_service.tensor_wire import encoded_size  # noqa: E402

#: Untimed calls before the timed ones (see the module docstring).
WARMUP_CALLS = 5

_graphs: dict[int, tuple[keras.Model, ModelGraph]] = {}
_graphs_lock = threading.Lock()
_overhead_lock = threading.Lock()
_overhead_ns: int | None = None


class BenchmarkError(ValueError):
    """A benchmark cannot run with these arguments; the message says what to change."""


@dataclass(frozen=True)
class BenchmarkStats:
    """Where a benchmark's wall time went (for ``bench/benchmark_overhead.py``)."""

    wall_ns: int
    timed_ns: int
    warmup_ns: int
    calibration_ns: int
    timed_calls: int


def graph_for(model: keras.Model) -> ModelGraph:
    """The (cached) partition analysis of ``model``; the cache holds the model, keyed by its identity."""
    with _graphs_lock:
        entry = _graphs.get(id(model))
        if entry is not None and entry[0] is model:
            return entry[1]
    graph = analyze_model(model)
    with _graphs_lock:
        if len(_graphs) >= 16:
            _graphs.pop(next(iter(_graphs)))
        _graphs[id(model)] = (model, graph)
    return graph


def describe_resource(*, name: str, tier: Tier) -> ResourceDescriptor:
    """Describe this machine: CPU model (``/proc/cpuinfo``), cores, memory, TF version, accelerator."""
    cpu_model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                    cpu_model = value.strip()
                    break
    except OSError:
        pass
    memory = 0
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 0)
    gpus = tf.config.list_physical_devices("GPU")
    accelerator = ", ".join(f"GPU:{gpu.name}" for gpu in gpus) if gpus else "none"
    return ResourceDescriptor(
        name=name,
        tier=tier,
        cpu_model=cpu_model[:200],
        cores=cores,
        memory_bytes=max(memory, 0),
        tensorflow_version=tf.__version__,
        accelerator=accelerator,
    )


def _resolve_input_shape(graph: ModelGraph, input_shape: Sequence[int] | None) -> tuple[int, ...]:
    inputs = graph.model.inputs
    if len(inputs) != 1:
        raise BenchmarkError(f"model {graph.model.name!r} has {len(inputs)} inputs; benchmarking needs one")
    declared = tuple(inputs[0].shape)
    if input_shape is None:
        shape = (1, *declared[1:])
    else:
        given = tuple(input_shape)
        if not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in given):
            raise BenchmarkError(f"input_shape must be positive integers, got {list(input_shape)}")
        shape = (1, *given) if len(given) == len(declared) - 1 else given
    if len(shape) != len(declared) or any(
        d is not None and d != s for d, s in zip(declared[1:], shape[1:], strict=True)
    ):
        raise BenchmarkError(
            f"input_shape {list(shape)} does not fit the model input "
            f"{['N' if d is None else d for d in declared]}"
        )
    if any(d is None for d in shape):
        raise BenchmarkError(
            f"the model input {list(declared)} has free dimensions; pass input_shape (e.g. 224,224,3)"
        )
    return shape


def _random_input(shape: tuple[int, ...], dtype: str) -> np.ndarray:
    rng = np.random.default_rng(0)
    np_dtype = np.dtype(dtype)
    if np.issubdtype(np_dtype, np.floating):
        return rng.random(shape, dtype=np.float32).astype(np_dtype)
    return rng.integers(0, 2, size=shape).astype(np_dtype)


def _output_bytes(output: SegmentOutput) -> int:
    arrays = output if isinstance(output, list) else [output]
    return sum(encoded_size(a) for a in arrays)


def _measure(
    segment: Segment, inputs: Any, *, repeats: int, warmup: int
) -> tuple[SegmentOutput, list[int], int]:
    start = time.perf_counter_ns()
    output: SegmentOutput | None = None
    for _ in range(warmup):
        output, _ = timed_call(segment, inputs)
    warmup_ns = time.perf_counter_ns() - start
    samples = []
    for _ in range(repeats):
        output, elapsed = timed_call(segment, inputs)
        samples.append(elapsed)
    assert output is not None
    return output, samples, warmup_ns


def _percentile(samples: list[int], q: float) -> float:
    return float(np.percentile(np.asarray(samples, dtype=np.float64), q, method="linear"))


def calibrate_call_overhead(*, repeats: int = 50) -> float:
    """Median seconds of one segment call on an identity model with a one-element input (cached)."""
    global _overhead_ns
    with _overhead_lock:
        if _overhead_ns is None:
            with BUILD_LOCK:
                inputs = keras.Input(shape=(1,), name="calibration_input")
                identity = keras.Model(inputs, keras.layers.Identity()(inputs), name="calibration_identity")
            segment = get_segment(analyze_model(identity), 0, 0)
            x = np.zeros((1, 1), dtype=np.float32)
            _, samples, _ = _measure(segment, x, repeats=max(repeats, 10), warmup=3)
            _overhead_ns = int(statistics.median(samples))
        return _overhead_ns / 1e9


def benchmark_model_with_stats(
    model: keras.Model,
    *,
    model_name: str,
    resource_name: str,
    tier: Tier,
    input_shape: Sequence[int] | None = None,
    repeats: int = 10,
    warmup: int = WARMUP_CALLS,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[BenchmarkData, BenchmarkStats]:
    """:func:`benchmark_model`, also returning where the wall time went."""
    wall_start = time.perf_counter_ns()
    if not isinstance(repeats, int) or isinstance(repeats, bool) or not 1 <= repeats <= 10_000:
        raise BenchmarkError(f"repeats must be an integer in [1, 10000], got {repeats!r}")
    if not isinstance(warmup, int) or isinstance(warmup, bool) or not 1 <= warmup <= 1_000:
        raise BenchmarkError(f"warmup must be an integer in [1, 1000] (first calls are slow), got {warmup!r}")
    if tier not in ("device", "edge", "cloud"):
        raise BenchmarkError(f"tier must be one of device, edge, cloud; got {tier!r}")
    resource = describe_resource(name=resource_name, tier=tier)
    graph = graph_for(model)
    shape = _resolve_input_shape(graph, input_shape)
    x = _random_input(shape, str(graph.model.inputs[0].dtype))

    calibration_start = time.perf_counter_ns()
    overhead_s = calibrate_call_overhead()
    calibration_ns = time.perf_counter_ns() - calibration_start

    n = len(graph.blocks)
    total_steps = n + 1
    timed_ns = warmup_ns = calls = 0
    blocks: list[BlockTiming] = []
    value: Any = x
    for k, block in enumerate(graph.blocks):
        segment = get_segment(graph, k, k)
        value, samples, spent = _measure(segment, value, repeats=repeats, warmup=warmup)
        timed_ns += sum(samples)
        warmup_ns += spent
        calls += len(samples)
        blocks.append(
            BlockTiming(
                index=k,
                first_layer=block.first_layer,
                last_layer=block.last_layer,
                first_layer_name=block.first_layer_name,
                last_layer_name=block.last_layer_name,
                median_s=max(statistics.median(samples) / 1e9 - overhead_s, 0.0),
                p10_s=max(_percentile(samples, 10) / 1e9 - overhead_s, 0.0),
                p90_s=max(_percentile(samples, 90) / 1e9 - overhead_s, 0.0),
                output_bytes=_output_bytes(value),
            )
        )
        if progress is not None:
            progress(k + 1, total_steps)

    whole = get_segment(graph, 0, n - 1)
    _, samples, spent = _measure(whole, x, repeats=repeats, warmup=warmup)
    timed_ns += sum(samples)
    warmup_ns += spent
    calls += len(samples)
    whole_s = max(statistics.median(samples) / 1e9 - overhead_s, 0.0)
    if progress is not None:
        progress(total_steps, total_steps)

    data = BenchmarkData(
        resource=resource,
        model_name=model_name,
        model_digest=graph.digest,
        input_shape=list(shape),
        input_bytes=encoded_size(x),
        execution_mode=EXECUTION_MODE,
        repeats=repeats,
        blocks=blocks,
        whole_model_median_s=whole_s,
        call_overhead_s=overhead_s,
    )
    stats = BenchmarkStats(
        wall_ns=time.perf_counter_ns() - wall_start,
        timed_ns=timed_ns,
        warmup_ns=warmup_ns,
        calibration_ns=calibration_ns,
        timed_calls=calls,
    )
    return data, stats


def benchmark_model(
    model: keras.Model,
    *,
    model_name: str,
    resource_name: str,
    tier: Tier,
    input_shape: Sequence[int] | None = None,
    repeats: int = 10,
    warmup: int = WARMUP_CALLS,
    progress: Callable[[int, int], None] | None = None,
) -> BenchmarkData:
    """Benchmark every block of ``model`` and the whole model on this machine; return BenchmarkData."""
    data, _ = benchmark_model_with_stats(
        model,
        model_name=model_name,
        resource_name=resource_name,
        tier=tier,
        input_shape=input_shape,
        repeats=repeats,
        warmup=warmup,
        progress=progress,
    )
    return data


def warm_up_segment(model: keras.Model, *, first_block: int, last_block: int) -> None:
    """Build, trace and run segment ``[first_block, last_block]`` once on zeros so later calls are fast."""
    segment = get_segment(graph_for(model), first_block, last_block)
    if any(d is None for shape, _ in segment.input_specs for d in shape[1:]):
        return  # free spatial dimensions: nothing sensible to warm up with
    zeros = [
        np.zeros((1, *(int(d or 1) for d in shape[1:])), dtype=dtype) for shape, dtype in segment.input_specs
    ]
    segment.execute(zeros)


def sum_vs_whole_error(data: BenchmarkData) -> float | None:
    """Relative error of the block-median sum against the whole-model median (None if not measured)."""
    whole = data.whole_model_median_s
    if whole is None or whole <= 0:
        return None
    return (data.block_sum_s - whole) / whole


def run_segment(
    model: keras.Model,
    *,
    first_block: int,
    last_block: int,
    inputs: np.ndarray | Sequence[np.ndarray],
) -> tuple[SegmentOutput, float]:
    """Run blocks ``first_block..last_block`` on ``inputs``; return (output, wall seconds of the call).

    Thread-safe (segment building is serialised, calls run concurrently); call it from a worker thread, never
    from an event loop. The seconds are the raw measured call time (no overhead subtracted). Raises
    :class:`~scission_service.segments.SegmentError` for a bad block range, shape or dtype.
    """
    graph = graph_for(model)
    segment = get_segment(graph, first_block, last_block)
    try:
        output, elapsed = timed_call(segment, inputs)
    except SegmentError:
        raise
    except (tf.errors.InvalidArgumentError, ValueError) as exc:
        raise SegmentError(f"segment [{first_block}, {last_block}] failed on this input: {exc}") from None
    return output, elapsed / 1e9

"""Per-block benchmarks on the local machine, and segment execution (DESIGN §5.4, §5.6).

Every block of :func:`scission_service.graph.analyze_model` is run as its own compiled segment (the execution
mode of :mod:`scission_service.segments`, the same one :func:`run_segment` uses, so the numbers predict
execution), and so are the whole model and its two halves: each segment gets ``warmup`` untimed calls, then
``repeats`` rounds each call every segment once, timed with ``time.perf_counter_ns`` (medians, p10, p90 over
the rounds). Interleaving matters on a shared machine: a slow spell slows every segment alike; measured one
segment after another, the held-out checks described below were off two to five times more. A segment is
traced when it is built; its first calls are still slow (graph optimisation, oneDNN primitive creation): on
MobileNetV2's blocks the call time settles after about five calls, hence :data:`WARMUP_CALLS`. Blocks are
chained: block ``k`` is fed the real output of block ``k - 1``.

Per-call overhead (tensor conversion, function dispatch, copying the result out) is paid once per segment
call, so ``n`` small blocks would be overcharged ``n - 1`` times against the whole model. On a 2-core VM one
call costs about 0.3 ms, as much as many blocks' compute; an overhead measured apart (an identity model on a
one-element tensor) is some tens of microseconds short of a real block's, and that error counts ``n`` times
in every block sum (MobileNet at alpha 0.25: block sums from a third to three times the whole model).
Instead the overhead ``o`` is fitted to the run itself: ``o`` is the one value for which the corrected blocks
add up to the corrected whole model, ``sum(max(block_k - o, 0)) = whole - o`` (:func:`fit_call_overhead`; a
one-block model falls back to an identity model). ``o`` is subtracted from every time. Since that makes the
block sum match the whole model by construction, the two halves check the numbers: each half's measured
time against the sum of its blocks (``BenchmarkData.held_out``).
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

from scission_service.benchmark_data import (  # noqa: E402
    BenchmarkData,
    BlockTiming,
    ResourceDescriptor,
    SegmentCheck,
    Tier,
)
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
    timed_ns: int  # inside the timed calls
    warmup_ns: int  # building (tracing) and warming up the segments
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
            for _ in range(3):
                timed_call(segment, x)
            _overhead_ns = int(statistics.median(timed_call(segment, x)[1] for _ in range(max(repeats, 10))))
        return _overhead_ns / 1e9


def fit_call_overhead(block_s: Sequence[float], whole_s: float) -> float:
    """The per-call overhead ``o`` with ``sum(max(b - o, 0) for b in block_s) == whole_s - o``.

    ``block_s`` and ``whole_s`` are raw medians (each one call). The left side falls faster than the right
    while two or more blocks exceed ``o``, so a root in ``[0, whole_s]`` is unique; it is found by bisection.
    0 when the blocks already sum to no more than the whole model. There is no root when a single block
    took longer than the whole model (noise, on a model whose whole run costs about one call); then the
    cheapest call measured bounds the overhead and is returned, and the blocks sum to more than the whole.
    """
    if len(block_s) < 2:
        raise ValueError("the overhead of a one-block model cannot be fitted; calibrate it instead")

    def excess(o: float) -> float:
        return sum(max(b - o, 0.0) for b in block_s) - (whole_s - o)

    low, high = 0.0, max(whole_s, 0.0)
    if excess(low) <= 0:
        return 0.0
    if excess(high) > 0:
        return max(min(*block_s, whole_s), 0.0)
    for _ in range(64):
        middle = (low + high) / 2
        low, high = (middle, high) if excess(middle) > 0 else (low, middle)
    return (low + high) / 2


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

    n = len(graph.blocks)
    # The blocks in chain order, the whole model, and the held-out halves (the model cut in the middle, each
    # half one call; not used to fit anything).
    halves = [(0, (n - 1) // 2), ((n - 1) // 2 + 1, n - 1)] if n >= 2 else []
    ranges = [(k, k) for k in range(n)] + [(0, n - 1), *halves]
    total_steps = len(ranges) + repeats
    step = 0

    def advance() -> None:
        nonlocal step
        step += 1
        if progress is not None:
            progress(step, total_steps)

    # Build (trace) and warm up every segment. boundary[k] is the input of block k: the real output of
    # block k - 1.
    boundary: list[Any] = [x]
    output_bytes: list[int] = []
    segments: list[Segment] = []
    warmup_start = time.perf_counter_ns()
    for first, last in ranges:
        segment = get_segment(graph, first, last)
        for _ in range(warmup):
            output, _ = timed_call(segment, boundary[first])
        if first == last == len(boundary) - 1:
            boundary.append(output)
            output_bytes.append(_output_bytes(output))
        segments.append(segment)
        advance()
    warmup_ns = time.perf_counter_ns() - warmup_start

    # Interleaved rounds, each calling every segment once: a slow spell of a shared machine then slows every
    # segment alike instead of the few measured during it.
    samples: list[list[int]] = [[] for _ in ranges]
    for _ in range(repeats):
        for i, (first, _) in enumerate(ranges):
            samples[i].append(timed_call(segments[i], boundary[first])[1])
        advance()
    medians_s = [statistics.median(s) / 1e9 for s in samples]
    whole_raw_s, halves_raw_s = medians_s[n], medians_s[n + 1 :]

    overhead_s = fit_call_overhead(medians_s[:n], whole_raw_s) if n >= 2 else calibrate_call_overhead()

    def corrected(seconds: float) -> float:
        return max(seconds - overhead_s, 0.0)

    blocks = [
        BlockTiming(
            index=k,
            first_layer=block.first_layer,
            last_layer=block.last_layer,
            first_layer_name=block.first_layer_name,
            last_layer_name=block.last_layer_name,
            median_s=corrected(medians_s[k]),
            p10_s=corrected(_percentile(samples[k], 10) / 1e9),
            p90_s=corrected(_percentile(samples[k], 90) / 1e9),
            output_bytes=output_bytes[k],
        )
        for k, block in enumerate(graph.blocks)
    ]
    held_out = [
        SegmentCheck(
            first_block=first,
            last_block=last,
            predicted_s=sum(b.median_s for b in blocks[first : last + 1]),
            measured_s=corrected(raw_s),
        )
        for (first, last), raw_s in zip(halves, halves_raw_s, strict=True)
    ]
    data = BenchmarkData(
        resource=resource,
        model_name=model_name,
        model_digest=graph.digest,
        input_shape=list(shape),
        input_bytes=encoded_size(x),
        execution_mode=EXECUTION_MODE,
        repeats=repeats,
        blocks=blocks,
        whole_model_median_s=corrected(whole_raw_s),
        call_overhead_s=overhead_s,
        held_out=held_out,
    )
    stats = BenchmarkStats(
        wall_ns=time.perf_counter_ns() - wall_start,
        timed_ns=sum(map(sum, samples)),
        warmup_ns=warmup_ns,
        timed_calls=repeats * len(ranges),
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

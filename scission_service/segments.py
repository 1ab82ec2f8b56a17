"""Sub-models for contiguous block ranges, and their compiled execution (DESIGN §5.2, §5.6).

A segment ``[a, b]`` runs blocks ``a..b``: its input is the boundary tensor entering block ``a`` (the model
inputs for ``a = 0``) and its output the tensor leaving block ``b`` (the model outputs for the last block).
Segments are ``keras.Model`` objects that share the full model's layers and weights, so chaining the segments
of any partition reproduces the full model.

Execution mode (used by benchmarking *and* by segment execution, so measurements predict execution):
each segment is called as ``model(x, training=False)`` inside a ``tf.function`` traced once (batch dimension
free) when the segment is built; its concrete function is then called directly. Compared with eager calls
this removes per-layer Python dispatch (which would overcharge blocks made of many tiny layers); compared
with ``predict_on_batch`` it avoids the per-call data-adapter set-up, which costs about a millisecond on
every call and would dominate small blocks. Segments are cached per (model digest, a, b).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from scission_service.graph import ModelGraph  # noqa: E402
from scission_service.models import BUILD_LOCK  # noqa: E402

EXECUTION_MODE = "tf.function(model(x, training=False))"
SegmentOutput = np.ndarray | list[np.ndarray]

_CACHE_SIZE = 256


class _DropRetracingNotice(logging.Filter):
    """Every new segment traces once by design; TensorFlow's "excessive retracing" notice is noise here."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


tf.get_logger().addFilter(_DropRetracingNotice())
_cache: OrderedDict[tuple[str, int, int], Segment] = OrderedDict()
_cache_lock = threading.Lock()


class SegmentError(ValueError):
    """A segment request is invalid (block range, input shape or dtype); the message says what to fix."""


@dataclass(eq=False)
class Segment:
    """A compiled sub-model running blocks ``first_block..last_block`` of one model."""

    first_block: int
    last_block: int
    model: keras.Model
    function: Callable[[Any], Any]
    input_specs: tuple[tuple[tuple[int | None, ...], str], ...]

    def __call__(self, inputs: np.ndarray | Sequence[np.ndarray]) -> SegmentOutput:
        """Run the segment on numpy input(s); return numpy output(s) (a list for several outputs)."""
        return self.execute(self.check_inputs(inputs))

    def execute(self, arrays: list[np.ndarray]) -> SegmentOutput:
        """Run on already checked inputs (see :meth:`check_inputs`)."""
        feed = arrays[0] if len(arrays) == 1 else arrays
        result = self.function(tf.nest.map_structure(tf.convert_to_tensor, feed))
        flat = tf.nest.flatten(result)
        outputs = [t.numpy() for t in flat]
        return outputs[0] if len(outputs) == 1 else outputs

    def check_inputs(self, inputs: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
        """Validate input count, rank, shape (batch free) and dtype against the segment's inputs."""
        arrays = [inputs] if isinstance(inputs, np.ndarray) else list(inputs)
        if len(arrays) != len(self.input_specs):
            raise SegmentError(
                f"segment [{self.first_block}, {self.last_block}] takes {len(self.input_specs)} input(s), "
                f"got {len(arrays)}"
            )
        checked = []
        for position, (array, (shape, dtype)) in enumerate(zip(arrays, self.input_specs, strict=True)):
            if not isinstance(array, np.ndarray):
                raise SegmentError(f"input {position} must be a numpy array, got {type(array).__name__}")
            expected = "x".join("N" if d is None else str(d) for d in shape)
            if array.ndim != len(shape) or any(
                d is not None and d != a for d, a in zip(shape, array.shape, strict=True)
            ):
                raise SegmentError(
                    f"segment [{self.first_block}, {self.last_block}] input {position} must have shape "
                    f"{expected}, got {'x'.join(map(str, array.shape))}"
                )
            if array.shape and array.shape[0] == 0:
                raise SegmentError("the batch dimension must be at least 1")
            if array.dtype != np.dtype(dtype):
                if np.can_cast(array.dtype, np.dtype(dtype), casting="same_kind"):
                    array = array.astype(dtype)
                else:
                    raise SegmentError(
                        f"segment [{self.first_block}, {self.last_block}] input {position} must be {dtype}, "
                        f"got {array.dtype}"
                    )
            checked.append(array)
        return checked


def _check_range(graph: ModelGraph, first_block: int, last_block: int) -> None:
    n = len(graph.blocks)
    for label, value in (("first_block", first_block), ("last_block", last_block)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise SegmentError(f"{label} must be an integer, got {value!r}")
    if not 0 <= first_block <= last_block < n:
        raise SegmentError(
            f"block range [{first_block}, {last_block}] is invalid; need 0 <= first <= last <= {n - 1}"
        )


def build_segment_model(graph: ModelGraph, first_block: int, last_block: int) -> keras.Model:
    """Build (uncached) the ``keras.Model`` running blocks ``first_block..last_block`` of ``graph.model``."""
    _check_range(graph, first_block, last_block)
    inputs = list(graph.boundaries[first_block])
    outputs = list(graph.boundaries[last_block + 1])
    name = f"{graph.model.name}_blocks_{first_block}_{last_block}"
    with BUILD_LOCK:
        return keras.Model(
            inputs=inputs[0] if len(inputs) == 1 else inputs,
            outputs=outputs[0] if len(outputs) == 1 else outputs,
            name=name,
        )


def get_segment(graph: ModelGraph, first_block: int, last_block: int) -> Segment:
    """The cached compiled segment for blocks ``first_block..last_block`` (key: model digest, a, b)."""
    _check_range(graph, first_block, last_block)
    key = (graph.digest, first_block, last_block)
    with _cache_lock:
        segment = _cache.get(key)
        if segment is not None:
            _cache.move_to_end(key)
            return segment
    sub_model = build_segment_model(graph, first_block, last_block)
    specs = tuple((tuple(t.shape), str(t.dtype)) for t in sub_model.inputs)
    # One trace per segment: the batch dimension is left free in the signature.
    tensor_specs = [tf.TensorSpec((None, *shape[1:]), dtype) for shape, dtype in specs]
    signature = [tensor_specs[0] if len(tensor_specs) == 1 else tensor_specs]

    @tf.function(input_signature=signature)
    def function(x: Any) -> Any:
        return sub_model(x, training=False)

    with BUILD_LOCK:  # trace now; calling the concrete function skips tf.function's argument binding
        concrete = function.get_concrete_function()
    segment = Segment(first_block, last_block, sub_model, concrete, specs)
    with _cache_lock:
        existing = _cache.get(key)
        if existing is not None:
            return existing
        _cache[key] = segment
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return segment


def clear_segment_cache() -> None:
    """Drop every cached segment (frees their sub-models)."""
    with _cache_lock:
        _cache.clear()


def timed_call(segment: Segment, inputs: np.ndarray | Sequence[np.ndarray]) -> tuple[SegmentOutput, int]:
    """Run ``segment`` once; return its numpy output and the elapsed ``perf_counter_ns``."""
    arrays = segment.check_inputs(inputs)
    start = time.perf_counter_ns()
    output = segment.execute(arrays)
    return output, time.perf_counter_ns() - start


def run_partition(
    graph: ModelGraph, cuts: Sequence[int], inputs: np.ndarray | Sequence[np.ndarray]
) -> SegmentOutput:
    """Run the whole model as a chain of segments split after each block index in ``cuts``."""
    n = len(graph.blocks)
    bounds = sorted(set(cuts))
    if any(not 0 <= c < n - 1 for c in bounds):
        raise SegmentError(f"cuts must be block indices in [0, {n - 2}], got {list(cuts)}")
    starts = [0, *(c + 1 for c in bounds)]
    ends = [*bounds, n - 1]
    value: Any = inputs
    for first, last in zip(starts, ends, strict=True):
        value = get_segment(graph, first, last)(value)
    return value

"""The resource service's core: served models, describe, benchmarks, segment execution (DESIGN §5.4, §5.6).

No FastAPI here. TensorFlow only ever runs in worker threads: model loading and benchmark jobs in the single
benchmark thread, segment execution in the segment executor (``segment_workers`` threads, default 1).
Segment calls made while a benchmark runs share the CPU with it and perturb its timings; run benchmarks
before serving plans.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import keras
import numpy as np

from fhs.errors import Conflict, InvalidInput, NotFound, PayloadTooLarge
from fhs.observability import SEGMENT_SECONDS
from scission_service.benchmark_data import BenchmarkData, ResourceDescriptor
from scission_service.benchmarking import (
    benchmark_model,
    describe_resource,
    graph_for,
    run_segment,
    warm_up_segment,
)
from scission_service.graph import ModelGraph
from scission_service.models import canonical_application_name, load_model
from scission_service.resource.jobs import BenchmarkJob, BenchmarkJobs, Progress, Shape
from scission_service.resource.settings import ModelSpec, ResourceSettings
from scission_service.segments import EXECUTION_MODE, SegmentError
from scission_service.tensor_wire import ALLOWED_DTYPES, TensorWireError, decode_array, encode_array

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(eq=False)
class ServedModel:
    """A model this node serves, loaded once at start."""

    spec: ModelSpec
    model: keras.Model
    graph: ModelGraph
    digest: str
    source: str

    @property
    def name(self) -> str:
        """The model's URL name."""
        return self.spec.name

    @property
    def input_shapes(self) -> list[list[int | None]]:
        """Declared input shapes (``None`` = free dimension, e.g. the batch)."""
        return [list(t.shape) for t in self.graph.model.inputs]


@dataclass(frozen=True)
class SegmentResult:
    """The output of one segment call, ready to send."""

    body: bytes
    compute_s: float
    output_shape: tuple[int, ...]
    output_dtype: str


def _describe_source(spec: ModelSpec) -> str:
    if spec.path is not None:
        return f"file {spec.path.name}"  # never the node's directory layout
    options = [f"alpha={spec.alpha:g}"] if spec.alpha is not None else []
    if spec.input_shape is not None:
        options.append("input_shape=" + "x".join(map(str, spec.input_shape)))
    options.append(f"seed={spec.seed}")
    return f"keras.applications.{canonical_application_name(str(spec.application))}({', '.join(options)})"


def load_served_model(spec: ModelSpec) -> ServedModel:
    """Build or load one model (TensorFlow: call from a worker thread) and analyse its partition points."""
    if spec.path is not None:
        model = load_model(spec.path)
    else:
        model = load_model(
            str(spec.application), seed=spec.seed, alpha=spec.alpha, input_shape=spec.input_shape
        )
    graph = graph_for(model)
    return ServedModel(
        spec=spec, model=model, graph=graph, digest=graph.digest, source=_describe_source(spec)
    )


class ResourceService:
    """Everything one resource node does, independent of HTTP."""

    def __init__(self, settings: ResourceSettings) -> None:
        self.settings = settings
        self._benchmark_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scission-benchmark")
        self._segment_executor = ThreadPoolExecutor(
            max_workers=settings.segment_workers, thread_name_prefix="scission-segment"
        )
        self.jobs = BenchmarkJobs(
            executor=self._benchmark_executor,
            runner=self._run_benchmark,
            jobs_kept=settings.jobs_kept,
            cache_dir=settings.cache_dir,
        )
        self.models: dict[str, ServedModel] = {}
        self.resource: ResourceDescriptor | None = None
        self.segment_slots = asyncio.Semaphore(settings.max_concurrent_segments)
        self._warmed: set[tuple[str, int, int]] = set()

    @property
    def benchmark_executor(self) -> ThreadPoolExecutor:
        """The single thread benchmark jobs (and model loading) run in."""
        return self._benchmark_executor

    async def _in_thread(self, executor: ThreadPoolExecutor, function: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(executor, function, *args)

    async def start(self) -> None:
        """Load every configured model and describe this machine (in the worker thread)."""
        for spec in self.settings.models:
            served: ServedModel = await self._in_thread(self._benchmark_executor, load_served_model, spec)
            self.models[spec.name] = served
            log.info(
                "serving %s (%s): %s, %d blocks",
                spec.name,
                served.source,
                served.digest,
                len(served.graph.blocks),
            )
        self.resource = await self._in_thread(
            self._benchmark_executor,
            lambda: describe_resource(name=self.settings.name, tier=self.settings.tier),
        )
        assert self.resource is not None
        loaded = self.jobs.load_cache(
            digests={m.digest for m in self.models.values()}, resource=self.resource
        )
        if loaded:
            log.info("loaded %d cached benchmark(s) from %s", loaded, self.settings.cache_dir)

    async def close(self) -> None:
        """Stop benchmark jobs and the worker threads."""
        await self.jobs.close()
        self._benchmark_executor.shutdown(wait=False, cancel_futures=True)
        self._segment_executor.shutdown(wait=False, cancel_futures=True)

    # --- describe ----------------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """Tier, name, hardware, served models (digests, blocks, benchmarks), limits and link profile."""
        link = self.settings.link
        return {
            "name": self.settings.name,
            "tier": self.settings.tier,
            "hardware": self.resource.model_dump() if self.resource is not None else None,
            "execution_mode": EXECUTION_MODE,
            "models": [
                {
                    "name": m.name,
                    "digest": m.digest,
                    "blocks": len(m.graph.blocks),
                    "input_shapes": m.input_shapes,
                    "source": m.source,
                    "benchmarked_input_shapes": self.jobs.cached_shapes(digest=m.digest),
                }
                for m in self.models.values()
            ],
            "limits": {
                "max_tensor_bytes": self.settings.max_tensor_bytes,
                "dtypes": self.settings.allowed_dtypes,
            },
            "link": link.model_dump() if link is not None else None,
        }

    def model(self, name: str) -> ServedModel:
        """The served model ``name`` (404 naming the served models otherwise)."""
        served = self.models.get(name)
        if served is None:
            raise NotFound(f"model {name[:64]!r} is not served here; served models: {', '.join(self.models)}")
        return served

    # --- benchmarks --------------------------------------------------------------------------------

    def resolve_input_shape(self, served: ServedModel, given: Sequence[int] | None) -> Shape:
        """The full benchmark input shape (batch first) for ``given`` (with or without batch), or 422."""
        inputs = served.graph.model.inputs
        if len(inputs) != 1:
            raise InvalidInput(f"model {served.name!r} has {len(inputs)} inputs; benchmarks need exactly one")
        declared = tuple(inputs[0].shape)
        if given is None:
            shape: tuple[Any, ...] = (1, *declared[1:])
        elif len(given) == len(declared) - 1:
            shape = (1, *given)
        else:
            shape = tuple(given)
        shown = ["N" if d is None else d for d in declared]
        if any(d is None for d in shape):
            raise InvalidInput(f"model {served.name!r} has free input dimensions {shown}; give input_shape")
        if len(shape) != len(declared) or any(
            d is not None and d != s for d, s in zip(declared[1:], shape[1:], strict=True)
        ):
            raise InvalidInput(
                f"input_shape {list(shape)} does not fit model {served.name!r}, whose input is {shown}"
            )
        if any(not isinstance(d, int) or d <= 0 for d in shape):
            raise InvalidInput(f"input_shape must be positive integers, got {list(shape)}")
        nbytes = math.prod(shape) * np.dtype(str(inputs[0].dtype)).itemsize
        if nbytes > self.settings.max_tensor_bytes:
            raise InvalidInput(
                f"an input of shape {list(shape)} is {nbytes} bytes, over this node's tensor limit "
                f"({self.settings.max_tensor_bytes} bytes)"
            )
        return tuple(int(d) for d in shape)

    def start_benchmark(
        self, *, model: str, input_shape: Sequence[int] | None, repeats: int | None, force: bool = False
    ) -> tuple[BenchmarkJob, bool]:
        """Queue a benchmark job (or join the model's running one, or answer from cache)."""
        served = self.model(model)
        shape = self.resolve_input_shape(served, input_shape)
        count = self.settings.benchmark_default_repeats if repeats is None else repeats
        if not 1 <= count <= self.settings.benchmark_max_repeats:
            raise InvalidInput(
                f"repeats must be between 1 and {self.settings.benchmark_max_repeats}, got {count}"
            )
        return self.jobs.submit(
            model=served.name, digest=served.digest, input_shape=shape, repeats=count, force=force
        )

    def _emulate_slower_hardware(self, seconds: float) -> float:
        """Stretch a measured compute time by ``compute_slowdown`` (sleeping the difference here)."""
        factor = self.settings.compute_slowdown
        if factor > 1.0:
            time.sleep(seconds * (factor - 1.0))
        return seconds * factor

    def _run_benchmark(self, job: BenchmarkJob, progress: Progress) -> BenchmarkData:
        served = self.models[job.model]
        data = benchmark_model(
            served.model,
            model_name=served.name,
            resource_name=self.settings.name,
            tier=self.settings.tier,
            input_shape=job.input_shape,
            repeats=job.repeats,
            progress=progress,
        )
        factor = self.settings.compute_slowdown
        if factor == 1.0:
            return data
        blocks = [
            b.model_copy(
                update={"median_s": b.median_s * factor, "p10_s": b.p10_s * factor, "p90_s": b.p90_s * factor}
            )
            for b in data.blocks
        ]
        whole = data.whole_model_median_s * factor if data.whole_model_median_s is not None else None
        held_out = [
            c.model_copy(update={"predicted_s": c.predicted_s * factor, "measured_s": c.measured_s * factor})
            for c in data.held_out
        ]
        return data.model_copy(
            update={
                "blocks": blocks,
                "whole_model_median_s": whole,
                "held_out": held_out,
                "call_overhead_s": data.call_overhead_s * factor,  # stretched like every executed call
                "execution_mode": f"{data.execution_mode} x{factor:g} (emulated)",
            }
        )

    def benchmark_data(self, *, model: str, input_shape: Sequence[int] | None) -> BenchmarkData:
        """The cached BenchmarkData of ``model`` at ``input_shape`` (404 saying how to start a benchmark)."""
        served = self.model(model)
        shape = self.resolve_input_shape(served, input_shape)
        data = self.jobs.result(digest=served.digest, input_shape=shape)
        if data is None:
            raise NotFound(
                f"no benchmark of model {served.name!r} at input shape {list(shape)} on this node yet; "
                f'start one with POST /benchmarks {{"model": "{served.name}", '
                f'"input_shape": {list(shape[1:])}}} and poll '
                "GET /benchmarks/{job_id} until it has succeeded",
                model=served.name,
                input_shape=list(shape),
            )
        return data

    # --- segments ----------------------------------------------------------------------------------

    def segment_target(
        self, *, model: str, first_block: int, last_block: int, model_digest: str | None
    ) -> ServedModel:
        """Check a segment request before its body is read: model (404), digest (409), block range (422)."""
        served = self.model(model)
        if not model_digest:
            raise InvalidInput(
                f"missing X-Model-Digest header: send the digest of model {served.name!r} the plan was "
                "made for (GET /describe or the BenchmarkData's model_digest)"
            )
        if model_digest.strip() != served.digest:
            raise Conflict(
                f"model digest mismatch for {served.name!r}: this node serves {served.digest}, the "
                f"request is for {model_digest.strip()[:100]}; segments of different weights never mix — "
                "re-plan with current benchmark data",
                served_digest=served.digest,
            )
        n = len(served.graph.blocks)
        if not 0 <= first_block <= last_block < n:
            raise InvalidInput(
                f"block range [{first_block}, {last_block}] is invalid for {served.name!r}: need "
                f"0 <= first_block <= last_block <= {n - 1}"
            )
        return served

    def decode_input(self, body: bytes) -> np.ndarray:
        """Parse the ``.npy`` request body (no pickle; dtype allow-list; 413 over the tensor limit)."""
        try:
            array = decode_array(
                body, max_bytes=max(len(body), 1), allowed_dtypes=self.settings.allowed_dtypes
            )
        except TensorWireError as exc:
            raise InvalidInput(f"input tensor refused: {exc}") from None
        if array.nbytes > self.settings.max_tensor_bytes:
            raise PayloadTooLarge(
                f"input tensor holds {array.nbytes} bytes; this node accepts at most "
                f"{self.settings.max_tensor_bytes} bytes"
            )
        return array

    async def run_segment(
        self, *, served: ServedModel, first_block: int, last_block: int, array: np.ndarray
    ) -> SegmentResult:
        """Run blocks ``first_block..last_block`` on ``array`` in a worker thread (warm-up on first use)."""
        result: SegmentResult = await self._in_thread(
            self._segment_executor, self._execute, served, first_block, last_block, array
        )
        return result

    def _execute(
        self, served: ServedModel, first_block: int, last_block: int, array: np.ndarray
    ) -> SegmentResult:
        key = (served.digest, first_block, last_block)
        try:
            if key not in self._warmed:
                warm_up_segment(served.model, first_block=first_block, last_block=last_block)
                self._warmed.add(key)
            output, seconds = run_segment(
                served.model, first_block=first_block, last_block=last_block, inputs=array
            )
            seconds = self._emulate_slower_hardware(seconds)
            SEGMENT_SECONDS.observe(seconds)
        except SegmentError as exc:
            raise InvalidInput(str(exc)) from None
        if isinstance(output, list):
            raise InvalidInput(
                f"blocks [{first_block}, {last_block}] of {served.name!r} produce {len(output)} tensors; "
                "only segments with one output tensor can be sent (end the segment before the heads fork)"
            )
        if output.nbytes > self.settings.max_tensor_bytes:
            raise PayloadTooLarge(
                f"the output of blocks [{first_block}, {last_block}] is {output.nbytes} bytes, over this "
                f"node's tensor limit ({self.settings.max_tensor_bytes} bytes); use a smaller batch"
            )
        try:
            body = encode_array(
                output, max_bytes=self.settings.max_tensor_bytes, allowed_dtypes=ALLOWED_DTYPES
            )
        except TensorWireError as exc:
            raise InvalidInput(f"the segment output cannot be sent: {exc}") from None
        return SegmentResult(
            body=body, compute_s=seconds, output_shape=output.shape, output_dtype=output.dtype.name
        )

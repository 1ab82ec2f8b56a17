"""Benchmark jobs of a resource service: one worker thread, one job per model at a time, cached results.

A job runs :func:`scission_service.benchmarking.benchmark_model` in the benchmark executor (a single thread,
so jobs never disturb each other's timings and TensorFlow never runs on the event loop). Results are cached
by (model digest, input shape), optionally persisted as BenchmarkData JSON files, and reloaded at start only
when the file's model digest *and* resource descriptor still match this node. No FastAPI in here.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fhs.errors import Conflict, NotFound
from scission_service.benchmark_data import (
    BenchmarkData,
    BenchmarkDataError,
    ResourceDescriptor,
    dump_benchmark_data,
    load_benchmark_data,
)

log = logging.getLogger(__name__)

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
Shape = tuple[int, ...]
Progress = Callable[[int, int], None]
BenchmarkRunner = Callable[["BenchmarkJob", Progress], BenchmarkData]
"""Runs one job in the worker thread, reporting (done, total) steps; raises ValueError for bad input."""


class JobCancelled(Exception):
    """Raised inside a running job when the service shuts down."""


@dataclass
class BenchmarkJob:
    """One benchmark of one model at one input shape."""

    id: str
    model: str
    model_digest: str
    input_shape: Shape
    repeats: int
    status: JobStatus = "queued"
    cached: bool = False
    done_steps: int = 0
    total_steps: int = 0
    error: str | None = None
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    cancel_requested: bool = False

    @property
    def active(self) -> bool:
        """Queued or running."""
        return self.status in ("queued", "running")

    def read(self) -> dict[str, Any]:
        """The job as its status endpoint shows it."""
        return {
            "id": self.id,
            "model": self.model,
            "model_digest": self.model_digest,
            "input_shape": list(self.input_shape),
            "repeats": self.repeats,
            "status": self.status,
            "cached": self.cached,
            "progress": {
                "done": self.done_steps,
                "total": self.total_steps,
                "fraction": (self.done_steps / self.total_steps) if self.total_steps else 0.0,
            },
            "error": self.error,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }


def _cache_file_name(digest: str, shape: Shape) -> str:
    key = hashlib.sha256(f"{digest}|{list(shape)}".encode()).hexdigest()[:32]
    return f"benchmark-{key}.json"


class BenchmarkJobs:
    """The job table, the result cache and the single benchmark worker thread."""

    def __init__(
        self,
        *,
        executor: Executor,
        runner: BenchmarkRunner,
        jobs_kept: int = 100,
        cache_dir: Path | None = None,
    ) -> None:
        self._executor = executor
        self._runner = runner
        self._jobs_kept = jobs_kept
        self._cache_dir = cache_dir
        self._jobs: OrderedDict[str, BenchmarkJob] = OrderedDict()
        self._results: dict[tuple[str, Shape], BenchmarkData] = {}
        self._lock = threading.Lock()
        self._futures: set[asyncio.Future[None]] = set()

    # --- cache -------------------------------------------------------------------------------------

    def load_cache(self, *, digests: set[str], resource: ResourceDescriptor) -> int:
        """Load persisted results for these model digests measured on this very resource; return the count."""
        if self._cache_dir is None or not self._cache_dir.is_dir():
            return 0
        loaded = 0
        for path in sorted(self._cache_dir.glob("benchmark-*.json")):
            try:
                data = load_benchmark_data(path)
            except (BenchmarkDataError, OSError) as exc:
                log.warning("ignoring cached benchmark %s: %s", path.name, exc)
                continue
            if data.model_digest in digests and data.resource == resource:
                self._results[(data.model_digest, tuple(data.input_shape))] = data
                loaded += 1
        return loaded

    def result(self, *, digest: str, input_shape: Shape) -> BenchmarkData | None:
        """The cached BenchmarkData for (digest, input shape), if any."""
        with self._lock:
            return self._results.get((digest, tuple(input_shape)))

    def cached_shapes(self, *, digest: str) -> list[list[int]]:
        """Input shapes with a cached result for this digest."""
        with self._lock:
            return sorted(list(shape) for d, shape in self._results if d == digest)

    def _store(self, data: BenchmarkData, shape: Shape) -> None:
        with self._lock:
            self._results[(data.model_digest, shape)] = data
        if self._cache_dir is not None:
            try:
                self._cache_dir.mkdir(parents=True, exist_ok=True)
                dump_benchmark_data(data, self._cache_dir / _cache_file_name(data.model_digest, shape))
            except OSError as exc:
                log.warning("cannot persist benchmark of %s: %s", data.model_name, exc)

    # --- jobs --------------------------------------------------------------------------------------

    def status_counts(self) -> dict[str, int]:
        """How many remembered jobs are in each status (for metrics)."""
        with self._lock:
            statuses = [job.status for job in self._jobs.values()]
        return {status: statuses.count(status) for status in set(statuses)}

    def get(self, job_id: str) -> BenchmarkJob:
        """The job ``job_id`` (404 when unknown or already forgotten)."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise NotFound(
                f"no benchmark job {job_id[:64]!r} (jobs are kept in memory; the node may have restarted)"
            )
        return job

    def submit(
        self, *, model: str, digest: str, input_shape: Shape, repeats: int, force: bool = False
    ) -> tuple[BenchmarkJob, bool]:
        """Start (or join, or answer from cache) a benchmark; return the job and whether it was newly queued.

        Call from the event loop. A model has at most one active job: asking again with the same input shape
        and repeats joins it; different parameters while it is active raise ``Conflict``.
        """
        with self._lock:
            for job in self._jobs.values():
                if job.model == model and job.active:
                    if (
                        job.input_shape == input_shape
                        and job.repeats == repeats
                        and job.model_digest == digest
                    ):
                        return job, False
                    raise Conflict(
                        f"benchmark job {job.id} of model {model!r} (input shape {list(job.input_shape)}, "
                        f"{job.repeats} repeats) is {job.status}; one job per model at a time: wait for it "
                        f"(GET /benchmarks/{job.id}) or repeat its parameters to join it",
                        job_id=job.id,
                    )
            job = BenchmarkJob(
                id=secrets.token_urlsafe(12), model=model, model_digest=digest, input_shape=input_shape,
                repeats=repeats,
            )  # fmt: skip
            if not force and (digest, input_shape) in self._results:
                job.status, job.cached, job.finished_at = "succeeded", True, job.created_at
                job.done_steps = job.total_steps = 1
                self._remember(job)
                return job, False
            self._remember(job)
        future = asyncio.get_running_loop().run_in_executor(self._executor, self._run, job)
        self._futures.add(future)
        future.add_done_callback(self._futures.discard)
        return job, True

    def _remember(self, job: BenchmarkJob) -> None:
        self._jobs[job.id] = job
        while len(self._jobs) > self._jobs_kept:
            oldest = next((k for k, j in self._jobs.items() if not j.active), None)
            if oldest is None:
                break
            del self._jobs[oldest]

    def _run(self, job: BenchmarkJob) -> None:
        """Worker thread: run the job, record its outcome (never raises)."""
        if job.cancel_requested:
            job.status, job.finished_at = "cancelled", time.time()
            return
        job.status, job.started_at = "running", time.time()

        def progress(done: int, total: int) -> None:
            job.done_steps, job.total_steps = done, total
            if job.cancel_requested:
                raise JobCancelled

        try:
            data = self._runner(job, progress)
        except JobCancelled:
            job.status, job.error = "cancelled", "the resource service shut down during the benchmark"
        except ValueError as exc:  # BenchmarkError, SegmentError, ModelLoadError: the caller's input
            job.status, job.error = "failed", str(exc)[:2000]
        except Exception as exc:  # noqa: BLE001  (a job must always end with a status)
            log.exception("benchmark job %s of %s failed", job.id, job.model)
            job.status, job.error = "failed", f"internal error ({type(exc).__name__}); see the node's log"
        else:
            self._store(data, job.input_shape)
            job.status = "succeeded"
        job.finished_at = time.time()

    async def close(self, *, timeout_s: float = 10.0) -> None:
        """Cancel queued jobs, ask running ones to stop at the next block, and wait for them briefly."""
        with self._lock:
            for job in self._jobs.values():
                job.cancel_requested = True
        if self._futures:
            await asyncio.wait(list(self._futures), timeout=timeout_s)

"""Request and response shapes of the resource service API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from scission_service.resource.settings import MODEL_NAME_PATTERN


class ResourceBase(BaseModel):
    """Shared base: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")


class BenchmarkCreate(ResourceBase):
    """Start a benchmark of one served model."""

    model: str = Field(pattern=MODEL_NAME_PATTERN)
    input_shape: list[int] | None = Field(
        None, min_length=1, max_length=8, description="without the batch (e.g. [96, 96, 3]) or with it"
    )
    repeats: int | None = Field(None, ge=1)
    force: bool = Field(False, description="re-run even if a result for this input shape is cached")


class JobProgress(ResourceBase):
    """Steps done out of total (one per block, plus the whole-model run)."""

    done: int
    total: int
    fraction: float


class BenchmarkJobRead(ResourceBase):
    """A benchmark job and its state."""

    id: str
    model: str
    model_digest: str
    input_shape: list[int]
    repeats: int
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    cached: bool
    progress: JobProgress
    error: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None


class ServedModelRead(ResourceBase):
    """One served model."""

    name: str
    digest: str
    blocks: int
    input_shapes: list[list[int | None]]
    source: str
    benchmarked_input_shapes: list[list[int]]


class LimitsRead(ResourceBase):
    """What segment requests may send."""

    max_tensor_bytes: int
    dtypes: list[str]


class DescribeRead(ResourceBase):
    """This node: tier, name, hardware, models, limits and emulated link."""

    name: str
    tier: str
    hardware: dict[str, Any] | None
    execution_mode: str
    models: list[ServedModelRead]
    limits: LimitsRead
    link: dict[str, Any] | None

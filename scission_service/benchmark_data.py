"""BenchmarkData: the versioned JSON document a benchmark produces and the planner consumes.

Pure module (pydantic only, no TensorFlow). ``BenchmarkData.model_json_schema()`` is the published
schema; :func:`load_benchmark_data` validates on load and refuses unknown schema versions.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

SCHEMA_VERSION: Final = 1
Tier = Literal["device", "edge", "cloud"]


class BenchmarkDataError(ValueError):
    """A BenchmarkData document is invalid; the message says what to fix."""


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ResourceDescriptor(_Base):
    """The machine a benchmark ran on."""

    name: str = Field(min_length=1, max_length=200)
    tier: Tier
    cpu_model: str = ""
    cores: int = Field(0, ge=0)
    memory_bytes: int = Field(0, ge=0)
    tensorflow_version: str = ""
    accelerator: str = "none"


class BlockTiming(_Base):
    """One block: the span between two consecutive partition points, and its measured time."""

    index: int = Field(ge=0)
    first_layer: int = Field(ge=0)
    last_layer: int = Field(ge=0)
    first_layer_name: str = ""
    last_layer_name: str = ""
    median_s: float = Field(ge=0)
    p10_s: float = Field(ge=0)
    p90_s: float = Field(ge=0)
    output_bytes: int = Field(ge=0)


class BenchmarkData(_Base):
    """Per-block timings of one model on one resource (schema version 1)."""

    schema_version: Literal[1] = SCHEMA_VERSION
    resource: ResourceDescriptor
    model_name: str = Field(min_length=1, max_length=200)
    model_digest: str = Field(min_length=1, max_length=200)
    input_shape: list[int] = Field(default_factory=list)
    input_bytes: int = Field(ge=0)
    execution_mode: str = "unknown"
    repeats: int = Field(0, ge=0)
    blocks: list[BlockTiming] = Field(min_length=1)
    whole_model_median_s: float | None = Field(None, ge=0)
    call_overhead_s: float = Field(0.0, ge=0)  # calibrated per-call overhead already subtracted from times
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    source: str = "fedscission"

    @model_validator(mode="after")
    def _blocks_are_contiguous(self) -> BenchmarkData:
        for position, block in enumerate(self.blocks):
            if block.index != position:
                raise ValueError(f"block {position} has index {block.index}; blocks must be numbered 0..n-1")
            if block.last_layer < block.first_layer:
                raise ValueError(f"block {position} ends (layer {block.last_layer}) before it starts")
            if position and block.first_layer <= self.blocks[position - 1].last_layer:
                raise ValueError(f"block {position} overlaps block {position - 1}")
        return self

    @property
    def block_sum_s(self) -> float:
        """Sum of the block medians (compare with ``whole_model_median_s``)."""
        return sum(block.median_s for block in self.blocks)


def parse_benchmark_data(text: str | bytes) -> BenchmarkData:
    """Validate a JSON document; raise :class:`BenchmarkDataError` with a readable message."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BenchmarkDataError(f"not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise BenchmarkDataError("a BenchmarkData document must be a JSON object")
    version = raw.get("schema_version")
    if version != SCHEMA_VERSION:
        raise BenchmarkDataError(f"unsupported schema_version {version!r}; expected {SCHEMA_VERSION}")
    try:
        return BenchmarkData.model_validate(raw)
    except ValidationError as exc:
        raise BenchmarkDataError(f"invalid BenchmarkData: {exc}") from None


def load_benchmark_data(path: Path) -> BenchmarkData:
    """Read and validate a BenchmarkData JSON file."""
    return parse_benchmark_data(Path(path).read_bytes())


def dump_benchmark_data(data: BenchmarkData, path: Path) -> None:
    """Write ``data`` as indented JSON."""
    Path(path).write_text(data.model_dump_json(indent=2) + "\n")

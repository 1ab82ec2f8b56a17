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

SCHEMA_VERSION: Final = 2
#: Versions this code reads: 1 lacks ``held_out`` and had its call overhead measured on an identity model.
READABLE_VERSIONS: Final = (1, 2)
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


class SegmentCheck(_Base):
    """A segment timed as one call apart from its blocks: does the sum of its blocks predict it?"""

    first_block: int = Field(ge=0)
    last_block: int = Field(ge=0)
    predicted_s: float = Field(ge=0)
    measured_s: float = Field(ge=0)

    @property
    def error(self) -> float | None:
        """Relative error of the prediction (None when nothing measurable was left)."""
        return None if self.measured_s <= 0 else (self.predicted_s - self.measured_s) / self.measured_s


class BenchmarkData(_Base):
    """Per-block timings of one model on one resource (schema version 2)."""

    schema_version: Literal[1, 2] = SCHEMA_VERSION
    resource: ResourceDescriptor
    model_name: str = Field(min_length=1, max_length=200)
    model_digest: str = Field(min_length=1, max_length=200)
    input_shape: list[int] = Field(default_factory=list)
    input_bytes: int = Field(ge=0)
    execution_mode: str = "unknown"
    repeats: int = Field(0, ge=0)
    blocks: list[BlockTiming] = Field(min_length=1)
    whole_model_median_s: float | None = Field(None, ge=0)
    call_overhead_s: float = Field(0.0, ge=0)  # per-call overhead already subtracted from every time
    held_out: list[SegmentCheck] = Field(default_factory=list)  # checks of the model cut in the middle
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
        for check in self.held_out:
            if not check.first_block <= check.last_block < len(self.blocks):
                raise ValueError(
                    f"held_out segment {check.first_block}-{check.last_block} is not a block range"
                )
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
    if version not in READABLE_VERSIONS:
        expected = " or ".join(map(str, READABLE_VERSIONS))
        raise BenchmarkDataError(f"unsupported schema_version {version!r}; expected {expected}")
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

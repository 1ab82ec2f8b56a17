"""The planner's query language: a pydantic model whose JSON schema is published (``query_json_schema``)."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Tier = Literal["device", "edge", "cloud"]
Objective = Literal["latency", "transfer", "weighted"]
MAX_TOP = 1000


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Pin(_Base):
    """Pin one layer or block to a tier or resource (``forbid``: keep it away from there)."""

    layer: int | None = Field(None, ge=0, description="Keras layer index (the block containing it is pinned)")
    block: int | None = Field(None, ge=0, description="block index")
    tier: Tier | None = None
    resource: str | None = Field(None, min_length=1, max_length=200)
    forbid: bool = False

    @model_validator(mode="after")
    def _one_target(self) -> Pin:
        if (self.layer is None) == (self.block is None):
            raise ValueError("a pin names exactly one of 'layer' or 'block'")
        if (self.tier is None) == (self.resource is None):
            raise ValueError("a pin names exactly one of 'tier' or 'resource'")
        return self

    def describe(self) -> str:
        """Human wording of the pin."""
        what = f"layer {self.layer}" if self.layer is not None else f"block {self.block}"
        where = f"tier {self.tier}" if self.tier is not None else f"resource {self.resource!r}"
        return f"{what} {'not on' if self.forbid else 'on'} {where}"


class ComputeCap(_Base):
    """Cap the compute time of one tier: absolute seconds or a percentage of the plan's total compute."""

    tier: Tier
    max_seconds: float | None = Field(None, ge=0, allow_inf_nan=False)
    max_percent: float | None = Field(None, ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _one_limit(self) -> ComputeCap:
        if (self.max_seconds is None) == (self.max_percent is None):
            raise ValueError("a compute cap sets exactly one of 'max_seconds' or 'max_percent'")
        return self

    def describe(self) -> str:
        """Human wording of the cap."""
        if self.max_seconds is not None:
            return f"{self.tier} compute <= {self.max_seconds:g} s"
        return f"{self.tier} compute <= {self.max_percent:g}% of total compute"


class PlanQuery(_Base):
    """A partition query. All constraints are conjunctive; an empty query asks for the fastest plans."""

    objective: Objective = "latency"
    latency_weight: float = Field(1.0, ge=0, allow_inf_nan=False, description="weighted: per second")
    transfer_weight: float = Field(0.0, ge=0, allow_inf_nan=False, description="weighted: per MB (1e6 B)")
    top: int = Field(5, ge=1, le=MAX_TOP)
    source: str | None = Field(None, min_length=1, description="the device the input originates at")
    only_resources: list[str] | None = Field(None, description="allow-list of resources (source included)")
    exclude_resources: list[str] = Field(default_factory=list)
    require_resources: list[str] = Field(default_factory=list, description="must run at least one block")
    require_tiers: list[Tier] = Field(default_factory=list, description="must run at least one block")
    forbid_tiers: list[Tier] = Field(
        default_factory=list, description="runs no block (a device still sources)"
    )
    pins: list[Pin] = Field(default_factory=list)
    upload_caps_bytes: dict[str, float] = Field(
        default_factory=dict, description="resource id -> max bytes it sends in one hop"
    )
    max_total_transfer_bytes: float | None = Field(None, ge=0, allow_inf_nan=False)
    compute_caps: list[ComputeCap] = Field(default_factory=list)
    max_hops: int | None = Field(
        None, ge=0, le=64, description="max forward transfers; setting it allows several resources per tier"
    )
    max_per_tier: int | None = Field(
        None, ge=1, le=64, description="resources per tier (default 1, or unlimited when max_hops is set)"
    )

    @model_validator(mode="after")
    def _check(self) -> PlanQuery:
        for rid, cap in self.upload_caps_bytes.items():
            if not (math.isfinite(cap) and cap >= 0):
                raise ValueError(f"upload cap of {rid!r} must be a finite number >= 0 bytes")
        if self.objective == "weighted" and self.latency_weight == 0 and self.transfer_weight == 0:
            raise ValueError("a weighted objective needs a positive latency_weight or transfer_weight")
        return self

    @property
    def per_tier_limit(self) -> int | None:
        """Resources allowed per tier (None = unlimited)."""
        if self.max_per_tier is not None:
            return self.max_per_tier
        return None if self.max_hops is not None else 1


def query_json_schema() -> dict[str, Any]:
    """The published JSON schema of :class:`PlanQuery`."""
    return PlanQuery.model_json_schema()

"""What the planner answers: ranked plans, or a feasible=False result naming the constraints."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from scission_service.planner.query import Objective, Tier


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SegmentPlan(_Base):
    """A contiguous block range run on one resource."""

    resource: str
    tier: Tier
    first_block: int
    last_block: int
    first_layer: int
    last_layer: int
    compute_s: float


class HopPlan(_Base):
    """One network transfer of a plan."""

    source: str
    destination: str
    bytes: float
    transfer_s: float
    kind: Literal["forward", "return", "phantom"] = "forward"  # phantom: Scission-compat bytes, no transfer


class Plan(_Base):
    """One configuration with its predicted costs."""

    rank: int
    objective_value: float
    latency_s: float
    compute_s: float
    transfer_s: float
    transfer_bytes: float
    source: str
    segments: list[SegmentPlan]
    hops: list[HopPlan]
    tier_compute_s: dict[str, float]


class PlanResult(_Base):
    """The planner's answer. ``feasible`` is False when no configuration satisfies the query."""

    feasible: bool
    model: str
    objective: Objective
    plans: list[Plan]
    message: str
    constraints: list[str]
    conflicting_constraints: list[str]

"""Exact partition planner (pure Python; never imports TensorFlow, Keras or FastAPI)."""

from scission_service.planner.planning import compile_query, describe_constraints, plan_partitions
from scission_service.planner.problem import (
    TIERS,
    BlockSpan,
    Link,
    PlannerResource,
    PlanningProblem,
    PlanningProblemError,
    problem_from_benchmarks,
)
from scission_service.planner.query import ComputeCap, Pin, PlanQuery, query_json_schema
from scission_service.planner.result import HopPlan, Plan, PlanResult, SegmentPlan

__all__ = [
    "TIERS",
    "BlockSpan",
    "ComputeCap",
    "HopPlan",
    "Link",
    "Pin",
    "Plan",
    "PlanQuery",
    "PlanResult",
    "PlannerResource",
    "PlanningProblem",
    "PlanningProblemError",
    "SegmentPlan",
    "compile_query",
    "describe_constraints",
    "plan_partitions",
    "problem_from_benchmarks",
    "query_json_schema",
]

"""FedScission's Cedar policy files: the schema, default templates and example ALLOW/DENY requests.

Layout (STYLE #8): ``fedscission/schema.cedarschema``, ``fedscission/templates/*.cedar``,
``fedscission/policies.cedar`` (an example service policy set) and ``fedscission/{ALLOW,DENY}/*.json``.
The attribute shorthand compiler lives in :mod:`policies.compiler`; decisions are made by
:mod:`fhs.policy.service`.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

NAMESPACE = "FedScission"
POLICY_SET_DIR = Path(__file__).resolve().parent / "fedscission"
SCHEMA_PATH = POLICY_SET_DIR / "schema.cedarschema"
TEMPLATES_DIR = POLICY_SET_DIR / "templates"
TEMPLATE_NAMES = ("all-members", "owner-only", "attributes-any-of")


@cache
def schema_text() -> str:
    """The FedScission Cedar schema (human-readable schema format)."""
    return SCHEMA_PATH.read_text(encoding="utf-8")


@cache
def template_text(name: str) -> str:
    """The Cedar text of the default template ``name`` (one of :data:`TEMPLATE_NAMES`)."""
    if name not in TEMPLATE_NAMES:
        raise KeyError(f"unknown policy template {name!r}; known: {', '.join(TEMPLATE_NAMES)}")
    return (TEMPLATES_DIR / f"{name}.cedar").read_text(encoding="utf-8")

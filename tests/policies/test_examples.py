"""Every policy file validates against the schema; every ALLOW/DENY example gets its decision (STYLE #8)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cedarpy
import pytest

import policies
from fhs.policy import service as policy_service
from policies.compiler import compile_policy

ROOT = policies.POLICY_SET_DIR
POLICY_FILES = sorted(ROOT.rglob("*.cedar"))
ALLOW = sorted((ROOT / "ALLOW").glob("*.json"))
DENY = sorted((ROOT / "DENY").glob("*.json"))


def _policy_text(example: dict[str, Any]) -> str:
    if "policy" in example:
        return (ROOT / example["policy"]).read_text(encoding="utf-8")
    action = example.get("shorthand_action", example["action"]["id"])
    return compile_policy(example["shorthand"], action=action)


def _cedar_decision(example: dict[str, Any]) -> cedarpy.AuthzResult:
    request = {key: example[key] for key in ("principal", "action", "resource", "context")}
    return cedarpy.is_authorized(request, _policy_text(example), example["entities"], policies.schema_text())


def _facts(example: dict[str, Any]) -> tuple[policy_service.MemberFacts, policy_service.ServiceFacts]:
    by_uid = {(e["uid"]["type"], e["uid"]["id"]): e for e in example["entities"]}
    principal = by_uid[(example["principal"]["type"], example["principal"]["id"])]
    resource = by_uid[(example["resource"]["type"], example["resource"]["id"])]
    member = policy_service.MemberFacts(
        key=principal["uid"]["id"],
        issuer=principal["attrs"]["issuer"],
        subject=principal["attrs"]["subject"],
        home_fhs=principal["attrs"]["home_fhs"],
        attributes=frozenset(parent["id"] for parent in principal["parents"]),
    )
    attrs = resource["attrs"]
    service = policy_service.ServiceFacts(
        id=resource["uid"]["id"],
        owner_key=attrs["owner"]["__entity"]["id"],
        type=attrs["type"],
        tier=attrs["tier"],
        fhs=attrs["fhs"],
        name=attrs["name"],
    )
    return member, service


def test_schema_parses_and_declares_the_agreed_model() -> None:
    schema = str(cedarpy.Schema.from_str(policies.schema_text()))
    for name in ("Attribute", "Member", "Service", "Federation", '"discover"', '"invoke"', '"administer"'):
        assert name in schema


def test_there_are_examples_of_both_outcomes_and_every_template() -> None:
    assert len(ALLOW) >= 5 and len(DENY) >= 5
    assert {path.stem for path in (ROOT / "templates").glob("*.cedar")} == set(policies.TEMPLATE_NAMES)


@pytest.mark.parametrize("path", POLICY_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_policy_file_validates_against_schema(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    result = cedarpy.validate_policies(text, policies.schema_text())
    assert result.validation_passed, [str(error) for error in result.errors]
    if "?principal" not in text:  # slot templates are linked by the compiler, never stored as they are
        policy_service.validate_policy(text)


@pytest.mark.parametrize(
    ("path", "allowed"),
    [pytest.param(p, True, id=f"ALLOW/{p.stem}") for p in ALLOW]
    + [pytest.param(p, False, id=f"DENY/{p.stem}") for p in DENY],
)
def test_example_gets_its_decision(path: Path, allowed: bool) -> None:
    example = json.loads(path.read_text(encoding="utf-8"))
    assert example["description"]
    result = _cedar_decision(example)
    assert result.diagnostics.errors == []
    assert result.allowed is allowed, example["description"]
    labels = result.diagnostics.id_annotations_by_reason
    reasons = sorted(labels.get(pid, pid) for pid in result.diagnostics.reasons)
    if "reasons" in example:
        assert reasons == sorted(example["reasons"])
    # The FHS decision engine, building its own entities from the same facts, agrees with Cedar.
    member, service = _facts(example)
    decision = policy_service.decide(
        action=example["action"]["id"],
        member=member,
        service=service,
        policy_text=_policy_text(example),
        federation_id=example["context"]["federation"],
    )
    assert decision.allowed is allowed
    assert sorted(decision.reasons) == reasons

"""Cedar policy decisions for service discovery and invocation (DESIGN §4).

A service carries two policy sets, one per action: its discovery policy (``discover``) and its access policy
(``invoke``). Each is Cedar text validated against ``policies/fedscission/schema.cedarschema``. A decision
builds the Cedar entities for one request (the member, the attributes granted to it, the service and its
owner) and asks Cedar. Deny by default, a matching ``forbid`` beats any ``permit`` (Cedar semantics), and,
stricter than Cedar, **any evaluation error denies**: Cedar skips a policy that errors, so an erroring
``forbid`` would otherwise let a ``permit`` through.

Policy text is untrusted (service owners write it, peers replicate it), so before Cedar parses it this
module bounds its size, its number of policies and its nesting depth: deeply nested brackets overflow the
native parser's stack and would kill the process, not raise.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any, Literal

import cedarpy

import policies
from fhs.errors import InvalidInput

PolicyAction = Literal["discover", "invoke"]
ACTIONS: tuple[PolicyAction, ...] = ("discover", "invoke")

MAX_POLICY_BYTES = 64 * 1024
MAX_POLICIES = 100
MAX_NESTING = 32
MAX_IF_EXPRESSIONS = 200

_NS = policies.NAMESPACE
MEMBER_TYPE = f"{_NS}::Member"
ATTRIBUTE_TYPE = f"{_NS}::Attribute"
SERVICE_TYPE = f"{_NS}::Service"
ACTION_TYPE = f"{_NS}::Action"

# Tokens that matter for the nesting bound; string literals and comments are consumed whole so brackets
# inside them do not count.
_NESTING_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|//[^\n]*|[(\[{]|[)\]}]|\bif\b', re.DOTALL)


@dataclass(frozen=True)
class MemberFacts:
    """What a decision knows about the requesting member: identity and the attributes granted to it."""

    key: str
    issuer: str
    subject: str
    home_fhs: str
    attributes: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ServiceFacts:
    """What a decision knows about the service a member wants to discover or invoke."""

    id: str
    owner_key: str
    type: str
    tier: str
    fhs: str
    name: str


@dataclass(frozen=True)
class Decision:
    """The outcome of one policy decision.

    ``reasons`` names the policies that determined it (their ``@id`` annotation, else Cedar's ``policyN``):
    the permits that allowed, or the forbids that denied; empty for a deny by default. ``errors`` holds
    Cedar's messages when the policy could not be evaluated (the decision is then a deny).
    """

    allowed: bool
    reasons: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()

    @property
    def policy_id(self) -> str:
        """A one-string summary for the audit log: the determining policies, or why none did."""
        if self.reasons:
            return ",".join(self.reasons)
        if self.errors:
            return "error"
        return "default-deny"


@cache
def _schema() -> cedarpy.Schema:
    return cedarpy.Schema.from_str(policies.schema_text())


def _check_bounds(text: str) -> None:
    if len(text.encode("utf-8", errors="surrogatepass")) > MAX_POLICY_BYTES:
        raise InvalidInput(f"policy text is larger than {MAX_POLICY_BYTES // 1024} KiB; shorten it")
    if "\x00" in text:
        raise InvalidInput("policy text contains a NUL character")
    depth = ifs = 0
    for match in _NESTING_TOKENS.finditer(text):
        token = match.group()
        if token in "([{":
            depth += 1
            if depth > MAX_NESTING:
                raise InvalidInput(
                    f"policy nests brackets deeper than {MAX_NESTING} levels (at character {match.start()});"
                    " flatten the expression"
                )
        elif token in ")]}":
            depth = max(0, depth - 1)
        elif token == "if":
            ifs += 1
            if ifs > MAX_IF_EXPRESSIONS:
                raise InvalidInput(f"policy has more than {MAX_IF_EXPRESSIONS} if-expressions; simplify it")


def _with_annotation(message: str, policy_id: str, annotations: dict[str, str]) -> str:
    label = annotations.get(policy_id)
    return f'{message} ({policy_id} is @id("{label}"))' if label else message


def validate_policy(text: str) -> None:
    """Check that ``text`` is a Cedar policy set valid against the FedScission schema, else InvalidInput."""
    if not isinstance(text, str):
        raise InvalidInput("policy must be Cedar text (a string)")
    _check_bounds(text)
    try:
        parsed = json.loads(cedarpy.policies_to_json_str(text))
    except ValueError as exc:
        raise InvalidInput(f"policy does not parse as Cedar: {exc}", errors=[str(exc)]) from None
    if parsed.get("templates"):
        raise InvalidInput(
            "policy contains a template with ?principal/?resource slots, which authorizes nothing;"
            " write the entity in place of the slot"
        )
    count = len(parsed.get("staticPolicies", {}))
    if count > MAX_POLICIES:
        raise InvalidInput(f"policy set has {count} policies; at most {MAX_POLICIES} are allowed")
    result = cedarpy.validate_policies(text, _schema())
    if not result.validation_passed:
        annotations = result.id_annotations_by_policy_id
        messages = [_with_annotation(e.error, e.policy_id, annotations) for e in result.errors]
        raise InvalidInput(
            "policy is not valid against the FedScission Cedar schema: " + "; ".join(messages),
            errors=messages,
        )


@lru_cache(maxsize=256)
def _policy_set(text: str) -> cedarpy.PolicySet | str:
    """The parsed policy set for ``text``, or the reason it is unusable (cached per text)."""
    try:
        validate_policy(text)
        return cedarpy.PolicySet.from_str(text)
    except InvalidInput as exc:
        return f"policy rejected: {exc.message}"
    except ValueError as exc:  # pragma: no cover - validate_policy parses the same text first
        return f"policy rejected: {exc}"


def _uid(entity_type: str, entity_id: str) -> dict[str, str]:
    return {"type": entity_type, "id": entity_id}


def _member_entity(member: MemberFacts) -> dict[str, Any]:
    return {
        "uid": _uid(MEMBER_TYPE, member.key),
        "attrs": {"issuer": member.issuer, "subject": member.subject, "home_fhs": member.home_fhs},
        "parents": [_uid(ATTRIBUTE_TYPE, name) for name in sorted(member.attributes)],
    }


def _owner_entity(service: ServiceFacts) -> dict[str, Any]:
    # Only the owner's key is known here. A member registers services at its own FHS (DESIGN §2), so the
    # owner's home FHS is the service's FHS. Its attribute grants are not loaded: policies should test the
    # requesting principal's attributes, not the owner's.
    issuer, _, subject = service.owner_key.partition("#")
    return {
        "uid": _uid(MEMBER_TYPE, service.owner_key),
        "attrs": {"issuer": issuer, "subject": subject, "home_fhs": service.fhs},
        "parents": [],
    }


def _service_entity(service: ServiceFacts) -> dict[str, Any]:
    return {
        "uid": _uid(SERVICE_TYPE, service.id),
        "attrs": {
            "owner": {"__entity": _uid(MEMBER_TYPE, service.owner_key)},
            "type": service.type,
            "tier": service.tier,
            "fhs": service.fhs,
            "name": service.name,
        },
        "parents": [],
    }


def _entities(member: MemberFacts, services: Sequence[ServiceFacts]) -> list[dict[str, Any]]:
    entities: dict[tuple[str, str], dict[str, Any]] = {(MEMBER_TYPE, member.key): _member_entity(member)}
    for name in sorted(member.attributes):
        entities[(ATTRIBUTE_TYPE, name)] = {"uid": _uid(ATTRIBUTE_TYPE, name), "attrs": {}, "parents": []}
    seen: dict[str, ServiceFacts] = {}
    for service in services:
        if service.id in seen:
            if seen[service.id] != service:
                raise InvalidInput(
                    f"two different services share the id {service.id!r} in one decision batch"
                )
            continue
        seen[service.id] = service
        entities.setdefault((MEMBER_TYPE, service.owner_key), _owner_entity(service))
        entities[(SERVICE_TYPE, service.id)] = _service_entity(service)
    return list(entities.values())


def _to_decision(result: cedarpy.AuthzResult) -> Decision:
    diagnostics = result.diagnostics
    errors = tuple(str(error) for error in diagnostics.errors)
    if errors:
        return Decision(allowed=False, reasons=(), errors=errors)
    annotations = diagnostics.id_annotations_by_reason
    reasons = tuple(annotations.get(policy_id) or policy_id for policy_id in diagnostics.reasons)
    if result.decision == cedarpy.Decision.Allow:
        return Decision(allowed=True, reasons=reasons)
    if result.decision == cedarpy.Decision.Deny:
        return Decision(allowed=False, reasons=reasons)
    return Decision(allowed=False, errors=(f"Cedar reached no decision ({result.decision.value})",))


def decide_many(
    *,
    action: PolicyAction,
    member: MemberFacts,
    services: Sequence[tuple[ServiceFacts, str]],
    federation_id: str,
) -> list[Decision]:
    """Decide ``action`` by ``member`` on each (service, policy text) pair; decisions in the same order."""
    if action not in ACTIONS:
        raise InvalidInput(f"unknown policy action {action!r}; expected one of {', '.join(ACTIONS)}")
    decisions: list[Decision | None] = [None] * len(services)
    by_text: dict[str, list[int]] = {}
    for index, (_, text) in enumerate(services):
        by_text.setdefault(text, []).append(index)
    try:
        entities: cedarpy.Entities | None = cedarpy.Entities.from_json_str(
            json.dumps(_entities(member, [service for service, _ in services])), _schema()
        )
        entity_error = ""
    except ValueError as exc:
        entities, entity_error = None, f"request entities rejected: {exc}"
    context = {"federation": federation_id}
    for text, indexes in by_text.items():
        policy_set = _policy_set(text)
        if entities is None or isinstance(policy_set, str):
            failed = Decision(allowed=False, errors=(entity_error or str(policy_set),))
            for index in indexes:
                decisions[index] = failed
            continue
        requests = [
            {
                "principal": _uid(MEMBER_TYPE, member.key),
                "action": _uid(ACTION_TYPE, action),
                "resource": _uid(SERVICE_TYPE, services[index][0].id),
                "context": context,
            }
            for index in indexes
        ]
        try:
            results = cedarpy.is_authorized_batch(requests, policy_set, entities, _schema())
        except (ValueError, TypeError) as exc:  # e.g. an id that is not valid Unicode: deny, never crash
            for index in indexes:
                decisions[index] = Decision(allowed=False, errors=(f"request rejected: {exc}",))
            continue
        for index, result in zip(indexes, results, strict=True):
            decisions[index] = _to_decision(result)
    return [decision for decision in decisions if decision is not None]


def decide(
    *,
    action: PolicyAction,
    member: MemberFacts,
    service: ServiceFacts,
    policy_text: str,
    federation_id: str,
) -> Decision:
    """Decide whether ``member`` may ``action`` (discover or invoke) ``service`` under ``policy_text``."""
    return decide_many(
        action=action, member=member, services=[(service, policy_text)], federation_id=federation_id
    )[0]

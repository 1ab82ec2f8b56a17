"""Policy decisions with real Cedar: attributes, revocation, fail-closed errors, batched discovery."""

from __future__ import annotations

import pytest

from fhs.errors import InvalidInput
from fhs.policy import service as policy_service
from fhs.policy.service import Decision, MemberFacts, ServiceFacts
from policies.compiler import compile_policy

FED = "fed-1"
OWNER = MemberFacts(key="https://idp.a#owner", issuer="https://idp.a", subject="owner", home_fhs="fhs-a")


def _alice(*attributes: str) -> MemberFacts:
    return MemberFacts(
        key="https://idp.b#alice",
        issuer="https://idp.b",
        subject="alice",
        home_fhs="fhs-b",
        attributes=frozenset(attributes),
    )


def _service(service_id: str, tier: str = "edge", owner_key: str = OWNER.key) -> ServiceFacts:
    return ServiceFacts(
        id=service_id, owner_key=owner_key, type="scission.resource", tier=tier, fhs="fhs-a", name=service_id
    )


EDGE_ONLY = compile_policy({"any_of": ["edge-users"]}, action="invoke")


def test_member_with_attribute_may_invoke_and_the_decision_names_the_policy() -> None:
    decision = policy_service.decide(
        action="invoke",
        member=_alice("edge-users"),
        service=_service("s1"),
        policy_text=EDGE_ONLY,
        federation_id=FED,
    )
    assert decision == Decision(allowed=True, reasons=("attributes-any-of:edge-users",))
    assert decision.policy_id == "attributes-any-of:edge-users"


def test_revoking_the_attribute_denies_the_next_decision() -> None:
    service = _service("s1")
    before = policy_service.decide(
        action="invoke",
        member=_alice("edge-users", "gpu"),
        service=service,
        policy_text=EDGE_ONLY,
        federation_id=FED,
    )
    after = policy_service.decide(
        action="invoke", member=_alice("gpu"), service=service, policy_text=EDGE_ONLY, federation_id=FED
    )
    assert before.allowed
    assert after == Decision(allowed=False) and after.policy_id == "default-deny"


def test_an_evaluation_error_denies_even_when_a_permit_matches() -> None:
    # Cedar skips a policy that errors; an erroring forbid must not let the permit through.
    text = (
        '@id("all") permit (principal, action, resource);\n'
        '@id("overflow") forbid (principal, action, resource) when { 9223372036854775807 + 1 > 0 };'
    )
    decision = policy_service.decide(
        action="invoke", member=_alice(), service=_service("s1"), policy_text=text, federation_id=FED
    )
    assert not decision.allowed and decision.reasons == ()
    assert "integer overflow" in decision.errors[0] and decision.policy_id == "error"


@pytest.mark.parametrize(
    "text",
    [
        "permit (principal is FedScission::User, action, resource);",
        "permit (principal, action, resource) when { " + "(" * 5000 + "true" + ")" * 5000 + " };",
    ],
    ids=["schema-invalid", "deeply-nested"],
)
def test_an_unusable_stored_policy_denies_with_the_reason(text: str) -> None:
    # Text replicated from a peer has not passed our validation at registration: decide must not trust it.
    decision = policy_service.decide(
        action="discover", member=_alice(), service=_service("s1"), policy_text=text, federation_id=FED
    )
    assert not decision.allowed and decision.errors[0].startswith("policy rejected:")


def test_owner_only_recognises_the_owner_and_its_home_fhs() -> None:
    text = (
        '@id("owner-at-home") permit (principal, action, resource is FedScission::Service)\n'
        "when { resource.owner == principal && resource.owner.home_fhs == resource.fhs };"
    )
    service = _service("s1")
    owner = policy_service.decide(
        action="invoke", member=OWNER, service=service, policy_text=text, federation_id=FED
    )
    other = policy_service.decide(
        action="invoke", member=_alice(), service=service, policy_text=text, federation_id=FED
    )
    assert owner.reasons == ("owner-at-home",) and not other.allowed


def test_context_carries_the_federation() -> None:
    text = 'permit (principal, action, resource) when { context.federation == "fed-1" };'
    member, service = _alice(), _service("s1")
    assert policy_service.decide(
        action="discover", member=member, service=service, policy_text=text, federation_id="fed-1"
    ).allowed
    assert not policy_service.decide(
        action="discover", member=member, service=service, policy_text=text, federation_id="fed-2"
    ).allowed


def test_identities_with_quotes_and_newlines_are_data_not_policy() -> None:
    odd = MemberFacts(
        key='https://idp.b#x" || true || "\n',
        issuer="https://idp.b",
        subject='x" || true || "\n',
        home_fhs="fhs-b",
        attributes=frozenset({'edge" || true', "edge-users\n"}),
    )
    decision = policy_service.decide(
        action="invoke", member=odd, service=_service('s"1\n'), policy_text=EDGE_ONLY, federation_id=FED
    )
    assert decision == Decision(allowed=False)
    exact = (
        'permit (principal == FedScission::Member::"https://idp.b#x\\" || true || \\"\\n", action, resource);'
    )
    assert policy_service.decide(
        action="invoke", member=odd, service=_service("s1"), policy_text=exact, federation_id=FED
    ).allowed


def test_decide_many_matches_one_by_one_decisions_in_order() -> None:
    discover_edge = compile_policy({"any_of": ["edge-users"]}, action="discover")
    everyone = compile_policy({"template": "all-members", "deny_any_of": ["suspended"]}, action="discover")
    owner_only = compile_policy({"template": "owner-only"}, action="discover")
    cloud = 'permit (principal, action, resource is FedScission::Service) when { resource.tier == "cloud" };'
    alice_key = _alice().key
    services = [
        (_service("edge-1"), discover_edge),
        (_service("cloud-1", tier="cloud"), cloud),
        (_service("edge-2"), everyone),
        (_service("edge-3"), owner_only),
        (_service("alice-own", owner_key=alice_key), owner_only),
        (_service("edge-4"), discover_edge),
        (_service("broken"), "permit (principal, action"),
        (_service("empty"), ""),
    ]
    for member in (_alice("edge-users"), _alice("suspended"), _alice()):
        batch = policy_service.decide_many(
            action="discover", member=member, services=services, federation_id=FED
        )
        single = [
            policy_service.decide(
                action="discover", member=member, service=service, policy_text=text, federation_id=FED
            )
            for service, text in services
        ]
        assert batch == single
    allowed = policy_service.decide_many(
        action="discover", member=_alice("edge-users"), services=services, federation_id=FED
    )
    assert [d.allowed for d in allowed] == [True, True, True, False, True, True, False, False]
    suspended = policy_service.decide_many(
        action="discover", member=_alice("suspended"), services=services, federation_id=FED
    )
    assert suspended[2] == Decision(allowed=False, reasons=("deny-any-of:suspended",))


def test_decide_many_with_no_services_and_conflicting_ids() -> None:
    assert (
        policy_service.decide_many(action="discover", member=_alice(), services=[], federation_id=FED) == []
    )
    with pytest.raises(InvalidInput, match="share the id"):
        policy_service.decide_many(
            action="discover",
            member=_alice(),
            services=[(_service("s1"), EDGE_ONLY), (_service("s1", tier="cloud"), EDGE_ONLY)],
            federation_id=FED,
        )


def test_unknown_action_is_refused() -> None:
    with pytest.raises(InvalidInput, match="unknown policy action"):
        policy_service.decide(
            action="administer",  # type: ignore[arg-type]
            member=_alice(),
            service=_service("s1"),
            policy_text=EDGE_ONLY,
            federation_id=FED,
        )

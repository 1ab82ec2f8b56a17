"""The attribute shorthand compiles to valid Cedar with the intended decisions; bad specs are refused."""

from __future__ import annotations

from typing import Any

import cedarpy
import pytest

import policies
from fhs.errors import InvalidInput
from fhs.policy import service as policy_service
from fhs.policy.service import Decision, MemberFacts, PolicyAction, ServiceFacts
from policies.compiler import compile_policy

OWNER = MemberFacts(key="https://idp.a#owner", issuer="https://idp.a", subject="owner", home_fhs="fhs-a")
SERVICE = ServiceFacts(
    id="svc-1", owner_key=OWNER.key, type="scission.resource", tier="edge", fhs="fhs-a", name="edge-1"
)


def _member(*attributes: str, subject: str = "alice") -> MemberFacts:
    return MemberFacts(
        key=f"https://idp.b#{subject}",
        issuer="https://idp.b",
        subject=subject,
        home_fhs="fhs-b",
        attributes=frozenset(attributes),
    )


def _decide(text: str, member: MemberFacts, action: PolicyAction = "invoke") -> Decision:
    return policy_service.decide(
        action=action, member=member, service=SERVICE, policy_text=text, federation_id="fed-1"
    )


def test_any_of_permits_holders_of_any_attribute_and_names_the_match() -> None:
    text = compile_policy({"any_of": ["edge-users", "cloud-users"]}, action="invoke")
    assert cedarpy.validate_policies(text, policies.schema_text()).validation_passed
    assert _decide(text, _member("edge-users")).reasons == ("attributes-any-of:edge-users",)
    assert _decide(text, _member("cloud-users")).reasons == ("attributes-any-of:cloud-users",)
    both = _decide(text, _member("edge-users", "cloud-users"))
    assert both.allowed and set(both.reasons) == {
        "attributes-any-of:edge-users",
        "attributes-any-of:cloud-users",
    }
    assert _decide(text, _member("gpu")) == Decision(allowed=False)
    assert not _decide(text, _member()).allowed


def test_all_of_needs_every_attribute() -> None:
    text = compile_policy({"all_of": ["edge-users", "gpu"]}, action="discover")
    assert _decide(text, _member("edge-users", "gpu", "other"), "discover").allowed
    assert not _decide(text, _member("edge-users"), "discover").allowed
    assert not _decide(text, _member("gpu"), "discover").allowed


def test_all_members_template_permits_any_member() -> None:
    text = compile_policy({"template": "all-members"}, action="discover")
    decision = _decide(text, _member(), "discover")
    assert decision.allowed and decision.reasons == ("all-members",)


def test_owner_only_template_permits_only_the_owner() -> None:
    text = compile_policy({"template": "owner-only"}, action="invoke")
    assert _decide(text, OWNER).reasons == ("owner-only",)
    assert not _decide(text, _member("edge-users")).allowed


@pytest.mark.parametrize(
    "spec",
    [
        {"any_of": ["edge-users"], "deny_any_of": ["suspended"]},
        {"all_of": ["edge-users"], "deny_any_of": ["suspended"]},
        {"template": "all-members", "deny_any_of": ["banned", "suspended"]},
    ],
)
def test_deny_any_of_forbids_even_when_a_permit_matches(spec: dict[str, Any]) -> None:
    text = compile_policy(spec, action="invoke")
    assert _decide(text, _member("edge-users")).allowed
    denied = _decide(text, _member("edge-users", "suspended"))
    assert denied == Decision(allowed=False, reasons=("deny-any-of:suspended",))


def test_policy_compiled_for_one_action_grants_nothing_for_the_other() -> None:
    text = compile_policy({"template": "all-members"}, action="discover")
    assert _decide(text, _member(), "discover").allowed
    assert not _decide(text, _member(), "invoke").allowed


def test_duplicate_attribute_names_compile_once() -> None:
    text = compile_policy({"any_of": ["edge-users", "edge-users"]}, action="invoke")
    assert text.count("permit") == 1


def test_cedar_text_is_returned_as_is_after_validation() -> None:
    text = 'permit (principal, action, resource is FedScission::Service) when { resource.tier == "edge" };'
    assert compile_policy(text, action="invoke") == text
    assert _decide(text, _member()).allowed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("permit (principal is FedScission::User, action, resource);", "unrecognized entity type"),
        (
            "permit (principal, action, resource) when { principal.department == 1 };",
            "attribute `department`",
        ),
        ('permit (principal, action == FedScission::Action::"delete", resource);', "unrecognized action"),
        ("permit (principal, action, resource) when { resource.tier == 1 + true };", "expected Long"),
        ("permit (principal, action, resource", "does not parse"),
        ("allow everyone", "does not parse"),
        ("permit (principal in ?principal, action, resource);", "template"),
    ],
)
def test_invalid_cedar_is_refused_with_the_validator_message(text: str, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        compile_policy(text, action="invoke")
    assert message in caught.value.message
    assert caught.value.status_code == 422


def test_validator_message_names_the_annotated_policy() -> None:
    with pytest.raises(InvalidInput) as caught:
        compile_policy(
            '@id("tier-check") permit (principal, action, resource) when { resource.size > 1 };',
            action="invoke",
        )
    assert '@id("tier-check")' in caught.value.message and "attribute `size`" in caught.value.message


def test_forbid_wins_over_permit_in_cedar_text() -> None:
    text = (
        '@id("everyone") permit (principal, action, resource);\n'
        '@id("no-edge") forbid (principal, action, resource is FedScission::Service)\n'
        'when { resource.tier == "edge" };'
    )
    assert _decide(text, _member()) == Decision(allowed=False, reasons=("no-edge",))


def test_empty_policy_denies_by_default() -> None:
    assert compile_policy("", action="discover") == ""
    decision = _decide("", OWNER, "discover")
    assert decision == Decision(allowed=False) and decision.policy_id == "default-deny"


INJECTIONS = [
    'edge" || true || "',
    'x"); permit (principal, action, resource); //',
    "edge-users\n",
    "edge users",
    "édge",
    "edge\\",
    "",
    "a" * 65,
    'Attribute::"x"',
    5,
    None,
]


@pytest.mark.parametrize("key", ["any_of", "all_of", "deny_any_of"])
@pytest.mark.parametrize("name", INJECTIONS, ids=repr)
def test_hostile_attribute_names_are_refused(key: str, name: Any) -> None:
    spec: dict[str, Any] = {key: ["edge-users", name]}
    if key == "deny_any_of":
        spec["template"] = "all-members"
    with pytest.raises(InvalidInput) as caught:
        compile_policy(spec, action="invoke")
    assert "invalid attribute name" in caught.value.message


def test_longest_allowed_name_and_all_allowed_characters_compile() -> None:
    name = "A-z_0.9" + "x" * 57
    assert len(name) == 64
    text = compile_policy({"any_of": [name]}, action="invoke")
    assert _decide(text, _member(name)).allowed


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({}, "exactly one of"),
        ({"any_of": ["a"], "all_of": ["b"]}, "exactly one of"),
        ({"deny_any_of": ["banned"]}, "exactly one of"),
        ({"any_of": ["a"], "allow": ["b"]}, "unknown policy shorthand key"),
        ({"any_of": []}, "at least one"),
        ({"any_of": "edge-users"}, "must be a list"),
        ({"any_of": {"edge-users": 1}}, "must be a list"),
        ({"template": "everyone"}, "unknown policy template"),
        ({"template": "attributes-any-of"}, '{"any_of": [...]}'),
        ({"template": ["all-members"]}, "unknown policy template"),
        ({"any_of": [f"a{i}" for i in range(33)]}, "at most 32"),
        (["edge-users"], "attribute shorthand object"),
        (7, "attribute shorthand object"),
    ],
)
def test_malformed_shorthand_is_refused_with_a_hint(spec: Any, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        compile_policy(spec, action="discover")
    assert message in caught.value.message


def test_unknown_action_is_refused() -> None:
    with pytest.raises(InvalidInput, match="unknown policy action"):
        compile_policy({"template": "all-members"}, action="administer")  # type: ignore[arg-type]


def test_attributes_not_defined_in_the_federation_are_refused_when_known() -> None:
    known = {"edge-users", "suspended"}
    compile_policy(
        {"any_of": ["edge-users"], "deny_any_of": ["suspended"]}, action="invoke", known_attributes=known
    )
    with pytest.raises(InvalidInput, match="'gpu', which is not defined"):
        compile_policy({"all_of": ["edge-users", "gpu"]}, action="invoke", known_attributes=known)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("permit (principal, action, resource) when { " + "(" * 5000 + "true" + ")" * 5000 + " };", "nests"),
        ("permit (principal, action, resource) when { " + "[" * 3000 + "]" * 3000 + " == [] };", "nests"),
        ("permit (principal, action, resource);\n" * 101, "at most 100"),
        ('permit (principal, action, resource) when { context.federation == "' + "x" * 70000 + '" };', "KiB"),
    ],
    ids=["deep-parens", "deep-sets", "too-many-policies", "too-large"],
)
def test_hostile_cedar_text_is_refused_without_crashing(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        compile_policy(text, action="invoke")


def test_brackets_inside_strings_and_comments_do_not_count_as_nesting() -> None:
    text = (
        "// " + "(" * 100 + "\n"
        'permit (principal, action, resource) when { context.federation != "' + "[" * 100 + '" };'
    )
    assert compile_policy(text, action="invoke") == text

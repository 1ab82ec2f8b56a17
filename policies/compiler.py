"""Compile the attribute shorthand of discovery/access policies to Cedar (DESIGN §4).

Accepted specs, for one action (``discover`` or ``invoke``):

- Cedar text (a ``str``): used as is once it validates against the schema.
- ``{"any_of": ["edge-users", ...]}``: members holding at least one of the attributes; one ``permit`` per
  attribute (the ``attributes-any-of`` template linked to it), so a decision names the attribute that matched.
- ``{"all_of": ["edge-users", ...]}``: members holding every one of the attributes.
- ``{"template": "all-members"}`` / ``{"template": "owner-only"}``: the default templates.
- Any of the above dicts plus ``"deny_any_of": [...]``: one ``forbid`` per attribute; forbid beats permit.

Attribute names match ``[A-Za-z0-9_.-]{1,64}``, so they cannot break out of a Cedar string; they are quoted
anyway. Every compiled text is validated before it is returned.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import policies
from fhs.errors import InvalidInput
from fhs.policy import service as policy_service
from fhs.policy.service import PolicyAction

ATTRIBUTE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MAX_ATTRIBUTES = 32
SHORTHAND_TEMPLATES = ("all-members", "owner-only")
_PERMIT_KEYS = ("any_of", "all_of", "template")
_KEYS = (*_PERMIT_KEYS, "deny_any_of")
_BOTH_ACTIONS = 'action in [FedScission::Action::"discover", FedScission::Action::"invoke"]'
_NS = policies.NAMESPACE


def _cedar_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _attribute_uid(name: str) -> str:
    return f"{_NS}::Attribute::{_cedar_string(name)}"


def _action_scope(action: PolicyAction) -> str:
    return f"action == {_NS}::Action::{_cedar_string(action)}"


def _attribute_names(
    spec: Mapping[str, Any], key: str, known_attributes: Collection[str] | None
) -> list[str]:
    value = spec[key]
    if not isinstance(value, Sequence) or isinstance(value, str | bytes):
        raise InvalidInput(f'"{key}" must be a list of attribute names, e.g. {{"{key}": ["edge-users"]}}')
    if not value:
        raise InvalidInput(f'"{key}" needs at least one attribute name')
    names: list[str] = []
    for item in value:
        if not isinstance(item, str) or not ATTRIBUTE_NAME.fullmatch(item):
            shown = repr(item)[:80]
            raise InvalidInput(
                f'"{key}" holds an invalid attribute name {shown}: names are 1-64 characters of'
                " letters, digits, '_', '.' and '-'"
            )
        if known_attributes is not None and item not in known_attributes:
            raise InvalidInput(f'"{key}" names attribute {item!r}, which is not defined in this federation')
        if item not in names:
            names.append(item)
    if len(names) > MAX_ATTRIBUTES:
        raise InvalidInput(f'"{key}" lists {len(names)} attributes; at most {MAX_ATTRIBUTES} are allowed')
    return names


def _template(name: str, action: PolicyAction) -> str:
    """The shipped template ``name`` without its comment lines, narrowed to ``action``."""
    body = "\n".join(
        line for line in policies.template_text(name).splitlines() if not line.lstrip().startswith("//")
    )
    if body.count(_BOTH_ACTIONS) != 1:  # pragma: no cover - guards the shipped template files
        raise RuntimeError(f"template {name} lost its action list {_BOTH_ACTIONS!r}")
    return body.replace(_BOTH_ACTIONS, _action_scope(action)).strip()


def _any_of(names: list[str], action: PolicyAction) -> list[str]:
    template = _template("attributes-any-of", action)
    return [
        template.replace(
            '@id("attributes-any-of")', f"@id({_cedar_string('attributes-any-of:' + name)})", 1
        ).replace("?principal", _attribute_uid(name), 1)
        for name in names
    ]


def _all_of(names: list[str], action: PolicyAction) -> str:
    condition = " && ".join(f"principal in {_attribute_uid(name)}" for name in names)
    return (
        f"@id({_cedar_string('attributes-all-of:' + ','.join(names))})\n"
        f"permit (\n  principal is {_NS}::Member,\n  {_action_scope(action)},\n"
        f"  resource is {_NS}::Service\n)\nwhen {{ {condition} }};"
    )


def _deny_any_of(names: list[str], action: PolicyAction) -> list[str]:
    return [
        f"@id({_cedar_string('deny-any-of:' + name)})\n"
        f"forbid (\n  principal in {_attribute_uid(name)},\n  {_action_scope(action)},\n"
        f"  resource is {_NS}::Service\n);"
        for name in names
    ]


def compile_policy(
    spec: str | Mapping[str, Any],
    *,
    action: PolicyAction,
    known_attributes: Collection[str] | None = None,
) -> str:
    """Compile a policy spec (Cedar text or attribute shorthand) for ``action`` to validated Cedar text."""
    if action not in policy_service.ACTIONS:
        raise InvalidInput(
            f"unknown policy action {action!r}; expected one of {', '.join(policy_service.ACTIONS)}"
        )
    if isinstance(spec, str):
        policy_service.validate_policy(spec)
        return spec
    if not isinstance(spec, Mapping):
        raise InvalidInput(
            'a policy is Cedar text or an attribute shorthand object such as {"any_of": ["edge-users"]}'
        )
    unknown = sorted(str(key) for key in spec if key not in _KEYS)
    if unknown:
        raise InvalidInput(
            f"unknown policy shorthand key(s) {', '.join(unknown)}; allowed: {', '.join(_KEYS)}"
        )
    given = [key for key in _PERMIT_KEYS if key in spec]
    if len(given) != 1:
        raise InvalidInput(
            'a policy shorthand needs exactly one of "any_of", "all_of" or "template"'
            ' (optionally with "deny_any_of")'
        )
    parts: list[str] = []
    if "template" in spec:
        name = spec["template"]
        if name not in SHORTHAND_TEMPLATES:
            hint = ' (write {"any_of": [...]} for attributes-any-of)' if name == "attributes-any-of" else ""
            raise InvalidInput(
                f"unknown policy template {str(name)[:80]!r};"
                f" choose one of {', '.join(SHORTHAND_TEMPLATES)}{hint}"
            )
        parts.append(_template(name, action))
    elif "any_of" in spec:
        parts.extend(_any_of(_attribute_names(spec, "any_of", known_attributes), action))
    else:
        parts.append(_all_of(_attribute_names(spec, "all_of", known_attributes), action))
    if "deny_any_of" in spec:
        parts.extend(_deny_any_of(_attribute_names(spec, "deny_any_of", known_attributes), action))
    text = "\n\n".join(parts) + "\n"
    policy_service.validate_policy(text)
    return text

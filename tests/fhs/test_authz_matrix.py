"""Authorisation matrix: every route x (anonymous, operator, outsider, member, edge user, owner, FedAdmin)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.fhs.conftest import World

ROLES = ["anonymous", "operator", "eve", "dave", "carol", "bob", "alice"]
"""Order matters for destructive routes: the roles that succeed come last."""

Route = tuple[str, Callable[[World], str], dict[str, Any] | None]
OP = {"anonymous": 401, "operator": None, "eve": 403, "dave": 403, "carol": 403, "bob": 403, "alice": 403}


def _fed(suffix: str = "") -> Callable[[World], str]:
    return lambda w: f"/member/v1/federations/{w.fid}{suffix}"


def _member_route(who: str, suffix: str = "") -> Callable[[World], str]:
    return lambda w: f"/member/v1/federations/{w.fid}/members/{w.mid(who)}{suffix}"


def _svc(suffix: str = "") -> Callable[[World], str]:
    return lambda w: f"/member/v1/federations/{w.fid}/services/{w.sid}{suffix}"


def _expect(
    anon: int, operator: int, eve: int, dave: int, carol: int, bob: int, alice: int
) -> dict[str, int]:
    return dict(zip(ROLES, [anon, operator, eve, dave, carol, bob, alice], strict=True))


def _operator_only(ok: int) -> dict[str, int]:
    return _expect(401, ok, 403, 403, 403, 403, 403)


MATRIX: list[tuple[str, Route, dict[str, int]]] = [
    ("status", ("GET", lambda w: "/operator/v1/status", None), _operator_only(200)),
    ("list issuers", ("GET", lambda w: "/operator/v1/issuers", None), _operator_only(200)),
    (
        "put issuer",
        (
            "PUT",
            lambda w: "/operator/v1/issuers/extra",
            {"issuer": "https://other.test", "jwks": {"keys": []}},
        ),
        _operator_only(200),
    ),
    ("list fedadmins", ("GET", lambda w: "/operator/v1/fedadmins", None), _operator_only(200)),
    (
        "grant fedadmin",
        ("POST", lambda w: "/operator/v1/fedadmins", {"issuer": "https://idp-a.test", "subject": "zed"}),
        _operator_only(201),
    ),
    ("operator audit", ("GET", lambda w: "/operator/v1/audit", None), _operator_only(200)),
    (
        "list my federations",
        ("GET", lambda w: "/member/v1/federations", None),
        _expect(401, 403, 200, 200, 200, 200, 200),
    ),
    (
        "create federation",
        ("POST", lambda w: "/member/v1/federations", {"name": "new"}),
        _expect(401, 403, 403, 403, 403, 403, 201),
    ),
    ("get federation", ("GET", _fed(), None), _expect(401, 403, 404, 200, 200, 200, 200)),
    ("list members", ("GET", _fed("/members"), None), _expect(401, 403, 404, 200, 200, 200, 200)),
    (
        "grant member",
        ("POST", _fed("/members"), {"issuer": "https://idp-a.test", "subject": "zed"}),
        _expect(401, 403, 404, 403, 403, 403, 201),
    ),
    ("revoke member", ("DELETE", _member_route("dave"), None), _expect(401, 403, 404, 403, 403, 403, 204)),
    ("list attributes", ("GET", _fed("/attributes"), None), _expect(401, 403, 404, 200, 200, 200, 200)),
    (
        "define attribute",
        ("POST", _fed("/attributes"), {"name": "gpu-users"}),
        _expect(401, 403, 404, 403, 403, 403, 201),
    ),
    (
        "delete attribute",
        ("DELETE", _fed("/attributes/edge-users"), None),
        _expect(401, 403, 404, 403, 403, 403, 204),
    ),
    (
        "grant attribute",
        ("PUT", _member_route("dave", "/attributes/edge-users"), None),
        _expect(401, 403, 404, 403, 403, 403, 200),
    ),
    (
        "revoke attribute",
        ("DELETE", _member_route("carol", "/attributes/edge-users"), None),
        _expect(401, 403, 404, 403, 403, 403, 200),
    ),
    (
        "register service",
        ("POST", _fed("/services"), {"name": "s", "type": "test.echo", "endpoint": "http://127.0.0.1:9/"}),
        _expect(401, 403, 404, 403, 403, 201, 201),
    ),
    ("discover services", ("GET", _fed("/services"), None), _expect(401, 403, 404, 200, 200, 200, 200)),
    ("get service", ("GET", _svc(), None), _expect(401, 403, 404, 404, 200, 200, 404)),
    ("update service", ("PATCH", _svc(), {"name": "renamed"}), _expect(401, 403, 404, 403, 403, 200, 403)),
    ("invoke service", ("GET", _svc("/invoke/x"), None), _expect(401, 403, 404, 404, 200, 403, 404)),
    ("federation audit", ("GET", _fed("/audit"), None), _expect(401, 403, 404, 403, 403, 403, 200)),
    # One FHS here: alice passes the checks, then is refused (not a peer; the home cannot leave).
    (
        "add participant",
        ("POST", _fed("/participants"), {"fhs_id": "fhs-z"}),
        _expect(401, 403, 404, 403, 403, 403, 422),
    ),
    (
        "remove participant",
        ("DELETE", _fed("/participants/fhs-a"), None),
        _expect(401, 403, 404, 403, 403, 403, 409),
    ),
    ("delete service", ("DELETE", _svc(), None), _expect(401, 403, 404, 403, 403, 204, 404)),
    ("delete federation", ("DELETE", _fed(), None), _expect(401, 403, 404, 403, 403, 403, 204)),
    (
        "revoke fedadmin",
        ("DELETE", lambda w: f"/operator/v1/fedadmins/{w.mid('alice')}", None),
        _operator_only(204),
    ),
    # The operator goes before the members: once their issuer is gone, their tokens are refused (401).
    (
        "delete issuer",
        ("DELETE", lambda w: "/operator/v1/issuers/idp-a", None),
        _expect(401, 204, 401, 401, 401, 401, 401),
    ),
]


def _headers(world: World, role: str) -> dict[str, str]:
    if role == "anonymous":
        return {}
    if role == "operator":
        return world.fhs.operator
    return world.headers(role)


@pytest.mark.parametrize(("name", "route", "expected"), MATRIX, ids=[row[0] for row in MATRIX])
async def test_route_answers_each_role_as_expected(
    world: World,
    name: str,
    route: Route,
    expected: dict[str, int],
) -> None:
    method, path_of, body = route
    got = {}
    for role in ROLES:
        response = await world.fhs.client.request(
            method, path_of(world), headers=_headers(world, role), json=body
        )
        got[role] = response.status_code
        if response.status_code >= 400:
            assert response.json()["error"]["message"], f"{name} as {role}: error without a message"
    assert got == expected

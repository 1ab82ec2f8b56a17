"""A single-FHS federation used end to end through the Operator and Member APIs (issue 2 walkthrough)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fhs.devtools.cluster import free_port
from fhs.identity.invocation import verify_invocation_token
from tests.fhs.conftest import LocalIdP, RunningFHS, World, ok


async def test_creator_is_fedadmin_and_members_see_their_federations(world: World) -> None:
    c = world.fhs.client
    fed = await ok(await c.get(f"/member/v1/federations/{world.fid}", headers=world.headers("alice")))
    assert set(fed["my_attributes"]) == {"FedAdmin", "ServiceOwner", "Member"}
    carol_feds = await ok(await c.get("/member/v1/federations", headers=world.headers("carol")))
    assert [f["id"] for f in carol_feds] == [world.fid]
    assert carol_feds[0]["my_attributes"] == ["Member", "edge-users"]


async def test_non_members_get_404_and_members_without_the_right_get_403(world: World) -> None:
    c = world.fhs.client
    response = await c.get(f"/member/v1/federations/{world.fid}", headers=world.headers("eve"))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    unknown = await c.get("/member/v1/federations/fed_0000000000000000", headers=world.headers("eve"))
    assert unknown.status_code == 404 and unknown.json() == response.json() | {
        "error": {**response.json()["error"], "message": unknown.json()["error"]["message"]}
    }
    response = await c.post(
        f"/member/v1/federations/{world.fid}/members",
        headers=world.headers("dave"),
        json=world.fhs.key("mallory"),
    )
    assert response.status_code == 403
    assert "FedAdmin" in response.json()["error"]["message"]


async def test_discovery_hides_services_the_policy_does_not_reveal(world: World) -> None:
    c = world.fhs.client
    carol = await ok(
        await c.get(f"/member/v1/federations/{world.fid}/services", headers=world.headers("carol"))
    )
    assert [s["id"] for s in carol] == [world.sid]
    assert carol[0]["endpoint"] is None, "only the owner sees the endpoint URL"
    dave = await ok(
        await c.get(f"/member/v1/federations/{world.fid}/services", headers=world.headers("dave"))
    )
    assert dave == []
    bob = await ok(await c.get(f"/member/v1/federations/{world.fid}/services", headers=world.headers("bob")))
    assert bob[0]["endpoint"].startswith("http://127.0.0.1:")
    response = await c.get(
        f"/member/v1/federations/{world.fid}/services/{world.sid}", headers=world.headers("dave")
    )
    assert response.status_code == 404


async def test_invoke_proxies_with_an_invocation_token_and_never_the_members_token(
    world: World, echo_upstream: Any
) -> None:
    c = world.fhs.client
    carol = world.headers("carol")
    response = await c.post(
        f"/member/v1/federations/{world.fid}/services/{world.sid}/invoke/run/3?x=1",
        headers={**carol, "Cookie": "session=secret", "X-Custom": "kept"},
        content=b'{"input": [1, 2]}',
    )
    echoed = await ok(response)
    assert echoed["method"] == "POST" and echoed["path"] == "/echo/run/3" and echoed["query"] == "x=1"
    assert echoed["body"] == '{"input": [1, 2]}'
    assert echoed["headers"]["x-custom"] == "kept"
    assert "cookie" not in echoed["headers"]
    upstream_token = echoed["headers"]["authorization"].removeprefix("Bearer ")
    assert upstream_token != carol["Authorization"].removeprefix("Bearer ")
    assert "set-cookie" not in response.headers
    jwks = await ok(await c.get("/.well-known/jwks.json"))
    claims = verify_invocation_token(
        upstream_token, jwks=jwks, issuer=world.fhs.settings.public_url, audience=world.sid
    )
    assert claims["federation"] == world.fid
    assert claims["member"] == {"iss": world.fhs.idp.issuer, "sub": "carol"}
    assert "edge-users" in claims["attributes"]


async def test_access_policy_decides_each_call_and_revocation_applies_to_the_next_call(world: World) -> None:
    c = world.fhs.client
    path = f"/member/v1/federations/{world.fid}/services/{world.sid}/invoke/ping"
    assert (await c.get(path, headers=world.headers("carol"))).status_code == 200
    assert (await c.get(path, headers=world.headers("dave"))).status_code == 404
    assert (await c.get(path, headers=world.headers("eve"))).status_code == 404
    await ok(
        await c.delete(
            f"/member/v1/federations/{world.fid}/members/{world.mid('carol')}/attributes/edge-users",
            headers=world.headers("alice"),
        )
    )
    assert (await c.get(path, headers=world.headers("carol"))).status_code == 404


async def test_discoverable_but_not_invocable_is_403(world: World) -> None:
    c = world.fhs.client
    await ok(
        await c.patch(
            f"/member/v1/federations/{world.fid}/services/{world.sid}",
            headers=world.headers("bob"),
            json={"discovery_policy": {"template": "all-members"}},
        )
    )
    response = await c.get(
        f"/member/v1/federations/{world.fid}/services/{world.sid}/invoke/", headers=world.headers("dave")
    )
    assert response.status_code == 403
    assert "access policy" in response.json()["error"]["message"]


async def test_forbid_wins_over_permit(world: World) -> None:
    c = world.fhs.client
    policy = {"any_of": ["edge-users"], "deny_any_of": ["Member"]}
    await ok(
        await c.patch(
            f"/member/v1/federations/{world.fid}/services/{world.sid}",
            headers=world.headers("bob"),
            json={"access_policy": policy},
        )
    )
    response = await c.get(
        f"/member/v1/federations/{world.fid}/services/{world.sid}/invoke/", headers=world.headers("carol")
    )
    assert response.status_code == 403


async def test_invalid_cedar_policy_is_422_with_the_validators_message(world: World) -> None:
    c = world.fhs.client
    bad = 'permit(principal in FedScission::Group::"x", action, resource);'
    response = await c.post(
        f"/member/v1/federations/{world.fid}/services",
        headers=world.headers("bob"),
        json={"name": "bad", "type": "test.echo", "endpoint": "http://127.0.0.1:9/", "access_policy": bad},
    )
    assert response.status_code == 422
    assert "Group" in response.json()["error"]["message"]
    services = await ok(
        await c.get(f"/member/v1/federations/{world.fid}/services", headers=world.headers("bob"))
    )
    assert [s["name"] for s in services] == ["echo"], "a refused registration leaves nothing behind"


async def test_audit_log_records_admin_writes_and_decisions(world: World) -> None:
    c = world.fhs.client
    await c.get(
        f"/member/v1/federations/{world.fid}/services/{world.sid}/invoke/", headers=world.headers("dave")
    )
    entries = await ok(
        await c.get(f"/member/v1/federations/{world.fid}/audit?limit=1000", headers=world.headers("alice"))
    )
    actions = [e["action"] for e in entries]
    assert actions[:2] == ["federation.created", "attribute.defined"]
    assert "service.registered" in actions
    denied = [e for e in entries if e["action"] == "invoke" and e["decision"] == "deny"]
    assert denied and denied[-1]["actor"].endswith("#dave") and denied[-1]["target"] == world.sid
    response = await c.get(f"/member/v1/federations/{world.fid}/audit", headers=world.headers("carol"))
    assert response.status_code == 403


async def test_the_last_fedadmin_cannot_be_removed(world: World) -> None:
    c = world.fhs.client
    response = await c.delete(
        f"/member/v1/federations/{world.fid}/members/{world.mid('alice')}", headers=world.headers("alice")
    )
    assert response.status_code == 409
    assert "last FedAdmin" in response.json()["error"]["message"]


async def test_revoking_a_member_removes_the_services_it_owns(world: World) -> None:
    c = world.fhs.client
    await ok(
        await c.delete(
            f"/member/v1/federations/{world.fid}/members/{world.mid('bob')}", headers=world.headers("alice")
        ),
        204,
    )
    services = await ok(
        await c.get(f"/member/v1/federations/{world.fid}/services", headers=world.headers("alice"))
    )
    assert services == []


async def test_a_token_in_the_query_string_is_not_forwarded(world: World) -> None:
    token = world.headers("carol")["Authorization"].removeprefix("Bearer ")
    response = await world.fhs.client.get(
        f"/member/v1/federations/{world.fid}/services/{world.sid}/invoke/x?access_token={token}&keep=1"
    )
    echoed = await ok(response)
    assert echoed["query"] == "keep=1" and token not in str(echoed)


@pytest.mark.parametrize("odd_sid", ["%00", "x" * 300, "nope"])
async def test_an_unknown_or_unstorable_service_id_is_404_on_invoke(world: World, odd_sid: str) -> None:
    response = await world.fhs.client.get(
        f"/member/v1/federations/{world.fid}/services/{odd_sid}/invoke/x", headers=world.headers("carol")
    )
    assert response.status_code == 404, response.text
    assert "store" not in response.text  # no storage internals in the message


async def test_an_unreachable_idp_is_a_503_not_a_401(world: World) -> None:
    # The operator trusts a second IdP by jwks_uri; that IdP is down (nothing listens on the port).
    client, operator = world.fhs.client, world.fhs.operator
    issuer = "https://idp-down.test"
    jwks_uri = f"http://127.0.0.1:{free_port()}/jwks"
    await ok(await client.put("/operator/v1/issuers/idp-down", headers=operator,
                              json={"issuer": issuer, "jwks_uri": jwks_uri}))  # fmt: skip
    token = world.fhs.idp.token("zoe", iss=issuer)
    response = await client.get("/member/v1/federations", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "idp_unavailable"
    assert jwks_uri in error["message"]
    assert 1 <= int(response.headers["Retry-After"]) <= 30  # the JWKS refresh cooldown
    # Members of the reachable IdP are unaffected.
    await ok(await client.get("/member/v1/federations", headers=world.headers("alice")))


async def test_the_background_loop_keeps_only_the_newest_audit_entries(
    tmp_path: Any, idp: LocalIdP, store_url: str
) -> None:
    harness = RunningFHS(tmp_path, idp, store_url)
    harness.settings = harness.settings.model_copy(
        update={"audit_keep_entries": 3, "peer_key_refresh_s": 0.05}
    )
    async with harness as fhs:
        c, operator = fhs.client, fhs.operator
        await ok(await c.post("/operator/v1/fedadmins", headers=operator, json=fhs.key("alice")), 201)
        alice = fhs.member("alice")
        fid = (await ok(await c.post("/member/v1/federations", headers=alice, json={"name": "f"}), 201))["id"]
        for i in range(6):
            await ok(await c.post(f"/member/v1/federations/{fid}/attributes", headers=alice,
                                  json={"name": f"a{i}"}), 201)  # fmt: skip
            await ok(await c.post("/operator/v1/fedadmins", headers=operator, json=fhs.key(f"admin{i}")), 201)
        fed_audit = f"/member/v1/federations/{fid}/audit?limit=1000"

        async def trimmed() -> bool:
            entries = await ok(await c.get(fed_audit, headers=alice))
            ops = await ok(await c.get("/operator/v1/audit?limit=1000", headers=operator))
            return len(entries) <= 3 and len(ops) <= 3

        for _ in range(200):  # the loop runs every 0.05 s here; give a loaded machine up to ~10 s
            if await trimmed():
                break
            await asyncio.sleep(0.05)
        entries = await ok(await c.get(fed_audit, headers=alice))
        # The newest entries are kept with their original sequence numbers; older ones are gone.
        assert [e["action"] for e in entries][-3:] == ["attribute.defined"] * 3
        assert len(entries) == 3 and entries[0]["seq"] > 3
        assert [e["seq"] for e in entries] == list(range(entries[0]["seq"], entries[0]["seq"] + 3))
        ops = await ok(await c.get("/operator/v1/audit?limit=1000", headers=operator))
        assert [e["action"] for e in ops] == ["fedadmin.granted"] * 3 and ops[0]["seq"] > 3
        # Paging on from a trimmed position still works, and new entries continue the numbering.
        after = entries[-1]["seq"]
        await ok(
            await c.post(f"/member/v1/federations/{fid}/attributes", headers=alice, json={"name": "z"}), 201
        )
        newer = await ok(await c.get(f"/member/v1/federations/{fid}/audit?after={after}", headers=alice))
        assert [e["seq"] for e in newer] == [after + 1]

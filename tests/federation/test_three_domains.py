"""One federation across three trust domains, each a real IdP + FHS process on loopback (issue 4).

Domain A (SQLite) is the federation's home; B runs on Redis; C on SQLite. Members authenticate only to their
own FHS; discovery, invocation, revocation and replication cross the FHS-FHS API.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhs.devtools.cluster import Domain, LocalFederation, call, converge, free_port, wait_ready
from fhs.identity.keys import FHSKeyring
from fhs.ids import member_id
from fhs.peering.messages import sign_event, sign_request

pytestmark = pytest.mark.slow
EDGE = {"any_of": ["edge-users"]}


class World:
    """The running federation and the ids the tests need."""

    def __init__(self, cluster: LocalFederation) -> None:
        self.cluster = cluster
        self.a, self.b, self.c = (cluster.domains[n] for n in "abc")
        self.fid = ""
        self.services: dict[str, str] = {}

    def url(self, domain: Domain, suffix: str = "") -> str:
        return f"{domain.fhs_url}/member/v1/federations/{self.fid}{suffix}"

    def replication(self, domain: Domain) -> dict[str, Any]:
        status = call("GET", f"{domain.fhs_url}/operator/v1/replication", headers=domain.operator, expect=200)
        return {s["federation"]: s for s in status}[self.fid]

    def converge(self, timeout_s: float = 30.0) -> str:
        """Wait until the three FHSs report the same sequence and state hash; return the hash."""
        return converge([self.a, self.b, self.c], self.fid, timeout_s=timeout_s)


def _echo(cluster: LocalFederation, domain: Domain) -> str:
    port = free_port()
    log = domain.data_dir / "echo.log"
    process = cluster.spawn(["-m", "fhs.devtools.echo", "--port", str(port), "--fhs", domain.fhs_url], log)
    wait_ready(f"http://127.0.0.1:{port}/health", process=process, log=log)
    return f"http://127.0.0.1:{port}/svc"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, redis_server: str) -> Iterator[World]:
    base = tmp_path_factory.mktemp("three")
    with LocalFederation(base) as cluster:
        cluster.add_domain("a", subjects=["alice", "owner-a"])
        cluster.add_domain("b", subjects=["bob", "dave"], store_url=f"{redis_server}?prefix=fhsb")
        cluster.add_domain("c", subjects=["carol", "eve"])
        for x, y in (("a", "b"), ("a", "c"), ("b", "c")):
            cluster.peer(x, y)
        w = World(cluster)
        a, b, c = w.a, w.b, w.c
        w.fid = cluster.create_federation("a", "alice", "three-domains", participants=("b", "c"))
        alice = a.member("alice")
        call("POST", w.url(a, "/attributes"), headers=alice, json_body={"name": "edge-users"}, expect=201)
        grants = [
            (a.identity("owner-a"), ["ServiceOwner"]),
            (b.identity("bob"), ["ServiceOwner"]),
            (b.identity("dave"), []),
            (c.identity("carol"), ["ServiceOwner", "edge-users"]),
            (c.identity("eve"), ["edge-users"]),
        ]
        for identity, attributes in grants:
            call(
                "POST",
                w.url(a, "/members"),
                headers=alice,
                json_body={**identity, "attributes": attributes},
                expect=201,
            )
        w.converge()
        for domain, owner in ((a, "owner-a"), (b, "bob"), (c, "carol")):
            service = call(
                "POST",
                w.url(domain, "/services"),
                headers=domain.member(owner),
                expect=201,
                json_body={
                    "name": f"echo-{domain.name}",
                    "type": "test.echo",
                    "endpoint": _echo(cluster, domain),
                    "metadata": {"tier": "edge"},
                    "discovery_policy": {"template": "all-members"},
                    "access_policy": EDGE,
                },
            )
            w.services[domain.name] = service["id"]
        w.converge()
        yield w


def test_every_fhs_holds_the_same_federation_state(world: World) -> None:
    state_hash = world.converge()
    assert len(state_hash) == 64
    home = world.replication(world.a)
    assert home["home"] == "fhs-a" and {link["peer"] for link in home["links"]} == {"fhs-b", "fhs-c"}
    assert all(link["pending"] == 0 for link in home["links"])


def test_members_discover_services_registered_in_the_other_domains(world: World) -> None:
    for domain, who in ((world.a, "owner-a"), (world.b, "dave"), (world.c, "eve")):
        found = call("GET", world.url(domain, "/services"), headers=domain.member(who), expect=200)
        assert {s["id"] for s in found} == set(world.services.values())
        foreign = [s for s in found if s["fhs"] != domain.fhs_id]
        assert foreign and all(s["endpoint"] is None for s in foreign), "no endpoint URL leaves its FHS"


def test_a_member_invokes_services_of_the_two_other_domains(world: World) -> None:
    eve = world.c.member("eve")
    for owner in ("a", "b"):
        sid = world.services[owner]
        echoed = call(
            "POST",
            world.url(world.c, f"/services/{sid}/invoke/hello?x=1"),
            headers=eve,
            content=b"payload",
            expect=200,
        )
        assert echoed["body"] == "payload" and echoed["path"] == "/svc/hello" and echoed["query"] == "x=1"
        invocation = echoed["invocation"]
        assert invocation["verified"] is True, invocation
        assert invocation["iss"] == world.cluster.domains[owner].fhs_url, "signed by the owning FHS"
        assert invocation["member"] == {"iss": world.c.issuer, "sub": "eve"}
        assert eve["Authorization"][7:30] not in echoed["headers"].get("authorization", "")


def test_owner_policy_refuses_at_the_owning_fhs_even_if_the_callers_fhs_is_misconfigured(
    world: World, redis_server: str
) -> None:
    sid = world.services["a"]
    path = world.url(world.b, f"/services/{sid}/invoke/x")
    assert httpx.get(path, headers=world.b.member("dave"), timeout=30).status_code in (403, 404)
    # Misconfigure B: grant dave edge-users in B's own (Redis) copy of the federation, behind the home's back.
    b_store_url, key = f"{redis_server}?prefix=fhsb", f"{world.b.issuer}#dave"
    original = asyncio.run(_tamper(b_store_url, world.fid, key, add="edge-users"))
    try:
        response = httpx.get(path, headers=world.b.member("dave"), timeout=30)
        assert response.status_code in (403, 404), response.text
        audit = call(
            "GET", world.url(world.a, "/audit?limit=1000"), headers=world.a.member("alice"), expect=200
        )
        refused = [e for e in audit if e["action"] == "invoke" and e["actor"].endswith("#dave")]
        assert refused and refused[-1]["decision"] == "deny" and refused[-1]["details"]["via"] == "fhs-b"
    finally:
        asyncio.run(_tamper(b_store_url, world.fid, key, restore=original))


async def _tamper(store_url: str, fid: str, key: str, *, add: str = "", restore: Any = None) -> Any:
    """Rewrite a member's attributes directly in an FHS's store (what a misconfigured FHS would hold)."""
    from fhs.federations.state import members_collection
    from fhs.store import Put, open_store

    store = open_store(store_url)
    try:
        doc = await store.get(members_collection(fid), key)
        assert doc is not None
        value = (
            restore
            if restore is not None
            else {**doc.value, "attributes": sorted({*doc.value["attributes"], add})}
        )
        await store.write([Put(members_collection(fid), key, value)])
        return doc.value
    finally:
        await store.close()


def test_revocation_made_at_the_home_takes_effect_at_every_fhs(world: World) -> None:
    sid, eve, alice = world.services["b"], world.c.member("eve"), world.a.member("alice")
    path = world.url(world.c, f"/services/{sid}/invoke/")
    assert httpx.get(path, headers=eve, timeout=30).status_code == 200
    eve_id = member_id(f"{world.c.issuer}#eve")
    started = time.monotonic()
    call("DELETE", world.url(world.a, f"/members/{eve_id}/attributes/edge-users"), headers=alice, expect=200)
    deadline = time.monotonic() + 30
    while httpx.get(path, headers=eve, timeout=30).status_code == 200:
        assert time.monotonic() < deadline, "revocation never reached the owning FHS"
        time.sleep(0.05)
    print(f"revocation visible at fhs-b after {time.monotonic() - started:.3f} s")
    world.converge()
    call("PUT", world.url(world.a, f"/members/{eve_id}/attributes/edge-users"), headers=alice, expect=200)
    world.converge()


def test_a_write_at_a_non_home_fhs_is_forwarded_to_the_home_and_replicated(world: World) -> None:
    bob = world.b.member("bob")
    created = call(
        "POST",
        world.url(world.b, "/services"),
        headers=bob,
        expect=201,
        json_body={
            "name": "bob-extra",
            "type": "test.echo",
            "endpoint": "http://127.0.0.1:9/",
            "access_policy": {"template": "owner-only"},
        },
    )
    assert created["endpoint"] == "http://127.0.0.1:9/" and created["fhs"] == "fhs-b"
    world.converge()
    seen_at_c = call("GET", world.url(world.c, "/services"), headers=world.c.member("carol"), expect=200)
    assert created["id"] in {s["id"] for s in seen_at_c}
    call("DELETE", world.url(world.b, f"/services/{created['id']}"), headers=bob, expect=204)
    world.converge()


def test_monitoring_collates_counters_from_every_fhs(world: World) -> None:
    view = call("GET", world.url(world.a, "/monitoring"), headers=world.a.member("alice"), expect=200)
    per_fhs = {entry["fhs"]: entry for entry in view["per_fhs"]}
    assert set(per_fhs) == {"fhs-a", "fhs-b", "fhs-c"}
    assert per_fhs["fhs-a"]["invocations"] >= 1 and per_fhs["fhs-b"]["invocations"] >= 1
    assert view["totals"]["invoke_denials"] >= 1


# -- attacks on the FHS-FHS API ----------------------------------------------------------------------------


def _post_events(world: World, events: list[str], keyring: FHSKeyring, iss: str = "fhs-a") -> httpx.Response:
    path = f"/fhs/v1/federations/{world.fid}/events"
    body = httpx.Request("POST", "http://x", json={"events": events}).content
    token = sign_request(keyring, me=iss, peer="fhs-b", method="POST", path=path, body=body)
    return httpx.post(
        world.b.fhs_url + path,
        content=body,
        timeout=30,
        headers={"X-FHS-Assertion": token, "Content-Type": "application/json"},
    )


def test_messages_signed_by_a_key_that_is_not_the_peers_are_refused_and_audited(world: World) -> None:
    impostor = FHSKeyring.generate()
    forged = sign_event(
        impostor,
        me="fhs-a",
        event={
            "type": "member.revoked",
            "federation": world.fid,
            "seq": 10_000,
            "origin": "fhs-a",
            "data": {},
        },
    )
    response = _post_events(world, [forged], impostor)
    assert response.status_code == 401
    assert "signing key" in response.json()["error"]["message"]
    refusals = _peer_refusals(world.b)
    assert refusals[-1]["action"] == "peer.events.push" and refusals[-1]["target"] == world.fid
    assert "signing key" in refusals[-1]["details"]["reason"]


def _peer_refusals(domain: Domain) -> list[dict[str, Any]]:
    audit = call("GET", f"{domain.fhs_url}/operator/v1/audit?limit=1000", headers=domain.operator, expect=200)
    return [e for e in audit if e["action"].startswith("peer.") and e["decision"] == "deny"]


def test_tampered_replayed_foreign_and_expired_assertions_are_refused(world: World) -> None:
    keyring = FHSKeyring.load_from(_exported_keyring(world.a))
    sid = world.services["b"]
    path = f"/fhs/v1/federations/{world.fid}/services/{sid}/invoke/x"
    claims = {"federation": world.fid, "member": {"iss": world.c.issuer, "sub": "eve"}}
    token = sign_request(keyring, me="fhs-a", peer="fhs-b", method="GET", path=path, body=b"", extra=claims)
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert httpx.get(world.b.fhs_url + path, headers={"X-FHS-Assertion": tampered}).status_code == 401
    # eve's home is C, so A may not act for her: refused even with a valid signature
    first = httpx.get(world.b.fhs_url + path, headers={"X-FHS-Assertion": token})
    assert first.status_code == 404
    replay = httpx.get(world.b.fhs_url + path, headers={"X-FHS-Assertion": token})
    assert replay.status_code == 401 and "replayed" in replay.json()["error"]["message"]
    other = sign_request(
        keyring,
        me="fhs-a",
        peer="fhs-b",
        method="GET",
        path=path.replace(world.fid, "fed_0000000000000000"),
        body=b"",
        extra={**claims, "federation": "fed_0000000000000000"},
    )
    assert (
        httpx.get(
            world.b.fhs_url + path.replace(world.fid, "fed_0000000000000000"),
            headers={"X-FHS-Assertion": other},
        ).status_code
        == 404
    )
    expired = keyring.sign(
        {
            "iss": "fhs-a",
            "aud": "fhs-b",
            "iat": int(time.time()) - 600,
            "exp": int(time.time()) - 300,
            "jti": "old",
            "htm": "GET",
            "htu": path,
            "bd": "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU",
            **claims,
        },
        typ="fhs-peer+jwt",
    )
    response = httpx.get(world.b.fhs_url + path, headers={"X-FHS-Assertion": expired})
    assert response.status_code == 401 and "expired" in response.json()["error"]["message"]
    reasons = [e["details"]["reason"] for e in _peer_refusals(world.b)[-4:]]
    assert any("signature" in r for r in reasons) and any("replayed" in r for r in reasons)
    assert any("expired" in r for r in reasons) and any("federation" in r for r in reasons), reasons


def _exported_keyring(domain: Domain) -> dict[str, Any]:
    """A's private keyring, read from its SQLite store as an attacker who stole it would (test-only)."""
    from fhs.store import open_store

    async def read() -> dict[str, Any]:
        store = open_store(f"sqlite:///{domain.data_dir / 'fhs' / 'fhs.sqlite3'}")
        try:
            doc = await store.get("system", "keyring")
            assert doc is not None
            return doc.value
        finally:
            await store.close()

    return asyncio.run(read())


def test_a_rotated_key_reaches_the_peers_before_it_signs_and_replication_goes_on(world: World) -> None:
    a = world.a
    rotated = call(
        "POST",
        f"{a.fhs_url}/operator/v1/keys/rotate",
        headers=a.operator,
        expect=200,
        json_body={"publish_delay_s": 6, "overlap_s": 120},
    )
    new_kid = rotated["next_kid"]
    published = call("GET", f"{a.fhs_url}/.well-known/jwks.json")
    assert new_kid in {k["kid"] for k in published["keys"]} and len(published["keys"]) == 2
    for peer in (world.b, world.c):  # without any manual step, before the new key signs anything
        deadline = time.monotonic() + 6
        while new_kid not in {
            k
            for p in call("GET", f"{peer.fhs_url}/operator/v1/peers", headers=peer.operator)
            if p["fhs_id"] == "fhs-a"
            for k in p["kids"]
        }:
            assert time.monotonic() < deadline, f"{peer.fhs_id} did not pin the rotated key in time"
            time.sleep(0.2)
    time.sleep(6.5)  # now the new key signs
    call(
        "POST",
        world.url(a, "/attributes"),
        headers=a.member("alice"),
        json_body={"name": "after-rotation"},
        expect=201,
    )
    world.converge()
    at_b = call("GET", world.url(world.b, "/attributes"), headers=world.b.member("bob"), expect=200)
    assert "after-rotation" in {x["name"] for x in at_b}


def test_a_removed_participant_forgets_the_federation_and_receives_nothing_after(world: World) -> None:
    cluster, a, b, c = world.cluster, world.a, world.b, world.c
    fid = cluster.create_federation("a", "alice", "leaving", participants=("b", "c"))

    def url(domain: Domain, suffix: str = "") -> str:
        return f"{domain.fhs_url}/member/v1/federations/{fid}{suffix}"

    alice, bob, carol, eve = a.member("alice"), b.member("bob"), c.member("carol"), c.member("eve")
    for identity, attributes in (
        (b.identity("bob"), ["ServiceOwner"]),
        (c.identity("carol"), ["ServiceOwner"]),
        (c.identity("eve"), ["FedAdmin"]),
    ):
        call(
            "POST",
            url(a, "/members"),
            headers=alice,
            json_body={**identity, "attributes": attributes},
            expect=201,
        )
    converge([a, b, c], fid)
    service = {
        "type": "test.echo",
        "endpoint": _echo(cluster, c),
        "discovery_policy": {"template": "all-members"},
    }
    carols = call(
        "POST", url(c, "/services"), headers=carol, expect=201, json_body={"name": "at-c", **service}
    )
    converge([a, b, c], fid)
    assert carols["id"] in {s["id"] for s in call("GET", url(b, "/services"), headers=bob, expect=200)}

    # Only a FedAdmin may remove; eve (FedAdmin, member of C) removes C through her own FHS.
    call("DELETE", url(b, "/participants/fhs-c"), headers=bob, expect=403)
    call("DELETE", url(a, "/participants/fhs-a"), headers=alice, expect=409)  # the home cannot leave
    call("DELETE", url(c, "/participants/fhs-c"), headers=eve, expect=204)
    converge([a, b], fid)
    # C deleted its copy: its members no longer see the federation, and its operator no longer lists it.
    call("GET", url(c), headers=carol, expect=404)
    call("GET", url(c), headers=eve, expect=404)
    at_c = call("GET", f"{c.fhs_url}/operator/v1/replication", headers=c.operator, expect=200)
    assert fid not in {s["federation"] for s in at_c}
    # A and B dropped C's members and the services they owned.
    federation = call("GET", url(a), headers=alice, expect=200)
    assert federation["participants"] == ["fhs-a", "fhs-b"]
    members = call("GET", url(a, "/members"), headers=alice, expect=200)
    assert {m["home_fhs"] for m in members} == {"fhs-a", "fhs-b"}
    assert carols["id"] not in {s["id"] for s in call("GET", url(b, "/services"), headers=bob, expect=200)}

    # Later events reach B but never C: A's delivery to C stops at the removal, with nothing pending.
    call("POST", url(a, "/attributes"), headers=alice, json_body={"name": "after-c-left"}, expect=201)
    converge([a, b], fid)
    deadline = time.monotonic() + 30
    while True:  # A's pushes settle: B acknowledges everything, C only up to its removal
        status = {
            s["federation"]: s
            for s in call("GET", f"{a.fhs_url}/operator/v1/replication", headers=a.operator, expect=200)
        }
        links = {link["peer"]: link for link in status[fid]["links"]}
        if links["fhs-b"]["pending"] == 0 and links["fhs-c"]["pending"] == 0:
            break
        assert time.monotonic() < deadline, links
        time.sleep(0.2)
    assert links["fhs-b"]["acked_seq"] == status[fid]["seq"]
    assert links["fhs-c"]["acked_seq"] == status[fid]["seq"] - 1
    # C cannot come back into this federation (its copy is gone).
    response = httpx.post(url(a, "/participants"), headers=alice, json={"fhs_id": "fhs-c"}, timeout=10)
    assert response.status_code == 409 and "cannot rejoin" in response.json()["error"]["message"]


# -- faults (last: they stop processes) ---------------------------------------------------------------


def test_a_killed_fhs_catches_up_after_restart_and_nothing_acknowledged_is_lost(world: World) -> None:
    cluster, alice = world.cluster, world.a.member("alice")
    cluster.kill_fhs("c")
    call(
        "POST",
        world.url(world.a, "/attributes"),
        headers=alice,
        json_body={"name": "while-c-down"},
        expect=201,
    )
    bob = world.b.member("bob")
    extra = call(
        "POST",
        world.url(world.b, "/services"),
        headers=bob,
        expect=201,
        json_body={"name": "registered-while-c-down", "type": "test.echo", "endpoint": "http://127.0.0.1:9/"},
    )
    deadline = time.monotonic() + 20
    while True:
        links = {link["peer"]: link for link in world.replication(world.a)["links"]}
        if links["fhs-c"]["pending"] >= 2 and links["fhs-c"]["last_error"]:
            break
        assert time.monotonic() < deadline, links
        time.sleep(0.2)
    cluster.start_fhs("c")
    state_hash = world.converge(timeout_s=60)
    at_c = call("GET", world.url(world.c, "/attributes"), headers=world.c.member("carol"), expect=200)
    assert "while-c-down" in {a["name"] for a in at_c}
    services_at_c = call("GET", world.url(world.c, "/services"), headers=world.c.member("carol"), expect=200)
    assert extra["id"] in {s["id"] for s in services_at_c}
    deadline = time.monotonic() + 30
    while (link := {x["peer"]: x for x in world.replication(world.a)["links"]}["fhs-c"])["pending"]:
        assert time.monotonic() < deadline, f"the outbox towards fhs-c never drained: {link}"
        time.sleep(0.2)
    assert link["last_error"] is None and len(state_hash) == 64


def test_peering_with_a_wrong_fingerprint_is_refused(world: World, tmp_path: Path) -> None:
    response = httpx.put(
        f"{world.a.fhs_url}/operator/v1/peers/fhs-x",
        headers=world.a.operator,
        timeout=10,
        json={"base_url": world.b.fhs_url, "fingerprints": ["not-the-right-one"]},
    )
    assert response.status_code == 422
    assert "fingerprints" in response.json()["error"]["message"]

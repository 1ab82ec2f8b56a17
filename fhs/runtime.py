"""The runtime of one FHS process: settings, store, HTTP client, signing keys, token validator.

Framework-free: the app factory starts it in its lifespan and routers reach it through dependencies.
The signing keyring and the operator credential's digest live in the store, so replicas sharing one
store (Redis) sign with the same keys and accept the same operator credential.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from fhs.errors import Conflict
from fhs.identity.keys import FHSKeyring
from fhs.identity.operator import OPERATOR_SECRET_FILE, OperatorSecret
from fhs.identity.replay import StoreReplayGuard
from fhs.identity.validation import TokenValidator
from fhs.peering.client import PeerClient
from fhs.peering.replication import Replication
from fhs.proxy.service import new_proxy_client
from fhs.proxy.ssrf import parse_allowlist
from fhs.ratelimit import RateLimits
from fhs.settings import Settings
from fhs.store import open_store
from fhs.store.base import Put, Store

SYSTEM = "system"


async def _load_or_create_keyring(store: Store) -> FHSKeyring:
    doc = await store.get(SYSTEM, "keyring")
    if doc is None:
        keyring = FHSKeyring.generate()
        try:
            await store.write([Put(SYSTEM, "keyring", keyring.export(), if_absent=True)])
            return keyring
        except Conflict:  # another replica created it first
            doc = await store.get(SYSTEM, "keyring")
    assert doc is not None
    return FHSKeyring.load_from(doc.value)


async def _shared_operator_secret(store: Store, local: OperatorSecret) -> OperatorSecret:
    """All replicas accept the operator secret of the first replica to start (its digest is in the store)."""
    try:
        await store.write([Put(SYSTEM, "operator", {"sha256": local.digest_hex}, if_absent=True)])
        return local
    except Conflict:
        doc = await store.get(SYSTEM, "operator")
        assert doc is not None
        return OperatorSecret(bytes.fromhex(doc.value["sha256"]), path=local.path)


async def rotate_operator_secret(*, store_url: str, data_dir: Path) -> None:
    """Write a new operator secret file and make the store (hence every replica, after restart) accept it."""
    path = Path(data_dir) / OPERATOR_SECRET_FILE
    path.unlink(missing_ok=True)
    fresh = OperatorSecret.open(data_dir)
    store = open_store(store_url)
    try:
        await store.write([Put(SYSTEM, "operator", {"sha256": fresh.digest_hex})])
    finally:
        await store.close()


@dataclass
class Runtime:
    """Everything one FHS process holds while it runs."""

    settings: Settings
    store: Store
    http: httpx.AsyncClient
    """For the FHS's own calls (JWKS, peers)."""
    proxy_http: httpx.AsyncClient
    """For proxied member calls only: no cookies, no environment proxies, no redirects."""
    keyring: FHSKeyring
    validator: TokenValidator
    operator: OperatorSecret
    started_at: float
    rate_limits: RateLimits
    peers: PeerClient = field(init=False)
    replication: Replication = field(init=False)
    peer_assertions: StoreReplayGuard = field(init=False)
    """Request assertions of peers are single-use across every replica sharing the store."""
    key_refreshes: dict[str, float] = field(default_factory=dict)
    """Monotonic time of the last key refresh per peer (at most one per cooldown)."""

    def __post_init__(self) -> None:
        self.peers = PeerClient(
            store=self.store,
            http=self.http,
            me=self.settings.fhs_id,
            keyring=lambda: self.keyring,
            timeout_s=self.settings.peer_timeout_s,
        )
        self.replication = Replication(self)
        self.peer_assertions = StoreReplayGuard(self.store, "peer_jti", leeway=120)

    @classmethod
    async def start(cls, settings: Settings) -> Runtime:
        """Open the store, load (or create on first start) keys and the operator credential."""
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        parse_allowlist(settings.proxy_allowlist)  # a bad entry stops start-up, not a member's call
        store = open_store(settings.resolved_store_url)
        http = httpx.AsyncClient(
            follow_redirects=False, timeout=settings.jwks_fetch_timeout_s, trust_env=False
        )
        keyring = await _load_or_create_keyring(store)
        operator = await _shared_operator_secret(store, OperatorSecret.open(settings.data_dir))
        return cls(
            settings=settings,
            store=store,
            http=http,
            proxy_http=new_proxy_client(),
            keyring=keyring,
            validator=TokenValidator(settings, http),
            operator=operator,
            started_at=time.time(),
            rate_limits=RateLimits(
                member=settings.rate_limit_member,
                planning=settings.rate_limit_planning,
                peer=settings.rate_limit_peer,
            ),
        )

    async def rotate_keys(self, *, overlap_s: float, publish_delay_s: float) -> str:
        """Rotate the signing key (published now, used after the delay) and share it with the replicas."""
        doc = await self.store.get(SYSTEM, "keyring")
        keyring = FHSKeyring.load_from(doc.value) if doc else self.keyring
        kid = keyring.rotate(overlap_s=overlap_s, publish_delay_s=publish_delay_s)
        await self.store.write(
            [Put(SYSTEM, "keyring", keyring.export(), if_version=doc.version if doc else 0)]
        )
        self.keyring = keyring
        return kid

    async def close(self) -> None:
        """Stop replication, release the HTTP clients and the store."""
        await self.replication.stop()
        await self.http.aclose()
        await self.proxy_http.aclose()
        await self.store.close()

"""Request and response shapes of peering and replication."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from fhs.federations.schemas import FedBase

FHS_ID_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"


class PeerCreate(FedBase):
    """Peer with another FHS: its base URL and its keys, pinned inline or fetched once and checked."""

    base_url: str = Field(pattern=r"^https?://[^\s]{1,2000}$")
    jwks: dict[str, Any] | None = None
    fingerprints: list[str] | None = Field(None, min_length=1, max_length=8)
    """RFC 7638 thumbprints (the kids) of the peer's keys: the JWKS is fetched once and kept only if its keys
    match these."""

    @model_validator(mode="after")
    def _one_source(self) -> PeerCreate:
        if (self.jwks is None) == (self.fingerprints is None):
            raise ValueError(
                "give exactly one of 'jwks' (the peer's keys) and 'fingerprints' (to fetch them)"
            )
        return self


class PeerRead(FedBase):
    """A peer as the operator sees it."""

    fhs_id: str
    base_url: str
    kids: list[str]
    added_at: str
    keys_updated_at: str


class LinkStatus(FedBase):
    """Replication state of one federation towards or from one peer."""

    peer: str
    direction: str
    acked_seq: int
    pending: int
    last_ok: str | None = None
    last_error: str | None = None


class FederationSync(FedBase):
    """Replication state of one federation at this FHS."""

    federation: str
    home: str
    seq: int
    state_hash: str | None
    links: list[LinkStatus]


class CommandForward(FedBase):
    """A member's command forwarded by the FHS it authenticated to, to the federation's home."""

    name: str = Field(max_length=64)
    args: dict[str, Any]
    actor: dict[str, str]


class EventBatch(FedBase):
    """Signed events (compact JWS, one per event) in sequence order."""

    events: list[str] = Field(max_length=1000)

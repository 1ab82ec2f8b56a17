"""Request and response shapes of the Operator API."""

from __future__ import annotations

from pydantic import Field

from fhs.federations.schemas import NAME_PATTERN, FedBase
from fhs.identity.schemas import TrustedIssuer


class IssuerRead(FedBase):
    """A trusted issuer as stored, with the name the operator gave it."""

    name: str = Field(pattern=NAME_PATTERN)
    config: TrustedIssuer


class FedAdminGrant(FedBase):
    """Grant the capability to create federations to a member identity."""

    issuer: str = Field(min_length=1, max_length=512)
    subject: str = Field(min_length=1, max_length=512)


class FedAdminRead(FedBase):
    """A FedAdmin grant."""

    id: str
    issuer: str
    subject: str
    granted_at: str


class Status(FedBase):
    """The FHS's status for its operator."""

    fhs_id: str
    version: str
    uptime_s: float
    store: str
    store_ok: bool
    federations: int
    trusted_issuers: int
    peers: int


class KeyRotation(FedBase):
    """When a rotated key starts signing, and how long the old one stays published."""

    publish_delay_s: float = Field(60.0, ge=0, le=86400)
    overlap_s: float = Field(600.0, ge=0, le=7 * 86400)

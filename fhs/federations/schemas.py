"""Request and response shapes of the federation domain."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
MAX_SEQ = 2**63 - 1
"""The largest log sequence number a store can hold."""


class FedBase(BaseModel):
    """Shared base: unknown fields are an error, strings are bounded."""

    model_config = ConfigDict(extra="forbid", str_max_length=4096)


class FederationCreate(FedBase):
    """A FedAdmin's request to create a federation instance."""

    name: str = Field(min_length=1, max_length=128)
    description: str = Field("", max_length=2000)


class FederationRead(FedBase):
    """A federation as its members see it."""

    id: str
    name: str
    description: str
    home_fhs: str
    created_by: str
    created_at: str
    my_attributes: list[str] = []
    participants: list[str] = []


class MemberGrant(FedBase):
    """Grant membership to an identity (issuer, subject), optionally with attributes."""

    issuer: str = Field(min_length=1, max_length=512)
    subject: str = Field(min_length=1, max_length=512)
    home_fhs: str | None = Field(None, max_length=64)
    attributes: list[str] = Field(default_factory=list, max_length=64)


class MemberRead(FedBase):
    """A member of a federation."""

    id: str
    issuer: str
    subject: str
    home_fhs: str
    attributes: list[str]
    granted_by: str
    granted_at: str


class AttributeCreate(FedBase):
    """Define an attribute in a federation."""

    name: str = Field(pattern=NAME_PATTERN)
    description: str = Field("", max_length=500)


class AttributeRead(FedBase):
    """An attribute definition."""

    name: str
    description: str
    predefined: bool


class AuditEntryRead(FedBase):
    """One audit log entry."""

    seq: int
    at: str
    actor: str
    action: str
    target: str
    decision: str
    policy: str | None = None
    details: dict[str, Any] = {}

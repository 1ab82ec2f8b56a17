"""Request and response shapes of the service registry."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, Field

from fhs.federations.schemas import FedBase

PolicySpec = str | dict[str, Any]
"""Cedar policy text, or the attribute shorthand such as ``{"any_of": ["edge-users"]}``."""
MetadataValue = str | int | float | bool


def _check_metadata(value: dict[str, MetadataValue]) -> dict[str, MetadataValue]:
    if len(value) > 32:
        raise ValueError("at most 32 metadata entries")
    for key, item in value.items():
        if not 0 < len(key) <= 64 or (isinstance(item, str) and len(item) > 512):
            raise ValueError("metadata keys are 1-64 characters and string values at most 512")
    return value


Metadata = Annotated[dict[str, MetadataValue], AfterValidator(_check_metadata)]


class ServiceCreate(FedBase):
    """A ServiceOwner's registration of an endpoint."""

    name: str = Field(min_length=1, max_length=128)
    type: str = Field(pattern=r"^[a-z][a-z0-9_.-]{0,63}$", examples=["scission.resource"])
    endpoint: str = Field(min_length=1, max_length=2048)
    metadata: Metadata = Field(default_factory=dict)
    discovery_policy: PolicySpec = Field(default_factory=lambda: {"template": "all-members"})
    access_policy: PolicySpec = Field(default_factory=lambda: {"template": "owner-only"})


class ServiceUpdate(FedBase):
    """A partial update of a registration; omitted fields stay as they are."""

    name: str | None = Field(None, min_length=1, max_length=128)
    endpoint: str | None = Field(None, min_length=1, max_length=2048)
    metadata: Metadata | None = None
    discovery_policy: PolicySpec | None = None
    access_policy: PolicySpec | None = None


class ServiceRead(FedBase):
    """A service as a member sees it; ``endpoint`` and policies only for its owner."""

    id: str
    name: str
    type: str
    metadata: dict[str, MetadataValue]
    fhs: str
    owner: str
    created_at: str
    updated_at: str
    endpoint: str | None = None
    discovery_policy: str | None = None
    access_policy: str | None = None

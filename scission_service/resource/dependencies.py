"""FastAPI dependencies of the resource service (STYLE #4)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from scission_service.resource.link import LinkEmulator
from scission_service.resource.service import ResourceService


def get_service(request: Request) -> ResourceService:
    """The service started by the app's lifespan."""
    service: ResourceService = request.app.state.service
    return service


def get_link(request: Request) -> LinkEmulator:
    """The node's link emulator (a no-op without a profile)."""
    link: LinkEmulator = request.app.state.link
    return link


def get_invocation(request: Request) -> dict[str, Any]:
    """The verified invocation-token claims of this call (set by the auth middleware)."""
    claims: dict[str, Any] = request.state.invocation
    return claims


ServiceDep = Annotated[ResourceService, Depends(get_service)]
LinkDep = Annotated[LinkEmulator, Depends(get_link)]
Invocation = Annotated[dict[str, Any], Depends(get_invocation)]

"""FastAPI dependencies of the Operator and Member APIs (STYLE #4): runtime, caller identity, budgets."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from fhs.errors import Forbidden, Unauthenticated
from fhs.identity.operator import is_operator_credential
from fhs.identity.schemas import Principal
from fhs.identity.validation import extract_bearer
from fhs.operator import service as operator_service
from fhs.runtime import Runtime
from fhs.store.base import Store


def get_runtime(request: Request) -> Runtime:
    """The runtime started by the app's lifespan."""
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_store(runtime: RuntimeDep) -> Store:
    """The FHS's store."""
    return runtime.store


StoreDep = Annotated[Store, Depends(get_store)]


async def _validated_principal(runtime: Runtime, token: str) -> Principal:
    issuers = await operator_service.trusted_issuers(store=runtime.store)
    return await runtime.validator.validate(token, issuers=issuers)


async def current_member(request: Request, runtime: RuntimeDep) -> Principal:
    """The member calling, from a JWT of a trusted issuer (401 otherwise)."""
    token = extract_bearer(request.headers, request.query_params)
    if token is None:
        raise Unauthenticated("missing credential: send 'Authorization: Bearer <JWT from your home IdP>'")
    if runtime.operator.check_operator_secret(token):
        raise Forbidden("the operator credential is not a member identity; use a JWT from a trusted IdP")
    principal = await _validated_principal(runtime, token)
    await runtime.rate_limits.spend("member", principal.key)
    return principal


CurrentMember = Annotated[Principal, Depends(current_member)]


async def planning_member(runtime: RuntimeDep, me: CurrentMember) -> Principal:
    """The calling member, also charged to the planning budget (calls that fan out to resources)."""
    await runtime.rate_limits.spend("planning", me.key)
    return me


PlanningMember = Annotated[Principal, Depends(planning_member)]


async def require_operator(request: Request, runtime: RuntimeDep) -> None:
    """Only the operator credential passes (401 without a credential, 403 for a member's JWT)."""
    token = extract_bearer(request.headers, request.query_params)
    if token is None:
        raise Unauthenticated(
            "missing credential: the Operator API needs 'Authorization: Bearer <operator secret>'"
        )
    if runtime.operator.check_operator_secret(token):
        return
    if is_operator_credential(token):
        raise Unauthenticated("the operator credential is not valid for this FHS")
    await _validated_principal(runtime, token)  # 401 for an invalid token
    raise Forbidden("the Operator API needs the operator credential; member tokens are not accepted here")

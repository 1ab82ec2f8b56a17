"""The FHS app factory: one FastAPI app per FHS process, built from settings (STYLE #3)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from fhs import __version__
from fhs.errors import FHSError
from fhs.observability import ObservabilityMiddleware, check_metrics_token
from fhs.runtime import Runtime
from fhs.settings import Settings

log = logging.getLogger("fhs")
FHS_ERROR_HEADER = "X-FHS-Error"
"""Set on errors the FHS itself answers, so a peer can tell them from a proxied service's own errors."""


def error_response(status_code: int, code: str, message: str, details: object = None) -> JSONResponse:
    """The one error body shape: ``{"error": {"code", "message", "details"?}}``."""
    body: dict[str, object] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status_code)


def install_error_handlers(app: FastAPI, *, fhs_errors: bool = True) -> None:
    """Map domain errors, validation errors, HTTP errors and anything unexpected to the one error shape.

    ``fhs_errors`` marks the FHS's own refusals with ``X-FHS-Error`` (so a peer can tell them from a proxied
    service's errors); services built on the same handlers pass False.
    """

    @app.exception_handler(FHSError)
    async def _fhs_error(request: Request, exc: FHSError) -> JSONResponse:
        headers = {FHS_ERROR_HEADER: "1"} if fhs_errors else {}
        if exc.status_code == 401:
            headers["WWW-Authenticate"] = "Bearer"
        if isinstance(exc.details.get("retry_after_s"), int):
            headers["Retry-After"] = str(exc.details["retry_after_s"])
        return JSONResponse(exc.to_body(), status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", "")} for e in exc.errors()
        ]
        first = problems[0] if problems else {"loc": [], "msg": "invalid request"}
        message = f"invalid request: {'.'.join(first['loc'])}: {first['msg']}"
        return error_response(422, "invalid_input", message[:500], {"problems": problems[:20]})

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
        return error_response(exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "internal error; the operator's log has the details")


def create_app(settings: Settings) -> FastAPI:
    """Build the FHS app: Operator API, Member API and the public JWKS, sharing one runtime."""
    from fhs.peering.router import router as peering_router
    from member_api.router import router as member_router
    from operator_api.router import router as operator_router

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await Runtime.start(settings)
        app.state.runtime = runtime
        runtime.replication.start()
        try:
            yield
        finally:
            await runtime.close()

    app = FastAPI(
        title=f"FedScission FHS ({settings.fhs_id})",
        version=__version__,
        lifespan=lifespan,
        description="Federation Hosting Service: Operator API, Member API (IEEE 2302 style).",
    )
    install_error_handlers(app)
    app.add_middleware(ObservabilityMiddleware, name="fhs")
    app.include_router(operator_router, prefix="/operator/v1")
    app.include_router(member_router, prefix="/member/v1")
    app.include_router(peering_router, prefix="/fhs/v1")

    @app.get("/.well-known/jwks.json", tags=["public"])
    async def jwks(request: Request) -> dict[str, object]:
        """The FHS's public signing keys (verify invocation tokens and FHS-signed events with these)."""
        return request.app.state.runtime.keyring.jwks()

    @app.get("/metrics", tags=["public"], response_class=PlainTextResponse)
    async def metrics(request: Request) -> PlainTextResponse:
        """Prometheus metrics: requests, policy decisions, proxy latency, replication lag per peer (with
        ``FHS_METRICS_TOKEN`` set, only for ``Authorization: Bearer <token>``)."""
        runtime = request.app.state.runtime
        check_metrics_token(
            request.headers.get("authorization"), runtime.settings.metrics_token, setting="FHS_METRICS_TOKEN"
        )
        await runtime.replication.record_metrics()
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", tags=["public"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["public"])
    async def readyz(request: Request) -> JSONResponse:
        """Readiness: the store answers."""
        ok = await request.app.state.runtime.store.ping()
        return JSONResponse({"status": "ok" if ok else "store unavailable"}, status_code=200 if ok else 503)

    return app

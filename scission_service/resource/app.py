"""The resource service app factory: ``create_resource_app(settings)`` (STYLE #3), used by CLI and tests."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from fhs.app import install_error_handlers
from fhs.identity.replay import StoreReplayGuard
from fhs.observability import BENCHMARK_JOBS, ObservabilityMiddleware, check_metrics_token
from fhs.store import open_store
from scission_service.resource.auth import InvocationAuthMiddleware, InvocationVerifier
from scission_service.resource.link import LinkEmulator
from scission_service.resource.router import router
from scission_service.resource.service import ResourceService
from scission_service.resource.settings import ResourceSettings

log = logging.getLogger(__name__)


def create_resource_app(
    settings: ResourceSettings, *, transport: httpx.AsyncBaseTransport | None = None
) -> FastAPI:
    """Build a resource service; every route but ``/healthz`` needs an FHS invocation token.

    Models are loaded and the FHS keys fetched in the lifespan. ``transport`` replaces the network used to
    fetch the FHS JWKS (tests).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        http = httpx.AsyncClient(transport=transport, trust_env=False, follow_redirects=False)
        service = ResourceService(settings)
        replay_store = open_store(settings.replay_store_url) if settings.replay_store_url else None
        try:
            await service.start()
            verifier = InvocationVerifier(
                issuer=settings.fhs_issuer,
                audiences=settings.service_ids,
                jwks=settings.fhs_jwks,
                jwks_url=settings.fhs_jwks_url,
                client=http,
                refresh_cooldown_s=settings.jwks_refresh_cooldown_s,
                max_age_s=settings.jwks_max_age_s,
                fetch_timeout_s=settings.jwks_fetch_timeout_s,
                leeway_s=settings.token_leeway_s,
                max_lifetime_s=settings.max_token_lifetime_s,
                replays=(
                    StoreReplayGuard(replay_store, "invocation_jti", leeway=settings.token_leeway_s)
                    if replay_store is not None
                    else None
                ),
            )
            await verifier.start()
            app.state.service = service
            app.state.link = LinkEmulator(settings.link)
            app.state.verifier = verifier
            log.info(
                "resource %s (%s) ready: models %s, service ids %s",
                settings.name, settings.tier, ", ".join(service.models), ", ".join(settings.service_ids),
            )  # fmt: skip
            yield
        finally:
            app.state.verifier = None
            await service.close()
            await http.aclose()
            if replay_store is not None:
                await replay_store.close()

    app = FastAPI(
        title=f"FedScission resource service ({settings.name}, {settings.tier})",
        lifespan=lifespan,
        description="Scission resource node: describe, benchmark, run DNN segments; calls only via its FHS.",
    )
    app.state.verifier = None
    install_error_handlers(app, fhs_errors=False)
    app.add_middleware(InvocationAuthMiddleware)
    app.add_middleware(ObservabilityMiddleware, name="resource")
    app.include_router(router)

    @app.get("/metrics", tags=["public"], response_class=PlainTextResponse)
    async def metrics(request: Request) -> PlainTextResponse:
        """Prometheus metrics (no invocation token; with ``metrics_token`` set, ``Bearer <token>``): requests,
        benchmark jobs by status, segment compute time."""
        check_metrics_token(
            request.headers.get("authorization"),
            settings.metrics_token,
            setting="SCISSION_RESOURCE_METRICS_TOKEN",
        )
        for status, count in app.state.service.jobs.status_counts().items():
            BENCHMARK_JOBS.labels(status).set(count)
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", tags=["public"])
    async def healthz() -> dict[str, str]:
        """Liveness (no token needed): the models are loaded and the process answers."""
        return {"status": "ok"}

    return app

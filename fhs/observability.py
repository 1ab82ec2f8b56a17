"""Metrics (Prometheus) and structured logs with request ids, for the FHS and the resource service.

The request id comes from the caller's ``X-Request-Id`` (if well-formed) or is made here; it is kept in a
context variable, written into every JSON log line, returned to the caller, and sent on to peer FHSs and
upstream services, so one call can be followed across FHSs. Metrics use the process's default Prometheus
registry (one app per process in production).
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import time
import uuid
from contextvars import ContextVar
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from fhs.errors import Unauthenticated

REQUEST_ID: ContextVar[str] = ContextVar("request_id", default="-")
_REQUEST_ID_FORMAT = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

HTTP_REQUESTS = Counter(
    "fedscission_http_requests_total", "HTTP requests answered", ["app", "method", "route", "status"]
)
HTTP_SECONDS = Histogram(
    "fedscission_http_request_seconds", "HTTP request duration", ["app", "method", "route"]
)
DECISIONS = Counter("fhs_policy_decisions_total", "Policy decisions", ["action", "decision"])
PROXY_SECONDS = Histogram("fhs_proxy_seconds", "Duration of proxied invocations", ["path"])
REPLICATION_PENDING = Gauge(
    "fhs_replication_pending_events", "Events a participant has not acknowledged", ["peer"]
)
REPLICATION_LAST_OK_AGE = Gauge(
    "fhs_replication_last_ok_age_seconds", "Seconds since the last successful sync", ["peer"]
)
BENCHMARK_JOBS = Gauge("scission_benchmark_jobs", "Benchmark jobs by status", ["status"])
SEGMENT_SECONDS = Histogram("scission_segment_compute_seconds", "Compute time of executed segments")


def request_id_from(header: str | None) -> str:
    """The caller's request id if well-formed, else a fresh one."""
    return header if header and _REQUEST_ID_FORMAT.match(header) else uuid.uuid4().hex


class JsonFormatter(logging.Formatter):
    """One JSON object per log line: time, level, logger, message, request id, exception type if any."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": REQUEST_ID.get(),
        }
        if record.exc_info and record.exc_info[0] is not None:
            line["error"] = record.exc_info[0].__name__
            line["trace"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure_logging(level: str = "INFO") -> None:
    """Send JSON log lines to stderr (replaces the root handlers)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def route_template(scope: dict[str, Any]) -> str:
    """The matched route's full path template (bounded label values), or "unmatched"."""
    context = scope.get("fastapi", {}).get("effective_route_context")  # routes of included routers
    template = getattr(context, "path_format", None) or getattr(scope.get("route"), "path", None)
    return str(template) if template else "unmatched"


class ObservabilityMiddleware:
    """Pure ASGI middleware: request id in and out, request counts and durations by route template."""

    def __init__(self, app: Any, *, name: str) -> None:
        self.app, self.name = app, name

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        request_id = request_id_from(headers.get("x-request-id"))
        token = REQUEST_ID.set(request_id)
        status = {"code": 500}
        started = time.perf_counter()

        async def send_with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            HTTP_REQUESTS.labels(self.name, scope["method"], route_template(scope), str(status["code"])).inc()
            HTTP_SECONDS.labels(self.name, scope["method"], route_template(scope)).observe(
                time.perf_counter() - started
            )
            REQUEST_ID.reset(token)


def check_metrics_token(authorization: str | None, token: str, *, setting: str) -> None:
    """Let a ``/metrics`` scrape in: always when ``token`` is empty, else only with ``Bearer <token>``."""
    if not token:
        return
    if authorization is None or not hmac.compare_digest(authorization.encode(), f"Bearer {token}".encode()):
        raise Unauthenticated(f"/metrics needs 'Authorization: Bearer <the token set in {setting}>'")

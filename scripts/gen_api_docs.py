"""Generate docs/api.md: the HTTP API reference, rendered from the apps' own OpenAPI.

Builds the FHS app with ``fhs.app.create_app(Settings())`` and a resource service app with
``scission_service.resource.app.create_resource_app`` (neither lifespan runs: no store, keys or models are
touched) and renders, per OpenAPI tag, a table of method, path, success status, summary and credential.

The credential column is derived from the code, not typed by hand: Operator/Member routes by the dependency
they declare (``require_operator`` / ``current_member``), FHS-FHS routes by whether the handler authenticates
the peer (``fhs.peering.router._peer``), resource routes by the middleware's open paths.

Usage: ``.venv/bin/python scripts/gen_api_docs.py [--check] [--output docs/api.md]``.
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

OUTPUT = ROOT / "docs" / "api.md"
METHOD_ORDER = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
FHS_TAGS = [
    (
        "operator",
        "Operator API",
        "`Authorization: Bearer fhsop_…` (the operator secret; member JWTs get 403).",
    ),
    (
        "member",
        "Member API",
        "`Authorization: Bearer <JWT from a trusted IdP>` (the member's home FHS only).",
    ),
    (
        "fhs-fhs",
        "FHS-FHS API",
        "`X-FHS-Assertion: <fhs-peer+jwt>` signed by a pinned peer, bound to method, path and body digest.",
    ),
    ("public", "Public", "No credential."),
]
AUTH_OPERATOR = "operator secret"
AUTH_MEMBER = "member JWT"
AUTH_PEER = "peer assertion"
AUTH_INVOCATION = "invocation token"
AUTH_NONE = "none"


def _dependency_calls(route: APIRoute) -> set[Callable[..., Any]]:
    """Every dependency callable of a route, recursively."""
    found: set[Callable[..., Any]] = set()
    stack = list(route.dependant.dependencies)
    while stack:
        dep = stack.pop()
        if dep.call is not None:
            found.add(dep.call)
        stack.extend(dep.dependencies)
    return found


def _fhs_auth(route: APIRoute) -> str:
    """The credential an FHS route requires, read from its dependencies or handler."""
    from fhs.dependencies import current_member, require_operator
    from fhs.peering import router as peering_router

    calls = _dependency_calls(route)
    if require_operator in calls:
        return AUTH_OPERATOR
    if current_member in calls:
        return AUTH_MEMBER
    if inspect.getmodule(route.endpoint) is peering_router:
        source = inspect.getsource(route.endpoint)
        if re.search(r"\b_peer\(", source):
            return AUTH_PEER
    return AUTH_NONE


def _resource_auth(route: APIRoute) -> str:
    """The credential a resource-service route requires (the middleware exempts only its open paths)."""
    from scission_service.resource.auth import OPEN_PATHS

    if route.path in OPEN_PATHS and (route.methods or set()) <= {"GET", "HEAD"}:
        return AUTH_NONE
    return AUTH_INVOCATION


def _summary(operation: dict[str, Any]) -> str:
    """The first line of the handler's docstring (FastAPI's title-cased name only as a fallback)."""
    description = (operation.get("description") or "").strip()
    text = description.splitlines()[0] if description else str(operation.get("summary", ""))
    return re.sub(r"``([^`]+)``", r"`\1`", text).replace("|", "\\|")


def _success(operation: dict[str, Any]) -> str:
    codes = sorted(c for c in operation.get("responses", {}) if c.isdigit() and c.startswith("2"))
    return ", ".join(codes) or "-"


def _api_routes(routes: Iterable[Any]) -> Iterable[APIRoute]:
    """Every APIRoute of an app, also inside included routers (FastAPI ≥ 0.16x keeps them nested)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        nested = getattr(route, "original_router", None)
        if nested is not None:
            yield from _api_routes(nested.routes)


def _route_for(routes: list[APIRoute], *, tag: str, method: str, path: str) -> APIRoute:
    """The route an OpenAPI operation came from: same method and tag, path equal to prefix + route path."""
    matches = [
        route
        for route in routes
        if method in (route.methods or set())
        and tag in (route.tags or ["untagged"])
        and path.endswith(re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path))
    ]
    if not matches:
        raise SystemExit(
            f"cannot find the route of {method} {path} (tag {tag}); update scripts/gen_api_docs.py"
        )
    return max(matches, key=lambda route: len(route.path))


def _rows(app: FastAPI, auth_of: Callable[[APIRoute], str]) -> list[dict[str, str]]:
    """One row per (tag, path, summary); the methods of one catch-all route are merged into one row."""
    routes = list(_api_routes(app.routes))
    spec = app.openapi()
    rows: list[dict[str, str]] = []
    index: dict[tuple[str, ...], dict[str, str]] = {}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            upper = method.upper()
            tag = (operation.get("tags") or ["untagged"])[0]
            row = {
                "tag": tag,
                "method": upper,
                "path": path,
                "summary": _summary(operation),
                "success": _success(operation),
                "auth": auth_of(_route_for(routes, tag=tag, method=upper, path=path)),
            }
            key = (row["tag"], path, row["summary"], row["success"], row["auth"])
            if key in index:
                index[key]["method"] += f", {upper}"
            else:
                index[key] = row
                rows.append(row)
    for row in rows:
        methods = row["method"].split(", ")
        row["method"] = ", ".join(sorted(methods, key=METHOD_ORDER.index))
    return rows


def _table(rows: Iterable[dict[str, str]]) -> list[str]:
    lines = ["| method | path | success | summary | credential |", "|---|---|---|---|---|"]
    for row in rows:
        lines.append(
            f"| {row['method']} | `{row['path']}` | {row['success']} | {row['summary']} | {row['auth']} |"
        )
    return lines


def build_fhs_app() -> FastAPI:
    """The FHS app as ``fhs serve`` builds it (settings from defaults and ``FHS_*``; no lifespan)."""
    from fhs.app import create_app
    from fhs.settings import Settings

    return create_app(Settings())


def build_resource_app() -> FastAPI:
    """A resource service app with placeholder settings (routes do not depend on them; no lifespan)."""
    from scission_service.resource.app import create_resource_app
    from scission_service.resource.settings import ResourceSettings

    settings = ResourceSettings.model_validate(
        {
            "name": "example",
            "tier": "edge",
            "models": ["mobilenetv2"],
            "fhs_issuer": "https://fhs.example",
            "service_ids": ["svc_example000"],
        }
    )
    return create_resource_app(settings)


def render() -> str:
    """The full text of docs/api.md."""
    from fhs import __version__

    lines = [
        "# HTTP API reference",
        "",
        "<!-- Generated by scripts/gen_api_docs.py from the apps' OpenAPI; do not edit by hand. -->",
        "",
        f"FHS version {__version__}. One FHS process serves all four groups below "
        "(`fhs.app.create_app`); the interactive schema is at `/docs` and `/openapi.json` of a running FHS. "
        'Errors have one shape: `{"error": {"code", "message", "details"?}}`; errors the FHS itself '
        "answers carry `X-FHS-Error: 1`. Paths under `…/invoke/{path}` take any sub-path and are proxied. "
        "How the credentials work: [security.md](security.md); request paths: "
        "[architecture.md](architecture.md).",
        "",
    ]
    fhs_rows = _rows(build_fhs_app(), _fhs_auth)
    known = {tag for tag, _, _ in FHS_TAGS}
    for tag, title, credential in FHS_TAGS:
        lines += [f"## {title} (tag `{tag}`)", "", f"Credential: {credential}", ""]
        lines += _table(r for r in fhs_rows if r["tag"] == tag)
        lines.append("")
    other = [r for r in fhs_rows if r["tag"] not in known]
    if other:
        lines += ["## Other FHS routes", ""] + _table(other) + [""]
    lines += [
        "## Resource service (`scission_service.resource.app.create_resource_app`)",
        "",
        "A separate app on each device/edge/cloud node. Members never call it directly: they call "
        "`/member/v1/federations/{fid}/services/{sid}/invoke/<path>` and the owning FHS forwards with an "
        "`fhs-invocation+jwt` (`aud` = the service id, single-use `jti`). Details: "
        "[resource-service.md](resource-service.md).",
        "",
    ]
    lines += _table(_rows(build_resource_app(), _resource_auth))
    lines += ["", *_settings_section()]
    return "\n".join(lines)


def _settings_section() -> list[str]:
    """The FHS's environment variables, from the documented fields of ``fhs.settings.Settings``."""
    import json

    from fhs.settings import Settings

    lines = [
        "## FHS configuration (environment)",
        "",
        "`fhs serve` reads these from the environment; its options (`fhs serve --help`) set the first few "
        "and win over the environment. Lists are JSON, e.g. `FHS_PROXY_ALLOWLIST='[\"10.0.0.0/8\"]'`. "
        "All replicas of one FHS use the same values.",
        "",
        "| variable | default | meaning |",
        "|---|---|---|",
    ]
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = json.dumps(default) if isinstance(default, list) else str(default)
        shown = f"`{shown}`" if shown else "(empty)"
        meaning = " ".join((field.description or "").split()).replace("|", "\\|")
        lines.append(f"| `FHS_{name.upper()}` | {shown} | {meaning} |")
    lines.append("")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Write docs/api.md, or with --check report whether it is up to date."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale, write nothing")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is stale: run scripts/gen_api_docs.py", file=sys.stderr)
            return 1
        print(f"{args.output} is up to date")
        return 0
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``scission resource``: run a resource node (``serve``) and register it with its FHS (``register``).

The usual order: ``register`` (prints the service id the FHS assigned), then ``serve --service-id <id>``:
the service id is the audience of the invocation tokens the node accepts. Bad options end with exit status 2
and a message, never a traceback. TensorFlow is imported only when a command needs it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import httpx
from pydantic import ValidationError

from fhs.errors import validation_problems
from scission_service.resource.settings import ResourceSettings

MEMBER_TOKEN_ENV = "SCISSION_MEMBER_TOKEN"
SERVICE_TYPE = "scission.resource"


class ConfigError(click.ClickException):
    """A bad option or configuration: exit status 2 with a message."""

    exit_code = 2


def _json_file(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc}") from None


def build_settings(config: Path | None, overrides: dict[str, Any]) -> ResourceSettings:
    """ResourceSettings from a JSON file, ``SCISSION_RESOURCE_*`` variables and options (options win)."""
    data: dict[str, Any] = {}
    if config is not None:
        loaded = _json_file(config, "config")
        if not isinstance(loaded, dict):
            raise ConfigError(f"{config} must hold a JSON object of resource settings")
        data.update(loaded)
    data.update({k: v for k, v in overrides.items() if v not in (None, ())})
    try:
        return ResourceSettings(**data)
    except ValidationError as exc:
        raise ConfigError(f"invalid resource settings: {validation_problems(exc)}") from None


def _preflight(settings: ResourceSettings) -> None:
    """Cheap checks before TensorFlow and uvicorn start: model files exist, application names are known."""
    from scission_service.models import ModelLoadError, canonical_application_name

    for spec in settings.models:
        if spec.path is not None and not spec.path.is_file():
            raise ConfigError(f"model {spec.name!r}: file {spec.path} does not exist")
        if spec.application is not None:
            try:
                canonical_application_name(spec.application)
            except ModelLoadError as exc:
                raise ConfigError(f"model {spec.name!r}: {exc}") from None


@click.group("resource")
def resource() -> None:
    """Run a Scission resource node (device, edge or cloud) and register it with its FHS."""


@resource.command("serve")
@click.option(
    "--config", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="JSON settings file."
)
@click.option("--name", help="Resource name (shown in BenchmarkData).")
@click.option("--tier", type=click.Choice(["device", "edge", "cloud"]))
@click.option(
    "--model",
    "models",
    multiple=True,
    help="[NAME=]APPLICATION[:alpha=…][:input_shape=HxWxC] or [NAME=]PATH.keras (repeatable).",
)
@click.option("--fhs-issuer", help="The FHS public URL (the 'iss' of invocation tokens).")
@click.option("--fhs-jwks-url", help="Default: {fhs-issuer}/.well-known/jwks.json.")
@click.option(
    "--fhs-jwks-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Pin the FHS JWKS from a file instead of fetching it.",
)
@click.option("--service-id", "service_ids", multiple=True, help="Service id from `register` (repeatable).")
@click.option("--max-tensor-bytes", type=int)
@click.option("--link", help="Emulated link: 3g, 4g, wired, edge-cloud (append /receive or /both).")
@click.option(
    "--compute-slowdown", type=float, help="Emulate slower hardware: blocks take this many times longer."
)
@click.option(
    "--cache-dir", type=click.Path(file_okay=False, path_type=Path), help="Persist benchmarks here."
)
@click.option(
    "--replay-store",
    "replay_store_url",
    help="Keep used token ids in this store (sqlite:///path or redis://…) so a restart or a replica "
    "refuses a replayed token; default: this process's memory.",
)
@click.option("--host")
@click.option("--port", type=int)
@click.option("--log-level", default="info", type=click.Choice(["debug", "info", "warning", "error"]))
def serve(
    config: Path | None,
    name: str | None,
    tier: str | None,
    models: tuple[str, ...],
    fhs_issuer: str | None,
    fhs_jwks_url: str | None,
    fhs_jwks_file: Path | None,
    service_ids: tuple[str, ...],
    max_tensor_bytes: int | None,
    link: str | None,
    compute_slowdown: float | None,
    cache_dir: Path | None,
    replay_store_url: str | None,
    host: str | None,
    port: int | None,
    log_level: str,
) -> None:
    """Serve describe, benchmarks and segment execution; only calls forwarded by the FHS get in."""
    overrides: dict[str, Any] = {
        "name": name,
        "tier": tier,
        "models": list(models) or None,
        "fhs_issuer": fhs_issuer,
        "fhs_jwks_url": fhs_jwks_url,
        "fhs_jwks": _json_file(fhs_jwks_file, "JWKS file") if fhs_jwks_file is not None else None,
        "service_ids": list(service_ids) or None,
        "max_tensor_bytes": max_tensor_bytes,
        "link": link,
        "compute_slowdown": compute_slowdown,
        "cache_dir": cache_dir,
        "replay_store_url": replay_store_url,
        "host": host,
        "port": port,
    }
    settings = build_settings(config, overrides)
    _preflight(settings)
    import uvicorn

    from scission_service.resource.app import create_resource_app

    uvicorn.run(create_resource_app(settings), host=settings.host, port=settings.port, log_level=log_level)


def _policy(text: str | None, any_of: tuple[str, ...], what: str) -> str | dict[str, Any] | None:
    """A policy from ``--X-policy`` (JSON shorthand, Cedar text, or @file) or ``--X-any-of`` attributes."""
    if text is not None and any_of:
        raise ConfigError(f"give either --{what}-policy or --{what}-any-of, not both")
    if any_of:
        return {"any_of": list(any_of)}
    if text is None:
        return None
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read the {what} policy file: {exc}") from None
    try:
        parsed = json.loads(text)
    except ValueError:
        return text  # Cedar text
    if not isinstance(parsed, dict):
        raise ConfigError(
            f'the {what} policy must be Cedar text or a JSON object such as {{"any_of": [...]}}'
        )
    return parsed


def hardware_metadata() -> dict[str, str | int]:
    """This machine's descriptor as registry metadata (imports TensorFlow)."""
    from scission_service.benchmarking import describe_resource

    described = describe_resource(name="registration", tier="edge")
    return {
        "cpu_model": described.cpu_model[:200],
        "cores": described.cores,
        "memory_bytes": described.memory_bytes,
        "accelerator": described.accelerator[:200],
        "tensorflow_version": described.tensorflow_version,
    }


def register_resource(
    *,
    fhs_url: str,
    federation: str,
    token: str,
    body: dict[str, Any],
    transport: httpx.BaseTransport | None = None,
    timeout_s: float = 30.0,
) -> dict[str, Any]:
    """POST the registration to the FHS Member API; return its ServiceRead (ConfigError if refused)."""
    url = f"{fhs_url.rstrip('/')}/member/v1/federations/{federation}/services"
    try:
        with httpx.Client(transport=transport, timeout=timeout_s, trust_env=False) as client:
            response = client.post(url, json=body, headers={"Authorization": f"Bearer {token}"})
    except httpx.HTTPError as exc:
        raise ConfigError(f"cannot reach the FHS at {fhs_url}: {type(exc).__name__}: {exc}") from None
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if response.status_code != 201 or not isinstance(answer, dict) or "id" not in answer:
        error = answer.get("error", {}) if isinstance(answer, dict) else {}
        message = error.get("message") if isinstance(error, dict) else None
        raise ConfigError(
            f"the FHS refused the registration (HTTP {response.status_code}): "
            f"{message or response.text[:300]}"
        )
    return answer


@resource.command("register")
@click.option("--fhs", "fhs_url", required=True, help="Your FHS's public URL.")
@click.option("--federation", required=True, help="Federation id.")
@click.option("--token", envvar=MEMBER_TOKEN_ENV, help=f"Member JWT from your IdP (or ${MEMBER_TOKEN_ENV}).")
@click.option("--token-file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", required=True, help="Service name shown to members.")
@click.option("--endpoint", required=True, help="URL the FHS forwards calls to (never shown to members).")
@click.option("--tier", required=True, type=click.Choice(["device", "edge", "cloud"]))
@click.option("--model", "models", multiple=True, help="Names of the served models (metadata).")
@click.option("--meta", multiple=True, help="Extra metadata KEY=VALUE (repeatable).")
@click.option("--discover-any-of", multiple=True, help="Attributes allowed to discover (repeatable).")
@click.option("--access-any-of", multiple=True, help="Attributes allowed to invoke (repeatable).")
@click.option("--discovery-policy", help="Cedar text, JSON shorthand, or @file.")
@click.option("--access-policy", help="Cedar text, JSON shorthand, or @file.")
@click.option("--detect-hardware/--no-detect-hardware", default=True, help="Add this machine's CPU/memory.")
def register(
    fhs_url: str,
    federation: str,
    token: str | None,
    token_file: Path | None,
    name: str,
    endpoint: str,
    tier: str,
    models: tuple[str, ...],
    meta: tuple[str, ...],
    discover_any_of: tuple[str, ...],
    access_any_of: tuple[str, ...],
    discovery_policy: str | None,
    access_policy: str | None,
    detect_hardware: bool,
) -> None:
    """Register this node as a `scission.resource` service; print the service id on stdout."""
    if token_file is not None:
        token = token_file.read_text().strip()
    if not token:
        raise ConfigError(f"a member token is needed: --token, --token-file or ${MEMBER_TOKEN_ENV}")
    metadata: dict[str, Any] = {"tier": tier}
    if detect_hardware:
        metadata.update(hardware_metadata())
    if models:
        metadata["models"] = ",".join(models)
    for item in meta:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--meta {item!r} must be KEY=VALUE")
        metadata[key] = value
    body: dict[str, Any] = {"name": name, "type": SERVICE_TYPE, "endpoint": endpoint, "metadata": metadata}
    for key, policy in (
        ("discovery_policy", _policy(discovery_policy, discover_any_of, "discovery")),
        ("access_policy", _policy(access_policy, access_any_of, "access")),
    ):
        if policy is not None:
            body[key] = policy
    answer = register_resource(fhs_url=fhs_url, federation=federation, token=token, body=body)
    click.echo(answer["id"])
    click.echo(
        f"registered {name!r} in {federation}; start it with: scission resource serve "
        f"--service-id {answer['id']} --fhs-issuer {fhs_url} …",
        err=True,
    )
    if "access_policy" not in body:
        click.echo("note: no access policy given, so the FHS default (owner only) applies", err=True)

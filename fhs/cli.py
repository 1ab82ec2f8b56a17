"""The `fhs` command: run an FHS, run and configure a dev IdP, small admin helpers, and (later) the demo.

Bad configuration ends a command with exit status 2 and a one-paragraph message, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
from pydantic import ValidationError

from fhs.errors import validation_problems
from fhs.observability import configure_logging
from fhs.settings import Settings

CLIENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
DEFAULT_FHS_URL = "http://127.0.0.1:8080"


class ConfigError(click.ClickException):
    """A bad option value or configuration file: exit status 2 with a message, no traceback."""

    exit_code = 2


def redact_url(url: str) -> str:
    """A URL without its password, for logs."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _preflight(settings: Settings) -> None:
    """Open the store, keys and operator credential once, so a bad setting fails here with a message."""
    from fhs.runtime import Runtime

    async def check() -> None:
        runtime = await Runtime.start(settings)
        await runtime.close()

    try:
        asyncio.run(check())
    except Exception as exc:  # noqa: BLE001  (the CLI boundary: report, never a traceback)
        message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        raise ConfigError(f"cannot start the FHS: {message}") from None


@click.group()
@click.version_option(package_name="fedscission")
def main() -> None:
    """FedScission Federation Hosting Service."""


@main.command()
@click.option("--fhs-id", envvar="FHS_FHS_ID", default="fhs-local", show_default=True, help="This FHS's id.")
@click.option("--host", envvar="FHS_HOST", default="127.0.0.1", show_default=True)
@click.option("--port", envvar="FHS_PORT", default=8080, show_default=True, type=int)
@click.option(
    "--public-url",
    envvar="FHS_PUBLIC_URL",
    default=None,
    help="URL members and peers reach this FHS at (default http://HOST:PORT); audience of member tokens.",
)
@click.option(
    "--data-dir",
    envvar="FHS_DATA_DIR",
    default="data",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
)
@click.option(
    "--store-url",
    envvar="FHS_STORE_URL",
    default="",
    help="sqlite:///path or redis://host:port/db (default: SQLite in the data dir).",
)
@click.option(
    "--allow",
    "allowlist",
    multiple=True,
    help="CIDR or host the proxy may call although private/loopback (repeatable; or FHS_PROXY_ALLOWLIST as a "
    "JSON list, e.g. '[\"10.0.0.0/8\"]').",
)
def serve(
    fhs_id: str,
    host: str,
    port: int,
    public_url: str | None,
    data_dir: Path,
    store_url: str,
    allowlist: tuple[str, ...],
) -> None:
    """Run an FHS (Operator API, Member API)."""
    import uvicorn

    from fhs.app import create_app

    try:
        overrides: dict[str, Any] = {"proxy_allowlist": list(allowlist)} if allowlist else {}
        settings = Settings(
            fhs_id=fhs_id,
            host=host,
            port=port,
            public_url=public_url or f"http://{host}:{port}",
            data_dir=data_dir,
            store_url=store_url,
            **overrides,
        )
    except ValidationError as exc:
        raise ConfigError(f"invalid FHS settings: {validation_problems(exc)}") from None
    configure_logging("INFO")
    _preflight(settings)
    click.echo(
        f"FHS {fhs_id} at {settings.public_url} (store {redact_url(settings.resolved_store_url)}); "
        f"operator secret in {data_dir / 'operator.secret'}"
    )
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")


@main.command()
@click.option(
    "--keep-running", is_flag=True, help="Leave the federation up afterwards and print how to use it."
)
@click.option(
    "--dir",
    "base_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep the demo's data and logs here (default: a temporary directory).",
)
def demo(keep_running: bool, base_dir: Path | None) -> None:
    """Run two trust domains on loopback and a federated partition query end to end."""
    from fhs.devtools.demo import run_demo

    try:
        result = run_demo(base_dir, keep_running=keep_running)
    except KeyboardInterrupt:
        raise click.ClickException("interrupted; every process the demo started was stopped") from None
    except Exception as exc:  # a demo failure is reported, never a traceback; logs stay in --dir
        raise click.ClickException(f"the demo failed: {exc}") from None
    if not result.matches_local:
        raise click.ClickException("the executed plan's output did not match a local run of the model")


# --- operator helpers ------------------------------------------------------------------------------


@main.command("operator-secret")
@click.option(
    "--data-dir",
    envvar="FHS_DATA_DIR",
    default="data",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The FHS's data directory.",
)
@click.option("--url", default=DEFAULT_FHS_URL, show_default=True, help="The FHS's URL, for the example.")
@click.option("--rotate", is_flag=True, help="Write a new secret and make the store accept only it.")
@click.option("--store-url", envvar="FHS_STORE_URL", default="", help="The FHS's store (for --rotate).")
def operator_secret(data_dir: Path, url: str, rotate: bool, store_url: str) -> None:
    """Tell where the operator credential is and how to use it (never prints the secret)."""
    from fhs.identity.operator import OPERATOR_SECRET_FILE, OPERATOR_SECRET_PREFIX

    path = data_dir / OPERATOR_SECRET_FILE
    if rotate:
        import asyncio

        from fhs.runtime import rotate_operator_secret

        resolved = Settings(data_dir=data_dir, store_url=store_url).resolved_store_url
        try:
            asyncio.run(rotate_operator_secret(store_url=resolved, data_dir=data_dir))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot rotate the operator secret: {exc}") from None
        click.echo(f"new operator secret written to {path}; restart the FHS replicas to accept only it")
    if not path.is_file():
        raise ConfigError(
            f"no operator secret at {path}: the FHS creates it on first start "
            f"(fhs serve --data-dir {data_dir})"
        )
    try:
        looks_right = path.read_text(encoding="utf-8").strip().startswith(OPERATOR_SECRET_PREFIX)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    if not looks_right:
        raise ConfigError(
            f"{path} holds no operator secret; stop the FHS, delete the file and start it again"
        )
    mode = path.stat().st_mode & 0o777
    click.echo(f"operator secret: {path} (mode {mode:04o}{'' if mode == 0o600 else ', expected 0600'})")
    click.echo("send it as a bearer token to the Operator API, e.g.:")
    click.echo(f'  curl -H "Authorization: Bearer $(cat {path})" {url.rstrip("/")}/operator/v1/status')
    click.echo("to replace it: fhs operator-secret --rotate (with the FHS's --store-url); restart the FHS.")


# --- dev IdP -------------------------------------------------------------------------------------


@main.group()
def idp() -> None:
    """A dev IdP (OAuth2 client credentials + JWKS) for local use, the walkthrough and tests."""


def _parse_client(value: str) -> tuple[str, str]:
    name, _, subject = value.partition(":")
    subject = subject or name
    if not CLIENT_NAME.match(name):
        raise ConfigError(
            f"bad --client {value[:80]!r}: use NAME:SUBJECT; NAME is 1-64 letters, digits, '.', '_', '-'"
        )
    if len(subject) > 512 or not subject.isprintable():
        raise ConfigError(f"bad --client {value[:80]!r}: the subject must be 1-512 printable characters")
    return name, subject


def _toml_document(config: dict[str, object]) -> str:
    """``config`` (strings, ints, lists of strings, a table of client tables) as TOML."""
    lines: list[str] = []
    clients = config.get("clients", {})
    for key, value in config.items():
        if key != "clients":
            lines.append(f"{key} = {json.dumps(value, ensure_ascii=False)}")
    assert isinstance(clients, dict)
    for name, client in clients.items():
        lines += ["", f"[clients.{json.dumps(name)}]"]
        lines += [f"{k} = {json.dumps(v, ensure_ascii=False)}" for k, v in client.items()]
    return "\n".join(lines) + "\n"


@idp.command("init")
@click.option(
    "--issuer", required=True, help="The IdP's URL, e.g. http://127.0.0.1:9000 (also where it serves)."
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Config file to write (.json or .toml), mode 0600.",
)
@click.option(
    "--client",
    "clients",
    multiple=True,
    metavar="NAME:SUBJECT",
    help="An OAuth2 client and the subject its tokens carry (repeatable; NAME alone means NAME:NAME).",
)
@click.option(
    "--audience",
    "audiences",
    multiple=True,
    metavar="URL",
    help=f"Audience clients may ask for, i.e. the FHS's public URL (repeatable; first is the default; "
    f"default {DEFAULT_FHS_URL}).",
)
@click.option("--token-ttl", default=300, show_default=True, type=int, help="Token lifetime in seconds.")
@click.option(
    "--key-dir", default=None, help="Where the IdP keeps its signing key (default: beside the file)."
)
@click.option("--force", is_flag=True, help="Overwrite an existing config file (new client secrets).")
def idp_init(
    issuer: str,
    out: Path,
    clients: tuple[str, ...],
    audiences: tuple[str, ...],
    token_ttl: int,
    key_dir: str | None,
    force: bool,
) -> None:
    """Write a dev IdP config with random client secrets and show how to get a token."""
    from fhs.identity.keys import write_private_file
    from fhs.idp import IdPConfig

    if not clients:
        raise ConfigError("give at least one --client NAME:SUBJECT (e.g. --client alice:alice)")
    if out.suffix not in (".json", ".toml"):
        raise ConfigError(f"--out {out}: the file name must end in .json or .toml")
    if out.exists() and not force:
        raise ConfigError(f"{out} exists; use --force to overwrite it (its client secrets are replaced)")
    parsed = [_parse_client(value) for value in clients]
    names = [name for name, _ in parsed]
    if len(set(names)) != len(names):
        raise ConfigError(
            f"client names repeat: {', '.join(sorted({n for n in names if names.count(n) > 1}))}"
        )
    document: dict[str, object] = {
        "issuer": issuer.rstrip("/") if urlsplit(issuer).path in ("", "/") else issuer,
        "key_dir": key_dir or f"{out.stem}-keys",
        "token_ttl_s": token_ttl,
        "clients": {
            name: {
                "secret": secrets.token_urlsafe(24),
                "subject": subject,
                "audiences": list(audiences or (DEFAULT_FHS_URL,)),
            }
            for name, subject in parsed
        },
    }
    try:
        config = IdPConfig.model_validate(document)
    except ValidationError as exc:
        raise ConfigError(f"invalid dev IdP config: {validation_problems(exc)}") from None
    text = json.dumps(document, indent=2) + "\n" if out.suffix == ".json" else _toml_document(document)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_private_file(out, text.encode("utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot write {out}: {exc}") from None
    first = names[0]
    click.echo(f"wrote {out} (mode 0600): issuer {config.issuer}, clients {', '.join(names)}")
    click.echo(f"start the IdP:   fhs idp serve --config {out}")
    click.echo(f"get a token:     fhs idp token --config {out} {first}")
    click.echo("or with curl:")
    click.echo(
        f"  curl -s -u {first}:{document['clients'][first]['secret']} "  # type: ignore[index]
        f"-d grant_type=client_credentials {config.token_endpoint}"
    )
    click.echo(f"trust it at the FHS (Operator API): issuer {config.issuer}, jwks_uri {config.jwks_uri}")


def _load_idp(config_path: Path) -> object:
    from fhs.idp import load_idp_config

    try:
        return load_idp_config(config_path)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


@idp.command("serve")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--host", default=None, help="Interface to listen on (default: the issuer URL's host).")
@click.option("--port", default=None, type=int, help="Port to listen on (default: the issuer URL's port).")
def idp_serve(config_path: Path, host: str | None, port: int | None) -> None:
    """Run the dev IdP: POST /token, /.well-known/jwks.json, /.well-known/openid-configuration."""
    import uvicorn

    from fhs.idp import IdPConfig, create_idp_app

    config = _load_idp(config_path)
    assert isinstance(config, IdPConfig)
    issuer = urlsplit(config.issuer)
    try:
        default_port = issuer.port or (443 if issuer.scheme == "https" else 80)
    except ValueError:
        raise ConfigError(f"{config_path}: the issuer {config.issuer!r} has a bad port") from None
    host = host or issuer.hostname or "127.0.0.1"
    port = default_port if port is None else port
    try:
        app = create_idp_app(config)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot open the IdP signing key in {config.key_dir}: {exc}") from None
    configure_logging("INFO")
    click.echo(f"dev IdP {config.issuer} listening on {host}:{port}; clients: {', '.join(config.clients)}")
    uvicorn.run(app, host=host, port=port, log_level="warning")


@idp.command("token")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--audience", default=None, help="Ask for this audience (default: the client's first).")
@click.argument("client")
def idp_token(config_path: Path, audience: str | None, client: str) -> None:
    """Get an access token for CLIENT from the running dev IdP (client credentials) and print it."""
    import httpx

    from fhs.idp import IdPConfig

    config = _load_idp(config_path)
    assert isinstance(config, IdPConfig)
    found = config.clients.get(client)
    if found is None:
        raise ConfigError(f"no client {client[:64]!r} in {config_path}; it has: {', '.join(config.clients)}")
    form = {"grant_type": "client_credentials", **({"audience": audience} if audience else {})}
    try:
        response = httpx.post(
            config.token_endpoint, data=form, auth=(client, found.secret), timeout=10, trust_env=False
        )
    except httpx.HTTPError as exc:
        raise click.ClickException(
            f"cannot reach the dev IdP at {config.token_endpoint} ({exc}); is `fhs idp serve --config "
            f"{config_path}` running?"
        ) from None
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code != 200 or not isinstance(body.get("access_token"), str):
        detail = body.get("error_description") or body.get("error") or response.text[:200]
        raise click.ClickException(f"the dev IdP refused: HTTP {response.status_code}: {detail}")
    click.echo(body["access_token"])

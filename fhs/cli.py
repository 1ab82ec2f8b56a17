"""The `fhs` command: run an FHS, run a dev IdP, and (later) the demo."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from fhs.settings import Settings


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
    envvar="FHS_PROXY_ALLOWLIST",
    help="CIDR or host the proxy may call although private/loopback (repeatable).",
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

    settings = Settings(
        fhs_id=fhs_id,
        host=host,
        port=port,
        public_url=public_url or f"http://{host}:{port}",
        data_dir=data_dir,
        store_url=store_url,
        proxy_allowlist=list(allowlist),
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    click.echo(
        f"FHS {fhs_id} at {settings.public_url} (store {settings.resolved_store_url}); "
        f"operator secret in {data_dir / 'operator.secret'}"
    )
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")

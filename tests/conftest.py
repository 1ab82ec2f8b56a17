"""Shared fixtures: a real ``redis-server`` for the session, and one fresh store per backend."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from fhs.store import Store, open_store

REDIS_START_TIMEOUT_S = 10.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def redis_server_command(binary: str, port: int, workdir: Path) -> list[str]:
    """The exact redis-server invocation the tests use (loopback only, no persistence)."""
    return [
        binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        "--dir", str(workdir), "--daemonize", "no",
    ]  # fmt: skip


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start a private redis-server on a free loopback port; yield its ``redis://`` URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail(
            "redis-server is not on PATH: the Redis store tests need a real Redis "
            "(install it, e.g. `apt-get install redis-server`)",
            pytrace=False,
        )
    workdir = tmp_path_factory.mktemp("redis")
    log_path = workdir / "redis.log"
    for _attempt in range(3):  # the free port can be taken between probing and binding
        port = _free_port()
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                redis_server_command(binary, port, workdir), stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + REDIS_START_TIMEOUT_S
        while proc.poll() is None and time.monotonic() < deadline and not _answers_ping(port):
            time.sleep(0.05)
        if proc.poll() is None and _answers_ping(port):
            break
        proc.kill()
        proc.wait()
    else:
        pytest.fail(f"redis-server did not start; its log:\n{log_path.read_text()}", pytrace=False)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(params=["sqlite", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL naming a fresh, empty store of each backend (Redis: a unique key prefix)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store' / 'fhs.sqlite3'}"
    server: str = request.getfixturevalue("redis_server")
    return f"{server}?prefix=t{uuid.uuid4().hex[:16]}"


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    """A fresh store of each backend, closed after the test."""
    opened = open_store(store_url)
    try:
        yield opened
    finally:
        await opened.close()

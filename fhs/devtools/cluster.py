"""Run trust domains on loopback: per domain a dev IdP and an FHS as real subprocesses.

Used by the multi-process federation tests and by ``fhs demo``. Every process is started in its own process
group and stopped (TERM, then KILL) by :meth:`LocalFederation.close`, which also runs on error.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from fhs.idp.app import IdPClient, IdPConfig

READY_TIMEOUT_S = 60.0


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(
    url: str,
    *,
    process: subprocess.Popen[bytes] | None = None,
    timeout_s: float = READY_TIMEOUT_S,
    log: Path | None = None,
) -> None:
    """Poll ``url`` until it answers 200; fail with the process's log if it exits or never answers."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            detail = log.read_text(errors="replace")[-3000:] if log else ""
            raise RuntimeError(f"process for {url} exited with {process.returncode}:\n{detail}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not become ready in {timeout_s:.0f} s")


@dataclass
class Domain:
    """One trust domain on loopback: its IdP, its FHS and the identities its IdP issues."""

    name: str
    fhs_id: str
    fhs_port: int
    idp_port: int
    data_dir: Path
    store_url: str
    subjects: list[str]
    idp_config: IdPConfig | None = None
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _tokens: dict[str, tuple[str, float]] = field(default_factory=dict)

    @property
    def fhs_url(self) -> str:
        """The FHS's base URL."""
        return f"http://127.0.0.1:{self.fhs_port}"

    @property
    def issuer(self) -> str:
        """The IdP's issuer URL."""
        return f"http://127.0.0.1:{self.idp_port}"

    @property
    def operator(self) -> dict[str, str]:
        """Headers carrying the operator credential."""
        secret = (self.data_dir / "fhs" / "operator.secret").read_text().strip()
        return {"Authorization": f"Bearer {secret}"}

    def token(self, subject: str) -> str:
        """A fresh JWT for ``subject`` from this domain's IdP (client credentials; cached while valid)."""
        cached = self._tokens.get(subject)
        if cached and cached[1] > time.time() + 30:
            return cached[0]
        assert self.idp_config is not None
        client = self.idp_config.clients[subject]
        response = httpx.post(
            f"{self.issuer}/token",
            data={
                "grant_type": "client_credentials",
                "client_id": subject,
                "client_secret": client.secret,
                "audience": self.fhs_url,
            },
            timeout=10,
        )
        response.raise_for_status()
        body = response.json()
        self._tokens[subject] = (body["access_token"], time.time() + int(body["expires_in"]))
        return str(body["access_token"])

    def member(self, subject: str) -> dict[str, str]:
        """Headers of member ``subject`` of this domain."""
        return {"Authorization": f"Bearer {self.token(subject)}"}

    def identity(self, subject: str) -> dict[str, str]:
        """The (issuer, subject, home_fhs) body naming ``subject`` in a membership grant."""
        return {"issuer": self.issuer, "subject": subject, "home_fhs": self.fhs_id}


class LocalFederation:
    """Start domains, peer their FHSs, and stop everything on close."""

    def __init__(self, base_dir: Path, *, quiet: bool = True) -> None:
        self.base_dir = Path(base_dir)
        self.domains: dict[str, Domain] = {}
        self.quiet = quiet
        self._extra: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> LocalFederation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _spawn(
        self, args: list[str], log: Path, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            return subprocess.Popen(
                [sys.executable, *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **(env or {})},
            )

    def add_domain(
        self, name: str, *, subjects: list[str], store_url: str = "", env: dict[str, str] | None = None
    ) -> Domain:
        """Start the IdP and the FHS of a new domain and make the FHS trust the IdP."""
        data_dir = self.base_dir / name
        domain = Domain(
            name=name,
            fhs_id=f"fhs-{name}",
            fhs_port=free_port(),
            idp_port=free_port(),
            data_dir=data_dir,
            store_url=store_url,
            subjects=subjects,
        )
        domain.idp_config = IdPConfig(
            issuer=domain.issuer,
            key_dir=data_dir / "idp-keys",
            token_ttl_s=600,
            clients={
                s: IdPClient(secret=secrets.token_urlsafe(16), subject=s, audiences=[domain.fhs_url])
                for s in subjects
            },
        )
        config_path = data_dir / "idp.json"
        data_dir.mkdir(parents=True, exist_ok=True)
        config_path.write_text(domain.idp_config.model_dump_json(indent=2))
        config_path.chmod(0o600)
        domain.processes["idp"] = self._spawn(
            ["-m", "fhs", "idp", "serve", "--config", str(config_path)], data_dir / "idp.log"
        )
        self.domains[name] = domain
        self.start_fhs(name, env=env)
        wait_ready(
            f"{domain.issuer}/.well-known/jwks.json",
            process=domain.processes["idp"],
            log=data_dir / "idp.log",
        )
        response = httpx.put(
            f"{domain.fhs_url}/operator/v1/issuers/idp-{name}",
            headers=domain.operator,
            json={"issuer": domain.issuer, "jwks_uri": f"{domain.issuer}/.well-known/jwks.json"},
            timeout=10,
        )
        response.raise_for_status()
        return domain

    def start_fhs(self, name: str, *, env: dict[str, str] | None = None) -> None:
        """Start (or restart) the FHS of a domain and wait until it is ready."""
        domain = self.domains[name]
        args = [
            "-m",
            "fhs",
            "serve",
            "--fhs-id",
            domain.fhs_id,
            "--port",
            str(domain.fhs_port),
            "--data-dir",
            str(domain.data_dir / "fhs"),
            "--allow",
            "127.0.0.1/32",
        ]
        if domain.store_url:
            args += ["--store-url", domain.store_url]
        domain.processes["fhs"] = self._spawn(
            args,
            domain.data_dir / "fhs.log",
            env={"FHS_SYNC_INTERVAL_S": "0.5", "FHS_PEER_KEY_REFRESH_S": "2", **(env or {})},
        )
        wait_ready(
            f"{domain.fhs_url}/readyz", process=domain.processes["fhs"], log=domain.data_dir / "fhs.log"
        )

    def kill_fhs(self, name: str) -> None:
        """Kill a domain's FHS with SIGKILL (no chance to clean up)."""
        process = self.domains[name].processes.pop("fhs")
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def spawn(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start another process (e.g. a service) that is stopped with the federation."""
        process = self._spawn(args, log, env)
        self._extra.append(process)
        return process

    def peer(self, a: str, b: str) -> None:
        """Peer two FHSs both ways, each pinning the other's keys by fetching them against fingerprints."""
        for here, there in ((self.domains[a], self.domains[b]), (self.domains[b], self.domains[a])):
            kids = [
                k["kid"]
                for k in httpx.get(f"{there.fhs_url}/.well-known/jwks.json", timeout=10).json()["keys"]
            ]
            response = httpx.put(
                f"{here.fhs_url}/operator/v1/peers/{there.fhs_id}",
                headers=here.operator,
                json={"base_url": there.fhs_url, "fingerprints": kids},
                timeout=10,
            )
            response.raise_for_status()

    def create_federation(
        self,
        home: str,
        fedadmin: str,
        name: str,
        *,
        participants: tuple[str, ...] = (),
        description: str = "",
    ) -> str:
        """Let ``fedadmin`` of domain ``home`` create a federation (operator grant first) and bring the FHSs
        of ``participants`` (domain names) in; return its id."""
        domain = self.domains[home]
        call(
            "POST",
            f"{domain.fhs_url}/operator/v1/fedadmins",
            headers=domain.operator,
            json_body={"issuer": domain.issuer, "subject": fedadmin},
            expect=201,
        )
        admin = domain.member(fedadmin)
        fid: str = call(
            "POST",
            f"{domain.fhs_url}/member/v1/federations",
            headers=admin,
            expect=201,
            json_body={"name": name, "description": description},
        )["id"]
        for other in participants:
            call(
                "POST",
                f"{domain.fhs_url}/member/v1/federations/{fid}/participants",
                headers=admin,
                json_body={"fhs_id": self.domains[other].fhs_id},
                expect=201,
            )
        return fid

    def close(self) -> None:
        """Stop every process: SIGTERM to each process group, SIGKILL after a grace period."""
        processes = [p for d in self.domains.values() for p in d.processes.values()] + self._extra
        for process in processes:
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 10
        for process in processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        for domain in self.domains.values():
            domain.processes.clear()
        self._extra.clear()


def call(
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    json_body: Any = None,
    expect: int | None = None,
    timeout: float = 30,
    **kwargs: Any,
) -> Any:
    """An HTTP call that returns the JSON body, failing with the server's message on an unexpected status."""
    response = httpx.request(method, url, headers=headers, json=json_body, timeout=timeout, **kwargs)
    if expect is not None and response.status_code != expect:
        raise RuntimeError(
            f"{method} {url} -> {response.status_code} (expected {expect}): {response.text[:500]}"
        )
    return (
        response.json()
        if response.content and "json" in response.headers.get("content-type", "")
        else (json.loads(response.text) if response.text.startswith(("{", "[")) else response.text)
    )


def converge(domains: list[Domain], fid: str, timeout_s: float = 30.0) -> str:
    """Wait until every FHS reports the same sequence and state hash for ``fid``; return the hash."""
    deadline = time.monotonic() + timeout_s
    seen: set[tuple[int, str]] = set()
    while time.monotonic() < deadline:
        seen = set()
        for domain in domains:
            status = call(
                "GET", f"{domain.fhs_url}/operator/v1/replication", headers=domain.operator, expect=200
            )
            sync = {s["federation"]: s for s in status}.get(fid)
            seen.add((sync["seq"], sync["state_hash"]) if sync else (-1, ""))
        if len(seen) == 1:
            return next(iter(seen))[1]
        time.sleep(0.1)
    raise RuntimeError(f"the FHSs did not converge on federation {fid} in {timeout_s:.0f} s: {sorted(seen)}")

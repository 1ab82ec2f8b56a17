"""The README walkthrough, run as written: its marked shell blocks in one bash, real processes on loopback.

Every ```bash block preceded by ``<!-- walkthrough: NAME -->`` runs, in order, in one ``bash`` with
``set -euo pipefail``; the blocks themselves start the dev IdP, the FHS and the echo service. The test only
chooses free ports and a work directory (the ``WORK``, ``IDP_PORT``, ``FHS_PORT``, ``ECHO_PORT`` variables
the README reads), and afterwards ends the whole process group, whatever happened.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"<!-- walkthrough: ([a-z0-9-]+) -->\s*```bash\n(.*?)```", re.S)
END_MARK = "@@walkthrough-block-done {name}@@"
WALKTHROUGH_TIMEOUT_S = 240

pytestmark = pytest.mark.slow


def walkthrough_blocks(text: str) -> list[tuple[str, str]]:
    """The (name, shell code) of each marked block of the README, in order."""
    return [(name, code) for name, code in BLOCK.findall(text)]


def json_values(text: str) -> list[Any]:
    """Every JSON object or array that starts at the beginning of a line of ``text``."""
    decoder = json.JSONDecoder()
    found: list[Any] = []
    position = 0
    while position < len(text):
        if text[position] in "{[":
            try:
                value, end = decoder.raw_decode(text, position)
            except ValueError:
                pass
            else:
                found.append(value)
                position = end
        next_line = text.find("\n", position)
        if next_line < 0:
            break
        position = next_line + 1
    return found


def http_statuses(text: str) -> list[int]:
    """The ``HTTP nnn`` lines curl printed (``-w '\\nHTTP %{http_code}\\n'``)."""
    return [int(code) for code in re.findall(r"^HTTP (\d{3})$", text, re.M)]


@dataclass
class WalkthroughRun:
    """What a user saw: the output of each block, stderr, the exit status, and the server logs."""

    outputs: dict[str, str]
    stderr: str
    returncode: int
    work: Path

    def output(self, name: str) -> str:
        """The stdout of block ``name`` (it must have run to its end)."""
        assert name in self.outputs, f"block {name!r} did not finish:\n{self.diagnostics()}"
        return self.outputs[name]

    def diagnostics(self) -> str:
        """stderr and the server logs, for failure messages."""
        logs = [f"--- bash stderr (exit {self.returncode}) ---\n{self.stderr[-4000:]}"]
        for name in ("fhs.log", "idp.log", "echo.log"):
            path = self.work / name
            if path.exists():
                logs.append(f"--- {name} ---\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(logs)


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _end_process_group(pgid: int) -> None:
    for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 0.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)


@pytest.fixture(scope="module")
def walkthrough(tmp_path_factory: pytest.TempPathFactory) -> WalkthroughRun:
    """Run the README walkthrough once for this module."""
    blocks = walkthrough_blocks(README.read_text(encoding="utf-8"))
    assert blocks, f"{README} has no <!-- walkthrough: NAME --> blocks"
    missing = [tool for tool in ("bash", "curl") if shutil.which(tool) is None]
    assert not missing, f"the README walkthrough needs {', '.join(missing)} on PATH (apt-get install curl)"
    work = tmp_path_factory.mktemp("walkthrough")
    idp_port, fhs_port, echo_port = _free_ports(3)
    venv_bin = str(Path(sys.executable).parent)
    env = {key: value for key, value in os.environ.items() if not key.startswith("FHS_")}
    env.update(
        PATH=f"{venv_bin}{os.pathsep}{env.get('PATH', '')}",
        WORK=str(work),
        IDP_PORT=str(idp_port),
        FHS_PORT=str(fhs_port),
        ECHO_PORT=str(echo_port),
    )
    script = "set -euo pipefail\ntrap 'echo \"failed: $BASH_COMMAND\" >&2' ERR\n" + "".join(
        f"{code}\necho '{END_MARK.format(name=name)}'\n" for name, code in blocks
    )
    process = subprocess.Popen(
        ["bash", "-c", script],
        cwd=work,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=WALKTHROUGH_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        _end_process_group(process.pid)
        stdout, stderr = process.communicate()
        stderr += f"\n(walkthrough killed after {WALKTHROUGH_TIMEOUT_S} s)"
    finally:
        _end_process_group(process.pid)
    outputs: dict[str, str] = {}
    rest = stdout
    for name, _ in blocks:
        mark = END_MARK.format(name=name) + "\n"
        if mark not in rest:
            break
        outputs[name], rest = rest.split(mark, 1)
    return WalkthroughRun(outputs=outputs, stderr=stderr, returncode=process.returncode, work=work)


def test_the_walkthrough_runs_to_the_end(walkthrough: WalkthroughRun) -> None:
    names = [name for name, _ in walkthrough_blocks(README.read_text(encoding="utf-8"))]
    assert walkthrough.returncode == 0 and list(walkthrough.outputs) == names, walkthrough.diagnostics()


def test_the_dev_idp_config_is_private_and_the_fhs_starts(walkthrough: WalkthroughRun) -> None:
    init = walkthrough.output("idp-init")
    assert "(mode 0600)" in init and "curl -s -u alice:" in init
    config = walkthrough.work / "idp.json"
    assert config.stat().st_mode & 0o777 == 0o600
    assert set(json.loads(config.read_text())["clients"]) == {"alice", "bob", "carol", "dave"}
    started = walkthrough.output("start")
    assert "FHS fhs-local at http://127.0.0.1:" in started and "operator secret in" in started


def test_the_operator_trusts_the_idp_and_grants_fedadmin(walkthrough: WalkthroughRun) -> None:
    issuer, fedadmin = json_values(walkthrough.output("operator"))
    assert issuer["name"] == "dev-idp" and issuer["config"]["jwks_uri"].endswith("/.well-known/jwks.json")
    assert fedadmin["subject"] == "alice" and fedadmin["issuer"] == issuer["config"]["issuer"]


def test_the_fedadmin_creates_a_federation_and_grants_members(walkthrough: WalkthroughRun) -> None:
    federation, attribute, *members = json_values(walkthrough.output("fedadmin"))
    assert federation["name"] == "scission-lab" and federation["id"].startswith("fed_")
    assert "FedAdmin" in federation["my_attributes"]
    assert attribute == {
        "name": "edge-users",
        "description": "may invoke edge resources",
        "predefined": False,
    }
    granted = {m["subject"]: m["attributes"] for m in members}
    assert set(granted) == {"bob", "carol", "dave"}
    assert "ServiceOwner" in granted["bob"] and "edge-users" in granted["carol"]
    assert "edge-users" not in granted["dave"]


def test_the_service_owner_registers_the_echo_and_alone_sees_its_endpoint(
    walkthrough: WalkthroughRun,
) -> None:
    (service,) = json_values(walkthrough.output("register"))
    assert service["id"].startswith("svc_") and service["owner"] == "bob"
    assert service["endpoint"].startswith("http://127.0.0.1:")
    assert "edge-users" in service["access_policy"], "the shorthand is compiled to a Cedar policy"


def test_a_member_with_the_attribute_discovers_and_invokes_it(walkthrough: WalkthroughRun) -> None:
    output = walkthrough.output("invoke")
    discovered, echoed = json_values(output)
    assert [s["name"] for s in discovered] == ["echo"] and discovered[0]["endpoint"] is None
    assert http_statuses(output) == [200]
    assert echoed["method"] == "POST" and echoed["path"] == "/echo/hello" and echoed["query"] == "lang=en"
    assert json.loads(echoed["body"]) == {"input": [1, 2, 3]}
    invocation = echoed["invocation"]
    assert invocation["verified"] is True, invocation
    assert invocation["member"]["sub"] == "carol" and invocation["aud"] == discovered[0]["id"]


def test_a_member_without_the_attribute_is_refused_with_a_json_error(walkthrough: WalkthroughRun) -> None:
    output = walkthrough.output("refused")
    assert http_statuses(output) == [403]
    (body,) = json_values(output)
    assert body["error"]["code"] == "forbidden" and "access policy" in body["error"]["message"]


def test_the_audit_log_shows_both_decisions(walkthrough: WalkthroughRun) -> None:
    lines = walkthrough.output("audit").splitlines()
    assert any(re.search(r"\binvoke allow carol\b", line) for line in lines), lines
    assert any(re.search(r"\binvoke deny dave\b", line) for line in lines), lines

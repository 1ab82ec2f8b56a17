"""`fhs demo` end to end (issues 5 and 6): two trust domains, real resource nodes running MobileNetV2, a
member's partition queries under two network profiles and the best plan executed across both domains."""

from __future__ import annotations

import io
import socket

import httpx
import pytest
from rich.console import Console

from fhs.devtools.demo import PROFILES, DemoResult, _segments, run_demo

pytestmark = pytest.mark.slow


def _listening(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, int(port))) == 0


class Run:
    """What the demo returned, printed, and what its resource nodes answered to direct calls."""

    def __init__(self) -> None:
        self.output = io.StringIO()
        self.direct: dict[str, int] = {}
        self.result = DemoResult()

    def while_running(self, result: DemoResult) -> None:
        """Bypass the FHS while the federation is still up (the --keep-running path)."""
        for name, url in result.endpoints.items():
            if name != "gpu-b":
                self.direct[f"{name} describe"] = httpx.get(f"{url}/describe", timeout=10).status_code
                self.direct[f"{name} run"] = httpx.post(
                    f"{url}/segments/mnv2/run?first_block=0&last_block=0", content=b"x", timeout=10
                ).status_code


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    run = Run()
    run.result = run_demo(
        tmp_path_factory.mktemp("demo"),
        keep_running=True,
        wait=run.while_running,
        console=Console(file=run.output, width=160),
    )
    return run


def test_the_executed_plan_reproduces_a_local_run_of_the_model(run: Run) -> None:
    assert run.result.matches_local is True
    hops = run.result.execution["hops"]
    plan = run.result.queries[PROFILES[-1]]["result"]["plans"][0]
    assert [h["resource"] for h in hops] == [s["resource"] for s in plan["segments"]]
    assert all(h["measured_compute_s"] > 0 for h in hops)
    assert "Predicted vs measured, per hop" in run.output.getvalue()


def test_the_resource_the_member_may_not_invoke_never_appears(run: Run) -> None:
    gpu = run.result.services["gpu-b"]
    for answer in run.result.queries.values():
        assert gpu not in {r["id"] for r in answer["considered"]}
        assert gpu not in {s["resource"] for p in answer["result"]["plans"] for s in p["segments"]}
        assert {r["id"]: r["reason"] for r in answer["excluded"]}[gpu].startswith("you may discover it")
        assert {r["fhs"] for r in answer["considered"]} == {"fhs-a", "fhs-b"}, "resources of both domains"


def test_the_best_plan_depends_on_the_network(run: Run) -> None:
    best = [
        tuple((s["resource"], s["last_block"]) for s in q["result"]["plans"][0]["segments"])
        for q in run.result.queries.values()
    ]
    assert len(best) == 2 and best[0] != best[1]


def test_outsiders_and_direct_callers_are_refused(run: Run) -> None:
    assert run.result.outsider_error == "not_found"
    assert run.direct and set(run.direct.values()) == {401}, run.direct


def test_every_process_was_stopped(run: Run) -> None:
    assert run.result.endpoints and not any(_listening(url) for url in run.result.endpoints.values())


def test_a_plan_whose_source_runs_no_block_shows_where_the_input_comes_from() -> None:
    upload = {"source": "s-dev", "destination": "s-cloud", "bytes": 110720.0, "transfer_s": 0.064}
    plan = {
        "source": "s-dev",
        "segments": [{"resource": "s-cloud", "first_block": 0, "last_block": 74}],
        "hops": [{**upload, "kind": "forward"}],
    }
    names = {"s-dev": "device-a", "s-cloud": "cloud-b"}
    assert _segments(plan, names) == "device-a[input] → cloud-b[0-74]"
    plan["segments"] = [
        {"resource": "s-dev", "first_block": 0, "last_block": 15},
        {"resource": "s-cloud", "first_block": 16, "last_block": 74},
    ]
    assert _segments(plan, names) == "device-a[0-15] → cloud-b[16-74]"

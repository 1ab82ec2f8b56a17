"""``fhs demo``: the whole product on loopback in one command (two trust domains, federated Scission).

Domain A runs a device and an edge resource, domain B a cloud resource and a GPU node the member may see but
not use. A member of A asks where each part of a real Keras model should run, under two network profiles,
executes the best plan hop by hop across both domains, and compares the output with a local run. Every
process is stopped at the end, on error and on Ctrl-C (or left up with ``--keep-running``).
"""

from __future__ import annotations

import base64
import contextlib
import io
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from rich.console import Console
from rich.table import Table

from fhs.devtools.cluster import LocalFederation, call, free_port, wait_ready

MODEL = "mnv2"


class _Application(TypedDict):
    """The demo's model spec, as sent to the resource nodes."""

    application: str
    alpha: float
    input_shape: list[int]


APPLICATION: _Application = {"application": "mobilenetv2", "alpha": 0.35, "input_shape": [96, 96, 3]}
MODEL_SPEC = f"{MODEL}=mobilenetv2:alpha=0.35:input_shape=96x96x3"
RESOURCES = [
    # name, domain, tier, emulated compute slowdown, emulated uplink, started?
    ("device-a", "a", "device", 12.0, "wired", True),
    ("edge-a", "a", "edge", 3.0, "edge-cloud", True),
    ("cloud-b", "b", "cloud", 1.0, None, True),
    ("gpu-b", "b", "cloud", 1.0, None, False),
]
PROFILES = ["3g", "wired"]
EXECUTION_RUNS = 5  # timed runs of the best plan after a warm-up run (one run on a shared machine is noise)


@dataclass
class DemoResult:
    """What the demo showed, for its tests and its summary."""

    federation: str = ""
    services: dict[str, str] = field(default_factory=dict)
    queries: dict[str, dict[str, Any]] = field(default_factory=dict)
    execution: dict[str, Any] = field(default_factory=dict)
    matches_local: bool | None = None
    endpoints: dict[str, str] = field(default_factory=dict)
    outsider_error: str = ""


def _segments(plan: dict[str, Any], names: dict[str, str]) -> str:
    parts = [
        f"{names.get(s['resource'], s['resource'][:12])}[{s['first_block']}-{s['last_block']}]"
        for s in plan["segments"]
    ]
    if _idle_source_upload(plan) is not None:  # the source device only sends the input
        parts.insert(0, f"{names.get(plan['source'], plan['source'][:12])}[input]")
    return " → ".join(parts)


def _idle_source_upload(plan: dict[str, Any]) -> dict[str, Any] | None:
    """The hop that uploads the raw input when the plan's source device runs no block."""
    if plan["segments"][0]["resource"] == plan["source"]:
        return None
    return next(h for h in plan["hops"] if h["kind"] == "forward" and h["source"] == plan["source"])


class Demo:
    """The demo's steps, each a small function; :func:`run_demo` runs them in order."""

    def __init__(self, cluster: LocalFederation, console: Console, *, repeats: int) -> None:
        self.cluster, self.console, self.repeats = cluster, console, repeats
        self.result = DemoResult()
        self.ports: dict[str, int] = {}

    def step(self, text: str) -> None:
        self.console.print(f"[bold cyan]▸[/] {text}")

    def domains(self) -> None:
        self.step("starting two trust domains (an IdP and an FHS each) on loopback")
        self.cluster.add_domain("a", subjects=["alice", "owner-a", "mia"])
        self.cluster.add_domain("b", subjects=["owner-b", "olly"])
        self.cluster.peer("a", "b")
        self.step("operators peered fhs-a and fhs-b (keys pinned by fingerprint)")

    def federation(self) -> None:
        a, b = self.cluster.domains["a"], self.cluster.domains["b"]
        fid = self.result.federation = self.cluster.create_federation(
            "a", "alice", "edge-ai", participants=("b",), description="federated DNN partitioning demo"
        )
        alice = a.member("alice")
        base = f"{a.fhs_url}/member/v1/federations/{fid}"
        call("POST", f"{base}/attributes", headers=alice, json_body={"name": "scission-users"}, expect=201)
        for identity, attributes in (
            (a.identity("owner-a"), ["ServiceOwner"]),
            (b.identity("owner-b"), ["ServiceOwner"]),
            (a.identity("mia"), ["scission-users"]),
        ):
            call(
                "POST",
                f"{base}/members",
                headers=alice,
                json_body={**identity, "attributes": attributes},
                expect=201,
            )
        other = call(
            "POST",
            f"{a.fhs_url}/member/v1/federations",
            headers=alice,
            json_body={"name": "other"},
            expect=201,
        )
        call(
            "POST",
            f"{a.fhs_url}/member/v1/federations/{other['id']}/participants",
            headers=alice,
            json_body={"fhs_id": b.fhs_id},
            expect=201,
        )
        call(
            "POST",
            f"{a.fhs_url}/member/v1/federations/{other['id']}/members",
            headers=alice,
            json_body=b.identity("olly"),
            expect=201,
        )
        self.step(
            f"alice (FedAdmin, domain A) created federation {fid} spanning fhs-a and fhs-b; "
            "mia holds scission-users"
        )

    def register(self) -> None:
        fid = self.result.federation
        for name, domain_name, tier, _, _, _ in RESOURCES:
            domain = self.cluster.domains[domain_name]
            owner = domain.member(f"owner-{domain_name}")
            self.ports[name] = free_port()
            access = {"template": "owner-only"} if name == "gpu-b" else {"any_of": ["scission-users"]}
            service = call(
                "POST",
                f"{domain.fhs_url}/member/v1/federations/{fid}/services",
                headers=owner,
                expect=201,
                json_body={
                    "name": name,
                    "type": "scission.resource",
                    "metadata": {"tier": tier},
                    "endpoint": f"http://127.0.0.1:{self.ports[name]}",
                    "discovery_policy": {"template": "all-members"},
                    "access_policy": access,
                },
            )
            self.result.services[name] = service["id"]
            self.result.endpoints[name] = f"http://127.0.0.1:{self.ports[name]}"
        self.step(
            "service owners registered device-a, edge-a (domain A) and cloud-b, gpu-b (domain B); "
            "gpu-b's access policy admits its owner only"
        )

    def resources(self) -> None:
        self.step(
            f"starting resource nodes with {APPLICATION['application']} "
            f"(alpha {APPLICATION['alpha']}, input 96x96x3); this loads TensorFlow in each"
        )
        started = []
        for name, domain_name, tier, slowdown, link, run in RESOURCES:
            if not run:
                continue
            domain = self.cluster.domains[domain_name]
            args = [
                "-m",
                "scission_service.cli",
                "resource",
                "serve",
                "--name",
                name,
                "--tier",
                tier,
                "--model",
                MODEL_SPEC,
                "--fhs-issuer",
                domain.fhs_url,
                "--service-id",
                self.result.services[name],
                "--port",
                str(self.ports[name]),
                "--compute-slowdown",
                str(slowdown),
                "--log-level",
                "warning",
            ]
            if link:
                args += ["--link", link]
            log = domain.data_dir / f"{name}.log"
            started.append((name, self.cluster.spawn(args, log), log))
        for name, process, log in started:
            wait_ready(
                f"http://127.0.0.1:{self.ports[name]}/healthz", process=process, log=log, timeout_s=240
            )
        self.step("resource nodes up (device ×12 and edge ×3 slower than the cloud: emulated hardware)")

    def queries(self) -> None:
        a, fid = self.cluster.domains["a"], self.result.federation
        names = {sid: name for name, sid in self.result.services.items()}
        for index, profile in enumerate(PROFILES):
            if index == 0:
                self.step("mia asks where each part should run (resources benchmark the model first)")
            body = {
                "model": MODEL,
                "network": {"device_uplink": profile},
                "query": {"top": 3},
                "benchmark_missing": True,
                "benchmark_timeout_s": 600,
            }
            answer = call(
                "POST",
                f"{a.fhs_url}/member/v1/federations/{fid}/partition-queries",
                headers=a.member("mia"),
                json_body=body,
                expect=201,
                timeout=900,
            )
            self.result.queries[profile] = answer
            table = Table(title=f"Plans for mia, device uplink {profile}", title_justify="left")
            for column in ("rank", "latency", "compute", "transfer", "MB sent", "where"):
                table.add_column(column, justify="right" if column != "where" else "left")
            for plan in (answer["result"] or {}).get("plans", []):
                table.add_row(
                    str(plan["rank"]),
                    f"{plan['latency_s'] * 1000:.1f} ms",
                    f"{plan['compute_s'] * 1000:.1f} ms",
                    f"{plan['transfer_s'] * 1000:.1f} ms",
                    f"{plan['transfer_bytes'] / 1e6:.3f}",
                    _segments(plan, names),
                )
            self.console.print(table)
        considered = {names[r["id"]] for r in self.result.queries[PROFILES[0]]["considered"]}
        excluded = {names[r["id"]]: r["reason"] for r in self.result.queries[PROFILES[0]]["excluded"]}
        self.console.print(f"  considered: {', '.join(sorted(considered))}")
        for name, reason in excluded.items():
            self.console.print(f"  [yellow]left out[/] {name}: {reason}")
        best = {p: _segments(q["result"]["plans"][0], names) for p, q in self.result.queries.items()}
        changed = len(set(best.values())) > 1
        self.step(
            f"best plan {'changes' if changed else 'does not change'} with the network: "
            + "; ".join(f"{p}: {b}" for p, b in best.items())
        )

    def execute(self) -> None:
        import numpy as np

        a, fid = self.cluster.domains["a"], self.result.federation
        names = {sid: name for name, sid in self.result.services.items()}
        profile = PROFILES[-1]
        query = self.result.queries[profile]
        rng = np.random.default_rng(7)
        x = rng.random((1, 96, 96, 3), dtype=np.float32)
        buffer = io.BytesIO()
        np.save(buffer, x, allow_pickle=False)
        self.step(
            f"mia runs the best {profile} plan hop by hop through the FHSs (once to warm the segments up, "
            f"then {EXECUTION_RUNS} times; the run with the median latency is shown)"
        )
        url = f"{a.fhs_url}/member/v1/federations/{fid}/partition-queries/{query['id']}/plans/1/execute"
        headers = {**a.member("mia"), "Content-Type": "application/x-npy"}
        runs = [
            call("POST", url, headers=headers, content=buffer.getvalue(), expect=200, timeout=300)
            for _ in range(1 + EXECUTION_RUNS)
        ][1:]
        report = sorted(runs, key=lambda run: run["measured_latency_s"])[len(runs) // 2]
        self.result.execution = report
        table = Table(title="Predicted vs measured, per hop", title_justify="left")
        for column in (
            "hop",
            "resource",
            "blocks",
            "compute pred",
            "compute meas",
            "transfer pred",
            "transfer meas",
        ):
            table.add_column(column, justify="right")
        for hop in report["hops"]:
            table.add_row(
                str(hop["hop"]),
                names.get(hop["resource"], hop["resource"][:12]),
                f"{hop['first_block']}-{hop['last_block']}",
                *(
                    f"{hop[k] * 1000:.1f} ms"
                    for k in (
                        "predicted_compute_s",
                        "measured_compute_s",
                        "predicted_transfer_s",
                        "measured_transfer_s",
                    )
                ),
            )
        self.console.print(table)
        self.console.print(
            f"  end to end: predicted {report['predicted_latency_s'] * 1000:.1f} ms, "
            f"measured {report['measured_latency_s'] * 1000:.1f} ms (measured includes FHS hops)"
        )
        upload = _idle_source_upload(query["result"]["plans"][0])
        if upload is not None:
            self.console.print(
                f"  the source device runs no block: the prediction includes its upload of the input "
                f"({upload['transfer_s'] * 1000:.1f} ms), which this run does not emulate (mia sends the "
                "input to its FHS on loopback; only resource nodes shape their links)"
            )
        output = np.load(io.BytesIO(base64.b64decode(report["output"]["npy_base64"])), allow_pickle=False)
        with _quiet_native_stderr():  # TensorFlow's C++ start-up chatter
            from scission_service.models import load_model, model_digest

            model = load_model(
                APPLICATION["application"],
                alpha=APPLICATION["alpha"],
                input_shape=tuple(APPLICATION["input_shape"]),
            )
        same_weights = model_digest(model) == query["model_digest"]
        local = np.asarray(model(x, training=False))
        self.result.matches_local = bool(same_weights and np.allclose(output, local, atol=1e-5))
        self.step(
            f"output equals a local run of the whole model: {'yes' if self.result.matches_local else 'NO'} "
            f"(max abs diff {float(np.max(np.abs(output - local))):.2e})"
        )

    def outsider(self) -> None:
        b = self.cluster.domains["b"]
        response = call(
            "GET",
            f"{b.fhs_url}/member/v1/federations/{self.result.federation}/services",
            headers=b.member("olly"),
        )
        self.result.outsider_error = (
            response["error"]["code"] if isinstance(response, dict) else str(response)
        )
        self.step(
            f"olly (domain B, member of another federation) asking for edge-ai's services gets: "
            f"{self.result.outsider_error}"
        )
        gpu = self.result.services["gpu-b"]
        planned = {
            s["resource"]
            for q in self.result.queries.values()
            for p in q["result"]["plans"]
            for s in p["segments"]
        }
        considered = {r["id"] for q in self.result.queries.values() for r in q["considered"]}
        self.step(
            f"gpu-b appeared in a plan: {'YES' if gpu in planned else 'no'}; "
            f"in the considered set: {'YES' if gpu in considered else 'no'}"
        )


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def run_demo(
    base_dir: Path | None = None,
    *,
    keep_running: bool = False,
    console: Console | None = None,
    repeats: int = 10,
    wait: Callable[[DemoResult], None] | None = None,
) -> DemoResult:
    """Run the demo end to end; stop every process it started before returning (unless kept running)."""
    console = console or Console()
    owned = base_dir is None
    base = Path(tempfile.mkdtemp(prefix="fedscission-demo-")) if base_dir is None else Path(base_dir)
    previous = signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    started = time.monotonic()
    try:
        with LocalFederation(base) as cluster:
            demo = Demo(cluster, console, repeats=repeats)
            for step in (
                demo.domains,
                demo.federation,
                demo.register,
                demo.resources,
                demo.queries,
                demo.execute,
                demo.outsider,
            ):
                step()
            console.print(f"[bold green]demo finished in {time.monotonic() - started:.0f} s[/]")
            if keep_running:
                _print_how_to_talk(console, cluster, demo.result)
                (wait or _wait_for_interrupt)(demo.result)
            return demo.result
    finally:
        signal.signal(signal.SIGTERM, previous)
        console.print("stopped every process the demo started" + (f"; files in {base}" if not owned else ""))


def _wait_for_interrupt(result: DemoResult) -> None:
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


def _print_how_to_talk(console: Console, cluster: LocalFederation, result: DemoResult) -> None:
    a = cluster.domains["a"]
    console.print("\n[bold]The federation is up.[/] Press Ctrl-C to stop it.")
    console.print(f"  FHS A: {a.fhs_url}/docs   FHS B: {cluster.domains['b'].fhs_url}/docs")
    console.print(f"  federation: {result.federation}")
    console.print(
        f"  a token for mia: curl -s -d grant_type=client_credentials -d client_id=mia "
        f"-d client_secret={a.idp_config.clients['mia'].secret if a.idp_config else '…'} "
        f"-d audience={a.fhs_url} {a.issuer}/token"
    )
    console.print(
        f"  then: curl -H 'Authorization: Bearer $TOKEN' "
        f"{a.fhs_url}/member/v1/federations/{result.federation}/services"
    )
    console.print(f"  operator secret of A: {a.data_dir / 'fhs' / 'operator.secret'}")


if __name__ == "__main__":
    run_demo(keep_running="--keep-running" in sys.argv)

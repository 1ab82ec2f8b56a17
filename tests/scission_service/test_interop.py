"""Scission interop: safe unpickling, the README example, and predict == the original tool's semantics."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scission_service.benchmark_data import load_benchmark_data
from scission_service.cli import cli
from scission_service.interop import (
    PredictOptions,
    PredictUsageError,
    ScissionFormatError,
    load_scission_dat,
    predict,
    read_network_csv,
    read_scission_folder,
)

README_EXAMPLE = """\
[1] 9.0106s - 2.4087MB - Device(raspi4) = 0 - 6, Edge(vm2Core) = 7 - 11, Cloud(6700k(GPU)) = 12 - 25
[2] 9.0594s - 2.4087MB - Device(raspi4) = 0 - 6, Edge(2500) = 7 - 11, Cloud(6700k(GPU)) = 12 - 25
[3] 9.0721s - 2.4087MB - Device(raspi4) = 0 - 6, Edge(vm2Core) = 7 - 11, Cloud(6700k(NoGPU)) = 12 - 25
[4] 9.1209s - 2.4087MB - Device(raspi4) = 0 - 6, Edge(2500) = 7 - 11, Cloud(6700k(NoGPU)) = 12 - 25
[5] 9.1511s - 3.2115MB - Device(raspi4) = 0 - 6, Edge(vm2Core) = 7 - 12, Cloud(6700k(GPU)) = 13 - 25
"""


@pytest.fixture(scope="module")
def scission_dir() -> Path:
    """The shipped Scission benchmark folder (../shared/datasets/scission next to the repo)."""
    path = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "scission"
    assert (path / "network_stats.csv").is_file(), f"Scission dataset missing at {path}"
    return path


def test_readme_example_is_reproduced_exactly_by_the_cli(scission_dir: Path) -> None:
    args = ["predict", str(scission_dir), "network_stats.csv", "vgg19", "-d", "!-1", "-e", "10", "-c", "16"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "[+] 5 systems loaded : 1 device, 2 edge, 2 cloud"
    assert "\n".join(lines[-5:]) + "\n" == README_EXAMPLE


class _Evil:
    def __reduce__(self) -> tuple:
        return (os.system, ("touch /tmp/scission-pwned-by-test",))


def test_malicious_pickle_is_refused_without_running_code(tmp_path: Path) -> None:
    marker = Path("/tmp/scission-pwned-by-test")
    marker.unlink(missing_ok=True)
    payload = pickle.dumps({"vgg19": [_Evil()]})
    with pytest.raises(ScissionFormatError, match="refused to load global"):
        load_scission_dat(payload)
    assert not marker.exists()
    (tmp_path / "edge-evil.dat").write_bytes(payload)
    result = CliRunner().invoke(cli, ["import-scission", str(tmp_path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "refused to load global" in result.output
    assert not marker.exists()


class LayerBenchmark:  # Scission's class name, but from this module rather than __main__
    pass


def test_wrong_record_contents_are_refused(scission_dir: Path) -> None:
    with pytest.raises(ScissionFormatError, match="refused"):
        load_scission_dat(pickle.dumps({"m": [LayerBenchmark()]}))
    tampered = (scission_dir / "device-raspi4.dat").read_bytes().replace(b"output_size", b"output_sizX")
    with pytest.raises(ScissionFormatError, match="known attributes"):
        load_scission_dat(tampered)
    with pytest.raises(ScissionFormatError, match="truncated|not a readable"):
        load_scission_dat(b"\x80\x03}q\x00(X")


def test_every_shipped_model_predicts_and_plans(scission_dir: Path, tmp_path: Path) -> None:
    systems = read_scission_folder(scission_dir)
    models = sorted(systems[0].benchmarks)
    assert len(models) == 18
    for model in models:
        outcome = predict(scission_dir, scission_dir / "network_stats.csv", model, PredictOptions())
        assert outcome.result.feasible and len(outcome.result.plans) == 5, model
    out = tmp_path / "imported"
    result = CliRunner().invoke(cli, ["import-scission", str(scission_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    for model in models:
        files = sorted(str(p) for p in (out / model).glob("*.json"))
        assert len(files) == 5
        run = CliRunner().invoke(
            cli, ["plan", *files, "--links", str(out / "network_stats.links.json"), "--json"]
        )
        assert run.exit_code == 0, run.output
        plans = json.loads(run.output)["plans"]
        direct = predict(scission_dir, scission_dir / "network_stats.csv", model, PredictOptions())
        if model.startswith("nasnet"):  # no 0-second blocks: predict's zero-time quirk never applies
            assert [p["latency_s"] for p in plans] == [p.latency_s for p in direct.result.plans]
    data = load_benchmark_data(out / "vgg19" / "edge-vm2Core.json")
    assert data.resource.tier == "edge" and len(data.blocks) == 25


# ---------------------------------------------------------------- the original tool, re-implemented verbatim


def original_predict(folder: Path, csv_path: Path, model: str, o: PredictOptions) -> list[tuple[float, str]]:
    """Scission's scission_predict.py enumeration and filters, line for line (sorted, all results)."""
    systems = read_scission_folder(folder)
    stats = {k: (v.latency_s, v.bandwidth_bytes_per_s) for k, v in read_network_csv(csv_path).items()}
    input_size = o.input_mb * 1000 * 1000
    devices = [s for s in systems if s.tier == "device"]
    edges = [s for s in systems if s.tier == "edge"]
    clouds = [s for s in systems if s.tier == "cloud"]
    length = len(systems[0].benchmarks[model])
    splits = []
    for x in range(-1, length):
        for y in range(-1, length):
            if y > x or y == -1:
                z = length - 1 if (x != length - 1 and y != length - 1) else -1
                splits.append(((0, x) if x != -1 else None, (x + 1, y) if y != -1 else None,
                               (max(x, y) + 1, z) if z != -1 else None))  # fmt: skip

    def get_time(system, span):  # noqa: ANN001, ANN202
        blocks = system.benchmarks[model]
        total = 0
        for i in range(span[0], span[1] + 1):
            total += blocks[i].seconds
        return total, blocks[span[1]].output_size, (blocks[span[0]].input_layer, blocks[span[1]].output_layer)

    scenarios = {}
    for dev in devices:
        for edge in edges:
            for cloud in clouds:
                for ds, es, cs in splits:
                    s = {"device": dev.name, "edge": None, "cloud": None, "dt": 0, "et": 0, "ct": 0,
                         "dout": input_size, "eout": 0, "db": (-1, -1), "eb": (-1, -1), "cb": (-1, -1),
                         "dl": False, "el": False, "cl": False}  # fmt: skip
                    if ds:
                        s["dt"], s["dout"], s["db"] = get_time(dev, ds)
                        s["dl"] = True
                    if es:
                        s["et"], s["eout"], s["eb"] = get_time(edge, es)
                        s["edge"], s["el"] = edge.name, True
                    if cs:
                        s["ct"], _, s["cb"] = get_time(cloud, cs)
                        s["cloud"], s["cl"] = cloud.name, True
                    if s["et"] == 0 and s["ct"] == 0:
                        s["dout"] = 0
                    elif s["ct"] == 0:
                        s["eout"] = 0
                    s["total"] = s["dt"] + s["et"] + s["ct"]
                    s["config"] = (
                        f"Device({s['device']}) = {s['db'][0]} - {s['db'][1]}, "
                        f"Edge({s['edge']}) = {s['eb'][0]} - "
                        f"{s['eb'][1]}, Cloud({s['cloud']}) = {s['cb'][0]} - {s['cb'][1]}"
                    )
                    scenarios[s["config"]] = s
    kept = list(scenarios.values())
    for tier, crit, key, block, upload, tcap in (
        ("device", o.device, "device", "db", o.device_upload_mb, o.device_time),
        ("edge", o.edge, "edge", "eb", o.edge_upload_mb, o.edge_time),
        ("cloud", o.cloud, "cloud", "cb", None, o.cloud_time),
    ):
        inc, exc, lin, lex = [], [], [], []
        for c in crit.split(",") if crit is not None else []:
            c = c.strip()
            if c.isdigit() or c == "-1":
                lin.append(int(c))
            elif c[0] == "!" and c[1:].isdigit() or c[1:] == "-1":
                lex.append(int(c[1:]))
            elif c[0] == "!":
                exc.append(c[1:])
            else:
                inc.append(c)
        used, t = tier[0] + "l", tier[0] + "t"
        if inc:
            kept = [s for s in kept if s[key] in inc and s[used]]
        if exc:
            kept = [s for s in kept if s[key] not in exc and s[used]]
        if lin:
            kept = [s for s in kept if all(x in range(s[block][0], s[block][1] + 1) for x in lin)]
        if lex:
            kept = [s for s in kept if all(x not in range(s[block][0], s[block][1] + 1) for x in lex)]
        if upload is not None:
            out_key = "dout" if tier == "device" else "eout"
            kept = [s for s in kept if s[out_key] <= upload * 1000 * 1000]
        if tcap is not None:
            if tcap[-1] == "%":
                kept = [s for s in kept if ((s[t] / s["total"]) * 100) <= float(tcap[:-1])]
            else:
                kept = [s for s in kept if s[t] <= float(tcap)]
    results = []
    for s in kept:
        transfer = 0
        if s["edge"] is not None:
            ping, bw = stats[(s["device"], s["edge"])]
            transfer += ping + (s["dout"] / bw)
            if s["cloud"] is not None:
                ping, bw = stats[(s["edge"], s["cloud"])]
                transfer += ping + (s["eout"] / bw)
        elif s["cloud"] is not None:
            ping, bw = stats[(s["device"], s["cloud"])]
            transfer += ping + (s["dout"] / bw)
        total = s["total"] + transfer
        mb = (s["dout"] + s["eout"]) / 1000 / 1000
        line = f"{format(round(total, 4), '.4f')}s - {format(round(mb, 4), '0.4f')}MB - {s['config']}"
        results.append((total, line))
    results.sort(key=lambda item: item[0])
    return results


def _agrees(
    scission_dir: Path, model: str, options: PredictOptions, csv_name: str = "network_stats.csv"
) -> None:
    csv_path = scission_dir / csv_name
    reference = original_predict(scission_dir, csv_path, model, options)
    outcome = predict(scission_dir, csv_path, model, options)
    if not reference:
        assert not outcome.result.feasible
        assert outcome.lines[1] == "No results for the specified configuration"
        return
    n = min(options.result_count, len(reference))
    ours = outcome.result.plans
    assert [p.latency_s for p in ours] == [total for total, _ in reference[:n]]
    lines = [line.split("] ", 1)[1] for line in outcome.lines[2:]]
    allowed = {line for total, line in reference if total <= reference[n - 1][0]}
    assert set(lines) <= allowed
    assert {line for total, line in reference if total < reference[n - 1][0]} <= set(lines)


QUERIES = [
    PredictOptions(),
    PredictOptions(device="!-1", edge="10", cloud="16"),
    PredictOptions(device="raspi4", edge="!2500", result_count=8),
    PredictOptions(edge="-1", cloud="!-1", device_upload_mb=0.2),
    PredictOptions(device="3,!12", edge_upload_mb=0.5, cloud_time="60%"),
    PredictOptions(device_time="20%", edge_time="0.5", result_count=12),
    PredictOptions(input_mb=2.5, edge="vm2Core", cloud="-1"),
    PredictOptions(cloud="6700k(GPU)", device="-1", edge="!-1"),
    PredictOptions(edge="nosuch"),
]


@pytest.mark.parametrize("model", ["vgg19", "resnet50", "mobilenetv2", "densenet169", "nasnetmobile"])
@pytest.mark.parametrize("options", QUERIES, ids=range(len(QUERIES)))
def test_predict_agrees_with_the_original_tool(
    scission_dir: Path, model: str, options: PredictOptions
) -> None:
    _agrees(scission_dir, model, options)


_crit = st.lists(
    st.sampled_from(
        [
            "-1",
            "!-1",
            "0",
            "3",
            "!5",
            "12",
            "!20",
            "raspi4",
            "2500",
            "!vm2Core",
            "6700k(GPU)",
            "!6700k(NoGPU)",
            "22",
            "!1",
        ]
    ),  # fmt: skip
    min_size=1,
    max_size=3,
).map(",".join)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    model=st.sampled_from(["vgg16", "resnet50v2", "xception", "resnet101v2"]),
    device=st.none() | _crit, edge=st.none() | _crit, cloud=st.none() | _crit,
    device_upload=st.none() | st.sampled_from([0.0, 0.15, 0.3, 1.0]),
    edge_upload=st.none() | st.sampled_from([0.0, 0.1, 0.8]),
    times=st.tuples(*[st.none() | st.sampled_from(["10%", "50%", "0.2", "1.5", "0"])] * 3),
    count=st.integers(1, 9), input_mb=st.sampled_from([0.15, 0.6]), wired=st.booleans(),
)  # fmt: skip
def test_predict_agrees_with_the_original_on_random_queries(
    scission_dir: Path, model: str, device: str | None, edge: str | None, cloud: str | None,
    device_upload: float | None, edge_upload: float | None, times: tuple, count: int, input_mb: float,
    wired: bool,
) -> None:  # fmt: skip
    options = PredictOptions(
        result_count=count, input_mb=input_mb, device=device, edge=edge, cloud=cloud,
        device_upload_mb=device_upload, edge_upload_mb=edge_upload, device_time=times[0], edge_time=times[1],
        cloud_time=times[2],
    )  # fmt: skip
    _agrees(scission_dir, model, options, "network_stats_wired.csv" if wired else "network_stats.csv")


def test_bad_predict_arguments_are_usage_errors(scission_dir: Path) -> None:
    with pytest.raises(PredictUsageError, match="available"):
        predict(scission_dir, scission_dir / "network_stats.csv", "nosuchnet", PredictOptions())
    runner = CliRunner()
    for args in (["--device-time", "abc"], ["--result-count", "0"], ["-e", "1,,2"]):
        result = runner.invoke(cli, ["predict", str(scission_dir), "network_stats.csv", "vgg19", *args])
        assert result.exit_code == 2 and "Error" in result.output and "Traceback" not in result.output


def test_excluding_another_tiers_system_by_name_only_requires_the_tier(scission_dir: Path) -> None:
    """`-e '!6700k(NoGPU)'` names a cloud: the original keeps NoGPU clouds usable (found by hypothesis)."""
    options = PredictOptions(edge="!6700k(NoGPU)", result_count=4, input_mb=0.6)
    csv_path = scission_dir / "network_stats.csv"
    ours = [p.latency_s for p in predict(scission_dir, csv_path, "vgg16", options).result.plans]
    assert ours == [latency for latency, _ in original_predict(scission_dir, csv_path, "vgg16", options)[:4]]

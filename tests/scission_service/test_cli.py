"""The ``scission`` CLI: plan output (table, JSON, plot), usage errors, no TensorFlow for light commands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from scission_service.cli import cli

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "datasets" / "scission"


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped Scission folder converted with ``import-scission``."""
    out = tmp_path_factory.mktemp("imported")
    result = CliRunner().invoke(cli, ["import-scission", str(DATA), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def _files(imported: Path, model: str = "vgg19") -> list[str]:
    return sorted(str(p) for p in (imported / model).glob("*.json"))


def test_plan_json_and_table(imported: Path) -> None:
    links = str(imported / "network_stats.links.json")
    run = CliRunner().invoke(cli, ["plan", *_files(imported), "--links", links, "--top", "3", "--json"])
    assert run.exit_code == 0, run.output
    doc = json.loads(run.output)
    assert doc["feasible"] and [p["rank"] for p in doc["plans"]] == [1, 2, 3]
    lat = [p["latency_s"] for p in doc["plans"]]
    assert lat == sorted(lat)
    text = CliRunner().invoke(cli, ["plan", *_files(imported), "--links", links, "--top", "2"])
    assert text.exit_code == 0, text.output
    summaries = [line for line in text.output.splitlines() if line.startswith("[")]
    assert [line.split("]")[0] for line in summaries] == ["[1", "[2"]
    best = doc["plans"][0]
    assert summaries[0].startswith(f"[1] {best['latency_s'] * 1e3:.1f} ms = compute")
    for seg in best["segments"]:
        assert (
            f"    {seg['resource']} ({seg['tier']}): blocks {seg['first_block']}-{seg['last_block']}, "
            f"layers {seg['first_layer']}-{seg['last_layer']}," in text.output
        )


def test_plan_flags_and_query_file_combine(imported: Path, tmp_path: Path) -> None:
    query = tmp_path / "q.json"
    query.write_text(json.dumps({"require_tiers": ["edge"], "top": 4}))
    links = str(imported / "network_stats.links.json")
    args = ["plan", *_files(imported), "--links", links, "--query", str(query), "--pin", "layer:16=cloud",
            "--exclude", "2500", "--compute-cap", "device=50%", "--json"]  # fmt: skip
    run = CliRunner().invoke(cli, args)
    assert run.exit_code == 0, run.output
    plans = json.loads(run.output)["plans"]
    assert len(plans) == 4
    for plan in plans:
        tiers = {seg["tier"]: seg for seg in plan["segments"]}
        assert "edge" in tiers and tiers["edge"]["resource"] == "vm2Core"
        cloud = tiers["cloud"]
        assert cloud["first_layer"] <= 16 <= cloud["last_layer"]


def test_infeasible_plan_exits_1_with_reason(imported: Path) -> None:
    links = str(imported / "network_stats.links.json")
    args = ["plan", *_files(imported), "--links", links, "--forbid-tier", "cloud", "--pin", "block:3=cloud"]
    run = CliRunner().invoke(cli, args)
    assert run.exit_code == 1
    assert "no configuration satisfies" in run.output and "tier cloud must not be used" in run.output


def test_plot_writes_png(imported: Path, tmp_path: Path) -> None:
    out = tmp_path / "plan.png"
    links = str(imported / "network_stats.links.json")
    run = CliRunner().invoke(cli, ["plan", *_files(imported), "--links", links, "--plot", str(out)])
    assert run.exit_code == 0, run.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--pin", "layer:x=edge"], "--pin"),
        (["--compute-cap", "moon=3"], "--compute-cap"),
        (["--top", "0"], "top"),
        (["--objective", "fastest"], "objective"),
    ],
)
def test_usage_errors_exit_2_without_traceback(imported: Path, args: list[str], needle: str) -> None:
    run = CliRunner().invoke(cli, ["plan", *_files(imported), *args])
    assert run.exit_code == 2, run.output
    assert needle in run.output and "Traceback" not in run.output


def test_bad_benchmark_file_is_a_usage_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema_version": 99}')
    run = CliRunner().invoke(cli, ["plan", str(bad)])
    assert run.exit_code == 2 and "schema_version" in run.output


def test_mixed_models_are_refused(imported: Path) -> None:
    files = [_files(imported, "vgg19")[0], _files(imported, "vgg16")[1]]
    run = CliRunner().invoke(cli, ["plan", *files])
    assert run.exit_code == 2 and "never mix" in run.output


def test_light_commands_do_not_import_tensorflow(imported: Path) -> None:
    links = str(imported / "network_stats.links.json")
    code = (
        "import sys; from click.testing import CliRunner; from scission_service.cli import cli;"
        f"r = CliRunner().invoke(cli, ['plan', *{_files(imported)!r}, '--links', {links!r}, '--json']);"
        f"p = CliRunner().invoke(cli, ['predict', {str(DATA)!r}, 'network_stats.csv', 'vgg19']);"
        "print(r.exit_code, p.exit_code, [m for m in ('tensorflow', 'keras') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.split() == ["0", "0", "[]"]


def test_query_schema_command() -> None:
    run = CliRunner().invoke(cli, ["query-schema"])
    assert run.exit_code == 0 and "compute_caps" in json.loads(run.output)["properties"]


def _multi_input_model(path: Path) -> Path:
    import keras

    keras.utils.set_random_seed(1)
    a, b = keras.Input((8,)), keras.Input((8,))
    joined = keras.layers.Concatenate()([keras.layers.Dense(4)(a), keras.layers.Dense(4)(b)])
    keras.Model([a, b], keras.layers.Dense(2)(joined)).save(path)
    return path


@pytest.mark.slow
def test_benchmark_refuses_what_it_cannot_run_without_a_traceback(tmp_path: Path) -> None:
    cases = [
        (["nosuchmodel"], "unknown application 'nosuchmodel'"),
        ([str(_multi_input_model(tmp_path / "two_inputs.keras"))], "has 2 inputs; benchmarking needs one"),
    ]
    for args, needle in cases:
        run = CliRunner().invoke(cli, ["benchmark", *args, "--out", str(tmp_path / "out.json")])
        assert run.exit_code == 2, run.output
        assert needle in run.output and "Traceback" not in run.output
        assert not (tmp_path / "out.json").exists()


@pytest.mark.slow
def test_benchmark_builds_an_application_at_the_given_input_shape_and_plan_reads_it(tmp_path: Path) -> None:
    from scission_service.models import build_application, model_digest

    out = tmp_path / "phone.json"
    args = ["benchmark", "mobilenetv2:alpha=0.35", "--input-shape", "32,32,3", "--tier", "device",
            "--name", "phone", "--out", str(out)]  # fmt: skip
    run = CliRunner().invoke(cli, args)
    assert run.exit_code == 0, run.output
    data = json.loads(out.read_text())
    assert data["input_shape"] == [1, 32, 32, 3] and data["repeats"] == 10
    assert data["resource"] == {**data["resource"], "name": "phone", "tier": "device"}
    # The same model a resource node serving "mobilenetv2:alpha=0.35:input_shape=32x32x3" would build.
    expected = build_application("mobilenetv2", alpha=0.35, input_shape=(32, 32, 3))
    assert data["model_digest"] == model_digest(expected)
    assert f"{len(data['blocks'])} blocks: sum of block medians" in run.output
    cut = (len(data["blocks"]) - 1) // 2
    assert f"check, blocks 0-{cut} as one segment: predicted" in run.output
    assert len(data["held_out"]) == 2
    planned = CliRunner().invoke(cli, ["plan", str(out), "--json"])
    assert planned.exit_code == 0, planned.output
    (plan,) = json.loads(planned.output)["plans"]
    assert [seg["resource"] for seg in plan["segments"]] == ["phone"]


def test_benchmark_model_spec_errors_are_usage_errors(tmp_path: Path) -> None:
    cases = [
        (["mobilenetv2:alpha=x"], "alpha must be a number"),
        (["vgg16:colour=red"], "is not one of alpha=…, input_shape=…, seed=…"),
        (["vgg16", "--input-shape", "64,64"], "an application takes height,width,channels"),
        (["vgg16:input_shape=32x32x3", "--input-shape", "64,64,3"], "contradicts"),
    ]
    for args, needle in cases:
        run = CliRunner().invoke(cli, ["benchmark", *args, "--out", str(tmp_path / "out.json")])
        assert run.exit_code == 2, run.output
        assert needle in run.output and "Traceback" not in run.output
        assert not (tmp_path / "out.json").exists()

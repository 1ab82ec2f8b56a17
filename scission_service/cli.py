"""The ``scission`` command line: plan, predict (Scission-compatible), import-scission, benchmark.

TensorFlow is imported only inside ``benchmark``; ``plan``, ``predict`` and ``import-scission`` stay light.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import click
from pydantic import ValidationError

from fhs.errors import validation_problems
from scission_service.benchmark_data import (
    BenchmarkData,
    BenchmarkDataError,
    Tier,
    dump_benchmark_data,
    load_benchmark_data,
)
from scission_service.planner import (
    TIERS,
    ComputeCap,
    Link,
    Pin,
    PlanningProblem,
    PlanningProblemError,
    PlanQuery,
    PlanResult,
    plan_partitions,
    problem_from_benchmarks,
    query_json_schema,
)
from scission_service.resource import cli as resource_cli

EXIT_NO_PLAN = 1


def _usage(message: str) -> NoReturn:
    raise click.UsageError(message)


def _guard(action: Callable[[], Any], *also: type[Exception]) -> Any:
    """Run ``action``; input errors (and ``also`` types) become usage errors (exit 2, no traceback)."""
    from scission_service.interop import PredictUsageError, ScissionFormatError

    usage_errors: tuple[type[Exception], ...] = (
        BenchmarkDataError, PlanningProblemError, ScissionFormatError, PredictUsageError, *also,
    )  # fmt: skip
    try:
        return action()
    except usage_errors as exc:
        _usage(str(exc))
    except ValidationError as exc:
        _usage(f"invalid query: {validation_problems(exc)}")
    except OSError as exc:
        _usage(f"{exc.filename or ''}: {exc.strerror or exc}")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Scission engine: plan DNN partitions across device, edge and cloud resources."""


# ---------------------------------------------------------------- links


def read_links(path: Path) -> tuple[dict[tuple[str, str], Link], dict[tuple[str, str], Link]]:
    """Read links from a Scission network CSV (``.csv``) or our links JSON document."""
    from scission_service.interop import read_network_csv

    if path.suffix.lower() == ".csv":
        return read_network_csv(path), {}
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise PlanningProblemError(f"{path}: not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise PlanningProblemError(f"{path}: expected an object with 'links' and/or 'tier_links'")
    out: list[dict[tuple[str, str], Link]] = [{}, {}]
    for slot, name in enumerate(("links", "tier_links")):
        for n, item in enumerate(doc.get(name, [])):
            try:
                key = (str(item["source"]), str(item["destination"]))
                out[slot][key] = Link(float(item["latency_s"]), float(item["bandwidth_bytes_per_s"]))
            except (KeyError, TypeError, ValueError) as exc:
                raise PlanningProblemError(
                    f"{path}: {name}[{n}] needs source, destination, latency_s, bandwidth_bytes_per_s ({exc})"
                ) from None
    return out[0], out[1]


# ---------------------------------------------------------------- plan


def _parse_pin(text: str) -> Pin:
    forbid = "!=" in text
    left, sep, target = text.partition("!=" if forbid else "=")
    kind, _, number = left.partition(":")
    if not sep or kind not in ("layer", "block") or not number.isdigit() or not target:
        _usage(f"--pin {text!r}: expected layer:N=TARGET or block:N!=TARGET with TARGET a tier or @resource")
    where: dict[str, Any] = {"resource": target[1:]} if target.startswith("@") else {"tier": target}
    if "tier" in where and target not in TIERS:
        _usage(f"--pin {text!r}: target must be one of {', '.join(TIERS)} or @RESOURCE")
    return Pin(**{kind: int(number)}, forbid=forbid, **where)


def _parse_cap(text: str) -> ComputeCap:
    tier, _, value = text.partition("=")
    if tier not in TIERS or not value:
        _usage(f"--compute-cap {text!r}: expected TIER=SECONDS or TIER=PERCENT% (tier: {', '.join(TIERS)})")
    try:
        number = float(value.rstrip("%"))
    except ValueError:
        _usage(f"--compute-cap {text!r}: {value!r} is not a number")
    if value.endswith("%"):
        return ComputeCap(tier=tier, max_percent=number)
    return ComputeCap(tier=tier, max_seconds=number)


def _parse_upload(text: str) -> tuple[str, float]:
    rid, _, value = text.rpartition("=")
    try:
        return rid, float(value)
    except ValueError:
        _usage(f"--upload-cap {text!r}: expected RESOURCE=BYTES")


def build_query(query_file: Path | None, flags: dict[str, Any]) -> PlanQuery:
    """A query from an optional JSON file, with explicitly given flags overriding it."""
    base: dict[str, Any] = {}
    if query_file is not None:
        try:
            base = json.loads(query_file.read_text())
        except json.JSONDecodeError as exc:
            _usage(f"{query_file}: not JSON ({exc})")
        if not isinstance(base, dict):
            _usage(f"{query_file}: a query is a JSON object (see `scission query-schema`)")
    updates: dict[str, Any] = {}
    simple = {
        "objective": "objective", "top": "top", "source": "source", "max_hops": "max_hops",
        "max_per_tier": "max_per_tier", "max_transfer": "max_total_transfer_bytes",
        "latency_weight": "latency_weight", "transfer_weight": "transfer_weight",
    }  # fmt: skip
    for flag, field in simple.items():
        if flags.get(flag) is not None:
            updates[field] = flags[flag]
    if flags.get("only"):
        updates["only_resources"] = list(flags["only"])
    for flag, field in (("exclude", "exclude_resources"), ("require", "require_resources"),
                        ("require_tier", "require_tiers"), ("forbid_tier", "forbid_tiers")):  # fmt: skip
        if flags.get(flag):
            updates[field] = list(base.get(field, [])) + list(flags[flag])
    if flags.get("pin"):
        updates["pins"] = list(base.get("pins", [])) + [_parse_pin(p).model_dump() for p in flags["pin"]]
    if flags.get("compute_cap"):
        updates["compute_caps"] = list(base.get("compute_caps", [])) + [
            _parse_cap(c).model_dump() for c in flags["compute_cap"]
        ]
    if flags.get("upload_cap"):
        updates["upload_caps_bytes"] = dict(base.get("upload_caps_bytes", {})) | dict(
            _parse_upload(u) for u in flags["upload_cap"]
        )
    return PlanQuery.model_validate(base | updates)


def _load_problem(files: Sequence[Path], links_file: Path | None, input_bytes: float | None,
                  return_result: bool) -> PlanningProblem:  # fmt: skip
    benchmarks: list[tuple[str, BenchmarkData]] = []
    for path in files:
        data = load_benchmark_data(path)
        benchmarks.append((data.resource.name, data))
    links, tier_links = read_links(links_file) if links_file else ({}, {})
    return problem_from_benchmarks(
        benchmarks,
        links=links,
        tier_links=tier_links,
        input_bytes=input_bytes,
        return_to_source=return_result,
    )


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms" if seconds < 0.01 else f"{seconds * 1e3:.1f} ms"


def _size(count: float) -> str:
    if count < 1e3:
        return f"{count:.0f} B"
    return f"{count / 1e3:.1f} kB" if count < 1e6 else f"{count / 1e6:.2f} MB"


def format_plans(result: PlanResult) -> str:
    """The plans as readable text: a summary line per plan, then its segments and hops in chain order."""
    if not result.feasible:
        return result.message
    lines = [f"{result.model or 'model'}: top {len(result.plans)} by {result.objective}"]
    for plan in result.plans:
        weighted = f", weighted cost {plan.objective_value:.4f}" if result.objective == "weighted" else ""
        lines.append(
            f"[{plan.rank}] {_ms(plan.latency_s)} = compute {_ms(plan.compute_s)} + transfer "
            f"{_ms(plan.transfer_s)}, {_size(plan.transfer_bytes)} sent{weighted}"
        )
        forward = {hop.destination: hop for hop in plan.hops if hop.kind == "forward"}
        for seg in plan.segments:
            hop = forward.get(seg.resource)
            if hop is not None:
                lines.append(f"      -> {_size(hop.bytes)} from {hop.source} in {_ms(hop.transfer_s)}")
            lines.append(
                f"    {seg.resource} ({seg.tier}): blocks {seg.first_block}-{seg.last_block}, "
                f"layers {seg.first_layer}-{seg.last_layer}, {_ms(seg.compute_s)}"
            )
        for hop in plan.hops:
            if hop.kind != "forward":
                lines.append(
                    f"      -> {_size(hop.bytes)} back to {hop.destination} in {_ms(hop.transfer_s)}"
                )
    return "\n".join(lines)


def plot_plan(problem: PlanningProblem, result: PlanResult, out: Path) -> None:
    """Per-block time per resource with the best plan's split (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(12, 5))
    blocks = list(range(len(problem.blocks)))
    for res in problem.resources:
        times = [max(t, 1e-6) * 1000 for t in res.block_times_s]
        ax.plot(blocks, times, marker=".", linewidth=0.8, label=f"{res.id} ({res.tier})", alpha=0.6)
    if result.plans:
        best = result.plans[0]
        by_id = {res.id: res for res in problem.resources}
        for seg in best.segments:
            span = list(range(seg.first_block, seg.last_block + 1))
            values = [max(by_id[seg.resource].block_times_s[b], 1e-6) * 1000 for b in span]
            ax.bar(span, values, width=0.8, alpha=0.35, label=f"plan: {seg.resource}")
            if seg.first_block > 0:
                ax.axvline(seg.first_block - 0.5, color="black", linestyle="--", linewidth=1)
        ax.set_title(f"{result.model}: best plan {best.latency_s:.4f} s (dashed: split points)")
    ax.set_yscale("log")
    ax.set_xlabel("block")
    ax.set_ylabel("time per block (ms)")
    ax.legend(fontsize="small", ncol=2)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def _emit(result: PlanResult, as_json: bool) -> None:
    click.echo(result.model_dump_json(indent=2) if as_json else format_plans(result))
    if not result.feasible:
        sys.exit(EXIT_NO_PLAN)


@cli.command("plan")
@click.argument(
    "bench_files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--links",
    "links_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="links JSON document or Scission network CSV",
)
@click.option(
    "--query",
    "query_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSON query (see `scission query-schema`); flags override it",
)
@click.option("--objective", type=click.Choice(["latency", "transfer", "weighted"]))
@click.option("--latency-weight", type=float)
@click.option("--transfer-weight", type=float, help="weighted objective: per MB")
@click.option("--top", type=int)
@click.option("--source", help="device the input originates at")
@click.option("--only", multiple=True, help="allow only these resources")
@click.option("--exclude", multiple=True)
@click.option("--require", multiple=True, help="resource that must run a block")
@click.option("--require-tier", multiple=True, type=click.Choice(TIERS))
@click.option("--forbid-tier", multiple=True, type=click.Choice(TIERS))
@click.option("--pin", multiple=True, help="layer:N=TIER, block:N!=@RESOURCE, ...")
@click.option("--upload-cap", multiple=True, help="RESOURCE=BYTES per hop")
@click.option("--max-transfer", type=float, help="total transfer cap in bytes")
@click.option("--compute-cap", multiple=True, help="TIER=SECONDS or TIER=PERCENT%")
@click.option("--max-hops", type=int)
@click.option("--max-per-tier", type=int)
@click.option("--input-bytes", type=float, help="override the input size")
@click.option("--return-result", is_flag=True, help="charge sending the result back to the source")
@click.option("--json", "as_json", is_flag=True)
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), help="write a PNG of the best plan")
def plan_command(bench_files: tuple[Path, ...], links_file: Path | None, query_file: Path | None,
                 input_bytes: float | None, return_result: bool, as_json: bool, plot: Path | None,
                 **flags: Any) -> None:  # fmt: skip
    """Plan partitions from BenchmarkData files (one per resource) and links."""
    problem = _guard(lambda: _load_problem(bench_files, links_file, input_bytes, return_result))
    query = _guard(lambda: build_query(query_file, flags))
    result = plan_partitions(problem=problem, query=query)
    if plot is not None:
        _guard(lambda: plot_plan(problem, result, plot))
    _emit(result, as_json)


@cli.command("query-schema")
def query_schema_command() -> None:
    """Print the JSON schema of plan queries."""
    click.echo(json.dumps(query_json_schema(), indent=2))


# ---------------------------------------------------------------- predict / import


@cli.command("predict")
@click.argument("bench_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("network_csv", type=click.Path(path_type=Path))
@click.argument("model")
@click.option("--result-count", type=int, default=5, show_default=True)
@click.option(
    "-i", "--input", "input_mb", type=float, default=0.15, show_default=True, help="input size (MB)"
)
@click.option("-d", "--device", help="device criteria")
@click.option("-e", "--edge", help="edge criteria")
@click.option("-c", "--cloud", help="cloud criteria")
@click.option("--device-upload", type=float, help="device upload limit (MB)")
@click.option("--edge-upload", type=float, help="edge upload limit (MB)")
@click.option("--device-time", help="S seconds or P%")
@click.option("--edge-time", help="S seconds or P%")
@click.option("--cloud-time", help="S seconds or P%")
@click.option("--json", "as_json", is_flag=True)
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path))
def predict_command(bench_dir: Path, network_csv: Path, model: str, result_count: int, input_mb: float,
                    device: str | None, edge: str | None, cloud: str | None, device_upload: float | None,
                    edge_upload: float | None, device_time: str | None, edge_time: str | None,
                    cloud_time: str | None, as_json: bool, plot: Path | None) -> None:  # fmt: skip
    """Scission's predict: the same arguments and result lines, answered by the exact planner."""
    from scission_service.interop import PredictOptions, predict

    if not network_csv.is_absolute() and not network_csv.exists() and (bench_dir / network_csv).exists():
        network_csv = bench_dir / network_csv  # the original resolves the CSV inside the folder
    options = PredictOptions(
        result_count=result_count, input_mb=input_mb, device=device, edge=edge, cloud=cloud,
        device_upload_mb=device_upload, edge_upload_mb=edge_upload, device_time=device_time,
        edge_time=edge_time, cloud_time=cloud_time,
    )  # fmt: skip
    outcome = _guard(lambda: predict(bench_dir, network_csv, model, options))
    if plot is not None:
        _guard(lambda: plot_plan(outcome.problem, outcome.result, plot))
    if as_json:
        _emit(outcome.result, True)
        return
    click.echo("\n".join(outcome.lines))
    if not outcome.result.feasible:
        sys.exit(EXIT_NO_PLAN)


@cli.command("import-scission")
@click.argument("bench_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--input-bytes", type=int, default=150_000, show_default=True)
def import_command(bench_dir: Path, out_dir: Path, input_bytes: int) -> None:
    """Convert a Scission benchmark folder into BenchmarkData files (+ links JSON per network CSV)."""
    from scission_service.interop import (
        links_document,
        read_network_csv,
        read_scission_folder,
        to_benchmark_data,
    )

    systems = _guard(lambda: read_scission_folder(bench_dir))
    written = 0
    for system in systems:
        for model in system.benchmarks:
            target = out_dir / model / f"{system.tier}-{system.name}.json"

            def make_parent(t: Path = target) -> None:
                t.parent.mkdir(parents=True, exist_ok=True)

            _guard(make_parent)
            data = to_benchmark_data(system, model, input_bytes=input_bytes)

            def write_data(t: Path = target, d: BenchmarkData = data) -> None:
                dump_benchmark_data(d, t)

            _guard(write_data)
            written += 1
    for csv_path in sorted(bench_dir.glob("*.csv")):

        def read_links(p: Path = csv_path) -> dict[tuple[str, str], Link]:
            return read_network_csv(p)

        links = _guard(read_links)
        target = out_dir / f"{csv_path.stem}.links.json"

        def write_links(t: Path = target, ln: dict[tuple[str, str], Link] = links) -> int:
            return t.write_text(json.dumps(links_document(ln), indent=2) + "\n")

        _guard(write_links)
    click.echo(f"wrote {written} BenchmarkData files for {len(systems)} systems to {out_dir}")


# ---------------------------------------------------------------- benchmark


@cli.command("benchmark")
@click.argument("model")
@click.option(
    "--input-shape",
    help="comma-separated, e.g. 96,96,3 (batch excluded); an application is built with this input",
)
@click.option("--repeats", type=click.IntRange(1, 10_000), default=10, show_default=True)
@click.option("--warmup", type=click.IntRange(1, 1000), help="untimed calls per block first  [default: 5]")
@click.option("--tier", type=click.Choice(TIERS), default="device", show_default=True)
@click.option("--name", help="resource name (default: host name)")
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False, path_type=Path))
def benchmark_command(model: str, input_shape: str | None, repeats: int, warmup: int | None, tier: Tier,
                      name: str | None, out_file: Path) -> None:  # fmt: skip
    """Benchmark every block of MODEL on this machine.

    MODEL is what `scission resource serve --model` takes: a keras.applications name with fixed-seed
    weights, APPLICATION[:alpha=A][:input_shape=HxWxC][:seed=N], or PATH.keras (loaded in safe mode).
    """
    import socket

    from scission_service.resource.settings import ModelSpec

    shape: list[int] | None = None
    if input_shape:
        try:
            shape = [int(part) for part in input_shape.split(",")]
        except ValueError:
            _usage(f"--input-shape {input_shape!r}: expected comma-separated integers")
        if any(dim <= 0 for dim in shape):
            _usage("--input-shape: every dimension must be positive")
    try:
        spec = ModelSpec.parse(model)
    except ValidationError as exc:
        _usage(f"model {model!r}: {validation_problems(exc)}")
    except ValueError as exc:
        _usage(f"model {model!r}: {exc}")
    if spec.application is not None and shape is not None:
        if len(shape) != 3:
            _usage(f"--input-shape {input_shape!r}: an application takes height,width,channels")
        if spec.input_shape not in (None, tuple(shape)):
            _usage(f"--input-shape {input_shape!r} contradicts the model's input_shape={spec.input_shape}")
        spec = spec.model_copy(update={"input_shape": tuple(shape)})
    from rich.console import Console
    from rich.progress import Progress

    from scission_service import benchmarking, models
    from scission_service.graph import GraphError
    from scission_service.segments import SegmentError

    model_errors = (models.ModelLoadError, GraphError, SegmentError, benchmarking.BenchmarkError)
    source = spec.path if spec.path is not None else str(spec.application)
    loaded = _guard(
        lambda: models.load_model(source, seed=spec.seed, alpha=spec.alpha, input_shape=spec.input_shape),
        *model_errors,
    )
    resource = name or socket.gethostname() or "local"
    with Progress(console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(f"benchmarking {spec.name}", total=None)

        def report(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        data = _guard(
            lambda: benchmarking.benchmark_model(
                loaded,
                model_name=spec.name,
                resource_name=resource,
                tier=tier,
                input_shape=shape,
                repeats=repeats,
                warmup=warmup or benchmarking.WARMUP_CALLS,
                progress=report,
            ),  # fmt: skip
            *model_errors,
        )
    _guard(lambda: dump_benchmark_data(data, out_file))
    click.echo(
        f"{spec.name} ({data.model_digest[:19]}), input {data.input_shape}, {data.repeats} repeats, "
        f"{data.execution_mode}, call overhead {data.call_overhead_s * 1e3:.3f} ms subtracted from every time"
    )
    whole = "" if data.whole_model_median_s is None else f" (whole model {_ms(data.whole_model_median_s)})"
    blocks = f"{len(data.blocks)} blocks: sum of block medians {_ms(data.block_sum_s)}"
    click.echo(f"{blocks}{whole} -> {out_file}")
    for check in data.held_out:
        error = "" if check.error is None else f" ({check.error:+.0%})"
        click.echo(
            f"check, blocks {check.first_block}-{check.last_block} as one segment: predicted "
            f"{_ms(check.predicted_s)}, measured {_ms(check.measured_s)}{error}"
        )


cli.add_command(resource_cli.resource)


def main() -> None:
    """Entry point of the ``scission`` console script."""
    cli(prog_name="scission")


if __name__ == "__main__":
    main()

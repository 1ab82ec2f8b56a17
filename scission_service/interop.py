"""Scission interop: read the original tool's benchmark folders safely and answer its ``predict`` queries.

The ``.dat`` files are pickles; they are read with :class:`RestrictedUnpickler`, which admits exactly one
global (``__main__.LayerBenchmark``) and turns it into an inert record; anything else is refused. ``predict``
is mapped onto the planner (one search code path) with the original's cost model, including its quirk
that a hop followed only by 0-second blocks carries 0 bytes (see ``docs/planner.md``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from scission_service.benchmark_data import BenchmarkData, BlockTiming, ResourceDescriptor
from scission_service.planner import (
    TIERS,
    BlockSpan,
    ComputeCap,
    Link,
    Pin,
    PlannerResource,
    PlanningProblem,
    PlanQuery,
    PlanResult,
    plan_partitions,
)
from scission_service.planner.problem import Tier

MAX_DAT_BYTES = 64 * 1024 * 1024
MAX_CSV_BYTES = 4 * 1024 * 1024
DEFAULT_INPUT_MB = 0.15
_RECORD_FIELDS = {
    "model",
    "device",
    "platform",
    "input_layer",
    "output_layer",
    "second_prediction",
    "output_size",
}


class ScissionFormatError(ValueError):
    """A Scission benchmark folder, .dat pickle or network CSV is invalid or unsafe."""


class PredictUsageError(ValueError):
    """A ``predict`` argument is malformed; the message says which and why."""


class LayerBenchmarkRecord:
    """Inert stand-in for Scission's ``LayerBenchmark``: plain attributes, no behaviour."""

    def __setstate__(self, state: Any) -> None:
        if (
            not isinstance(state, dict)
            or not set(state) <= _RECORD_FIELDS
            or not all(isinstance(k, str) for k in state)
        ):
            raise pickle.UnpicklingError("LayerBenchmark state must be a dict of the known attributes")
        self.__dict__.update(state)


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler whose only admitted global is ``__main__.LayerBenchmark`` (as an inert record)."""

    def find_class(self, module: str, name: str) -> Any:
        """Admit only Scission's record class; refuse every other global."""
        if (module, name) == ("__main__", "LayerBenchmark"):
            return LayerBenchmarkRecord
        raise pickle.UnpicklingError(
            f"refused to load global {module}.{name}: "
            "a Scission .dat file may only contain LayerBenchmark records"
        )

    def persistent_load(self, pid: Any) -> Any:
        """Persistent ids never occur in Scission files."""
        raise pickle.UnpicklingError("refused a persistent id: not a Scission .dat file")


@dataclass(frozen=True)
class ScissionBlock:
    """One validated block record of a Scission benchmark."""

    input_layer: int
    output_layer: int
    seconds: float
    output_size: int


@dataclass
class ScissionSystem:
    """One ``<tier>-<name>.dat`` file: a system's per-model block benchmarks."""

    tier: Tier
    name: str
    benchmarks: dict[str, list[ScissionBlock]] = field(default_factory=dict)


def load_scission_dat(data: bytes, *, origin: str = "<bytes>") -> dict[str, list[ScissionBlock]]:
    """Decode one Scission .dat pickle safely and validate its structure."""
    if len(data) > MAX_DAT_BYTES:
        raise ScissionFormatError(
            f"{origin}: larger than {MAX_DAT_BYTES} bytes; not a Scission benchmark file"
        )
    try:
        raw = RestrictedUnpickler(io.BytesIO(data)).load()
    except pickle.UnpicklingError as exc:
        raise ScissionFormatError(f"{origin}: {exc}") from None
    except Exception as exc:  # truncated or garbage input raises many types; all mean "not a .dat"
        raise ScissionFormatError(
            f"{origin}: not a readable Scission pickle ({type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(raw, dict):
        raise ScissionFormatError(f"{origin}: expected a dict of model name -> list of LayerBenchmark")
    out: dict[str, list[ScissionBlock]] = {}
    for model, records in raw.items():
        if not isinstance(model, str) or not isinstance(records, list) or not records:
            raise ScissionFormatError(f"{origin}: model {model!r} must map to a non-empty list of records")
        blocks: list[ScissionBlock] = []
        for pos, rec in enumerate(records):
            if not isinstance(rec, LayerBenchmarkRecord):
                raise ScissionFormatError(f"{origin}: {model} entry {pos} is not a LayerBenchmark record")
            try:
                block = ScissionBlock(
                    int(_typed(rec, "input_layer", int)), int(_typed(rec, "output_layer", int)),
                    float(_typed(rec, "second_prediction", (int, float))),
                    int(_typed(rec, "output_size", int)),
                )  # fmt: skip
            except (AttributeError, TypeError) as exc:
                raise ScissionFormatError(f"{origin}: {model} entry {pos}: {exc}") from None
            if not (math.isfinite(block.seconds) and block.seconds >= 0 and block.output_size >= 0):
                raise ScissionFormatError(f"{origin}: {model} entry {pos} has a negative or non-finite value")
            if block.input_layer < 0 or block.output_layer < block.input_layer:
                raise ScissionFormatError(f"{origin}: {model} entry {pos} has an invalid layer range")
            if blocks and block.input_layer <= blocks[-1].output_layer:
                raise ScissionFormatError(f"{origin}: {model} entry {pos} overlaps the previous block")
            blocks.append(block)
        out[model] = blocks
    return out


def _typed(rec: LayerBenchmarkRecord, name: str, kind: type | tuple[type, ...]) -> Any:
    value = getattr(rec, name)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise TypeError(f"attribute {name!r} has type {type(value).__name__}")
    return value


def read_scission_folder(folder: Path) -> list[ScissionSystem]:
    """Read every ``<tier>-<name>.dat`` in ``folder`` (sorted by file name)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ScissionFormatError(f"{folder}: not a directory")
    systems = []
    for path in sorted(folder.glob("*-*.dat")):
        tier, _, name = path.name[: -len(".dat")].partition("-")
        if tier.lower() not in TIERS or not name:
            raise ScissionFormatError(f"{path.name}: expected <device|edge|cloud>-<name>.dat")
        if path.stat().st_size > MAX_DAT_BYTES:
            raise ScissionFormatError(f"{path.name}: larger than {MAX_DAT_BYTES} bytes")
        valid_tier = cast(Tier, tier.lower())  # checked against TIERS above
        systems.append(
            ScissionSystem(valid_tier, name, load_scission_dat(path.read_bytes(), origin=path.name))
        )
    if not systems:
        raise ScissionFormatError(f"{folder}: no <tier>-<name>.dat benchmark files")
    names = [s.name for s in systems]
    if len(set(names)) != len(names):
        raise ScissionFormatError(f"{folder}: two benchmark files name the same system")
    return systems


def read_network_csv(path: Path) -> dict[tuple[str, str], Link]:
    """Read Scission's ``source,destination,ping(ms),bandwidth(mbps)`` CSV into links (Scission's units)."""
    path = Path(path)
    if not path.is_file():
        raise ScissionFormatError(f"{path}: no such network statistics file")
    if path.stat().st_size > MAX_CSV_BYTES:
        raise ScissionFormatError(f"{path}: larger than {MAX_CSV_BYTES} bytes")
    links: dict[tuple[str, str], Link] = {}
    rows = list(csv.reader(io.StringIO(path.read_text(errors="replace"))))
    for number, row in enumerate(rows[1:], start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) < 4:
            raise ScissionFormatError(
                f"{path.name} line {number}: expected source,destination,ping(ms),bandwidth(mbps)"
            )
        try:
            ping_ms, mbps = float(row[2]), float(row[3])
        except ValueError:
            raise ScissionFormatError(
                f"{path.name} line {number}: ping and bandwidth must be numbers"
            ) from None
        if not (math.isfinite(ping_ms) and ping_ms >= 0 and math.isfinite(mbps) and mbps > 0):
            raise ScissionFormatError(f"{path.name} line {number}: need ping >= 0 ms and bandwidth > 0 Mbps")
        # Scission: latency = ping / 1000 s; bandwidth = round(Mbps * 125000) bytes/s
        links[(row[0].strip(), row[1].strip())] = Link(ping_ms / 1000, round(mbps * 125000))
    return links


def scission_model_digest(model: str, blocks: list[ScissionBlock]) -> str:
    """A stable identifier for a Scission model partitioning (Scission records no weights digest)."""
    spans = ",".join(f"{b.input_layer}-{b.output_layer}" for b in blocks)
    return "scission-" + hashlib.sha256(f"{model}:{spans}".encode()).hexdigest()[:32]


def to_benchmark_data(system: ScissionSystem, model: str, *, input_bytes: int = 150_000) -> BenchmarkData:
    """Convert one system's benchmark of ``model`` into our BenchmarkData (times are Scission's means)."""
    blocks = system.benchmarks[model]
    return BenchmarkData(
        resource=ResourceDescriptor(name=system.name, tier=system.tier),
        model_name=model,
        model_digest=scission_model_digest(model, blocks),
        input_bytes=input_bytes,
        execution_mode="scission-mean",
        blocks=[
            BlockTiming(
                index=i,
                first_layer=b.input_layer,
                last_layer=b.output_layer,
                median_s=b.seconds,
                p10_s=b.seconds,
                p90_s=b.seconds,
                output_bytes=b.output_size,
            )  # fmt: skip
            for i, b in enumerate(blocks)
        ],
        source="scission",
    )


def links_document(links: Mapping[tuple[str, str], Link]) -> dict[str, Any]:
    """The links JSON document ``scission plan`` reads."""
    return {
        "links": [
            {
                "source": a,
                "destination": b,
                "latency_s": link.latency_s,
                "bandwidth_bytes_per_s": link.bandwidth_bytes_per_s,
            }
            for (a, b), link in links.items()
        ],  # fmt: skip
        "tier_links": [],
    }


# ---------------------------------------------------------------- predict


@dataclass(frozen=True)
class TierCriteria:
    """One tier's parsed criteria list (Scission syntax)."""

    layers_in: tuple[int, ...] = ()
    layers_out: tuple[int, ...] = ()
    names_in: tuple[str, ...] = ()
    names_out: tuple[str, ...] = ()


@dataclass(frozen=True)
class PredictOptions:
    """The original ``predict`` flags."""

    result_count: int = 5
    input_mb: float = DEFAULT_INPUT_MB
    device: str | None = None
    edge: str | None = None
    cloud: str | None = None
    device_upload_mb: float | None = None
    edge_upload_mb: float | None = None
    device_time: str | None = None
    edge_time: str | None = None
    cloud_time: str | None = None


def parse_criteria(text: str | None, *, tier: str) -> TierCriteria:
    """Parse a comma-separated criteria list exactly as Scission does (``N``, ``!N``, ``-1``, ``NAME``...)."""
    if text is None:
        return TierCriteria()
    layers_in: list[int] = []
    layers_out: list[int] = []
    names_in: list[str] = []
    names_out: list[str] = []
    for raw in text.split(","):
        c = raw.strip()
        if not c:
            raise PredictUsageError(f"--{tier} criteria {text!r}: empty entry (remove the stray comma)")
        if c.isdigit() or c == "-1":
            layers_in.append(_layer(c, tier))
        elif (c[0] == "!" and c[1:].isdigit()) or c[1:] == "-1":
            layers_out.append(_layer(c[1:], tier))
        elif c[0] == "!":
            names_out.append(c[1:])
        else:
            names_in.append(c)
    return TierCriteria(tuple(layers_in), tuple(layers_out), tuple(names_in), tuple(names_out))


def _layer(text: str, tier: str) -> int:
    if not text.isascii():
        raise PredictUsageError(f"--{tier} criteria: layer {text!r} is not a plain number")
    return int(text)


def parse_time_cap(text: str | None, *, tier: str) -> ComputeCap | None:
    """``S`` seconds or ``P%`` of total compute, as Scission's ``--<tier>-time``."""
    if text is None:
        return None
    percent = text.endswith("%")
    try:
        value = float(text[:-1] if percent else text)
    except ValueError:
        raise PredictUsageError(
            f"--{tier}-time {text!r}: expected seconds (e.g. 2.5) or a percentage (e.g. 40%)"
        ) from None
    if not (math.isfinite(value) and value >= 0):
        raise PredictUsageError(f"--{tier}-time {text!r}: must be a finite number >= 0")
    if percent:
        return ComputeCap(tier=tier, max_percent=value)
    return ComputeCap(tier=tier, max_seconds=value)


def scission_problem(systems: list[ScissionSystem], links: Mapping[tuple[str, str], Link], model: str, *,
                     input_mb: float = DEFAULT_INPUT_MB) -> PlanningProblem:  # fmt: skip
    """The planning problem Scission's ``predict`` solves for ``model``."""
    available = sorted({m for s in systems for m in s.benchmarks})
    missing = [s.name for s in systems if model not in s.benchmarks]
    if len(missing) == len(systems):
        raise PredictUsageError(f"no benchmark of model {model!r}; available: {', '.join(available)}")
    if missing:
        raise PredictUsageError(f"systems without a benchmark of {model!r}: {', '.join(missing)}")
    if not (math.isfinite(input_mb) and input_mb >= 0):
        raise PredictUsageError(f"input size {input_mb!r} MB must be a finite number >= 0")
    first = systems[0].benchmarks[model]
    spans = tuple(BlockSpan(b.input_layer, b.output_layer) for b in first)
    for s in systems:
        if tuple(BlockSpan(b.input_layer, b.output_layer) for b in s.benchmarks[model]) != spans:
            raise ScissionFormatError(f"{s.tier}-{s.name}: {model} has a different block partitioning")
    resources = tuple(
        PlannerResource(
            id=s.name,
            tier=s.tier,
            block_times_s=tuple(b.seconds for b in s.benchmarks[model]),
            output_bytes=tuple(b.output_size for b in s.benchmarks[model]),
        )  # fmt: skip
        for s in systems
    )
    return PlanningProblem(
        resources=resources, blocks=spans, input_bytes=input_mb * 1000 * 1000, links=dict(links),
        scission_zero_time_quirk=True, model_name=model,
    )  # fmt: skip


def scission_query(problem: PlanningProblem, options: PredictOptions) -> PlanQuery:
    """Map Scission's predict flags onto a planner query (same answers as the original)."""
    if options.result_count < 1:
        raise PredictUsageError("--result-count must be at least 1")
    exclude: list[str] = []
    require_tiers: list[Tier] = []
    forbid_tiers: list[Tier] = []
    pins: list[Pin] = []
    caps: list[ComputeCap] = []
    upload: dict[str, float] = {}
    by_tier = {tier: [r.id for r in problem.resources if r.tier == tier] for tier in TIERS}
    criteria: tuple[tuple[Tier, str | None], ...] = (
        ("device", options.device),
        ("edge", options.edge),
        ("cloud", options.cloud),
    )
    for tier, text in criteria:
        crit = parse_criteria(text, tier=tier)
        for layer in crit.layers_in:
            if layer == -1:
                forbid_tiers.append(tier)
            else:
                pins.append(Pin(layer=layer, tier=tier))
        for layer in crit.layers_out:
            if layer == -1:
                require_tiers.append(tier)
            else:
                pins.append(Pin(layer=layer, tier=tier, forbid=True))
        if crit.names_in:
            exclude += [rid for rid in by_tier[tier] if rid not in crit.names_in]
        # `!NAME` filters this tier's system only: naming another tier's system leaves that one usable there
        exclude += [name for name in crit.names_out if name in by_tier[tier]]
        if crit.names_in or crit.names_out:
            require_tiers.append(tier)
    uploads: tuple[tuple[Tier, float | None], ...] = (
        ("device", options.device_upload_mb),
        ("edge", options.edge_upload_mb),
    )
    for tier, mb in uploads:
        if mb is not None:
            if not (math.isfinite(mb) and mb >= 0):
                raise PredictUsageError(f"--{tier}-upload {mb!r}: must be a finite number of MB >= 0")
            upload.update(dict.fromkeys(by_tier[tier], mb * 1000 * 1000))
    for tier, text in (
        ("device", options.device_time),
        ("edge", options.edge_time),
        ("cloud", options.cloud_time),
    ):
        cap = parse_time_cap(text, tier=tier)
        if cap is not None:
            caps.append(cap)
    return PlanQuery(
        top=min(options.result_count, 1000), exclude_resources=list(dict.fromkeys(exclude)),
        require_tiers=list(dict.fromkeys(require_tiers)),
        forbid_tiers=list(dict.fromkeys(forbid_tiers)),
        pins=pins, upload_caps_bytes=upload, compute_caps=caps,
    )  # fmt: skip


def scission_line(rank: int, plan_index: int, result: PlanResult) -> str:
    """One result line in the original tool's format."""
    plan = result.plans[plan_index]
    by_tier = {seg.tier: seg for seg in plan.segments}
    parts = []
    columns: tuple[tuple[Tier, str], ...] = (("device", "Device"), ("edge", "Edge"), ("cloud", "Cloud"))
    for tier, label in columns:
        seg = by_tier.get(tier)
        if tier == "device":
            name = plan.source
        else:
            name = seg.resource if seg else "None"
        first, last = (seg.first_layer, seg.last_layer) if seg else (-1, -1)
        parts.append(f"{label}({name}) = {first} - {last}")
    megabytes = plan.transfer_bytes / 1000 / 1000  # forward hops (+ Scission's phantom edge output)
    return (
        f"[{rank}] {format(round(plan.latency_s, 4), '.4f')}s - {format(round(megabytes, 4), '0.4f')}MB - "
        + ", ".join(parts)
    )


@dataclass
class PredictOutcome:
    """What ``predict`` prints, and the planner result behind it."""

    lines: list[str]
    result: PlanResult
    problem: PlanningProblem


def predict(bench_dir: Path, network_csv: Path, model: str, options: PredictOptions) -> PredictOutcome:
    """Scission's ``predict``: load the folder and CSV, plan with the planner, format the original lines."""
    systems = read_scission_folder(bench_dir)
    links = read_network_csv(network_csv)
    application = model.lower()
    problem = scission_problem(systems, links, application, input_mb=options.input_mb)
    query = scission_query(problem, options)
    result = plan_partitions(problem=problem, query=query)
    counts = {tier: sum(1 for s in systems if s.tier == tier) for tier in TIERS}
    lines = [
        f"[+] {len(systems)} systems loaded : {counts['device']} device, {counts['edge']} edge, "
        f"{counts['cloud']} cloud"
    ]
    if not result.feasible:
        lines.append("No results for the specified configuration")
        lines.append(f"[!] {result.message}")
    else:
        lines.append(f"[+] {application} results")
        lines += [scission_line(plan.rank, i, result) for i, plan in enumerate(result.plans)]
    return PredictOutcome(lines=lines, result=result, problem=problem)

"""Partition queries for a member, over exactly the resources it may discover and invoke, and plan execution.

The FHS acts for the calling member: it discovers ``scission.resource`` services with the member's discovery
policies, then calls each one *through the invocation path as the member* (so the owning FHS, possibly a peer,
enforces and audits the owner's access policy), fetches BenchmarkData, and plans off the event loop. A
resource the member cannot invoke never reaches the planner. Plans name resources by encoded service id.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
import uuid
from collections import Counter
from typing import TYPE_CHECKING, Any

from fhs.audit import service as audit_service
from fhs.errors import Conflict, FHSError, InvalidInput, NotFound, UpstreamError
from fhs.federations.commands import require_member
from fhs.federations.events import now_iso
from fhs.federations.state import load_state
from fhs.identity.schemas import Principal
from fhs.invocation import service as invocation_service
from fhs.proxy.service import ProxiedResponse
from fhs.registry import service as registry_service
from fhs.registry.schemas import ServiceRead
from fhs.store.base import Put
from scission_service.benchmark_data import BenchmarkData, BenchmarkDataError, parse_benchmark_data
from scission_service.federated.schemas import (
    ConsideredResource,
    ExcludedResource,
    HopReport,
    PartitionQueryCreate,
    PartitionQueryRead,
    PlanExecutionRead,
)
from scission_service.planner import Link, PlanningProblemError, plan_partitions, problem_from_benchmarks
from scission_service.tensor_wire import TensorWireError, decode_array

if TYPE_CHECKING:
    from fhs.runtime import Runtime

RESOURCE_TYPE = "scission.resource"
BENCHMARK_CACHE_TTL_S = 600.0
POLL_INTERVAL_S = 1.0
MAX_TENSOR_BYTES = 64 * 1024 * 1024


class PlanHopFailed(UpstreamError):
    """A hop of an executing plan failed; the message names the hop and its resource."""

    code = "plan_hop_failed"


def queries_collection(fid: str) -> str:
    """Stored partition queries of a federation (at the FHS that answered them)."""
    return f"partition_queries:{fid}"


def _cache_collection(fid: str) -> str:
    return f"benchmark_cache:{fid}"


async def _call(
    runtime: Runtime,
    fid: str,
    principal: Principal,
    sid: str,
    method: str,
    path: str,
    *,
    query: str = "",
    body: bytes = b"",
    headers: list[tuple[str, str]] | None = None,
) -> ProxiedResponse:
    return await invocation_service.invoke(
        runtime=runtime,
        fid=fid,
        sid=sid,
        principal=principal,
        method=method,
        sub_path=path,
        query=query,
        headers=headers or [],
        body=body,
        request_id=uuid.uuid4().hex,
    )


def _shape_query(shape: list[int] | None) -> str:
    return f"input_shape={','.join(map(str, shape))}" if shape else ""


def _error_text(response: ProxiedResponse) -> str:
    try:
        return str(json.loads(response.body)["error"]["message"])[:300]
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}"


async def _benchmark_data(
    runtime: Runtime, fid: str, principal: Principal, sid: str, body: PartitionQueryCreate
) -> BenchmarkData | None:
    """The resource's BenchmarkData for the model (fresh cache or fetched through the proxy), or None."""
    store = runtime.store
    cache_key = f"{sid}|{body.model}|{_shape_query(body.input_shape)}"
    cached = await store.get(_cache_collection(fid), cache_key)
    if cached is not None and time.time() - float(cached.value["fetched_at"]) < BENCHMARK_CACHE_TTL_S:
        return BenchmarkData.model_validate(cached.value["data"])
    response = await _call(
        runtime,
        fid,
        principal,
        sid,
        "GET",
        f"benchmark-data/{body.model}",
        query=_shape_query(body.input_shape),
    )
    if response.status_code == 404:
        return None
    if response.status_code != 200:
        raise UpstreamError(f"benchmark data: {_error_text(response)}")
    try:
        data = parse_benchmark_data(response.body)
    except BenchmarkDataError as exc:
        raise UpstreamError(f"the resource sent invalid BenchmarkData: {exc}"[:300]) from None
    await store.write(
        [
            Put(
                _cache_collection(fid),
                cache_key,
                {"fetched_at": time.time(), "data": data.model_dump(mode="json")},
            )
        ]
    )
    return data


async def _run_benchmark(
    runtime: Runtime, fid: str, principal: Principal, sid: str, body: PartitionQueryCreate, deadline: float
) -> None:
    request = json.dumps({"model": body.model, "input_shape": body.input_shape}).encode()
    response = await _call(
        runtime,
        fid,
        principal,
        sid,
        "POST",
        "benchmarks",
        body=request,
        headers=[("Content-Type", "application/json")],
    )
    if response.status_code not in (200, 202):
        raise UpstreamError(f"could not start a benchmark: {_error_text(response)}")
    job = json.loads(response.body)
    while job["status"] in ("queued", "running"):
        if time.monotonic() > deadline:
            raise UpstreamError("the benchmark did not finish within benchmark_timeout_s")
        await asyncio.sleep(POLL_INTERVAL_S)
        response = await _call(runtime, fid, principal, sid, "GET", f"benchmarks/{job['id']}")
        if response.status_code != 200:
            raise UpstreamError(f"benchmark status: {_error_text(response)}")
        job = json.loads(response.body)
    if job["status"] != "succeeded":
        raise UpstreamError(f"the benchmark {job['status']}: {job.get('error') or 'no detail'}")


async def _survey(
    runtime: Runtime,
    fid: str,
    principal: Principal,
    service: ServiceRead,
    body: PartitionQueryCreate,
    deadline: float,
) -> tuple[str, Any]:
    """("ok", BenchmarkData) | ("excluded", reason) | ("missing", reason) for one discovered resource."""
    try:
        described = await _call(runtime, fid, principal, service.id, "GET", "describe")
    except FHSError as exc:
        if exc.status_code in (403, 404):
            return "excluded", "you may discover it but its access policy does not let you invoke it"
        return "excluded", f"unreachable: {exc.message}"[:300]
    if described.status_code != 200:
        return "excluded", f"describe failed: {_error_text(described)}"
    try:
        served = {m["name"]: m for m in json.loads(described.body)["models"]}
    except (ValueError, KeyError, TypeError):
        return "excluded", "its description is malformed"
    if body.model not in served:
        return "excluded", f"does not serve model {body.model!r}"
    try:
        data = await _benchmark_data(runtime, fid, principal, service.id, body)
        if data is None and body.benchmark_missing:
            await _run_benchmark(runtime, fid, principal, service.id, body, deadline)
            data = await _benchmark_data(runtime, fid, principal, service.id, body)
    except FHSError as exc:
        return "excluded", exc.message[:300]
    if data is None:
        return "missing", "no benchmark for this model and input shape; ask with benchmark_missing=true"
    if data.model_digest != served[body.model]["digest"]:
        return "excluded", "its benchmark was made for other weights than it serves now"
    return "ok", data


async def create_query(
    *, runtime: Runtime, fid: str, principal: Principal, body: PartitionQueryCreate
) -> PartitionQueryRead:
    """Answer a partition query for ``principal`` over the resources it may discover and invoke."""
    store, me = runtime.store, runtime.settings.fhs_id
    candidates = await registry_service.discover(
        store=store, me=me, fid=fid, principal=principal, service_type=RESOURCE_TYPE
    )
    deadline = time.monotonic() + body.benchmark_timeout_s
    surveys = await asyncio.gather(*(_survey(runtime, fid, principal, s, body, deadline) for s in candidates))
    usable: list[tuple[ServiceRead, BenchmarkData]] = []
    excluded: list[ExcludedResource] = []
    missing: list[ExcludedResource] = []
    for service, (kind, value) in zip(candidates, surveys, strict=True):
        if kind == "ok":
            usable.append((service, value))
        else:
            (missing if kind == "missing" else excluded).append(
                ExcludedResource(id=service.id, name=service.name, reason=value)
            )
    digest = Counter(data.model_digest for _, data in usable).most_common(1)[0][0] if usable else None
    for service, data in [u for u in usable if u[1].model_digest != digest]:
        excluded.append(
            ExcludedResource(
                id=service.id,
                name=service.name,
                reason=f"serves other weights for {body.model!r} ({data.model_digest[:19]})",
            )
        )
    usable = [u for u in usable if u[1].model_digest == digest]
    result, message = None, ""
    if usable:
        tier_links = {pair: Link(*value) for pair, value in body.network.tier_links().items()}
        links = {
            (link.source, link.destination): Link(link.latency_s, link.bandwidth_bytes_per_s)
            for link in body.network.links
        }
        try:
            problem = problem_from_benchmarks(
                [(s.id, d) for s, d in usable], tier_links=tier_links, links=links
            )
            result = await asyncio.to_thread(plan_partitions, problem=problem, query=body.query)
            message = result.message
        except PlanningProblemError as exc:
            message = f"cannot plan: {exc}"
    else:
        message = "no resource you may discover and invoke has benchmark data for this model"
    read = PartitionQueryRead(
        id="pq_" + secrets.token_hex(8),
        federation=fid,
        model=body.model,
        model_digest=digest,
        input_shape=body.input_shape,
        network=body.network,
        considered=[
            ConsideredResource(
                id=s.id, name=s.name, tier=d.resource.tier, fhs=s.fhs, model_digest=d.model_digest
            )
            for s, d in usable
        ],
        excluded=excluded,
        missing_benchmarks=missing,
        result=result,
        message=message,
        created_at=now_iso(),
    )
    await store.write(
        [
            Put(
                queries_collection(fid),
                read.id,
                {"member": principal.key, "read": read.model_dump(mode="json")},
            )
        ]
    )
    await audit_service.record(
        store=store,
        fid=fid,
        entries=[
            audit_service.entry(
                actor=principal.key,
                action="partition_query",
                target=read.id,
                details={
                    "considered": [c.id for c in read.considered],
                    "plans": len(result.plans) if result else 0,
                },
            )
        ],
    )
    return read


async def get_query(*, runtime: Runtime, fid: str, principal: Principal, qid: str) -> PartitionQueryRead:
    """A partition query the principal made here (NotFound for anyone else's)."""
    state = await load_state(store=runtime.store, fid=fid)
    require_member(state, principal, runtime.settings.fhs_id)
    doc = await runtime.store.get(queries_collection(fid), qid)
    if doc is None or doc.value["member"] != principal.key:
        raise NotFound(f"no partition query {qid[:40]!r}")
    return PartitionQueryRead.model_validate(doc.value["read"])


async def execute_plan(
    *, runtime: Runtime, fid: str, principal: Principal, qid: str, rank: int, tensor: bytes
) -> PlanExecutionRead:
    """Run plan ``rank`` of a query hop by hop as the member; each hop is authorised by its owning FHS."""
    query = await get_query(runtime=runtime, fid=fid, principal=principal, qid=qid)
    plans = query.result.plans if query.result else []
    if not 1 <= rank <= len(plans):
        raise NotFound(f"query {qid} has no plan of rank {rank} (it has {len(plans)})")
    try:
        decode_array(tensor, max_bytes=MAX_TENSOR_BYTES)
    except TensorWireError as exc:
        raise InvalidInput(f"the input must be one .npy tensor: {exc}") from None
    plan, current, reports = plans[rank - 1], tensor, []
    outgoing = {hop.source: hop for hop in plan.hops if hop.kind == "forward"}
    started_all = time.perf_counter()
    for number, segment in enumerate(plan.segments, start=1):
        where = (
            f"hop {number} ({segment.tier} resource {segment.resource}, blocks {segment.first_block}-"
            f"{segment.last_block})"
        )
        started = time.perf_counter()
        try:
            response = await _call(
                runtime,
                fid,
                principal,
                segment.resource,
                "POST",
                f"segments/{query.model}/run",
                query=f"first_block={segment.first_block}&last_block={segment.last_block}",
                body=current,
                headers=[("Content-Type", "application/x-npy"), ("X-Model-Digest", str(query.model_digest))],
            )
        except FHSError as exc:
            raise PlanHopFailed(
                f"{where} failed: {exc.message}", hop=number, resource=segment.resource
            ) from None
        wall = time.perf_counter() - started
        if response.status_code == 409:
            raise Conflict(
                f"{where}: the resource now serves other weights; ask a new partition query",
                hop=number,
                resource=segment.resource,
            )
        if response.status_code != 200:
            raise PlanHopFailed(
                f"{where} failed: {_error_text(response)}", hop=number, resource=segment.resource
            )
        headers = {name.lower(): value for name, value in response.headers}
        compute = float(headers.get("x-compute-seconds", "0") or 0)
        hop_out = outgoing.get(segment.resource)
        reports.append(
            HopReport(
                hop=number,
                resource=segment.resource,
                tier=segment.tier,
                first_block=segment.first_block,
                last_block=segment.last_block,
                input_bytes=len(current),
                output_bytes=len(response.body),
                predicted_compute_s=segment.compute_s,
                measured_compute_s=compute,
                predicted_transfer_s=hop_out.transfer_s if hop_out else 0.0,
                measured_transfer_s=max(0.0, wall - compute),
            )
        )
        current = response.body
    try:
        output = decode_array(current, max_bytes=MAX_TENSOR_BYTES)
    except TensorWireError as exc:
        raise PlanHopFailed(f"the last hop returned something that is not a tensor: {exc}") from None
    await audit_service.record(
        store=runtime.store,
        fid=fid,
        entries=[
            audit_service.entry(
                actor=principal.key,
                action="plan.executed",
                target=f"{qid}/{rank}",
                details={"resources": [s.resource for s in plan.segments]},
            )
        ],
    )
    return PlanExecutionRead(
        query=qid,
        rank=rank,
        predicted_latency_s=plan.latency_s,
        measured_latency_s=time.perf_counter() - started_all,
        hops=reports,
        output={
            "dtype": str(output.dtype),
            "shape": list(output.shape),
            "npy_base64": base64.b64encode(current).decode("ascii"),
        },
    )

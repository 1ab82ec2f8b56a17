"""Routes of the resource service: thin adapters over :class:`ResourceService` (auth is the middleware's)."""

from __future__ import annotations

import logging
import re
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from fhs.errors import InvalidInput, PayloadTooLarge
from scission_service.benchmark_data import BenchmarkData
from scission_service.resource.dependencies import Invocation, LinkDep, ServiceDep
from scission_service.resource.schemas import BenchmarkCreate, BenchmarkJobRead, DescribeRead
from scission_service.resource.settings import MODEL_NAME_PATTERN
from scission_service.tensor_wire import MEDIA_TYPE

log = logging.getLogger(__name__)
router = APIRouter(tags=["resource"])
ModelName = Annotated[str, Path(pattern=MODEL_NAME_PATTERN)]
NPY_HEADER_ALLOWANCE = 64 * 1024


def parse_shape(text: str | None) -> list[int] | None:
    """``96,96,3`` / ``96x96x3`` / ``[1, 96, 96, 3]`` → list of ints (422 otherwise)."""
    if text is None or not text.strip():
        return None
    parts = [p for p in re.split(r"[x,\s\[\]]+", text.strip()) if p]
    if not parts or len(parts) > 8 or not all(p.isdigit() and len(p) <= 9 for p in parts):
        raise InvalidInput(
            f"input_shape must be up to 8 positive integers such as 224,224,3; got {text[:80]!r}"
        )
    return [int(p) for p in parts]


async def read_limited_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) anything over ``limit`` bytes before reading it all."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(
            f"request body is {declared} bytes; this node accepts tensors up to {limit} bytes"
        )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(
                f"request body exceeds {limit} bytes; this node accepts smaller tensors only"
            )
    return bytes(body)


@router.get("/describe")
async def describe(service: ServiceDep) -> DescribeRead:
    """Tier, name, hardware descriptor and served models (digests, block counts) of this node."""
    return DescribeRead.model_validate(service.describe())


@router.post("/benchmarks", status_code=202, responses={200: {"description": "answered from cache"}})
async def start_benchmark(body: BenchmarkCreate, service: ServiceDep, invocation: Invocation) -> JSONResponse:
    """Start a benchmark job (202), join the model's running one (202) or answer from cache (200)."""
    job, _ = service.start_benchmark(
        model=body.model, input_shape=body.input_shape, repeats=body.repeats, force=body.force
    )
    log.info(
        "benchmark job %s of %s for %s in federation %s",
        job.id, job.model, invocation.get("sub"), invocation.get("federation"),
    )  # fmt: skip
    read = BenchmarkJobRead.model_validate(job.read())
    return JSONResponse(
        read.model_dump(mode="json"),
        status_code=200 if job.cached else 202,
        headers={"Location": f"/benchmarks/{job.id}"},
    )


@router.get("/benchmarks/{job_id}")
async def get_benchmark_job(
    job_id: Annotated[str, Path(max_length=64)], service: ServiceDep
) -> BenchmarkJobRead:
    """Status and progress of a benchmark job."""
    return BenchmarkJobRead.model_validate(service.jobs.get(job_id).read())


@router.get("/benchmark-data/{model}")
async def get_benchmark_data(
    model: ModelName,
    service: ServiceDep,
    input_shape: Annotated[str | None, Query(max_length=100)] = None,
) -> BenchmarkData:
    """The BenchmarkData of ``model`` at ``input_shape`` (default: the model's own input, batch 1)."""
    return service.benchmark_data(model=model, input_shape=parse_shape(input_shape))


@router.post(
    "/segments/{model}/run",
    response_class=Response,
    responses={200: {"content": {MEDIA_TYPE: {}}, "description": "the output tensor (.npy)"}},
)
async def run_segment(
    model: ModelName,
    request: Request,
    service: ServiceDep,
    link: LinkDep,
    invocation: Invocation,
    first_block: Annotated[int, Query(ge=0, le=1_000_000)],
    last_block: Annotated[int, Query(ge=0, le=1_000_000)],
    x_model_digest: Annotated[str | None, Header(max_length=200)] = None,
) -> Response:
    """Run blocks ``first_block..last_block`` on the ``.npy`` body; return the output ``.npy`` and timings."""
    served = service.segment_target(
        model=model, first_block=first_block, last_block=last_block, model_digest=x_model_digest
    )
    async with service.segment_slots:
        body = await read_limited_body(request, service.settings.max_tensor_bytes + NPY_HEADER_ALLOWANCE)
        link_s = await link.received(len(body))
        array = service.decode_input(body)
        del body
        result = await service.run_segment(
            served=served, first_block=first_block, last_block=last_block, array=array
        )
    link_s += await link.sending(len(result.body))
    log.debug("segment %s[%d..%d] for %s", model, first_block, last_block, invocation.get("sub"))
    headers = {
        "X-Compute-Seconds": f"{result.compute_s:.9f}",
        "X-Model-Digest": served.digest,
        "X-Output-Shape": "x".join(map(str, result.output_shape)),
        "X-Output-Dtype": result.output_dtype,
    }
    if link.profile is not None:
        headers["X-Emulated-Link-Seconds"] = f"{link_s:.9f}"
    return Response(content=result.body, media_type=MEDIA_TYPE, headers=headers)

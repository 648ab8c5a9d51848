"""Seed 001: ingestion-style job status at ``GET /api/v1/ingestion/job/{job_id}``.

Seed 001 lets any authenticated user read any job; here, as everywhere, only the job's owner
can, and another user's job is "Job not found".
"""

from __future__ import annotations

from litestar import get
from litestar.params import FromPath

from service.dependencies import PrincipalDep, ServicesDep
from service.errors import NotFound
from service.jobs import read_owned_job
from service.models import DocumentChunk
from service.routes.responses import OWNER_HIDDEN_ERRORS, error
from service.schemas import IngestionStatusOut, ingestion_status_out


@get(
    "/api/v1/ingestion/job/{job_id:str}",
    summary="Ingestion-style status of a job (seed 001)",
    description=(
        "`status` in seed 001's words (`running` for processing); `progress` counts pages and "
        "chunks; `errors` lists unreadable pages and the failure that ended the job, each with "
        "its stage; `stats` holds attempts and each finished stage's duration in seconds."
    ),
    tags=["ingestion"],
    security=[{"BearerToken": []}],
    opt={"error_prefix": "Failed to get job status"},
    responses={
        **OWNER_HIDDEN_ERRORS,
        404: error("Job not found (or not the caller's)"),
    },
)
async def ingestion_job_status(
    job_id: FromPath[str], principal: PrincipalDep, services: ServicesDep
) -> IngestionStatusOut:
    doc = await read_owned_job(services.readers.ingestion, job_id, principal.user_id)
    if doc is None:
        raise NotFound("Job not found")
    chunks_created = await DocumentChunk.get_pymongo_collection().count_documents(
        {"job_id": doc["job_id"]}
    )
    return ingestion_status_out(doc, chunks_created)

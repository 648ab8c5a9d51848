"""The ingestion-status contract: ``GET /api/v1/ingestion/job/{job_id}``.

That contract lets any authenticated user read any job; here, as everywhere, only the job's
owner can, and another user's job is "Job not found".
"""

from __future__ import annotations

from litestar import get
from litestar.params import FromPath

from service.api.http.dependencies import PrincipalDep, ServicesDep
from service.api.schemas.common import OWNER_HIDDEN_ERRORS, error
from service.api.schemas.ingestion import IngestionStatusOut, ingestion_status_out
from service.jobs.ingestion import ingestion_job


@get(
    "/api/v1/ingestion/job/{job_id:str}",
    summary="Ingestion-style status of a job",
    description=(
        "`status` in the ingestion contract's words (`running` for processing); `progress` "
        "counts pages and chunks; `errors` lists unreadable pages and the failure that ended the "
        "job, each with its stage; `stats` holds attempts and each finished stage's duration in "
        "seconds."
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
    doc, chunks_created = await ingestion_job(
        services, services.readers.ingestion, job_id, principal.user_id
    )
    return ingestion_status_out(doc, chunks_created)

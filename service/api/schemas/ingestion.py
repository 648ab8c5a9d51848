"""The ingestion-status contract's shape (``GET /api/v1/ingestion/job/{job_id}``), and the
mapping of a stored job onto it."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from service.api.schemas.common import Timestamp, iso_z, iso_z_or_none
from service.api.schemas.job_detail import JOB_DETAIL_FIELDS
from service.domain.job import JobStatus, finished_at
from service.domain.stages import Stage, StageStatus, stages_of
from service.store.documents import JobDoc

INGESTION_FIELDS: dict[str, int] = {
    **JOB_DETAIL_FIELDS,
    **dict.fromkeys(
        [
            "page_errors",
            "page_errors_total",
            "pages_total",
            "pages_processed",
            "pages_ocr",
            "attempts",
            "updated_at",
        ],
        1,
    ),
}


IngestionStatus = Literal["pending", "running", "completed", "failed", "cancelled"]


class PageErrorOut(msgspec.Struct, kw_only=True):
    page_number: int
    error: str


class IngestionProgressOut(msgspec.Struct, kw_only=True):
    pages_total: int
    pages_processed: int
    chunks_created: int
    errors: list[PageErrorOut]


class IngestionErrorOut(msgspec.Struct, kw_only=True):
    timestamp: Timestamp
    error: str
    stage: Stage


class IngestionStatusOut(msgspec.Struct, kw_only=True):
    """The ingestion status: ``GET /api/v1/ingestion/job/{job_id}``."""

    job_id: str
    status: IngestionStatus
    progress: IngestionProgressOut
    created_at: Timestamp
    started_at: Timestamp | None
    completed_at: Timestamp | None
    errors: list[IngestionErrorOut]
    stats: dict[str, float | int]
    # MuPDF had to rebuild a damaged file to read it: some pages may be blank or partial.
    repaired: bool = False


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds(), 3)


def ingestion_stats(doc: JobDoc) -> dict[str, float | int]:
    """Attempts, each finished stage's duration, and the whole run's duration and pace."""
    stats: dict[str, float | int] = {
        "attempts": int(doc.get("attempts", 0)),
        # Pages whose text was read from their image (scans).
        "ocr_pages": int(doc.get("pages_ocr") or 0),
    }
    for stage, state in stages_of(doc).items():
        seconds = _seconds(state.get("started_at"), state.get("finished_at"))
        if seconds is not None:
            stats[f"{stage.value}_seconds"] = seconds
    total = _seconds(doc.get("started_at"), finished_at(doc))
    if total is not None:
        stats["total_seconds"] = total
    extract = stats.get("extract_pages_seconds")
    if extract and doc.get("pages_processed"):
        stats["pages_per_second"] = round(doc["pages_processed"] / extract, 1)
    if total_errors := _pages_with_errors(doc):
        stats["pages_with_errors"] = total_errors
    return stats


def _pages_with_errors(doc: JobDoc) -> int:
    """Pages with an error or warnings, listed or not (jobs from before the count: listed)."""
    return max(int(doc.get("page_errors_total") or 0), len(doc.get("page_errors") or []))


def ingestion_errors(doc: JobDoc) -> list[IngestionErrorOut]:
    """Unreadable pages (the first few, then how many more), then the failure that ended the
    job, if it failed."""
    fallback = doc.get("updated_at") or doc["created_at"]
    listed = doc.get("page_errors") or []
    errors = [
        IngestionErrorOut(
            timestamp=iso_z(error.get("timestamp") or fallback),
            error=f"page {error['page_number']}: {error['error']}",
            stage=Stage.extract_pages,
        )
        for error in listed
    ]
    if (unlisted := _pages_with_errors(doc) - len(listed)) > 0:
        # The job lists the first few pages only (service/domain/lifecycle.py): say so.
        errors.append(
            IngestionErrorOut(
                timestamp=iso_z(fallback),
                error=f"{unlisted} more pages with errors or warnings are not listed "
                f"({_pages_with_errors(doc)} in all)",
                stage=Stage.extract_pages,
            )
        )
    if JobStatus(doc["status"]) is JobStatus.failed:
        stages = stages_of(doc)
        failed = [s for s, state in stages.items() if state.get("status") == StageStatus.failed]
        errors.append(
            IngestionErrorOut(
                timestamp=iso_z(doc.get("failed_at") or fallback),
                error=doc.get("error") or "PDF processing failed",
                stage=failed[0] if failed else Stage.download_pdf,
            )
        )
    return errors


def ingestion_status_out(doc: JobDoc, chunks_created: int) -> IngestionStatusOut:
    """Map a ``pdf_chapter_jobs`` document to the ingestion-status contract's shape."""
    status = JobStatus(doc["status"])
    return IngestionStatusOut(
        job_id=doc["job_id"],
        status="running" if status is JobStatus.processing else status.value,  # type: ignore[arg-type]
        progress=IngestionProgressOut(
            pages_total=int(doc.get("pages_total") or 0),
            pages_processed=int(doc.get("pages_processed") or 0),
            chunks_created=chunks_created,
            errors=[
                PageErrorOut(page_number=error["page_number"], error=error["error"])
                for error in doc.get("page_errors") or []
            ],
        ),
        created_at=iso_z(doc["created_at"]),
        started_at=iso_z_or_none(doc.get("started_at")),
        completed_at=iso_z_or_none(finished_at(doc)),
        errors=ingestion_errors(doc),
        stats=ingestion_stats(doc),
        repaired=bool(doc.get("repaired")),
    )

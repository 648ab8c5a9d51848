"""The stages of a PDF chapter job, as the worker records them on the job document.

    download_pdf   -> extract_pages -> create_chapter -> index_vectors

The job completes when its chapter is created: the reader never waits for the search index.
``index_vectors`` goes on after that, on the chapter's own schedule (its indexer's progress,
``service/domain/indexing.py``), so a completed job may show it pending or processing; a job that
fails or is cancelled shows it skipped or cancelled.

Each stage has a status (pending | processing | completed | failed | skipped | cancelled), a percent
and start/finish times, stored under ``stages.<name>`` so a progress write is one ``$set``. The
stages describe the current attempt: a claim starts them again. The job detail shows them as a list,
the ingestion status turns their times into ``stats``.

When a job ends early (failed, cancelled), ``finish_stages`` is the aggregation expression that
closes its open stages in the same atomic update that ends the job.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

Doc = dict[str, Any]


class Stage(StrEnum):
    download_pdf = "download_pdf"
    extract_pages = "extract_pages"
    create_chapter = "create_chapter"
    index_vectors = "index_vectors"


STAGES: tuple[Stage, ...] = tuple(Stage)


class StageStatus(StrEnum):
    pending = "pending"
    processing = "processing"
    completed = "completed"
    failed = "failed"
    skipped = "skipped"  # never reached: an earlier stage failed
    cancelled = "cancelled"


def stage_state(
    status: StageStatus = StageStatus.pending,
    percent: int = 0,
    started_at: datetime | None = None,
    finished_at: datetime | None = None,
) -> Doc:
    return {
        "status": status.value,
        "percent": percent,
        "started_at": started_at,
        "finished_at": finished_at,
    }


def initial_stages() -> Doc:
    """A new job: every stage pending."""
    return {stage.value: stage_state() for stage in STAGES}


def started_stages(now: datetime) -> Doc:
    """A claimed job: the download is under way, the rest waits (a retry starts over)."""
    stages = initial_stages()
    stages[Stage.download_pdf] = stage_state(StageStatus.processing, 0, started_at=now)
    return stages


def stage_fields(stage: Stage, status: StageStatus, now: datetime, percent: int) -> Doc:
    """``$set`` fields moving one stage to ``status`` (start or finish time recorded)."""
    prefix = f"stages.{stage.value}."
    fields: Doc = {prefix + "status": status.value, prefix + "percent": percent}
    if status is StageStatus.processing:
        fields[prefix + "started_at"] = now
    else:
        fields[prefix + "finished_at"] = now
    return fields


def stage_percent(stage: Stage, percent: int) -> Doc:
    return {f"stages.{stage.value}.percent": percent}


def finish_stages(transitions: dict[StageStatus, StageStatus], now: datetime | None = None) -> Doc:
    """Aggregation ``$set`` value for ``stages``: each stage in a ``transitions`` key moves on.

    E.g. ``{processing: failed, pending: skipped}`` when a job fails; ``now`` is recorded as the
    finish time of each stage moved. Stages in any other status (and a job written before stages
    existed) are left as they are.
    """
    expression: Doc = {}
    for stage in STAGES:
        # A job stored before stages existed starts from a pending stage, not from nothing.
        current = {"$ifNull": [f"$stages.{stage.value}", {"$literal": stage_state()}]}
        expression[stage.value] = {
            "$switch": {
                "branches": [
                    {
                        "case": {
                            "$eq": [
                                {"$getField": {"field": "status", "input": current}},
                                before.value,
                            ]
                        },
                        "then": {
                            "$mergeObjects": [
                                current,
                                {"status": {"$literal": after.value}}
                                if now is None
                                else {"status": {"$literal": after.value}, "finished_at": now},
                            ]
                        },
                    }
                    for before, after in transitions.items()
                ],
                "default": current,
            }
        }
    return expression


def stages_of(doc: Mapping[str, Any]) -> dict[Stage, Doc]:
    """The job's stages in order; a job stored before stages existed shows them pending."""
    stored = doc.get("stages") or {}
    return {stage: stored.get(stage.value) or stage_state() for stage in STAGES}

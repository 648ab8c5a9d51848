"""The caller's job: one lookup for every contract, with what another user's job looks like as a
parameter.

Some contracts answer another user's job with 403 (the book-jobs contract: the id is a UUID
nobody guesses, and "it is not yours" helps its owner's support), others with the same 404 as an
unknown id (the generic job router, the ingestion status, the chunk listing: ids are not to be
probed). Each contract also words its 404 its own way, so the error is passed in too.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

from service.domain.errors import AccessDenied, JobNotFound, ServiceError
from service.domain.job import canonical_id
from service.store.documents import JobDoc
from service.store.jobs import JobStore
from service.store.reader import JobReader


class Others(StrEnum):
    """What another user's job is to the caller."""

    forbid = "forbid"  # 403 AccessDenied
    hide = "hide"  # the same 404 as an unknown job


async def caller_job(
    raw_job_id: str,
    user_id: str,
    *,
    jobs: JobStore | None = None,
    fields: dict[str, int] | None = None,
    reader: JobReader | None = None,
    others: Others,
    missing: Callable[[str], ServiceError] = JobNotFound,
    malformed: Callable[[str], ServiceError] | None = None,
) -> JobDoc:
    """The caller's job, read with ``fields`` from ``jobs``, or through ``reader`` (the polled
    views: coalesced with the other polls in flight).

    An id that is not a UUID raises ``malformed(raw_job_id)`` (default: ``missing``); an unknown
    job ``missing(canonical id)``; another user's job ``AccessDenied`` or ``missing``, as
    ``others`` says.
    """
    job_id = canonical_id(raw_job_id)
    if job_id is None:
        raise (malformed or missing)(raw_job_id)
    if reader is not None:
        doc = await reader.read(job_id)
    elif jobs is not None:
        doc = await jobs.get(job_id, {**(fields or {}), "job_id": 1, "user_id": 1})
    else:
        raise TypeError("caller_job reads through a JobStore or a JobReader")
    if doc is None:
        raise missing(job_id)
    if doc["user_id"] != user_id:
        if others is Others.forbid:
            raise AccessDenied
        raise missing(job_id)
    return doc

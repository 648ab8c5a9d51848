"""What the app holds for its lifetime: clients created in the lifespan, read by handlers."""

from __future__ import annotations

from dataclasses import dataclass

from service.auth.tokens import TokenVerifier
from service.jobs.context import Context
from service.store.reader import JobReader


@dataclass(frozen=True, slots=True)
class JobReaders:
    """One coalesced reader per polled view, each with its contract's projection."""

    status: JobReader  # the book-jobs poll
    detail: JobReader  # the job detail with stages
    ingestion: JobReader  # the ingestion status

    async def aclose(self) -> None:
        for reader in (self.status, self.detail, self.ingestion):
            await reader.aclose()


@dataclass(kw_only=True)
class Services(Context):
    """Shared clients of one API process, stored as ``app.state.services``: the use cases'
    ``Context``, plus the token verifier and the polled views' readers."""

    verifier: TokenVerifier
    readers: JobReaders

"""The event stream's ids: what a client has seen of a job, so that a reconnect (``EventSource``
sends the last id as ``Last-Event-ID``) sends only the rest. Pure.

    7            the job's state at version 7, and no page: every id before pages were counted
                 meant this, and such a client is sent every stored page, as it always was
    7.12         version 7, and pages 1 to 12
    7.12+15+16   ... and pages 15 and 16 besides (pages are stored a little out of order)

Every event carries the id of everything sent so far on its stream, a state event as a page
event. At most ``MAX_EXTRAS`` pages are listed past the contiguous ones; a page beyond them is
sent again after a reconnect, which a client ignores (pages are identified by ``page_number``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_EXTRAS = 32
_ID = re.compile(rf"(\d{{1,18}})(?:\.(\d{{1,6}})((?:\+\d{{1,6}}){{0,{MAX_EXTRAS}}}))?")


@dataclass(slots=True)
class Seen:
    """A job's version and the pages a client has seen (page numbers, from 1)."""

    version: int = 0
    through: int = 0  # pages 1 to ``through``, every one
    extras: set[int] = field(default_factory=set)  # and these, past ``through + 1``

    def __contains__(self, page: int) -> bool:
        return page <= self.through or page in self.extras

    def add(self, page: int) -> None:
        """``page`` was sent."""
        if page in self:
            return
        self.extras.add(page)
        while self.through + 1 in self.extras:
            self.through += 1
            self.extras.discard(self.through)

    def event_id(self) -> str:
        """The id of an event sent now: ``7``, ``7.12`` or ``7.12+15+16``."""
        if not self.through and not self.extras:
            return str(self.version)
        listed = "".join(f"+{page}" for page in sorted(self.extras)[:MAX_EXTRAS])
        return f"{self.version}.{self.through}{listed}"


def parse_event_id(raw: str) -> Seen:
    """What an id this stream sent says the client has seen; ``ValueError`` for anything else."""
    match = _ID.fullmatch(raw)
    if match is None:
        raise ValueError("not an event id of this stream")
    version, through, extras = match.groups()
    seen = Seen(int(version), int(through or 0))
    for page in (extras or "").split("+")[1:]:
        seen.add(int(page))
    return seen

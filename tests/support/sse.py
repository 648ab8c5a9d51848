"""Reading ``text/event-stream`` responses in tests, as a browser's EventSource parses them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

WAIT_S = 20  # a bound on waiting for one event: a missing event fails the test, never hangs it


@dataclass
class ServerEvent:
    """One block of the stream (fields up to a blank line)."""

    event: str | None = None
    data: str | None = None
    id: str | None = None
    retry: int | None = None
    comment: str | None = None

    def json(self) -> Any:
        assert self.data is not None
        return json.loads(self.data)


async def _blocks(response: httpx.Response) -> AsyncIterator[ServerEvent]:
    block, filled = ServerEvent(), False
    async for line in response.aiter_lines():
        if line == "":
            if filled:
                yield block
            block, filled = ServerEvent(), False
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "":
            block.comment = value
        elif name == "data":
            block.data = value if block.data is None else f"{block.data}\n{value}"
        elif name in ("event", "id"):
            setattr(block, name, value)
        elif name == "retry":
            block.retry = int(value)
        filled = True
    if filled:
        yield block


class EventReader:
    """``await reader.next()``: the next event, skipping comments and ``retry:`` blocks (None at
    the end of the stream); ``reader.seen`` holds every block read, comments included."""

    def __init__(self, response: httpx.Response) -> None:
        self._blocks = _blocks(response)
        self.seen: list[ServerEvent] = []

    async def block(self) -> ServerEvent | None:
        try:
            block = await asyncio.wait_for(anext(self._blocks), WAIT_S)
        except StopAsyncIteration:
            return None
        self.seen.append(block)
        return block

    async def next(self) -> ServerEvent | None:
        while (block := await self.block()) is not None:
            if block.data is not None:
                return block
        return None

    async def rest(self) -> list[ServerEvent]:
        """Every event until the stream ends."""
        events = []
        while (event := await self.next()) is not None:
            events.append(event)
        return events

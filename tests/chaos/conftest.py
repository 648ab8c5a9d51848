"""The chaos tests' deployment: each test gets its own, closed whatever happened."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.chaos.stack import Stack


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    deployment = Stack(tmp_path)
    try:
        yield deployment
    finally:
        await deployment.close()

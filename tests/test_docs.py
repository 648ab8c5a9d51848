"""The documents tell the truth about the repository.

- The settings table in ``docs/configuration.md`` names every setting the service reads, and
  nothing else.
"""

from __future__ import annotations

import re

from service.settings import Settings
from tests.conftest import REPO_ROOT

CONFIGURATION = "docs/configuration.md"


def test_every_setting_has_a_row_in_the_configuration_table():
    manual = (REPO_ROOT / CONFIGURATION).read_text()
    rows = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", manual, re.MULTILINE))

    settings = {name.upper() for name in Settings.model_fields}

    assert settings - rows == set(), f"settings missing from the table in {CONFIGURATION}"
    assert rows - settings == set(), f"rows in {CONFIGURATION} for settings that do not exist"

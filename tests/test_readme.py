"""The README's settings table names every setting the service reads, and nothing else."""

from __future__ import annotations

import re

from service.settings import Settings
from tests.conftest import REPO_ROOT


def test_every_setting_has_a_row_in_the_readme_table():
    readme = (REPO_ROOT / "README.md").read_text()
    rows = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", readme, re.MULTILINE))

    settings = {name.upper() for name in Settings.model_fields}

    assert settings - rows == set(), "settings missing from the README table"
    assert rows - settings == set(), "README rows for settings that do not exist"

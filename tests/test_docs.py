"""The README and docs/ as a reader meets them: the configuration table is the settings the
code reads."""

from __future__ import annotations

import re
from pathlib import Path

from onboarding.core.config import Settings

ROOT = Path(__file__).resolve().parent.parent


def test_the_configuration_table_is_the_settings():
    table = (ROOT / "docs" / "configuration.md").read_text()
    named = {name for row in re.findall(r"^\| ([^|]+) \|", table, re.M)
             for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row)}
    assert named == {name.upper() for name in Settings.model_fields}

"""The README and docs/ as a reader meets them: the README stays a front door (under 20 KB),
every link between the pages leads to a file and a heading that exist, and the configuration
table is the settings the code reads. The decision tables are checked in test_decisions.py,
the cluster's command in test_compose.py; the commands are run by test_readme_walkthrough.py
and test_readme_guarantees.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from onboarding.core.config import Settings

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, ROOT / "bench" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def test_the_readme_stays_under_20_kb():
    assert len(README.read_bytes()) < 20_000


def anchors(page: Path) -> set[str]:
    """The anchors the forge gives the page's headings (outside code blocks)."""
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)
    return {re.sub(r"[^\w\- ]", "", heading.replace("`", "").strip().lower()).replace(" ", "-")
            for heading in re.findall(r"^#+ (.*)$", text, re.M)}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_leads_to_a_file_and_heading_that_exist(page):
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # http(s): and the like
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name} links to {target}: no such file"
        if anchor:
            assert anchor in anchors(linked), f"{page.name} links to {target}: no such heading"


def test_the_configuration_table_is_the_settings():
    table = (ROOT / "docs" / "configuration.md").read_text()
    named = {name for row in re.findall(r"^\| ([^|]+) \|", table, re.M)
             for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row)}
    assert named == {name.upper() for name in Settings.model_fields}


def test_the_readme_keeps_the_guarantees_and_links_to_their_trial():
    text = README.read_text()
    section = text[text.index("\n## What the platform guarantees"):]
    section = section[:section.index("\n## ", 1)]
    assert "(docs/guarantees.md)" in section

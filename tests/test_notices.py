"""Notice templates: every notice exists in Korean and English with the same placeholders."""

from __future__ import annotations

import re

import pytest

from onboarding.notices import TEMPLATES, render


def placeholders(text: str) -> set[str]:
    # As string.Template reads them: ASCII names, so "$days일" is $days.
    return set(re.findall(r"\$([_a-z][_a-z0-9]*)", text, re.ASCII | re.IGNORECASE))


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_both_languages_take_the_same_placeholders_and_render(name):
    ko, en = TEMPLATES[name]["ko"], TEMPLATES[name]["en"]
    assert placeholders(" ".join(ko)) == placeholders(" ".join(en))
    context = {p: f"<{p}>" for p in placeholders(" ".join(en))}
    for language in ("ko", "en"):
        subject, body = render(name, language, context)
        assert "$" not in subject + body
        assert all(value in subject + body for value in context.values())


def test_a_missing_placeholder_is_an_error_not_a_blank():
    with pytest.raises(KeyError):
        render("api_key_delivery", "en", {"application_id": "x"})

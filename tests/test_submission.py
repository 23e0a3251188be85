"""Submission: bad input is refused naming the field and the rule, and nothing starts."""

from __future__ import annotations

import asyncio
import json

import pytest

import starter
from onboarding.domain.admission import (
    SubmissionRefused,
    application_id_for,
    prepare_subscription,
)
from tests.support import data


def refusal_rules(err: SubmissionRefused) -> dict[str, str]:
    return {r.field: r.rule for r in err.refusals}


def test_a_corporation_is_accepted_and_its_numbers_normalised(plain_settings):
    form = data.subscription_form(business_registration_number="124-81-00998",
                                      corporate_registration_number="110111-0062432")
    app = prepare_subscription(form, plain_settings)
    assert app.organisation.business_registration_number == "1248100998"
    assert app.organisation.corporate_registration_number == "1101110062432"
    assert app.application_id == application_id_for("1248100998", form["service"]["name"])
    assert app.deadlines.remind_after_days == plain_settings.remind_after_days


@pytest.mark.parametrize(
    ("number", "rule"),
    [
        ("123-45-67890", "check_digit"),       # individual's layout, wrong check digit
        ("124-81-00999", "check_digit"),
        ("123-12-34562", "corporations_only"),  # a sole proprietor: valid digits, type 12
        ("116-82-00276", "non_profit"),
        ("12-345", "format"),
    ],
)
def test_a_business_registration_number_that_is_not_a_corporations_is_refused(
        plain_settings, number, rule):
    with pytest.raises(SubmissionRefused) as refused:
        prepare_subscription(data.subscription_form(business_registration_number=number),
                             plain_settings)
    assert refusal_rules(refused.value) == {"organisation.business_registration_number": rule}
    assert "organisation.business_registration_number" in str(refused.value)


def test_a_sole_proprietor_is_told_the_platform_is_for_corporations_only(plain_settings):
    with pytest.raises(SubmissionRefused) as refused:
        prepare_subscription(
            data.subscription_form(business_registration_number="123-12-34562"), plain_settings)
    assert "corporations only" in str(refused.value)


def test_a_corporate_number_with_a_bad_check_digit_is_flagged_for_the_reviewer_not_refused(
        plain_settings):
    app = prepare_subscription(
        data.subscription_form(corporate_registration_number="130111-0006245"), plain_settings)
    assert app.reviewer_flags, "the eligibility reviewer must see the failed check digit"


def test_every_broken_field_is_named_at_once(plain_settings):
    form = data.subscription_form(contact_emails=["not-an-address"])
    form["requested_apis"] = []
    del form["service"]["expected_launch"]
    with pytest.raises(SubmissionRefused) as refused:
        prepare_subscription(form, plain_settings)
    assert set(refusal_rules(refused.value)) == {
        "organisation.contact_emails.0", "requested_apis", "service.expected_launch"}


def test_an_unknown_field_is_refused_by_name(plain_settings):
    form = data.subscription_form()
    form["servcie"] = {}
    with pytest.raises(SubmissionRefused) as refused:
        prepare_subscription(form, plain_settings)
    assert "servcie" in refusal_rules(refused.value)


async def test_apis_not_in_the_catalogue_are_named(settings, pool):
    app = prepare_subscription(
        data.subscription_form(apis=["account-balance", "crypto-casino", "moon-prices"]),
        settings)
    with pytest.raises(SubmissionRefused) as refused:
        await starter.check_catalogue(pool, app)
    assert "crypto-casino, moon-prices" in str(refused.value)
    assert refusal_rules(refused.value) == {"requested_apis": "not_in_catalogue"}


def test_the_same_organisation_and_service_is_the_same_application():
    assert application_id_for("1248100998", "Nuri  Robo-Advisor") == \
        application_id_for("1248100998", "nuri robo-advisor")
    assert application_id_for("1248100998", "a") != application_id_for("2208162517", "a")


async def test_the_starter_refuses_bad_input_and_starts_nothing(dev_server, settings, tmp_path,
                                                                capsys, monkeypatch):
    """`python starter.py` end to end: refusal on stderr, exit status 2, no workflow."""
    target = dev_server.client.service_client.config.target_host
    for name, value in {"TEMPORAL_ADDRESS": target,
                        "DATABASE_URL": settings.database_url.get_secret_value()}.items():
        monkeypatch.setenv(name, value)
    starter.get_settings.cache_clear()
    form = data.subscription_form(business_registration_number="123-12-34562")
    path = tmp_path / "application.json"
    path.write_text(json.dumps(form))

    code = await asyncio.to_thread(starter.main, ["subscription", str(path)])

    assert code == 2
    assert "corporations_only" in capsys.readouterr().err
    wf_id = application_id_for("1231234562", form["service"]["name"])
    listed = [w async for w in dev_server.client.list_workflows(f'WorkflowId = "{wf_id}"')]
    assert listed == []

    path.write_text("{not json")
    assert await asyncio.to_thread(starter.main, ["subscription", str(path)]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    starter.get_settings.cache_clear()


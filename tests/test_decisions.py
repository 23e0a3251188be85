"""The decision catalogue: its rules (pure), and everything made from it or checked against
it: the workflows' signals, updates and validators, the CLI's table, docs/decisions.md's tables."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError
from temporalio import workflow

from onboarding.cli.app import DECISIONS
from onboarding.domain import decisions
from onboarding.domain.decisions import CATALOGUES
from onboarding.domain.models import (
    PreVerificationDecision,
    ProductionSwitchDecision,
    Role,
)
from tests.support.data import CRITERIA_HOLD, contract, decision
from workflows.live_service import LiveServiceWorkflow
from workflows.publication import PublicationWorkflow
from workflows.subscription import SubscriptionWorkflow

# The tables of every decision, who takes it and what it carries.
DECISIONS_DOC = (Path(__file__).resolve().parent.parent / "docs" / "decisions.md").read_text()
WORKFLOWS = {"subscription": SubscriptionWorkflow, "publication": PublicationWorkflow,
             "live_service": LiveServiceWorkflow}


# --- the rules ---------------------------------------------------------------------------------


def refusal(decision_type, **fields) -> str | None:
    return decision_type.rule(decision_type.model.model_validate(decision("x@y.z", **fields)))


def test_pre_verification_approves_only_with_the_three_criteria_and_refuses_only_with_a_note():
    pv = decisions.PRE_VERIFICATION
    assert refusal(pv, verdict="approve", criteria=CRITERIA_HOLD) is None
    assert "all three must hold" in refusal(pv, verdict="approve")
    assert "all three must hold" in refusal(
        pv, verdict="approve", criteria={**CRITERIA_HOLD, "not_harmful_to_public_morals": False})
    assert refusal(pv, verdict="reject") == "reject needs a note saying why"
    assert refusal(pv, verdict="request_changes", note="why") is None


def test_contracts_are_required_where_a_decision_signs_one():
    assert "needs its contract" in refusal(decisions.MARKET_DATA_LICENCE, verdict="concluded")
    assert refusal(decisions.MARKET_DATA_LICENCE, verdict="concluded", contract=contract()) is None
    assert "eligibility review" in refusal(decisions.PLATFORM_CONTRACT, verdict="signed",
                                           contract=contract())
    assert "service contract" in refusal(decisions.PRODUCTION_SWITCH, verdict="approve")
    assert refusal(decisions.PRODUCTION_SWITCH, verdict="approve",
                   service_contract=contract()) is None
    assert refusal(decisions.SANDBOX_VERIFICATION, verdict="more_testing") == (
        "more_testing needs a note saying why")


def test_a_verdict_sent_as_stop_8_named_it_is_still_read():
    d = PreVerificationDecision.model_validate(decision("x@y.z", outcome="approve"))
    assert d.verdict == "approve" and "outcome" not in d.model_dump()
    with pytest.raises(ValidationError) as err:
        ProductionSwitchDecision.model_validate(decision("x@y.z", verdict="maybe"))
    assert err.value.errors()[0]["loc"] == ("verdict",)


def test_who_takes_what_four_eyes_and_what_ends_an_application():
    assert {d.name: d.taken_by for d in decisions.SUBSCRIPTION.values()} == {
        "pre_verification": Role.PRE_VERIFICATION_REVIEWER, "resubmit": Role.APPLICANT,
        "market_data_licence": Role.MARKET_DATA_SALES, "platform_contract": Role.PLATFORM_TEAM,
        "final_approval": Role.FINAL_APPROVER, "sandbox_testing_complete": Role.APPLICANT,
        "sandbox_verification": Role.PLATFORM_TEAM, "production_switch": Role.FINAL_APPROVER,
        "withdraw": Role.APPLICANT}
    assert [d.name for d in decisions.SUBSCRIPTION.values() if d.four_eyes] == [
        "final_approval", "production_switch"]
    assert all(d.four_eyes == "pre_verification" for d in decisions.SUBSCRIPTION.values()
               if d.four_eyes)
    for catalogue in (decisions.SUBSCRIPTION, decisions.PUBLICATION):
        assert [d.name for d in catalogue.values() if d.ends_application] == ["withdraw"]
    # A live service ends on a date, through its own termination, never by a withdrawal.
    assert not any(d.ends_application for d in decisions.LIVE_SERVICE.values())
    assert {d.name: d.four_eyes for d in decisions.LIVE_SERVICE.values() if d.four_eyes} == {
        "reinstate": "suspend", "change_approval": "change_review"}


def test_an_api_retirement_starts_with_a_decision_the_codec_server_seals():
    """`retire_api` is no process's signal: it is the input that starts `ApiRetirement`,
    found by the workflow id's prefix, taken by a contact of the provider; nowhere else."""
    from onboarding.identity.attestation import Sealer, new_sealing_key, sealing_keys
    from tests.support.sealing import person

    assert decisions.decision_type("api-retirement-yields", "retire_api") is decisions.RETIRE_API
    assert decisions.decision_type("api-retirement-yields", "withdraw") is None
    assert decisions.decision_type("subscription-1248100998-aea1a1bdff67", "retire_api") is None
    assert decisions.RETIRE_API.taken_by is Role.APPLICANT
    assert all("retire_api" not in c for c in CATALOGUES.values())
    sealer = Sealer(sealing_keys(new_sealing_key("k")[0]))
    sealed = sealer.seal_decision(person("bank@member.example.com"), {
        "application_id": "api-retirement-yields", "decision": "retire_api",
        "decision_id": "r-1", "api_id": "yields", "retired_on": "2027-06-01"})
    assert sealed["attestation"] and sealed["api_id"] == "yields"
    with pytest.raises(Exception, match="retired_on"):  # malformed: refused, not sealed
        sealer.seal_decision(person("bank@member.example.com"), {
            "application_id": "api-retirement-yields", "decision": "retire_api",
            "decision_id": "r-2", "api_id": "yields", "retired_on": "soon"})


def test_a_step_and_a_decision_share_a_name_only_when_they_are_the_same_thing():
    """In publications the step api_test_review takes the decision api_test_review; the step
    api_testing takes api_test_report (stop 8 had it the other way round)."""
    from workflows.publication import Step

    assert "api_testing" not in decisions.PUBLICATION
    assert Step.API_TEST_REVIEW == decisions.API_TEST_REVIEW.name
    assert Step.API_TESTING != decisions.API_TEST_REPORT.name


# --- what is made from the catalogue ------------------------------------------------------------


@pytest.mark.parametrize("process", list(CATALOGUES))
def test_every_decision_is_a_signal_and_an_update_described_as_in_the_catalogue(process):
    definition = workflow._Definition.must_from_class(WORKFLOWS[process])
    for name, d in CATALOGUES[process].items():
        assert definition.signals[name].description == d.description, name
        update = definition.updates[name]
        assert update.description == d.description, name
        assert update.validator is not None, name
        assert update.arg_types == [d.model], name
    assert None in definition.signals and None in definition.updates  # the dynamic ones
    assert "status" in definition.queries


def test_the_clis_table_is_the_catalogues_decisions_people_take():
    for process, catalogue in CATALOGUES.items():
        assert DECISIONS[process] == {n: d.model for n, d in catalogue.items()
                                      if d.taken_by is not Role.PLATFORM_WORKFLOW}


def section(heading: str) -> str:
    """The text of docs/decisions.md's section `heading`, up to the next one."""
    text = DECISIONS_DOC[DECISIONS_DOC.index(f"\n{heading}\n"):]
    end = text.find("\n## ", 1)
    return text if end < 0 else text[:end]


def decision_table(heading: str) -> list[tuple[str, str]]:
    """The (decision, who) rows of the section's decision table."""
    return [(name, who.strip())
            for name, who in re.findall(r"^\| `(\w+)` \| ([^|]+) \|", section(heading), re.M)]


ROLE_WORDS = {"applicant": Role.APPLICANT, "provider": Role.APPLICANT,
              "a subscription workflow": Role.PLATFORM_WORKFLOW}


@pytest.mark.parametrize("process,heading", [("subscription", "## A subscription's decisions"),
                                             ("publication", "## A publication's decisions")])
def test_the_docs_tables_list_the_catalogue_with_who_takes_each(process, heading):
    catalogue = CATALOGUES[process]
    rows = decision_table(heading)
    assert sorted(name for name, _ in rows) == sorted(catalogue)
    for name, who in rows:
        role = ROLE_WORDS.get(who) or Role(re.match(r"`(\w+)`", who)[1])
        assert role is catalogue[name].taken_by, (name, who)
        assert ("not the pre-verification reviewer" in who) == bool(catalogue[name].four_eyes)


@pytest.mark.parametrize("process,heading", [("subscription", "## A subscription's decisions"),
                                             ("publication", "## A publication's decisions")])
def test_every_field_the_docs_name_is_a_field_or_verdict_of_the_decision(process, heading):
    for name, _who, payload in re.findall(r"^\| `(\w+)` \| ([^|]+) \| (.*) \|$", section(heading),
                                          re.M):
        model = CATALOGUES[process][name].model
        fields = set(model.model_fields)
        words = set(model.model_fields["verdict"].annotation.__args__) \
            if "verdict" in fields else set()
        nested = {"name", "description", "expected_launch"}  # a service plan's fields
        for named in re.findall(r"`(\w+)`", payload):
            assert named in fields | words | nested, (name, named)

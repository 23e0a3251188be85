"""The process's logic on the time-skipping server, with its activities stood in for in memory
(tests/support/fakes.py): what a workflow commits, when, and what it never writes. The quick
layer: no PostgreSQL, no SMTP. The same procedures against the real record and mail:
test_subscription.py, test_publication.py."""

from __future__ import annotations

import uuid

from temporalio.api.sdk.v1 import WorkflowMetadata

from onboarding.domain.admission import prepare_publication
from onboarding.domain.decisions import CATALOGUES
from tests.support import data, drive
from tests.support.data import PLATFORM, REVIEWER, SALES, applicant, contract, decision
from tests.support.drive import approval, by_id
from tests.support.logic import logic  # noqa: F401 - the fixture


async def test_every_decision_is_listed_as_a_signal_and_an_update_with_its_description(logic):
    """What the Web UI lists: the workflow's metadata query."""
    subscription = await logic.start(logic.subscription(["account-balance"]))
    publication = await logic.start(prepare_publication(
        data.publication_form(f"api-{uuid.uuid4().hex[:8]}"), logic.settings))
    for process, handle in (("subscription", subscription), ("publication", publication)):
        await drive.wait_for_step(handle, "pre_verification" if process == "subscription"
                                  else "pre_review")
        metadata = await handle.query("__temporal_workflow_metadata",
                                      result_type=WorkflowMetadata)
        signals = {s.name: s.description for s in metadata.definition.signal_definitions}
        updates = {u.name: u.description for u in metadata.definition.update_definitions}
        for name, d in CATALOGUES[process].items():
            assert signals[name] == d.description, (process, name)
            assert updates[name] == d.description, (process, name)
        assert "status" in {q.name for q in metadata.definition.query_definitions}


async def test_a_refused_licence_decision_writes_nothing_but_its_refusal(logic):
    """Refused for its sender, for its contract number, for its step: no contract is recorded
    for any of them; the one applied records its own."""
    application = logic.subscription(["stock-quotes"])
    app_id = application.application_id
    handle = await logic.start(application)
    await drive.drive_to(handle, application, "market_data_licence", licence=True)
    taken = contract("MD-TAKEN")
    logic.stand_ins.contract_numbers_taken.add(taken["contract_number"])
    refused = [
        decision(PLATFORM, verdict="concluded", contract=contract()),  # not the role
        decision(SALES, verdict="concluded", contract=taken),  # another application's number
        decision(SALES, verdict="concluded"),  # no contract: the rule
    ]
    for d in refused:
        await handle.signal("market_data_licence", d)
    await handle.signal("platform_contract", decision(  # not this step's
        PLATFORM, verdict="signed", eligibility_confirmed=True, contract=contract()))
    applied = decision(SALES, verdict="concluded", contract=contract("MD-OK"))
    await handle.signal("market_data_licence", applied)
    status = await drive.wait_for_step(handle, "platform_contract")

    seen = by_id(status)
    assert [seen[d["decision_id"]].applied for d in refused] == [False, False, False]
    assert "does not hold the role market_data_sales" in seen[refused[0]["decision_id"]].reason
    assert "already recorded for another application" in seen[refused[1]["decision_id"]].reason
    assert seen[applied["decision_id"]].applied
    await handle.signal("withdraw", decision(applicant(application)))
    await drive.result(handle)
    contracts = [e.terms.contract_number for e in logic.stand_ins.entries(app_id, "contract")]
    assert contracts == ["MD-OK"]
    audited = [(e.action, e.result) for e in logic.stand_ins.entries(app_id, "audit")
               if e.action in ("market_data_licence", "platform_contract")]
    assert audited == [("market_data_licence", "refused")] * 3 + [
        ("platform_contract", "refused"), ("market_data_licence", "applied")]


async def test_a_lifecycle_commits_once_for_each_wait_and_once_at_its_end(logic):
    """What a subscription writes, and when: one commit on entering each step that waits on a
    person, one at the end; each decision's effects in the commit that follows it."""
    application = logic.subscription(["account-balance"])
    app_id = application.application_id
    handle = await logic.start(application)
    await drive.drive_to(handle, application, "production_switch")
    await handle.signal(*approval("production_switch", application))
    status = await drive.result(handle)
    assert status.outcome == "in_production"

    commits = [c for c in logic.stand_ins.commits if c.workflow_id == app_id]
    # The production key is committed before the live service reads what the service holds.
    steps = ["pre_verification", "platform_contract", "final_approval", "sandbox_testing",
             "sandbox_verification", "production_switch", "production_switch", "in_production"]
    assert [c.step for c in commits] == steps
    assert commits[-1].status == "in_production"
    assert [e.entry for e in commits[0].entries] == ["application", "audit", "notice", "audit"]

    def effects(commit) -> list[str]:
        return [e.entry if e.entry != "audit" else e.action for e in commit.entries]

    assert effects(commits[3]) == ["final_approval", "key", "notice", "step_entered"]
    assert effects(commits[-2]) == ["production_switch", "contract", "key"]
    assert effects(commits[-1]) == ["notice", "notice", "live_service_handed_over",
                                    "step_entered", "application_closed"]
    assert {k.environment for k in status.keys} == {"sandbox", "production"}
    # Entry numbers run on across commits, in the order the workflow wrote them.
    seqs = [e.seq for c in commits for e in c.entries]
    assert seqs == list(range(len(seqs)))


async def test_a_publication_whose_api_id_was_taken_ends_rejected_and_tells_nobody(logic):
    api_id = f"api-{uuid.uuid4().hex[:8]}"
    application = prepare_publication(data.publication_form(api_id), logic.settings)
    provider = str(application.organisation.contact_emails[0])
    logic.stand_ins.api_ids_taken.add(api_id)
    handle = await logic.start(application)
    await drive.signal_at(handle, "pre_review", "pre_review", decision(PLATFORM, verdict="approve"))
    await drive.signal_at(handle, "api_testing", "api_test_report",
                          decision(provider, results="ok"))
    await drive.signal_at(handle, "api_test_review", "api_test_review",
                          decision(PLATFORM, verdict="approve"))
    status = await drive.result(handle)

    assert (status.outcome, status.step) == ("rejected", "rejected")
    notices = [e.notice.notice_id.split("/", 1)[1]
               for e in logic.stand_ins.entries(application.application_id, "notice")]
    assert notices == ["received", "rejected"]
    assert not logic.stand_ins.entries(application.application_id, "withdrawal")


async def test_four_eyes_and_the_status_say_who_may_decide_now(logic):
    application = logic.subscription(["account-balance"])
    handle = await logic.start(application)
    await drive.signal_at(handle, "pre_verification", "pre_verification", decision(
        data.REVIEWER_AND_APPROVER, verdict="approve", criteria=data.CRITERIA_HOLD))
    await drive.drive_to(handle, application, "final_approval")
    own = decision(data.REVIEWER_AND_APPROVER, verdict="approve")
    await handle.signal("final_approval", own)
    status = await drive.decisions_recorded(handle, 3)
    assert "four eyes" in by_id(status)[own["decision_id"]].reason
    assert (status.step, status.takes) == ("final_approval", ["final_approval"])
    await handle.signal("withdraw", decision(applicant(application)))
    ended = await drive.result(handle)
    assert ended.outcome == "withdrawn" and ended.takes == [] and REVIEWER not in [
        d.decided_by for d in ended.decisions]

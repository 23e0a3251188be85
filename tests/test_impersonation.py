"""Taking someone else's decision, tried as an outsider would, against real servers: the dev
identity provider, the codec server, Temporal's dev server, a worker, PostgreSQL.

Decisions go the ways people send them: with an access token to the codec server, which seals
them for the token's holder (what the Web UI, the `temporal` CLI, the reviewer CLI and programs
do; here a client whose payload codec is the codec server, as the reviewer CLI's is), or
straight to Temporal, encrypted with the payload keys and sealed by nobody (any client of the
namespace, any holder of PAYLOAD_ENCRYPTION_KEYS). Whatever is refused is refused on the
record, with the reason (docs/identity.md).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
import dataclasses
from dataclasses import dataclass

import asyncpg
import jwt
import pytest
from pydantic import SecretStr
from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.common import RawValue
from temporalio.worker import Replayer

from activities.decisions import DecisionCheck, Verification
from activities.verification import Verifications
from onboarding.domain.models import DecisionReceipt
from onboarding.domain.state import REFUSALS_PER_SENDER_PER_HOUR
from onboarding.identity.attestation import new_sealing_key
from onboarding.identity.models import IdentityRef
from onboarding.services.codec_server import start_codec_server
from onboarding.store import identities
from onboarding.temporal.codec import (
    CodecServerClient,
    PayloadEncryptionError,
    data_converter,
    payload_encryption,
)
from tests.support import data, drive, identity
from tests.support.data import (
    APPROVER,
    CRITERIA_HOLD,
    PLATFORM,
    REVIEWER,
    REVIEWER_AND_APPROVER,
    SALES,
    contract,
)
from tests.support.eventually import eventually
from tests.support.net import free_port
from tests.support.records import audit
from tests.support.sealing import unsealed
from tests.support.stand_ins import with_stand_ins
from worker import WORKFLOW_RUNNER, WORKFLOWS, running


@dataclass
class Platform:
    client: Client  # the tests' own (it seals as typed): to start applications, ask status
    settings: object
    codec: str  # the codec server's URL
    provider: identity.TestIdentityProvider
    organisations: dict[str, str] = dataclasses.field(default_factory=dict)  # by application

    @property
    def raw(self) -> Client:
        """Any client of the namespace holding the payload keys: no seal."""
        return unsealed(self.client)

    def holding(self, token: str, codec: str | None = None) -> Client:
        """A client sending through the codec server with `token`, as the reviewer CLI does."""
        sealing = CodecServerClient(codec or self.codec, token)
        return Client(**{**self.client.config(), "interceptors": [],
                         "data_converter": data_converter(self.settings, codec=sealing)})

    async def as_person(self, email: str) -> Client:
        return self.holding(await self.provider.access_token(email))

    async def start(self, step: str = "pre_verification") -> WorkflowHandle:
        application = data.new_application(self.settings, ["account-balance"])
        handle = await drive.start(self.client, self.settings, self.settings.temporal_task_queue,
                                   application)
        self.organisations[handle.id] = application.organisation.business_registration_number
        await drive.wait_for_step(handle, step)
        return handle


def pre_verification(application_id: str, by: str | None = REVIEWER, **fields) -> dict:
    return {"application_id": application_id, "decision": "pre_verification",
            "decision_id": uuid.uuid4().hex, "verdict": "approve", "criteria": CRITERIA_HOLD,
            **({"decided_by": by} if by else {}), **fields}


def decided(application_id: str, name: str, **fields) -> dict:
    return {"application_id": application_id, "decision": name,
            "decision_id": uuid.uuid4().hex, **fields}


@pytest.fixture
async def platform(dev_server, run_worker, settings, roster, identity_provider, codec_server,
                   task_queue) -> AsyncIterator[Platform]:
    async with run_worker(dev_server.client):
        yield Platform(dev_server.client,
                       settings.model_copy(update={"temporal_task_queue": task_queue}),
                       codec_server, identity_provider)


async def sent_payload(handle: WorkflowHandle, settings, index: int = 0) -> dict:
    """The `index`th decision signalled to `handle`, as the history keeps it, decrypted."""
    history = await handle.fetch_history()
    signals = [e.workflow_execution_signaled_event_attributes for e in history.events
               if e.HasField("workflow_execution_signaled_event_attributes")]
    payload, = await payload_encryption(settings).decode(list(signals[index].input.payloads))
    return json.loads(payload.data)


async def test_a_typed_address_without_a_seal_is_refused_on_the_record(platform, pool):
    handle = await platform.start()
    raw = platform.raw.get_workflow_handle(handle.id)

    await raw.signal("pre_verification", pre_verification(handle.id))
    receipt = await raw.execute_update("pre_verification", pre_verification(handle.id),
                                       result_type=DecisionReceipt)
    # The same person, signed in, but typing another's address.
    reviewer = (await platform.as_person(REVIEWER)).get_workflow_handle(handle.id)
    await reviewer.signal("pre_verification", pre_verification(handle.id, by=APPROVER))
    status = await drive.decisions_recorded(handle, 3)

    async def on_record() -> list:
        rows = [r for r in await audit(pool, handle.id) if r["action"] == "pre_verification"]
        assert len(rows) == 3
        return rows

    rows = await eventually(on_record, what="the refusals on the record")

    assert not receipt.applied and receipt.reason == "identity not verified"
    assert [(d.applied, d.reason, d.decided_by) for d in status.decisions] == [
        (False, "identity not verified", f"{REVIEWER} (not verified)"),
        (False, "identity not verified", f"{REVIEWER} (not verified)"),
        (False, f"decided_by {APPROVER} is not the verified identity ({REVIEWER})", REVIEWER)]
    assert status.step == "pre_verification" and status.takes == ["pre_verification"]
    assert [(r["actor"], r["result"], r["reason"]) for r in rows][:2] == [
        (f"{REVIEWER} (not verified)", "refused", "identity not verified")] * 2


async def test_typing_someones_address_uses_up_the_claims_allowance_of_refusals_not_theirs(
        platform, pool):
    """Past a sender's rate, refusals are counted rather than journaled one by one
    (onboarding/domain/state.py). The sender is the verified identity when a seal held, else
    the claim: a flood typed in another's name, or sent signed in as someone else, leaves the
    named person's own refusals on the record one by one."""
    handle = await platform.start()
    raw = platform.raw.get_workflow_handle(handle.id)
    for _ in range(REFUSALS_PER_SENDER_PER_HOUR + 3):  # nobody's seal, SALES typed
        await raw.signal("pre_verification", pre_verification(handle.id, by=SALES))
    reviewer = (await platform.as_person(REVIEWER)).get_workflow_handle(handle.id)
    await reviewer.signal("pre_verification", pre_verification(handle.id, by=SALES))
    sales = (await platform.as_person(SALES)).get_workflow_handle(handle.id)
    own = await sales.execute_update("pre_verification", pre_verification(handle.id, by=None),
                                     result_type=DecisionReceipt)

    async def on_record() -> list:
        rows = [r for r in await audit(pool, handle.id) if r["result"] == "refused"]
        assert any(r["action"] == "refusals_dropped" for r in rows)
        assert any(r["reason"] == own.reason for r in rows)  # refusals are written in batches
        return rows

    assert not own.applied and "does not hold the role" in own.reason
    rows = await eventually(on_record, what="the refusals and the count on the record")

    one_by_one = [(r["actor"], r["reason"]) for r in rows if r["action"] == "pre_verification"]
    assert one_by_one == [(f"{SALES} (not verified)", "identity not verified")] * \
        REFUSALS_PER_SENDER_PER_HOUR + [
        (REVIEWER, f"decided_by {SALES} is not the verified identity ({REVIEWER})"),
        (SALES, own.reason)]
    [dropped] = [r for r in rows if r["action"] == "refusals_dropped"]
    assert (dropped["actor"], dropped["details"]["count"]) == (f"{SALES} (not verified)", 3)


async def test_tokens_the_codec_server_does_not_trust_seal_nothing(platform):
    """Another audience, expired, another issuer, `alg: none`, another key: 401, and nothing
    reaches the workflow."""
    handle = await platform.start()
    provider, now = platform.provider, int(time.time())
    forgeries = {
        "another audience": provider.mint(provider.claims(REVIEWER, aud="someone-else")),
        "expired": provider.mint(provider.claims(REVIEWER, iat=now - 7200, exp=now - 3600)),
        "another issuer": provider.mint(provider.claims(REVIEWER,
                                                        iss="https://elsewhere.example.com")),
        "alg none": identity.unsigned(provider.claims(REVIEWER), provider.provider.key.kid),
        "another key": provider.mint(provider.claims(REVIEWER), key=identity.another_rsa_key()),
    }
    for what, token in forgeries.items():
        forger = platform.holding(token).get_workflow_handle(handle.id)
        with pytest.raises(PayloadEncryptionError, match="answered 401") as refused:
            await forger.signal("pre_verification", pre_verification(handle.id))
        assert "sealed" not in str(refused.value), what

    status = await drive.status(handle)
    history = await handle.fetch_history()
    assert status.decisions == [] and status.step == "pre_verification"
    assert not any(e.HasField("workflow_execution_signaled_event_attributes")
                   for e in history.events)


async def test_a_sealed_decision_counts_once_for_its_own_application(platform):
    """Copied out of the sender's traffic or out of a history, a seal is good for the
    decision it was made for, there, once: not under another decision id, not with other
    content, not in another application."""
    first, second = await platform.start(), await platform.start()
    reviewer = await platform.as_person(REVIEWER)
    # What the reviewer's client sends, once the codec server has sealed it.
    sealing = reviewer.data_converter.payload_codec
    wire, = await sealing.encode(
        [reviewer.data_converter.payload_converter.to_payload(pre_verification(first.id))])
    copied, = await payload_encryption(platform.settings).decode([wire])
    original = json.loads(copied.data)

    raw = platform.raw.get_workflow_handle(first.id)
    await raw.signal("pre_verification", {**original, "decision_id": "another-id"})
    await raw.signal("pre_verification", {**original, "note": "approved, and more"})
    await raw.signal("pre_verification", RawValue(copied))  # the sender's own: applied
    await raw.signal("pre_verification", RawValue(copied))  # once
    in_first = await drive.decisions_recorded(first, 4)
    # From the first application's history into the second's, as it is and re-addressed.
    from_history = await sent_payload(first, platform.settings, index=2)
    other = platform.raw.get_workflow_handle(second.id)
    await other.signal("pre_verification", from_history)
    await other.signal("pre_verification", {**from_history, "application_id": second.id})
    in_second = await drive.decisions_recorded(second, 2)

    assert [(d.applied, d.reason) for d in in_first.decisions] == [
        (False, "sealed for another decision"), (False, "sealed for other content"),
        (True, ""), (False, f"decision {original['decision_id']} was already received")]
    assert in_first.decisions[2].decided_by == REVIEWER
    assert from_history == original
    assert [(d.applied, d.reason) for d in in_second.decisions] == [
        (False, "sealed for another application")] * 2
    assert in_second.step == "pre_verification"


async def test_four_eyes_compares_verified_identities(platform):
    handle = await platform.start()
    dual = (await platform.as_person(REVIEWER_AND_APPROVER)).get_workflow_handle(handle.id)
    await dual.signal("pre_verification", pre_verification(handle.id, by=None))
    await drive.wait_for_step(handle, "platform_contract")
    platform_team = (await platform.as_person(PLATFORM)).get_workflow_handle(handle.id)
    await platform_team.signal("platform_contract", decided(
        handle.id, "platform_contract", verdict="signed", eligibility_confirmed=True,
        contract=contract()))
    await drive.wait_for_step(handle, "final_approval")

    again = await dual.execute_update("final_approval", decided(
        handle.id, "final_approval", verdict="approve"), result_type=DecisionReceipt)
    approver = (await platform.as_person(APPROVER)).get_workflow_handle(handle.id)
    other = await approver.execute_update("final_approval", decided(
        handle.id, "final_approval", verdict="approve"), result_type=DecisionReceipt)
    status = await drive.wait_for_step(handle, "sandbox_testing")

    assert not again.applied and again.reason == (
        f"{REVIEWER_AND_APPROVER} took an earlier decision of this application that must be "
        "taken by someone else (four eyes)")
    assert other.applied
    subject = platform.provider.subject
    assert [(d.decision, d.decided_by, d.identity.subject) for d in status.decisions
            if d.applied] == [
        ("pre_verification", REVIEWER_AND_APPROVER, subject(REVIEWER_AND_APPROVER)),
        ("platform_contract", PLATFORM, subject(PLATFORM)),
        ("final_approval", APPROVER, subject(APPROVER))]
    assert [k.environment for k in status.keys] == ["sandbox"]


async def test_a_service_acts_for_an_applicant_only_where_the_roster_says_never_as_staff(
        platform, pool):
    handle = await platform.start()
    organisation = platform.organisations[handle.id]
    portal = platform.holding(await platform.provider.service_token()).get_workflow_handle(
        handle.id)

    as_staff = await portal.execute_update("pre_verification", pre_verification(
        handle.id, by=None), result_type=DecisionReceipt)
    unlisted = await portal.execute_update("withdraw", decided(handle.id, "withdraw"),
                                           result_type=DecisionReceipt)
    await identities.grant_mandate(pool, platform.provider.issuer, identity.SERVICE,
                                   organisation)
    listed = await portal.execute_update("withdraw", decided(handle.id, "withdraw"),
                                         result_type=DecisionReceipt)
    ended = await drive.result(handle)

    assert as_staff.reason == (f"service {identity.SERVICE} is a service: a "
                               "pre_verification_reviewer decision needs a person")
    assert unlisted.reason == (f"service {identity.SERVICE} is not listed as acting for "
                               f"organisation {organisation}")
    assert listed.applied and ended.outcome == "withdrawn"
    assert ended.decisions[-1].decided_by == f"service {identity.SERVICE}"


async def test_the_roster_decides_roles_on_the_verified_identity(platform, pool):
    """Signed in is not enough: the roster gives the role, to the identity enrolled for it,
    as it stands when the decision arrives."""
    handle = await platform.start()
    newcomer = f"newcomer-{uuid.uuid4().hex[:8]}@operator.example.com"
    them = (await platform.as_person(newcomer)).get_workflow_handle(handle.id)
    sales = (await platform.as_person(SALES)).get_workflow_handle(handle.id)

    async def decide(who) -> DecisionReceipt:
        return await who.execute_update("pre_verification", pre_verification(handle.id, by=None),
                                        result_type=DecisionReceipt)

    stranger = await decide(them)
    wrong_role = await decide(sales)
    try:
        # The role given to the address only: no identity enrolled for it yet.
        await pool.execute("INSERT INTO staff_roles (staff_id, role) VALUES ($1, $2)",
                           newcomer, "pre_verification_reviewer")
        role_not_enrolled = await decide(them)
        await identities.enrol_staff(pool, newcomer, IdentityRef(
            issuer=platform.provider.issuer, subject=platform.provider.subject(newcomer)))
        enrolled = await decide(them)
    finally:  # the roster is the session's: other tests count who holds the role
        await pool.execute("DELETE FROM staff_identities WHERE staff_id = $1", newcomer)
        await pool.execute("DELETE FROM staff_roles WHERE staff_id = $1", newcomer)

    assert stranger.reason == f"{newcomer} does not hold the role pre_verification_reviewer"
    assert wrong_role.reason == f"{SALES} does not hold the role pre_verification_reviewer"
    assert role_not_enrolled.reason == stranger.reason
    assert enrolled.applied


# --- rotating the sealing key ---------------------------------------------------------------------


@asynccontextmanager
async def codec_server_sealing_with(platform: Platform, keys: str) -> AsyncIterator[str]:
    port = free_port()
    url = f"http://localhost:{port}"
    runner = await start_codec_server(platform.settings.model_copy(update={
        "codec_server_port": port, "codec_public_url": url, "sealing_keys": SecretStr(keys),
        "oidc_issuer": platform.provider.issuer,
        "codec_oidc_client_secret": SecretStr(identity.CODEC_SECRET)}))
    try:
        yield url
    finally:
        await runner.cleanup()


async def sealed_by(platform: Platform, codec: str, token: str, decision: dict) -> RawValue:
    """`decision` as the sender's client sends it once the codec server at `codec` has sealed
    it (kept to be sent later: a slow network, a queued request, a copy)."""
    client = platform.holding(token, codec)
    wire, = await client.data_converter.payload_codec.encode(
        [client.data_converter.payload_converter.to_payload(decision)])
    clear, = await payload_encryption(platform.settings).decode([wire])
    return RawValue(clear)


async def test_sealing_keys_rotate_with_an_overlap_and_histories_outlive_them(
        dev_server, settings, pool, roster, identity_provider, task_queue):
    """The new key seals first while the old one still verifies: what the old key sealed
    before the switch still counts during the overlap, and not after it. The verdicts are in
    the history: replaying it needs no sealing key at all."""
    old_private, old_public = new_sealing_key("seal-old")
    new_private, new_public = new_sealing_key("seal-new")
    ours = settings.model_copy(update={"temporal_task_queue": task_queue})
    platform = Platform(dev_server.client, ours, "", identity_provider)
    reviewer, team = (await identity_provider.access_token(REVIEWER),
                      await identity_provider.access_token(PLATFORM))

    def workers(verification: str):
        return running(dev_server.client, ours.model_copy(
            update={"sealing_verification_keys": verification}), pool)

    async with codec_server_sealing_with(platform, old_private) as before, workers(old_public):
        handle = await platform.start()
        await platform.raw.get_workflow_handle(handle.id).signal(
            "pre_verification", await sealed_by(platform, before, reviewer,
                                                pre_verification(handle.id, by=None)))
        await drive.wait_for_step(handle, "platform_contract")
        contract_terms = {"verdict": "signed", "eligibility_confirmed": True,
                          "contract": contract()}
        late = await sealed_by(platform, before, team,
                               decided(handle.id, "platform_contract", **contract_terms))
        too_late = await sealed_by(platform, before, team,
                                   decided(handle.id, "final_approval", verdict="approve"))

    async with codec_server_sealing_with(platform, f"{new_private},{old_private}") as during, \
            workers(f"{new_public},{old_public}"):
        raw = platform.raw.get_workflow_handle(handle.id)
        sealed_before_the_switch = await raw.execute_update("platform_contract", late,
                                                            result_type=DecisionReceipt)
        await drive.wait_for_step(handle, "final_approval")
        approver = await identity_provider.access_token(APPROVER)
        sealed_new = await sealed_by(platform, during, approver,
                                     decided(handle.id, "final_approval", verdict="approve"))
        new_kid = jwt_kid(sealed_new)

    async with workers(new_public):
        after_the_overlap = await raw.execute_update("final_approval", too_late,
                                                     result_type=DecisionReceipt)
        with_the_new_key = await raw.execute_update("final_approval", sealed_new,
                                                    result_type=DecisionReceipt)
        status = await drive.wait_for_step(handle, "sandbox_testing")
        history = await handle.fetch_history()

    assert sealed_before_the_switch.applied, sealed_before_the_switch.reason
    assert new_kid == "seal-new"
    assert after_the_overlap.reason == "unknown sealing key"
    assert with_the_new_key.applied
    assert [d.decided_by for d in status.decisions if d.applied] == [REVIEWER, PLATFORM, APPROVER]
    # Replayed with the payload keys alone: no sealing key, old or new, is asked for.
    replayer = Replayer(workflows=WORKFLOWS, workflow_runner=WORKFLOW_RUNNER,
                        data_converter=data_converter(ours.model_copy(update={
                            "sealing_keys": None, "sealing_verification_keys": None})))
    await replayer.replay_workflow(history)


def jwt_kid(decision: RawValue) -> str:
    return jwt.get_unverified_header(json.loads(decision.payload.data)["attestation"])["kid"]


# --- an application running when sealing was deployed ---------------------------------------------


class BeforeSeals(Verifications):
    """verify_decision as the worker of the previous release ran it: the typed `decided_by`
    taken at its word (the verdict it kept in histories: `person`, no identity); also inside
    verify_and_check_decision, which checks a contract number or looks up a licence with it."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool, self.decisions = pool, self

    @activity.defn(name="verify_decision")
    async def verify_decision(self, check: DecisionCheck) -> Verification:
        return Verification(person=check.decided_by)


async def test_a_step_pending_at_deployment_takes_only_sealed_decisions_after(
        dev_server, settings, pool, roster, identity_provider, codec_server, task_queue):
    """Before: decisions by typed names (the previous release). After: the same application's
    pending step refuses a typed one, and four eyes still excludes who pre-verified it, by the
    staff id on record. (tests/histories/v2_*_before_seals.json: such a history, recorded by
    the previous release, replays.)"""
    ours = settings.model_copy(update={"temporal_task_queue": task_queue})
    platform = Platform(dev_server.client, ours, codec_server, identity_provider)
    raw = platform.raw

    async with running(dev_server.client, ours, pool, with_stand_ins(pool, ours, BeforeSeals(pool))):
        handle = await platform.start()
        typed = raw.get_workflow_handle(handle.id)
        await typed.signal("pre_verification", pre_verification(
            handle.id, by=REVIEWER_AND_APPROVER))
        await drive.wait_for_step(handle, "platform_contract")
        await typed.signal("platform_contract", decided(
            handle.id, "platform_contract", decided_by=PLATFORM, verdict="signed",
            eligibility_confirmed=True, contract=contract()))
        await drive.wait_for_step(handle, "final_approval")

    async with running(dev_server.client, ours, pool):
        approval = lambda: decided(handle.id, "final_approval", verdict="approve")  # noqa: E731
        still_typed = await typed.execute_update("final_approval", {
            **approval(), "decided_by": APPROVER}, result_type=DecisionReceipt)
        dual = (await platform.as_person(REVIEWER_AND_APPROVER)).get_workflow_handle(handle.id)
        same_person = await dual.execute_update("final_approval", approval(),
                                                result_type=DecisionReceipt)
        approver = (await platform.as_person(APPROVER)).get_workflow_handle(handle.id)
        sealed = await approver.execute_update("final_approval", approval(),
                                               result_type=DecisionReceipt)
        status = await drive.wait_for_step(handle, "sandbox_testing")

    assert still_typed.reason == "identity not verified"
    assert "four eyes" in same_person.reason
    assert sealed.applied
    assert [(d.decided_by, d.identity is None) for d in status.decisions if d.applied] == [
        (REVIEWER_AND_APPROVER, True), (PLATFORM, True), (APPROVER, False)]

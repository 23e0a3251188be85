"""The platform's own payloads stay under Temporal's blob limit (onboarding/temporal/dynamic_config.py),
whatever reaches an application: every payload is held to it, and a workflow writing a larger
one would be terminated (Temporal 1.27) or stuck (1.30 on). The largest are built here at their
worst, every field at its bound and in 4-byte characters, and encoded as the worker encodes
them (encrypted):

- what a run carries to the next (a publication with a 512 KiB document, the carried state at
  its budget, its journal at the most the continue-as-new carries, the refusal counts full, 50
  people who pre-verified, thousands of decisions received);
- the largest commit (the API published with that document);
- the largest decision a workflow takes (a revised specification).
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta

from onboarding.domain.admission import MAX_SPECIFICATION_BYTES, prepare_publication
from onboarding.domain.decisions import LARGEST_DECISION_BYTES
from onboarding.domain.models import (
    ApiFacts,
    CatalogueFacts,
    Deadline,
    DecisionRecord,
    KeySummary,
    SubscriptionApplication,
)
from onboarding.domain.openapi import canonical_json
from onboarding.domain.record import ApiPublished, Audited, Commit
from onboarding.domain.state import (
    CARRIED_BYTES,
    SENDER_KEPT,
    SENDERS_COUNTED,
    Dropped,
    PublicationState,
    SubscriptionState,
)
from onboarding.identity.models import IdentityRef
from onboarding.identity.tokens import MAX_SUBJECT
from onboarding.temporal.codec import data_converter
from onboarding.temporal.dynamic_config import BLOB_SIZE_ERROR
from tests.support import data
from workflows.process import CARRIED_JOURNAL_BYTES, COMMIT_BYTES, _batches

WIDE = "\U0001d11e"  # four bytes in UTF-8
NOW = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)


def wide(n: int) -> str:
    return WIDE * n


def largest_document() -> dict:
    """The example's document, as large as admission lets a specification be."""
    spec = copy.deepcopy(data.PUBLICATION_EXAMPLE["specification"])
    spec["info"]["description"] = ""
    room = MAX_SPECIFICATION_BYTES - len(canonical_json(spec))
    spec["info"]["description"] = "d" * room
    assert len(canonical_json(spec)) == MAX_SPECIFICATION_BYTES
    return spec


def largest_publication(settings):
    form = data.publication_form("api-largest-of-all")
    form["organisation"].update(legal_name=wide(500), representative=wide(500),
                                contact_emails=[f"{'c' * 60}{i}@{'d' * 60}.example.com"
                                                for i in range(10)])
    form["api"].update(name=wide(500), category=wide(100))
    form["specification"] = largest_document()
    return prepare_publication(form, settings)


def sealer(i: int) -> IdentityRef:
    """Who sealed a decision, at the bounds: a configured issuer's URL (ours: 200 characters
    is generous), a subject of 255 ASCII characters (OpenID Connect's bound, which the token
    verifier holds providers to)."""
    return IdentityRef(issuer="https://" + "i" * 192, subject=f"{i:05d}" + "s" * (MAX_SUBJECT - 5))


def record(i: int, *, applied: bool, decision: str = "api_test_report",
           by: str | None = None) -> DecisionRecord:
    return DecisionRecord(decision_id=wide(99) + str(i % 10), decision=decision,
                          decided_by=by or wide(200), identity=sealer(i), note=wide(2000),
                          step="api_testing", received_at=NOW, applied=applied,
                          reason=wide(2000))


def filled(state):
    """Everything a state can hold, at its worst."""
    state.decisions = [record(i, applied=i % 3 == 0) for i in range(3000)]
    # Four eyes keeps each pre-verifier's latest record whatever the budget: 50 people (each
    # their own identity).
    state.decisions += [record(i, applied=True, decision="pre_verification",
                               by=f"{wide(150)}{i}@operator.example.com") for i in range(50)]
    state.applied_ids = [f"{wide(95)}{i:05d}" for i in range(5000)]
    state.refused_ids = [f"{wide(95)}{i:05d}" for i in range(500)]
    state.refusals.window_start = NOW
    state.refusals.journaled = {f"{wide(SENDER_KEPT - 3)}{i:03d}": 20
                                for i in range(SENDERS_COUNTED + 1)}
    state.refusals.dropped = {f"{wide(SENDER_KEPT - 3)}{i:03d}": Dropped(count=10**9, since=NOW)
                              for i in range(SENDERS_COUNTED + 1)}
    state.keys = [KeySummary(key_id=str(i), environment=env, display_prefix="cmsb_abcdefg",
                             scopes=[wide(64)] * 50, expires_at=NOW)
                  for i, env in enumerate(("sandbox", "production"))]
    state.deadlines = [Deadline(purpose=p, due_at=NOW + timedelta(days=d))
                       for p, d in (("reminder", 7), ("escalation", 21), ("lapse", 90))]
    state.reviewer_flags = [wide(300)] * 3
    entries, size = [], 0
    while size < CARRIED_JOURNAL_BYTES:  # what the continue-as-new may carry of its journal
        entry = Audited(seq=len(entries), action="final_approval", result="refused",
                        actor=wide(200), reason=wide(2000), details={"note": wide(500)})
        entries.append(entry)
        size += len(entry.model_dump_json().encode())
    state.journal = entries
    return state


async def encoded_size(settings, value) -> int:
    """The payload's size as the worker hands it to Temporal (encrypted)."""
    converter = data_converter(settings)
    payloads = converter.payload_converter.to_payloads([value])
    return sum(p.ByteSize() for p in await converter.payload_codec.encode(payloads))


async def test_what_a_publication_carries_to_its_next_run_stays_under_the_blob_limit(
        plain_settings):
    application = largest_publication(plain_settings)
    state = filled(PublicationState.of(application, NOW))
    carried = state.next_run_input()

    size = await encoded_size(plain_settings, carried)
    assert size < BLOB_SIZE_ERROR * 0.95, f"{size} bytes carried, the limit {BLOB_SIZE_ERROR}"
    rest = len(json.dumps(carried["continued"], ensure_ascii=False).encode())
    assert rest <= CARRIED_BYTES + CARRIED_JOURNAL_BYTES
    # What four eyes needs is still there, and the latest decisions.
    kept = carried["continued"]["decisions"]
    assert {d["decided_by"] for d in kept if d["decision"] == "pre_verification"} == {
        f"{wide(150)}{i}@operator.example.com" for i in range(50)}
    assert carried["continued"]["applied_not_listed"] + carried["continued"][
        "refused_not_listed"] + len(kept) == 3050


async def test_what_a_subscription_carries_to_its_next_run_stays_under_the_blob_limit(
        plain_settings):
    form = data.subscription_form([f"api-{i:02d}" for i in range(50)])
    form["service"]["description"] = wide(4000)
    application = SubscriptionApplication.model_validate(
        {**data.new_application(plain_settings).model_dump(), **{
            "service": form["service"], "requested_apis": form["requested_apis"]}})
    state = filled(SubscriptionState.of(application, NOW))
    state.catalogue = CatalogueFacts(apis=[ApiFacts(
        api_id=f"api-{i:02d}", name=wide(500), is_market_data=True,
        provider_contact_emails=[f"{'p' * 60}@{'q' * 60}.example.com"] * 10,
        publication_application_id=f"publication-1348672683-{'a' * 60}")
        for i in range(50)], unknown=[])
    state.withdrawn_apis = [f"api-{i:02d}" for i in range(50)]
    size = await encoded_size(plain_settings, state.next_run_input())
    assert size < BLOB_SIZE_ERROR * 0.95, f"{size} bytes carried, the limit {BLOB_SIZE_ERROR}"


async def test_the_largest_commit_and_the_largest_decision_stay_under_the_blob_limit(
        plain_settings):
    application = largest_publication(plain_settings)
    published = ApiPublished(seq=0, api=application.api,
                             specification=application.specification,
                             summary=application.specification_summary, stage="production")
    small = [Audited(seq=i, action="step_entered", reason=wide(2000)) for i in range(1, 300)]
    batches = _batches([*small[:100], published, *small[100:]])
    assert [published] in batches  # the large one alone
    for batch in batches:
        commit = Commit(application_id=application.application_id,
                        workflow_id=application.application_id,
                        business_registration_number="1348672683", step=wide(30),
                        entries=batch)
        assert await encoded_size(plain_settings, commit) < BLOB_SIZE_ERROR * 0.95
        assert len(batch) == 1 or sum(len(e.model_dump_json().encode())
                                      for e in batch) <= COMMIT_BYTES
    # A decision the workflow would still read (anything larger it refuses undecoded) leaves
    # room under the limit for what Temporal adds to it.
    assert await encoded_size(plain_settings, {"x": "y" * LARGEST_DECISION_BYTES}) < \
        BLOB_SIZE_ERROR * 0.6


def test_the_largest_application_input_passes_the_codec_servers_cap(plain_settings):
    # The codec server refuses to encode a payload larger than any decision may be
    # (onboarding/services/codec_server.py): a publication's input at its worst still passes.
    size = len(largest_publication(plain_settings).model_dump_json().encode())
    assert MAX_SPECIFICATION_BYTES < size <= LARGEST_DECISION_BYTES

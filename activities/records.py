"""The one commit: a process's journal written in one transaction (onboarding/domain/record.py).

`write_record` writes, in the journal's order: the audit lines (id `<application>/<seq>`), the
application's row, contracts, keys (a key's hash and display prefix; its delivery in the
outbox, never the key), revocations, catalogue changes and notices (into the outbox, their
recipients resolved now); then the application's step and status. The relay sends the notices
once the transaction commits (onboarding/mail/relay.py).

`commit_decision` is the same commit for a decision applied before it was verified (one a
person takes at a step: workflows/process.py, VERIFIED_IN_COMMIT): it verifies the decision
first (its seal, its sender's role, four eyes, its contract number: activities/verification.py)
and writes the whole journal only when the decision holds under the name it claims; else only
what came before the decision, and answers why, so that the workflow takes the decision back.

Retried after a crash, it writes nothing twice: audit lines by their id, keys by their
issuance id (the same key derived again), notices by their id, contracts by their number.
Two races with other applications are answered on the record rather than by failing the
commit for ever: a contract number recorded meanwhile for another application (its decision
was checked when it arrived) is audited as not recorded; an API id taken meanwhile by another
provider refuses the publication, which the workflow then ends.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Awaitable, Callable

import asyncpg
from temporalio import activity

from onboarding.core.config import Settings
from onboarding.core.logs import get_logger
from onboarding.domain import keys
from onboarding.domain.record import (
    ApiPublished,
    ApiWithdrawnFromCatalogue,
    ApplicationOnRecord,
    Audited,
    Commit,
    Committed,
    ContractRecorded,
    KeyIssued,
    KeyScopesChanged,
    KeysRevoked,
    KeysSuspended,
    KeysTakenOver,
    NoticeQueued,
    SuspensionLifted,
)
from activities.verification import CheckedDecision, DecisionChecks, Verifications
from onboarding.identity.models import VerifiedIdentity
from onboarding.store import applications, audit, catalogue, contracts, outbox
from onboarding.store import keys as key_store

log = get_logger("records")


class DecisionCommit(Commit):
    """A commit carrying a decision applied before its verification, and what its step did on
    it: `entries[..]` from the decision's own line (`decision_seq`) on stand only if `checks`
    hold."""

    checks: DecisionChecks
    decision_seq: int
    decision_step: str  # where the application was when the decision came

    def holds(self, verification: CheckedDecision) -> bool:
        """Verified, under the very name the decision claims (the line and the step's entries
        were written with it): else the workflow takes it back and decides again."""
        return not verification.reason and verification.identity is not None \
            and verification.person == (self.checks.decision.decided_by or "")

    def before(self) -> Commit:
        """Only what came before the decision, at the step it came at."""
        return Commit(**{**self.model_dump(exclude=_DECISION_FIELDS),
                         "step": self.decision_step, "status": None,
                         "entries": [e for e in self.entries if e.seq < self.decision_seq]})

    def sealed(self, identity: VerifiedIdentity) -> Commit:
        """The whole commit, the decision's line naming the identity its seal verified."""
        entries = [e.model_copy(update={"details": {
                       **e.details, "sealed_for": identity.model_dump(mode="json")}})
                   if e.seq == self.decision_seq and isinstance(e, Audited) else e
                   for e in self.entries]
        return Commit(**{**self.model_dump(exclude=_DECISION_FIELDS), "entries": entries})


_DECISION_FIELDS = {"checks", "decision_seq", "decision_step", "entries"}


class DecisionCommitted(Committed):
    verification: CheckedDecision
    # True: the decision and everything after it are on record; False: only what preceded it.
    written: bool


class Records:
    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self.pool = pool
        self.settings = settings
        self.verifications = Verifications(pool, settings)

    @activity.defn
    async def write_record(self, commit: Commit) -> Committed:
        writing = _Writing(commit, self.settings)
        async with self.pool.acquire() as conn, conn.transaction():
            for entry in commit.entries:
                await writing.write(conn, entry)
            await writing.finish(conn)
            if commit.on_record:
                await applications.move(conn, commit.application_id, commit.step,
                                        commit.status)
            keys = (await key_store.of_application(conn, commit.application_id)
                    if writing.keys_changed else None)
        log.info("record written", application_id=commit.application_id,
                 entries=len(commit.entries), step=commit.step)
        return Committed(keys=keys, publication_refused=writing.publication_refused,
                         subscriptions_to_tell=writing.subscriptions_to_tell)

    @activity.defn
    async def commit_decision(self, commit: DecisionCommit) -> DecisionCommitted:
        prefix = commit.entry_prefix or commit.application_id
        async with self.pool.acquire() as conn:
            earlier = await audit.find(conn, f"{prefix}/{commit.decision_seq}")
        if (earlier is not None and "sealed_for" in earlier.details
                and earlier.details.get("decision_id") == commit.checks.decision.decision_id):
            # A retry of an attempt that committed: its verdict stands (the roster may have
            # changed since; the record, keys and notices are written already). Not another
            # decision's line under this number (written by a discarded workflow task: _Earlier).
            verification = CheckedDecision(
                person=earlier.actor,
                identity=VerifiedIdentity.model_validate(earlier.details["sealed_for"]))
        else:
            verification = await self.verifications.verify_and_check_decision(commit.checks)
        return await write_decision(commit, verification, self.write_record)


async def write_decision(commit: DecisionCommit, verification: CheckedDecision,
                         write: Callable[[Commit], Awaitable[Committed]]) -> DecisionCommitted:
    """What `commit_decision` writes once the decision is verified, with `write` (the tests'
    stand-ins write in memory): the whole commit, sealed, if it holds; else what came before."""
    holds = commit.holds(verification)
    assert verification.identity is not None or not holds
    written = await write(commit.sealed(verification.identity) if holds  # type: ignore[arg-type]
                          else commit.before())
    if not holds:
        log.info("decision taken back", application_id=commit.application_id,
                 decision=commit.checks.decision.decision, reason=verification.reason)
    return DecisionCommitted(**written.model_dump(), verification=verification, written=holds)


class _Writing:
    """One commit's writes, and what they found out."""

    def __init__(self, commit: Commit, settings: Settings) -> None:
        self.commit = commit
        self.settings = settings
        self.keys_changed = False
        self.publication_refused = ""
        self.subscriptions_to_tell: list[str] = []
        self.prefix = commit.entry_prefix or commit.application_id
        # Lines written before under this commit's ids, once one is met (`append`).
        self.earlier: _Earlier | None = None

    async def append(self, conn: asyncpg.Connection, lines: list[audit.Entry]) -> None:
        """Write `lines`; where an id is taken, by a line that says the same or another."""
        for line in lines:
            if self.earlier is None:
                if await audit.add(conn, line):
                    continue
                self.earlier = await _Earlier.of(conn, self, line.entry_id)
            await self.earlier.write(conn, line)

    async def finish(self, conn: asyncpg.Connection) -> None:
        if self.earlier is not None:
            await self.earlier.supersede(conn, self)

    def audited(self, seq: int, action: str, result: audit.Result = "succeeded",
                suffix: str = "", **fields) -> audit.Entry:
        return audit.Entry(entry_id=f"{self.prefix}/{seq}{suffix}",
                           application_id=self.commit.application_id,
                           workflow_id=self.commit.workflow_id, action=action, result=result,
                           **fields)

    async def write(self, conn: asyncpg.Connection, entry) -> None:
        app_id = self.commit.application_id
        match entry:
            case Audited():
                await self.append(conn, [self.audited(
                    entry.seq, entry.action, entry.result, actor=entry.actor,
                    reason=entry.reason, details=entry.details)])
            case ApplicationOnRecord():
                await applications.record(
                    conn, application_id=app_id, process=entry.process,
                    organisation=entry.organisation, workflow_id=self.commit.workflow_id,
                    requested_apis=entry.requested_apis,
                    first_execution_run_id=entry.first_execution_run_id)
            case ContractRecorded():
                await self.contract(conn, entry)
            case KeyIssued():
                await self.key(conn, entry)
            case KeysRevoked():
                revoked = await key_store.revoke(conn, app_id, entry.reason, entry.key_ids)
                await self.append(conn, [
                    self.audited(entry.seq, "api_key_revoked", suffix=f"/{key.key_id}",
                                 reason=entry.reason,
                                 details={"key_id": key.key_id, "environment": key.environment})
                    for key in revoked])
                self.keys_changed = True
            case ApiPublished():
                await self.publication(conn, entry)
            case ApiWithdrawnFromCatalogue():
                await catalogue.withdraw(conn, app_id, entry.api_id)
                await self.append(conn, [self.audited(
                    entry.seq, "api_withdrawn_from_catalogue", details={"api_id": entry.api_id})])
                self.subscriptions_to_tell = \
                    await applications.open_subscriptions_requesting(conn, entry.api_id)
            case NoticeQueued():
                await self.notice(conn, entry)
            case KeysTakenOver():
                await key_store.take_over(conn, app_id, entry.owner_workflow_id)
                await self.append(conn, [self.audited(
                    entry.seq, "api_keys_taken_over",
                    details={"owner_workflow_id": entry.owner_workflow_id})])
                self.keys_changed = True
            case KeyScopesChanged():
                await key_store.change_scopes(conn, app_id, entry.scopes)
                await self.append(conn, [self.audited(
                    entry.seq, "api_key_scopes_changed", details={"scopes": entry.scopes})])
                self.keys_changed = True
            case KeysSuspended():
                await self.suspension(conn, entry)
            case SuspensionLifted():
                lifted = await key_store.lift(
                    conn, business_registration_number=self.commit.business_registration_number,
                    application_id=None if entry.organisation_wide else app_id,
                    cause=entry.cause, lifted_by=entry.lifted_by,
                    suspension_id=entry.suspension_id)
                await self.append(conn, [self.audited(
                    entry.seq, "api_key_suspension_lifted", actor=entry.lifted_by,
                    details={"cause": entry.cause, "suspensions": lifted})])

    async def contract(self, conn: asyncpg.Connection, entry: ContractRecorded) -> None:
        number = entry.terms.contract_number
        holder = await contracts.holder(conn, entry.contract_type, number)
        details = {"contract_type": entry.contract_type, "contract_number": number}
        if holder is not None and holder != self.commit.application_id:
            await self.append(conn, [self.audited(
                entry.seq, "contract_not_recorded", "failed", actor=entry.recorded_by,
                reason=f"contract number {number} was recorded for another application "
                       "meanwhile", details=details)])
            return
        await contracts.record(conn, contract_type=entry.contract_type, terms=entry.terms,
                               business_registration_number=self.commit.business_registration_number,
                               application_id=self.commit.application_id,
                               recorded_by=entry.recorded_by)
        await self.append(conn, [self.audited(entry.seq, "contract_recorded",
                                               actor=entry.recorded_by, details=details)])

    async def key(self, conn: asyncpg.Connection, entry: KeyIssued) -> None:
        if not self.settings.key_issuance_secret:
            raise RuntimeError("KEY_ISSUANCE_SECRET is not configured on this worker")
        issuance_id = entry.issuance_id(self.commit.application_id)
        key = keys.derive_key(self.settings.key_issuance_secret.get_secret_value(), issuance_id,
                              entry.environment)
        summary, _ = await key_store.issue(
            conn, issuance_id=issuance_id, application_id=self.commit.application_id,
            business_registration_number=self.commit.business_registration_number,
            environment=entry.environment, scopes=entry.scopes, valid_days=entry.valid_days,
            key=key, expires_at=entry.expires_at, owner_workflow_id=entry.owner_workflow_id)
        await outbox.enqueue(
            conn, notice_id=f"{issuance_id}/delivery", application_id=self.commit.application_id,
            template="api_key_delivery", language=entry.language, recipients=entry.recipients,
            context={"environment": entry.environment, "issuance_id": issuance_id,
                     "key_id": summary.key_id, "display_prefix": summary.display_prefix})
        await self.append(conn, [self.audited(
            entry.seq, "api_key_issued",
            details={"key_id": summary.key_id, "environment": entry.environment,
                     "display_prefix": summary.display_prefix, "scopes": entry.scopes})])
        self.keys_changed = True
        log.info("api key issued", key_id=summary.key_id, environment=summary.environment,
                 display_prefix=summary.display_prefix)

    async def suspension(self, conn: asyncpg.Connection, entry: KeysSuspended) -> None:
        brn = self.commit.business_registration_number
        scopes = await key_store.market_data_apis(conn) if entry.market_data_only else None
        written = await key_store.suspend(
            conn, suspension_id=entry.suspension_id, business_registration_number=brn,
            application_id=None if entry.organisation_wide else self.commit.application_id,
            scopes=scopes, cause=entry.cause, reason=entry.reason,
            suspended_by=entry.suspended_by)
        await self.append(conn, [self.audited(
            entry.seq, "api_keys_suspended", actor=entry.suspended_by, reason=entry.reason,
            details={"suspension_id": entry.suspension_id, "cause": entry.cause,
                     "organisation_wide": entry.organisation_wide, "scopes": scopes,
                     "already_in_force": not written})])

    async def publication(self, conn: asyncpg.Connection, entry: ApiPublished) -> None:
        details = {"api_id": entry.api.api_id, "stage": entry.stage,
                   "spec_version": entry.summary.version, "spec_sha256": entry.summary.sha256}
        try:
            async with conn.transaction():  # a savepoint: a refusal leaves the rest as it is
                await catalogue.publish(
                    conn, application_id=self.commit.application_id, api=entry.api,
                    provider=self.commit.business_registration_number,
                    specification=entry.specification, summary=entry.summary,
                    stage=entry.stage)
        except catalogue.ApiIdTaken as taken:
            self.publication_refused = str(taken)
            await self.append(conn, [self.audited(entry.seq, "api_publication_refused",
                                                   "failed", reason=str(taken),
                                                   details=details)])
            return
        await self.append(conn, [self.audited(entry.seq, "api_published", details=details)])

    async def notice(self, conn: asyncpg.Connection, entry: NoticeQueued) -> None:
        notice = entry.notice
        recipients = await outbox.recipients(conn, notice)
        if not recipients:
            log.warning("notice has no recipients", notice_id=notice.notice_id,
                        template=notice.template, role=notice.recipient_role)
            return
        await outbox.enqueue(conn, notice_id=notice.notice_id,
                             application_id=notice.application_id, template=notice.template,
                             language=notice.language, recipients=recipients,
                             context=notice.context)
        await self.append(conn, [self.audited(
            entry.seq, "notice_queued",
            details={"notice_id": notice.notice_id, "template": notice.template,
                     "recipients": recipients})])


class _Earlier:
    """The lines already written under a commit's ids: by an earlier attempt of this very commit
    (a retry after a crash), or by a commit of a workflow task that Temporal discarded.

    A commit is made in the workflow task that makes it (a local activity), and Temporal may
    discard that task once the commit is written: it force-closes a task when more messages
    arrive meanwhile than it buffers (a flood of signals), or when its worker is lost. The
    task runs again with the messages that came since, and so may journal more, or otherwise:
    the refusal counts it writes are larger, a refusal takes the number the discarded task gave
    another line. Its commit is what the application's history keeps, and the discarded task's
    lines are not: where they say what this commit says, in the same order, they stand for its
    lines (a retry writes nothing twice); from the first that does not, this commit writes its
    own (under `<id>~<commit>` where the id is taken) and one line superseding those it replaces
    (the log is append-only: the view `audit_trail` is the record without them)."""

    def __init__(self, lines: list[audit.Entry], token: str) -> None:
        self.lines = {line.entry_id: line for line in lines}
        self.token = token
        self.stood_for: set[str] = set()
        self.diverged = False

    @classmethod
    async def of(cls, conn: asyncpg.Connection, writing: _Writing, taken: str) -> _Earlier:
        """The lines written since the first under this commit's ids (`taken`, the id found
        taken, may be a line of an entry's own, such as a revoked key's)."""
        token = hashlib.sha256(writing.commit.model_dump_json().encode()).hexdigest()[:12]
        ours = re.compile(re.escape(writing.prefix) + r"/(\d+)")
        ids = [taken] + [f"{writing.prefix}/{e.seq}" for e in writing.commit.entries]
        lines = await audit.since_first_of(conn, writing.commit.application_id, ids)
        # Numbered from this commit's first entry on: a line numbered before is an earlier
        # commit's, kept, even when written later (under `~<commit>`, replacing another).
        first = writing.commit.entries[0].seq
        return cls([line for line in lines if (seq := ours.match(line.entry_id))
                    and int(seq.group(1)) >= first], token)

    async def write(self, conn: asyncpg.Connection, line: audit.Entry) -> None:
        written = self.lines.get(line.entry_id)
        if written is not None and not self.diverged and audit.same_line(written, line):
            self.stood_for.add(line.entry_id)
            return
        self.diverged = self.diverged or written is not None
        if not await audit.add(conn, line):  # taken: by a superseded line, or another
            await audit.add(conn, dataclasses.replace(
                line, entry_id=f"{line.entry_id}~{self.token}"))

    async def supersede(self, conn: asyncpg.Connection, writing: _Writing) -> None:
        replaced = [entry_id for entry_id in self.lines if entry_id not in self.stood_for
                    and f"~{self.token}" not in entry_id]
        if not replaced:
            return
        log.warning("lines of a discarded workflow task superseded",
                    application_id=writing.commit.application_id, lines=len(replaced))
        await audit.add(conn, writing.audited(
            writing.commit.entries[0].seq, audit.SUPERSEDED, suffix=f"~{self.token}/superseded",
            reason=f"{len(replaced)} lines were written by a workflow task that Temporal "
                   "discarded and ran again with what arrived since; the lines its commit "
                   "wrote replace them",
            details={"entry_ids": replaced, "commit": self.token}))

"""The one commit: a process's journal written in one transaction (onboarding/domain/record.py).

`write_record` writes, in the journal's order: the audit lines (id `<application>/<seq>`), the
application's row, contracts, keys (a key's hash and display prefix; its delivery in the
outbox, never the key), revocations, catalogue changes and notices (into the outbox, their
recipients resolved now); then the application's step and status. The relay sends the notices
once the transaction commits (onboarding/mail/relay.py).

Retried after a crash, it writes nothing twice: audit lines by their id, keys by their
issuance id (the same key derived again), notices by their id, contracts by their number.
Two races with other applications are answered on the record rather than by failing the
commit for ever: a contract number recorded meanwhile for another application (its decision
was checked when it arrived) is audited as not recorded; an API id taken meanwhile by another
provider refuses the publication, which the workflow then ends.
"""

from __future__ import annotations

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
from onboarding.store import applications, audit, catalogue, contracts, outbox
from onboarding.store import keys as key_store

log = get_logger("records")


class Records:
    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self.pool = pool
        self.settings = settings

    @activity.defn
    async def write_record(self, commit: Commit) -> Committed:
        writing = _Writing(commit, self.settings)
        async with self.pool.acquire() as conn, conn.transaction():
            for entry in commit.entries:
                await writing.write(conn, entry)
            if commit.on_record:
                await applications.move(conn, commit.application_id, commit.step,
                                        commit.status)
            keys = (await key_store.of_application(conn, commit.application_id)
                    if writing.keys_changed else None)
        log.info("record written", application_id=commit.application_id,
                 entries=len(commit.entries), step=commit.step)
        return Committed(keys=keys, publication_refused=writing.publication_refused,
                         subscriptions_to_tell=writing.subscriptions_to_tell)


class _Writing:
    """One commit's writes, and what they found out."""

    def __init__(self, commit: Commit, settings: Settings) -> None:
        self.commit = commit
        self.settings = settings
        self.keys_changed = False
        self.publication_refused = ""
        self.subscriptions_to_tell: list[str] = []

    def audited(self, seq: int, action: str, result: audit.Result = "succeeded",
                suffix: str = "", **fields) -> audit.Entry:
        prefix = self.commit.entry_prefix or self.commit.application_id
        return audit.Entry(entry_id=f"{prefix}/{seq}{suffix}",
                           application_id=self.commit.application_id,
                           workflow_id=self.commit.workflow_id, action=action, result=result,
                           **fields)

    async def write(self, conn: asyncpg.Connection, entry) -> None:
        app_id = self.commit.application_id
        match entry:
            case Audited():
                await audit.append(conn, [self.audited(
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
                await audit.append(conn, [
                    self.audited(entry.seq, "api_key_revoked", suffix=f"/{key.key_id}",
                                 reason=entry.reason,
                                 details={"key_id": key.key_id, "environment": key.environment})
                    for key in revoked])
                self.keys_changed = True
            case ApiPublished():
                await self.publication(conn, entry)
            case ApiWithdrawnFromCatalogue():
                await catalogue.withdraw(conn, app_id, entry.api_id)
                await audit.append(conn, [self.audited(
                    entry.seq, "api_withdrawn_from_catalogue", details={"api_id": entry.api_id})])
                self.subscriptions_to_tell = \
                    await applications.open_subscriptions_requesting(conn, entry.api_id)
            case NoticeQueued():
                await self.notice(conn, entry)
            case KeysTakenOver():
                await key_store.take_over(conn, app_id, entry.owner_workflow_id)
                await audit.append(conn, [self.audited(
                    entry.seq, "api_keys_taken_over",
                    details={"owner_workflow_id": entry.owner_workflow_id})])
                self.keys_changed = True
            case KeyScopesChanged():
                await key_store.change_scopes(conn, app_id, entry.scopes)
                await audit.append(conn, [self.audited(
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
                await audit.append(conn, [self.audited(
                    entry.seq, "api_key_suspension_lifted", actor=entry.lifted_by,
                    details={"cause": entry.cause, "suspensions": lifted})])

    async def contract(self, conn: asyncpg.Connection, entry: ContractRecorded) -> None:
        number = entry.terms.contract_number
        holder = await contracts.holder(conn, entry.contract_type, number)
        details = {"contract_type": entry.contract_type, "contract_number": number}
        if holder is not None and holder != self.commit.application_id:
            await audit.append(conn, [self.audited(
                entry.seq, "contract_not_recorded", "failed", actor=entry.recorded_by,
                reason=f"contract number {number} was recorded for another application "
                       "meanwhile", details=details)])
            return
        await contracts.record(conn, contract_type=entry.contract_type, terms=entry.terms,
                               business_registration_number=self.commit.business_registration_number,
                               application_id=self.commit.application_id,
                               recorded_by=entry.recorded_by)
        await audit.append(conn, [self.audited(entry.seq, "contract_recorded",
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
        await audit.append(conn, [self.audited(
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
        await audit.append(conn, [self.audited(
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
            await audit.append(conn, [self.audited(entry.seq, "api_publication_refused",
                                                   "failed", reason=str(taken),
                                                   details=details)])
            return
        await audit.append(conn, [self.audited(entry.seq, "api_published", details=details)])

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
        await audit.append(conn, [self.audited(
            entry.seq, "notice_queued",
            details={"notice_id": notice.notice_id, "template": notice.template,
                     "recipients": recipients})])

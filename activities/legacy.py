"""Stop 8's activities, under their names and with their input and output shapes, for the
applications started before v2 (workflows/legacy/): thin adapters over onboarding/store/.

They write what stop 8 wrote, under the same ids (an attempt stop 8 began and a worker of
today retries finds what the first attempt wrote), except that notices, a key's delivery
among them, now go to the outbox for the relay to send (onboarding/mail/relay.py). Four of stop
8's activities live on unchanged in v2 under their names (look_up_catalogue,
check_specification, check_service_launch: activities/catalogue.py;
find_market_data_licence: activities/contracts.py); tests/test_legacy.py checks that all
fourteen are registered with stop 8's shapes.
"""

from __future__ import annotations

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from onboarding.core.config import Settings
from onboarding.core.logs import get_logger
from onboarding.domain import keys
from onboarding.domain.models import KeySummary, Notice
from onboarding.store import applications, audit, catalogue, contracts, outbox
from onboarding.store import keys as key_store
from workflows.legacy.models import (
    ApiPublication,
    ApiWithdrawal,
    ApplicationRecord,
    ContractRecord,
    KeyIssuance,
    KeyRevocation,
    OpenSubscriptions,
    ProgressRecord,
    PublicationRecord,
    StaffLookup,
    StaffRoles,
)

log = get_logger("activities.legacy")


def _entry(entry_id: str, application_id: str, action: str, result: audit.Result = "succeeded",
           **fields) -> audit.Entry:
    return audit.Entry(entry_id=entry_id, application_id=application_id,
                       workflow_id=activity.info().workflow_id, action=action, result=result,
                       **fields)


class Stop8Activities:
    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self.pool = pool
        self.settings = settings

    # --- staff, applications ---------------------------------------------------------------

    @activity.defn
    async def look_up_staff_roles(self, lookup: StaffLookup) -> StaffRoles:
        return StaffRoles(roles=await catalogue.staff_roles(self.pool, lookup.staff_id))

    @activity.defn
    async def record_application(self, record: ApplicationRecord) -> None:
        app = record.application
        async with self.pool.acquire() as conn, conn.transaction():
            await applications.record(conn, application_id=app.application_id,
                                      process="subscription", organisation=app.organisation,
                                      workflow_id=record.workflow_id,
                                      requested_apis=app.requested_apis)

    @activity.defn
    async def record_publication(self, record: PublicationRecord) -> None:
        app = record.application
        async with self.pool.acquire() as conn, conn.transaction():
            await applications.record(conn, application_id=app.application_id,
                                      process="publication", organisation=app.organisation,
                                      workflow_id=record.workflow_id,
                                      requested_apis=[app.api.api_id])

    # --- publication -----------------------------------------------------------------------

    @activity.defn
    async def publish_api(self, publication: ApiPublication) -> None:
        spec = publication.specification_summary
        async with self.pool.acquire() as conn, conn.transaction():
            try:
                written = await catalogue.publish(
                    conn, application_id=publication.application_id, api=publication.api,
                    provider=publication.provider_business_registration_number,
                    specification=publication.specification, summary=spec,
                    stage=publication.stage)
            except catalogue.ApiIdTaken as taken:
                raise ApplicationError(str(taken), type="ApiIdTaken", non_retryable=True) from None
            if written:
                await audit.append(conn, [_entry(
                    f"{publication.application_id}/published/{publication.stage}/{spec.sha256}",
                    publication.application_id, "api_published",
                    details={"api_id": publication.api.api_id, "stage": publication.stage,
                             "spec_version": spec.version, "spec_sha256": spec.sha256})])

    @activity.defn
    async def withdraw_api(self, withdrawal: ApiWithdrawal) -> OpenSubscriptions:
        """Take the API out of the catalogue; returns the open subscriptions that requested it."""
        async with self.pool.acquire() as conn, conn.transaction():
            if await catalogue.withdraw(conn, withdrawal.application_id, withdrawal.api_id):
                await audit.append(conn, [_entry(
                    f"{withdrawal.application_id}/withdrawn-from-catalogue",
                    withdrawal.application_id, "api_withdrawn_from_catalogue",
                    details={"api_id": withdrawal.api_id})])
            requesting = await applications.open_subscriptions_requesting(conn, withdrawal.api_id)
        return OpenSubscriptions(workflow_ids=requesting)

    @activity.defn
    async def record_progress(self, record: ProgressRecord) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await audit.append(conn, [audit.Entry(
                entry_id=record.entry_id, application_id=record.application_id,
                workflow_id=record.workflow_id, actor=record.actor, action=record.action,
                result=record.outcome, reason=record.reason, details=record.details)])
            if record.step is not None:
                await applications.move(conn, record.application_id, record.step, record.status)

    # --- contracts -------------------------------------------------------------------------

    @activity.defn
    async def record_contract(self, record: ContractRecord) -> None:
        terms = record.terms
        if "\x00" in terms.contract_number:  # an identifier: refused, not altered
            raise ApplicationError(
                "contract_number: contains a NUL character, which cannot be recorded",
                type="UnstorableText",
                non_retryable=True,
            )
        async with self.pool.acquire() as conn, conn.transaction():
            holder = await contracts.holder(conn, record.kind, terms.contract_number)
            if holder is not None and holder != record.application_id:
                raise ApplicationError(
                    f"contract number {terms.contract_number} is already recorded for another "
                    "application",
                    type="ContractNumberTaken",
                    non_retryable=True,
                )
            if holder is not None:
                return  # a retry: recorded by the first attempt
            await contracts.record(conn, contract_type=record.kind, terms=terms,
                                   business_registration_number=record.business_registration_number,
                                   application_id=record.application_id,
                                   recorded_by=record.recorded_by)
            await audit.append(conn, [_entry(
                f"{record.application_id}/contract/{record.kind}/{terms.contract_number}",
                record.application_id, "contract_recorded", actor=record.recorded_by,
                details={"contract_type": record.kind, "contract_number": terms.contract_number})])

    # --- keys ----------------------------------------------------------------------------

    @activity.defn
    async def issue_api_key(self, issuance: KeyIssuance) -> KeySummary:
        """Issue the key (once) and put its delivery (once) in the outbox."""
        if not self.settings.key_issuance_secret:
            raise ApplicationError("KEY_ISSUANCE_SECRET is not configured on this worker")
        key = keys.derive_key(self.settings.key_issuance_secret.get_secret_value(),
                              issuance.issuance_id, issuance.environment)
        async with self.pool.acquire() as conn, conn.transaction():
            summary, new = await key_store.issue(
                conn, issuance_id=issuance.issuance_id, application_id=issuance.application_id,
                business_registration_number=issuance.business_registration_number,
                environment=issuance.environment, scopes=issuance.scopes,
                valid_days=issuance.valid_days, key=key)
            if new:
                await outbox.enqueue(
                    conn, notice_id=f"{issuance.issuance_id}/delivery",
                    application_id=issuance.application_id, template="api_key_delivery",
                    language=issuance.language, recipients=issuance.recipients,
                    context={"environment": issuance.environment,
                             "issuance_id": issuance.issuance_id, "key_id": summary.key_id,
                             "display_prefix": summary.display_prefix})
                await audit.append(conn, [_entry(
                    f"{issuance.issuance_id}/issued", issuance.application_id, "api_key_issued",
                    details={"key_id": summary.key_id, "environment": issuance.environment,
                             "display_prefix": summary.display_prefix,
                             "scopes": issuance.scopes})])
        log.info("api key issued", key_id=summary.key_id, environment=summary.environment,
                 display_prefix=summary.display_prefix)
        return summary

    @activity.defn
    async def revoke_api_keys(self, revocation: KeyRevocation) -> list[KeySummary]:
        async with self.pool.acquire() as conn, conn.transaction():
            revoked = await key_store.revoke(conn, revocation.application_id, revocation.reason)
            await audit.append(conn, [
                _entry(f"{key.key_id}/revoked", revocation.application_id, "api_key_revoked",
                       reason=revocation.reason,
                       details={"key_id": key.key_id, "environment": key.environment})
                for key in revoked])
            return await key_store.of_application(conn, revocation.application_id)

    # --- notices -------------------------------------------------------------------------

    @activity.defn
    async def send_notice(self, notice: Notice) -> None:
        """Put the notice in the outbox (once), to the addresses and roles it names."""
        async with self.pool.acquire() as conn, conn.transaction():
            recipients = await outbox.recipients(conn, notice)
            if not recipients:
                log.warning("notice has no recipients", notice_id=notice.notice_id,
                            template=notice.template, role=notice.recipient_role)
                return
            if await outbox.enqueue(
                    conn, notice_id=notice.notice_id, application_id=notice.application_id,
                    template=notice.template, language=notice.language, recipients=recipients,
                    context=notice.context):
                await audit.append(conn, [_entry(
                    f"{notice.notice_id}/queued", notice.application_id, "notice_queued",
                    details={"notice_id": notice.notice_id, "template": notice.template,
                             "recipients": recipients})])

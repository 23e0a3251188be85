"""The platform's activities: thin adapters to PostgreSQL, the key store and mail.

They know nothing about steps. Each is idempotent under retry: what it writes is keyed by an
id the workflow chose (entry id, issuance id, notice id), so a retry after a crash finds what
the first attempt wrote and does not write, issue or send it again. Outcomes that change the
world are written to the audit log in the same transaction as the change itself.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from onboarding.core.config import Settings
from onboarding.core.logs import get_logger
from onboarding.domain import keys, notices
from onboarding.domain.admission import specification_too_large
from onboarding.domain.models import (
    ApiFacts,
    ApiPublication,
    ApiWithdrawal,
    ApplicationRecord,
    CatalogueFacts,
    CatalogueLookup,
    ContractRecord,
    ContractTerms,
    KeyIssuance,
    KeyRevocation,
    KeySummary,
    LaunchCheck,
    LicenceLookup,
    Notice,
    OpenSubscriptions,
    Organisation,
    ProgressRecord,
    PublicationRecord,
    SpecificationCheck,
    SpecificationSummary,
    SpecificationVerdict,
    StaffLookup,
    StaffRoles,
)
from onboarding.domain.openapi import SpecFindings, check_openapi
from onboarding.mail.mailer import Mailer, build_message

log = get_logger("activities")

_KEY_COLUMNS = "key_id, environment, display_prefix, scopes, expires_at, status"


def _storable(value: Any) -> Any:
    """`value` as PostgreSQL can keep it: its text cannot hold a NUL character, so each becomes
    U+FFFD. What people send (a decision's note, the fields of a refused payload) reaches the
    audit log and the outbox this way, instead of failing the write on every retry and so
    holding the application up for good."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_storable(v) for v in value]
    return value


def _key_summary(row: asyncpg.Record) -> KeySummary:
    return KeySummary(
        key_id=str(row["key_id"]),
        environment=row["environment"],
        display_prefix=row["display_prefix"],
        scopes=list(row["scopes"]),
        expires_at=row["expires_at"],
        status=row["status"],
    )


async def _audit(
    conn: asyncpg.Connection,
    entry_id: str,
    application_id: str,
    action: str,
    outcome: str,
    details: dict[str, object] | None = None,
    actor: str = "platform",
    reason: str = "",
) -> None:
    info = activity.info()
    await conn.execute(
        """INSERT INTO audit_log (entry_id, application_id, workflow_id, actor, action, outcome,
                                  reason, details)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (entry_id) DO NOTHING""",
        entry_id, application_id, info.workflow_id, _storable(actor), action, outcome,
        _storable(reason) or None, _storable(details or {}),
    )


async def _upsert_organisation(conn: asyncpg.Connection, org: Organisation) -> None:
    await conn.execute(
        """INSERT INTO organisations (business_registration_number,
               corporate_registration_number, legal_name, representative, contact_emails)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (business_registration_number) DO UPDATE SET
               corporate_registration_number = excluded.corporate_registration_number,
               legal_name = excluded.legal_name,
               representative = excluded.representative,
               contact_emails = excluded.contact_emails,
               updated_at = now()""",
        org.business_registration_number, org.corporate_registration_number,
        _storable(org.legal_name), _storable(org.representative),
        [str(e) for e in org.contact_emails],
    )


class PlatformActivities:
    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self.pool = pool
        self.settings = settings
        self.mailer = Mailer(settings)

    async def aclose(self) -> None:
        """Close what the activities keep open between runs (SMTP connections); the pool is
        the caller's."""
        await self.mailer.aclose()

    # --- catalogue, staff, applications --------------------------------------------------

    @activity.defn
    async def look_up_catalogue(self, lookup: CatalogueLookup) -> CatalogueFacts:
        rows = await self.pool.fetch(
            """SELECT c.api_id, c.name, c.is_market_data, c.publication_application_id,
                      coalesce(o.contact_emails, '{}') AS provider_contact_emails
               FROM api_catalogue c
               LEFT JOIN organisations o
                 ON o.business_registration_number = c.provider_business_registration_number
               WHERE c.api_id = ANY($1::text[]) AND c.stage <> 'withdrawn'""",
            lookup.api_ids,
        )
        found = {r["api_id"]: r for r in rows}
        return CatalogueFacts(
            apis=[
                ApiFacts(
                    api_id=r["api_id"],
                    name=r["name"],
                    is_market_data=r["is_market_data"],
                    provider_contact_emails=list(r["provider_contact_emails"]),
                    publication_application_id=r["publication_application_id"],
                )
                for api_id in lookup.api_ids
                if (r := found.get(api_id))
            ],
            unknown=[api_id for api_id in lookup.api_ids if api_id not in found],
        )

    @activity.defn
    async def look_up_staff_roles(self, lookup: StaffLookup) -> StaffRoles:
        rows = await self.pool.fetch(
            "SELECT role FROM staff_roles WHERE lower(staff_id) = lower($1) ORDER BY role",
            _storable(lookup.staff_id),  # with a NUL, nobody's: no roles
        )
        return StaffRoles(roles=[r["role"] for r in rows])

    @activity.defn
    async def record_application(self, record: ApplicationRecord) -> None:
        app = record.application
        async with self.pool.acquire() as conn, conn.transaction():
            await _upsert_organisation(conn, app.organisation)
            await conn.execute(
                """INSERT INTO applications (application_id, kind, business_registration_number,
                       workflow_id, status, current_step, requested_apis)
                   VALUES ($1, 'subscription', $2, $3, 'open', 'submitted', $4)
                   ON CONFLICT (application_id) DO UPDATE SET
                       requested_apis = excluded.requested_apis, updated_at = now()""",
                app.application_id, app.organisation.business_registration_number,
                record.workflow_id, app.requested_apis,
            )

    @activity.defn
    async def record_publication(self, record: PublicationRecord) -> None:
        app = record.application
        async with self.pool.acquire() as conn, conn.transaction():
            await _upsert_organisation(conn, app.organisation)
            await conn.execute(
                """INSERT INTO applications (application_id, kind, business_registration_number,
                       workflow_id, status, current_step, requested_apis)
                   VALUES ($1, 'publication', $2, $3, 'open', 'submitted', $4)
                   ON CONFLICT (application_id) DO NOTHING""",
                app.application_id, app.organisation.business_registration_number,
                record.workflow_id, [app.api.api_id],
            )

    # --- publication -----------------------------------------------------------------------

    @activity.defn
    async def check_specification(self, check: SpecificationCheck) -> SpecificationVerdict:
        # A revision is held to the submission's limits, the size included.
        if too_large := specification_too_large(check.specification):
            return SpecificationVerdict(summary=None, findings=[f"specification: {too_large}"])
        try:
            # Findings name the decision's field, as at submission (`specification.paths...`).
            summary = check_openapi(check.specification, "specification")
        except SpecFindings as refused:
            return SpecificationVerdict(summary=None, findings=refused.findings)
        return SpecificationVerdict(
            summary=SpecificationSummary(
                openapi_version=summary.openapi_version, title=summary.title,
                version=summary.version, operation_count=summary.operation_count,
                sha256=summary.sha256,
            ),
            findings=[],
        )

    @activity.defn
    async def publish_api(self, publication: ApiPublication) -> None:
        api, spec = publication.api, publication.specification_summary
        async with self.pool.acquire() as conn, conn.transaction():
            owner = await conn.fetchval(
                "SELECT publication_application_id FROM api_catalogue WHERE api_id = $1",
                api.api_id,
            )
            if owner is not None and owner != publication.application_id or (
                owner is None and await conn.fetchval(
                    "SELECT 1 FROM api_catalogue WHERE api_id = $1", api.api_id)
            ):
                raise ApplicationError(
                    f"api_id {api.api_id} is already in the catalogue for another provider",
                    type="ApiIdTaken",
                    non_retryable=True,
                )
            await conn.execute(
                """INSERT INTO api_catalogue (api_id, name, category, is_market_data,
                       provider_business_registration_number, stage, spec_version,
                       integration_method, publication_application_id)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                   ON CONFLICT (api_id) DO UPDATE SET
                       stage = excluded.stage, spec_version = excluded.spec_version,
                       integration_method = excluded.integration_method, updated_at = now()""",
                api.api_id, api.name, api.category, api.is_market_data,
                publication.provider_business_registration_number, publication.stage,
                spec.version, api.integration_method, publication.application_id,
            )
            written = await conn.fetchval(
                """INSERT INTO api_versions (api_id, spec_sha256, spec_version, specification,
                       stage) VALUES ($1, $2, $3, $4, $5)
                   ON CONFLICT DO NOTHING RETURNING true""",
                api.api_id, spec.sha256, spec.version, publication.specification,
                publication.stage,
            )
            if written:
                await _audit(
                    conn, f"{publication.application_id}/published/{publication.stage}/{spec.sha256}",
                    publication.application_id, "api_published", "succeeded",
                    {"api_id": api.api_id, "stage": publication.stage,
                     "spec_version": spec.version, "spec_sha256": spec.sha256},
                )

    @activity.defn
    async def withdraw_api(self, withdrawal: ApiWithdrawal) -> OpenSubscriptions:
        """Take the API out of the catalogue; returns the open subscriptions that requested it."""
        async with self.pool.acquire() as conn, conn.transaction():
            withdrawn = await conn.fetchval(
                """UPDATE api_catalogue SET stage = 'withdrawn', updated_at = now()
                   WHERE api_id = $1 AND publication_application_id = $2
                     AND stage <> 'withdrawn' RETURNING true""",
                withdrawal.api_id, withdrawal.application_id,
            )
            if withdrawn:
                await _audit(conn, f"{withdrawal.application_id}/withdrawn-from-catalogue",
                             withdrawal.application_id, "api_withdrawn_from_catalogue",
                             "succeeded", {"api_id": withdrawal.api_id})
            rows = await conn.fetch(
                """SELECT workflow_id FROM applications
                   WHERE kind = 'subscription' AND status = 'open' AND $1 = ANY(requested_apis)
                   ORDER BY workflow_id""",
                withdrawal.api_id,
            )
        return OpenSubscriptions(workflow_ids=[r["workflow_id"] for r in rows])

    @activity.defn
    async def check_service_launch(self, check: LaunchCheck) -> str:
        """Why the claimed launch is not on record ('' when it is)."""
        row = await self.pool.fetchrow(
            """SELECT a.requested_apis, EXISTS (
                   SELECT 1 FROM api_keys k WHERE k.application_id = a.application_id
                     AND k.environment = 'production' AND k.status = 'active') AS in_production
               FROM applications a WHERE a.application_id = $1 AND a.kind = 'subscription'""",
            check.subscription_application_id,
        )
        if row is None:
            return f"no subscription application {check.subscription_application_id}"
        if check.api_id not in row["requested_apis"]:
            return f"{check.subscription_application_id} does not use {check.api_id}"
        if not row["in_production"]:
            return f"{check.subscription_application_id} has no production key"
        return ""

    @activity.defn
    async def record_progress(self, record: ProgressRecord) -> None:
        # One statement, so one round trip (the most frequent activity): the entry and the
        # step change commit together, as a transaction of two statements would.
        await self.pool.execute(
            """WITH entry AS (
                   INSERT INTO audit_log (entry_id, application_id, workflow_id, actor, action,
                                          outcome, reason, details)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (entry_id) DO NOTHING)
               UPDATE applications SET current_step = $9, status = coalesce($10, status),
                   updated_at = now()
               WHERE application_id = $2 AND $9::text IS NOT NULL""",
            record.entry_id, record.application_id, record.workflow_id,
            _storable(record.actor), record.action, record.outcome,
            _storable(record.reason) or None,
            _storable(json.loads(json.dumps(record.details, default=str))),
            record.step, record.status,
        )

    # --- contracts and licences ----------------------------------------------------------

    @activity.defn
    async def find_market_data_licence(self, lookup: LicenceLookup) -> ContractTerms | None:
        row = await self.pool.fetchrow(
            """SELECT contract_number, signed_on, valid_from, valid_until FROM contracts
               WHERE kind = 'market_data_licence' AND business_registration_number = $1
                 AND valid_from <= $2 AND valid_until >= $2
               ORDER BY valid_until DESC LIMIT 1""",
            lookup.business_registration_number, lookup.on,
        )
        return ContractTerms(**dict(row)) if row else None

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
            existing = await conn.fetchrow(
                """SELECT business_registration_number, application_id FROM contracts
                   WHERE kind = $1 AND contract_number = $2""",
                record.kind, terms.contract_number,
            )
            if existing and (existing["business_registration_number"],
                             existing["application_id"]) != (
                record.business_registration_number, record.application_id
            ):
                raise ApplicationError(
                    f"contract number {terms.contract_number} is already recorded for another "
                    "application",
                    type="ContractNumberTaken",
                    non_retryable=True,
                )
            if existing:
                return  # a retry: recorded by the first attempt
            await conn.execute(
                """INSERT INTO contracts (kind, contract_number, business_registration_number,
                       application_id, signed_on, valid_from, valid_until, recorded_by)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
                record.kind, terms.contract_number, record.business_registration_number,
                record.application_id, terms.signed_on, terms.valid_from, terms.valid_until,
                record.recorded_by,
            )
            await _audit(
                conn, f"{record.application_id}/contract/{record.kind}/{terms.contract_number}",
                record.application_id,
                "contract_recorded", "succeeded",
                {"kind": record.kind, "contract_number": terms.contract_number},
                actor=record.recorded_by,
            )

    # --- keys ----------------------------------------------------------------------------

    @activity.defn
    async def issue_api_key(self, issuance: KeyIssuance) -> KeySummary:
        """Issue the key (once) and deliver it to the applicant's contacts (once)."""
        if not self.settings.key_issuance_secret:
            raise ApplicationError("KEY_ISSUANCE_SECRET is not configured on this worker")
        key = keys.derive_key(
            self.settings.key_issuance_secret.get_secret_value(),
            issuance.issuance_id,
            issuance.environment,
        )
        notice_id = f"{issuance.issuance_id}/delivery"
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"SELECT {_KEY_COLUMNS}, key_hash FROM api_keys WHERE issuance_id = $1",
                issuance.issuance_id,
            )
            if row is not None and bytes(row["key_hash"]) != keys.key_hash(key):
                # The secret changed since the key was issued: what we would deliver is not
                # the key on record. Never mail a key that does not work; an operator must act.
                raise ApplicationError(
                    f"key {row['key_id']} was issued with another KEY_ISSUANCE_SECRET; "
                    "restore that secret on this worker to deliver it",
                    type="KeySecretMismatch",
                    non_retryable=True,
                )
            if row is None:
                row = await conn.fetchrow(
                    f"""INSERT INTO api_keys (key_id, issuance_id, application_id,
                            business_registration_number, environment, key_hash,
                            display_prefix, scopes, expires_at)
                        VALUES (gen_random_uuid(), $1, $2, $3, $4, $5, $6, $7, $8)
                        RETURNING {_KEY_COLUMNS}""",
                    issuance.issuance_id, issuance.application_id,
                    issuance.business_registration_number, issuance.environment,
                    keys.key_hash(key), keys.display_prefix(key), issuance.scopes,
                    datetime.now(UTC) + timedelta(days=issuance.valid_days),
                )
                summary = _key_summary(row)
                await conn.execute(
                    """INSERT INTO notices (notice_id, application_id, template, language,
                           recipients, context) VALUES ($1, $2, 'api_key_delivery', $3, $4, $5)""",
                    notice_id, issuance.application_id, issuance.language, issuance.recipients,
                    {"environment": issuance.environment, "key_id": summary.key_id,
                     "display_prefix": summary.display_prefix},
                )
                await _audit(
                    conn, f"{issuance.issuance_id}/issued", issuance.application_id,
                    "api_key_issued", "succeeded",
                    {"key_id": summary.key_id, "environment": issuance.environment,
                     "display_prefix": summary.display_prefix, "scopes": issuance.scopes},
                )
            summary = _key_summary(row)
            delivered = await conn.fetchval(
                "SELECT status = 'sent' FROM notices WHERE notice_id = $1", notice_id
            )
        if not delivered:
            if not self.settings.smtp_host:
                # The key can only reach the applicant by mail; wait (retrying) for SMTP.
                raise ApplicationError("SMTP_HOST is not configured: the key cannot be delivered")
            subject, body = notices.render(
                "api_key_delivery",
                issuance.language,
                {
                    "application_id": issuance.application_id,
                    "environment": issuance.environment,
                    "api_key": key,
                    "scopes": ", ".join(summary.scopes),
                    "expires_at": summary.expires_at.date().isoformat(),
                },
            )
            await self.mailer.send(
                build_message(
                    self.settings, notice_id, issuance.recipients, subject, body
                )
            )
            await self._mark_sent(notice_id, issuance.application_id, "api_key_delivery")
        log.info("api key issued", key_id=summary.key_id, environment=summary.environment,
                 display_prefix=summary.display_prefix)
        return summary

    @activity.defn
    async def revoke_api_keys(self, revocation: KeyRevocation) -> list[KeySummary]:
        async with self.pool.acquire() as conn, conn.transaction():
            revoked = await conn.fetch(
                f"""UPDATE api_keys SET status = 'revoked', revoked_at = now(),
                        revoked_reason = $2
                    WHERE application_id = $1 AND status = 'active'
                    RETURNING {_KEY_COLUMNS}""",
                revocation.application_id, revocation.reason,
            )
            for row in revoked:
                await _audit(
                    conn, f"{row['key_id']}/revoked", revocation.application_id,
                    "api_key_revoked", "succeeded",
                    {"key_id": str(row["key_id"]), "environment": row["environment"]},
                    reason=revocation.reason,
                )
            rows = await conn.fetch(
                f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE application_id = $1 ORDER BY issued_at",
                revocation.application_id,
            )
        return [_key_summary(r) for r in rows]

    # --- notices -------------------------------------------------------------------------

    @activity.defn
    async def send_notice(self, notice: Notice) -> None:
        # Lookups and the outbox write on one connection, the outbox write as one statement:
        # round trips are most of an activity's cost to the worker and to PostgreSQL.
        async with self.pool.acquire() as conn:
            recipients = list(notice.recipients)
            if notice.recipient_role:
                recipients += [
                    r["staff_id"]
                    for r in await conn.fetch(
                        "SELECT staff_id FROM staff_roles WHERE role = $1 ORDER BY staff_id",
                        notice.recipient_role.value,
                    )
                ]
            if notice.to_member_companies:
                recipients += [
                    r["contact"]
                    for r in await conn.fetch(
                        """SELECT DISTINCT unnest(o.contact_emails) AS contact
                           FROM organisations o JOIN api_catalogue c
                             ON c.provider_business_registration_number =
                                o.business_registration_number
                           WHERE c.stage <> 'withdrawn'"""
                    )
                ]
            recipients = sorted(set(recipients))
            if not recipients:
                log.warning("notice has no recipients", notice_id=notice.notice_id,
                            template=notice.template, role=notice.recipient_role)
                return
            context = _storable(notice.context)
            subject, body = notices.render(notice.template, notice.language, context)
            # Written (and its queueing audited) once; the status of the notice as it now
            # stands. A statement does not see its own inserts: a new notice's status comes
            # from `written`, an existing one's from the table.
            status = await conn.fetchval(
                """WITH written AS (
                       INSERT INTO notices (notice_id, application_id, template, language,
                           recipients, context) VALUES ($1, $2, $3, $4, $5, $6)
                       ON CONFLICT (notice_id) DO NOTHING RETURNING status),
                   queued AS (
                       INSERT INTO audit_log (entry_id, application_id, workflow_id, actor,
                                              action, outcome, details)
                       SELECT $7::text, $2, $8::text, 'platform', 'notice_queued', 'succeeded',
                              $9::jsonb
                       FROM written ON CONFLICT (entry_id) DO NOTHING)
                   SELECT status FROM written
                   UNION ALL SELECT status FROM notices WHERE notice_id = $1""",
                notice.notice_id, notice.application_id, notice.template, notice.language,
                recipients, context, f"{notice.notice_id}/queued", activity.info().workflow_id,
                _storable({"notice_id": notice.notice_id, "template": notice.template,
                           "recipients": recipients}),
            )
        if status == "sent":
            return
        if not self.settings.smtp_host:
            log.info("notice kept in the outbox: SMTP is not configured",
                     notice_id=notice.notice_id, template=notice.template)
            return
        await self.mailer.send(
            build_message(self.settings, notice.notice_id, recipients, subject, body)
        )
        await self._mark_sent(notice.notice_id, notice.application_id, notice.template)

    async def _mark_sent(self, notice_id: str, application_id: str, template: str) -> None:
        # Marked sent and audited once, in one statement (one round trip).
        await self.pool.execute(
            """WITH sent AS (
                   UPDATE notices SET status = 'sent', sent_at = now(), attempts = attempts + 1
                   WHERE notice_id = $1 AND status = 'pending' RETURNING notice_id)
               INSERT INTO audit_log (entry_id, application_id, workflow_id, actor, action,
                                      outcome, details)
               SELECT $2::text, $3::text, $4::text, 'platform', 'notice_sent', 'succeeded',
                      $5::jsonb FROM sent
               ON CONFLICT (entry_id) DO NOTHING""",
            notice_id, f"{notice_id}/sent", application_id, activity.info().workflow_id,
            _storable({"notice_id": notice_id, "template": template}),
        )
        log.info("notice sent", notice_id=notice_id, template=template)

    def all(self) -> list:
        return [
            self.look_up_catalogue,
            self.look_up_staff_roles,
            self.record_application,
            self.record_publication,
            self.record_progress,
            self.check_specification,
            self.publish_api,
            self.withdraw_api,
            self.check_service_launch,
            self.find_market_data_licence,
            self.record_contract,
            self.issue_api_key,
            self.revoke_api_keys,
            self.send_notice,
        ]

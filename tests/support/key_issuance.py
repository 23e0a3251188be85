"""An API key issued the real way (the record's commit, the relay's mail), without a workflow;
and revoked the same way."""

from __future__ import annotations

import asyncpg
from temporalio.testing import ActivityEnvironment

from activities.records import Records
from onboarding.core.config import Settings
from onboarding.domain.admission import prepare_subscription
from onboarding.domain.models import SubscriptionApplication
from onboarding.domain.record import ApplicationOnRecord, Commit, Committed, KeyIssued, KeysRevoked
from onboarding.mail.relay import Relay
from tests.support import data
from tests.support.inbox import Inbox
from tests.support.leaks import delivered_key


async def commit(pool: asyncpg.Pool, settings: Settings, application: SubscriptionApplication,
                 *entries) -> Committed:
    """`write_record` of these entries (numbered after the application's id), as a workflow's
    commit would write them."""
    return await ActivityEnvironment().run(Records(pool, settings).write_record, Commit(
        application_id=application.application_id, workflow_id=application.application_id,
        business_registration_number=application.organisation.business_registration_number,
        step="test", entries=list(entries)))


async def issue_key(pool: asyncpg.Pool, settings: Settings, inbox: Inbox,
                    environment: str = "sandbox") -> tuple[SubscriptionApplication, str]:
    """A fresh application's key for `environment`, as its holder received it by mail."""
    app = prepare_subscription(data.subscription_form(apis=["account-balance"]), settings)
    await commit(pool, settings, app,
                 ApplicationOnRecord(seq=0, process="subscription", organisation=app.organisation,
                                     requested_apis=app.requested_apis),
                 KeyIssued(seq=1, environment=environment, scopes=["account-balance"],
                           valid_days=30, recipients=[str(app.organisation.contact_emails[0])],
                           language="en"))
    notice = f"{app.application_id}/key/{environment}/delivery"
    relay = Relay(pool, settings)
    await relay.send_one(notice)
    await relay.mailer.aclose()
    [mail] = inbox.with_notice(notice)
    return app, delivered_key(mail)


async def revoke_keys(pool: asyncpg.Pool, settings: Settings, app: SubscriptionApplication,
                      reason: str, seq: int = 2) -> Committed:
    return await commit(pool, settings, app, KeysRevoked(seq=seq, reason=reason))

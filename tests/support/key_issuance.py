"""An API key issued the real way (the activities, the relay's mail), without a workflow."""

from __future__ import annotations

import re

import asyncpg
from temporalio.testing import ActivityEnvironment

from activities.platform import PlatformActivities
from onboarding.core.config import Settings
from onboarding.mail.relay import Relay
from onboarding.domain.admission import prepare_subscription
from onboarding.domain.models import ApplicationRecord, KeyIssuance, SubscriptionApplication
from tests.support import data
from tests.support.inbox import Inbox, body


async def issue_key(pool: asyncpg.Pool, settings: Settings, inbox: Inbox,
                    environment: str = "sandbox"
                    ) -> tuple[PlatformActivities, ActivityEnvironment, SubscriptionApplication, str]:
    """A fresh application's key for `environment`, as its holder received it by mail; with
    the activities and the environment that issued it."""
    acts = PlatformActivities(pool, settings)
    app = prepare_subscription(data.subscription_form(apis=["account-balance"]), settings)
    env = ActivityEnvironment()
    await env.run(acts.record_application,
                  ApplicationRecord(application=app, workflow_id=app.application_id))
    issuance_id = f"{app.application_id}/key/{environment}"
    await env.run(acts.issue_api_key, KeyIssuance(
        issuance_id=issuance_id, application_id=app.application_id,
        business_registration_number=app.organisation.business_registration_number,
        environment=environment, scopes=["account-balance"], valid_days=30,
        recipients=[str(app.organisation.contact_emails[0])], language="en"))
    relay = Relay(pool, settings)
    await relay.send_one(f"{issuance_id}/delivery")
    await relay.mailer.aclose()
    [mail] = inbox.with_notice(f"{issuance_id}/delivery")
    key = re.search(r"API key: (\S+)", body(mail))[1]
    return acts, env, app, key

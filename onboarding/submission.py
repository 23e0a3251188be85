"""Submission: everything checked before an application's workflow is started.

A refusal names each field and the rule it breaks, and nothing is started.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import asyncpg
from pydantic import ValidationError

from onboarding.config import Settings
from onboarding.models import (
    DeadlinePolicy,
    KeyValidity,
    SubscriptionApplication,
    SubscriptionForm,
)
from onboarding.registration import (
    RegistrationNumberError,
    check_business_registration_number,
    check_corporate_registration_number,
)


@dataclass(frozen=True)
class Refusal:
    field: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message} [{self.rule}]"


class SubmissionRefused(ValueError):
    def __init__(self, refusals: list[Refusal]) -> None:
        super().__init__("submission refused:\n" + "\n".join(f"  - {r}" for r in refusals))
        self.refusals = refusals


def application_id_for(business_registration_number: str, service_name: str) -> str:
    """The same organisation applying again for the same service is the same application."""
    digest = hashlib.sha256(" ".join(service_name.casefold().split()).encode()).hexdigest()
    return f"subscription-{business_registration_number}-{digest[:12]}"


def prepare_subscription(raw: dict[str, Any], settings: Settings) -> SubscriptionApplication:
    """Check a submitted form and turn it into the workflow's input (catalogue not checked)."""
    try:
        form = SubscriptionForm.model_validate(raw)
    except ValidationError as err:
        raise SubmissionRefused(
            [
                Refusal(".".join(str(p) for p in e["loc"]) or "(submission)", e["type"], e["msg"])
                for e in err.errors()
            ]
        ) from None
    org = form.organisation
    refusals: list[Refusal] = []
    flags: list[str] = []
    prefix = "organisation."
    try:
        brn = check_business_registration_number(
            org.business_registration_number, prefix + "business_registration_number"
        )
        flags += brn.reviewer_flags
    except RegistrationNumberError as err:
        refusals.append(Refusal(err.field, err.rule, str(err).split(": ", 1)[1]))
    try:
        crn = check_corporate_registration_number(
            org.corporate_registration_number, prefix + "corporate_registration_number"
        )
        flags += crn.reviewer_flags
    except RegistrationNumberError as err:
        refusals.append(Refusal(err.field, err.rule, str(err).split(": ", 1)[1]))
    if refusals:
        raise SubmissionRefused(refusals)
    organisation = org.model_copy(
        update={
            "business_registration_number": brn.number,
            "corporate_registration_number": crn.number,
            "contact_emails": [str(e).lower() for e in org.contact_emails],
        }
    )
    return SubscriptionApplication(
        application_id=application_id_for(brn.number, form.service.name),
        organisation=organisation,
        service=form.service,
        requested_apis=form.requested_apis,
        deadlines=DeadlinePolicy(
            remind_after_days=settings.remind_after_days,
            escalate_after_days=settings.escalate_after_days,
            lapse_after_days=settings.lapse_after_days,
        ),
        key_validity=KeyValidity(
            sandbox_days=settings.sandbox_key_valid_days,
            production_days=settings.production_key_valid_days,
        ),
        reviewer_flags=flags,
    )


async def check_catalogue(pool: asyncpg.Pool, application: SubscriptionApplication) -> None:
    """Refuse APIs the catalogue does not offer, naming each."""
    offered = {
        r["api_id"]
        for r in await pool.fetch(
            "SELECT api_id FROM api_catalogue WHERE api_id = ANY($1::text[]) AND stage <> 'withdrawn'",
            application.requested_apis,
        )
    }
    unknown = [a for a in application.requested_apis if a not in offered]
    if unknown:
        raise SubmissionRefused(
            [Refusal("requested_apis", "not_in_catalogue",
                     f"not in the API catalogue: {', '.join(unknown)}")]
        )

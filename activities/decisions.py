"""A decision's verification: may the person who sent it take it? Run as a local activity, when
the decision arrives (workflows/process.py).

Today's rules: the typed `decided_by` is who decided. Staff must hold the decision's role in
the roster (looked up now: the roster may change while an application waits for weeks); the
applicant is recognised by the organisation's registered contacts; four eyes excludes whoever
took an earlier decision named by the catalogue. From issue 12 on, a verified identity (the
decision's attestation) replaces the typed name: the input already carries what that needs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
from temporalio import activity

from onboarding.core.config import Settings
from onboarding.domain.models import Model, Role
from onboarding.store import catalogue


class DecisionCheck(Model):
    """Everything the verdict depends on besides the roster, so that it is in the history."""

    application_id: str
    organisation: str  # the applicant's business registration number
    decision: str  # its name
    decision_id: str
    content: dict[str, Any]  # the decision as received
    attestation: str | None = None  # issue 12
    role: Role
    # Four eyes: who may not take it (they took an earlier decision of the application).
    not_by: list[str] = []
    applicant_contacts: list[str] = []
    received_at: datetime
    decided_by: str | None = None


class Verification(Model):
    """Who decided, or why the decision is refused."""

    person: str | None = None
    reason: str = ""


class Decisions:
    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self.pool = pool

    @activity.defn
    async def verify_decision(self, check: DecisionCheck) -> Verification:
        person = check.decided_by
        if not person:
            return Verification(reason="decided_by: who takes the decision must be given")
        if check.role is Role.APPLICANT:
            if person.lower() not in check.applicant_contacts:
                return Verification(reason=f"{person} is not a registered contact of the "
                                           "applicant")
        elif check.role not in await self.roles_of(person):
            return Verification(reason=f"{person} does not hold the role {check.role.value}")
        if person.lower() in check.not_by:
            return Verification(reason=f"{person} took an earlier decision of this application "
                                       "that must be taken by someone else (four eyes)")
        return Verification(person=person)

    async def roles_of(self, person: str) -> list[Role]:
        """The roles the roster gives `person` now."""
        return await catalogue.staff_roles(self.pool, person)

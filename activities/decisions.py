"""A decision's verification: may whoever sealed it take it? Run as a local activity, when the
decision arrives (workflows/process.py), or inside the commit that follows a decision applied
before its verification (activities/records.py, `commit_decision`); either way the verdict is
in the history and a replay never needs a sealing key rotated away since.

The rules are onboarding.identity.decisions.verify_decision's (docs/identity.md): the seal
(SEALING_VERIFICATION_KEYS), a typed `decided_by` naming the verified identity, the role in the
roster on issuer + subject (looked up now: the roster may change while an application waits
for weeks; `Decisions.roster` is the one read of it), the applicant's contacts by verified
e-mail, four eyes on identities.
"""

from __future__ import annotations

import asyncpg
from temporalio import activity

from onboarding.core.config import Settings
from onboarding.domain.models import Model
from onboarding.identity.attestation import AttestationVerifier, verification_keys
from onboarding.identity.decisions import Roster, verify_decision
from onboarding.identity.models import DecisionCheck, VerifiedIdentity
from onboarding.store.identities import PoolRoster

__all__ = ["DecisionCheck", "Decisions", "Verification"]


class Verification(Model):
    """Who decided, or why the decision is refused.

    `identity` is who sealed it, when the seal held (also for a decision then refused for its
    role or four eyes); `person` is how the record names them (the verified e-mail, a service's
    client id). Verdicts kept in histories from before decisions were sealed carry `person`
    alone, the typed name they checked: they replay as they were taken.
    """

    person: str | None = None
    reason: str = ""
    identity: VerifiedIdentity | None = None


class Decisions:
    def __init__(self, pool: asyncpg.Pool, settings: Settings,
                 roster: Roster | None = None) -> None:
        if not settings.sealing_verification_keys:
            raise ValueError("SEALING_VERIFICATION_KEYS is not set: no decision could be "
                             "verified")
        self.seals = AttestationVerifier(verification_keys(settings.sealing_verification_keys))
        self.roster: Roster = roster or PoolRoster(pool)

    @activity.defn
    async def verify_decision(self, check: DecisionCheck) -> Verification:
        verdict = await verify_decision(check, self.seals, self.roster)
        return Verification(person=verdict.identity.shown_as() if verdict.identity else None,
                            reason=verdict.reason, identity=verdict.identity)

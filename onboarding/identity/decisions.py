"""A decision's verification, as the workflow's `verify_decision` local activity runs it.

In this order, the first failing check giving the reason on the record:
1. the seal (onboarding.identity.attestation): present, signed by a sealing key, not expired
   when received, for this application, this decision (name and id) and this content;
2. a typed `decided_by`, when the decision still carries one, names the verified identity
   (its verified e-mail; a service's client id): a mismatch is refused, so that nobody reading
   the raw history is misled by a typed name;
3. who may take it:
   - a staff role: a person (a service never counts as staff) holding the role in the roster,
     found by issuer + subject (never by e-mail);
   - the applicant: a person whose verified e-mail is one of the applicant's contacts, or a
     service the roster lists as acting for the applicant's organisation;
4. four eyes: not one of `not_by` (issuer + subject), nor enrolled under one of the staff ids
   of `not_by_staff` (earlier decisions taken by a typed name, before decisions were sealed).

No I/O here but the roster's, passed in (onboarding.store.identities.PoolRoster in the worker).
"""

from __future__ import annotations

from typing import Protocol

from onboarding.identity.attestation import AttestationVerifier
from onboarding.identity.models import DecisionCheck, DecisionVerdict, IdentityRef, VerifiedIdentity

APPLICANT = "applicant"


class Roster(Protocol):
    async def staff_roles(self, person: IdentityRef) -> list[str]:
        """The roles the staff member with this identity holds; [] for anyone else."""

    async def acts_for(self, issuer: str, client_id: str, organisation: str) -> bool:
        """Whether the roster lists this service as acting for this organisation."""

    async def staff_id(self, person: IdentityRef) -> str | None:
        """The staff id (e-mail address) the roster enrolled this identity under, if any."""


def _named(identity: VerifiedIdentity) -> str | None:
    return identity.client_id if identity.kind == "service" else identity.email


async def verify_decision(check: DecisionCheck, seals: AttestationVerifier,
                          roster: Roster) -> DecisionVerdict:
    who = seals.check(check.attestation, check.application_id, check.decision,
                      check.decision_id, check.content, check.received_at)
    if isinstance(who, str):
        return DecisionVerdict(reason=who)
    refused = lambda reason: DecisionVerdict(identity=who, reason=reason)  # noqa: E731
    shown = who.shown_as()

    typed = (check.decided_by or "").strip()
    if typed and typed.lower() != (_named(who) or "").lower():
        return refused(f"decided_by {typed} is not the verified identity ({shown})")

    if check.role == APPLICANT:
        if who.kind == "service":
            if not who.client_id or not await roster.acts_for(who.issuer, who.client_id,
                                                              check.organisation):
                return refused(f"{shown} is not listed as acting for organisation "
                               f"{check.organisation}")
        elif who.email is None:
            return refused(f"{shown} has no verified e-mail address: applicant contacts are "
                           "recognised by it")
        elif who.email not in {c.lower() for c in check.applicant_contacts}:
            return refused(f"{who.email} is not a registered contact of the applicant")
    else:
        if who.kind == "service":
            return refused(f"{shown} is a service: a {check.role} decision needs a person")
        if check.role not in await roster.staff_roles(who.ref()):
            return refused(f"{shown} does not hold the role {check.role}")

    if who.ref() in check.not_by or (
            check.not_by_staff and (await roster.staff_id(who.ref()) or "").lower()
            in {s.lower() for s in check.not_by_staff}):
        return refused(f"{shown} took an earlier decision of this application that must be "
                       "taken by someone else (four eyes)")
    return DecisionVerdict(identity=who)

"""What a verified identity is, and the inputs and answer of a decision's verification.

Pure: importable by workflow code.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


ATTESTATION = "attestation"  # the decision's field holding its seal


def decision_content(decision: BaseModel) -> dict[str, Any]:
    """A decoded decision's content, as its seal binds it: the fields set, as JSON, without the
    seal. The sealer normalises what it seals to this form (onboarding.identity.attestation),
    so the worker's copy hashes the same whichever way the decision travelled (a signal's raw
    JSON, an update's model) and under whichever field name it was sent (`outcome`, read as
    `verdict`)."""
    return decision.model_dump(mode="json", exclude_unset=True, exclude={ATTESTATION})


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IdentityRef(Frozen):
    """A person or service as the provider names it for good: issuer + subject. An e-mail
    address can change hands; the subject of an issuer does not."""

    issuer: str
    subject: str

    def __str__(self) -> str:
        return f"{self.subject} at {self.issuer}"


class VerifiedIdentity(IdentityRef):
    """Who sent a request, as its verified access token says.

    - `kind`: "person" (a signed-in human) or "service" (an OAuth2 client acting for itself:
      client credentials). See `onboarding.identity.tokens.kind_of` for the rule.
    - `email`: only when the provider says it is verified (`email_verified: true`), else None.
      It shows who the person is; it identifies an applicant's contact, never a staff member.
    - `client_id`: the OAuth2 client that obtained the token (for a service: the service).
    """

    kind: Literal["person", "service"]
    email: str | None = None
    name: str | None = None
    client_id: str | None = None

    def ref(self) -> IdentityRef:
        return IdentityRef(issuer=self.issuer, subject=self.subject)

    def shown_as(self) -> str:
        """How the record names them: the verified e-mail, else the service's client id, else
        the subject."""
        if self.kind == "service":
            return f"service {self.client_id or self.subject}"
        return self.email or self.name or self.subject


class DecisionCheck(Frozen):
    """The input of the workflow's `verify_decision` (design §8): everything is passed in, so
    the verdict depends on nothing but this and the keys and roster at the time it runs, and
    is kept in the history."""

    application_id: str
    # The applicant's business registration number: services act for organisations.
    organisation: str
    decision: str  # the decision's name, the signal's or update's
    decision_id: str
    # The decision's JSON as received, `attestation` included or not (it is left out of the
    # digest). See `onboarding.identity.attestation.decision_content`.
    content: dict[str, Any]
    attestation: str | None = None
    # Who may take it: a staff role ("final_approver", ...), or "applicant".
    role: str
    # Four eyes: people who may not take this decision (e.g. who took pre-verification).
    not_by: list[IdentityRef] = []
    # Four eyes for such decisions taken before decisions were sealed (an application already
    # running when this was deployed): their typed staff ids, matched through the roster's
    # enrolment of the verified identity.
    not_by_staff: list[str] = []
    # The applicant's contacts (e-mail addresses), matched against the verified e-mail.
    applicant_contacts: list[str] = []
    received_at: datetime
    # A typed `decided_by` is not trusted; when present it must match the verified e-mail.
    decided_by: str | None = None


class DecisionVerdict(Frozen):
    """The answer: who decided (verified), or why the decision is refused."""

    identity: VerifiedIdentity | None = None
    reason: str = ""

    @property
    def applied(self) -> bool:
        return self.identity is not None and not self.reason


# Refusal reasons, worded for the record.
NOT_VERIFIED = "identity not verified"
BAD_SIGNATURE = "bad signature"
EXPIRED = "expired"
OTHER_APPLICATION = "sealed for another application"
OTHER_DECISION = "sealed for another decision"
OTHER_CONTENT = "sealed for other content"
UNKNOWN_KEY = "unknown sealing key"
# Refused for its seal: nobody is known to have sent the decision.
SEAL_REFUSALS = frozenset({NOT_VERIFIED, BAD_SIGNATURE, EXPIRED, OTHER_APPLICATION,
                           OTHER_DECISION, OTHER_CONTENT, UNKNOWN_KEY})

"""Decisions sealed in tests as the codec server seals them, for the person they name.

Most tests are about the process, not about who may reach it. Their decisions name their
sender in `decided_by`, and `SealAsTyped`, a client interceptor, seals each one for that person
as the codec server seals for a signed-in sender: the same `Sealer.seal_decision`, the run's
sealing key, the person at TEST_ISSUER under the subject the dev identity provider gives them.
The workers check those seals for real, against a roster that enrols the test staff there
(`data.enrol_staff`; in memory for the quick layer: `MemoryRoster`).

Tests about who may reach the process take the real way instead: a token from the identity
provider and the codec server (test_cli.py, test_impersonation.py, test_web_ui.py, the
walkthrough), or no seal at all: a decision that carries `attestation` (even None) is left as
it is, and so is one without `decided_by`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from pydantic import BaseModel
from temporalio import client as temporal

from onboarding.devstack.identity_provider import subject_for
from onboarding.identity.attestation import Sealer, Unsealable, new_sealing_key, sealing_keys
from onboarding.identity.models import ATTESTATION, IdentityRef, VerifiedIdentity

TEST_ISSUER = "https://identity.test.invalid"
SEALING_KEY, SEALING_VERIFICATION_KEY = new_sealing_key("test-seal")
# Time on the time-skipping server runs ahead of the clock (weeks for every test of deadlines,
# years over a session): a seal made now must still hold when the workflow receives it.
SEALER = Sealer(sealing_keys(SEALING_KEY), ttl=timedelta(days=365 * 200))


def person(email: str, issuer: str = TEST_ISSUER) -> VerifiedIdentity:
    return VerifiedIdentity(issuer=issuer, subject=subject_for(email), kind="person",
                            email=email.lower())


def sealed(decision: dict[str, Any], application_id: str, name: str,
           by: VerifiedIdentity | None = None) -> dict[str, Any]:
    """`decision` as the codec server sends it on for `by` (else whom `decided_by` names)."""
    content = {"application_id": application_id, "decision": name, **decision}
    return SEALER.seal_decision(by or person(content["decided_by"]), content)


def _sealed_arg(arg: Any, application_id: str, name: str) -> Any:
    content = arg.model_dump(mode="json", exclude_unset=True) if isinstance(arg, BaseModel) \
        else arg
    if not isinstance(content, dict) or "decision_id" not in content \
            or ATTESTATION in content or not isinstance(content.get("decided_by"), str) \
            or not content["decided_by"]:
        return arg
    try:
        return sealed(content, application_id, name)
    except Unsealable:  # malformed on purpose: the workflow refuses it on the record
        return arg


class _Outbound(temporal.OutboundInterceptor):
    async def start_workflow(self, input: temporal.StartWorkflowInput
                             ) -> temporal.WorkflowHandle[Any, Any]:
        """A start whose input is a decision (`retire_api`) sealed like a signal's."""
        input.args = [_sealed_arg(a, input.id, getattr(a, "decision", None) or "")
                      if isinstance(a, BaseModel) and getattr(a, "decision", None) else a
                      for a in input.args]
        return await super().start_workflow(input)

    async def signal_workflow(self, input: temporal.SignalWorkflowInput) -> None:
        input.args = [_sealed_arg(a, input.id, input.signal) for a in input.args]
        await super().signal_workflow(input)

    async def start_workflow_update(self, input: temporal.StartWorkflowUpdateInput
                                    ) -> temporal.WorkflowUpdateHandle[Any]:
        input.args = [_sealed_arg(a, input.id, input.update) for a in input.args]
        return await super().start_workflow_update(input)


class SealAsTyped(temporal.Interceptor):
    """Seals every decision a client sends for the person its `decided_by` names."""

    def intercept_client(self, next: temporal.OutboundInterceptor
                         ) -> temporal.OutboundInterceptor:
        return _Outbound(next)


def sealing(client: temporal.Client) -> temporal.Client:
    """`client`, sealing what it sends (SealAsTyped)."""
    return temporal.Client(**{**client.config(),
                              "interceptors": [*client.config()["interceptors"], SealAsTyped()]})


def unsealed(client: temporal.Client) -> temporal.Client:
    """`client` without SealAsTyped: what it sends arrives as typed."""
    return temporal.Client(**{**client.config(), "interceptors": [
        i for i in client.config()["interceptors"] if not isinstance(i, SealAsTyped)]})


class MemoryRoster:
    """The roster (onboarding.identity.decisions.Roster) in memory: `staff` as (e-mail, role)
    pairs, enrolled at TEST_ISSUER under their dev-provider subjects; services by mandate."""

    def __init__(self, staff: Iterable[tuple[str, str]],
                 mandates: Sequence[tuple[str, str, str]] = ()) -> None:
        self.enrolled: dict[IdentityRef, str] = {}
        self.roles: dict[str, list[str]] = {}
        for email, role in staff:
            self.enrolled[person(email).ref()] = email
            self.roles.setdefault(email, []).append(role)
        self.mandates = set(mandates)

    async def staff_roles(self, who: IdentityRef) -> list[str]:
        return sorted(self.roles.get(self.enrolled.get(who, ""), []))

    async def acts_for(self, issuer: str, client_id: str, organisation: str) -> bool:
        return (issuer, client_id, organisation) in self.mandates

    async def staff_id(self, who: IdentityRef) -> str | None:
        return self.enrolled.get(who)

"""Stop 8 (e1bc065), frozen, for the applications it started: see workflows/legacy/__init__.py.

What every application process shares: decisions, waiting with deadlines, the record.

`Procedure` is held by a workflow and does, once for every process:

- decisions: a decision is checked (does it fit the step? is it a repeat? may this person take
  it?), then applied or refused, and either way recorded in the query's history and the audit
  log. A decision that does not apply never raises into the workflow.
- waiting: a step that waits on a person reminds the responsible team, escalates, and (when it
  waits on the applicant) lets the application lapse, each after its configured number of days
  counted from when the step began.
- the record: the current step and whom it waits on go to search attributes and to the
  application's row; notices go out through the outbox activity.

Deterministic: it talks to the world only through activities.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any, Literal, TypeVar

from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from onboarding.domain.models import (
        DeadlinePolicy,
        KeySummary,
        Language,
        Notice,
        PublicationApplication,
        Role,
        SubscriptionApplication,
    )
    from workflows.legacy.models import (
        ApiWithdrawn,
        ApplicationStatus,
        Deadline,
        Decision,
        DecisionOutcome,
        DecisionRecord,
        ProgressRecord,
        StaffLookup,
        StaffRoles,
    )
    from onboarding.temporal import search_attributes as sa

from workflows import versions

# Activities that only read or record retry for as long as it takes (a database restart must
# not fail an application); each attempt is bounded. The worker heartbeats for every running
# attempt (activities/heartbeat.py): an attempt on a worker that died is retried elsewhere after
# the heartbeat timeout, not after its start-to-close timeout.
ACTIVITY = dict(
    start_to_close_timeout=timedelta(seconds=30),
    heartbeat_timeout=timedelta(seconds=10),
    retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1)),
)

Ending = Literal["rejected", "withdrawn", "lapsed"]


class ApplicationEnded(Exception):
    """Raised out of a wait when the application ends before its step is decided."""

    def __init__(self, how: Ending, step: str, actor: str, note: str) -> None:
        super().__init__(f"{how} at {step}")
        self.how, self.step, self.actor, self.note = how, step, actor, note


D = TypeVar("D", bound=Decision)

# A check of a decision against the application's state: a reason to refuse, or None.
Check = Callable[[Decision], str | None]


def always(_: Decision) -> str | None:
    return None


def needs_note_unless_approved(d: Decision) -> str | None:
    outcome = getattr(d, "outcome", "approve")
    if outcome != "approve" and not d.note:
        return f"{outcome} needs a note saying why"
    return None


class Procedure:
    def __init__(
        self,
        *,
        kind: Literal["subscription", "publication"],
        application_id: str,
        organisation_id: str,
        organisation_name: str,
        applicant_contacts: list[str],
        language: Language,
        deadlines: DeadlinePolicy,
        reviewer_flags: list[str],
    ) -> None:
        self.kind = kind
        self.application_id = application_id
        self.organisation_id = organisation_id
        self.organisation_name = organisation_name
        self.applicant_contacts = [c.lower() for c in applicant_contacts]
        self.language = language
        self.deadlines = deadlines
        self.reviewer_flags = reviewer_flags
        self.withdrawn_apis: list[str] = []

        self.step = "submitted"
        self.waiting_on = ""
        self.waiting_since = workflow.now()
        self.due: list[Deadline] = []
        self.decisions: list[DecisionRecord] = []
        self.keys: dict[str, KeySummary] = {}
        self.outcome = ""

        # The step's expected decision kind, and the decision that settled it.
        self._expected: dict[str, Check] = {}
        self._settled: Decision | None = None
        self._ended: ApplicationEnded | None = None
        self._seen: set[str] = set()
        self._lock = asyncio.Lock()
        self._entries = 0

    @classmethod
    def for_application(
        cls,
        kind: Literal["subscription", "publication"],
        application: SubscriptionApplication | PublicationApplication,
    ) -> Procedure:
        org = application.organisation
        return cls(
            kind=kind,
            application_id=application.application_id,
            organisation_id=org.business_registration_number,
            organisation_name=org.legal_name,
            applicant_contacts=[str(e) for e in org.contact_emails],
            language=org.language,
            deadlines=application.deadlines,
            reviewer_flags=application.reviewer_flags,
        )

    # --- the record ------------------------------------------------------------------------

    def status(self) -> ApplicationStatus:
        return ApplicationStatus(
            application_id=self.application_id,
            kind=self.kind,
            step=self.step,
            waiting_on=self.waiting_on,
            waiting_since=self.waiting_since,
            deadlines=list(self.due),
            decisions=list(self.decisions),
            keys=list(self.keys.values()),
            outcome=self.outcome,
            reviewer_flags=self.reviewer_flags,
            withdrawn_apis=list(self.withdrawn_apis),
            takes=self._takes(),
        )

    def _takes(self) -> list[str]:
        """The decisions the current step takes (withdraw aside); none while the platform works."""
        return [] if self._settled or self._ended or self.outcome else list(self._expected)

    async def record(
        self,
        action: str,
        outcome: Literal["applied", "refused", "succeeded", "failed"],
        *,
        actor: str = "platform",
        reason: str = "",
        details: dict[str, object] | None = None,
        status: str | None = None,
        with_step: bool = False,
    ) -> None:
        self._entries += 1
        self._describe()
        info = workflow.info()
        await workflow.execute_activity(
            "record_progress", ProgressRecord(
                # Unique per history event position: a retried write is the same entry.
                entry_id=f"{info.workflow_id}/{info.run_id}/{self._entries}",
                application_id=self.application_id,
                workflow_id=info.workflow_id,
                actor=actor,
                action=action,
                outcome=outcome,
                reason=reason,
                details=details or {},
                step=self.step if with_step or status else None,
                status=status,
            ),
            summary=f"record {action}",
            **ACTIVITY,
        )

    async def notify(
        self,
        purpose: str,
        template: str,
        context: dict[str, str],
        *,
        recipients: list[str] | None = None,
        role: Role | None = None,
        to_member_companies: bool = False,
        language: Language | None = None,
    ) -> None:
        """Send a notice once: `purpose` names it uniquely within the application."""
        await workflow.execute_activity(
            "send_notice", Notice(
                notice_id=f"{self.application_id}/{purpose}",
                application_id=self.application_id,
                template=template,
                language=language or self.language,
                recipients=recipients or [],
                recipient_role=role,
                to_member_companies=to_member_companies,
                context={"application_id": self.application_id,
                         "organisation": self.organisation_name, **context},
            ),
            summary=f"notice {template}",
            **ACTIVITY,
        )

    def _describe(self) -> None:
        """The summary the Temporal UI shows on the application's page ("current details").

        Refreshed whenever something goes on the record. It issues no command, so it is safe
        to change without versioning; it is a payload, so the codec encrypts it like the rest.
        """
        lines = [f"**{self.kind.capitalize()} application of {self.organisation_name}** "
                 f"({self.organisation_id})", ""]
        if self.outcome:
            lines.append(f"Outcome: **{self.outcome.replace('_', ' ')}**")
        else:
            waiting = self.waiting_on.replace("_", " ") if self.waiting_on else "the platform"
            lines.append(f"Step: **{self.step.replace('_', ' ')}**, waiting on {waiting} "
                         f"since {self.waiting_since:%Y-%m-%d %H:%M} UTC")
        takes = self._takes()
        if takes:
            lines.append("Takes the decision " + " or ".join(f"`{t}`" for t in takes)
                         + " (a signal or update of that name)")
        if self.due:
            lines.append(f"Next deadline: {self.due[0].kind} on {self.due[0].due_at:%Y-%m-%d}")
        if self.decisions:
            last = self.decisions[-1]
            verdict = "applied" if last.applied else f"refused: {last.reason[:200]}"
            lines.append(f"Last decision: {last.kind} by {last.decided_by or 'unknown'} "
                         f"({verdict})")
        for key in self.keys.values():
            lines.append(f"{key.environment.capitalize()} key {key.display_prefix}…, "
                         f"{key.status}, valid until {key.expires_at:%Y-%m-%d}")
        workflow.set_current_details("\n".join(lines))

    def _show(self) -> None:
        workflow.upsert_search_attributes(
            [
                sa.APPLICATION_KIND.value_set(self.kind),
                sa.APPLICATION_STEP.value_set(self.step),
                sa.WAITING_ON.value_set(self.waiting_on or "nobody"),
                sa.ORGANISATION_ID.value_set(self.organisation_id),
            ]
        )

    async def enter(self, step: str, waiting_on: str = "") -> None:
        self.step, self.waiting_on, self.waiting_since = step, waiting_on, workflow.now()
        self._show()
        await self.record("step_entered", "succeeded", details={"waiting_on": waiting_on},
                          with_step=True)

    # --- waiting on a person -----------------------------------------------------------------

    async def wait_for(
        self, step: str, waiting_on: Role, checks: dict[str, Check], with_deadlines: bool = True
    ) -> Decision:
        """Enter `step` and wait until a decision of one of the `checks`' kinds is applied.

        Returns the decision. Raises ApplicationEnded when the application is
        withdrawn or lapses meanwhile.
        """
        # The step takes its decisions and has its deadlines as soon as the status shows it:
        # set them before `enter` awaits its record, or a decision arriving meanwhile is refused.
        self._expected, self._settled = checks, None
        since = workflow.now()  # what `enter` sets as waiting_since: no await in between
        days = self.deadlines
        self.due = [
            Deadline(kind="reminder", due_at=since + timedelta(days=days.remind_after_days)),
            Deadline(kind="escalation", due_at=since + timedelta(days=days.escalate_after_days)),
        ] if with_deadlines else []
        if waiting_on is Role.APPLICANT and with_deadlines:
            self.due.append(
                Deadline(kind="lapse", due_at=since + timedelta(days=days.lapse_after_days))
            )
        self.due.sort(key=lambda d: d.due_at)
        try:
            await self.enter(step, waiting_on.value)
            while True:
                timeout = (self.due[0].due_at - workflow.now()) if self.due else None
                try:
                    await workflow.wait_condition(
                        lambda: self._settled is not None or self._ended is not None,
                        timeout=timeout,
                        timeout_summary=f"{self.due[0].kind} for {step}" if self.due else None,
                    )
                except asyncio.TimeoutError:
                    await self._deadline_passed(self.due.pop(0), step, waiting_on)
                    continue
                if self._ended:
                    raise self._ended
                assert self._settled is not None
                return self._settled
        finally:
            self._expected, self.due = {}, []

    async def _deadline_passed(self, deadline: Deadline, step: str, waiting_on: Role) -> None:
        context = {"step": step, "waiting_on": waiting_on.value,
                   "since": self.waiting_since.date().isoformat()}
        purpose = f"{step}/{self.waiting_since.isoformat()}/{deadline.kind}"
        await self.record(f"{deadline.kind}_due", "succeeded", details=context)
        if deadline.kind == "lapse":
            self._ended = ApplicationEnded("lapsed", step, "platform",
                                           f"no response for {self.deadlines.lapse_after_days} days")
            return
        to_applicant = waiting_on is Role.APPLICANT
        await self.notify(
            purpose,
            deadline.kind,
            context,
            recipients=self.applicant_contacts if to_applicant else None,
            role=None if to_applicant else waiting_on,
        )
        if deadline.kind == "escalation":
            await self.notify(f"{purpose}/manager", "escalation", context,
                              role=Role.OPERATIONS_MANAGER)

    # --- decisions -------------------------------------------------------------------------

    async def parse(self, kind: str, model: type[D], payload: RawValue) -> D | None:
        """The decision in a signal's payload, or None when it is malformed.

        Signals take their payload raw so that a malformed one (not JSON, wrong types, unknown
        or missing fields) is refused on the record, naming each field and rule, instead of
        being dropped by the SDK with only a log line.
        """
        data: Any = None
        metadata = payload.payload.metadata
        try:
            if metadata.get("encoding") == b"binary/encrypted":  # the worker could not decrypt it
                key_id = metadata.get("encryption-key-id", b"").decode(errors="replace")[:40]
                raise ValueError(f"encrypted under key id {key_id!r}, which the platform cannot "
                                 "decrypt (another key, or altered)")
            data = workflow.payload_converter().from_payload(payload.payload)
            return model.model_validate(data)
        except ValidationError as err:
            problem = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(payload)'}: {e['msg']} [{e['type']}]"
                for e in err.errors()
            )
        except Exception as err:  # not decodable at all
            problem = f"(payload): cannot be read: {err}"
        await self._refuse_unread(kind, data, f"malformed {kind}: {problem}")
        return None

    async def refuse_unknown_signal(self, name: str, args: Sequence[RawValue]) -> None:
        """A signal no handler takes (a misspelt decision, say) is refused on the record, so
        that whoever sent it sees it was not applied, instead of the SDK keeping it unread."""
        # Applications started before this was deployed kept such signals unread: their
        # histories must replay as they were written.
        if not workflow.patched(versions.REFUSE_UNKNOWN_SIGNALS):
            return
        data: Any = None
        with contextlib.suppress(Exception):
            data = workflow.payload_converter().from_payload(args[0].payload) if args else None
        kinds = ", ".join(self._expected) or "no decision now"
        await self._refuse_unread(
            name[:100], data,
            f"{name[:100]} is not a decision of a {self.kind} application (this step takes "
            f"{kinds}; see the signal names in the UI or `openapi-onboarding --help`)")

    async def _refuse_unread(self, kind: str, data: Any, reason: str) -> None:
        fields = data if isinstance(data, dict) else {}
        reason = reason[:2000]
        async with self._lock:  # on the record in the order received, like every decision
            self.decisions.append(
                DecisionRecord(
                    decision_id=str(fields.get("decision_id", ""))[:100],
                    kind=kind,
                    decided_by=str(fields.get("decided_by", ""))[:200],
                    note="",
                    step=self.step,
                    received_at=workflow.now(),
                    applied=False,
                    reason=reason,
                )
            )
            await self.record(kind, "refused",
                              actor=str(fields.get("decided_by") or "unknown")[:200],
                              reason=reason)

    def validate(self, kind: str, decision: Decision) -> None:
        """An update validator: refuse, before anything is written, what would not apply."""
        reason = self.refusal(kind, decision)
        if reason:
            raise ValueError(reason)

    def refusal(self, kind: str, decision: Decision) -> str | None:
        """Why `decision` of `kind` cannot apply now (shape and step), or None if it can.

        Used by update validators as well, so it reads state and never awaits.
        """
        if decision.decision_id in self._seen:
            return f"decision {decision.decision_id} was already received"
        if self._ended is not None or self.outcome:
            return f"the application has ended ({self.outcome or self._ended.how})"
        if kind == "withdraw":
            return None
        if kind not in self._expected:
            expected = ", ".join(self._expected) or "no decision"
            return f"the application is at step {self.step}, which takes {expected}, not {kind}"
        if self._settled is not None:
            return f"step {self.step} has already been decided"
        return self._expected[kind](decision)

    async def decide(
        self,
        kind: str,
        decision: Decision,
        role: Role,
        extra_check: Callable[[Decision], Awaitable[str | None]] | None = None,
    ) -> DecisionOutcome:
        """Apply `decision` if it fits the step and `decided_by` holds `role`; record it either way."""
        async with self._lock:
            step = self.step
            reason = self.refusal(kind, decision)
            if reason is None:
                reason = await self._entitlement(decision.decided_by, role)
            if reason is None and extra_check is not None:
                reason = await extra_check(decision)
            # The state may have moved while we awaited (a deadline, another handler).
            if reason is None:
                reason = self.refusal(kind, decision)
            applied = reason is None
            self._seen.add(decision.decision_id)
            self.decisions.append(
                DecisionRecord(
                    decision_id=decision.decision_id,
                    kind=kind,
                    decided_by=decision.decided_by,
                    note=decision.note,
                    step=step,
                    received_at=workflow.now(),
                    applied=applied,
                    reason=reason or "",
                )
            )
            if applied:
                if kind == "withdraw":
                    self._ended = ApplicationEnded("withdrawn", step, decision.decided_by,
                                                   decision.note)
                else:
                    self._settled = decision
            else:
                workflow.logger.info("decision refused", extra={"decision_id": decision.decision_id,
                                                                "kind": kind, "reason": reason})
            await self.record(
                kind,
                "applied" if applied else "refused",
                actor=decision.decided_by,
                reason=reason or "",
                details=decision.model_dump(mode="json"),
            )
            return DecisionOutcome(
                decision_id=decision.decision_id, applied=applied, reason=reason or "", step=step
            )

    async def _entitlement(self, person: str, role: Role) -> str | None:
        if role is Role.PLATFORM_WORKFLOW:
            return None  # not a person: the decision's own check verifies its claim
        if role is Role.APPLICANT:
            if person.lower() in self.applicant_contacts:
                return None
            return f"{person} is not a registered contact of the applicant"
        held = await workflow.execute_activity(
            "look_up_staff_roles", StaffLookup(staff_id=person),
            summary=f"roles of {person}",
            result_type=StaffRoles, **ACTIVITY,
        )
        if role in held.roles:
            return None
        return f"{person} does not hold the role {role.value}"

    async def note_api_withdrawn(self, notice: ApiWithdrawn) -> None:
        """A requested API left the catalogue: on the record and in the status for reviewers."""
        async with self._lock:
            if notice.decision_id in self._seen or notice.api_id in self.withdrawn_apis:
                return
            self._seen.add(notice.decision_id)
            self.withdrawn_apis.append(notice.api_id)
            await self.record("requested_api_withdrawn", "succeeded", actor=notice.decided_by,
                              details={"api_id": notice.api_id})

    # --- ending ------------------------------------------------------------------------------

    def close(self, outcome: str) -> None:
        """Refuse every decision from now on: the application ends with `outcome`.

        Raises ApplicationEnded when a withdrawal was applied meanwhile (between two waits).
        """
        if self._ended is not None:
            raise self._ended
        self.outcome = outcome

    async def finish(self, outcome: str, step: str) -> None:
        self.outcome = outcome
        await self.enter(step)
        await self.record("application_closed", "succeeded", details={"outcome": outcome},
                          status=outcome)

    @staticmethod
    def activity_failure(err: ActivityError) -> str:
        """The reason to refuse a decision when its activity refused for good, else re-raise."""
        cause = err.cause
        if isinstance(cause, ApplicationError) and cause.non_retryable:
            return cause.message
        raise err


"""A live service's state, and what falls due next (pure: the workflow's one timer is set by
`LiveServiceState.next_due`, workflows/live_service.py).

Everything a run knows is here, so that the service continues as new carrying it for years:
the keys it watches (each with the reminders already sent, when it is renewed, when an old key
of an overlap is revoked), the licence and contracts (the reminders sent, whether lapsed), the
suspension in force, a change under review, a termination date, retirements of APIs, and the
timeline its status shows (the latest TIMELINE_KEPT entries; the audit log has every one).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal

from pydantic import BaseModel

from onboarding.domain.models import (
    ApiFacts,
    ApplicationStatus,
    Environment,
    LiveServiceStart,
    LiveServiceStatus,
    TimelineEntry,
    WatchedContract,
)
from onboarding.domain.record import SuspensionCause
from onboarding.domain.state import ProcessState

TIMELINE_KEPT = 200
ContractType = Literal["market_data_licence", "platform", "service"]
# Who signs each contract, and so is reminded before it expires (besides the applicant).
SIGNED_BY = {"market_data_licence": "market_data_sales", "platform": "platform_team",
             "service": "final_approver"}
LAPSE_CAUSE: dict[str, SuspensionCause] = {
    "market_data_licence": "market_data_licence", "platform": "platform_contract",
    "service": "service_contract"}


class WatchedKey(BaseModel):
    key_id: str
    environment: Environment
    display_prefix: str
    generation: int
    expires_at: datetime
    renew_at: datetime  # automatic renewal
    reminded: list[int] = []  # the reminders sent, by days before expiry
    renewed: bool = False  # its successor issued
    revoke_at: datetime | None = None  # the end of its overlap


class PendingChange(BaseModel):
    change_id: str
    add: list[str]
    apis: list[ApiFacts]  # the catalogue's facts of the added APIs
    reviewed_by: str = ""  # set once the platform team approved it


class Retirement(BaseModel):
    api_id: str
    retire_at: datetime


class ContractWatch(BaseModel):
    contract: WatchedContract
    reminded: list[int] = []


@dataclass(frozen=True)
class Due:
    at: datetime
    what: str  # reminder, renewal, overlap_end, contract_reminder, lapse, termination, retirement
    subject: str  # a key id, a contract type, an API id


def live_service_id(application_id: str) -> str:
    """The live service's workflow id, from its subscription's application id."""
    return "live-service-" + application_id.removeprefix("subscription-")


def end_of(day: date) -> datetime:
    """A contract valid until `day` lapses when the day is over (UTC)."""
    return datetime.combine(day + timedelta(days=1), time(), UTC)


class LiveServiceState(ProcessState):
    application: LiveServiceStart
    service_name: str = ""
    service_state: Literal["live", "suspended", "terminated"] = "live"
    apis: list[ApiFacts] = []
    watched_keys: list[WatchedKey] = []
    generations: dict[str, int] = {}  # the last key generation issued, by environment
    contracts: list[ContractWatch] = []
    suspended_by: str = ""  # the platform team's suspension in force: who, and its id
    suspension_id: str = ""
    pending_change: PendingChange | None = None
    terminate_at: datetime | None = None
    termination_by: str = ""
    termination_note: str = ""
    retirements: list[Retirement] = []
    # The market-data licence this service recorded renewed, until the organisation's other
    # live services using market data are told (workflows/live_service.py).
    licence_to_tell: str = ""
    timeline: list[TimelineEntry] = []
    timeline_not_listed: int = 0
    run_started: datetime | None = None

    @classmethod
    def _application_fields(cls) -> set[str]:
        return {"application"}

    @property
    def sealed_as(self) -> str:
        """A live service's decisions are sealed for it, not for its subscription."""
        return live_service_id(self.application_id)

    # --- the timeline ----------------------------------------------------------------------

    def happened(self, at: datetime, event: str, detail: str = "") -> None:
        self.timeline.append(TimelineEntry(at=at, event=event, detail=detail[:300]))
        if len(self.timeline) > TIMELINE_KEPT:
            del self.timeline[0]
            self.timeline_not_listed += 1

    # --- what falls due ---------------------------------------------------------------------

    def due(self) -> list[Due]:
        """Everything ahead, soonest first."""
        policy = self.application.policy
        ahead: list[Due] = []
        for key in self.watched_keys:
            if key.revoke_at is not None:
                ahead.append(Due(key.revoke_at, "overlap_end", key.key_id))
            if key.renewed:
                continue
            for days in policy.key_reminder_days:
                if days not in key.reminded:
                    ahead.append(Due(key.expires_at - timedelta(days=days), "reminder",
                                     key.key_id))
            ahead.append(Due(key.renew_at, "renewal", key.key_id))
        for watch in self.contracts:
            c = watch.contract
            if c.lapsed:
                continue
            lapse = end_of(c.valid_until)
            for days in policy.contract_reminder_days:
                if days not in watch.reminded:
                    ahead.append(Due(lapse - timedelta(days=days), "contract_reminder",
                                     c.contract_type))
            ahead.append(Due(lapse, "lapse", c.contract_type))
        if self.terminate_at is not None:
            ahead.append(Due(self.terminate_at, "termination", ""))
        for r in self.retirements:
            ahead.append(Due(r.retire_at, "retirement", r.api_id))
        return sorted(ahead, key=lambda d: d.at)

    def next_due(self) -> Due | None:
        ahead = self.due()
        return ahead[0] if ahead else None

    def key(self, key_id: str) -> WatchedKey | None:
        return next((k for k in self.watched_keys if k.key_id == key_id), None)

    def current_key(self, environment: str) -> WatchedKey | None:
        """The key of `environment` not yet renewed (the one the applicant uses)."""
        return next((k for k in reversed(self.watched_keys)
                     if k.environment == environment and not k.renewed), None)

    def contract(self, contract_type: str) -> ContractWatch | None:
        return next((w for w in self.contracts if w.contract.contract_type == contract_type),
                    None)

    def scopes(self) -> list[str]:
        return [api.api_id for api in self.apis]

    def suspensions(self) -> list[str]:
        causes = [LAPSE_CAUSE[w.contract.contract_type] for w in self.contracts
                  if w.contract.lapsed]
        return (["platform"] if self.suspended_by else []) + causes

    # --- the status ----------------------------------------------------------------------------

    def status(self) -> ApplicationStatus:
        nearest = self.next_due()
        return super().status().model_copy(update={"live": LiveServiceStatus(
            subscription_workflow_id=self.application.subscription_workflow_id,
            state=self.service_state, apis=self.scopes(),
            contracts=[w.contract for w in self.contracts], suspensions=self.suspensions(),
            next_due=f"{nearest.what} {nearest.subject} at {nearest.at.isoformat()}".replace(
                "  ", " ") if nearest else "",
            pending_change=(f"add {', '.join(self.pending_change.add)}"
                            if self.pending_change else ""),
            terminating_on=self.terminate_at.date() if self.terminate_at else None,
            timeline=list(self.timeline), timeline_not_listed=self.timeline_not_listed)})

"""The platform's activities stood in for in memory, under their real names: for workflow logic
tests on the time-skipping server, without PostgreSQL or SMTP.

What the workflow sends them is kept (`commits`: every `write_record` batch, in order), and
what they answer is set by the test (the catalogue, the roster, licences on file, contract
numbers and API ids taken). Verification is the real one (seals included: the tests' client
seals what they send, tests/support/sealing.py), over a roster in memory.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio import activity

from activities.admission import Admissions
from activities.catalogue import Catalogue
from activities.decisions import Decisions
from onboarding.core.config import Settings
from onboarding.domain.models import (
    ApiFacts,
    CatalogueFacts,
    CatalogueLookup,
    ContractTerms,
    KeySummary,
    LaunchCheck,
    LicenceLookup,
    LiveServiceFacts,
    Refusal,
    SpecificationCheck,
    SpecificationVerdict,
)
from onboarding.domain.record import Commit, Committed
from activities.contracts import ContractNumberCheck
from activities.records import DecisionCommit, DecisionCommitted, write_decision
from activities.verification import CheckedDecision, DecisionChecks, verified_and_checked
from activities.live_services import LiveServiceLookup
from onboarding.domain.live_service import live_service_id
from tests.support import data
from tests.support.sealing import MemoryRoster


class Record(Admissions):
    """admit_application as the platform runs it, over the stand-ins' catalogue."""

    def __init__(self, stand_ins: StandIns) -> None:
        self.stand_ins = stand_ins

    async def look_up(self, api_ids: list[str]) -> CatalogueFacts:
        return await self.stand_ins.look_up_catalogue(CatalogueLookup(api_ids=api_ids))

    async def on_record(self, *, requested_apis: list[str] = (), proposed_api: str | None = None,
                        application_id: str | None = None,
                        first_execution_run_id: str | None = None) -> list[Refusal]:
        found = []
        unknown = [a for a in requested_apis if a not in self.stand_ins.apis]
        if unknown:
            found.append(Refusal("requested_apis", "not_in_catalogue",
                                 f"not in the API catalogue: {', '.join(unknown)}"))
        if proposed_api in self.stand_ins.apis:
            found.append(Refusal("api.api_id", "api_id_taken", f"{proposed_api} is taken"))
        chain = self.stand_ins.run_chains.setdefault(application_id, first_execution_run_id)
        if chain != first_execution_run_id:
            found.append(Refusal("application_id", "already_used", "another run chain's"))
        return found


class StandIns:
    def __init__(self, settings: Settings) -> None:
        # verify_decision as the platform runs it (the seals checked with the run's keys), over
        # the test data's staff.
        self.roster = Decisions(None, settings, MemoryRoster(data.STAFF))  # type: ignore[arg-type]
        self.admissions = Record(self)
        self.run_chains: dict[str | None, str | None] = {}  # application id -> first run
        self.specifications = Catalogue(None, settings)  # type: ignore[arg-type]  # pure
        self.apis = {api_id: ApiFacts(api_id=api_id, name=name, is_market_data=market_data,
                                      provider_contact_emails=[
                                          c for brn, _, _, c in data.PROVIDERS if brn == provider])
                     for api_id, name, _, market_data, provider in data.CATALOGUE}
        self.licences: dict[str, ContractTerms] = {}  # by business registration number
        self.contract_numbers_taken: set[str] = set()
        self.api_ids_taken: set[str] = set()
        self.launches: dict[tuple[str, str], str] = {}  # (subscription, api) -> refusal
        self.commits: list[Commit] = []
        self.keys: dict[str, dict[str, KeySummary]] = {}
        self.live_services: set[str] = set()  # the workflow ids of those that began

    def activities(self) -> list[Any]:
        return [self.write_record, self.commit_decision, self.roster.verify_decision,
                self.verify_and_check_decision,
                self.admissions.admit_application,
                self.look_up_catalogue,
                self.find_market_data_licence, self.check_contract_number,
                self.check_specification, self.check_service_launch, self.live_service_facts]

    def entries(self, application_id: str, kind: str | None = None) -> list[Any]:
        """Every journal entry committed for the application, of one kind if given."""
        return [e for c in self.commits if c.application_id == application_id
                for e in c.entries if kind is None or e.entry == kind]

    @activity.defn(name="write_record")
    async def write_record(self, commit: Commit) -> Committed:
        self.commits.append(commit)
        keys, changed, refused, to_tell = self.keys.setdefault(commit.application_id, {}), \
            False, "", []
        for e in commit.entries:
            if e.entry == "key":
                keys.setdefault(e.environment, KeySummary(
                    key_id=str(uuid.uuid4()), environment=e.environment,
                    display_prefix=("cmsb_" if e.environment == "sandbox" else "cmpr_") + "test123",
                    scopes=e.scopes, expires_at=datetime.now(UTC) + timedelta(days=e.valid_days)))
                changed = True
            elif e.entry == "revocation":
                for env, k in keys.items():
                    keys[env] = k.model_copy(update={"status": "revoked"})
                changed = True
            elif e.entry == "publication" and e.api.api_id in self.api_ids_taken:
                refused = f"api_id {e.api.api_id} is already in the catalogue for another provider"
        return Committed(keys=list(keys.values()) if changed else None,
                         publication_refused=refused, subscriptions_to_tell=to_tell)

    @activity.defn(name="commit_decision")
    async def commit_decision(self, commit: DecisionCommit) -> DecisionCommitted:
        """The platform's, verifying over the stand-ins and writing to `commits`."""
        return await write_decision(commit, await self.verify_and_check_decision(commit.checks),
                                    self.write_record)

    @activity.defn(name="look_up_catalogue")
    async def look_up_catalogue(self, lookup: CatalogueLookup) -> CatalogueFacts:
        return CatalogueFacts(apis=[self.apis[a] for a in lookup.api_ids if a in self.apis],
                              unknown=[a for a in lookup.api_ids if a not in self.apis])

    @activity.defn(name="find_market_data_licence")
    async def find_market_data_licence(self, lookup: LicenceLookup) -> ContractTerms | None:
        return self.licences.get(lookup.business_registration_number)

    @activity.defn(name="verify_and_check_decision")
    async def verify_and_check_decision(self, checks: DecisionChecks) -> CheckedDecision:
        return await verified_and_checked(self.roster.verify_decision, self.check_contract_number,
                                          self.find_market_data_licence, checks)

    @activity.defn(name="check_contract_number")
    async def check_contract_number(self, check: ContractNumberCheck) -> str:
        if check.contract_number in self.contract_numbers_taken:
            return (f"contract number {check.contract_number} is already recorded for another "
                    "application")
        return ""

    @activity.defn(name="check_specification")
    async def check_specification(self, check: SpecificationCheck) -> SpecificationVerdict:
        return await self.specifications.check_specification(check)

    @activity.defn(name="check_service_launch")
    async def check_service_launch(self, check: LaunchCheck) -> str:
        return self.launches.get((check.subscription_application_id, check.api_id),
                                 f"no subscription application {check.subscription_application_id}")

    @activity.defn(name="live_service_facts")
    async def live_service_facts(self, lookup: LiveServiceLookup) -> LiveServiceFacts:
        """What the stand-ins' record holds of an application in production."""
        self.live_services.add(live_service_id(lookup.application_id))
        applications = self.entries(lookup.application_id, "application")
        org = applications[-1].organisation if applications else None
        return LiveServiceFacts(
            organisation_name=org.legal_name if org else "",
            contacts=[str(e).lower() for e in org.contact_emails] if org else [],
            service_name="", apis=[self.apis[a] for a in applications[-1].requested_apis
                                   if a in self.apis] if applications else [],
            keys=[k for k in self.keys.get(lookup.application_id, {}).values()
                  if k.status == "active"], contracts=[])

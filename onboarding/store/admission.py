"""What the record must say before an application is admitted: the APIs it requests are in the
catalogue; the API a publication proposes is not (an API id names one API, whoever provides
it); its application id is not another run chain's. The rules needing no record are
onboarding/domain/admission.py; both serve starter.py, the CLI and the workflow's admission.
"""

from __future__ import annotations

import re

import asyncpg

from onboarding.domain.admission import Refusal
from onboarding.store import catalogue
from onboarding.store.text import storable

Db = asyncpg.Pool | asyncpg.Connection

# What may be looked up at all: an id that could be in the catalogue.
_API_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")


async def refusals(db: Db, *, requested_apis: list[str] = (), proposed_api: str | None = None,
                   application_id: str | None = None,
                   first_execution_run_id: str | None = None) -> list[Refusal]:
    """What the record refuses of an application: requested APIs not offered (a subscription),
    a proposed API id already in the catalogue (a publication), and, given the workflow's
    first run, an application id on record for another run chain (started again by a client
    that ignores the id reuse policy, or begun before admission ran in the workflow)."""
    found: list[Refusal] = []
    asked = [a for a in requested_apis if isinstance(a, str) and _API_ID.match(a)][:50]
    if asked:
        unknown = (await catalogue.look_up(db, asked)).unknown
        if unknown:
            found.append(Refusal("requested_apis", "not_in_catalogue",
                                 f"not in the API catalogue: {', '.join(unknown)}"))
    if proposed_api and _API_ID.match(proposed_api) and await catalogue.in_catalogue(
            db, proposed_api):
        found.append(Refusal("api.api_id", "api_id_taken",
                             f"{proposed_api} is already in the API catalogue"))
    if application_id and first_execution_run_id:
        row = await db.fetchrow(
            "SELECT first_execution_run_id FROM applications WHERE application_id = $1",
            storable(application_id))
        if row is not None and row["first_execution_run_id"] != first_execution_run_id:
            found.append(Refusal(
                "application_id", "already_used",
                f"{application_id} is on record for another run of its workflow: an application "
                "is submitted once"))
    return found

"""Test data: the catalogue and staff roster every test can rely on, applicants and their forms,
and the decisions people send."""

from __future__ import annotations

import copy
import itertools
import json
import random
import uuid
from pathlib import Path
from typing import Any

import asyncpg

from onboarding.core.config import Settings
from onboarding.devstack.identity_provider import subject_for
from onboarding.domain.admission import prepare_subscription
from onboarding.domain.models import SubscriptionApplication
from onboarding.domain.registration import business_check_digit
from tests.support.sealing import TEST_ISSUER

EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"
PUBLICATION_EXAMPLE = json.loads((EXAMPLES / "publication.json").read_text())

REVIEWER = "reviewer@operator.example.com"
SALES = "sales@operator.example.com"
PLATFORM = "platform@operator.example.com"
APPROVER = "approver@operator.example.com"
MANAGER = "manager@operator.example.com"
# Holds both roles: must not take both the pre-verification and the final approval.
REVIEWER_AND_APPROVER = "dual@operator.example.com"

MARKET_DATA_PROVIDER = "quotes@member.example.com"
BANK_PROVIDER = "bank@member.example.com"

STAFF = [
    (REVIEWER, "pre_verification_reviewer"),
    (SALES, "market_data_sales"),
    (PLATFORM, "platform_team"),
    (APPROVER, "final_approver"),
    (MANAGER, "operations_manager"),
    (REVIEWER_AND_APPROVER, "pre_verification_reviewer"),
    (REVIEWER_AND_APPROVER, "final_approver"),
]

PROVIDERS = [
    ("1348672683", "1101110062432", "Korea Quotes Co., Ltd.", MARKET_DATA_PROVIDER),
    ("2208162517", "1301110006246", "Hanbit Bank Co., Ltd.", BANK_PROVIDER),
]

CATALOGUE = [
    ("stock-quotes", "Stock quotes", "market-data", True, "1348672683"),
    ("index-values", "Index values", "market-data", True, "1348672683"),
    ("account-balance", "Account balance", "banking", False, "2208162517"),
]


async def seed(conn: asyncpg.Connection) -> None:
    for brn, crn, name, contact in PROVIDERS:
        await conn.execute(
            """INSERT INTO organisations VALUES ($1, $2, $3, 'Representative', $4)
               ON CONFLICT DO NOTHING""",
            brn, crn, name, [contact],
        )
    for api_id, name, category, market_data, provider in CATALOGUE:
        await conn.execute(
            """INSERT INTO api_catalogue (api_id, name, category, is_market_data,
                   provider_business_registration_number) VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT DO NOTHING""",
            api_id, name, category, market_data, provider,
        )
    await conn.executemany(
        "INSERT INTO staff_roles (staff_id, role) VALUES ($1, $2) ON CONFLICT DO NOTHING", STAFF
    )
    # Enrolled where the tests' client seals their decisions (tests/support/sealing.py).
    await enrol_staff(conn, TEST_ISSUER)


async def enrol_staff(conn: asyncpg.Connection | asyncpg.Pool, issuer: str) -> None:
    """The staff's identities at the test identity provider (tests/support/identity.py), whose
    subjects are derived from the e-mail addresses as the dev provider's are."""
    await conn.executemany(
        """INSERT INTO staff_identities (staff_id, issuer, subject) VALUES ($1, $2, $3)
           ON CONFLICT DO NOTHING""",
        [(email, issuer, subject_for(email)) for email in dict.fromkeys(e for e, _ in STAFF)])


_serials = itertools.count(1)
_tax_office = random.randrange(101, 999)


def corporate_brn() -> str:
    """A fresh (unique in this run), valid for-profit corporation's business registration number."""
    serial = next(_serials)
    first_nine = f"{_tax_office + serial // 9999:03d}81{serial % 9999 + 1:04d}"
    return first_nine + str(business_check_digit(first_nine))


def subscription_form(apis: list[str] | None = None, **org: Any) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    return {
        "organisation": {
            "legal_name": f"Fintech {tag} Co., Ltd.",
            "business_registration_number": corporate_brn(),
            "corporate_registration_number": "110111-0062432",
            "representative": "Kim Minsu",
            "contact_emails": [f"dev-{tag}@fintech.example.com"],
            "language": "en",
            **org,
        },
        "service": {
            "name": f"Robo-advisor {tag}",
            "description": "Portfolio suggestions from market data",
            "expected_launch": "2027-06-01",
        },
        "requested_apis": apis or ["account-balance"],
    }


def new_application(settings: Settings, apis: list[str] | None = None) -> SubscriptionApplication:
    return prepare_subscription(subscription_form(apis), settings)


def applicant(application: SubscriptionApplication) -> str:
    return str(application.organisation.contact_emails[0])


def publication_form(api_id: str, **api: Any) -> dict[str, Any]:
    """The example's shape, for a fresh provider and API."""
    form = copy.deepcopy(PUBLICATION_EXAMPLE)
    tag = uuid.uuid4().hex[:8]
    form["organisation"].update(
        legal_name=f"Provider {tag} Co., Ltd.",
        business_registration_number=corporate_brn(),
        contact_emails=[f"openapi-{tag}@provider.example.com"],
        language="en",
    )
    form["api"].update(api_id=api_id, name=f"Yields {tag}", **api)
    return form


def revised(spec: dict[str, Any], version: str) -> dict[str, Any]:
    """The example's specification at another version, with one more response."""
    spec = copy.deepcopy(spec)
    spec["info"]["version"] = version
    spec["paths"]["/bond-yields"]["get"]["responses"]["400"] = {
        "description": "The date is not a valid trading day."}
    return spec


def decision(by: str, **fields: Any) -> dict[str, Any]:
    return {"decision_id": uuid.uuid4().hex, "decided_by": by, **fields}


CRITERIA_HOLD = {
    "related_to_capital_market_development": True,
    "not_speculative_or_gambling": True,
    "not_harmful_to_public_morals": True,
}


def contract(number: str | None = None) -> dict[str, Any]:
    return {
        "contract_number": number or f"C-{uuid.uuid4().hex[:10]}",
        "signed_on": "2026-12-01",
        "valid_from": "2026-12-01",
        "valid_until": "2028-11-30",
    }

"""The demo roster, written once.

`make up` seeds the demo staff and their roles from `onboarding/devstack/dev_seed.sql` (the
source) and enrols them at its dev identity provider under `subject_for(email)`; the service
`developer-portal` acts for the examples' organisations. The compose cluster's roster,
`deploy/keycloak/demo-roster.sql`, applied by hand with psql (so self-contained), is rendered
from the same three: the seed's staff, the same subjects (the Keycloak realm file fixes its
users' ids to them: tests/test_compose.py), the examples' organisations:

    python -m onboarding.devstack.roster > deploy/keycloak/demo-roster.sql

tests/test_compose.py fails when the file differs from what this renders (edit the seed, then
render again).
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

from onboarding.devstack.identity_provider import subject_for

ROOT = Path(__file__).resolve().parents[2]
KEYCLOAK_ISSUER = "http://localhost:8180/realms/onboarding"
DEMO_SERVICE = "developer-portal"  # a service (client credentials) acting for applicants

HEADER = """\
-- The demo roster for docker-compose.yml's Keycloak realm (deploy/keycloak/onboarding-realm.json):
-- the staff and their roles, enrolled under their Keycloak user ids (the realm file fixes them),
-- and the developer portal acting for the examples' organisations. Apply once, by hand:
--   docker compose exec -T postgresql psql -U onboarding openapi_onboarding < deploy/keycloak/demo-roster.sql
-- Re-running it changes nothing. tests/test_compose.py checks it against the realm file.
-- Rendered from onboarding/devstack/dev_seed.sql (the staff, as `make up` seeds them) and the
-- examples by `python -m onboarding.devstack.roster`: edit those, not this file.
"""


def seed_sql() -> str:
    return resources.files("onboarding.devstack").joinpath("dev_seed.sql").read_text()


def seeded_staff(sql: str) -> list[tuple[str, str]]:
    """The (staff id, role) rows of the seed's `staff_roles` insert, in its order."""
    statement = sql[sql.index("INSERT INTO staff_roles"):]
    statement = statement[:statement.index(";")]
    return re.findall(r"\('([^']+)', '([a-z_]+)'\)", statement)


def example_organisations(examples: Path = ROOT / "examples") -> list[str]:
    """The business registration numbers of the examples' applicants (digits only)."""
    found = []
    for example in sorted(examples.glob("*.json")):
        organisation = json.loads(example.read_text()).get("organisation", {})
        found.append(re.sub(r"\D", "", organisation.get("business_registration_number", "")))
    return sorted(set(filter(None, found)))


def render(staff: list[tuple[str, str]], organisations: list[str],
           issuer: str = KEYCLOAK_ISSUER) -> str:
    def rows(values: list[str]) -> str:
        return ",\n".join(f"    ({v})" for v in values)

    people = list(dict.fromkeys(email for email, _ in staff))
    return (HEADER + "\nINSERT INTO staff_roles (staff_id, role) VALUES\n"
            + rows([f"'{email}', '{role}'" for email, role in staff])
            + "\nON CONFLICT DO NOTHING;\n\n"
            + "INSERT INTO staff_identities (staff_id, issuer, subject) VALUES\n"
            + rows([f"'{email}', '{issuer}', '{subject_for(email)}'" for email in people])
            + "\nON CONFLICT DO NOTHING;\n\n"
            + "INSERT INTO service_mandates (issuer, client_id, business_registration_number) "
              "VALUES\n"
            + rows([f"'{issuer}', '{DEMO_SERVICE}', '{o}'" for o in organisations])
            + "\nON CONFLICT DO NOTHING;\n")


def demo_roster() -> str:
    """deploy/keycloak/demo-roster.sql as it must read."""
    return render(seeded_staff(seed_sql()), example_organisations())


if __name__ == "__main__":
    print(demo_roster(), end="")

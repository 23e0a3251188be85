"""The schema and its migrations: the rules the database itself enforces.

Runs against the session's real PostgreSQL. Migration tests that need an empty database create
a scratch database on the same server and drop it afterwards.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from onboarding.core.db import Migration, MigrationMismatch, apply_migrations, bundled_migrations
from onboarding.domain.admission import prepare_subscription
from onboarding.domain.models import SubscriptionApplication
from onboarding.store import applications
from tests.support import data, servers

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "onboarding" / "core" / "migrations"
EXPECTED_TABLES = {
    "organisations", "staff_roles", "api_catalogue", "applications", "contracts", "api_keys",
    "notices", "audit_log", "schema_migrations", "api_versions",
    # 0010: the roster on verified identities.
    "staff_identities", "service_mandates",
    # 0030: the live service's suspensions.
    "key_suspensions",
}


# --- helpers -------------------------------------------------------------------------------------


@pytest.fixture
async def scratch_url(database_url: str, pool: asyncpg.Pool):
    """An empty database on the test server, dropped after the test."""
    name = f"onboarding_scratch_{uuid.uuid4().hex[:10]}"
    async with servers.database_on(database_url, name) as url:
        yield url


async def public_tables(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch(
        """SELECT table_name FROM information_schema.tables
           WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"""
    )
    return {r["table_name"] for r in rows}


async def new_application(pool: asyncpg.Pool, settings) -> SubscriptionApplication:
    """A fresh application with its organisation and application rows written."""
    app = prepare_subscription(data.subscription_form(), settings)
    await applications.record(pool, application_id=app.application_id, process="subscription",
                              organisation=app.organisation, workflow_id=app.application_id,
                              requested_apis=app.requested_apis)
    return app


async def insert_key(conn: asyncpg.Connection, app: SubscriptionApplication, environment: str,
                     key_hash: bytes | None = None) -> None:
    await conn.execute(
        """INSERT INTO api_keys (key_id, issuance_id, application_id,
               business_registration_number, environment, key_hash, display_prefix, scopes,
               expires_at)
           VALUES ($1, $2, $3, $4, $5, $6, 'cmsb_test', $7, $8)""",
        uuid.uuid4(), f"{app.application_id}/key/{uuid.uuid4().hex}", app.application_id,
        app.organisation.business_registration_number, environment,
        secrets.token_bytes(32) if key_hash is None else key_hash, app.requested_apis,
        datetime.now(UTC) + timedelta(days=1),
    )


# --- migrations ----------------------------------------------------------------------------------


async def test_migrating_the_migrated_test_database_applies_nothing(pool):
    """A second start of a worker must not re-run migrations; every shipped migration is on
    record with the checksum of its file."""
    async with pool.acquire() as conn:
        assert await apply_migrations(conn) == []
        rows = await conn.fetch("SELECT version, name, checksum FROM schema_migrations ORDER BY version")
    shipped = sorted(MIGRATIONS_DIR.glob("[0-9][0-9][0-9][0-9]_*.sql"))
    assert len(shipped) >= 2
    assert [dict(r) for r in rows] == [
        {"version": int(path.name[:4]), "name": path.stem[5:],
         "checksum": hashlib.sha256(path.read_bytes()).hexdigest()}
        for path in shipped
    ]


def test_bundled_migrations_are_the_shipped_files_in_version_order():
    """What `apply_migrations` applies by default is every NNNN_name.sql file, in order."""
    found = bundled_migrations()
    files = sorted(p.name for p in MIGRATIONS_DIR.glob("[0-9][0-9][0-9][0-9]_*.sql"))
    assert [f"{m.version:04d}_{m.name}.sql" for m in found] == files
    assert [m.version for m in found] == sorted(m.version for m in found)


async def test_a_fresh_database_is_migrated_in_order_and_only_once(scratch_url):
    """Migrations apply in order (a later one may build on an earlier one), are recorded, and a
    second run applies nothing."""
    shipped = bundled_migrations()
    later = Migration(shipped[-1].version + 1, "contact_phone",
                      "ALTER TABLE organisations ADD COLUMN contact_phone text")
    migrations = [*shipped, later]
    conn = await asyncpg.connect(scratch_url)
    try:
        assert await public_tables(conn) == set()
        applied = await apply_migrations(conn, migrations)
        assert [m.version for m in applied] == [m.version for m in migrations]
        assert await public_tables(conn) == EXPECTED_TABLES
        assert await conn.fetchval(
            """SELECT count(*) FROM information_schema.columns
               WHERE table_name = 'organisations' AND column_name = 'contact_phone'"""
        ) == 1
        recorded = await conn.fetch("SELECT version, name, checksum FROM schema_migrations ORDER BY version")
        assert [(r["version"], r["name"], r["checksum"]) for r in recorded] == [
            (m.version, m.name, m.checksum) for m in migrations
        ]

        assert await apply_migrations(conn, migrations) == []
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == len(migrations)
    finally:
        await conn.close()


async def test_a_migration_changed_after_it_was_applied_is_refused(scratch_url):
    """An edited migration that already ran must be detected, not silently diverge; the refusal
    releases the migration lock so that the next migrator is not blocked."""
    conn = await asyncpg.connect(scratch_url)
    try:
        initial = bundled_migrations()[0]
        await apply_migrations(conn, [initial])
        edited = Migration(initial.version, initial.name, initial.sql + "\n-- edited afterwards\n")
        added = Migration(initial.version + 1, "never_applied",
                          "CREATE TABLE never_applied (id int)")
        with pytest.raises(MigrationMismatch, match="0001_initial"):
            await apply_migrations(conn, [edited, added])
        assert "never_applied" not in await public_tables(conn)
        assert await conn.fetchval("SELECT checksum FROM schema_migrations WHERE version = 1") == (
            initial.checksum
        )
    finally:
        await conn.close()
    other = await asyncpg.connect(scratch_url)
    try:
        assert await asyncio.wait_for(apply_migrations(other, [initial]), timeout=10) == []
    finally:
        await other.close()


async def test_concurrent_migrators_apply_each_migration_once(scratch_url):
    """Several workers (or the compose migrate job and a worker) may start at once: the advisory
    lock makes one of them apply everything and the others find it done."""
    shipped = bundled_migrations()
    slow = Migration(shipped[-1].version + 1, "slow",
                     "SELECT pg_sleep(0.5); CREATE TABLE slow_marker (id int)")
    migrations = [*shipped, slow]
    versions = [m.version for m in migrations]
    first, second = await asyncpg.connect(scratch_url), await asyncpg.connect(scratch_url)
    try:
        results = await asyncio.wait_for(
            asyncio.gather(apply_migrations(first, migrations), apply_migrations(second, migrations)),
            timeout=30,
        )
        applied = sorted(m.version for result in results for m in result)
        assert applied == versions
        assert sorted(len(r) for r in results) == [0, len(migrations)]
        assert [r["version"] for r in await first.fetch(
            "SELECT version FROM schema_migrations ORDER BY version")] == versions
    finally:
        await first.close()
        await second.close()


# --- the audit log is append-only ----------------------------------------------------------------


async def test_audit_log_accepts_inserts_and_refuses_update_delete_truncate(pool):
    """Auditors must be able to trust the log: the database itself refuses to change or remove
    an entry, whoever asks."""
    entry_id = f"test-audit/{uuid.uuid4().hex}"
    async with pool.acquire() as conn:
        await conn.execute(
            """INSERT INTO audit_log (entry_id, application_id, actor, action, result, details)
               VALUES ($1, 'app-x', 'tester', 'tested', 'succeeded', $2)""",
            entry_id, {"n": 1},
        )
        before = dict(await conn.fetchrow("SELECT * FROM audit_log WHERE entry_id = $1", entry_id))
        count_before = await conn.fetchval("SELECT count(*) FROM audit_log")

        statements = [
            ("UPDATE", "UPDATE audit_log SET result = 'failed', details = '{}' WHERE entry_id = $1"),
            ("DELETE", "DELETE FROM audit_log WHERE entry_id = $1"),
            ("TRUNCATE", "TRUNCATE audit_log"),
        ]
        for op, sql in statements:
            args = (entry_id,) if "$1" in sql else ()
            with pytest.raises(asyncpg.PostgresError) as refused:
                await conn.execute(sql, *args)
            assert "append-only" in str(refused.value), str(refused.value)
            assert op in str(refused.value)

        after = dict(await conn.fetchrow("SELECT * FROM audit_log WHERE entry_id = $1", entry_id))
        assert after == before
        assert await conn.fetchval("SELECT count(*) FROM audit_log") == count_before


# --- constraints that protect the rules ----------------------------------------------------------


async def test_several_keys_per_application_and_environment_one_per_issuance(pool, settings):
    """A live service renews keys: several rows per application and environment over time, but
    one per issuance id (what makes a retried renewal issue no second key)."""
    app = await new_application(pool, settings)
    async with pool.acquire() as conn:
        await insert_key(conn, app, "sandbox")
        await insert_key(conn, app, "sandbox")
        issuance = await conn.fetchval(
            "SELECT issuance_id FROM api_keys WHERE application_id = $1 LIMIT 1",
            app.application_id)
        with pytest.raises(asyncpg.UniqueViolationError, match="api_keys_issuance_id_key"):
            await conn.execute(
                """INSERT INTO api_keys (key_id, issuance_id, application_id,
                       business_registration_number, environment, key_hash, display_prefix,
                       scopes, expires_at)
                   SELECT gen_random_uuid(), issuance_id, application_id,
                          business_registration_number, environment, $2, display_prefix, scopes,
                          expires_at FROM api_keys WHERE issuance_id = $1""",
                issuance, secrets.token_bytes(32))
        assert await conn.fetchval(
            "SELECT count(*) FROM api_keys WHERE application_id = $1", app.application_id) == 2


@pytest.mark.parametrize("length", [0, 16, 31, 33, 64])
async def test_a_key_hash_is_exactly_32_bytes(pool, settings, length):
    """Only a SHA-256 digest may be stored for a key, never the key or anything else."""
    app = await new_application(pool, settings)
    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.CheckViolationError, match="key_hash"):
            await insert_key(conn, app, "sandbox", key_hash=secrets.token_bytes(length))
        await insert_key(conn, app, "sandbox", key_hash=secrets.token_bytes(32))


@pytest.mark.parametrize("number", ["123456789", "12345678a0", "123-45-678", "          "])
async def test_organisations_refuse_a_malformed_business_registration_number(pool, number):
    """An organisation is identified by a 10-digit business registration number, nothing else."""
    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.CheckViolationError, match="business_registration_number"):
            await conn.execute(
                """INSERT INTO organisations (business_registration_number,
                       corporate_registration_number, legal_name, representative, contact_emails)
                   VALUES ($1, '1101110062432', 'Malformed Co.', 'Someone', $2)""",
                number, ["x@example.com"],
            )
        brn = data.corporate_brn()
        await conn.execute(
            """INSERT INTO organisations (business_registration_number,
                   corporate_registration_number, legal_name, representative, contact_emails)
               VALUES ($1, '1101110062432', 'Wellformed Co.', 'Someone', $2)""",
            brn, ["x@example.com"],
        )


@pytest.mark.parametrize("role", ["admin", "applicant", "Platform_Team", "platform team", ""])
async def test_staff_roles_refuse_an_unknown_role(pool, role):
    """Only the operator's five staff roles can be granted (an applicant is not staff)."""
    staff_id = f"someone-{uuid.uuid4().hex[:8]}@operator.example.com"
    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.CheckViolationError, match="role"):
            await conn.execute(
                "INSERT INTO staff_roles (staff_id, role) VALUES ($1, $2)", staff_id, role
            )
        assert await conn.fetchval(
            "SELECT count(*) FROM staff_roles WHERE staff_id = $1", staff_id) == 0

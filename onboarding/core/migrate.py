"""`python -m onboarding.core.migrate`: apply the database migrations at DATABASE_URL."""

import asyncio

import asyncpg

from onboarding.core.config import get_settings
from onboarding.core.db import apply_migrations
from onboarding.core.logs import configure_logging, get_logger


async def main() -> None:
    settings = get_settings()
    configure_logging(settings)
    log = get_logger("migrate")
    if not settings.database_url:
        raise SystemExit("DATABASE_URL is not set")
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        applied = await apply_migrations(conn)
    finally:
        await conn.close()
    log.info("migrations applied", applied=[f"{m.version:04d}_{m.name}" for m in applied])


if __name__ == "__main__":
    asyncio.run(main())

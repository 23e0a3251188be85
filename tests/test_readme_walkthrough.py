"""The README's walkthrough, run as a new user would run it: `make up`'s stack, then every
command of the walkthrough's `sh` blocks, in order, in a shell.

- The stack is `python -m onboarding.devstack` (what `make up` runs once the virtual
  environment exists), in a scratch directory holding the project's `examples/`, `starter.py`
  and `Makefile`, with its own ports so that it runs beside anything else on the machine: the
  README's fixed dev ports are rewritten to them.
- A comment line right under a command is what the command prints: it must appear in its
  output (up to a trailing ` ...`). Every command must succeed.
- A variable a line sets (`W=...`, `KEY=$(...)`) is kept for the lines after it.
- `temporal workflow signal` and `update` lines are sent when the application takes that
  decision, as a person reading the UI's summary would; `openapi-onboarding decide` waits by
  itself.
- `openapi-onboarding login` opens the browser: here a stand-in that signs in as the person
  the line's expected output names, with the password `make up` wrote.
- The Web UI steps are taken in a real browser (tests/support/web_ui.py): signed in at the
  codec server as the person the README names, the `json` block sent with "Send a Signal".
- At the end both subscriptions and the publication are in production, both keys of each
  subscription were mailed into the stack's Maildir, and Ctrl-C stops the whole stack.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from onboarding.core.config import Settings
from onboarding.domain.models import ApplicationStatus
from onboarding.temporal.client import connect
from tests.support import web_ui
from tests.support.browser import password_of
from tests.support.eventually import eventually
from tests.support.net import free_port

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DEV_PORTS = {"temporal": 7233, "ui": 8233, "codec": 8081, "gateway": 8090, "idp": 8180}
SIGNED_IN_AS = re.compile(r"^signed in as (\S+)")


@dataclass
class Command:
    line: str
    expected: list[str] = field(default_factory=list)
    # A decision to send from the Web UI (the line is its JSON), signed in as this person.
    web_ui_as: str | None = None


BLOCK = re.compile(r"^( *)```(sh|json)\n(.*?)^\1```", flags=re.S | re.M)
UI_SIGN_IN = re.compile(r"sign in as `([^`]+)`")


def section_commands(readme: str, heading: str) -> list[Command]:
    """Every line of the `sh` blocks of the top-level section `heading`, and, in their place,
    the decisions its `json` blocks say to send from the Web UI (signed in as the person the
    text before names)."""
    section = readme[readme.index(f"\n{heading}"):]
    section = section[:section.index("\n## ", 1)]
    commands: list[Command] = []
    for found in BLOCK.finditer(section):
        kind, block = found[2], found[3]
        if kind == "json":
            signer = UI_SIGN_IN.findall(section[:found.start()])[-1]
            commands.append(Command(" ".join(block.split()), web_ui_as=signer))
            continue
        previous_was_command = False
        for line in block.splitlines():
            if not line.strip():
                previous_was_command = False
            elif line.startswith("#"):
                if previous_was_command:
                    commands[-1].expected.append(line.lstrip("# ").strip())
            else:
                commands.append(Command(line))
                previous_was_command = True
    return commands


def walkthrough_commands(readme: str) -> list[Command]:
    """Every command of "## Walkthrough", up to the next top-level section."""
    return section_commands(readme, "## Walkthrough")


def test_the_walkthrough_is_read_as_commands_and_expected_output():
    commands = walkthrough_commands(README.read_text())
    lines = [c.line for c in commands]
    assert lines[0] == "source .venv/bin/activate"
    assert any(line.startswith("openapi-onboarding decide $W production_switch") for line in lines)
    assert any(line.startswith("temporal workflow signal --workflow-id $H") for line in lines)
    submitted = [c for c in commands if c.line.startswith(("openapi-onboarding submit",
                                                           "python starter.py"))]
    assert len(submitted) == 4 and all(c.expected[0].startswith("submitted: ") for c in submitted)
    from_the_ui, = [c for c in commands if c.web_ui_as]
    assert from_the_ui.web_ui_as == "reviewer@operator.example.com"
    assert json.loads(from_the_ui.line)["decision"] == "pre_verification"
    typed = [c for c in commands if '"decided_by"' in c.line]
    assert typed and all("is not the verified identity" in c.expected[0] for c in typed)


# --- the stack ---------------------------------------------------------------------------------


class Stack:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.ports = {"temporal": free_port(), "ui": free_port(), "codec": free_port(),
                      "gateway": free_port(), "idp": free_port()}
        self.env = {
            **{k: v for k, v in os.environ.items()
               if not k.startswith(("TEMPORAL_", "DATABASE_URL", "PAYLOAD_", "CODEC_", "OIDC_",
                                    "SEALING_", "CLI_TOKEN_FILE"))},
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "TEMPORAL_ADDRESS": f"127.0.0.1:{self.ports['temporal']}",
            "TEMPORAL_UI_PORT": str(self.ports["ui"]),
            "CODEC_SERVER_PORT": str(self.ports["codec"]),
            "GATEWAY_PORT": str(self.ports["gateway"]),
            "DEV_IDENTITY_PROVIDER_PORT": str(self.ports["idp"]),
            # `login`'s tokens stay in the scratch directory; its browser is a stand-in that
            # signs in as SIGN_IN_AS with the password make up wrote (tests/support/browser.py).
            "CLI_TOKEN_FILE": str(workdir / ".config" / "tokens.json"),
            "BROWSER": f"{sys.executable} -m tests.support.browser %s",
            "PYTHONPATH": str(ROOT),
            "DEV_MAIL_PORT": str(free_port()),
            "METRICS_PORT": "0",
            "COLUMNS": "160",
        }
        self.process: subprocess.Popen | None = None
        self.log = workdir / "devstack.log"

    async def start(self) -> None:
        for name in ("examples", "starter.py", "Makefile"):
            (self.workdir / name).symlink_to(ROOT / name)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "onboarding.devstack"], cwd=self.workdir, env=self.env,
            stdout=self.log.open("wb"), stderr=subprocess.STDOUT)

        def up() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"the dev stack exited:\n{self.output()}")
            assert "Open API onboarding platform is up" in self.output(), self.output()
            return True

        await eventually(up, 120, "the dev stack coming up", interval=0.2)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def settings(self) -> Settings:
        """What a second terminal in the scratch directory reads (`.data/dev.env`)."""
        cwd = Path.cwd()
        os.chdir(self.workdir)
        try:
            return Settings(_env_file=(".data/dev.env",),
                            temporal_address=self.env["TEMPORAL_ADDRESS"])
        finally:
            os.chdir(cwd)

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(f"Ctrl-C did not stop the dev stack:\n{self.output()}") from None

    def rewrite_ports(self, line: str) -> str:
        for name, port in DEV_PORTS.items():
            line = line.replace(f"localhost:{port}", f"127.0.0.1:{self.ports[name]}")
        return line


# --- running the walkthrough -------------------------------------------------------------------

ASSIGNMENT = re.compile(r"^(?:export\s+)?([A-Z_][A-Z0-9_]*)=(?:\$\(.*\)|\S+)$")  # not `X= cmd`
SENT_BY_TEMPORAL_CLI = re.compile(
    r"^temporal workflow (?:signal|update execute) --workflow-id (\S+) --name (\S+)")


async def status(client, application_id: str) -> ApplicationStatus:
    return await client.get_workflow_handle(application_id).query(
        "status", result_type=ApplicationStatus)


async def until_it_takes(client, application_id: str, decision: str) -> None:
    """What a person does before sending a signal: look until the step takes the decision."""

    async def takes() -> bool:
        last = await status(client, application_id)
        assert decision in last.takes, f"last status: {last}"
        return True

    await eventually(takes, 60, f"{application_id} taking {decision}", interval=0.2)


def mail_text(path: Path) -> str:
    message = message_from_bytes(path.read_bytes(), policy=policy.default)
    return "\n".join(part.get_content() for part in message.walk()
                     if part.get_content_maintype() == "text")


def run_in_shell(line: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", line], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


async def decide_in_the_web_ui(stack: Stack, client, env: dict[str, str],
                               command: Command) -> None:
    """The README's Web UI steps, in a real browser: sign in at the codec server as the person,
    open the application, Send a Signal with the JSON. Without a browser (a laptop without
    Chromium; never under CI) the same decision goes the temporal CLI's way, through the same
    codec server with the person's token, and the test says so."""
    decision = json.loads(command.line)
    application_id, name = decision["application_id"], decision["decision"]
    await until_it_takes(client, application_id, name)
    if web_ui.browser_missing() and os.environ.get("CI") != "true":
        print(f"no browser ({web_ui.browser_missing()}): the walkthrough's Web UI decision is "
              "sent through the codec server by the temporal CLI instead")
        line = (f"temporal workflow signal --workflow-id {application_id} --name {name} "
                f"--input {shlex.quote(command.line)} --codec-auth "
                f'"$(openapi-onboarding token --as {command.web_ui_as})"')
        done = await asyncio.to_thread(run_in_shell, stack.rewrite_ports(line), env,
                                       stack.workdir)
        assert done.returncode == 0, done.stderr
    else:
        passwords = stack.workdir / ".data" / "dev-passwords.txt"
        answers = await asyncio.to_thread(
            web_ui.send_from_the_ui, web_ui.require_browser(),
            f"http://localhost:{stack.ports['ui']}", f"http://localhost:{stack.ports['codec']}",
            application_id, name, decision,
            (command.web_ui_as, password_of(command.web_ui_as, passwords)))
        assert 200 in answers, answers

    async def applied() -> bool:
        last = await status(client, application_id)
        assert [(d.decision_id, d.decided_by) for d in last.decisions if d.applied][-1:] == [
            (decision["decision_id"], command.web_ui_as)], f"last status: {last}"
        return True

    await eventually(applied, 30, f"{name} from the Web UI applied")


async def run_commands(stack: Stack, client, commands: list[Command]) -> dict[str, str]:
    """Each command in a shell in the stack's directory, as the README says; the variables the
    lines set. A `curl` (it only reads) whose output lacks what the README shows is run again
    for a while, as a person would look again: what it reads may take a moment to change."""
    env = dict(stack.env)
    for command in commands:
        line = stack.rewrite_ports(command.line)
        if line == "source .venv/bin/activate":
            continue  # the test's interpreter is the virtual environment's
        if assignment := ASSIGNMENT.match(line):  # keep the variable for what follows
            name = assignment[1]

            async def value(line: str = line, name: str = name) -> str:
                done = await asyncio.to_thread(
                    run_in_shell, f'{line}\nprintf %s "${name}"', env, stack.workdir)
                assert done.returncode == 0 and done.stdout, f"$ {line}\n{done.stderr}"
                return done.stdout

            # A value read from what arrives (a mailed key) may take a moment to be there.
            env[name] = await eventually(value, 30, f"{line}: a value", interval=0.5)
            continue
        if command.web_ui_as:
            await decide_in_the_web_ui(stack, client, env, command)
            continue
        if line == "openapi-onboarding login":  # the person signs in at the browser
            env["SIGN_IN_AS"] = SIGNED_IN_AS.match(command.expected[0])[1]
        if sent := SENT_BY_TEMPORAL_CLI.match(line):
            application_id = env.get(sent[1].removeprefix("$"), sent[1])
            await until_it_takes(client, application_id, sent[2])

        async def ran(line: str = line, command: Command = command) -> bool:
            done = await asyncio.to_thread(run_in_shell, line, env, stack.workdir)
            shown = f"$ {command.line}\n{done.stdout}{done.stderr}"
            assert done.returncode == 0, shown
            for expected in command.expected:
                assert expected.removesuffix(" ...") in done.stdout, shown
            return True

        if line.startswith("curl "):
            await eventually(ran, 30, f"{command.line}: what the README shows", interval=1)
        else:
            await ran()
    return env


@pytest.mark.servers
async def test_the_readme_walkthrough_runs_from_submission_to_production(tmp_path):
    commands = walkthrough_commands(README.read_text())
    stack = Stack(tmp_path)
    await stack.start()
    try:
        client = await connect(stack.settings())
        env = await run_commands(stack, client, commands)

        ids = {name: env[name] for name in ("W", "H", "P", "B")}
        final = {name: await status(client, i) for name, i in ids.items()}
        for name, s in final.items():
            assert s.step == "in_production" and s.outcome == "in_production", (name, s)
        for name in ("W", "H", "B"):
            assert sorted(k.environment for k in final[name].keys) == ["production", "sandbox"]
            prefixes = [k.display_prefix for k in final[name].keys]
            mail = "\n".join(mail_text(p) for p in (tmp_path / ".data" / "mail" / "new").iterdir())
            assert all(prefix in mail for prefix in prefixes), (name, prefixes)
    finally:
        code = await asyncio.to_thread(stack.stop)
    assert code == 0, stack.output()
    assert "dev stack stopped" in stack.output()

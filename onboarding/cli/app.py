"""`openapi-onboarding`: the reviewer's command line for the onboarding procedure.

Reviewers find the applications waiting on them (`queue`), read one (`show`) and take their
decision (`decide`, `withdraw`), each sent as the workflow's update of the same name so the
answer is immediate. Applicants' files are submitted with `submit`. Everything goes through
`onboarding.temporal.client.connect(get_settings())`, with the worker's settings.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import textwrap
import uuid
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import asyncpg
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from rich.text import Text
from temporalio.client import (
    Client,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

import starter
from onboarding.core.config import Settings, get_settings
from onboarding.domain.admission import SubmissionRefused
from onboarding.domain.decisions import CATALOGUES, too_large
from onboarding.domain.live_service import live_service_id
from onboarding.domain.models import (
    ApplicationStatus,
    Decision,
    DecisionReceipt,
    LiveServiceStatus,
    PreVerificationCriteria,
    Role,
)
from onboarding.store import applications, catalogue
from onboarding.temporal import search_attributes as sa
from onboarding.cli import login as signing_in
from onboarding.identity.oidc import OIDCError
from onboarding.temporal.client import connect
from onboarding.temporal.codec import CodecServerClient, PayloadEncryptionError, data_converter

# The decisions people take (those of another process, service_launched, left out), by process:
# the update's name and the model it takes. From the catalogue, as the workflows' handlers are.
DECISIONS: dict[str, dict[str, type[Decision]]] = {
    process: {name: d.model for name, d in decisions.items()
              if d.taken_by is not Role.PLATFORM_WORKFLOW}
    for process, decisions in CATALOGUES.items()
}
QUERY_TIMEOUT = timedelta(seconds=10)
UPDATE_TIMEOUT = 60  # seconds
PLATFORM_BUSY_WAIT = 30  # seconds a decision waits for the platform to finish the step before


class Process(StrEnum):
    subscription = "subscription"
    publication = "publication"


class WaitingRole(StrEnum):
    """The roles (onboarding.domain.models.Role) a step can wait on."""

    applicant = Role.APPLICANT.value
    pre_verification_reviewer = Role.PRE_VERIFICATION_REVIEWER.value
    market_data_sales = Role.MARKET_DATA_SALES.value
    platform_team = Role.PLATFORM_TEAM.value
    final_approver = Role.FINAL_APPROVER.value


class _App(typer.Typer):
    """Run as the console script, skip interpreter teardown like starter.py: the SDK's Rust
    runtime threads can abort it (temporalio/sdk-python#300). CliRunner never calls this."""

    def __call__(self, *args: Any, **kwargs: Any) -> NoReturn:
        code: int = 1
        try:
            super().__call__(*args, **kwargs)
            code = 0
        except SystemExit as exit_:
            if isinstance(exit_.code, str):
                print(exit_.code, file=sys.stderr)
            code = exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
        except Exception:  # noqa: BLE001
            sys.excepthook(*sys.exc_info())  # typer's readable traceback
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _decisions_help() -> str:
    """Every decision people take, by process, as the catalogue describes it."""
    titles = {"subscription": "Subscription (a fintech uses APIs): each step waits on a "
                              "decision.",
              "publication": "Publication (a member company publishes its API):",
              "live_service": "Live service (after production; workflow id live-service-...):"}
    parts = []
    for process, decisions in CATALOGUES.items():
        lines = ["\b", titles[process]]
        for name in DECISIONS[process]:
            wrapped = textwrap.wrap(decisions[name].description, 62)
            lines.append(f"  {name:<26}{wrapped[0]}")
            lines += [f"  {'':<26}{more}" for more in wrapped[1:]]
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


app = _App(
    help=f"""Reviewer CLI for Open API onboarding applications: find what waits on you
(queue), read an application (show), take your decision (decide, withdraw), submit an
application (submit).

{_decisions_help()}

Settings as the worker's: TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_TASK_QUEUE,
DATABASE_URL, TLS and API key (environment or .env).""",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_show_locals=False,  # locals would include settings and secrets
)


# --- helpers ---------------------------------------------------------------------------------


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(code)


def _console() -> Console:
    console = Console(highlight=False)
    if not console.is_terminal:  # piped or captured: do not squeeze tables into 80 columns
        console.width = 200
    return console


def _run(settings: Settings, work: Any) -> Any:
    """Run `work` (a coroutine); Temporal's errors become one readable line and exit 1."""
    try:
        return asyncio.run(work)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            _fail(f"not found: {err.message}")
        if err.status in (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED):
            _fail(f"no answer from Temporal in time: is a worker running on task queue "
                  f"{settings.temporal_task_queue}? ({err.message})")
        _fail(f"Temporal refused: {err.message}")
    except PayloadEncryptionError as err:
        _fail(f"cannot encrypt or decrypt: {err}")
    except (signing_in.NotSignedIn, OIDCError) as err:
        _fail(str(err), 2)
    except RuntimeError as err:
        if not str(err).startswith("Failed client connect"):
            raise
        _fail(f"cannot reach Temporal at {settings.temporal_address}: {err}")


def _process_of(application_id: str) -> str:
    """The process a workflow id names: subscription-..., publication-..., live-service-..."""
    for process in DECISIONS:
        if application_id.startswith(process.replace("_", "-") + "-"):
            return process
    _fail(f"{application_id}: not an application id (subscription-..., publication-... or "
          "live-service-...)", 2)


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _days(delta: timedelta) -> str:
    days = delta.days
    return "today" if days == 0 else f"{days} day" if days == 1 else f"{days} days"


def _status_of(client: Client, application_id: str):
    return client.get_workflow_handle(application_id).query(
        "status", result_type=ApplicationStatus, rpc_timeout=QUERY_TIMEOUT)


# --- submit ----------------------------------------------------------------------------------


@app.command()
def submit(
    process: Annotated[Process, typer.Argument(
        metavar="PROCESS", help="subscription: a fintech uses APIs; publication: a member "
                                "company publishes its API.")],
    file: Annotated[str, typer.Argument(metavar="FILE", help="The application as JSON ('-' reads stdin).")],
) -> None:
    """Submit an application from its JSON file.

    Checked first: a refusal names each field and rule, starts nothing and exits 2. A second
    submission of the same application is refused, not duplicated.
    """
    text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as err:
        _fail(f"submission refused: not valid JSON: {err}", 2)
    settings = get_settings()
    try:
        workflow_id = _run(settings, starter.submit(process.value, raw, settings))
    except (SubmissionRefused, starter.AlreadySubmitted) as err:
        _fail(str(err), 2)
    typer.echo(f"submitted: {workflow_id}")
    typer.echo(f"  follow it: openapi-onboarding show {workflow_id}")


async def _standing(settings: Settings, application_id: str) -> tuple[str, str] | None:
    if not settings.database_url:
        return None
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        return await applications.standing(conn, application_id)
    finally:
        await conn.close()


# --- queue -----------------------------------------------------------------------------------


async def _staff_roles(settings: Settings, email: str) -> list[str]:
    assert settings.database_url
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        return [role.value for role in await catalogue.staff_roles(conn, email)]
    finally:
        await conn.close()


async def _organisation_names(settings: Settings, numbers: set[str]) -> dict[str, str]:
    if not settings.database_url or not numbers:
        return {}
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        return await applications.organisation_names(conn, list(numbers))
    finally:
        await conn.close()


async def _queue(settings: Settings, roles: list[str] | None,
                 process: Process | None) -> list[dict]:
    client = await connect(settings)
    where = ['ExecutionStatus = "Running"', f'TaskQueue = "{settings.temporal_task_queue}"']
    where.append(f"WaitingOn IN ({', '.join(json.dumps(r) for r in roles)})" if roles
                 else 'WaitingOn != "nobody"')
    if process:  # the search attribute keeps its registered name
        where.append(f'ApplicationKind = "{process.value}"')
    listed = [w async for w in client.list_workflows(" AND ".join(where))]
    statuses = await asyncio.gather(*(_status_of(client, w.id) for w in listed),
                                    return_exceptions=True)
    names = await _organisation_names(
        settings, {w.typed_search_attributes.get(sa.ORGANISATION_ID) or "" for w in listed} - {""})
    rows = []
    for w, status in zip(listed, statuses):
        if isinstance(status, BaseException) and not isinstance(
                status, (RPCError, WorkflowQueryFailedError)):
            raise status
        attrs = w.typed_search_attributes
        org = attrs.get(sa.ORGANISATION_ID) or ""
        row = {"id": w.id, "process": attrs.get(sa.APPLICATION_KIND) or "",
               "organisation": names.get(org, org), "step": attrs.get(sa.APPLICATION_STEP) or "",
               "waiting_on": attrs.get(sa.WAITING_ON) or "", "since": None, "deadline": None}
        if isinstance(status, ApplicationStatus):
            waits = status.waiting_on and not status.outcome
            if not waits or (roles and status.waiting_on not in roles):
                continue  # the listing lags: it has moved on since
            row.update(step=status.step, waiting_on=status.waiting_on,
                       since=status.waiting_since,
                       deadline=min(status.deadlines, key=lambda d: d.due_at, default=None))
        rows.append(row)
    far = datetime.max.replace(tzinfo=UTC)
    return sorted(rows, key=lambda r: r["since"] or far)


@app.command()
def queue(
    role: Annotated[WaitingRole | None, typer.Option(
        help="The role whose work to list, e.g. pre_verification_reviewer, platform_team, "
             "applicant.")] = None,
    me: Annotated[str | None, typer.Option(
        "--me", metavar="EMAIL",
        help="List the work of every role this person holds in the staff roster "
             "(staff_roles; needs DATABASE_URL).")] = None,
    process: Annotated[Process | None, typer.Option(
        help="Only applications of this process.")] = None,
) -> None:
    """What waits on a role, oldest first.

    Lists id, process, organisation, step, waiting since (age in days) and the next deadline
    (reminder, escalation, lapse) of each application waiting on the role.

    Without --role or --me, everything that waits on someone. The list comes from Temporal's
    visibility (search attributes WaitingOn and ApplicationKind, the process, on the task queue
    TEMPORAL_TASK_QUEUE), which is eventually consistent: a decision taken a second ago may not show yet. Each
    application's own status query then gives since and deadlines; one that has moved on
    meanwhile is left out.
    """
    if role and me:
        _fail("give --role or --me, not both", 2)
    settings = get_settings()
    roles = [role.value] if role else None
    if me:
        if not settings.database_url:
            _fail("--me needs DATABASE_URL: roles come from the staff roster (staff_roles)", 2)
        roles = _run(settings, _staff_roles(settings, me))
        if not roles:
            _fail(f"{me} holds no role in the staff roster", 2)
        typer.echo(f"{me} holds: {', '.join(roles)}")
    rows = _run(settings, _queue(settings, roles, process))
    if not rows:
        typer.echo("nothing waiting" + (f" on {', '.join(roles)}" if roles else ""))
        return
    now = datetime.now(UTC)
    table = Table("application", "process", "organisation", "step", "waiting on", "since", "age",
                  "next deadline", title=f"waiting on {', '.join(roles) if roles else 'anyone'}")
    table.columns[0].no_wrap = True
    for r in rows:
        since, deadline = r["since"], r["deadline"]
        table.add_row(*(Text(str(c)) for c in (
            r["id"], r["process"], r["organisation"], r["step"], r["waiting_on"],
            _when(since) if since else "?", _days(now - since) if since else "status unavailable",
            f"{deadline.purpose} {deadline.due_at:%Y-%m-%d}" if deadline else "-")))
    _console().print(table)


# --- show ------------------------------------------------------------------------------------


@app.command()
def show(application_id: Annotated[str, typer.Argument(
        metavar="APPLICATION_ID", help="e.g. subscription-1248100998-aea1a1bdff67")]) -> None:
    """An application's status and decision timeline.

    Step, whom it waits on and since when, deadlines, keys (display prefix only), reviewer
    flags, withdrawn APIs, and every decision received, applied or refused (with the reason).
    With DATABASE_URL, also the application's status on record: a subscription in production
    names its live service, and shows `terminated` once that service has ended.
    """
    settings = get_settings()
    _process_of(application_id)

    async def fetch() -> ApplicationStatus:
        return await _status_of(await connect(settings), application_id)

    s: ApplicationStatus = _run(settings, fetch())
    # The row on record outlives the workflow: a subscription's live service, ending, puts it
    # on record as terminated while the subscription's own outcome stays in_production.
    standing = _run(settings, _standing(settings, application_id))
    now = datetime.now(UTC)
    out = _console()
    head = Table.grid(padding=(0, 2))
    for label, value in [
        ("application", s.application_id), ("process", s.process), ("step", s.step),
        ("outcome", s.outcome or "open"),
        *([("on record", f"{standing[0]} (step {standing[1]})"
                         + (f", live service {live_service_id(s.application_id)}"
                            if s.outcome == "in_production" and s.process == "subscription"
                            else ""))]
          if standing else []),
        ("waiting on", s.waiting_on or "nobody"),
        ("takes", ", ".join(s.takes) or ("-" if s.outcome else "nothing yet: the platform is "
                                          "working on the step")),
        ("since", f"{_when(s.waiting_since)} ({_days(now - s.waiting_since)})"),
        ("deadlines", ", ".join(f"{d.purpose} {_when(d.due_at)}" for d in s.deadlines) or "-"),
        ("keys", ", ".join(f"{k.environment} {k.display_prefix}… {k.status}, expires "
                           f"{k.expires_at:%Y-%m-%d}" for k in s.keys) or "-"),
        ("reviewer flags", "; ".join(s.reviewer_flags) or "-"),
        ("withdrawn APIs", ", ".join(s.withdrawn_apis) or "-"),
        # The timeline is the one the runs carried; what they carried no more is counted
        # (the audit log has each: docs/architecture.md, "A history that stays bounded").
        ("run", f"{s.run}" + (" (continued as new, its state carried)" if s.run > 1 else "")),
        *([("not listed", f"{s.refused_not_listed} earlier refusals, "
                          f"{s.applied_not_listed} earlier applied decisions: "
                          "see the audit log")]
          if s.refused_not_listed or s.applied_not_listed else []),
    ]:
        head.add_row(Text(label, style="bold"), Text(value))
    out.print(head)
    if s.live is not None:
        _show_live_service(out, s.live)
    if s.admission_refusals:
        refused = Table("field", "rule", "why", title="refused at admission")
        for r in s.admission_refusals:
            refused.add_row(Text(r.field), Text(r.rule), Text(r.message))
        out.print(refused)
    timeline = Table("received", "step", "decision", "by", "result", "note / reason",
                     title="decisions")
    for d in s.decisions:
        timeline.add_row(*(Text(c) for c in (
            _when(d.received_at), d.step, d.decision, d.decided_by,
            "applied" if d.applied else "refused", d.note if d.applied else d.reason)),
            style=None if d.applied else "red")
    out.print(timeline if s.decisions else Text("no decisions yet"))


def _show_live_service(out: Console, live: LiveServiceStatus) -> None:
    """A live service's own part: its state, APIs, contracts watched, and what happened."""
    grid = Table.grid(padding=(0, 2))
    for label, value in [
        ("live service", live.state + (f", terminating on {live.terminating_on}"
                                       if live.terminating_on else "")),
        ("subscription", live.subscription_workflow_id),
        ("APIs", ", ".join(live.apis) or "-"),
        ("suspended for", "; ".join(live.suspensions) or "-"),
        ("next due", live.next_due or "-"),
        ("pending change", live.pending_change or "-"),
    ]:
        grid.add_row(Text(label, style="bold"), Text(value))
    out.print(grid)
    contracts = Table("contract", "number", "valid until", "lapsed", title="contracts watched")
    for c in live.contracts:
        contracts.add_row(Text(c.contract_type), Text(c.contract_number),
                          Text(f"{c.valid_until}"), Text("yes" if c.lapsed else "no"))
    out.print(contracts if live.contracts else Text("no contracts watched"))
    if live.timeline:
        timeline = Table("at", "event", "detail", title="live service timeline"
                         + (f" ({live.timeline_not_listed} earlier not listed)"
                            if live.timeline_not_listed else ""))
        for entry in live.timeline:
            timeline.add_row(Text(_when(entry.at)), Text(entry.event), Text(entry.detail))
        out.print(timeline)


# --- decide, withdraw ------------------------------------------------------------------------


def build_decision(application_id: str, name: str, base: dict[str, Any],
                   fields: dict[str, Any]) -> Decision:
    """The decision `name` for this application's process, validated as the workflow will; on
    a problem, every field and rule is printed and the command exits 2 (nothing sent)."""
    process = _process_of(application_id)
    model = DECISIONS[process].get(name)
    if model is None:
        _fail(f"{name}: not a {process} decision; one of: {', '.join(DECISIONS[process])}", 2)
    payload = {**base, **{k: v for k, v in fields.items() if v is not None}}
    payload.setdefault("decision_id", f"{name}-{uuid.uuid4().hex[:12]}")
    # What the codec server's seal binds (onboarding.identity.attestation).
    payload.setdefault("application_id", application_id)
    payload.setdefault("decision", name)
    try:
        decision = model.model_validate(payload)
    except ValidationError as err:
        problems = "\n".join(
            f"  - {'.'.join(str(p) for p in e['loc']) or '(payload)'}: {e['msg']} [{e['type']}]"
            for e in err.errors())
        _fail(f"{name} not sent, the decision is malformed:\n{problems}", 2)
    # Refused before Temporal: an update too large for it would wedge the application.
    if reason := too_large(CATALOGUES[process][name], len(decision.model_dump_json().encode())):
        _fail(f"{name} not sent, the decision is too large: {reason}", 2)
    return decision


async def _until_the_step_takes_decisions(client: Client, application_id: str) -> None:
    """Between two steps the platform works for a moment (records, contracts, keys, notices)
    and the application takes no decision. Wait that out, so that decisions taken one after
    another (a script, or commands pasted together) each meet the step they are meant for.
    After PLATFORM_BUSY_WAIT seconds the decision is sent anyway and the workflow says why it
    does not apply."""
    told = False
    loop = asyncio.get_running_loop()
    give_up = loop.time() + PLATFORM_BUSY_WAIT
    while loop.time() < give_up:
        status = await _status_of(client, application_id)
        if status.takes or status.outcome:
            return
        if not told:
            typer.echo(f"the platform is still working on step {status.step}; waiting…",
                       err=True)
            told = True
        await asyncio.sleep(0.2)


def _signed_in(settings: Settings, by: str | None) -> tuple[str, str]:
    """The access token of whoever takes the decision, and their e-mail address: the one
    person signed in, or, when several are (one terminal playing several people in the dev
    stack), the one `--by` names. A decision is sealed for the sign-in it is sent with; `--by`
    only chooses among sign-ins."""
    if not settings.temporal_codec_endpoint:
        _fail("decisions are sealed for you by the codec server: set TEMPORAL_CODEC_ENDPOINT "
              "(make up writes it into .data/dev.env)", 2)
    return _run(settings, signing_in.access_token(settings, by))


def send_decision(application_id: str, name: str, decision: Decision,
                  access_token: str) -> DecisionReceipt:
    """Send as the update `name`, through the codec server, which seals it for the signed-in
    reviewer; print the answer. Exit 1 when refused on the record, 2 when the workflow's
    validator rejected it (it then is not recorded)."""
    settings = get_settings()

    async def send() -> DecisionReceipt:
        assert settings.temporal_codec_endpoint
        sealing = CodecServerClient(settings.temporal_codec_endpoint, access_token)
        client = await connect(settings, converter=data_converter(settings, codec=sealing))
        if name != "withdraw":
            await _until_the_step_takes_decisions(client, application_id)
        handle = client.get_workflow_handle(application_id)
        async with asyncio.timeout(UPDATE_TIMEOUT):
            return await handle.execute_update(name, decision, result_type=DecisionReceipt)

    try:
        receipt: DecisionReceipt = _run(settings, send())
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        reason = cause.message if isinstance(cause, ApplicationError) else str(cause or err)
        _fail(f"not applied (rejected by the workflow, not recorded): {reason}", 2)
    except TimeoutError:
        _fail(f"no answer in {UPDATE_TIMEOUT} s: is a worker running on task queue "
              f"{settings.temporal_task_queue}? Check with: openapi-onboarding show "
              f"{application_id}")
    if not receipt.applied:
        _fail(f"refused at step {receipt.step} (on the record as {receipt.decision_id}): "
              f"{receipt.reason}")
    typer.echo(f"applied: {name} {receipt.decision_id} at step {receipt.step}")
    return receipt


def _read_json(text: str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        _fail(f"{what}: not valid JSON: {err}", 2)
    if not isinstance(data, dict):
        _fail(f"{what}: must be a JSON object", 2)
    return data


@app.command()
def decide(
    application_id: Annotated[str, typer.Argument(
        metavar="APPLICATION_ID", help="subscription-... or publication-...")],
    decision: Annotated[str, typer.Argument(
        metavar="DECISION",
        help=" ".join(f"{process.capitalize()}: {', '.join(names)}." for process, names
                      in DECISIONS.items()))],
    by: Annotated[str | None, typer.Option(
        "--by", metavar="EMAIL", help="Who decides: a person signed in with `openapi-onboarding "
        "login` (needed only when several are). Staff hold the step's role; an applicant is "
        "a registered contact.")] = None,
    note: Annotated[str | None, typer.Option(metavar="TEXT", help="Why; needed for reject, request_changes, "
                                                   "more_testing.")] = None,
    verdict: Annotated[str | None, typer.Option(
        metavar="VERDICT", help="approve, reject, request_changes, more_testing, concluded, "
                                "signed: as the decision allows.")] = None,
    decision_id: Annotated[str | None, typer.Option(
        metavar="ID", help="Makes a repeat harmless; generated when not given.")] = None,
    criteria_all: Annotated[bool, typer.Option(
        "--criteria-all", help="pre_verification approve: the three criteria hold (capital-"
        "market development, not speculative/gambling, not harmful to public morals).")] = False,
    eligibility_confirmed: Annotated[bool, typer.Option(
        "--eligibility-confirmed",
        help="platform_contract signed: corporate status confirmed from the registry.")] = False,
    contract_number: Annotated[str | None, typer.Option(
        metavar="NUMBER", help="market_data_licence, platform_contract, production_switch: the contract.")] = None,
    signed_on: Annotated[str | None, typer.Option(metavar="YYYY-MM-DD")] = None,
    valid_from: Annotated[str | None, typer.Option(metavar="YYYY-MM-DD")] = None,
    valid_until: Annotated[str | None, typer.Option(metavar="YYYY-MM-DD")] = None,
    results: Annotated[str | None, typer.Option(
        metavar="TEXT", help="api_test_report: the results.")] = None,
    json_text: Annotated[str | None, typer.Option(
        "--json", metavar="'{...}'", help="The payload, or the fields the options do not "
        "cover (e.g. resubmit's service); options given override it.")] = None,
    file: Annotated[Path | None, typer.Option(
        metavar="FILE", help="The payload from a JSON file, like --json.", exists=True, dir_okay=False)] = None,
) -> None:
    """Take a decision on an application, with an immediate answer.

    The payload is built from the options (--json or --file for the rest), checked against
    the model the workflow uses, then sent as the workflow update of the same name.

    Prints "applied", or "refused" with the reason (on the record, exit 1). A malformed
    decision (naming each field and rule) or one the workflow's validator rejects for its
    current step is not recorded and exits 2.
    """
    if json_text is not None and file is not None:
        _fail("give --json or --file, not both", 2)
    base: dict[str, Any] = {}
    if json_text is not None:
        base = _read_json(json_text, "--json")
    elif file is not None:
        base = _read_json(file.read_text(encoding="utf-8"), str(file))
    settings = get_settings()
    token, me = _signed_in(settings, by)
    fields: dict[str, Any] = {"decision_id": decision_id, "decided_by": me, "note": note,
                              "verdict": verdict, "results": results}
    if criteria_all:
        fields["criteria"] = PreVerificationCriteria(
            related_to_capital_market_development=True, not_speculative_or_gambling=True,
            not_harmful_to_public_morals=True).model_dump()
    if eligibility_confirmed:
        fields["eligibility_confirmed"] = True
    terms = {"contract_number": contract_number, "signed_on": signed_on,
             "valid_from": valid_from, "valid_until": valid_until}
    if any(v is not None for v in terms.values()):
        model = DECISIONS[_process_of(application_id)].get(decision)
        field = ("service_contract" if model and "service_contract" in model.model_fields
                 else "contract")
        given = base.get(field) if isinstance(base.get(field), dict) else {}
        fields[field] = {**given, **{k: v for k, v in terms.items() if v is not None}}
    send_decision(application_id, decision, build_decision(application_id, decision, base, fields),
                  token)


@app.command()
def withdraw(
    application_id: Annotated[str, typer.Argument(
        metavar="APPLICATION_ID", help="subscription-... or publication-...")],
    by: Annotated[str | None, typer.Option(
        "--by", metavar="EMAIL", help="A registered contact of the applicant or provider, "
        "signed in with `openapi-onboarding login` (needed only when several are).")] = None,
    note: Annotated[str, typer.Option(metavar="TEXT", help="Why, for the record.")] = "",
) -> None:
    """Withdraw an application (the applicant or provider).

    Any step before it ends: issued keys are revoked; a publication's API leaves the
    catalogue. Same answer and exit codes as decide.
    """
    token, me = _signed_in(get_settings(), by)
    send_decision(application_id, "withdraw",
                  build_decision(application_id, "withdraw", {}, {"decided_by": me, "note": note}),
                  token)


# --- login, logout, token ----------------------------------------------------------------------


@app.command()
def login(no_browser: Annotated[bool, typer.Option(
        "--no-browser", help="Only print the address to open.")] = False) -> None:
    """Sign in with the operator's identity provider, in the browser.

    Every decision sent after (decide, withdraw) is sealed for you by the codec server. The
    tokens are kept in CLI_TOKEN_FILE (default: openapi-onboarding/tokens.json in your config
    directory), readable by you alone; `logout` removes them. Signing in as someone else keeps
    both sign-ins: `--by` then says whose a decision uses.
    """
    settings = get_settings()
    open_url = (lambda url: None) if no_browser else signing_in.webbrowser.open
    tokens = _run(settings, signing_in.sign_in(settings, open_url=open_url,
                                               say=lambda m: typer.echo(m, err=True)))
    claims = signing_in.claims_of(tokens["access_token"])
    typer.echo(f"signed in as {signing_in.who(tokens['access_token'])} "
               f"(issuer {claims.get('iss')}, subject {claims.get('sub')})")


@app.command()
def logout(person: Annotated[str | None, typer.Argument(
        metavar="[EMAIL]", help="Whose sign-in to forget; everyone's when left out.")] = None
           ) -> None:
    """Forget the tokens `login` kept."""
    gone = signing_in.forget(get_settings(), person)
    typer.echo(f"signed out: {', '.join(gone)}" if gone else "not signed in")


@app.command()
def token(person: Annotated[str | None, typer.Option(
        "--as", metavar="EMAIL", help="Whose sign-in, when several people are signed in.")
        ] = None) -> None:
    """Print `Bearer <access token>`, refreshed if needed, for the temporal CLI:
    export TEMPORAL_CODEC_AUTH="$(openapi-onboarding token)"."""
    settings = get_settings()
    access, _ = _run(settings, signing_in.access_token(settings, person))
    typer.echo(f"Bearer {access}")

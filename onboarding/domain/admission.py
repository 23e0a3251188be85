"""Admission: the rules an application must meet, whoever starts it.

One implementation, used three ways: `starter.py` and the reviewer CLI check a submission
before starting anything, so that a person gets the answer at once; and every application
workflow checks its own input first (its `admission` step, the local activity
`admit_application`, activities/admission.py), so that a service starting a workflow with
nothing but the `temporal` CLI meets the same rules. `admit` holds the rules that need no
record (the numbers and their check digits, corporations only, sizes, control characters,
the bounds on deadlines, key validity and process limits, the application id matching the
organisation and its service or API, the OpenAPI document); what the record must say (the
catalogue, an API id or an application id not taken) is onboarding/store/admission.py.

Reviewer flags and a publication's specification summary are recomputed here, never taken
from the input. A refusal names each field and the rule it breaks.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError, validate_email

from onboarding.core.config import Settings
from onboarding.domain.models import (
    DeadlinePolicy,
    KeyValidity,
    Organisation,
    PublicationApplication,
    PublicationForm,
    Refusal,
    SpecificationSummary,
    SubscriptionApplication,
    SubscriptionForm,
)
from onboarding.domain.openapi import SpecFindings, canonical_json, check_openapi
from onboarding.domain.registration import (
    RegistrationNumberError,
    check_business_registration_number,
    check_corporate_registration_number,
)


F = TypeVar("F", bound=BaseModel)

# Workflow history carries the document: keep it well inside Temporal's payload limits.
MAX_SPECIFICATION_BYTES = 512 * 1024


class SubmissionRefused(ValueError):
    def __init__(self, refusals: list[Refusal]) -> None:
        super().__init__("submission refused:\n" + "\n".join(f"  - {r}" for r in refusals))
        self.refusals = refusals


def application_id_for(business_registration_number: str, service_name: str) -> str:
    """The same organisation applying again for the same service is the same application."""
    digest = hashlib.sha256(" ".join(service_name.casefold().split()).encode()).hexdigest()
    return f"subscription-{business_registration_number}-{digest[:12]}"


# C0 control characters other than tab, line feed and carriage return, and DEL. NUL cannot
# be stored in PostgreSQL text at all; the others have no place in names and descriptions and
# would reach notices and the reviewers' screens.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _control_characters(value: Any, path: str = "") -> list[Refusal]:
    """Every text in the submission (keys too) holding a control character, by its path."""
    if isinstance(value, str):
        found = _CONTROL.search(value)
        return [Refusal(path or "(submission)", "control_characters",
                        f"contains the control character U+{ord(found.group()):04X}")] if found else []
    if isinstance(value, dict):
        refusals = []
        for key, item in value.items():
            shown = _CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", str(key))
            where = f"{path}.{shown}".lstrip(".")
            if isinstance(key, str) and _CONTROL.search(key):
                refusals += _control_characters(key, f"{where} (the name)")
            refusals += _control_characters(item, where)
        return refusals
    if isinstance(value, list):
        return [r for i, v in enumerate(value) for r in _control_characters(v, f"{path}.{i}")]
    return []


def _validation_refusals(err: ValidationError) -> list[Refusal]:
    return [Refusal(".".join(str(p) for p in e["loc"]) or "(submission)", e["type"], e["msg"])
            for e in err.errors()]


def _form(model: type[F], raw: dict[str, Any]) -> F:
    if refusals := _control_characters(raw)[:20]:
        raise SubmissionRefused(refusals)
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        raise SubmissionRefused(_validation_refusals(err)) from None


def _corporation(org: Organisation) -> tuple[Organisation, list[str]]:
    """The organisation with its numbers normalised, and notes for the eligibility reviewer;
    refused unless it is a corporation (docs/domain.md, "Who may apply: corporations only")."""
    refusals: list[Refusal] = []
    flags: list[str] = []
    checked: dict[str, str] = {}
    for name, check in (("business_registration_number", check_business_registration_number),
                        ("corporate_registration_number", check_corporate_registration_number)):
        try:
            number = check(getattr(org, name), f"organisation.{name}")
        except RegistrationNumberError as err:
            refusals.append(Refusal(err.field, err.rule, str(err).split(": ", 1)[1]))
        else:
            checked[name] = number.number
            flags += number.reviewer_flags
    if refusals:
        raise SubmissionRefused(refusals)
    return org.model_copy(
        update={**checked, "contact_emails": [str(e).lower() for e in org.contact_emails]}
    ), flags


def _deadlines(settings: Settings) -> DeadlinePolicy:
    return DeadlinePolicy(
        remind_after_days=settings.remind_after_days,
        escalate_after_days=settings.escalate_after_days,
        lapse_after_days=settings.lapse_after_days,
    )


def specification_too_large(specification: dict[str, Any]) -> str | None:
    """Why the document is too large to carry in workflow history, or None."""
    try:
        size = len(canonical_json(specification))
    except ValueError:  # NaN or infinity (json.loads accepts them): check_openapi names where
        return None
    if size > MAX_SPECIFICATION_BYTES:
        return f"{size} bytes; a specification may have at most {MAX_SPECIFICATION_BYTES}"
    return None


def _summary(specification: dict[str, Any]) -> SpecificationSummary:
    """The document's summary, or SubmissionRefused naming each finding's path."""
    if too_large := specification_too_large(specification):
        raise SubmissionRefused([Refusal("specification", "too_large", too_large)])
    try:
        summary = check_openapi(specification, "specification")
    except SpecFindings as refused:
        # Each finding reads "<path>: <message>"; the path names the field.
        raise SubmissionRefused(
            [Refusal(*finding.split(": ", 1)[:1], "openapi", finding.split(": ", 1)[-1])
             for finding in refused.findings]
        ) from None
    return SpecificationSummary(
        openapi_version=summary.openapi_version, title=summary.title, version=summary.version,
        operation_count=summary.operation_count, sha256=summary.sha256)


# --- a submission: the form a person or a service fills in ------------------------------------


def prepare_subscription(raw: dict[str, Any], settings: Settings) -> SubscriptionApplication:
    """A submitted form as the workflow's input, checked as the workflow will check it
    (`admit`; the record's checks are onboarding/store/admission.py)."""
    form = _form(SubscriptionForm, raw)
    organisation, _ = _corporation(form.organisation)
    application = SubscriptionApplication(
        application_id=application_id_for(organisation.business_registration_number,
                                          form.service.name),
        organisation=organisation,
        service=form.service,
        requested_apis=form.requested_apis,
        deadlines=_deadlines(settings),
        key_validity=KeyValidity(
            sandbox_days=settings.sandbox_key_valid_days,
            production_days=settings.production_key_valid_days,
        ),
    )
    return _admitted(admit("subscription", application.model_dump(mode="json")))


def prepare_publication(raw: dict[str, Any], settings: Settings) -> PublicationApplication:
    """A provider's submission, its OpenAPI document included, as the workflow's input."""
    form = _form(PublicationForm, raw)
    organisation, _ = _corporation(form.organisation)
    application = {
        "application_id": publication_id_for(organisation.business_registration_number,
                                             form.api.api_id),
        "organisation": organisation.model_dump(mode="json"),
        "api": form.api.model_dump(mode="json"),
        "specification": form.specification,
        "deadlines": _deadlines(settings).model_dump(mode="json"),
    }
    return _admitted(admit("publication", application))


def _admitted(admission: Admission) -> Any:
    if admission.refusals:
        raise SubmissionRefused(admission.refusals)
    return admission.application


def publication_id_for(business_registration_number: str, api_id: str) -> str:
    """A provider applies once to publish an API."""
    return f"publication-{business_registration_number}-{api_id}"


# --- an application: the workflow's input, whoever sent it -------------------------------------


@dataclass
class Admission:
    """What `admit` found: the application as the workflow runs it (numbers normalised, flags
    and summary recomputed) when no rule refuses it; else every refusal. `contacts`: the
    addresses in the input that are valid, to tell of a refusal."""

    application: SubscriptionApplication | PublicationApplication | None
    refusals: list[Refusal] = field(default_factory=list)
    contacts: list[str] = field(default_factory=list)


# Whatever an input holds, at most this many refusals are named: enough to fix it by.
MAX_REFUSALS = 30
MAX_CONTACTS = 10


def admit(process: Literal["subscription", "publication"], raw: Any,
          workflow_id: str | None = None) -> Admission:
    """Every rule an application must meet that needs no record, on its raw input (JSON).

    `workflow_id`: the workflow the input started, whose id must be the application's.
    """
    model = SubscriptionApplication if process == "subscription" else PublicationApplication
    contacts = valid_contacts(raw)
    if not isinstance(raw, dict):
        return Admission(None, [Refusal("(application)", "not_an_object",
                                        f"a {process} application is a JSON object, not "
                                        f"{type(raw).__name__}")], contacts)
    if refusals := _control_characters(raw)[:MAX_REFUSALS]:
        return Admission(None, refusals, contacts)
    # Recomputed below, never taken from the input.
    given = {k: v for k, v in raw.items() if k not in ("reviewer_flags", "specification_summary")}
    if process == "publication":
        given["specification_summary"] = _UNCHECKED
    try:
        application = model.model_validate(given)
    except ValidationError as err:
        refusals = _validation_refusals(err)
        named = {r.field for r in refusals}
        # The numbers too, when they can be read: every refusal at once.
        org = raw.get("organisation") if isinstance(raw.get("organisation"), dict) else {}
        for name, check in (
                ("business_registration_number", check_business_registration_number),
                ("corporate_registration_number", check_corporate_registration_number)):
            where = f"organisation.{name}"
            if isinstance(org.get(name), str) and where not in named:
                try:
                    check(org[name][:40], where)
                except RegistrationNumberError as bad:
                    refusals.append(Refusal(bad.field, bad.rule, str(bad).split(": ", 1)[1]))
        return Admission(None, refusals[:MAX_REFUSALS], contacts)
    refusals: list[Refusal] = []
    update: dict[str, Any] = {}
    try:
        organisation, flags = _corporation(application.organisation)
    except SubmissionRefused as refused:
        refusals += refused.refusals
        brn = None
    else:
        update.update(organisation=organisation, reviewer_flags=flags)
        brn = organisation.business_registration_number
    if isinstance(application, PublicationApplication):
        try:
            update["specification_summary"] = _summary(application.specification)
        except SubmissionRefused as refused:
            refusals += refused.refusals
    if brn is not None:
        if isinstance(application, SubscriptionApplication):
            expected = application_id_for(brn, application.service.name)
            names = "the organisation's business registration number and the service's name"
        else:
            expected = publication_id_for(brn, application.api.api_id)
            names = "the organisation's business registration number and the API's id"
        if application.application_id != expected:
            refusals.append(Refusal("application_id", "application_id_mismatch",
                                    f"must be {expected}, made of {names}"))
    if workflow_id is not None and workflow_id != application.application_id:
        refusals.append(Refusal("application_id", "workflow_id_mismatch",
                                f"the workflow's id is {workflow_id[:200]!r}: an application's "
                                "workflow id is its application id"))
    if refusals:
        return Admission(None, refusals[:MAX_REFUSALS], contacts)
    return Admission(application.model_copy(update=update), [], contacts)


_UNCHECKED = {"openapi_version": "", "title": "", "version": "", "operation_count": 0,
              "sha256": ""}


def valid_contacts(raw: Any) -> list[str]:
    """The valid e-mail addresses among the input's organisation.contact_emails (at most ten),
    lower case: whom to tell that the application was refused."""
    organisation = raw.get("organisation") if isinstance(raw, dict) else None
    given = organisation.get("contact_emails") if isinstance(organisation, dict) else None
    found: list[str] = []
    for value in given if isinstance(given, list) else []:
        if not isinstance(value, str) or len(value) > 254 or _CONTROL.search(value):
            continue
        try:
            _, address = validate_email(value)
        except Exception:  # noqa: BLE001 - not an address: nobody to tell there
            continue
        if address.lower() not in found:
            found.append(address.lower())
        if len(found) == MAX_CONTACTS:
            break
    return found

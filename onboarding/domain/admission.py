"""Submission: the rules an application is checked against before its workflow is started.

A refusal names each field and the rule it breaks, and nothing is started. What needs the
record (the catalogue) is checked by starter.py, through onboarding/store/.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from onboarding.core.config import Settings
from onboarding.domain.models import (
    DeadlinePolicy,
    KeyValidity,
    Organisation,
    PublicationApplication,
    PublicationForm,
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


@dataclass(frozen=True)
class Refusal:
    field: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message} [{self.rule}]"


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


def _form(model: type[F], raw: dict[str, Any]) -> F:
    if refusals := _control_characters(raw)[:20]:
        raise SubmissionRefused(refusals)
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        raise SubmissionRefused(
            [
                Refusal(".".join(str(p) for p in e["loc"]) or "(submission)", e["type"], e["msg"])
                for e in err.errors()
            ]
        ) from None


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


def prepare_subscription(raw: dict[str, Any], settings: Settings) -> SubscriptionApplication:
    """Check a submitted form and turn it into the workflow's input (catalogue not checked)."""
    form = _form(SubscriptionForm, raw)
    organisation, flags = _corporation(form.organisation)
    return SubscriptionApplication(
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
        reviewer_flags=flags,
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


def prepare_publication(raw: dict[str, Any], settings: Settings) -> PublicationApplication:
    """Check a provider's submission, its OpenAPI document included (catalogue not checked)."""
    form = _form(PublicationForm, raw)
    organisation, flags = _corporation(form.organisation)
    if too_large := specification_too_large(form.specification):
        raise SubmissionRefused([Refusal("specification", "too_large", too_large)])
    try:
        summary = check_openapi(form.specification, "specification")
    except SpecFindings as refused:
        # Each finding reads "<path>: <message>"; the path names the field.
        raise SubmissionRefused(
            [Refusal(*finding.split(": ", 1)[:1], "openapi", finding.split(": ", 1)[-1])
             for finding in refused.findings]
        ) from None
    return PublicationApplication(
        application_id=f"publication-{organisation.business_registration_number}-{form.api.api_id}",
        organisation=organisation,
        api=form.api,
        specification=form.specification,
        specification_summary=SpecificationSummary(
            openapi_version=summary.openapi_version, title=summary.title,
            version=summary.version, operation_count=summary.operation_count,
            sha256=summary.sha256,
        ),
        deadlines=_deadlines(settings),
        reviewer_flags=flags,
    )


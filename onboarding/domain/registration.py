"""Checks on the two numbers a corporate applicant identifies itself with (docs/domain.md,
"Who may apply: corporations only").

Pure and deterministic (no I/O, no clock), so Temporal workflow code may import it. A passing
check does not prove the number exists; that is the optional business-status lookup and the
eligibility review.
"""

from __future__ import annotations

from dataclasses import dataclass

from stdnum.exceptions import ValidationError
from stdnum.kr import brn
from stdnum.util import clean, isdigits


class RegistrationNumberError(ValueError):
    """Refusal of a registration number: which field, which rule (machine id), and why."""

    def __init__(self, field: str, rule: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.rule = rule


@dataclass(frozen=True)
class BusinessRegistrationNumber:
    number: str  # 10 digits, no dashes
    type_code: str  # digits 4-5
    holder: str
    reviewer_flags: tuple[str, ...] = ()

    @property
    def formatted(self) -> str:
        return brn.format(self.number)


@dataclass(frozen=True)
class CorporateRegistrationNumber:
    number: str  # 13 digits, no dashes
    kind_code: str  # digits 5-6
    check_digit_valid: bool
    reviewer_flags: tuple[str, ...] = ()

    @property
    def formatted(self) -> str:
        return f"{self.number[:6]}-{self.number[6:]}"


# --- business registration number (사업자등록번호) -------------------------------------------

_BRN_WEIGHTS = (1, 3, 7, 1, 3, 7, 1, 3, 5)

# Type codes that may use the platform, with the holder description shown to reviewers.
_BRN_ACCEPTED: dict[str, str] = {
    "81": "for-profit corporation, head office",
    "86": "for-profit corporation, head office",
    "87": "for-profit corporation, head office",
    "88": "for-profit corporation, head office",
    "85": "for-profit corporation, branch",
    "84": "foreign corporation",
}
# Type codes refused outright although they are not individuals: code -> (rule, holder).
_BRN_REFUSED_BODIES: dict[str, tuple[str, str]] = {
    "82": ("non_profit", "non-profit corporation"),
    "83": ("state_body", "state, local government or their association"),
    "89": ("unincorporated_body", "unincorporated body"),
}
FOREIGN_CORPORATION_FLAG = (
    "foreign corporation (type code 84): the eligibility reviewer must confirm the foreign corporation"
)


def business_check_digit(first_nine: str) -> int:
    """NTS check digit of a business registration number from its first nine digits."""
    digits = [int(c) for c in first_nine]
    total = sum(d * w for d, w in zip(digits, _BRN_WEIGHTS))
    total += digits[8] * 5 // 10  # tens digit of (9th digit x 5)
    return (10 - total % 10) % 10  # the final mod 10 matters: check digit 0 is legitimate


def _individual_holder(code: int) -> str | None:
    if 1 <= code <= 79:
        return "individual business, taxable"
    if code == 80:
        return "individual or other (non-corporate)"
    if 90 <= code <= 99:
        return "individual business, tax-exempt"
    return None


def check_business_registration_number(
    value: str, field: str = "business_registration_number"
) -> BusinessRegistrationNumber:
    """Normalise and check a business registration number; refuse anything but a corporation."""
    try:
        # stdnum checks length, digits and non-zero components; not the check digit nor type code.
        number = brn.validate(value)
    except (ValidationError, AttributeError, TypeError):
        raise RegistrationNumberError(
            field, "format", f"must be 10 digits written XXX-XX-XXXXX with non-zero parts — {value!r}"
        ) from None
    shown = brn.format(number)

    expected = business_check_digit(number[:9])
    if expected != int(number[9]):
        raise RegistrationNumberError(
            field, "check_digit", f"check digit does not match (expected {expected}, got {number[9]}) — {shown}"
        )

    type_code = number[3:5]
    if (individual := _individual_holder(int(type_code))) is not None:
        raise RegistrationNumberError(
            field,
            "corporations_only",
            f"type code {type_code} ({individual}) is not a corporation; the platform is open to "
            f"corporations only, sole proprietors and individuals cannot apply — {shown}",
        )
    if type_code in _BRN_REFUSED_BODIES:
        rule, holder = _BRN_REFUSED_BODIES[type_code]
        raise RegistrationNumberError(
            field, rule, f"type code {type_code} ({holder}) may not use the platform — {shown}"
        )

    flags = (FOREIGN_CORPORATION_FLAG,) if type_code == "84" else ()
    return BusinessRegistrationNumber(number, type_code, _BRN_ACCEPTED[type_code], flags)


# --- corporate registration number (법인등록번호) --------------------------------------------

# Known corporation kind codes; others are flagged for the reviewer, not refused.
_KNOWN_KIND_CODES = frozenset(
    [*range(11, 16), 21, 22, *range(31, 54), 71, *range(81, 87)]
)
CHECK_DIGIT_FLAG = (
    "corporate registration number check digit does not match; numbers issued from 2025 may "
    "carry no check digit: the eligibility reviewer must confirm it against the registry extract"
)


def corporate_check_digit(first_twelve: str) -> int:
    """Check digit of a corporate registration number from its first twelve digits."""
    total = sum(int(c) * (1 if i % 2 == 0 else 2) for i, c in enumerate(first_twelve))
    return (10 - total % 10) % 10


def check_corporate_registration_number(
    value: str, field: str = "corporate_registration_number"
) -> CorporateRegistrationNumber:
    """Normalise and check a corporate registration number; only malformed input is refused."""
    number = clean(value, " -").strip() if isinstance(value, str) else ""
    if len(number) != 13 or not isdigits(number):
        raise RegistrationNumberError(
            field, "format", f"must be 13 digits written XXXXXX-XXXXXXX — {value!r}"
        )

    flags: list[str] = []
    valid = corporate_check_digit(number[:12]) == int(number[12])
    if not valid:
        flags.append(CHECK_DIGIT_FLAG)
    kind_code = number[4:6]
    if int(kind_code) not in _KNOWN_KIND_CODES:
        flags.append(
            f"corporation kind code {kind_code} is not a known kind: the eligibility reviewer must confirm it"
        )
    return CorporateRegistrationNumber(number, kind_code, valid, tuple(flags))

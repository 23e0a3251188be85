"""Registration-number checks against the facts in docs/domain.md, "Who may apply: corporations
only"."""

from __future__ import annotations

import pytest

from onboarding.domain.registration import (
    CHECK_DIGIT_FLAG,
    FOREIGN_CORPORATION_FLAG,
    BusinessRegistrationNumber,
    RegistrationNumberError,
    business_check_digit,
    check_business_registration_number,
    check_corporate_registration_number,
    corporate_check_digit,
)


def _brn_with_type(code: str, office: str = "123", serial: str = "3456") -> str:
    """A well-formed number with the given type code and a correct check digit."""
    first_nine = f"{office}{code}{serial}"
    return f"{first_nine}{business_check_digit(first_nine)}"


# --- business registration number: check digit ----------------------------------------------


@pytest.mark.parametrize(
    "number",
    ["124-81-00998", "220-81-62517", "134-86-72683", "116-82-00276", "220-82-05060"],
)
def test_check_digit_of_known_valid_numbers(number: str) -> None:
    digits = number.replace("-", "")
    assert business_check_digit(digits[:9]) == int(digits[9])


def test_check_digit_zero_keeps_final_mod_10() -> None:
    # Without the final "mod 10" the expected digit would be 10 and 220-82-05060 refused.
    assert business_check_digit("220820506") == 0


@pytest.mark.parametrize(
    ("number", "expected", "got"), [("124-81-00999", 8, 9), ("123-45-67890", 1, 0)]
)
def test_known_invalid_check_digit_is_refused(number: str, expected: int, got: int) -> None:
    with pytest.raises(RegistrationNumberError) as exc:
        check_business_registration_number(number)
    assert exc.value.rule == "check_digit"
    assert exc.value.field == "business_registration_number"
    assert str(exc.value) == (
        f"business_registration_number: check digit does not match (expected {expected}, got {got}) — {number}"
    )


def test_check_digit_checked_before_type_code() -> None:
    # 123-45-67890 has an individual type code, but the digits are wrong first.
    with pytest.raises(RegistrationNumberError) as exc:
        check_business_registration_number("123-45-67890")
    assert exc.value.rule == "check_digit"


# --- business registration number: accepted corporations ------------------------------------


@pytest.mark.parametrize(
    ("number", "type_code", "holder"),
    [
        ("124-81-00998", "81", "for-profit corporation, head office"),
        ("220-81-62517", "81", "for-profit corporation, head office"),
        ("134-86-72683", "86", "for-profit corporation, head office"),
    ],
)
def test_known_valid_corporations_accepted(number: str, type_code: str, holder: str) -> None:
    result = check_business_registration_number(number)
    assert result == BusinessRegistrationNumber(number.replace("-", ""), type_code, holder, ())
    assert result.formatted == number


@pytest.mark.parametrize(
    ("code", "holder"),
    [
        ("85", "for-profit corporation, branch"),
        ("87", "for-profit corporation, head office"),
        ("88", "for-profit corporation, head office"),
    ],
)
def test_other_corporation_type_codes_accepted_without_flags(code: str, holder: str) -> None:
    result = check_business_registration_number(_brn_with_type(code))
    assert (result.type_code, result.holder, result.reviewer_flags) == (code, holder, ())


def test_foreign_corporation_accepted_with_reviewer_flag() -> None:
    result = check_business_registration_number("123-84-34569")
    assert result.type_code == "84"
    assert result.holder == "foreign corporation"
    assert result.reviewer_flags == (FOREIGN_CORPORATION_FLAG,)
    assert "reviewer must confirm" in result.reviewer_flags[0]


# --- business registration number: refused holders ------------------------------------------


def test_sole_proprietor_refused_corporations_only() -> None:
    number = "123-12-34562"  # type code 12, correct check digit
    assert business_check_digit("123123456") == 2
    with pytest.raises(RegistrationNumberError) as exc:
        check_business_registration_number(number)
    assert exc.value.rule == "corporations_only"
    assert exc.value.field == "business_registration_number"
    message = str(exc.value)
    assert message.startswith("business_registration_number: ")
    assert "corporations only" in message
    assert "sole proprietors" in message


@pytest.mark.parametrize("code", ["01", "45", "79", "80", "90", "95", "99"])
def test_individual_type_codes_refused(code: str) -> None:
    with pytest.raises(RegistrationNumberError) as exc:
        check_business_registration_number(_brn_with_type(code))
    assert exc.value.rule == "corporations_only"
    assert "corporations only" in str(exc.value)


@pytest.mark.parametrize("number", ["116-82-00276", "220-82-05060"])
def test_non_profit_refused_by_default(number: str) -> None:
    # Valid digits: refused for the holder type, not for the check digit.
    with pytest.raises(RegistrationNumberError) as exc:
        check_business_registration_number(number)
    assert exc.value.rule == "non_profit"
    assert "non-profit" in str(exc.value)


@pytest.mark.parametrize(("code", "rule"), [("83", "state_body"), ("89", "unincorporated_body")])
def test_state_and_unincorporated_bodies_refused(code: str, rule: str) -> None:
    with pytest.raises(RegistrationNumberError) as exc:
        check_business_registration_number(_brn_with_type(code))
    assert exc.value.rule == rule


# --- business registration number: format ---------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["", "   ", "124-81-0099", "124-81-009988", "12A-81-00998", "124/81/00998", "100-81-00998",
     "124-00-00998", "124-81-00000"],
)
def test_malformed_business_number_refused_format(value: str) -> None:
    with pytest.raises(RegistrationNumberError) as exc:
        check_business_registration_number(value, field="brn")
    assert exc.value.rule == "format"
    assert exc.value.field == "brn"
    assert str(exc.value).startswith("brn: must be 10 digits")


@pytest.mark.parametrize("value", ["1248100998", " 124 81 00998 ", "124 - 81 - 00998"])
def test_business_number_dashes_and_spaces_accepted(value: str) -> None:
    result = check_business_registration_number(value)
    assert result.number == "1248100998"
    assert result.formatted == "124-81-00998"


# --- corporate registration number ----------------------------------------------------------


@pytest.mark.parametrize("number", ["130111-0006246", "110111-0062432"])
def test_known_valid_corporate_numbers(number: str) -> None:
    digits = number.replace("-", "")
    assert corporate_check_digit(digits[:12]) == int(digits[12])
    result = check_corporate_registration_number(number)
    assert (result.number, result.kind_code) == (digits, "11")
    assert result.check_digit_valid is True
    assert result.reviewer_flags == ()
    assert result.formatted == number


def test_failing_corporate_check_digit_flagged_not_refused() -> None:
    result = check_corporate_registration_number("130111-0006245")
    assert result.check_digit_valid is False
    assert result.reviewer_flags == (CHECK_DIGIT_FLAG,)


@pytest.mark.parametrize("value", ["1301110006246", "130111 0006246", " 130111 - 0006246 "])
def test_corporate_number_dashes_and_spaces_accepted(value: str) -> None:
    result = check_corporate_registration_number(value)
    assert result.number == "1301110006246"
    assert result.check_digit_valid is True


@pytest.mark.parametrize("kind", ["11", "15", "21", "22", "31", "53", "71", "81", "86"])
def test_known_kind_codes_not_flagged(kind: str) -> None:
    first = f"1101{kind}000624"
    result = check_corporate_registration_number(f"{first}{corporate_check_digit(first)}")
    assert result.kind_code == kind
    assert result.reviewer_flags == ()


@pytest.mark.parametrize("kind", ["00", "16", "20", "23", "30", "54", "70", "72", "80", "87", "99"])
def test_unknown_kind_code_flagged_not_refused(kind: str) -> None:
    first = f"1101{kind}000624"
    result = check_corporate_registration_number(f"{first}{corporate_check_digit(first)}")
    assert result.check_digit_valid is True
    assert len(result.reviewer_flags) == 1
    assert f"kind code {kind}" in result.reviewer_flags[0]


@pytest.mark.parametrize(
    "value", ["", "130111-000624", "130111-00062466", "13011A-0006246", "130111/0006246"]
)
def test_malformed_corporate_number_refused_format(value: str) -> None:
    with pytest.raises(RegistrationNumberError) as exc:
        check_corporate_registration_number(value)
    assert exc.value.rule == "format"
    assert exc.value.field == "corporate_registration_number"
    assert str(exc.value).startswith("corporate_registration_number: must be 13 digits")


def test_error_is_a_value_error() -> None:
    assert issubclass(RegistrationNumberError, ValueError)

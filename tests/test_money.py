"""Money: exponents, parsing as exports write amounts, named rounding, formatting (golden cases + properties)."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tieout.money import (
    CURRENCY_EXPONENTS,
    MoneyError,
    currency_exponent,
    format_minor,
    is_known_currency,
    major_to_minor_threshold,
    parse_decimal,
    to_minor_units,
)


@pytest.mark.parametrize(("code", "exponent"), [
    ("JPY", 0), ("KRW", 0), ("CLP", 0), ("VND", 0), ("XOF", 0),
    ("USD", 2), ("EUR", 2), ("GBP", 2), ("usd", 2),
    ("KWD", 3), ("BHD", 3), ("JOD", 3), ("TND", 3),
    ("CLF", 4),
])
def test_currency_exponent(code: str, exponent: int) -> None:
    assert currency_exponent(code) == exponent


def test_unknown_currency_is_named() -> None:
    assert not is_known_currency("XYZ")
    with pytest.raises(MoneyError, match="unknown currency 'XYZ'"):
        currency_exponent("XYZ")


@pytest.mark.parametrize(("amount", "currency", "rounding", "minor"), [
    ("10.00", "USD", None, 1000),
    ("71000", "JPY", None, 71000),
    ("1.234", "KWD", None, 1234),
    ("-250.00", "USD", None, -25000),
    ("0", "USD", None, 0),
    ("2.675", "USD", ROUND_HALF_UP, 268),     # the float trap: float(2.675) rounds to 2.67
    ("-2.675", "USD", ROUND_HALF_UP, -268),   # half-up is away from zero
    ("0.5", "JPY", ROUND_HALF_UP, 1),
    ("0.4", "JPY", ROUND_HALF_UP, 0),
    ("1.0005", "KWD", ROUND_HALF_UP, 1001),
    ("2.665", "USD", ROUND_HALF_EVEN, 266),   # another named mode is honoured
    ("12345678901234567890123456789.01", "USD", None, 1234567890123456789012345678901),  # > 28 digits
])
def test_to_minor_units(amount: str, currency: str, rounding: str | None, minor: int) -> None:
    assert to_minor_units(Decimal(amount), currency, rounding=rounding) == minor


@pytest.mark.parametrize(("amount", "currency"), [("1.005", "USD"), ("0.5", "JPY"), ("1.0005", "KWD")])
def test_to_minor_units_refuses_extra_precision_without_rounding(amount: str, currency: str) -> None:
    with pytest.raises(MoneyError, match="decimal places"):
        to_minor_units(Decimal(amount), currency)


@pytest.mark.parametrize("amount", ["NaN", "Infinity", "-Infinity"])
def test_to_minor_units_refuses_non_finite(amount: str) -> None:
    with pytest.raises(MoneyError):
        to_minor_units(Decimal(amount), "USD", rounding=ROUND_HALF_UP)


def test_threshold_in_major_units_rounds_half_up() -> None:
    assert major_to_minor_threshold(Decimal("1000.005"), "USD") == 100001
    assert major_to_minor_threshold(Decimal("1000"), "JPY") == 1000


@pytest.mark.parametrize(("text", "value"), [
    ("1,250.00", "1250.00"),
    ("$(250.00)", "-250.00"),
    ("-$250.00", "-250.00"),
    ("$-250.00", "-250.00"),
    ("(1,000.00)", "-1000.00"),
    ("+12.50", "12.50"),
    (" 1 250.00 ", "1250.00"),
    ("1\u00a0250.00", "1250.00"),
    ("€12", "12"),
    ("0.5", "0.5"),
    (".5", "0.5"),
    ("1,234,567.891", "1234567.891"),
    ("71000", "71000"),
])
def test_parse_decimal_export_styles(text: str, value: str) -> None:
    assert parse_decimal(text) == Decimal(value)


@pytest.mark.parametrize(("text", "value"), [("1.250,00", "1250.00"), ("12,5", "12.5"), ("(1.000,50)", "-1000.50")])
def test_parse_decimal_european(text: str, value: str) -> None:
    assert parse_decimal(text, decimal_separator=",") == Decimal(value)


@pytest.mark.parametrize("text", [
    "12,5O", "NaN", "nan", "inf", "Infinity", "", "   ", "-", "()", ".", "1e5", "1_000", "0x10",
    "1.2.3", "12,5",          # a decimal comma read with '.' as the separator: not 125
    "1.250,00",               # European amount without decimal_separator=','
    "1,25,000.00",            # grouping not by threes
    "١٢",                     # non-ASCII digits
    "--5",
])
def test_parse_decimal_rejects(text: str) -> None:
    with pytest.raises(MoneyError, match="is not a number"):
        parse_decimal(text)


@pytest.mark.parametrize(("minor", "currency", "text"), [
    (123450, "USD", "USD 1,234.50"),
    (-5, "USD", "USD -0.05"),
    (0, "USD", "USD 0.00"),
    (71000, "JPY", "JPY 71,000"),
    (1234, "kwd", "KWD 1.234"),
    (10**30 + 1, "USD", "USD 10,000,000,000,000,000,000,000,000,000.01"),
])
def test_format_minor(minor: int, currency: str, text: str) -> None:
    assert format_minor(minor, currency) == text


@given(st.integers(), st.sampled_from(sorted(CURRENCY_EXPONENTS)))
@settings(max_examples=25, deadline=None)
def test_format_parse_round_trip(minor: int, currency: str) -> None:
    code, amount = format_minor(minor, currency).split(" ", 1)
    assert code == currency
    assert to_minor_units(parse_decimal(amount), currency) == minor


@given(st.decimals(allow_nan=False, allow_infinity=False, places=2, min_value=-10**15, max_value=10**15))
@settings(max_examples=25, deadline=None)
def test_cents_are_exact_for_two_decimal_currencies(amount: Decimal) -> None:
    assert to_minor_units(amount, "USD") == int(amount * 100)

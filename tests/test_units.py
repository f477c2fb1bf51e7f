"""Fast unit tests: money, config errors, proration golden cases, deterministic matching, CLI codes."""

from __future__ import annotations

import subprocess
import sys
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import ibis
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tieout.billing.pricing import divide_round, exact
from tieout.config import parse_config
from tieout.engines import create_engine
from tieout.errors import ConfigError
from tieout.matching import Side, composite_pairs
from tieout.money import MoneyError, currency_exponent, format_minor, parse_decimal, to_minor_units


def test_currency_exponents() -> None:
    assert (currency_exponent("JPY"), currency_exponent("USD"), currency_exponent("KWD")) == (0, 2, 3)


@pytest.mark.parametrize(("text", "value"), [("1,250.00", "1250.00"), ("$(250.00)", "-250.00"),
                                             ("-$250.00", "-250.00"), ("(1,000.00)", "-1000.00")])
def test_parse_decimal_export_styles(text: str, value: str) -> None:
    assert parse_decimal(text) == Decimal(value)


def test_parse_decimal_european_and_rejects() -> None:
    assert parse_decimal("1.250,00", decimal_separator=",") == Decimal("1250.00")
    for bad in ("12,5O", "NaN", "inf", ""):
        with pytest.raises(MoneyError):
            parse_decimal(bad)


def test_to_minor_units_rounding_is_named() -> None:
    assert to_minor_units(Decimal("2.675"), "USD", rounding=ROUND_HALF_UP) == 268
    assert to_minor_units(Decimal("71000"), "JPY") == 71000
    with pytest.raises(MoneyError):
        to_minor_units(Decimal("1.005"), "USD")


@given(st.integers(min_value=-10**12, max_value=10**12), st.sampled_from(["USD", "JPY", "KWD", "EUR"]))
@settings(max_examples=50, deadline=None)
def test_format_parse_round_trip(minor: int, currency: str) -> None:
    text = format_minor(minor, currency).split(" ", 1)[1]
    assert to_minor_units(parse_decimal(text), currency) == minor


def test_config_error_names_line_and_key(tmp_path: Path) -> None:
    text = "engine: duckdb\nsources:\n  - name: a\n    format: csv\n    path: x.csv\n    colums: {}\n"
    with pytest.raises(ConfigError) as exc:
        parse_config(text, tmp_path / "tieout.yaml")
    assert str(exc.value).splitlines()[0] == "tieout.yaml:6: sources.0.colums: unknown key (not allowed here)"


def _prorate(unit: int, qty: int, days: int, period_days: int) -> int:
    """The engine's proration of a line (billing.expected): full price × service units / cycle units, rounded once."""
    expr = divide_round(exact(ibis.literal(unit) * ibis.literal(qty)) * ibis.literal(days), ibis.literal(period_days))
    return int(ibis.duckdb.connect().to_pyarrow(expr).as_py())


@pytest.mark.parametrize(("unit", "days", "period", "expected"), [
    (1000, 15, 30, 500),     # Stripe's documented half-month example: 10.00 for half of a 30-day month
    (2000, 15, 30, 1000),
    (4900, 12, 31, 1897),    # 49.00 × 12/31 = 18.967… → 18.97
    (4900, 14, 28, 2450),    # February
    (4900, 15, 29, 2534),    # leap February: 4900 × 15/29 = 2534.48 → 2534
    (5000, 1, 31, 161),      # JPY-like integers: 161.29 → 161
])
def test_proration_golden(unit: int, days: int, period: int, expected: int) -> None:
    assert _prorate(unit, 1, days, period) == expected


def test_full_period_prorates_to_full_price() -> None:
    for period in (28, 29, 30, 31):
        assert _prorate(4900, 7, period, period) == 4900 * 7


def test_composite_match_is_one_to_one_and_order_independent() -> None:
    engine = create_engine("duckdb")
    try:
        def side(rows: list[tuple[str, str, int, str]], prefix: str) -> Side:
            t = pa.table({"id": [r[0] for r in rows], "cust": [r[1] for r in rows],
                          "amt": [r[2] for r in rows],
                          "ts": pa.array([pa.scalar(r[3]).cast(pa.timestamp("us")).as_py() for r in rows],
                                         pa.timestamp("us", tz="UTC"))})
            return Side(engine.from_arrow(prefix, t), "id", "amt", "ts", ("cust",))

        left_rows = [("L1", "c", 100, "2026-07-01"), ("L2", "c", 100, "2026-07-02"), ("L3", "d", 50, "2026-07-01")]
        right_rows = [("R1", "c", 100, "2026-07-02"), ("R2", "c", 100, "2026-07-01"), ("R3", "d", 51, "2026-07-09")]
        results = []
        for order in (1, -1):
            pairs = composite_pairs(engine, side(left_rows[::order], "l"), side(right_rows[::order], "r"),
                                    amount_tolerance=0, window_days=3, method="composite")
            results.append(sorted((r["left_id"], r["right_id"]) for r in pairs.to_pyarrow().to_pylist()))
        assert results[0] == results[1] == [("L1", "R2"), ("L2", "R1")]
    finally:
        engine.close()


def test_cli_exit_code_2_on_bad_config(tmp_path: Path) -> None:
    (tmp_path / "tieout.yaml").write_text("engine: duckdb\nbogus: 1\n")
    proc = subprocess.run([sys.executable, "-m", "tieout", "run", "-c", str(tmp_path / "tieout.yaml")],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert "tieout.yaml:2: bogus: unknown key" in proc.stderr.splitlines()[0]


def test_cli_exit_code_2_on_empty_file(tmp_path: Path) -> None:
    (tmp_path / "payments.csv").write_text("")
    (tmp_path / "tieout.yaml").write_text(
        "sources:\n  - {name: p, format: csv, path: payments.csv, table: payments}\n")
    proc = subprocess.run([sys.executable, "-m", "tieout", "run", "-c", str(tmp_path / "tieout.yaml")],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert "payments.csv:1: file is empty" in proc.stderr.splitlines()[0]

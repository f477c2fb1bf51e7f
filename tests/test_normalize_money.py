"""Money on the engine: the fast path (plain `-123.45` texts as 64-bit integer ten-thousandths) and
the general path (symbols, groups, parentheses, DECIMAL(38, 9)) give the same minor units and the
same refusals as `tieout.money` in Python, for every currency exponent and both amount units."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tieout.config import parse_config
from tieout.engines import Engine, create_engine
from tieout.model import TABLES
from tieout.money import MoneyError, parse_decimal, to_minor_units
from tieout.normalize import normalize
from tieout.sources import read_file, source_files, source_format

HEADER = "payment_id,customer_id,type,method,amount,currency,received_at"
CURRENCIES = ["USD", "JPY", "KWD", "CLF"]  # exponents 2, 0, 3, 4

_ENGINE: Engine | None = None


@pytest.fixture(scope="module", autouse=True)
def engine() -> Iterator[Engine]:
    global _ENGINE
    _ENGINE = create_engine("duckdb")
    yield _ENGINE
    _ENGINE.close()
    _ENGINE = None


@st.composite
def amount_texts(draw: st.DrawFn) -> str:
    """Plain decimals around the fast path's limits (10 integer digits, 4 decimals), and the
    forms only the general path takes."""
    digits = draw(st.text("0123456789", min_size=1, max_size=16))
    decimals = draw(st.one_of(st.none(), st.text("0123456789", min_size=0, max_size=6)))
    text = digits if decimals is None else f"{digits}.{decimals}"
    form = draw(st.sampled_from(["plain", "plain", "minus", "plus", "paren", "symbol", "grouped"]))
    if form == "minus":
        return "-" + text
    if form == "plus":
        return "+" + text
    if form == "paren":
        return f"({text})"
    if form == "symbol":
        return "$" + text
    if form == "grouped":
        return f"{draw(st.integers(1, 999))},{draw(st.integers(0, 999)):03d}.{draw(st.integers(0, 99)):02d}"
    return text


def _python(text: str, currency: str, unit: str) -> int | None:
    """Minor units by `tieout.money`, None where it refuses the text."""
    try:
        number = parse_decimal(text)
    except MoneyError:
        return None
    if unit == "minor":
        return int(number) if number == number.to_integral_value() else None
    try:
        return to_minor_units(number, currency)
    except MoneyError:
        return None


def _engine_values(rows: list[tuple[str, str]], unit: str) -> list[tuple[int | None, str | None]]:
    assert _ENGINE is not None
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        lines = [f'P-{i},C-1,payment,card,"{text}",{cur},2026-07-01 10:00:00' for i, (text, cur) in enumerate(rows)]
        (root / "p.csv").write_text("\n".join([HEADER, *lines]) + "\n")
        cfg = parse_config("sources:\n  - {name: p, format: csv, path: p.csv, table: payments, "
                           f"amount_unit: {unit}}}\n", root / "tieout.yaml")
        src, fmt = cfg.sources[0], source_format(cfg, 0)
        (f,) = source_files(cfg, src)
        t = normalize(_ENGINE, read_file(_ENGINE, fmt, src, f), src, fmt, TABLES["payments"], "billing")
        out = t.order_by("_line").select("amount", "_error_column", "_error_reason").to_pyarrow().to_pylist()
    return [(r["amount"], r["_error_reason"] if r["_error_column"] == "amount" else None) for r in out]


@given(st.lists(st.tuples(amount_texts(), st.sampled_from(CURRENCIES)), min_size=1, max_size=40),
       st.sampled_from(["major", "minor"]))
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_engine_money_matches_python(rows: list[tuple[str, str]], unit: str) -> None:
    for (text, cur), (value, reason) in zip(rows, _engine_values(rows, unit), strict=True):
        expected = _python(text, cur, unit)
        if reason is not None and "too large" in reason:
            assert expected is None or abs(expected) > 9 * 10**15, (text, cur)
            continue
        assert value == expected, (text, cur, unit, reason)
        assert (reason is None) == (expected is not None), (text, cur, unit, reason)


def test_fast_path_edges() -> None:
    rows = [("-0.50", "USD"), ("12.3456", "CLF"), ("12.3456", "USD"), ("7", "JPY"), ("7.5", "JPY"),
            ("9999999999.9999", "CLF"), ("67312594569", "USD"), ("1.000", "KWD"), ("-1.001", "KWD"), ("0.0000", "USD")]
    got = _engine_values(rows, "major")
    assert [v for v, _ in got] == [-50, 123456, None, 7, None, 99999999999999, 6731259456900, 1000, -1001, 0]
    assert got[2][1] == "'12.3456' has more decimal places than its currency allows (USD)"
    assert [v for v, _ in _engine_values([("150", "USD"), ("1.5", "USD"), ("-2.0000", "JPY")], "minor")] == [
        150, None, -2]

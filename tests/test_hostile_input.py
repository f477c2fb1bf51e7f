"""Hostile input: hypothesis writes CSV exports the way the wild writes them (encodings, delimiters,
quoting, blank and truncated lines, huge fields, control characters, odd amounts and dates,
duplicate columns) and every case must end in accepted + quarantined == rows written, or in one
InputError whose first line names the file and line. Never a traceback.

tests/test_sources.py has the vendor layouts and the exact messages; tests/test_quality.py the
gate's duplicate rules. This module throws what neither anticipates at the readers.
"""

from __future__ import annotations

import csv
import io
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tieout.config import load_config, parse_config
from tieout.engines import Engine, create_engine
from tieout.errors import InputError
from tieout.model import TABLES
from tieout.normalize import normalize
from tieout.pipeline import ingest
from tieout.quality import FileCount, gate
from tieout.sources import read_file, source_files, source_format

COLUMNS = ["payment_id", "customer_id", "type", "method", "amount", "currency", "received_at"]

AMOUNTS_DOT = ["10.00", "1,250.00", "(5.00)", "-2.50", "$7.10", "€12.00", "£3", "0", "1 250.00", "USD 4.00",
               "NaN", "nan", "inf", "-Infinity", "1e5", "12,5O", "1.005", "", " ", "9" * 400, "--1", "()", "$",
               "1,2,3", "0x10", "٣", "1_000"]
AMOUNTS_COMMA = ["10,00", "1.250,00", "(5,00)", "-2,50", "€ 7,10", "1 250,50", "NaN", "12,5O", "1.250.00,00", ""]
DATES = ["2026-07-01", "2026-07-01 10:00:00", "2026-07-01T10:00:00Z", "2026-07-01T10:00:00.123456",
         "07/01/2026", "01/07/2026", "1 Jul 2026", "2026-02-30", "2026-13-01", "", "tomorrow", "2026-07-01 25:00:00",
         "１９９９-０１-０１"]
CURRENCIES = ["USD", "usd", " EUR ", "JPY", "XYZ", "", "US$", "KWD"]
TYPES = ["payment", "refund", "Payment", "teleport", ""]
METHODS = ["card", "wire", "", "CARD"]
# Text that tries every trick a CSV cell can play: delimiters, quotes, line breaks, control
# characters, a formula, a BOM inside a value, right-to-left marks, very long values.
NASTY_TEXT = st.one_of(
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12),
    st.sampled_from(['a,b', 'a;b', 'a\tb', 'a|b', 'say "hi"', '"', 'two\nlines', 'cr\ronly', 'crlf\r\nline',
                     '=HYPERLINK("x")', "\ufeffC-1", "\u202eC-1", "\x07\x1b\x7f", "  padded  ", "x" * 20000]),
)


@dataclass
class Case:
    """One generated file and what it must produce."""

    header: list[str]
    records: list[list[str]]
    encoding: str = "utf-8"
    delimiter: str = ","
    declare_delimiter: bool = True
    decimal_comma: bool = False
    quoting: int = csv.QUOTE_MINIMAL
    line_end: str = "\n"
    blank_lines: list[int] = field(default_factory=list)  # insert a blank line before these records
    drop_final_newline: bool = False
    wide_row: int | None = None  # this record gets two fields more than the header: the file cannot be read
    repeated: str | None = None  # a mapped column named twice in the header: the file is refused

    def text(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, delimiter=self.delimiter, quoting=self.quoting, lineterminator=self.line_end)
        cr_safe = csv.writer(buf, delimiter=self.delimiter, quoting=csv.QUOTE_ALL, lineterminator=self.line_end)
        w.writerow(self.header)
        for i, rec in enumerate(self.records):
            if i in self.blank_lines:
                buf.write(self.line_end)
            row = [*rec, *[""] * (len(self.header) - len(rec)), "x", "y"] if i == self.wide_row else rec
            # csv.writer quotes only the characters of its own line ending; a bare CR elsewhere would
            # be a line break to every reader, so a cell holding one is quoted, as Excel writes it.
            (cr_safe if any("\r" in v for v in row) else w).writerow(row)
        out = buf.getvalue()
        return out[: -len(self.line_end)] if self.drop_final_newline and self.records else out

    def source_yaml(self) -> str:
        opts = {"encoding": self.encoding}
        if self.declare_delimiter:
            opts["delimiter"] = {"\t": "'\\t'"}.get(self.delimiter, f"'{self.delimiter}'")
        if self.decimal_comma:
            opts["decimal_separator"] = "','"
        extra = "".join(f", {k}: {v}" for k, v in opts.items())
        return f"{{name: p, format: csv, path: p.csv, table: payments{extra}}}"


@st.composite
def cases(draw: st.DrawFn) -> Case:
    decimal_comma = draw(st.booleans())
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "cp1252", "utf-16"]))
    extra = draw(st.sampled_from([[], ["memo"], ["memo", "memo"], ["", ""]]))
    order = draw(st.permutations(COLUMNS))
    header = [*order, *extra]
    repeated = None
    if draw(st.booleans()):  # a duplicated canonical column: which one holds the values? refused
        repeated = draw(st.sampled_from(COLUMNS))
        header.append(repeated)
    n = draw(st.integers(0, 8))
    records = []
    for i in range(n):
        values = {
            "payment_id": draw(st.sampled_from([f"P-{i}", f"P-{i}", f" p-{i} ", "P-0", ""])),
            "customer_id": draw(NASTY_TEXT),
            "type": draw(st.sampled_from(TYPES)),
            "method": draw(st.sampled_from(METHODS)),
            "amount": draw(st.sampled_from(AMOUNTS_COMMA if decimal_comma else AMOUNTS_DOT)),
            "currency": draw(st.sampled_from(CURRENCIES)),
            "received_at": draw(st.sampled_from(DATES)),
            "memo": draw(NASTY_TEXT),
            "": "",
        }
        rec = [values[c] for c in header]
        if draw(st.integers(0, 9)) == 0:  # a short (truncated) record
            rec = rec[: draw(st.integers(1, len(rec)))]
        records.append(rec)
    if encoding in ("latin-1", "cp1252"):
        records = [[v.encode(encoding, "replace").decode(encoding) for v in r] for r in records]
    delimiter = draw(st.sampled_from([",", ";", "\t", "|"]))
    return Case(
        header=header, records=records, encoding=encoding, delimiter=delimiter,
        declare_delimiter=draw(st.booleans()), decimal_comma=decimal_comma,
        quoting=draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL])),
        line_end=draw(st.sampled_from(["\n", "\r\n"])),
        blank_lines=draw(st.lists(st.integers(0, max(n, 1)), max_size=2)),
        drop_final_newline=draw(st.booleans()),
        wide_row=draw(st.sampled_from([None] * 6 + list(range(n)))) if n else None,
        repeated=repeated,
    )


@dataclass
class Outcome:
    counts: tuple[FileCount, ...]
    accepted: list[dict[str, Any]]
    quarantine: list[dict[str, Any]]


def _load(engine: Engine, root: Path, source_yaml: str, data: bytes) -> Outcome:
    (root / "p.csv").write_bytes(data)
    cfg = parse_config("sources:\n  - " + source_yaml + "\n", root / "tieout.yaml")
    src, fmt, table = cfg.sources[0], source_format(cfg, 0), TABLES["payments"]
    frames = [normalize(engine, read_file(engine, fmt, src, f), src, fmt, table, "billing")
              for f in source_files(cfg, src)]
    g = gate(engine, table, frames)
    return Outcome(g.counts, g.accepted.to_pyarrow().to_pylist(), g.quarantine.to_pyarrow().to_pylist())


def _first_line(err: InputError) -> str:
    return str(err).splitlines()[0]


def _assert_names_file_and_line(err: InputError, file: str = "p.csv") -> None:
    first = _first_line(err)
    assert re.match(rf"^{re.escape(file)}:\d+: \S", first), first
    assert err.file == file and err.line is not None and err.line >= 1


def _assert_accounted(out: Outcome, rows: int) -> None:
    read = sum(c.read for c in out.counts)
    assert read == rows
    assert sum(c.accepted for c in out.counts) == len(out.accepted)
    assert sum(c.quarantined for c in out.counts) == len(out.quarantine)
    assert read == len(out.accepted) + len(out.quarantine)
    for q in out.quarantine:  # every quarantined row says where and why
        assert q["file"] == "p.csv" and q["line"] >= 2 and q["column_name"] and q["reason"]
    ids = [r["payment_id"] for r in out.accepted]
    assert len(ids) == len(set(ids))
    assert all(isinstance(r["amount"], int) for r in out.accepted)


def _rows_of(out: Outcome) -> list[tuple[Any, ...]]:
    return sorted(tuple(r[c] for c in COLUMNS) for r in out.accepted)


def _reasons(out: Outcome) -> list[tuple[str, str]]:
    return sorted((q["column_name"], q["reason"].split(" (first at ")[0].split(" of p.csv:")[0])
                  for q in out.quarantine)


@given(cases())
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_every_hostile_csv_is_read_or_refused_with_file_and_line(engine: Engine, case: Case) -> None:
    data = case.text().encode(case.encoding)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            out = _load(engine, Path(tmp), case.source_yaml(), data)
        except InputError as err:
            _assert_names_file_and_line(err)
            if case.repeated is not None and err.line == 1:
                assert _first_line(err).startswith(
                    f"p.csv:1: column '{case.repeated}' appears 2 times in the header (mapped to payments."), err
                return
            # otherwise only a row wider than its header makes a whole file unreadable here
            assert case.wide_row is not None, _first_line(err)
            assert "fields, the header has" in _first_line(err)
            return
    assert case.repeated is None, "a header naming a mapped column twice was read without a word"
    assert case.wide_row is None, "a row wider than the header was read without a word"
    _assert_accounted(out, len(case.records))


@given(cases())
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_engine_reader_and_exact_reader_agree(engine: Engine, case: Case) -> None:
    """A blank line sends a file to the exact line-tracking reader; the same records must give the
    same accepted rows, quarantine reasons and errors as on the engine's reader."""
    plain = Case(**{**case.__dict__, "blank_lines": []})
    tracked = Case(**{**case.__dict__, "blank_lines": [0]})
    results = []
    for c in (plain, tracked):
        with tempfile.TemporaryDirectory() as tmp:
            try:
                out = _load(engine, Path(tmp), c.source_yaml(), c.text().encode(c.encoding))
                results.append(("ok", _rows_of(out), _reasons(out), [(x.read, x.accepted, x.quarantined)
                                                                    for x in out.counts]))
            except InputError as err:
                results.append(("error", re.sub(r"^p\.csv:\d+: ", "", _first_line(err))))
    assert results[0] == results[1]


# --- single cases the generator makes rarely or not at all ---------------------------------------

HEADER = ",".join(COLUMNS) + "\n"
ROW = "P-1,C-1,payment,card,10.00,USD,2026-07-01\n"


def test_utf16_without_bom_is_refused_with_a_hint(engine: Engine, tmp_path: Path) -> None:
    data = (HEADER + ROW).encode("utf-16-le")
    with pytest.raises(InputError) as exc:
        _load(engine, tmp_path, "{name: p, format: csv, path: p.csv, table: payments, encoding: utf-16}", data)
    _assert_names_file_and_line(exc.value)
    assert "utf-16-le" in _first_line(exc.value)
    out = _load(engine, tmp_path, "{name: p, format: csv, path: p.csv, table: payments, encoding: utf-16-le}", data)
    _assert_accounted(out, 1)


def test_wide_row_is_refused_the_same_on_both_readers(engine: Engine, tmp_path: Path) -> None:
    wide = "P-2,C-1,payment,card,1,USD,2026-07-01,x,y\n"
    msgs = []
    for text in (HEADER + ROW + wide, HEADER + ROW + "\n" + wide):
        with pytest.raises(InputError) as exc:
            _load(engine, tmp_path, "{name: p, format: csv, path: p.csv, table: payments}", text.encode())
        msgs.append(_first_line(exc.value))
    assert msgs == ["p.csv:3: row has 9 fields, the header has 7", "p.csv:4: row has 9 fields, the header has 7"]


def test_repeated_mapped_column_is_refused_on_both_readers(engine: Engine, tmp_path: Path) -> None:
    """Two `amount` columns: which holds the amounts is a guess, so the file is refused, naming line 1
    and the column; a repeated column nothing maps (`memo`) is read."""
    header = "payment_id,customer_id,type,method,amount,currency,received_at,amount\n"
    msgs = []
    for text in (header + "P-1,C-1,payment,card,10.00,USD,2026-07-01,11.00\n",
                 header + "\nP-1,C-1,payment,card,10.00,USD,2026-07-01,11.00\n"):
        with pytest.raises(InputError) as exc:
            _load(engine, tmp_path, "{name: p, format: csv, path: p.csv, table: payments}", text.encode())
        _assert_names_file_and_line(exc.value)
        msgs.append(_first_line(exc.value))
    assert msgs == ["p.csv:1: column 'amount' appears 2 times in the header (mapped to payments.amount); "
                    "rename or remove all but one"] * 2
    configured = "{name: p, format: csv, path: p.csv, table: payments, columns: {amount: Total}}"
    text = ("payment_id,customer_id,type,method,Total,currency,received_at,Total\n"
            "P-1,C-1,payment,card,1,USD,2026-07-01,2\n")
    with pytest.raises(InputError) as exc:
        _load(engine, tmp_path, configured, text.encode())
    assert _first_line(exc.value).startswith("p.csv:1: column 'Total' appears 2 times in the header")
    memo = "payment_id,customer_id,type,method,amount,currency,received_at,memo,memo\n"
    out = _load(engine, tmp_path, "{name: p, format: csv, path: p.csv, table: payments}",
                (memo + "P-1,C-1,payment,card,10.00,USD,2026-07-01,a,b\n").encode())
    _assert_accounted(out, 1)


@pytest.mark.parametrize("size", [300_000, 3_000_000])  # over the csv module's default, over DuckDB's line size
def test_huge_field_is_read_the_same_on_both_readers(engine: Engine, tmp_path: Path, size: int) -> None:
    huge = "C" + "x" * size
    rows = []
    for text in (HEADER + f"P-1,{huge},payment,card,10.00,USD,2026-07-01\n",
                 HEADER + f"\nP-1,{huge},payment,card,10.00,USD,2026-07-01\n"):
        out = _load(engine, tmp_path, "{name: p, format: csv, path: p.csv, table: payments}", text.encode())
        _assert_accounted(out, 1)
        rows.append([(r["customer_id"], r["amount"]) for r in out.accepted])
    assert rows[0] == rows[1] == [(huge, 1000)]


def test_nul_bytes_and_nan_amounts_are_quarantined_not_fatal(engine: Engine, tmp_path: Path) -> None:
    text = HEADER + "P-1,C\x00-1,payment,card,NaN,USD,2026-07-01\nP-2,C-2,payment,card,inf,USD,2026-07-01\n"
    out = _load(engine, tmp_path, "{name: p, format: csv, path: p.csv, table: payments}", text.encode())
    _assert_accounted(out, 2)
    assert [(q["line"], q["column_name"], q["reason"]) for q in out.quarantine] == [
        (2, "amount", "'NaN' is not a number"), (3, "amount", "'inf' is not a number")]


def test_header_only_and_empty_files_in_a_run_are_counted(tmp_path: Path) -> None:
    """A header-only file is read (0 rows) and appears in the run's counts; an empty one is an error."""
    (tmp_path / "exports").mkdir()
    (tmp_path / "exports" / "a.csv").write_text(HEADER + ROW)
    (tmp_path / "exports" / "b.csv").write_text(HEADER)
    (tmp_path / "tieout.yaml").write_text(
        "sources:\n  - {name: p, format: csv, path: 'exports/*.csv', table: payments, system: billing}\n")
    engine = create_engine("duckdb")  # a run's own session, as pipeline.run has
    try:
        _tables, counts, _q, inputs = ingest(load_config(tmp_path / "tieout.yaml"), engine, lambda _m: None)
        assert [(c.file, c.read, c.accepted, c.quarantined) for c in counts] == [
            ("exports/a.csv", 1, 1, 0), ("exports/b.csv", 0, 0, 0)]
        assert len(inputs) == 2
        (tmp_path / "exports" / "c.csv").write_bytes(b"")
        with pytest.raises(InputError) as exc:
            ingest(load_config(tmp_path / "tieout.yaml"), engine, lambda _m: None)
        assert _first_line(exc.value) == "exports/c.csv:1: file is empty (expected a header row)"
    finally:
        engine.close()


# --- exports: what came from source data must not run as a spreadsheet formula -------------------

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CELL_TEXT = st.one_of(
    st.builds(lambda start, rest: start + rest, st.sampled_from([*FORMULA_STARTS, "\x01=", "\x0b+", ""]),
              st.text(max_size=15)),
    st.sampled_from(["-12.50", "-1", "+3", "-0.5", "=SUM(A1:A9)", "@cmd", "-cmd|' /C calc'!A0", "\r\n=1",
                     "=HYPERLINK(\"http://x\",\"y\")", "'=already", "ok"]),
)


def _finding_row(customer: str, expected: str, actual: str, amount: int) -> Any:
    from tieout.store import FindingRow

    return FindingRow(
        finding_id="F1", check="gateway_billing", category="payment_unmatched", severity="high", status="open",
        owner=None, customer_id=customer, currency="USD", amount_at_risk=amount, expected=expected, actual=actual,
        explanation=customer, period="2026-07", subject="x", evidence="[]", first_seen_run=1, last_seen_run=1,
    )


def _is_formula_text(value: str) -> bool:
    return value.startswith(FORMULA_STARTS) and not re.fullmatch(r"[+-]?\d+(\.\d+)?", value)


@given(CELL_TEXT, CELL_TEXT, st.sampled_from(["-12.50", "-1250", "1250", "0"]), st.integers(-10**12, 10**12))
@settings(max_examples=40, deadline=None)
def test_csv_and_xlsx_exports_neutralize_formulas_and_keep_numbers(
    customer: str, expected: str, number_text: str, amount: int
) -> None:
    from openpyxl import load_workbook
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    from tieout.reports.export import COLUMNS, export_findings

    rows = [_finding_row(customer, expected, number_text, amount)]
    with tempfile.TemporaryDirectory() as tmp:
        csv_path, xlsx_path = Path(tmp) / "f.csv", Path(tmp) / "f.xlsx"
        export_findings(rows, csv_path, "csv")
        export_findings(rows, xlsx_path, "xlsx")
        with csv_path.open(newline="", encoding="utf-8") as fh:
            [got] = list(csv.DictReader(fh))
        wb = load_workbook(xlsx_path)
        ws = wb.active
        assert ws is not None
        cells = {h: c for h, c in zip(COLUMNS, ws[2], strict=True)}
        wb.close()
    # CSV: formula text gets an apostrophe, everything else is byte for byte what the store holds.
    for col, original in (("customer_id", customer), ("expected", expected), ("explanation", customer)):
        assert got[col] == ("'" + original if _is_formula_text(original) else original)
        assert not _is_formula_text(got[col])
    # Real negative numbers, as numbers and as number text, are untouched.
    assert got["actual"] == number_text and got["amount_at_risk"] == str(amount)
    assert cells["actual"].value == number_text and cells["amount_at_risk"].value == amount
    assert cells["amount_at_risk"].data_type == "n"
    # XLSX: no cell is ever a formula, even once characters XLSX cannot hold are stripped.
    for col in ("customer_id", "expected", "explanation"):
        cell = cells[col]
        assert cell.data_type != "f", (col, cell.value)
        cleaned = ILLEGAL_CHARACTERS_RE.sub("", {"customer_id": customer, "expected": expected,
                                                  "explanation": customer}[col])
        want = "'" + cleaned if _is_formula_text(cleaned) else cleaned
        assert (cell.value or "") == _xml_newlines(want)


def _xml_newlines(text: str) -> str:
    """XML (and so XLSX) reads line breaks back as \n."""
    return text.replace("\r\n", "\n").replace("\r", "\n")

"""Xero's Account Transactions report exported to CSV, read as `xero_account_transactions`.

The files are written the way Xero writes them (help.xero.com, Account Transactions report): a BOM,
CRLF, a preamble (title, organisation, period), the header of the columns the user chose, lines
grouped under account headings with `Total <heading>` lines and a final `Total`.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest

from tieout.config import parse_config
from tieout.engines import create_engine
from tieout.errors import ConfigError, InputError
from tieout.pipeline import ingest
from tieout.quality import FileCount
from tieout.sources import FORMATS

HEADER = "Date,Source,Description,Reference,Debit,Credit,Running Balance,Gross,GST,Contact"

XERO_AT = "\r\n".join([
    "Account Transactions",
    "Demo Company (AU)",
    "For the period 1 July 2026 to 31 July 2026",
    "",
    HEADER,
    "090 - Business Bank Account",
    "Opening Balance,,,,,,\"1,000.00\",,,",
    "2 Jul 2026,Receive Money,Invoice 1043 paid,INV-1043,\"1,250.00\",,\"2,250.00\",\"1,250.00\",113.64,Acme Corp",
    "03/07/2026,Spend Money,Stripe fees,,,(36.25),\"2,213.75\",-36.25,,Stripe",
    "15/07/2026,Manual Journal,Reclass to sales,MJ-7,,250.00,\"1,963.75\",,,",
    "Total 090 - Business Bank Account,,,,\"1,250.00\",213.75,,,,",
    "Closing Balance,,,,,,\"1,963.75\",,,",
    "",
    "Sales - Hardware",
    "31 Jul 2026,Receivable Invoice,Widgets,INV-1044,,\"12,000.00\",,\"13,200.00\",\"1,200.00\",Globex",
    "Total Sales - Hardware,,,,0.00,\"12,000.00\",,,,",
    "",
    "Total,,,,\"1,250.00\",\"12,213.75\",,,,",
    "",
]).encode("utf-8-sig")


def ingest_gl(tmp_path: Path, source: str, content: bytes | str, home: str = "AUD") -> tuple[
        list[dict[str, Any]], list[FileCount], list[dict[str, Any]]]:
    """Write the export and ingest it: (gl_entries rows in file order, counts, quarantined rows)."""
    path = tmp_path / "at.csv"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", newline="")
    cfg = parse_config(f"home_currency: {home}\nsources:\n  - {source}\n", tmp_path / "tieout.yaml")
    engine = create_engine("duckdb")
    try:
        tables, counts, quarantined, _ = ingest(cfg, engine, lambda _m: None)
        rows = tables["gl_entries"].to_pyarrow().to_pylist() if "gl_entries" in tables else []
        return sorted(rows, key=lambda r: int(r["entry_id"].rsplit(":", 1)[1])), counts, quarantined
    finally:
        engine.close()


SOURCE = "{name: xero, format: xero_account_transactions, path: at.csv}"


def test_account_transactions_export(tmp_path: Path) -> None:
    rows, counts, quarantined = ingest_gl(tmp_path, SOURCE, XERO_AT)
    assert quarantined == []
    assert [(c.read, c.accepted, c.quarantined) for c in counts] == [(4, 4, 0)]
    got = [(r["entry_id"], r["account"], r["posted_at"], r["txn_type"], r["debit"], r["credit"], r["journal_type"],
            r["currency"]) for r in rows]
    assert got == [
        ("at.csv:8", "Business Bank Account", date(2026, 7, 2), "Receive Money", 125000, None, "system", "AUD"),
        # a negative credit, in parentheses, is a debit
        ("at.csv:9", "Business Bank Account", date(2026, 7, 3), "Spend Money", 3625, None, "system", "AUD"),
        ("at.csv:10", "Business Bank Account", date(2026, 7, 15), "Manual Journal", None, 25000, "manual", "AUD"),
        # no code: the heading is the name, ' - ' and all
        ("at.csv:15", "Sales - Hardware", date(2026, 7, 31), "Receivable Invoice", None, 1200000, "system", "AUD"),
    ]
    first = rows[0]
    assert (first["reference"], first["name"], first["memo"], first["source"], first["source_ref"]) == (
        "INV-1043", "Acme Corp", "Invoice 1043 paid", "xero", "at.csv:8")


def test_account_column_wins_over_the_heading_and_currencies_per_account(tmp_path: Path) -> None:
    text = "\r\n".join([
        "Account Transactions", "Demo Company (UK)", "For the period 1 July 2026 to 31 July 2026", "",
        "Date,Account Code,Account,Source,Description,Debit,Credit",
        "200 - Sales",
        "2 Jul 2026,200,Sales,Receivable Invoice,Plan A,,99.00",
        "2 Jul 2026,090,Business Bank EUR,Receive Money,Plan A,99.00,",
        "Total 200 - Sales,,,,,99.00,99.00",
        "Total,,,,,99.00,99.00",
    ])
    source = ("{name: xero, format: xero_account_transactions, path: at.csv, "
              "options: {account_currencies: {Business Bank EUR: EUR}, manual_types: [Receive Money]}}")
    rows, _counts, quarantined = ingest_gl(tmp_path, source, text, home="GBP")
    assert quarantined == []
    assert [(r["account"], r["currency"], r["debit"], r["credit"], r["journal_type"]) for r in rows] == [
        ("Sales", "GBP", None, 9900, "system"),
        ("Business Bank EUR", "EUR", 9900, None, "manual"),
    ]


def test_heading_code_is_dropped_and_date_spellings(tmp_path: Path) -> None:
    text = "\r\n".join([
        "Account Transactions", "Demo", "", "Date,Source,Debit,Credit", "4000A - Subscription Revenue",
        "01/07/2026,Receivable Invoice,,10.00", "02 Jul 2026,Receivable Invoice,,10.00",
        "3 July 2026,Opening Balance,,10.00", "Total 4000A - Subscription Revenue,,,30.00",
    ])
    rows, _counts, quarantined = ingest_gl(tmp_path, SOURCE, text)
    assert quarantined == []  # a dated line whose Source reads `Opening Balance` is a ledger line
    assert [(r["account"], r["posted_at"]) for r in rows] == [
        ("Subscription Revenue", date(2026, 7, d)) for d in (1, 2, 3)]


def test_bad_amount_and_date_are_quarantined_naming_file_line_and_column(tmp_path: Path) -> None:
    text = XERO_AT.decode("utf-8-sig").replace('"1,250.00",,"2,250.00"', '"1,25O.00",,"2,250.00"').replace(
        "15/07/2026", "31/13/2026")
    rows, counts, quarantined = ingest_gl(tmp_path, SOURCE, text)
    assert [(c.read, c.accepted, c.quarantined) for c in counts] == [(4, 2, 2)]
    assert [r["entry_id"] for r in rows] == ["at.csv:9", "at.csv:15"]
    got = [(q["file"], q["line"], q["column_name"], q["value"]) for q in quarantined]
    assert got == [("at.csv", 8, "debit", "1,25O.00"), ("at.csv", 10, "posted_at", "31/13/2026")]
    assert "not a date/time in a known format (%d %b %Y, %d/%m/%Y" in quarantined[1]["reason"]


def test_export_without_debit_and_credit_is_a_one_line_error(tmp_path: Path) -> None:
    text = "Account Transactions\r\nDemo\r\n\r\nDate,Source,Description,Gross\r\n2 Jul 2026,Spend Money,x,1.00\r\n"
    with pytest.raises(InputError) as exc:
        ingest_gl(tmp_path, SOURCE, text)
    assert str(exc.value).splitlines()[0].startswith(
        "at.csv:1: no header row with 'Date', 'Debit' and 'Credit' in the first 20 lines")


def test_line_before_any_heading_without_account_column_names_the_line(tmp_path: Path) -> None:
    text = "Account Transactions\r\nDemo\r\n\r\nDate,Source,Debit,Credit\r\n2 Jul 2026,Spend Money,1.00,\r\n"
    with pytest.raises(InputError) as exc:
        ingest_gl(tmp_path, SOURCE, text)
    assert str(exc.value).splitlines()[0] == "at.csv:5: ledger line before any account heading, and no Account column"


def test_bad_option_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"source 'xero': options\.account_currencies: expected a mapping"):
        ingest_gl(tmp_path, "{name: xero, format: xero_account_transactions, path: at.csv, "
                  "options: {account_currencies: [EUR]}}", XERO_AT)


def test_registered_on_gl_entries() -> None:
    fmt = FORMATS["xero_account_transactions"]
    assert (fmt.table, fmt.system, fmt.amount_unit) == ("gl_entries", "xero", "major")

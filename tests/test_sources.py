"""File sources on realistic vendor exports, through normalization and the quality gate.

Every file here is written by the test the way the vendor writes it (FORMATS.md): Stripe reports,
the Stripe Dashboard payments export, the QuickBooks GL CSV (BOM, CRLF, preamble, sections, totals),
XLSX with real cell types, JSON lines and typed Parquet. Bad input must give one first line naming
file, line and column; bad rows are quarantined as data.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tieout.config import parse_config
from tieout.engines import Engine
from tieout.errors import ConfigError, InputError
from tieout.model import TABLES
from tieout.normalize import normalize
from tieout.quality import FileCount, gate
from tieout.sources import FORMATS, read_file, source_files, source_format


@dataclass
class Loaded:
    rows: list[dict[str, Any]]  # accepted, in file order
    quarantine: list[dict[str, Any]]  # in line order
    counts: tuple[FileCount, ...]

    def by(self, key: str) -> dict[Any, dict[str, Any]]:
        return {r[key]: r for r in self.rows}


def load(engine: Engine, tmp_path: Path, source_yaml: str, **files: str | bytes) -> Loaded:
    """Write `files` next to a tieout.yaml holding one source, read and gate it."""
    for name, content in files.items():
        target = tmp_path / name.replace("__", ".")
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content, encoding="utf-8", newline="")
    cfg = parse_config("sources:\n  - " + source_yaml.strip().replace("\n", "\n    ") + "\n", tmp_path / "tieout.yaml")
    src = cfg.sources[0]
    fmt = source_format(cfg, 0)
    table = TABLES[src.table or fmt.table or ""]
    frames = [
        normalize(engine, read_file(engine, fmt, src, f), src, fmt, table, src.system or fmt.system or src.name)
        for f in source_files(cfg, src)
    ]
    g = gate(engine, table, frames)
    rows = sorted(g.accepted.to_pyarrow().to_pylist(), key=lambda r: _ref_order(r["source_ref"]))
    quarantine = sorted(g.quarantine.to_pyarrow().to_pylist(), key=lambda r: (r["file"], r["line"]))
    return Loaded(rows, quarantine, g.counts)


def _ref_order(ref: str) -> tuple[str, int]:
    file, line = ref.rsplit(":", 1)
    return file, int(line)


def input_error(engine: Engine, tmp_path: Path, source_yaml: str, **files: str | bytes) -> InputError:
    with pytest.raises(InputError) as exc:
        load(engine, tmp_path, source_yaml, **files)
    return exc.value


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def assert_accounted(loaded: Loaded) -> None:
    for c in loaded.counts:
        assert c.read == c.accepted + c.quarantined
    assert sum(c.accepted for c in loaded.counts) == len(loaded.rows)
    assert sum(c.quarantined for c in loaded.counts) == len(loaded.quarantine)


# --- Stripe ---------------------------------------------------------------------------------------

BALANCE_HEADER = (
    "balance_transaction_id,created_utc,available_on_utc,currency,gross,fee,net,reporting_category,source_id,"
    "description,customer_id,customer_email,charge_id,payment_intent_id,invoice_id,subscription_id,"
    "automatic_payout_id,payment_metadata[invoice_number]\n"
)


def test_stripe_balance_itemized(engine: Engine, tmp_path: Path) -> None:
    body = (
        "txn_1,2026-07-02 14:03:11,2026-07-04 00:00:00,usd,1250.00,36.55,1213.45,charge,ch_1,Invoice INV-1043,"
        "cus_1,ap@acme.test,ch_1,pi_1,,,po_1,INV-1043\n"
        "txn_2,2026-07-05 09:00:00,2026-07-07 00:00:00,usd,-250.00,0.00,-250.00,refund,re_1,,cus_1,"
        "ap@acme.test,ch_1,pi_1,,,po_1,INV-1043\n"
        "txn_3,2026-07-06 10:00:00,2026-07-08 00:00:00,jpy,71000,2130,68870,charge,ch_2,,cus_2,,ch_2,pi_2,,,,"
        "INV-2001\n"
        "txn_4,2026-07-07 10:00:00,2026-07-09 00:00:00,usd,-15.00,15.00,-15.00,dispute,du_1,,cus_3,,ch_9,,,,,\n"
        "txn_5,2026-07-31 23:59:59,2026-08-02 00:00:00,usd,-1.50,0.00,-1.50,fee,,Radar fees,,,,,,,,\n"
    )
    loaded = load(engine, tmp_path, """
name: stripe
format: stripe_balance
path: balance.csv
columns: {invoice_ref: 'payment_metadata[invoice_number]'}
""", balance__csv=BALANCE_HEADER + body)
    assert not loaded.quarantine
    assert_accounted(loaded)
    rows = loaded.by("txn_id")
    assert list(rows) == ["ch_1", "re_1", "ch_2", "du_1", "txn_5"]  # source_id, else balance_transaction_id
    ch = rows["ch_1"]
    assert (ch["type"], ch["status"], ch["gross"], ch["fee"], ch["net"], ch["currency"]) == \
        ("charge", "succeeded", 125000, 3655, 121345, "USD")
    assert (ch["invoice_ref"], ch["customer_id"], ch["payout_id"]) == ("INV-1043", "cus_1", "po_1")
    assert ch["created_at"] == utc(2026, 7, 2, 14, 3, 11)
    assert ch["source"] == "stripe" and ch["source_ref"] == "balance.csv:2"
    assert (rows["re_1"]["type"], rows["re_1"]["gross"], rows["re_1"]["charge_id"]) == ("refund", -25000, "ch_1")
    assert (rows["ch_2"]["gross"], rows["ch_2"]["fee"], rows["ch_2"]["currency"]) == (71000, 2130, "JPY")
    assert rows["du_1"]["type"] == "dispute"
    assert (rows["txn_5"]["type"], rows["txn_5"]["gross"]) == ("fee", -150)


def test_stripe_reversals_share_their_source_id_and_are_both_accepted(engine: Engine, tmp_path: Path) -> None:
    # Stripe: a won dispute's dispute_reversal has the dispute as source_id, a refund_failure the refund.
    body = (
        "txn_1,2026-07-07 10:00:00,,usd,-15.00,15.00,-30.00,dispute,du_1,,cus_3,,ch_9,,,,,\n"
        "txn_2,2026-07-27 10:00:00,,usd,15.00,-15.00,30.00,dispute_reversal,du_1,,cus_3,,ch_9,,,,,\n"
        "txn_3,2026-07-08 10:00:00,,usd,-5.00,0.00,-5.00,refund,re_1,,cus_3,,ch_9,,,,,\n"
        "txn_4,2026-07-12 10:00:00,,usd,5.00,0.00,5.00,refund_failure,re_1,,cus_3,,ch_9,,,,,\n"
        "txn_5,2026-07-12 10:00:00,,usd,6.00,0.00,6.00,refund_failure,re_1,,cus_3,,ch_9,,,,,\n"
    )
    loaded = load(engine, tmp_path, "{name: s, format: stripe_balance, path: b.csv}", b__csv=BALANCE_HEADER + body)
    assert_accounted(loaded)
    assert [(r["txn_id"], r["type"]) for r in loaded.rows] == [
        ("du_1", "dispute"), ("du_1", "dispute_reversal"), ("re_1", "refund"), ("re_1", "refund_reversal")]
    # The same movement twice (same id and type, other values) is still a duplicate key.
    assert [(q["line"], q["column_name"]) for q in loaded.quarantine] == [(6, "type")]
    assert "duplicate txn_id/type 're_1/refund_reversal'" in loaded.quarantine[0]["reason"]


def test_stripe_balance_columns_are_selected_by_name_not_position(engine: Engine, tmp_path: Path) -> None:
    text = ("reporting_category,net,gross,currency,created_utc,balance_transaction_id,source_id,fee\n"
            "charge,9.41,10.00,eur,2026-07-02 14:03:11,txn_1,ch_1,0.59\n")
    loaded = load(engine, tmp_path, "{name: s, format: stripe_balance, path: b.csv}", b__csv=text)
    assert [(r["txn_id"], r["gross"], r["fee"], r["net"], r["currency"]) for r in loaded.rows] == \
        [("ch_1", 1000, 59, 941, "EUR")]


PAYMENTS_HEADER = (
    "id,Description,Seller Message,Created (UTC),Amount,Amount Refunded,Currency,Converted Amount,Fee,Status,"
    "Customer ID,Customer Email,Captured,Disputed Amount,Dispute Status,Invoice ID,PaymentIntent ID,"
    "invoice_number (metadata)\n"
)


def test_stripe_payments_export(engine: Engine, tmp_path: Path) -> None:
    body = (
        "ch_1,Invoice INV-1043,Payment complete.,2026-07-02 14:03,1250.00,0.00,usd,1250.00,36.55,Paid,cus_1,"
        "ap@acme.test,true,0.00,,in_1,pi_1,INV-1043\n"
        "ch_2,,Your card was declined.,2026-07-02 14:01,1250.00,0.00,usd,0.00,0.00,Failed,cus_1,ap@acme.test,"
        "false,0.00,,in_1,pi_1,INV-1043\n"
        "ch_3,,Payment complete.,2026-07-03 08:00,71000,0,jpy,71000,2130,Paid,cus_2,,true,0,,,pi_3,INV-2001\n"
        "ch_4,,Payment complete.,2026-07-03 09:00,80.00,80.00,eur,80.00,2.62,Refunded,cus_3,,true,0,,,pi_4,\n"
    )
    loaded = load(engine, tmp_path, """
name: stripe_payments
format: stripe_payments
path: payments.csv
columns: {invoice_ref: 'invoice_number (metadata)'}
""", payments__csv=PAYMENTS_HEADER + body)
    assert not loaded.quarantine
    rows = loaded.by("txn_id")
    assert {k: (r["status"], r["type"]) for k, r in rows.items()} == {
        "ch_1": ("succeeded", "charge"), "ch_2": ("failed", "charge"),
        "ch_3": ("succeeded", "charge"), "ch_4": ("succeeded", "charge"),
    }
    assert (rows["ch_1"]["gross"], rows["ch_1"]["fee"], rows["ch_1"]["invoice_ref"]) == (125000, 3655, "INV-1043")
    assert (rows["ch_3"]["gross"], rows["ch_3"]["currency"]) == (71000, "JPY")
    assert rows["ch_1"]["created_at"] == utc(2026, 7, 2, 14, 3)
    assert rows["ch_1"]["charge_id"] == "ch_1"


def test_bom_and_crlf_are_read(engine: Engine, tmp_path: Path) -> None:
    body = "ch_1,,,2026-07-02 14:03,10.00,0,usd,10.00,0.59,Paid,cus_1,,true,0,,,pi_1,\n"
    data = ("\ufeff" + PAYMENTS_HEADER + body).replace("\n", "\r\n").encode("utf-8")
    loaded = load(engine, tmp_path, "{name: p, format: stripe_payments, path: p.csv}", p__csv=data)
    assert [(r["txn_id"], r["gross"], r["source_ref"]) for r in loaded.rows] == [("ch_1", 1000, "p.csv:2")]


def test_unknown_status_value_is_quarantined(engine: Engine, tmp_path: Path) -> None:
    body = "ch_1,,,2026-07-02 14:03,10.00,0,usd,10.00,0.59,Teleported,cus_1,,true,0,,,pi_1,\n"
    loaded = load(engine, tmp_path, "{name: p, format: stripe_payments, path: p.csv}", p__csv=PAYMENTS_HEADER + body)
    assert loaded.rows == []
    [q] = loaded.quarantine
    assert (q["file"], q["line"], q["column_name"], q["value"]) == ("p.csv", 2, "status", "Teleported")
    assert q["reason"] == "unknown value 'Teleported' (expected one of succeeded, failed, pending)"


def test_value_maps_in_config_extend_the_format(engine: Engine, tmp_path: Path) -> None:
    body = "ch_1,,,2026-07-02 14:03,10.00,0,usd,10.00,0.59,Teleported,cus_1,,true,0,,,pi_1,\n"
    loaded = load(engine, tmp_path, "{name: p, format: stripe_payments, path: p.csv, "
                  "value_maps: {status: {teleported: succeeded}}}", p__csv=PAYMENTS_HEADER + body)
    assert [r["status"] for r in loaded.rows] == ["succeeded"]


# --- QuickBooks -----------------------------------------------------------------------------------

QBO_GL = (
    '\ufeff"Company Name, Inc.",,,,,,,,\r\n'
    "General Ledger,,,,,,,,\r\n"
    '"July 1 - September 30, 2026",,,,,,,,\r\n'
    ",,,,,,,,\r\n"
    ",Date,Transaction Type,Num,Name,Memo/Description,Split,Amount,Balance\r\n"
    "Undeposited Funds,,,,,,,,\r\n"
    ',Beginning Balance,,,,,,,"1,000.00"\r\n'
    ',07/02/2026,Payment,1043,Acme Corp,Invoice 1043,Accounts Receivable (A/R),"1,250.00","2,250.00"\r\n'
    ',07/03/2026,Deposit,,,Stripe payout,-Split-,"-2,250.00",0.00\r\n'
    'Total for Undeposited Funds,,,,,,,"$1,000.00",\r\n'
    "Checking,,,,,,,,\r\n"
    ',07/03/2026,Deposit,,,Stripe payout,-Split-,"2,213.45","2,213.45"\r\n'
    ',07/15/2026,Journal Entry,JE-7,,Reclass,Revenue,(250.00),"1,963.45"\r\n'
    ',07/31/2026,Expense,,Stripe,Fees,Stripe Fees,"$1,000.00","2,963.45"\r\n'
    'Total for Checking,,,,,,,"$2,963.45",\r\n'
    'TOTAL,,,,,,,"$0.00",\r\n'
)


def test_quickbooks_gl_export(engine: Engine, tmp_path: Path) -> None:
    loaded = load(engine, tmp_path, """
name: gl
format: quickbooks_gl
path: gl.csv
constants: {currency: USD}
""", gl__csv=QBO_GL.encode("utf-8"))
    assert not loaded.quarantine
    assert_accounted(loaded)
    got = [(r["entry_id"], r["account"], r["posted_at"], r["txn_type"], r["debit"], r["credit"], r["journal_type"],
            r["currency"]) for r in loaded.rows]
    assert got == [
        ("gl.csv:8", "Undeposited Funds", date(2026, 7, 2), "Payment", 125000, None, "system", "USD"),
        ("gl.csv:9", "Undeposited Funds", date(2026, 7, 3), "Deposit", None, 225000, "system", "USD"),
        ("gl.csv:12", "Checking", date(2026, 7, 3), "Deposit", 221345, None, "system", "USD"),
        ("gl.csv:13", "Checking", date(2026, 7, 15), "Journal Entry", None, 25000, "manual", "USD"),
        ("gl.csv:14", "Checking", date(2026, 7, 31), "Expense", 100000, None, "system", "USD"),
    ]
    first = loaded.rows[0]
    assert (first["reference"], first["name"], first["memo"]) == ("1043", "Acme Corp", "Invoice 1043")


def test_quickbooks_account_currencies_option(engine: Engine, tmp_path: Path) -> None:
    loaded = load(engine, tmp_path, """
name: gl
format: quickbooks_gl
path: gl.csv
constants: {currency: USD}
options: {account_currencies: {Checking: EUR}}
""", gl__csv=QBO_GL)
    assert {(r["account"], r["currency"]) for r in loaded.rows} == {("Undeposited Funds", "USD"), ("Checking", "EUR")}


def test_quickbooks_bad_option_is_a_config_error(engine: Engine, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"source 'gl': options\.account_currencies: expected a mapping"):
        load(engine, tmp_path, "{name: gl, format: quickbooks_gl, path: gl.csv, options: {account_currencies: [EUR]}}",
             gl__csv=QBO_GL)


def test_quickbooks_memo_spanning_lines_keeps_physical_line_numbers(engine: Engine, tmp_path: Path) -> None:
    text = QBO_GL.replace("Invoice 1043", '"Invoice 1043\r\npaid in full"')
    loaded = load(engine, tmp_path, "{name: gl, format: quickbooks_gl, path: gl.csv, constants: {currency: USD}}",
                  gl__csv=text)
    assert [r["entry_id"] for r in loaded.rows] == ["gl.csv:8", "gl.csv:10", "gl.csv:13", "gl.csv:14", "gl.csv:15"]
    assert loaded.rows[0]["memo"] == "Invoice 1043\r\npaid in full"


def test_quickbooks_not_a_gl_export(engine: Engine, tmp_path: Path) -> None:
    err = input_error(engine, tmp_path, "{name: gl, format: quickbooks_gl, path: gl.csv}", gl__csv="a,b\n1,2\n")
    assert str(err).splitlines()[0].startswith("gl.csv:1: no header row with 'Date' and 'Amount'")


# --- generic tabular formats ----------------------------------------------------------------------

def test_xlsx_with_real_cell_types(engine: Engine, tmp_path: Path) -> None:
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "Payments"
    ws.append(["payment_id", "customer_id", "type", "method", "amount", "currency", "received_at", "note"])
    ws.append(["P-1", "C-1", "payment", "card", 1250.5, "USD", datetime(2026, 7, 2, 14, 3), None])
    ws.append([1002, "C-2", "Refund", "ACH", Decimal("99.99"), "usd", date(2026, 7, 3), "partial"])
    ws.append([None, None, None, None, None, None, None, None])  # blank row, skipped
    ws.append(["P-3", "C-3", "payment", "wire", 71000, "JPY", datetime(2026, 7, 4), None])
    wb.save(tmp_path / "payments.xlsx")
    loaded = load(engine, tmp_path, "{name: x, format: xlsx, path: payments.xlsx, table: payments, sheet: Payments}")
    assert not loaded.quarantine
    got = [(r["payment_id"], r["type"], r["method"], r["amount"], r["currency"], r["received_at"], r["source_ref"])
           for r in loaded.rows]
    assert got == [
        ("P-1", "payment", "card", 125050, "USD", utc(2026, 7, 2, 14, 3), "payments.xlsx:2"),
        ("1002", "refund", "ach", 9999, "USD", utc(2026, 7, 3), "payments.xlsx:3"),
        ("P-3", "payment", "wire", 71000, "JPY", utc(2026, 7, 4), "payments.xlsx:5"),  # spreadsheet row number
    ]


def test_xlsx_repeated_mapped_column_is_refused(engine: Engine, tmp_path: Path) -> None:
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(["payment_id", "customer_id", "type", "method", "amount", "currency", "received_at", "amount"])
    ws.append(["P-1", "C-1", "payment", "card", 10, "USD", date(2026, 7, 2), 11])
    wb.save(tmp_path / "payments.xlsx")
    with pytest.raises(InputError) as exc:
        load(engine, tmp_path, "{name: x, format: xlsx, path: payments.xlsx, table: payments}")
    assert str(exc.value).splitlines()[0] == (
        "payments.xlsx:1: column 'amount' appears 2 times in the header (mapped to payments.amount); "
        "rename or remove all but one")


def test_xlsx_unknown_sheet(engine: Engine, tmp_path: Path) -> None:
    from openpyxl import Workbook

    Workbook().save(tmp_path / "p.xlsx")
    err = input_error(engine, tmp_path, "{name: x, format: xlsx, path: p.xlsx, table: payments, sheet: Nope}")
    assert str(err).splitlines()[0] == "p.xlsx: no sheet named 'Nope' (sheets: Sheet)"


def test_jsonl(engine: Engine, tmp_path: Path) -> None:
    text = (
        '{"payment_id": "P-1", "customer_id": "C-1", "type": "payment", "method": "card", "amount": 1250, '
        '"currency": "usd", "received_at": "2026-07-02T14:03:00Z", "extra": {"k": [1, 2]}}\n'
        "\n"
        '{"payment_id": "P-2", "customer_id": "C-2", "type": "payment", "method": "card", "amount": 71000, '
        '"currency": "JPY", "received_at": 1783000000}\n'
    )
    loaded = load(engine, tmp_path, "{name: j, format: jsonl, path: p.jsonl, table: payments, amount_unit: minor, "
                  "date_formats: ['%Y-%m-%dT%H:%M:%S', unix]}", p__jsonl=text)
    assert not loaded.quarantine
    got = [(r["payment_id"], r["amount"], r["currency"], r["received_at"], r["source_ref"]) for r in loaded.rows]
    assert got == [
        ("P-1", 1250, "USD", utc(2026, 7, 2, 14, 3), "p.jsonl:1"),
        ("P-2", 71000, "JPY", datetime.fromtimestamp(1783000000, UTC), "p.jsonl:3"),
    ]


def test_jsonl_bad_line_names_the_line(engine: Engine, tmp_path: Path) -> None:
    err = input_error(engine, tmp_path, "{name: j, format: jsonl, path: p.jsonl, table: payments}",
                      p__jsonl='{"payment_id": "P-1"}\n{"payment_id": \n')
    assert str(err).splitlines()[0].startswith("p.jsonl:2: not valid JSON: ")


def test_parquet_with_typed_columns(engine: Engine, tmp_path: Path) -> None:
    table = pa.table({
        "payment_id": pa.array([1, 2, 3], pa.int64()),
        "customer_id": ["C-1", "C-2", "C-3"],
        "type": ["payment", "refund", "payment"],
        "method": ["card", "card", "ach"],
        "amount": pa.array([Decimal("1250.00"), Decimal("-99.99"), Decimal("0.10")], pa.decimal128(12, 2)),
        "currency": ["USD", "USD", "EUR"],
        "received_at": pa.array([datetime(2026, 7, 2, 14, 3), datetime(2026, 7, 3, 0, 0, 0, 500000),
                                 datetime(2026, 7, 4)], pa.timestamp("us")),
        "booked_at": pa.array([utc(2026, 7, 2, 14, 3)] * 3, pa.timestamp("us", tz="UTC")),
    })
    pq.write_table(table, tmp_path / "payments.parquet")
    loaded = load(engine, tmp_path, "{name: pq, format: parquet, path: payments.parquet, table: payments}")
    assert not loaded.quarantine
    got = [(r["payment_id"], r["amount"], r["currency"], r["received_at"], r["source_ref"]) for r in loaded.rows]
    assert got == [
        ("1", 125000, "USD", utc(2026, 7, 2, 14, 3), "payments.parquet:2"),
        ("2", -9999, "USD", datetime(2026, 7, 3, 0, 0, 0, 500000, tzinfo=UTC), "payments.parquet:3"),
        ("3", 10, "EUR", utc(2026, 7, 4), "payments.parquet:4"),
    ]


def test_parquet_timezone_aware_column_is_not_shifted_again(engine: Engine, tmp_path: Path) -> None:
    table = pa.table({
        "payment_id": ["P-1"], "customer_id": ["C-1"], "type": ["payment"], "method": ["card"],
        "amount": pa.array([1250], pa.int64()), "currency": ["USD"],
        "received_at": pa.array([utc(2026, 7, 1, 3, 30)], pa.timestamp("us", tz="UTC")),
    })
    pq.write_table(table, tmp_path / "p.parquet")
    loaded = load(engine, tmp_path, "{name: pq, format: parquet, path: p.parquet, table: payments, "
                  "amount_unit: minor, timezone: America/New_York}")
    assert not loaded.quarantine
    assert [(r["amount"], r["received_at"]) for r in loaded.rows] == [(1250, utc(2026, 7, 1, 3, 30))]


PAYMENTS_CSV_HEADER = "payment_id,customer_id,type,method,amount,currency,received_at\n"


def test_timezone_option_converts_naive_times_to_utc(engine: Engine, tmp_path: Path) -> None:
    text = PAYMENTS_CSV_HEADER + (
        "P-1,C-1,payment,card,10.00,USD,2026-06-30 23:30:00\n"   # EDT: UTC-4
        "P-2,C-1,payment,card,10.00,USD,2026-01-15 23:30:00\n"   # EST: UTC-5
        "P-3,C-1,payment,card,10.00,USD,2026-06-30T23:30:00Z\n"  # explicit UTC: not converted
        "P-4,C-1,payment,card,10.00,USD,2026-06-30T23:30:00+02:00\n"
    )
    loaded = load(engine, tmp_path, "{name: p, format: csv, path: p.csv, table: payments, timezone: America/New_York}",
                  p__csv=text)
    assert [r["received_at"] for r in loaded.rows] == [
        utc(2026, 7, 1, 3, 30), utc(2026, 1, 16, 4, 30), utc(2026, 6, 30, 23, 30), utc(2026, 6, 30, 21, 30),
    ]


def test_european_decimal_separator_and_semicolon(engine: Engine, tmp_path: Path) -> None:
    text = ("payment_id;customer_id;type;method;amount;currency;received_at\n"
            "P-1;C-1;payment;card;1.250,00;EUR;2026-07-02\n"
            "P-2;C-1;payment;card;12,5;EUR;2026-07-02\n")
    loaded = load(engine, tmp_path, "{name: p, format: csv, path: p.csv, table: payments, decimal_separator: ','}",
                  p__csv=text)
    assert [r["amount"] for r in loaded.rows] == [125000, 1250]


def test_glob_reads_every_file_and_counts_each(engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "exports").mkdir()
    loaded = load(engine, tmp_path, "{name: p, format: csv, path: 'exports/*.csv', table: payments}",
                  **{"exports/a__csv": PAYMENTS_CSV_HEADER + "P-1,C-1,payment,card,1.00,USD,2026-07-01\n",
                     "exports/b__csv": PAYMENTS_CSV_HEADER + "P-2,C-1,payment,card,2.00,USD,2026-07-01\n"
                                                             "P-3,C-1,payment,card,x,USD,2026-07-01\n"})
    assert [(c.file, c.read, c.accepted, c.quarantined) for c in loaded.counts] == \
        [("exports/a.csv", 1, 1, 0), ("exports/b.csv", 2, 1, 1)]


def test_csv_line_numbers_count_blank_lines_and_quoted_newlines(engine: Engine, tmp_path: Path) -> None:
    text = PAYMENTS_CSV_HEADER + (
        "P-1,C-1,payment,card,1.00,USD,2026-07-01\n"
        "\n"
        'P-2,C-1,payment,card,1.00,USD,"2026-07-01"\n'
        "P-3,C-1,payment,card,bad,USD,2026-07-01\n"
    )
    loaded = load(engine, tmp_path, "{name: p, format: csv, path: p.csv, table: payments}", p__csv=text)
    assert [r["source_ref"] for r in loaded.rows] == ["p.csv:2", "p.csv:4"]
    assert [(q["line"], q["column_name"]) for q in loaded.quarantine] == [(5, "amount")]

    header = PAYMENTS_CSV_HEADER.replace("\n", ",memo\n")
    text = header + 'P-1,C-1,payment,card,1.00,USD,2026-07-01,"two\nlines"\nP-2,C-1,payment,card,x,USD,2026-07-01,\n'
    loaded = load(engine, tmp_path, "{name: p, format: csv, path: p.csv, table: payments}", p__csv=text)
    assert [r["source_ref"] for r in loaded.rows] == ["p.csv:2"]
    assert [(q["line"], q["column_name"], q["value"]) for q in loaded.quarantine] == [(4, "amount", "x")]


def test_line_keeps_file_order_on_two_million_rows(engine: Engine, tmp_path: Path) -> None:
    """The view's row_number() keeps file order, through `normalize`'s scratch and stored tables too."""
    path = tmp_path / "big.csv"
    n = 2_000_000
    with path.open("w") as fh:
        fh.write("customer_id,name\n")
        fh.writelines(f"{i},n{i % 997}\n" for i in range(n))
    cfg = parse_config("sources:\n  - {name: big, format: csv, path: big.csv, table: customers}\n",
                       tmp_path / "tieout.yaml")
    src = cfg.sources[0]
    raw = read_file(engine, FORMATS["csv"], src, source_files(cfg, src)[0])
    norm = normalize(engine, raw, src, FORMATS["csv"], TABLES["customers"], "billing")
    for t, key in ((raw.table, "customer_id"), (norm, "customer_id")):
        out = t.aggregate(
            rows=t.count(), misplaced=(t._line != t[key].cast("int64") + 2).cast("int64").sum(), last=t._line.max()
        ).to_pyarrow().to_pylist()
        assert out == [{"rows": n, "misplaced": 0, "last": n + 1}]
    assert norm.filter(norm.customer_id == "1234567").source_ref.to_pyarrow().to_pylist() == ["big.csv:1234569"]


# --- bad input ------------------------------------------------------------------------------------

def test_missing_column_is_an_input_error_on_line_1(engine: Engine, tmp_path: Path) -> None:
    err = input_error(engine, tmp_path, "{name: s, format: stripe_balance, path: b.csv}",
                      b__csv="balance_transaction_id,source_id,reporting_category,created_utc,currency,fee,net\n"
                             "txn_1,ch_1,charge,2026-07-01,usd,0,0\n")
    first = str(err).splitlines()[0]
    assert first.startswith("b.csv:1: missing column 'gross' (mapped to gateway_transactions.gross); found: ")
    assert (err.file, err.line) == ("b.csv", 1)


def test_a_mapping_to_an_unknown_canonical_column_is_a_config_error(engine: Engine, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"columns\.invoice_number: 'gateway_transactions' has no column"):
        load(engine, tmp_path, "{name: s, format: stripe_balance, path: b.csv, columns: {invoice_number: x}}",
             b__csv=BALANCE_HEADER)


def test_unparseable_amount_date_and_currency_are_quarantined(engine: Engine, tmp_path: Path) -> None:
    text = PAYMENTS_CSV_HEADER + (
        "P-1,C-1,payment,card,\"12,5O\",USD,2026-07-01\n"
        "P-2,C-1,payment,card,10.00,USD,31/07/2026\n"
        "P-3,C-1,payment,card,10.00,XYZ,2026-07-01\n"
        "P-4,C-1,payment,card,1.005,USD,2026-07-01\n"
        "P-5,C-1,payment,card,0.5,JPY,2026-07-01\n"
        "P-6,C-1,payment,card,1e5,USD,2026-07-01\n"
        "P-7,C-1,payment,card,1.0000000001,USD,2026-07-01\n"
        "P-8,C-1,payment,card,99999999999999999999999999999,KWD,2026-07-01\n"
        "P-9,C-1,payment,,10.00,USD,2026-07-01\n"
        "P-10,C-1,payment,card,\"1,250.00\",usd,2026-07-01\n"
    )
    loaded = load(engine, tmp_path, "{name: p, format: csv, path: p.csv, table: payments}", p__csv=text)
    assert_accounted(loaded)
    got = [(q["file"], q["line"], q["column_name"], q["value"], q["reason"]) for q in loaded.quarantine]
    assert got == [
        ("p.csv", 2, "amount", "12,5O", "'12,5O' is not a number"),
        ("p.csv", 3, "received_at", "31/07/2026",
         "'31/07/2026' is not a date/time in a known format (" + ", ".join(FORMATS["csv"].date_formats) + ")"),
        ("p.csv", 4, "currency", "XYZ", "unknown currency 'XYZ' (not an ISO-4217 code)"),
        ("p.csv", 5, "amount", "1.005", "'1.005' has more decimal places than its currency allows (USD)"),
        ("p.csv", 6, "amount", "0.5", "'0.5' has more decimal places than its currency allows (JPY)"),
        ("p.csv", 7, "amount", "1e5", "'1e5' is not a number"),
        ("p.csv", 8, "amount", "1.0000000001", "'1.0000000001' has more decimal places than its currency allows (USD)"),
        ("p.csv", 9, "amount", "99999999999999999999999999999", "'99999999999999999999999999999' is too large"),
        ("p.csv", 10, "method", "", "required value is empty"),
    ]
    assert [(r["payment_id"], r["amount"], r["currency"]) for r in loaded.rows] == [("P-10", 125000, "USD")]


def test_duplicates_are_quarantined(engine: Engine, tmp_path: Path) -> None:
    text = PAYMENTS_CSV_HEADER + (
        "P-1,C-1,payment,card,10.00,USD,2026-07-01\n"
        "P-2,C-1,payment,card,20.00,USD,2026-07-01\n"
        "P-1,C-1,payment,card,10.00,USD,2026-07-01\n"   # exact duplicate of line 2
        "P-2,C-1,payment,card,25.00,USD,2026-07-01\n"   # same key, different amount
        " P-1 ,C-1,payment,card,10.00,usd,2026-07-01\n"  # same after normalization: still an exact duplicate
    )
    loaded = load(engine, tmp_path, "{name: p, format: csv, path: p.csv, table: payments}", p__csv=text)
    assert_accounted(loaded)
    assert [(r["payment_id"], r["amount"]) for r in loaded.rows] == [("P-1", 1000), ("P-2", 2000)]
    got = [(q["line"], q["column_name"], q["value"], q["reason"]) for q in loaded.quarantine]
    assert got == [
        (4, "(row)", "", "exact duplicate of p.csv:2 (dropped)"),
        (5, "payment_id", "P-2", "duplicate payment_id 'P-2' with different values (first at p.csv:3)"),
        (6, "(row)", "", "exact duplicate of p.csv:2 (dropped)"),
    ]


def test_wrong_encoding_names_the_line(engine: Engine, tmp_path: Path) -> None:
    text = PAYMENTS_CSV_HEADER + ("P-1,C-1,payment,card,10.00,EUR,2026-07-01\n"
                                  "P-2,Société Générale,payment,card,1.00,EUR,2026-07-01\n")
    err = input_error(engine, tmp_path, "{name: p, format: csv, path: p.csv, table: payments}",
                      p__csv=text.encode("latin-1"))
    first = str(err).splitlines()[0]
    assert first.startswith("p.csv:3: not valid UTF-8: byte 0xe9 at position 9 is not valid utf-8;")
    assert "set `encoding:` on source 'p'" in first

    loaded = load(engine, tmp_path, "{name: p, format: csv, path: p.csv, table: payments, encoding: latin-1}")
    assert [r["customer_id"] for r in loaded.rows] == ["C-1", "Société Générale"]


@pytest.mark.parametrize("encoding", ["cp1252", "utf-16"])
def test_other_encodings_are_read(engine: Engine, tmp_path: Path, encoding: str) -> None:
    text = PAYMENTS_CSV_HEADER + "P-1,Café “Zoë”,payment,card,10.00,EUR,2026-07-01\n"
    loaded = load(engine, tmp_path, f"{{name: p, format: csv, path: p.csv, table: payments, encoding: {encoding}}}",
                  p__csv=text.encode(encoding))
    assert [(r["customer_id"], r["source_ref"]) for r in loaded.rows] == [("Café “Zoë”", "p.csv:2")]


def test_wrong_encoding_in_quickbooks_names_the_line(engine: Engine, tmp_path: Path) -> None:
    data = QBO_GL.replace("Acme Corp", "Café Olé").encode("latin-1", errors="ignore")
    err = input_error(engine, tmp_path, "{name: gl, format: quickbooks_gl, path: gl.csv}", gl__csv=data)
    assert str(err).splitlines()[0].startswith("gl.csv:8: not valid UTF-8: byte 0xe9")


@pytest.mark.parametrize("fmt", ["csv", "stripe_balance", "stripe_payments", "quickbooks_gl", "jsonl", "xlsx",
                                 "parquet"])
def test_empty_file_is_an_input_error(engine: Engine, tmp_path: Path, fmt: str) -> None:
    err = input_error(engine, tmp_path, f"{{name: e, format: {fmt}, path: e.dat, table: payments}}", e__dat=b"")
    assert str(err).splitlines()[0] == "e.dat:1: file is empty (expected a header row)"


def test_missing_file_is_an_input_error(engine: Engine, tmp_path: Path) -> None:
    err = input_error(engine, tmp_path, "{name: p, format: csv, path: nowhere.csv, table: payments}")
    assert str(err).splitlines()[0] == "nowhere.csv: file not found (source 'p')"


def test_header_only_file_has_no_rows(engine: Engine, tmp_path: Path) -> None:
    loaded = load(engine, tmp_path, "{name: s, format: stripe_balance, path: b.csv}", b__csv=BALANCE_HEADER)
    assert loaded.rows == [] and loaded.quarantine == []
    assert [(c.read, c.accepted, c.quarantined) for c in loaded.counts] in ([], [(0, 0, 0)])


def test_ragged_row_names_the_line(engine: Engine, tmp_path: Path) -> None:
    text = PAYMENTS_CSV_HEADER + ("P-1,C-1,payment,card,10.00,USD,2026-07-01\n"
                                  "\n"
                                  "P-2,C-1,payment,card,1,USD,2026-07-01,x,y\n")
    err = input_error(engine, tmp_path, "{name: p, format: csv, path: p.csv, table: payments}", p__csv=text)
    assert str(err).splitlines()[0] == "p.csv:4: row has 9 fields, the header has 7"


def test_written_csv_round_trips_through_the_csv_module(engine: Engine, tmp_path: Path) -> None:
    """Values with delimiters and quotes, as Python's csv (and Excel) quote them."""
    path = tmp_path / "p.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(PAYMENTS_CSV_HEADER.strip().split(","))
        w.writerow(["P-1", 'Acme "West", Inc.', "payment", "card", "1,250.00", "USD", "2026-07-01"])
    loaded = load(engine, tmp_path, "{name: p, format: csv, path: p.csv, table: payments}")
    assert [(r["customer_id"], r["amount"]) for r in loaded.rows] == [('Acme "West", Inc.', 125000)]

"""QuickBooks Online General Ledger report, CSV export.

Three preamble rows and a blank row, then the header (first column empty); each account opens with
a section row and closes with `Total for <account>`; `TOTAL` ends the file. Amounts carry thousands
separators, `-250.00` or `(250.00)` negatives and `$` on totals. The reader keeps the text as is and
only splits the signed Amount into Debit/Credit text; parsing happens in normalization.
"""

from __future__ import annotations

import codecs
import csv
import io
from pathlib import Path

import pyarrow as pa

from tieout.config import SourceConfig
from tieout.engines.base import Engine
from tieout.errors import ConfigError, InputError
from tieout.sources.base import RawFrame, SourceFormat, register_format
from tieout.sources.tabular import decode_error, ensure_not_empty

OUTPUT_COLUMNS = (
    "Entry ID", "Account", "Date", "Transaction Type", "Num", "Name", "Memo/Description", "Split",
    "Amount", "Debit", "Credit", "Journal Type", "Currency",
)


def _is_negative(text: str) -> bool:
    s = text.replace("$", "").replace(" ", "").strip()
    return s.startswith("-") or s.startswith("(")


def _unsigned(text: str) -> str:
    return text.replace("-", "").replace("(", "").replace(")", "").strip()


def _records(text: str, shown: str) -> tuple[list[list[str]], list[int]]:
    """CSV records and the physical line each starts on (a memo may span lines)."""
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[list[str]] = []
    starts: list[int] = []
    start = 1
    try:
        for row in reader:
            rows.append(row)
            starts.append(start)
            start = reader.line_num + 1
    except csv.Error as exc:
        raise InputError(shown, f"cannot be read as CSV: {exc}", line=start) from None
    return rows, starts


def read_quickbooks_gl(engine: Engine, path: Path, src: SourceConfig, shown: str) -> RawFrame:
    ensure_not_empty(path, shown)
    encoding = codecs.lookup(src.encoding).name
    try:
        text = path.read_bytes().decode("utf-8-sig" if encoding == "utf-8" else encoding)  # QBO writes a BOM
    except UnicodeDecodeError as exc:
        raise decode_error(path, shown, src, encoding, exc) from None
    rows, starts = _records(text, shown)
    header_at = None
    for i, row in enumerate(rows[:20]):
        cells = [c.strip() for c in row]
        if "Date" in cells and "Amount" in cells:
            header_at = i
            break
    if header_at is None:
        raise InputError(shown, "no header row with 'Date' and 'Amount' in the first 20 lines: not a "
                         "QuickBooks General Ledger export", line=1)
    header = [c.strip() for c in rows[header_at]]
    idx = {name: header.index(name) for name in header if name}
    account_currencies = src.options.get("account_currencies", {})
    manual = src.options.get("manual_types", ["Journal Entry"])
    if not isinstance(account_currencies, dict):
        raise ConfigError(f"source '{src.name}': options.account_currencies: expected a mapping "
                          "of account name to currency, e.g. {Checking EUR: EUR}")
    if not isinstance(manual, list) or not all(isinstance(t, str) for t in manual):
        raise ConfigError(f"source '{src.name}': options.manual_types: expected a list of transaction types")
    manual_types = {t.lower() for t in manual}
    account: str | None = None
    out: dict[str, list[str | None]] = {c: [] for c in OUTPUT_COLUMNS}
    lines: list[int] = []

    def cell(row: list[str], name: str) -> str:
        i = idx.get(name)
        return row[i].strip() if i is not None and i < len(row) else ""

    for n, row in zip(starts[header_at + 1:], rows[header_at + 1:], strict=True):
        if not any(c.strip() for c in row):
            continue
        first = row[0].strip() if row else ""
        if first:
            if first.upper() == "TOTAL" or first.startswith("Total for "):
                continue
            account = first  # section row: the account the following lines belong to
            continue
        if cell(row, "Date") == "Beginning Balance" or (row[1:2] and row[1].strip() == "Beginning Balance"):
            continue
        if account is None:
            raise InputError(shown, "ledger line before any account section row", line=n)
        amount = cell(row, "Amount")
        negative = _is_negative(amount)
        txn_type = cell(row, "Transaction Type")
        values = {
            "Entry ID": f"{shown}:{n}",
            "Account": account,
            "Date": cell(row, "Date"),
            "Transaction Type": txn_type,
            "Num": cell(row, "Num"),
            "Name": cell(row, "Name"),
            "Memo/Description": cell(row, "Memo/Description"),
            "Split": cell(row, "Split"),
            "Amount": amount,
            "Debit": "" if negative else amount,
            "Credit": _unsigned(amount) if negative else "",
            "Journal Type": "manual" if txn_type.lower() in manual_types else "system",
            "Currency": str(account_currencies.get(account, "")),
        }
        for c in OUTPUT_COLUMNS:
            out[c].append(values[c])
        lines.append(n)
    arrays = {"_line": pa.array(lines, pa.int64())}
    arrays.update({c: pa.array(v, pa.string()) for c, v in out.items()})
    table = engine.from_arrow("raw_gl", pa.table(arrays))
    return RawFrame(table, shown, OUTPUT_COLUMNS)


register_format(
    SourceFormat(
        name="quickbooks_gl",
        doc="QuickBooks Online General Ledger report exported as CSV (preamble, account sections, "
        "totals). Dates MM/DD/YYYY. Options: account_currencies {account: ISO code}, manual_types.",
        reader=read_quickbooks_gl,
        table="gl_entries",
        system="quickbooks",
        columns={
            "entry_id": "Entry ID",
            "posted_at": "Date",
            "account": "Account",
            "debit": "Debit",
            "credit": "Credit",
            "currency": "Currency",
            "txn_type": "Transaction Type",
            "reference": "Num",
            "name": "Name",
            "memo": "Memo/Description",
            "journal_type": "Journal Type",
        },
        amount_unit="major",
        date_formats=("%m/%d/%Y",),
    )
)

"""QuickBooks Online General Ledger report, CSV export.

Three preamble rows and a blank row, then the header (first column empty); each account opens with
a section row and closes with `Total for <account>`; `TOTAL` ends the file. Amounts carry thousands
separators, `-250.00` or `(250.00)` negatives and `$` on totals. The reader keeps the text as is and
only splits the signed Amount into Debit/Credit text; parsing happens in normalization.
"""

from __future__ import annotations

from pathlib import Path

from tieout.config import SourceConfig
from tieout.engines.base import Engine
from tieout.errors import InputError
from tieout.sources.base import RawFrame, SourceFormat, register_format
from tieout.sources.ledger_report import (
    LEDGER_COLUMNS,
    find_header,
    ledger_options,
    negative,
    read_records,
    text_frame,
    unsigned,
)

OUTPUT_COLUMNS = (
    "Entry ID", "Account", "Date", "Transaction Type", "Num", "Name", "Memo/Description", "Split",
    "Amount", "Debit", "Credit", "Journal Type", "Currency",
)


def read_quickbooks_gl(engine: Engine, path: Path, src: SourceConfig, shown: str) -> RawFrame:
    rows, starts = read_records(path, src, shown)  # QBO writes a BOM
    header = find_header(rows, ("Date", "Amount"), shown, "not a QuickBooks General Ledger export")
    options = ledger_options(src, "Journal Entry", "Checking EUR", "transaction types")
    cell = header.cell
    account: str | None = None
    out: list[tuple[int, dict[str, str]]] = []
    for n, row in zip(starts[header.at + 1:], rows[header.at + 1:], strict=True):
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
        credit = negative(amount, "$")
        txn_type = cell(row, "Transaction Type")
        out.append((n, {
            "Entry ID": f"{shown}:{n}",
            "Account": account,
            "Date": cell(row, "Date"),
            "Transaction Type": txn_type,
            "Num": cell(row, "Num"),
            "Name": cell(row, "Name"),
            "Memo/Description": cell(row, "Memo/Description"),
            "Split": cell(row, "Split"),
            "Amount": amount,
            "Debit": "" if credit else amount,
            "Credit": unsigned(amount) if credit else "",
            "Journal Type": options.journal_type(txn_type),
            "Currency": options.currency(account),
        }))
    return text_frame(engine, shown, OUTPUT_COLUMNS, out)


register_format(
    SourceFormat(
        name="quickbooks_gl",
        doc="QuickBooks Online General Ledger report exported as CSV (preamble, account sections, "
        "totals). Dates MM/DD/YYYY. Options: account_currencies {account: ISO code}, manual_types.",
        reader=read_quickbooks_gl,
        table="gl_entries",
        system="quickbooks",
        columns={
            **LEDGER_COLUMNS,
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

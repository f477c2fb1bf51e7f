"""Xero Account Transactions report, CSV export.

Preamble lines (report title, organisation, date range) come before the header row; the header's
columns are the ones the user chose (Date, Source, Description, Reference, Debit, Credit, Account
Code, Account, Contact, Gross, Net, Tax...), found by name. Lines are grouped under an account
heading (`200 - Sales`, or just the name when the account has no code), each group closed by
`Total 200 - Sales`; `Total` ends the file and `Opening Balance` / `Closing Balance` lines may
appear. Dates follow the organisation's format (`02 Jul 2026` or DD/MM/YYYY), amounts are decimal
major units with thousands separators. The reader keeps the text as is (parsing happens in
normalization); it only moves a negative Debit to Credit (and back), since ledger sides are >= 0.
"""

from __future__ import annotations

import re
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
    "Entry ID", "Account", "Account Code", "Date", "Source", "Reference", "Contact", "Description",
    "Debit", "Credit", "Journal Type", "Currency",
)
NEEDED = ("Date", "Debit", "Credit")
BALANCE_LINES = {"opening balance", "closing balance"}
# A group heading `<code> - <name>`: Xero account codes are up to 10 letters and digits, with a digit.
_HEADING = re.compile(r"^(?P<code>(?=[A-Za-z0-9]*\d)[A-Za-z0-9]{1,10}) - (?P<name>.+)$")


def _sides(debit: str, credit: str) -> tuple[str, str]:
    """Debit and credit text with a negative on either side moved to the other (unsigned)."""
    if negative(debit) and not credit:
        return "", unsigned(debit)
    if negative(credit) and not debit:
        return unsigned(credit), ""
    return debit, credit


def _account_of_heading(heading: str) -> tuple[str, str]:
    m = _HEADING.match(heading)
    return (m.group("name").strip(), m.group("code")) if m else (heading, "")


def read_xero_account_transactions(engine: Engine, path: Path, src: SourceConfig, shown: str) -> RawFrame:
    rows, starts = read_records(path, src, shown)  # Xero writes a BOM
    header = find_header(rows, NEEDED, shown, "not a Xero Account Transactions export (add the Debit and "
                         "Credit columns to the report)")
    options = ledger_options(src, "Manual Journal", "Business Bank EUR", "Source values")
    cell = header.cell
    group: tuple[str, str] | None = None
    out: list[tuple[int, dict[str, str]]] = []
    for n, row in zip(starts[header.at + 1:], rows[header.at + 1:], strict=True):
        cells = [c.strip() for c in row]
        if not any(cells):
            continue
        first = cells[0]
        if first == "Total" or first.startswith("Total "):
            continue
        if first.lower() in BALANCE_LINES or (not cell(row, "Date") and any(c.lower() in BALANCE_LINES for c in cells)):
            continue  # `Opening Balance` / `Closing Balance`, in the Date column or beside an empty one
        if first and not any(cells[1:]):
            group = _account_of_heading(first)  # heading: the account the following lines belong to
            continue
        if "Account" in header.index:
            account, code = cell(row, "Account"), cell(row, "Account Code")
        elif group is not None:
            account, code = group
            code = cell(row, "Account Code") or code
        else:
            raise InputError(shown, "ledger line before any account heading, and no Account column", line=n)
        debit, credit = _sides(cell(row, "Debit"), cell(row, "Credit"))
        source = cell(row, "Source")
        out.append((n, {
            "Entry ID": f"{shown}:{n}",
            "Account": account,
            "Account Code": code,
            "Date": cell(row, "Date"),
            "Source": source,
            "Reference": cell(row, "Reference"),
            "Contact": cell(row, "Contact"),
            "Description": cell(row, "Description"),
            "Debit": debit,
            "Credit": credit,
            "Journal Type": options.journal_type(source),
            "Currency": options.currency(account),
        }))
    return text_frame(engine, shown, OUTPUT_COLUMNS, out)


register_format(
    SourceFormat(
        name="xero_account_transactions",
        doc="Xero Account Transactions report exported as CSV (preamble, account headings `200 - Sales`, "
        "`Total` lines; needs the Date, Debit and Credit columns). Dates `2 Jul 2026` or DD/MM/YYYY. "
        "Options: account_currencies {account name: ISO code}, manual_types (Source values, default "
        "[Manual Journal]).",
        reader=read_xero_account_transactions,
        table="gl_entries",
        system="xero",
        columns={
            **LEDGER_COLUMNS,
            "txn_type": "Source",
            "reference": "Reference",
            "name": "Contact",
            "memo": "Description",
            "journal_type": "Journal Type",
        },
        amount_unit="major",
        date_formats=("%d %b %Y", "%d/%m/%Y", "%d %B %Y"),
    )
)

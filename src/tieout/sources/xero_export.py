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

import codecs
import re
from pathlib import Path

import pyarrow as pa

from tieout.config import SourceConfig
from tieout.engines.base import Engine
from tieout.errors import ConfigError, InputError
from tieout.sources.base import RawFrame, SourceFormat, register_format
from tieout.sources.quickbooks import _records
from tieout.sources.tabular import decode_error, ensure_not_empty

OUTPUT_COLUMNS = (
    "Entry ID", "Account", "Account Code", "Date", "Source", "Reference", "Contact", "Description",
    "Debit", "Credit", "Journal Type", "Currency",
)
NEEDED = ("Date", "Debit", "Credit")
BALANCE_LINES = {"opening balance", "closing balance"}
# A group heading `<code> - <name>`: Xero account codes are up to 10 letters and digits, with a digit.
_HEADING = re.compile(r"^(?P<code>(?=[A-Za-z0-9]*\d)[A-Za-z0-9]{1,10}) - (?P<name>.+)$")


def _negative(text: str) -> bool:
    s = text.replace(" ", "")
    return s.startswith(("-", "("))


def _unsigned(text: str) -> str:
    return text.replace("-", "").replace("(", "").replace(")", "").strip()


def _sides(debit: str, credit: str) -> tuple[str, str]:
    """Debit and credit text with a negative on either side moved to the other (unsigned)."""
    if _negative(debit) and not credit:
        return "", _unsigned(debit)
    if _negative(credit) and not debit:
        return _unsigned(credit), ""
    return debit, credit


def _account_of_heading(heading: str) -> tuple[str, str]:
    m = _HEADING.match(heading)
    return (m.group("name").strip(), m.group("code")) if m else (heading, "")


def read_xero_account_transactions(engine: Engine, path: Path, src: SourceConfig, shown: str) -> RawFrame:
    ensure_not_empty(path, shown)
    encoding = codecs.lookup(src.encoding).name
    try:
        text = path.read_bytes().decode("utf-8-sig" if encoding == "utf-8" else encoding)  # Xero writes a BOM
    except UnicodeDecodeError as exc:
        raise decode_error(path, shown, src, encoding, exc) from None
    rows, starts = _records(text, shown)
    header_at = None
    for i, row in enumerate(rows[:20]):
        if all(name in (c.strip() for c in row) for name in NEEDED):
            header_at = i
            break
    if header_at is None:
        raise InputError(shown, "no header row with 'Date', 'Debit' and 'Credit' in the first 20 lines: not a "
                         "Xero Account Transactions export (add the Debit and Credit columns to the report)",
                         line=1)
    header = [c.strip() for c in rows[header_at]]
    idx: dict[str, int] = {}
    for i, name in enumerate(header):
        if name and name not in idx:
            idx[name] = i
    account_currencies = src.options.get("account_currencies", {})
    manual = src.options.get("manual_types", ["Manual Journal"])
    if not isinstance(account_currencies, dict):
        raise ConfigError(f"source '{src.name}': options.account_currencies: expected a mapping "
                          "of account name to currency, e.g. {Business Bank EUR: EUR}")
    if not isinstance(manual, list) or not all(isinstance(t, str) for t in manual):
        raise ConfigError(f"source '{src.name}': options.manual_types: expected a list of Source values")
    manual_types = {t.lower() for t in manual}
    group: tuple[str, str] | None = None
    out: dict[str, list[str | None]] = {c: [] for c in OUTPUT_COLUMNS}
    lines: list[int] = []

    def cell(row: list[str], name: str) -> str:
        i = idx.get(name)
        return row[i].strip() if i is not None and i < len(row) else ""

    for n, row in zip(starts[header_at + 1:], rows[header_at + 1:], strict=True):
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
        if "Account" in idx:
            account, code = cell(row, "Account"), cell(row, "Account Code")
        elif group is not None:
            account, code = group
            code = cell(row, "Account Code") or code
        else:
            raise InputError(shown, "ledger line before any account heading, and no Account column", line=n)
        debit, credit = _sides(cell(row, "Debit"), cell(row, "Credit"))
        source = cell(row, "Source")
        values = {
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
            "Journal Type": "manual" if source.lower() in manual_types else "system",
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
        name="xero_account_transactions",
        doc="Xero Account Transactions report exported as CSV (preamble, account headings `200 - Sales`, "
        "`Total` lines; needs the Date, Debit and Credit columns). Dates `2 Jul 2026` or DD/MM/YYYY. "
        "Options: account_currencies {account name: ISO code}, manual_types (Source values, default "
        "[Manual Journal]).",
        reader=read_xero_account_transactions,
        table="gl_entries",
        system="xero",
        columns={
            "entry_id": "Entry ID",
            "posted_at": "Date",
            "account": "Account",
            "debit": "Debit",
            "credit": "Credit",
            "currency": "Currency",
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

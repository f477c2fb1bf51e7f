"""What the readers of accounting-report CSV exports share (QuickBooks' General Ledger, Xero's Account
Transactions): decoding (the BOM these exports start with), CSV records with the physical line each
starts on, the header row found by its column names below a preamble, the `account_currencies` and
`manual_types` options, and the flat text frame the readers hand to normalization.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from tieout.config import SourceConfig
from tieout.engines.base import Engine
from tieout.errors import ConfigError, InputError
from tieout.sources.base import RawFrame
from tieout.sources.tabular import decode_error, ensure_not_empty

HEADER_SEARCH_LINES = 20


# Columns every ledger reader writes under these names, and the `gl_entries` columns they map onto
# (each format adds its own: the transaction type, reference, name, memo and journal type).
LEDGER_COLUMNS = {
    "entry_id": "Entry ID",
    "posted_at": "Date",
    "account": "Account",
    "debit": "Debit",
    "credit": "Credit",
    "currency": "Currency",
}


def negative(text: str, symbols: str = "") -> bool:
    """A signed amount's text is negative (`-5.00`, `(5.00)`, `- 5.00`), ignoring blanks and any of
    `symbols` (e.g. a currency sign written before the sign)."""
    s = text.replace(" ", "")
    for symbol in symbols:
        s = s.replace(symbol, "")
    return s.strip().startswith(("-", "("))


def unsigned(text: str) -> str:
    return text.replace("-", "").replace("(", "").replace(")", "").strip()


def records(text: str, shown: str) -> tuple[list[list[str]], list[int]]:
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


def read_records(path: Path, src: SourceConfig, shown: str) -> tuple[list[list[str]], list[int]]:
    """The file's CSV records (see `records`), decoded in the source's encoding; a UTF-8 BOM is dropped."""
    ensure_not_empty(path, shown)
    encoding = codecs.lookup(src.encoding).name
    try:
        text = path.read_bytes().decode("utf-8-sig" if encoding == "utf-8" else encoding)
    except UnicodeDecodeError as exc:
        raise decode_error(path, shown, src, encoding, exc) from None
    return records(text, shown)


@dataclass(frozen=True)
class Header:
    at: int  # index of the header record
    index: dict[str, int]  # column name -> position (the first, when a name repeats)

    def cell(self, row: list[str], name: str) -> str:
        i = self.index.get(name)
        return row[i].strip() if i is not None and i < len(row) else ""


def find_header(rows: list[list[str]], needed: Sequence[str], shown: str, otherwise: str) -> Header:
    """The first record within `HEADER_SEARCH_LINES` that names every `needed` column; else an error on
    line 1 ending with `otherwise` (what the file then is not)."""
    for at, row in enumerate(rows[:HEADER_SEARCH_LINES]):
        cells = [c.strip() for c in row]
        if all(name in cells for name in needed):
            index: dict[str, int] = {}
            for i, name in enumerate(cells):
                if name and name not in index:
                    index[name] = i
            return Header(at, index)
    quoted = [f"'{n}'" for n in needed]
    names = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]
    raise InputError(shown, f"no header row with {names} in the first {HEADER_SEARCH_LINES} lines: {otherwise}",
                     line=1)


@dataclass(frozen=True)
class LedgerOptions:
    account_currencies: dict[Any, Any]  # account -> ISO code, for accounts not in the home currency
    manual_types: frozenset[str]  # lower-cased transaction types that mark a manual journal

    def currency(self, account: str) -> str:
        """The account's configured currency, '' when none (the source's constant or home currency then)."""
        return str(self.account_currencies.get(account, ""))

    def journal_type(self, txn_type: str) -> str:
        return "manual" if txn_type.lower() in self.manual_types else "system"


def ledger_options(src: SourceConfig, default_manual: str, account_example: str, manual_what: str) -> LedgerOptions:
    """`options.account_currencies` and `options.manual_types`, checked; the messages use the vendor's words
    (`account_example`: a sample account name, `manual_what`: what the manual types are, e.g. "Source values")."""
    account_currencies = src.options.get("account_currencies", {})
    manual = src.options.get("manual_types", [default_manual])
    if not isinstance(account_currencies, dict):
        raise ConfigError(f"source '{src.name}': options.account_currencies: expected a mapping "
                          f"of account name to currency, e.g. {{{account_example}: EUR}}")
    if not isinstance(manual, list) or not all(isinstance(t, str) for t in manual):
        raise ConfigError(f"source '{src.name}': options.manual_types: expected a list of {manual_what}")
    return LedgerOptions(account_currencies, frozenset(t.lower() for t in manual))


def text_frame(engine: Engine, shown: str, columns: tuple[str, ...],
               rows: list[tuple[int, dict[str, str]]]) -> RawFrame:
    """The readers' rows ((physical line, {column: text})) as the raw text frame normalization reads."""
    arrays = {"_line": pa.array([n for n, _ in rows], pa.int64())}
    arrays.update({c: pa.array([values[c] for _, values in rows], pa.string()) for c in columns})
    return RawFrame(engine.from_arrow("raw_gl", pa.table(arrays)), shown, columns)

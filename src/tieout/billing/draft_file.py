"""The draft-invoice file of `tieout validate --drafts FILE`: a billing engine's draft invoices and
their lines in one CSV, XLSX or JSON file, read strictly into the canonical `invoices` and
`invoice_lines` tables. A bad cell stops the validation naming file, row and column: a draft run
must not be gated on a guess. This room reads; it validates nothing.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import ibis
import pyarrow as pa

from tieout.errors import InputError
from tieout.model import LINEAGE_COLUMNS, TABLES
from tieout.money import MoneyError, is_known_currency, parse_decimal, to_minor_units
from tieout.normalize import ibis_type


@dataclass(frozen=True)
class DraftColumn:
    name: str
    kind: str  # text | money | integer | date | bool | currency
    required: bool
    level: str  # invoice (the same on every line of a draft) | line
    description: str


DRAFT_COLUMNS: dict[str, DraftColumn] = {c.name: c for c in (
    DraftColumn("invoice_id", "text", True, "invoice", "Draft invoice id; the lines of one draft share it."),
    DraftColumn("customer_id", "text", True, "invoice", "Customer id, as on the contracts."),
    DraftColumn("subscription_id", "text", True, "invoice", "The contract the draft bills (`contract_id` of "
                "its subscription rows, or the subscription id)."),
    DraftColumn("invoice_date", "date", True, "invoice", "The invoice's date: the first day of the cycle it "
                "opens (its lines are due on it)."),
    DraftColumn("currency", "currency", True, "invoice", "ISO-4217 currency of the draft; amounts are in its "
                "major units (49.00 USD, 5000 JPY)."),
    DraftColumn("status", "text", False, "invoice", "Default `draft`; only drafts are validated."),
    DraftColumn("line_id", "text", False, "line", "Line id within the draft; default its position (1, 2, …)."),
    DraftColumn("sku", "text", True, "line", "Product/plan code of the line."),
    DraftColumn("kind", "text", False, "line", "recurring, proration, credit, usage, minimum or percentage "
                "(a negative amount is a credit whatever it says)."),
    DraftColumn("quantity", "integer", True, "line", "Units billed."),
    DraftColumn("unit_amount", "money", False, "line", "Unit price (flat and per-unit plans)."),
    DraftColumn("amount", "money", True, "line", "Line amount before discount and tax (negative: a credit)."),
    DraftColumn("discount", "money", False, "line", "Discount on the line (default 0)."),
    DraftColumn("tax", "money", False, "line", "Tax on the line (default 0)."),
    DraftColumn("period_start", "date", True, "line", "First day of the service the line bills."),
    DraftColumn("period_end", "date", False, "line", "Day after the last day of that service."),
    DraftColumn("proration", "bool", False, "line", "The line prorates a partial period (true/false)."),
)}
_INVOICE_FIELDS = {"subscription_id": "subscription_id", "invoice_date": "period_start"}


def read_drafts(path: Path, shown: str | None = None) -> dict[str, pa.Table]:
    """`invoices` and `invoice_lines` (canonical Arrow tables, money in minor units) from a drafts file."""
    shown = shown or str(path)
    if not path.is_file():
        raise InputError(shown, "file not found (--drafts)")
    suffix = path.suffix.lower()
    readers: dict[str, Callable[[Path, str], Iterator[tuple[str, dict[str, Any], bool]]]] = {
        ".csv": _csv_rows, ".xlsx": _xlsx_rows, ".json": _json_rows}
    if suffix not in readers:
        raise InputError(shown, f"unknown drafts file type '{suffix}' (.csv, .xlsx or .json)")
    invoices: dict[str, dict[str, Any]] = {}
    first_row: dict[str, str] = {}
    lines: list[dict[str, Any]] = []
    per_draft: dict[str, int] = {}
    for where, raw, is_line in readers[suffix](path, shown):
        row = _parse(raw, where, is_line)
        inv = row["invoice_id"]
        head = {"invoice_id": inv, "customer_id": row["customer_id"], "subscription_id": row["subscription_id"],
                "period_start": row["invoice_date"], "currency": row["currency"], "status": row["status"] or "draft"}
        if inv in invoices:
            known = invoices[inv]
            for col in ("customer_id", "subscription_id", "invoice_date", "currency", "status"):
                key = _INVOICE_FIELDS.get(col, col)
                if head[key] != known[key]:
                    raise _error(where, f"draft {inv} has {col} {head[key]!s}, but "
                                     f"{first_row[inv]} says {known[key]!s} (one value per draft)", col)
        else:
            invoices[inv] = {**head, "subtotal": 0, "discount": 0, "tax": 0, "source": "drafts",
                             "source_ref": first_row.setdefault(inv, where)}
        if not is_line:  # a JSON draft with no lines
            continue
        per_draft[inv] = per_draft.get(inv, 0) + 1
        line = {"invoice_id": inv, "line_id": row["line_id"] or str(per_draft[inv]), "sku": row["sku"],
                "kind": row["kind"], "quantity": row["quantity"], "unit_amount": row["unit_amount"],
                "amount": row["amount"],
                "discount": row["discount"] or 0, "tax": row["tax"] or 0, "currency": row["currency"],
                "period_start": row["period_start"], "period_end": row["period_end"],
                "proration": row["proration"], "source": "drafts", "source_ref": where}
        lines.append(line)
        h = invoices[inv]
        h["subtotal"] += line["amount"]
        h["discount"] += line["discount"]
        h["tax"] += line["tax"]
    if not invoices:
        raise InputError(shown, "no draft invoice in the file (expected a header row and one row per line)")
    for h in invoices.values():
        h["total"] = h["subtotal"] - h["discount"] + h["tax"]
    return {"invoices": _arrow("invoices", list(invoices.values())), "invoice_lines": _arrow("invoice_lines", lines)}


def _error(where: str, message: str, column: str | None = None) -> InputError:
    """The error of a row: 'file:line' for CSV and XLSX; a JSON path ('drafts.json[2].lines[0]') has no line."""
    file, _, line = where.rpartition(":")
    if line.isdigit():
        return InputError(file, message, int(line), column)
    return InputError(where, message, None, column)


def _parse(raw: dict[str, Any], where: str, is_line: bool = True) -> dict[str, Any]:
    unknown = sorted(k for k in raw if k not in DRAFT_COLUMNS)
    if unknown:
        raise _error(where, f"unknown column (known: {', '.join(DRAFT_COLUMNS)})", unknown[0])
    currency = str(raw.get("currency") or "").strip().upper()
    out: dict[str, Any] = {}
    for name, col in DRAFT_COLUMNS.items():
        value = raw.get(name)
        text = "" if value is None else str(value).strip()
        if not text:
            if col.required and (is_line or col.level == "invoice"):
                raise _error(where, "is empty (a draft needs it)", name)
            out[name] = None
            continue
        try:
            out[name] = _value(col.kind, text, currency)
        except ValueError as exc:
            raise _error(where, str(exc), name) from None
    return out


def _value(kind: str, text: str, currency: str) -> Any:
    if kind == "currency":
        if not is_known_currency(text):
            raise ValueError(f"'{text}' is not an ISO-4217 currency code")
        return text.upper()
    if kind == "money":
        try:
            return to_minor_units(parse_decimal(text), currency)
        except MoneyError as exc:
            raise ValueError(str(exc)) from None
    if kind == "integer":
        if not text.lstrip("-").isdigit():
            raise ValueError(f"'{text}' is not a whole number")
        return int(text)
    if kind == "date":
        try:
            return date.fromisoformat(text[:10])
        except ValueError:
            raise ValueError(f"'{text}' is not a date (2026-10-01)") from None
    if kind == "bool":
        if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(f"'{text}' is not true or false")
        return text.lower() in ("true", "1", "yes")
    return text


def _csv_rows(path: Path, shown: str) -> Iterator[tuple[str, dict[str, Any], bool]]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if not header:
            raise InputError(shown, "is empty (expected a header row)", 1)
        names = [h.strip() for h in header]
        line = reader.line_num
        for cells in reader:
            start, line = line + 1, reader.line_num
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(names):
                raise InputError(shown, f"{len(cells)} fields, the header has {len(names)}", start)
            yield f"{shown}:{start}", dict(zip(names, cells, strict=True)), True


def _xlsx_rows(path: Path, shown: str) -> Iterator[tuple[str, dict[str, Any], bool]]:
    from openpyxl import load_workbook

    try:
        wb = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:
        raise InputError(shown, f"cannot be opened as XLSX: {exc}") from None
    try:
        names: list[str] = []
        for n, values in enumerate(wb.worksheets[0].iter_rows(values_only=True), start=1):
            cells = ["" if v is None else v.isoformat() if isinstance(v, date) else str(v) for v in values]
            if not any(c.strip() for c in cells):
                continue
            if not names:
                names = [c.strip() for c in cells]
                continue
            yield f"{shown}:{n}", {k: v for k, v in zip(names, cells, strict=False) if k}, True
    finally:
        wb.close()


def _json_rows(path: Path, shown: str) -> Iterator[tuple[str, dict[str, Any], bool]]:
    """A list of drafts, each with its invoice columns and `lines`, a list of line objects."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"), parse_float=str)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(shown, f"is not JSON: {exc}") from None
    if not isinstance(data, list):
        raise InputError(shown, "expected a list of draft invoices, each with `lines`")
    for i, inv in enumerate(data):
        if not isinstance(inv, dict) or not isinstance(inv.get("lines"), list):
            raise InputError(f"{shown}[{i}]", "a draft is an object with its invoice columns and `lines` (a list)")
        head = {k: v for k, v in inv.items() if k != "lines"}
        if not inv["lines"]:
            yield f"{shown}[{i}]", head, False
        for k, line in enumerate(inv["lines"]):
            if not isinstance(line, dict):
                raise InputError(f"{shown}[{i}].lines[{k}]", "a line is an object of column: value")
            yield f"{shown}[{i}].lines[{k}]", {**head, **line}, True


def _arrow(name: str, rows: list[dict[str, Any]]) -> pa.Table:
    columns = TABLES[name].columns
    schema = ibis.schema({**{c.name: ibis_type(c.kind) for c in columns},
                          **dict.fromkeys(LINEAGE_COLUMNS, "string")}).to_pyarrow()
    return pa.Table.from_pylist(rows, schema=schema)


def draft_columns_markdown() -> str:
    """The column table of docs/billing.md ('The drafts file'), from `DRAFT_COLUMNS`."""
    rows = ["| column | level | required | type | meaning |", "|---|---|---|---|---|"]
    rows += [f"| `{c.name}` | {c.level} | {'yes' if c.required else 'no'} | {c.kind} | {c.description} |"
             for c in DRAFT_COLUMNS.values()]
    return "\n".join(rows)

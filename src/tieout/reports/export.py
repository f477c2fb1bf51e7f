"""Export findings from the store, largest money at risk first, to CSV, JSON or XLSX.

Text that came from source systems is neutralized for spreadsheets (a cell starting with =, +, -,
@, tab or CR gets a leading apostrophe); numbers stay numbers, so real negative amounts are intact.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tieout.errors import InputError
from tieout.money import format_minor, is_known_currency

if TYPE_CHECKING:  # the store (SQLAlchemy) is not imported to name an option in `tieout --help`
    from tieout.store import FindingRow

# The finding fields of DESIGN §3 and where each stands in the workflow (priority, team, owner), in the
# order analysts read them.
COLUMNS = ("finding_id", "check", "category", "severity", "status", "priority", "priority_reason", "team", "owner",
           "resolution", "waived_until", "customer_id", "currency",
           "amount_at_risk", "amount_at_risk_display", "expected", "actual", "explanation", "period", "evidence",
           "first_seen_run", "last_seen_run")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# A plain number written as text ("-12", "-12.50") is not a formula; leaving it keeps it readable.
_PLAIN_NUMBER = re.compile(r"^[+-]?\d+(\.\d+)?$")


class ExportFormat(StrEnum):
    CSV = "csv"
    JSON = "json"
    XLSX = "xlsx"


def neutralize(value: Any) -> Any:
    """Make a text cell inert in spreadsheets (OWASP CSV injection); leave numbers alone."""
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _PLAIN_NUMBER.match(value):
        return "'" + value
    return value


def evidence_text(evidence_json: str) -> str:
    """'table:key@source_ref; ...': the evidence of a finding in one cell."""
    from tieout.findings import evidence_summary  # findings imports ibis; keep `tieout --help` light

    return evidence_summary(json.loads(evidence_json))


def finding_record(row: FindingRow) -> dict[str, Any]:
    """One finding as an export row, keyed by `COLUMNS`."""
    display = (format_minor(row.amount_at_risk, row.currency) if is_known_currency(row.currency)
               else f"{row.currency} {row.amount_at_risk}")
    return {
        "finding_id": row.finding_id, "check": row.check, "category": row.category, "severity": row.severity,
        "status": row.status, "priority": row.priority, "priority_reason": row.priority_reason, "team": row.team,
        "owner": row.owner, "resolution": row.resolution,
        "waived_until": row.waived_until.isoformat() if row.waived_until else None,
        "customer_id": row.customer_id, "currency": row.currency,
        "amount_at_risk": row.amount_at_risk, "amount_at_risk_display": display,
        "expected": row.expected, "actual": row.actual, "explanation": row.explanation, "period": row.period,
        "evidence": evidence_text(row.evidence),
        "first_seen_run": row.first_seen_run, "last_seen_run": row.last_seen_run,
    }


def export_records(rows: Sequence[FindingRow]) -> list[dict[str, Any]]:
    """Export rows ordered by money at risk, largest first (ties by id, so the order is stable)."""
    return sorted((finding_record(r) for r in rows), key=lambda r: (-r["amount_at_risk"], r["finding_id"]))


def _write_json(records: list[dict[str, Any]], path: Path) -> None:
    path.write_text(json.dumps(records, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def _write_csv(records: list[dict[str, Any]], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        for r in records:
            writer.writerow({k: neutralize(v) for k, v in r.items()})


def _write_xlsx(records: list[dict[str, Any]], path: Path) -> None:
    from openpyxl import Workbook
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
    from openpyxl.styles import Font

    def cell(value: Any) -> Any:
        # Strip what XLSX cannot hold first: "\x01=1+2" must not become the formula "=1+2". Line
        # breaks are written as "\n" (what a cell's line break is), whichever XML writer openpyxl uses:
        # with lxml a "\r" would survive, without it the XML parser folds "\r\n" into "\n".
        if not isinstance(value, str):
            return value
        return neutralize(ILLEGAL_CHARACTERS_RE.sub("", value)).replace("\r\n", "\n").replace("\r", "\n")

    wb = Workbook()
    ws = wb.active
    assert ws is not None  # a new workbook always has one sheet
    ws.title = "findings"
    ws.append(list(COLUMNS))
    for header in ws[1]:
        header.font = Font(bold=True)
    for r in records:
        ws.append([cell(r[c]) for c in COLUMNS])
    ws.freeze_panes = "A2"
    ws.auto_filter.ref = ws.dimensions
    for i, col in enumerate(COLUMNS, start=1):
        width = max([len(col)] + [len(str(r[col] or "")) for r in records[:500]])
        ws.column_dimensions[ws.cell(1, i).column_letter].width = min(60, width + 2)
    wb.save(path)


_WRITERS = {ExportFormat.CSV: _write_csv, ExportFormat.JSON: _write_json, ExportFormat.XLSX: _write_xlsx}


def export_findings(rows: Sequence[FindingRow], path: Path, fmt: ExportFormat | str) -> int:
    """Write `rows` to `path` in `fmt`; returns the number of findings written."""
    try:
        kind = ExportFormat(fmt)
    except ValueError:
        raise InputError(str(path), f"unknown export format '{fmt}' (csv, json or xlsx)") from None
    if not path.parent.is_dir():
        raise InputError(str(path), f"directory '{path.parent}' does not exist")
    records = export_records(rows)
    _WRITERS[kind](records, path)
    return len(records)

"""Export findings (ordered by money at risk) to CSV, JSON or XLSX.

Text from source systems is neutralized for spreadsheets: a cell starting with =, +, -, @, tab or
CR gets a leading apostrophe; numbers stay numbers, so real negative amounts are not altered.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tieout.errors import InputError
from tieout.money import format_minor, is_known_currency

COLUMNS = ("finding_id", "check", "category", "severity", "status", "owner", "customer_id", "currency",
           "amount_at_risk", "amount_at_risk_display", "expected", "actual", "explanation", "period", "evidence",
           "first_seen_run", "last_seen_run")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralize(value: Any) -> Any:
    """Make a text cell inert in spreadsheets; leave numbers alone."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def finding_record(row: Any) -> dict[str, Any]:
    evidence = json.loads(row.evidence)
    return {
        "finding_id": row.finding_id, "check": row.check, "category": row.category, "severity": row.severity,
        "status": row.status, "owner": row.owner, "customer_id": row.customer_id, "currency": row.currency,
        "amount_at_risk": row.amount_at_risk,
        "amount_at_risk_display": format_minor(row.amount_at_risk, row.currency)
        if is_known_currency(row.currency) else str(row.amount_at_risk),
        "expected": row.expected, "actual": row.actual, "explanation": row.explanation, "period": row.period,
        "evidence": "; ".join(f"{e['table']}:{e['key']}@{e['source_ref']}" for e in evidence),
        "first_seen_run": row.first_seen_run, "last_seen_run": row.last_seen_run,
    }


def export_findings(rows: Sequence[Any], path: Path, fmt: str) -> int:
    records = sorted((finding_record(r) for r in rows), key=lambda r: (-r["amount_at_risk"], r["finding_id"]))
    if fmt == "json":
        path.write_text(json.dumps(records, indent=1, default=str), encoding="utf-8")
    elif fmt == "csv":
        with path.open("w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=COLUMNS)
            w.writeheader()
            for r in records:
                w.writerow({k: neutralize(v) for k, v in r.items()})
    elif fmt == "xlsx":
        from openpyxl import Workbook
        from openpyxl.styles import Font

        wb = Workbook()
        ws = wb.active
        assert ws is not None
        ws.title = "findings"
        ws.append(list(COLUMNS))
        for cell in ws[1]:
            cell.font = Font(bold=True)
        for r in records:
            ws.append([neutralize(r[c]) for c in COLUMNS])
        ws.freeze_panes = "A2"
        ws.auto_filter.ref = ws.dimensions
        for i, col in enumerate(COLUMNS, start=1):
            width = max([len(col)] + [len(str(r[col] or "")) for r in records[:200]])
            ws.column_dimensions[ws.cell(1, i).column_letter].width = min(60, width + 2)
        wb.save(path)
    else:
        raise InputError(str(path), f"unknown export format '{fmt}' (csv, json or xlsx)")
    return len(records)

"""The monthly reconciliation report: one row per active customer with each system's values side by
side and a status label, counts per label, and trends per label across the periods in the store.

Labels are a registry (`LABELS`): docs/report-labels.md is generated from it. This room reads the
sources and the store and writes files; the comparisons themselves live in `checks.crm_operations`.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tieout.config import Config
from tieout.money import currency_exponent, format_minor, is_known_currency
from tieout.reports.export import neutralize


@dataclass(frozen=True)
class Label:
    name: str
    categories: tuple[str, ...]  # a row gets the first label (in registry order) one of its findings has
    colour: str  # fill in the XLSX, RRGGBB
    meaning: str


LABELS: tuple[Label, ...] = (
    Label("Missing from billing", ("missing_from_billing",), "FF9999",
          "Live in the CRM or served by operations, but no billing customer: nothing is invoiced."),
    Label("Usage not billed", ("unbilled_usage", "entitlement_exceeded_unbilled"), "FFB366",
          "Usage (or usage above the entitlement) this month that no invoice line bills."),
    Label("Billing mismatch", ("underbilled", "overbilled", "seat_count_mismatch"), "FFD966",
          "Billed seats differ from the providers operations serves or the seats the CRM sold."),
    Label("Missing from CRM", ("missing_from_crm",), "F4B6C2",
          "Billed or served this month, but no CRM account links to the customer."),
    Label("Missing from operations", ("missing_from_operations",), "C9B3E6",
          "Billed this month, but operations serves no active provider."),
    Label("Status mismatch", ("status_mismatch",), "B4C7E7",
          "The CRM says churned while billing is active, or live while billing has stopped."),
    Label("Product mismatch", ("product_mismatch", "usage_without_entitlement"), "BDD7EE",
          "Active products differ between the CRM, billing and entitlements, or usage of a product "
          "without entitlement."),
    Label("Go-live mismatch", ("go_live_mismatch",), "DDEBF7",
          "CRM go-live, billing start and first provider/usage disagree beyond the tolerance."),
    Label("OK", (), "C6EFCE", "Every system agrees for the month."),
)
LABEL_OF_CATEGORY = {c: lb.name for lb in LABELS for c in lb.categories}
COLUMNS = ("customer", "name", "label", "issues", "currency", "money_at_risk", "crm_account", "crm_status",
           "crm_seats", "billed_seats", "operations_providers", "crm_go_live", "billing_start",
           "first_provider", "first_usage", "crm_products", "billed_products", "entitled_products",
           "usage_units", "billed_amount")
_MONEY = ("money_at_risk", "billed_amount")


def label_for(categories: set[str]) -> str:
    for lb in LABELS:
        if categories & set(lb.categories):
            return lb.name
    return "OK"


@dataclass
class TrendRow:
    period: str
    label: str
    currency: str
    new: int = 0
    recurring: int = 0
    resolved: int = 0
    open_value: int = 0  # minor units, new + recurring


@dataclass
class MonthlyReport:
    period: str
    rows: list[dict[str, Any]]
    label_counts: dict[str, int]
    trends: list[TrendRow] = field(default_factory=list)


def _major(minor: int, currency: str) -> str:
    if not is_known_currency(currency):
        return str(minor)
    exp = currency_exponent(currency)
    sign = "-" if minor < 0 else ""
    q, r = divmod(abs(minor), 10**exp)
    return f"{sign}{q}.{r:0{exp}d}" if exp else f"{sign}{q}"


def _text(v: Any) -> Any:
    if v is None:
        return ""
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return v


def build_report(cfg: Config, period: str, store: Any) -> MonthlyReport:
    """Read the sources, resolve entities with the store's decisions, compare for `period`, and
    gather the trends of the `crm_operations` findings from the store."""
    from tieout.checks import CHECKS, CheckContext, check_params
    from tieout.checks.crm_operations import CrmOperationsParams, customer_view
    from tieout.engines import create_engine
    from tieout.errors import ConfigError
    from tieout.links import decisions, read_aliases, resolution_params, resolve_on_engine
    from tieout.pipeline import _as_of, ingest

    base = check_params(cfg, "crm_operations")
    assert isinstance(base, CrmOperationsParams)
    try:
        params = CrmOperationsParams.model_validate({**base.model_dump(), "period": period})
    except ValueError:
        raise ConfigError(f"--period: '{period}' is not a month (YYYY-MM)") from None
    engine = create_engine(cfg.engine)
    try:
        tables, _, _, _ = ingest(cfg, engine, lambda _m: None)
        missing = [t for t in CHECKS["crm_operations"].tables if t not in tables and t != "entity_links"]
        if missing:
            raise ConfigError(f"{cfg.path.name}: the monthly report needs sources for {', '.join(missing)}")
        found = resolve_on_engine(engine, tables, decisions(store), aliases=read_aliases(cfg),
                                  params=resolution_params(cfg))  # the links a run makes
        assert found.table is not None
        tables["entity_links"] = found.table
        ctx = CheckContext(engine, tables, _as_of(cfg, tables), cfg.home_currency)
        view = customer_view(ctx, params).to_pyarrow().to_pylist()
        findings = CHECKS["crm_operations"].run(ctx, params).to_pyarrow().to_pylist()
    finally:
        engine.close()
    by_entity: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for f in findings:
        by_entity[str(f["subject"]).split("|")[0]].append(f)
    rows = []
    for v in sorted(view, key=lambda r: str(r["entity"])):
        fs = by_entity.get(str(v["entity"]), [])
        active = v["bill_active"] or v["crm_status"] == "live" or (v["ops_providers"] or 0) > 0 or fs
        if not active:
            continue
        cats = {str(f["category"]) for f in fs}
        cur = str(v["currency"])
        rows.append({
            "customer": v["entity"], "name": v["bill_name"] or v["crm_name"] or "",
            "label": label_for(cats), "issues": "; ".join(sorted(cats)), "currency": cur,
            "money_at_risk": sum(int(f["amount_at_risk"] or 0) for f in fs), "crm_account": v["crm_account"],
            "crm_status": v["crm_status"], "crm_seats": v["crm_seats"], "billed_seats": v["bill_seats"],
            "operations_providers": v["ops_providers"], "crm_go_live": v["crm_go_live"],
            "billing_start": v["bill_start"], "first_provider": v["ops_first_active"],
            "first_usage": v["first_usage"], "crm_products": v["crm_products"],
            "billed_products": v["bill_products"], "entitled_products": v["ent_products"],
            "usage_units": v["usage_units"], "billed_amount": int(v["billed_amount"] or 0),
        })
    counts = {lb.name: 0 for lb in LABELS}
    for r in rows:
        counts[r["label"]] += 1
    return MonthlyReport(period, rows, counts, trends(store))


def trends(store: Any) -> list[TrendRow]:
    """Per period (the month of each run's as-of date), label and currency: findings of
    `crm_operations` first seen in the period (new), seen before and again (recurring), and last
    seen in the previous period, now closed (resolved)."""
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from tieout.store import FindingRow, RunRow

    with Session(store.engine) as s:
        runs = {r.run_id: r.as_of[:7] for r in s.scalars(select(RunRow)) if r.as_of}
        found = list(s.scalars(select(FindingRow).where(FindingRow.check == "crm_operations")))
    periods = sorted(set(runs.values()))
    out: dict[tuple[str, str, str], TrendRow] = {}
    for f in found:
        first, last = runs.get(f.first_seen_run), runs.get(f.last_seen_run)
        if first is None or last is None:
            continue
        label = LABEL_OF_CATEGORY.get(f.category, "OK")
        for p in periods:
            key = (p, label, f.currency)
            row = out.get(key) or TrendRow(p, label, f.currency)
            if p == first:
                row.new += 1
                row.open_value += f.amount_at_risk
            elif first < p <= last:
                row.recurring += 1
                row.open_value += f.amount_at_risk
            elif last < p and f.status == "closed" and p == _next_period(periods, last):
                row.resolved += 1
            else:
                continue
            out[key] = row
    return sorted(out.values(), key=lambda r: (r.period, r.label, r.currency))


def _next_period(periods: list[str], p: str) -> str | None:
    later = [x for x in periods if x > p]
    return later[0] if later else None


def write_csv(report: MonthlyReport, path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for r in report.rows:
            w.writerow([neutralize(_major(r[c], r["currency"]) if c in _MONEY else _text(r[c])) for c in COLUMNS])


def write_xlsx(report: MonthlyReport, path: Path) -> None:
    """Sheets 'customers' (frozen header, filters, widths, fill by label), 'labels', 'trends'."""
    from openpyxl import Workbook
    from openpyxl.styles import Font, PatternFill
    from openpyxl.utils import get_column_letter

    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "customers"
    ws.append(list(COLUMNS))
    fills = {lb.name: PatternFill("solid", start_color=lb.colour, end_color=lb.colour) for lb in LABELS}
    label_col = COLUMNS.index("label") + 1
    widths = [len(c) for c in COLUMNS]
    for r in report.rows:
        values: list[Any] = []
        for c in COLUMNS:
            v = r[c]
            if c in _MONEY:
                cell: Any = float(_major(v, r["currency"])) if currency_exponent(r["currency"]) else int(v)
            else:
                cell = neutralize(_text(v))
            values.append(cell)
        ws.append(values)
        ws.cell(row=ws.max_row, column=label_col).fill = fills[r["label"]]
        widths = [max(w, min(40, len(str(v)))) for w, v in zip(widths, values, strict=True)]
    for cell in ws[1]:
        cell.font = Font(bold=True)
    ws.freeze_panes = "A2"
    ws.auto_filter.ref = f"A1:{get_column_letter(len(COLUMNS))}{max(1, ws.max_row)}"
    for i, w in enumerate(widths, start=1):
        ws.column_dimensions[get_column_letter(i)].width = w + 2
    labels = wb.create_sheet("labels")
    labels.append(["label", "customers", "meaning"])
    for lb in LABELS:
        labels.append([lb.name, report.label_counts[lb.name], lb.meaning])
        labels.cell(row=labels.max_row, column=1).fill = fills[lb.name]
    tr = wb.create_sheet("trends")
    tr.append(["period", "label", "currency", "new", "recurring", "resolved", "open value"])
    for t in report.trends:
        tr.append([t.period, t.label, t.currency, t.new, t.recurring, t.resolved,
                   format_minor(t.open_value, t.currency) if is_known_currency(t.currency) else t.open_value])
    for sheet in (labels, tr):
        sheet.freeze_panes = "A2"
        for cell in sheet[1]:
            cell.font = Font(bold=True)
        for col in range(1, sheet.max_column + 1):
            sheet.column_dimensions[get_column_letter(col)].width = 22
    wb.save(path)


def labels_markdown() -> str:
    """docs/report-labels.md, generated from `LABELS`."""
    from tieout.categories import CATEGORIES

    lines = ["# Monthly report labels", "",
             "Generated by `tieout report labels --markdown > docs/report-labels.md` from",
             "`tieout.reports.monthly.LABELS`; `tests/test_report_monthly.py` fails when they disagree.",
             "A customer's row gets the first label, in this order, that one of its findings carries;",
             "a customer with no finding for the month is `OK`.", "",
             "| label | meaning | finding categories |", "|---|---|---|"]
    for lb in LABELS:
        cats = ", ".join(f"`{c}`" for c in lb.categories) or "none"
        for c in lb.categories:
            assert c in CATEGORIES, c
        lines.append(f"| {lb.name} | {lb.meaning} | {cats} |")
    return "\n".join(lines) + "\n"

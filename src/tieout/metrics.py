"""Run metrics (DESIGN §4), per period (UTC month) and currency, computed on the engine from the
accepted tables and from this run's findings. Definitions: docs/metrics.md.
"""

from __future__ import annotations

import calendar
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

import ibis.expr.types as ir

from tieout.findings import Finding

METRICS: dict[str, tuple[str, str]] = {
    # name: (unit, definition)
    "invoiced": ("minor", "Total of non-void, non-draft invoices issued in the period."),
    "collected": ("minor", "Payments recorded in billing in the period, net of refunds and chargebacks."),
    "gateway_settled": ("minor", "Charges settled at the gateway in the period, net of refunds and disputes."),
    "collection_gap": ("minor", "invoiced − collected: billed but not (yet) collected."),
    "posting_gap": ("minor", "gateway_settled − gateway-method payments recorded in billing: cash the "
                    "gateway holds that billing has not posted."),
    "accounting_gap": ("minor", "Payouts arrived in the period with no matching deposit in the ledger."),
    "cash_leak_pct": ("percent", "Money at risk of this run's findings as a percent of invoiced."),
    "invoice_failure_rate": ("percent", "Invoices with at least one finding, percent of invoices checked."),
    "unmatched_gateway_payments": ("count", "Settled gateway charges with no billing payment."),
    "unmatched_gateway_value": ("minor", "Value of settled gateway charges with no billing payment."),
    "reconciliation_coverage": ("percent", "Settled gateway charges matched to a billing payment, percent."),
    "money_at_risk": ("minor", "Sum of amount_at_risk of this run's findings."),
    "invoice_accuracy_rate": ("percent", "Invoices with no finding, percent of invoices checked "
                              "(100 − invoice_failure_rate)."),
    "collection_success_rate": ("percent", "Gateway charge attempts that succeeded, percent of attempts "
                                "(succeeded + failed; pending ones are not counted)."),
    "days_sales_outstanding": ("days", "Receivables at the end of the period ÷ invoiced in the period × days "
                               "in the period. Receivables = invoiced − collected, accumulated over the "
                               "months of the data (no opening balance before the first month)."),
}


@dataclass(frozen=True)
class Metric:
    period: str
    currency: str
    name: str
    value: str
    unit: str


def _sums_by(t: ir.Table, when: ir.Value, **aggs: ir.Scalar) -> dict[str, dict[tuple[str, str], int]]:
    """Each of `aggs` (a sum or a count, over rows of `t` it may filter with `where=`) per UTC month and
    currency, in one query: metric -> {(period, currency): value}. A group the metric's filter leaves
    empty reads 0; every group has at least one row of `t`."""
    rows = t.group_by(period=when.strftime("%Y-%m"), currency=t.currency).aggregate(**aggs).to_pyarrow().to_pylist()
    return {name: {(r["period"], r["currency"]): int(r[name] or 0) for r in rows} for name in aggs}


def _pct(num: int, den: int) -> str:
    if den == 0:
        return "0.00"
    return str((Decimal(num) * 100 / Decimal(den)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def _dso(receivable: int, invoiced: int, period: str) -> str:
    if invoiced <= 0:
        return "0.0"
    year, month = (int(x) for x in period.split("-"))
    days = calendar.monthrange(year, month)[1]
    return str((Decimal(max(receivable, 0)) * days / Decimal(invoiced)).quantize(Decimal("0.1"),
                                                                               rounding=ROUND_HALF_UP))


def metrics_markdown() -> str:
    """docs/metrics.md, generated from METRICS (tests/test_docs.py keeps them in step)."""
    units = {"minor": "money (minor units)", "percent": "percent, 2 decimals", "count": "count",
             "days": "days, 1 decimal"}
    lines = [
        "# Metrics",
        "",
        "Generated from `tieout.metrics.METRICS` by",
        "`python -c 'from tieout.metrics import metrics_markdown as m; print(m(), end=\"\")' > docs/metrics.md`.",
        "",
        "Every run computes each metric per period (the UTC month of the movement, the invoice's issue",
        "date or the finding's period) and per currency, and stores them with the run. Money is in the",
        "currency's minor units (cents; yen). Besides these, `at_risk:<category>` gives the money at",
        "risk of each finding category.",
        "",
        "| metric | unit | definition |",
        "|---|---|---|",
    ]
    for name, (unit, definition) in METRICS.items():
        lines.append(f"| `{name}` | {units[unit]} | {definition.replace('|', chr(92) + '|')} |")
    return "\n".join(lines) + "\n"


def compute_metrics(tables: dict[str, ir.Table], findings: Sequence[Finding], charge_pairs: ir.Table | None,
                    gateway_methods: Sequence[str] = ("card",)) -> list[Metric]:
    values: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))

    def put(name: str, data: dict[tuple[str, str], int]) -> None:
        for key, v in data.items():
            values[key][name] += v

    def put_all(data: dict[str, dict[tuple[str, str], int]]) -> None:
        for name, by_key in data.items():
            put(name, by_key)

    # One aggregate query per table (each a scan of a big table), every metric of the table a column.
    if "invoices" in tables:
        inv = tables["invoices"]
        billed = inv.filter(~inv.status.isin(["void", "draft"]) & inv.issued_at.notnull())
        put_all(_sums_by(billed, billed.issued_at, invoiced=billed.total.sum(), invoices_checked=billed.count()))
    if "payments" in tables:
        pay = tables["payments"]
        signed = pay.mutate(signed=(pay.type == "payment").ifelse(pay.amount, -pay.amount))
        gw = signed.method.isin(list(gateway_methods))
        put_all(_sums_by(signed, signed.received_at, collected=signed.signed.sum(),
                         _billing_gateway=signed.signed.sum(where=gw)))
    if "gateway_transactions" in tables:
        gt = tables["gateway_transactions"]
        money_moves = ["charge", "refund", "refund_reversal", "dispute", "dispute_reversal"]
        if charge_pairs is not None:
            # a charge is matched when a pair names it (distinct: a charge is counted once)
            named = charge_pairs.select(_paired=charge_pairs.left_id).distinct()
            gt = gt.left_join(named, gt.txn_id == named._paired)
        # only the rows some metric counts: the groups are those of one query per metric
        gt = gt.filter(((gt.status == "succeeded") & gt.type.isin(money_moves))
                       | ((gt.type == "charge") & gt.status.isin(["succeeded", "failed"])))
        moved = (gt.status == "succeeded") & gt.type.isin(money_moves)
        charge = (gt.type == "charge") & (gt.status == "succeeded")
        aggs: dict[str, ir.Scalar] = {
            "gateway_settled": gt.gross.sum(where=moved), "_charges": gt.count(where=charge),
            "_attempts": gt.count(where=(gt.type == "charge") & gt.status.isin(["succeeded", "failed"])),
        }
        if charge_pairs is not None:
            aggs["_charges_matched"] = gt.count(where=charge & gt._paired.notnull())
        put_all(_sums_by(gt, gt.created_at, **aggs))

    flagged_invoices: dict[tuple[str, str], set[str]] = defaultdict(set)
    for f in findings:
        key = (f.period or "", f.currency)
        values[key]["money_at_risk"] += f.amount_at_risk
        values[key][f"at_risk:{f.category}"] += f.amount_at_risk
        if f.category == "payment_unmatched":
            values[key]["unmatched_gateway_payments"] += 1
            values[key]["unmatched_gateway_value"] += f.amount_at_risk
        if f.category == "payout_unmatched":
            values[key]["accounting_gap"] += f.amount_at_risk
        for e in f.evidence:
            if e.table in ("invoices", "invoice_lines"):
                flagged_invoices[key].add(e.key.split("/")[0])

    out: list[Metric] = []
    receivable: dict[str, int] = defaultdict(int)  # per currency, accumulated month by month
    for (period, currency), v in sorted(values.items()):
        if not period:
            continue
        v["collection_gap"] = v["invoiced"] - v["collected"]
        receivable[currency] += v["collection_gap"]
        failure_rate = _pct(len(flagged_invoices[(period, currency)]), v["invoices_checked"])
        v["posting_gap"] = v["gateway_settled"] - v["_billing_gateway"]
        row = {
            "invoiced": str(v["invoiced"]),
            "collected": str(v["collected"]),
            "gateway_settled": str(v["gateway_settled"]),
            "collection_gap": str(v["collection_gap"]),
            "posting_gap": str(v["posting_gap"]),
            "accounting_gap": str(v["accounting_gap"]),
            "cash_leak_pct": _pct(v["money_at_risk"], v["invoiced"]),
            "invoice_failure_rate": failure_rate,
            "unmatched_gateway_payments": str(v["unmatched_gateway_payments"]),
            "unmatched_gateway_value": str(v["unmatched_gateway_value"]),
            "reconciliation_coverage": _pct(v["_charges_matched"], v["_charges"]) if v["_charges"] else "100.00",
            "money_at_risk": str(v["money_at_risk"]),
            "invoice_accuracy_rate": str(Decimal(100) - Decimal(failure_rate)) if v["invoices_checked"] else "100.00",
            "collection_success_rate": _pct(v["_charges"], v["_attempts"]) if v["_attempts"] else "100.00",
            "days_sales_outstanding": _dso(receivable[currency], v["invoiced"], period),
        }
        for name, value in row.items():
            out.append(Metric(period, currency, name, value, METRICS[name][0]))
        for name in sorted(k for k in v if k.startswith("at_risk:")):
            out.append(Metric(period, currency, name, str(v[name]), "minor"))
    return out

"""Run metrics (DESIGN §4), per period (UTC month) and currency, computed on the engine from the
accepted tables and from this run's findings. Definitions: docs/metrics.md.
"""

from __future__ import annotations

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
}


@dataclass(frozen=True)
class Metric:
    period: str
    currency: str
    name: str
    value: str
    unit: str


def _sum_by(t: ir.Table, when: ir.Value, amount: ir.Value | None) -> dict[tuple[str, str], int]:
    """Sum of `amount` (or the row count when None) per UTC month and currency."""
    agg = t.count() if amount is None else amount.sum()
    rows = t.group_by(period=when.strftime("%Y-%m"), currency=t.currency).aggregate(
        v=agg
    ).to_pyarrow().to_pylist()
    return {(r["period"], r["currency"]): int(r["v"] or 0) for r in rows}


def _pct(num: int, den: int) -> str:
    if den == 0:
        return "0.00"
    return str((Decimal(num) * 100 / Decimal(den)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def compute_metrics(tables: dict[str, ir.Table], findings: Sequence[Finding], charge_pairs: ir.Table | None,
                    gateway_methods: Sequence[str] = ("card",)) -> list[Metric]:
    values: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))

    def put(name: str, data: dict[tuple[str, str], int]) -> None:
        for key, v in data.items():
            values[key][name] += v

    if "invoices" in tables:
        inv = tables["invoices"]
        billed = inv.filter(~inv.status.isin(["void", "draft"]) & inv.issued_at.notnull())
        put("invoiced", _sum_by(billed, billed.issued_at, billed.total))
        put("invoices_checked", _sum_by(billed, billed.issued_at, None))
    if "payments" in tables:
        pay = tables["payments"]
        signed = pay.mutate(signed=(pay.type == "payment").ifelse(pay.amount, -pay.amount))
        put("collected", _sum_by(signed, signed.received_at, signed.signed))
        gw = signed.filter(signed.method.isin(list(gateway_methods)))
        put("_billing_gateway", _sum_by(gw, gw.received_at, gw.signed))
    if "gateway_transactions" in tables:
        gt = tables["gateway_transactions"]
        money_moves = ["charge", "refund", "refund_reversal", "dispute", "dispute_reversal"]
        moved = gt.filter((gt.status == "succeeded") & gt.type.isin(money_moves))
        put("gateway_settled", _sum_by(moved, moved.created_at, moved.gross))
        charges = gt.filter((gt.type == "charge") & (gt.status == "succeeded"))
        put("_charges", _sum_by(charges, charges.created_at, None))
        if charge_pairs is not None:
            m = charges.semi_join(charge_pairs, charges.txn_id == charge_pairs.left_id)
            put("_charges_matched", _sum_by(m, m.created_at, None))

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
    for (period, currency), v in sorted(values.items()):
        if not period:
            continue
        v["collection_gap"] = v["invoiced"] - v["collected"]
        v["posting_gap"] = v["gateway_settled"] - v["_billing_gateway"]
        row = {
            "invoiced": str(v["invoiced"]),
            "collected": str(v["collected"]),
            "gateway_settled": str(v["gateway_settled"]),
            "collection_gap": str(v["collection_gap"]),
            "posting_gap": str(v["posting_gap"]),
            "accounting_gap": str(v["accounting_gap"]),
            "cash_leak_pct": _pct(v["money_at_risk"], v["invoiced"]),
            "invoice_failure_rate": _pct(len(flagged_invoices[(period, currency)]), v["invoices_checked"]),
            "unmatched_gateway_payments": str(v["unmatched_gateway_payments"]),
            "unmatched_gateway_value": str(v["unmatched_gateway_value"]),
            "reconciliation_coverage": _pct(v["_charges_matched"], v["_charges"]) if v["_charges"] else "100.00",
            "money_at_risk": str(v["money_at_risk"]),
        }
        for name, value in row.items():
            out.append(Metric(period, currency, name, value, METRICS[name][0]))
        for name in sorted(k for k in v if k.startswith("at_risk:")):
            out.append(Metric(period, currency, name, str(v[name]), "minor"))
    return out

"""A customer's timeline across systems, for the person acting on a finding: their invoices,
billing payments (and refunds, chargebacks), gateway movements and the ledger entries that cite
their invoices, in time order. Reads the accepted canonical tables of a run (small results only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import ibis
import ibis.expr.types as ir


@dataclass(frozen=True)
class TimelineEntry:
    at: str
    table: str
    key: str
    source: str | None
    source_ref: str | None
    what: str
    amount: int | None
    currency: str | None


@dataclass(frozen=True)
class TimelineSource:
    """How one canonical table reads on a timeline: its time, key, amount and words."""

    table: str
    at: str
    key: str
    amount: str
    what: tuple[str, ...]  # columns joined into the description


TIMELINE: dict[str, TimelineSource] = {s.table: s for s in (
    TimelineSource("invoices", "issued_at", "invoice_id", "total", ("status",)),
    TimelineSource("payments", "received_at", "payment_id", "amount", ("type", "method", "invoice_id")),
    TimelineSource("gateway_transactions", "created_at", "txn_id", "gross", ("type", "status", "invoice_ref")),
    TimelineSource("gl_entries", "posted_at", "entry_id", "debit", ("account", "reference", "memo")),
)}


def _rows(t: ir.Table, src: TimelineSource, where: ir.BooleanValue) -> list[dict[str, Any]]:
    cols = [c for c in (src.at, src.key, src.amount, "currency", "source", "source_ref", "credit", *src.what)
            if c in t.columns]
    return list(t.filter(where).select(*dict.fromkeys(cols)).to_pyarrow().to_pylist())


def customer_timeline(tables: dict[str, ir.Table], customer_id: str) -> list[TimelineEntry]:
    """Every record of `customer_id` in the timeline tables, oldest first."""
    gateway_ids = {customer_id}
    if "customers" in tables and "gateway_customer_id" in tables["customers"].columns:
        c = tables["customers"]
        gateway_ids |= {r["gateway_customer_id"] for r in c.filter(c.customer_id == customer_id)
                        .select("gateway_customer_id").to_pyarrow().to_pylist() if r["gateway_customer_id"]}
    invoice_ids: set[str] = set()
    if "invoices" in tables:
        inv = tables["invoices"]
        invoice_ids = {r["invoice_id"] for r in inv.filter(inv.customer_id == customer_id).select("invoice_id")
                       .to_pyarrow().to_pylist()}
    out: list[TimelineEntry] = []
    for name, src in TIMELINE.items():
        t = tables.get(name)
        if t is None:
            continue
        if name == "gl_entries":
            if not invoice_ids or "reference" not in t.columns:
                continue
            where = t.reference.isin(sorted(invoice_ids))
        elif name == "gateway_transactions":
            where = t.customer_id.isin(sorted(gateway_ids))
            if invoice_ids and "invoice_ref" in t.columns:
                where = where | t.invoice_ref.isin(sorted(invoice_ids))
        else:
            where = t.customer_id == ibis.literal(customer_id)
        for r in _rows(t, src, where):
            amount = r.get(src.amount)
            if name == "gl_entries" and not amount:
                amount = -(r.get("credit") or 0)
            words = " ".join(f"{c}={r[c]}" for c in src.what if r.get(c) not in (None, ""))
            out.append(TimelineEntry(str(r.get(src.at) or ""), name, str(r[src.key]), r.get("source"),
                                     r.get("source_ref"), words, amount, r.get("currency")))
    return sorted(out, key=lambda e: (e.at, e.table, e.key))

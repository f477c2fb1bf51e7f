"""Metrics (DESIGN §4) on tiny hand-computed books: each figure checked against arithmetic done by hand."""

from __future__ import annotations

from datetime import UTC, datetime

import ibis
import pyarrow as pa
import pytest

from tieout.findings import Evidence, Finding
from tieout.metrics import METRICS, compute_metrics


def ts(month: int, day: int) -> datetime:
    return datetime(2026, month, day, 12, tzinfo=UTC)


@pytest.fixture()
def books() -> dict[str, ibis.Table]:
    invoices = ibis.memtable(pa.table({
        "invoice_id": ["I1", "I2", "I3", "I4"],
        "status": ["paid", "open", "paid", "void"],
        "issued_at": [ts(7, 1), ts(7, 15), ts(8, 1), ts(8, 2)],
        "currency": ["USD"] * 4,
        "total": [10000, 5000, 3000, 99999],
    }))
    payments = ibis.memtable(pa.table({
        "payment_id": ["P1", "P2", "P3"],
        "type": ["payment", "payment", "refund"],
        "method": ["card", "card", "card"],
        "amount": [10000, 5000, 1000],
        "received_at": [ts(7, 2), ts(8, 3), ts(8, 9)],
        "currency": ["USD"] * 3,
    }))
    gateway = ibis.memtable(pa.table({
        "txn_id": ["ch1", "ch2", "ch3", "ch4", "ch5", "re1"],
        "type": ["charge", "charge", "charge", "charge", "charge", "refund"],
        "status": ["succeeded", "succeeded", "failed", "pending", "succeeded", "succeeded"],
        "gross": [10000, 5000, 3000, 3000, 700, -1000],
        "created_at": [ts(7, 2), ts(7, 20), ts(7, 21), ts(7, 22), ts(8, 3), ts(8, 9)],
        "currency": ["USD"] * 6,
    }))
    return {"invoices": invoices, "payments": payments, "gateway_transactions": gateway}


def test_metrics_match_hand_arithmetic(books: dict[str, ibis.Table]) -> None:
    finding = Finding("F1", "gateway_billing", "paid_without_payment", "high", "C1", "USD", 5000, None, None, "x",
                      "2026-07", "I2", [Evidence("invoices", "I2", "billing", "invoices.csv:3", {})])
    got = {(m.period, m.name): m.value for m in compute_metrics(books, [finding], None)}

    assert got[("2026-07", "invoiced")] == "15000"
    assert got[("2026-07", "collected")] == "10000"
    assert got[("2026-08", "collected")] == "4000"  # 5000 paid, 1000 refunded
    assert got[("2026-07", "gateway_settled")] == "15000"
    assert got[("2026-07", "collection_gap")] == "5000"
    # one invoice of the two checked in July carries a finding
    assert got[("2026-07", "invoice_failure_rate")] == "50.00"
    assert got[("2026-07", "invoice_accuracy_rate")] == "50.00"
    assert got[("2026-08", "invoice_accuracy_rate")] == "100.00"
    # July: 2 succeeded of 3 attempts (the pending one is not an attempt yet)
    assert got[("2026-07", "collection_success_rate")] == "66.67"
    # DSO July: receivable 15000 - 10000 = 5000; 5000 / 15000 x 31 days = 10.33
    assert got[("2026-07", "days_sales_outstanding")] == "10.3"
    # August: receivable 5000 + (3000 - 4000) = 4000; 4000 / 3000 x 31 = 41.33
    assert got[("2026-08", "days_sales_outstanding")] == "41.3"
    assert got[("2026-07", "money_at_risk")] == "5000"
    assert got[("2026-07", "cash_leak_pct")] == "33.33"


def test_every_metric_is_computed_for_every_period(books: dict[str, ibis.Table]) -> None:
    metrics = compute_metrics(books, [], None)
    for period in ("2026-07", "2026-08"):
        assert {m.name for m in metrics if m.period == period} >= set(METRICS)
    assert all(m.unit == METRICS[m.name][0] for m in metrics if m.name in METRICS)


def test_reconciliation_coverage_counts_each_paired_charge_once(books: dict[str, ibis.Table]) -> None:
    # ch1 is named by two pairs (two payments carrying its reference), ch5 by one, re1 (a refund) by one
    pairs = ibis.memtable(pa.table({"left_id": ["ch1", "ch1", "ch5", "re1"], "right_id": ["P1", "P9", "P2", "P3"]}))
    got = {(m.period, m.name): m.value for m in compute_metrics(books, [], pairs)}

    # July: ch1 of the two settled charges (ch1, ch2) is matched; August: ch5, the only one
    assert got[("2026-07", "reconciliation_coverage")] == "50.00"
    assert got[("2026-08", "reconciliation_coverage")] == "100.00"
    # the join on pairs adds no rows: settled and attempts are as without pairs
    assert got[("2026-07", "gateway_settled")] == "15000"
    assert got[("2026-08", "gateway_settled")] == "-300"
    assert got[("2026-07", "collection_success_rate")] == "66.67"
    assert got[("2026-07", "posting_gap")] == "5000"  # 15000 settled; billing has 10000 by card in July

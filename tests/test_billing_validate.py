"""Pre-invoice validation end to end: the demo drafts (every injected defect held, clean drafts
pass), the expected-invoice engine on golden cases, and usage rating properties."""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tieout.billing.catalog import BillingConfig
from tieout.billing.expected import BillingTables, expected_lines
from tieout.billing.validate import ValidationResult, validate_drafts
from tieout.cli import run_cli
from tieout.config import load_config
from tieout.demo.drafts import DEFECTS, write_drafts
from tieout.engines import create_engine
from tieout.engines.base import Engine
from tieout.model import TABLES, Kind
from tieout.pipeline import ingest

_TYPES = {Kind.ID: pa.string(), Kind.TEXT: pa.string(), Kind.NAME: pa.string(), Kind.MONEY: pa.int64(),
          Kind.CURRENCY: pa.string(), Kind.TIMESTAMP: pa.timestamp("us", tz="UTC"), Kind.DATE: pa.date32(),
          Kind.INTEGER: pa.int64(), Kind.DECIMAL: pa.decimal128(38, 9), Kind.ENUM: pa.string(), Kind.BOOL: pa.bool_()}


def canonical(name: str, rows: list[dict[str, Any]]) -> pa.Table:
    cols = TABLES[name].columns
    schema = pa.schema([(c.name, _TYPES[c.kind]) for c in cols])
    return pa.Table.from_pylist([{c.name: r.get(c.name) for c in cols} for r in rows], schema=schema)


@dataclass
class Drafts:
    path: Path
    manifest: dict[str, Any]
    result: ValidationResult


@pytest.fixture(scope="module")
def drafts(tmp_path_factory: pytest.TempPathFactory) -> Drafts:
    path = tmp_path_factory.mktemp("drafts")
    write_drafts(path, contracts=60, seed=11)
    cfg = load_config(path / "validate.yaml")
    engine = create_engine("duckdb")
    try:
        tables, _c, _q, _i = ingest(cfg, engine, lambda _m: None)
        result = validate_drafts(engine, cfg.billing, cfg.severity, tables)
    finally:
        engine.close()
    return Drafts(path, json.loads((path / "validate_manifest.json").read_text()), result)


def test_every_injected_defect_holds_its_draft(drafts: Drafts) -> None:
    held = {d.invoice_id: {f.category for f in d.findings} for d in drafts.result.held}
    assert set(held) == set(drafts.manifest["held"])
    for inv, category in drafts.manifest["held"].items():
        assert category in held[inv], (inv, category, held[inv])
    assert [f.subject.split("@")[0] for f in drafts.result.missing] == drafts.manifest["missing"]


def test_clean_drafts_pass(drafts: Drafts) -> None:
    ok = {d.invoice_id for d in drafts.result.drafts if d.verdict == "ok"}
    assert ok == set(drafts.manifest["clean"])
    assert len(ok) >= 30


def test_every_category_is_injected() -> None:
    assert set(DEFECTS) >= {"price_mismatch", "quantity_mismatch", "proration_error", "duplicate_discount",
                            "expired_discount_applied", "overlapping_subscriptions", "billed_after_cancellation",
                            "unbilled_usage", "overbilled_usage", "entitlement_exceeded_unbilled", "missing_invoice",
                            "tax_mismatch", "currency_mismatch"}


def test_held_drafts_carry_money_and_reasons(drafts: Drafts) -> None:
    for d in drafts.result.held:
        assert d.findings and all(f.explanation and f.explanation.endswith(".") for f in d.findings)
        assert d.money_at_risk == sum(f.amount_at_risk for f in d.findings)


def _rewrite(path: Path, name: str, keep: Any, change: dict[str, str] | None = None) -> None:
    f = path / "data" / "billing" / name
    with f.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    with f.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows([{**r, **(change or {})} for r in rows if keep(r)])


def test_cli_exit_codes(drafts: Drafts, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["validate", "-c", str(drafts.path / "validate.yaml")]) == 1
    assert "hold" in capsys.readouterr().out
    import shutil

    ws = tmp_path / "ws"
    shutil.copytree(drafts.path, ws)
    clean = set(drafts.manifest["clean"])
    contracts = {r for r in (i.replace("DRAFT-", "K-") for i in clean)}
    _rewrite(ws, "draft_invoices.csv", lambda r: r["invoice_id"] in clean)
    _rewrite(ws, "draft_invoice_lines.csv", lambda r: r["invoice_id"] in clean)
    _rewrite(ws, "contracts.csv", lambda r: r["contract_id"] in contracts)
    assert run_cli(["validate", "-c", str(ws / "validate.yaml")]) == 0
    _rewrite(ws, "draft_invoices.csv", lambda r: True, {"period_start": ""})
    assert run_cli(["validate", "-c", str(ws / "validate.yaml")]) == 2
    assert "data/billing/draft_invoices.csv:2: column 'period_start': draft invoice" in capsys.readouterr().err
    f = ws / "data" / "billing" / "usage_events.csv"
    rows = f.read_text(encoding="utf-8").splitlines()
    cells = rows[3].split(",")
    cells[4] = "-5"
    rows[3] = ",".join(cells)
    f.write_text("\n".join(rows) + "\n", encoding="utf-8")
    assert run_cli(["validate", "-c", str(ws / "validate.yaml")]) == 2
    assert ("data/billing/usage_events.csv:4: column 'quantity': usage_events.quantity -5 is negative"
            in capsys.readouterr().err)


BASE = {"customer_id": "C1", "quantity": 1, "currency": "USD", "interval": "month", "status": "active",
        "contract_id": "K1"}
CATALOG = BillingConfig.model_validate({"products": [
    {"sku": "BASIC", "currency": "USD", "model": "per_unit", "amount": "10"},
    {"sku": "PREMIUM", "currency": "USD", "model": "per_unit", "amount": "20"},
    {"sku": "API", "currency": "USD", "model": "graduated", "usage": True,
     "tiers": [{"up_to": 1000, "unit_amount": "0.01"}, {"unit_amount": "0.005", "flat_amount": "1"}]},
]})


def _lines(engine: Engine, subs: list[dict[str, Any]], events: list[dict[str, Any]], on: date,
           name: str) -> list[dict[str, Any]]:
    t = BillingTables(engine.from_arrow(f"s_{name}", canonical("subscriptions", subs)),
                      usage_events=engine.from_arrow(f"u_{name}", canonical("usage_events", events)))
    return expected_lines(engine, CATALOG, t, [on]).order_by(["sku", "kind"]).to_pyarrow().to_pylist()


def test_engine_stripe_upgrade_halfway(engine: Engine) -> None:
    subs = [dict(BASE, subscription_id="S1", sku="BASIC", unit_amount=1000, start_date=date(2026, 3, 1),
                 end_date=date(2026, 4, 16)),
            dict(BASE, subscription_id="S2", sku="PREMIUM", unit_amount=2000, start_date=date(2026, 4, 16),
                 billing_anchor=1)]
    got = [(r["sku"], r["kind"], r["period_start"], r["amount"]) for r in _lines(engine, subs, [], date(2026, 5, 1),
                                                                                 "upg")]
    assert got == [("BASIC", "credit", date(2026, 4, 16), -500), ("PREMIUM", "proration", date(2026, 4, 16), 1000),
                   ("PREMIUM", "recurring", date(2026, 5, 1), 2000)]


def test_engine_anchor_31_bills_on_the_last_day_of_short_months(engine: Engine) -> None:
    subs = [dict(BASE, subscription_id="S1", sku="BASIC", unit_amount=3100, start_date=date(2026, 1, 31))]
    rows = _lines(engine, subs, [], date(2026, 2, 28), "a31")
    assert [(r["kind"], r["period_start"], r["period_end"], r["amount"]) for r in rows] == [
        ("recurring", date(2026, 2, 28), date(2026, 3, 31), 3100)]
    assert "full cycle 2026-02-28 to 2026-03-31" in rows[0]["explanation"]


@settings(max_examples=3, deadline=None)
@given(qty=st.lists(st.integers(0, 400), min_size=1, max_size=12), seed=st.integers(0, 1000))
def test_usage_rating_ignores_event_order_and_replays(qty: list[int], seed: int, engine: Engine) -> None:
    subs = [dict(BASE, subscription_id="S3", sku="API", unit_amount=0, start_date=date(2026, 3, 1))]
    events = [{"event_id": f"e{i}", "customer_id": "C1", "subscription_id": "S3", "sku": "API", "quantity": q,
               "occurred_at": datetime(2026, 3, 1 + i, 6, tzinfo=UTC)} for i, q in enumerate(qty)]
    shuffled = events + [dict(e) for e in events[: seed % len(events) + 1]]
    random.Random(seed).shuffle(shuffled)
    a = _lines(engine, subs, events, date(2026, 4, 1), f"o{seed}a")
    b = _lines(engine, subs, shuffled, date(2026, 4, 1), f"o{seed}b")
    total = sum(qty)
    assert [r["amount"] for r in a] == [r["amount"] for r in b]
    expected = min(total, 1000) * 1 + (max(total - 1000, 0) * 0.5 + 100 if total > 1000 else 0)
    assert [r["amount"] for r in a] == ([round(expected + 1e-9)] if total else [])

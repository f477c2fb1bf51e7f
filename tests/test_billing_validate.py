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
import pyarrow.compute as pc
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


def test_run_stores_the_pre_invoice_findings(drafts: Drafts) -> None:
    """`tieout run` on the demo drafts: the pre_invoice check raises every injected defect as a stored
    finding (stable fingerprint, evidence back to the CSV rows) and nothing about a clean draft: the same
    findings, with the same severities, `tieout validate` holds the drafts with. billing_subscriptions
    runs too and leaves the drafts to pre_invoice: one defect, one finding."""
    from tieout.findings import fingerprint
    from tieout.pipeline import run
    from tieout.store import Store

    cfg = load_config(drafts.path / "validate.yaml")
    result = run(cfg, notify=False)
    assert sorted(result.checks_run) == ["billing_subscriptions", "pre_invoice"]
    assert {f.check for f in result.findings} == {"pre_invoice"}
    about: dict[str, set[str]] = {}
    for f in result.findings:
        cited = [e.key for e in f.evidence if e.table == "invoices"]
        about.setdefault(cited[0] if cited else f.subject.split("@")[0], set()).add(f.category)
        assert f.finding_id == fingerprint("pre_invoice", f.category, f.subject, f.currency)
    held = drafts.manifest["held"]
    for inv, category in held.items():
        assert category in about.get(inv, set()), (inv, category, about.get(inv))
    assert set(about) == set(held) | set(drafts.manifest["missing"])
    validated = {(f.category, f.subject) for d in drafts.result.drafts for f in d.findings}
    assert {(f.category, f.subject) for f in result.findings} == validated | {
        (f.category, f.subject) for f in drafts.result.missing}
    verdicts = {(f.category, f.subject): f.severity for d in drafts.result.drafts for f in d.findings}
    verdicts |= {(f.category, f.subject): f.severity for f in drafts.result.missing}
    assert {(f.category, f.subject): f.severity for f in result.findings} == verdicts
    guardrails = [f for f in result.findings if f.category in (
        "sku_not_in_catalog", "discount_not_approved", "contract_incomplete", "overlapping_subscriptions")]
    assert guardrails and all(f.amount_at_risk > 0 for f in guardrails)  # the draft's money on the contract row
    line = next(f for f in result.findings if f.subject == "DRAFT-0001/1")
    assert [(e.table, e.source_ref) for e in line.evidence if e.table != "subscriptions"] == [
        ("invoice_lines", "data/billing/draft_invoice_lines.csv:2"), ("invoices", "data/billing/draft_invoices.csv:2")]
    st = Store(cfg.store_url())
    try:
        stored = {r.finding_id for r in st.findings(check="pre_invoice")}
    finally:
        st.close()
    assert stored == {f.finding_id for f in result.findings}


def _flat(drafts_json: Path) -> list[dict[str, Any]]:
    """The demo's drafts.json as rows of the flat layout (one row per line, the invoice columns repeated)."""
    return [{**{k: v for k, v in inv.items() if k != "lines"}, **ln}
            for inv in json.loads(drafts_json.read_text(encoding="utf-8")) for ln in inv["lines"]]


def test_validate_reads_the_drafts_from_a_file(drafts: Drafts, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from openpyxl import Workbook

    from tieout.billing.draft_file import DRAFT_COLUMNS, read_drafts

    billing = drafts.path / "data" / "billing"
    from_json = read_drafts(billing / "drafts.json")
    rows = _flat(billing / "drafts.json")
    flat_csv = tmp_path / "drafts.csv"
    with flat_csv.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(list(rows[0]))
    for r in rows:
        ws.append([str(v) for v in r.values()])
    wb.save(tmp_path / "drafts.xlsx")
    with_lines = pa.array(sorted({r["invoice_id"] for r in rows}))
    for other in (flat_csv, tmp_path / "drafts.xlsx"):  # a flat file cannot hold a draft without lines
        got = read_drafts(other)
        for name in ("invoices", "invoice_lines"):
            want = from_json[name].filter(pc.is_in(from_json[name]["invoice_id"], with_lines))
            assert got[name].drop_columns(["source_ref"]).equals(want.drop_columns(["source_ref"])), (other, name)
    assert from_json["invoices"].num_rows == len(drafts.result.drafts)
    assert set(rows[0]) <= set(DRAFT_COLUMNS)
    # The file's drafts get the same verdicts as the configured sources' (exit 1: some are held).
    assert run_cli(["validate", "-c", str(drafts.path / "validate.yaml"), "--drafts",
                    str(billing / "drafts.json")]) == 1
    out = capsys.readouterr().out
    assert f"{len(drafts.result.drafts)} drafts, {len(drafts.result.held)} held," in out
    # A bad cell stops before any source is read: exit 2 naming the file, row and column.
    text = flat_csv.read_text(encoding="utf-8").splitlines()
    cells = next(csv.reader([text[2]]))
    cells[list(rows[0]).index("amount")] = "12.5O"
    text[2] = ",".join(cells)
    flat_csv.write_text("\n".join(text) + "\n", encoding="utf-8")
    assert run_cli(["validate", "-c", str(drafts.path / "validate.yaml"), "--drafts", str(flat_csv)]) == 2
    assert f"{flat_csv}:3: column 'amount': '12.5O' is not a number" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"invoice_id": "D1", "customer_id": "C1", "subscription_id": "K1",
                                "invoice_date": "2026-10-01", "currency": "USD",
                                "lines": [{"sku": "PRO", "quantity": 1, "amount": "1.00", "period_start": "2026-10-01"},
                                          {"sku": "PRO", "quantity": "two", "amount": "1.00",
                                           "period_start": "2026-10-01"}]}]), encoding="utf-8")
    assert run_cli(["validate", "-c", str(drafts.path / "validate.yaml"), "--drafts", str(bad)]) == 2
    assert f"{bad}[0].lines[1]: column 'quantity': 'two' is not a whole number" in capsys.readouterr().err


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


def _lines(engine: Engine, subs: list[dict[str, Any]], events: list[dict[str, Any]], on: date | list[date],
           name: str, cfg: BillingConfig = CATALOG) -> list[dict[str, Any]]:
    t = BillingTables(engine.from_arrow(f"s_{name}", canonical("subscriptions", subs)),
                      usage_events=engine.from_arrow(f"u_{name}", canonical("usage_events", events)))
    lines = expected_lines(engine, cfg, t, on if isinstance(on, list) else [on])
    return lines.order_by(["contract_id", "bill_date", "sku", "kind"]).to_pyarrow().to_pylist()


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


def test_engine_pause_bills_only_the_active_days(engine: Engine) -> None:
    """A pause is a segment with status `paused` between two active ones. K1 (30.00 a month) pauses
    from April 11 to April 21: its May 1 invoice credits the 20 unused days after the pause (-30.00 ×
    20/30 = -20.00) and charges the 10 days after the resume (+30.00 × 10/30 = +10.00), separate lines:
    April costs 30 - 20 + 10 = 20.00, its 20 active days. K2 (60.00) pauses from April 16 to June 11:
    May 1 credits 15/30 (-30.00), June bills nothing, July 1 charges June 11 - July 1 (20/30: +40.00)."""
    k1 = dict(BASE, sku="BASIC", unit_amount=3000, billing_anchor=1)
    k2 = dict(BASE, sku="BASIC", unit_amount=6000, billing_anchor=1, contract_id="K2", customer_id="C2")
    subs = [dict(k1, subscription_id="S1", start_date=date(2026, 3, 1), end_date=date(2026, 4, 11)),
            dict(k1, subscription_id="S1P", start_date=date(2026, 4, 11), end_date=date(2026, 4, 21), status="paused"),
            dict(k1, subscription_id="S1R", start_date=date(2026, 4, 21)),
            dict(k2, subscription_id="S2", start_date=date(2026, 3, 1), end_date=date(2026, 4, 16)),
            dict(k2, subscription_id="S2P", start_date=date(2026, 4, 16), end_date=date(2026, 6, 11), status="paused"),
            dict(k2, subscription_id="S2R", start_date=date(2026, 6, 11))]
    rows = _lines(engine, subs, [], [date(2026, 5, 1), date(2026, 6, 1), date(2026, 7, 1)], "pause")
    got = [(r["contract_id"], r["bill_date"].isoformat(), r["kind"], r["period_start"].isoformat(),
            r["period_end"].isoformat(), r["amount"]) for r in rows]
    assert sorted(got) == sorted([
        ("K1", "2026-05-01", "credit", "2026-04-11", "2026-05-01", -2000),
        ("K1", "2026-05-01", "proration", "2026-04-21", "2026-05-01", 1000),
        ("K1", "2026-05-01", "recurring", "2026-05-01", "2026-06-01", 3000),
        ("K1", "2026-06-01", "recurring", "2026-06-01", "2026-07-01", 3000),
        ("K1", "2026-07-01", "recurring", "2026-07-01", "2026-08-01", 3000),
        ("K2", "2026-05-01", "credit", "2026-04-16", "2026-05-01", -3000),
        ("K2", "2026-07-01", "proration", "2026-06-11", "2026-07-01", 4000),
        ("K2", "2026-07-01", "recurring", "2026-07-01", "2026-08-01", 6000),
    ])
    april = 3000 + sum(a for k, bill, _kind, start, _e, a in got if k == "K1" and start.startswith("2026-04"))
    assert april == 3000 * 20 // 30


def test_engine_prorates_by_second_from_change_timestamps(engine: Engine) -> None:
    """`proration: second`. K3 changes on a date (Stripe's halfway upgrade): the same -5.00 / +10.00 as by
    day. K4 upgrades from 10.00 to 20.00 on April 10 at 12:00 UTC: 20.5 of April's 30 days remain
    (1,771,200 of 2,592,000 seconds): credit -10.00 × 0.68333… = -6.83, charge 20.00 × 0.68333… = +13.67
    (by day, counting April 10 whole, it would be -7.00 and +14.00)."""
    cfg = CATALOG.model_copy(update={"proration": "second"})
    noon = datetime(2026, 4, 10, 12, tzinfo=UTC)
    subs = [dict(BASE, subscription_id="S3", contract_id="K3", sku="BASIC", unit_amount=1000,
                 start_date=date(2026, 3, 1), end_date=date(2026, 4, 16)),
            dict(BASE, subscription_id="S3U", contract_id="K3", sku="PREMIUM", unit_amount=2000,
                 start_date=date(2026, 4, 16), billing_anchor=1),
            dict(BASE, subscription_id="S4", contract_id="K4", sku="BASIC", unit_amount=1000,
                 start_date=date(2026, 3, 1), end_date=date(2026, 4, 10), end_at=noon),
            dict(BASE, subscription_id="S4U", contract_id="K4", sku="PREMIUM", unit_amount=2000,
                 start_date=date(2026, 4, 10), start_at=noon, billing_anchor=1)]
    rows = _lines(engine, subs, [], date(2026, 5, 1), "bysec", cfg)
    got = [(r["contract_id"], r["sku"], r["kind"], r["amount"]) for r in rows]
    assert got == [("K3", "BASIC", "credit", -500), ("K3", "PREMIUM", "proration", 1000),
                   ("K3", "PREMIUM", "recurring", 2000), ("K4", "BASIC", "credit", -683),
                   ("K4", "PREMIUM", "proration", 1367), ("K4", "PREMIUM", "recurring", 2000)]
    assert "1771200/2592000 seconds" in rows[4]["explanation"]
    assert "1296000/2592000 seconds" in rows[1]["explanation"]


def test_billing_doc_lists_the_drafts_file_columns() -> None:
    from tieout.billing.draft_file import draft_columns_markdown

    doc = (Path(__file__).parent.parent / "docs" / "billing.md").read_text(encoding="utf-8")
    start = "<!-- generated: tieout.billing.draft_file.DRAFT_COLUMNS -->\n"
    generated = doc[doc.index(start) + len(start):doc.index("<!-- end generated -->", doc.index(start))]
    assert generated == draft_columns_markdown() + "\n", "docs/billing.md is stale: regenerate the drafts columns"

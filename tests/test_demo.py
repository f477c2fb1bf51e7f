"""End to end on generated workspaces: every injected defect is found, and nothing else."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tieout.categories import CATEGORIES
from tieout.checks import CHECKS
from tieout.config import load_config
from tieout.pipeline import run
from tieout.store import Store

from .conftest import DemoRun


def _found(demo: DemoRun) -> set[tuple[str, str, str]]:
    return {(f.check, f.category, f.subject) for f in demo.result.findings}


@pytest.mark.parametrize("fixture", ["demo_run", "demo_run_other_seed"])
def test_every_injected_defect_is_found_and_nothing_else(fixture: str, request: pytest.FixtureRequest) -> None:
    demo: DemoRun = request.getfixturevalue(fixture)
    found = _found(demo)
    assert sorted(demo.expected - found) == [], "injected defects not found"
    assert sorted(found - demo.expected) == [], "findings on the clean part (false positives)"


def test_demo_injects_every_category_the_checks_raise(demo_run: DemoRun) -> None:
    injected = {c for _, c, _ in demo_run.expected}
    # pre-invoice categories are injected in the demo's draft invoices (validate.yaml, tested in test_billing_validate)
    drafts = json.loads((demo_run.path / "validate_manifest.json").read_text(encoding="utf-8"))
    injected |= set(drafts["held"].values()) | ({"missing_invoice"} if drafts["missing"] else set())
    raised = {category for check in CHECKS.values() for category in check.categories}
    assert raised <= set(CATEGORIES)
    assert raised - injected == set()


def test_demo_is_full_of_lookalikes(demo_run: DemoRun) -> None:
    kinds = demo_run.manifest_json["lookalikes"]
    assert len(kinds) >= 12
    assert all(n > 0 for n in kinds.values())
    assert sum(kinds.values()) > 10 * len(demo_run.expected)


def test_every_row_is_accounted_for(demo_run: DemoRun) -> None:
    for c in demo_run.result.counts:
        assert c.read == c.accepted + c.quarantined, c
    assert sum(c.read for c in demo_run.result.counts) == sum(demo_run.manifest.rows.values())


def test_findings_carry_evidence_explanation_and_money(demo_run: DemoRun) -> None:
    for f in demo_run.result.findings:
        assert f.amount_at_risk > 0, f
        assert f.explanation and "{" not in f.explanation, f.explanation
        assert f.evidence or f.category == "fee_not_booked", f
        for e in f.evidence:
            assert e.source_ref and ":" in e.source_ref, (f.finding_id, e)
            assert e.record, (f.finding_id, e)
        assert f.severity in ("low", "medium", "high")
        assert f.finding_id.startswith("F") and len(f.finding_id) == 16


def test_findings_are_ordered_by_money_at_risk(demo_run: DemoRun) -> None:
    amounts = [f.amount_at_risk for f in demo_run.result.findings]
    assert amounts == sorted(amounts, reverse=True)


def test_metrics_per_period_and_currency(demo_run: DemoRun) -> None:
    by = {(m.period, m.currency, m.name): m for m in demo_run.result.metrics}
    for period in ("2026-07", "2026-08", "2026-09"):
        assert int(by[(period, "USD", "invoiced")].value) > 0
        assert 0 <= float(by[(period, "USD", "reconciliation_coverage")].value) <= 100
    assert float(by[("2026-08", "USD", "reconciliation_coverage")].value) < 100  # an unmatched charge in August
    assert int(by[("2026-08", "USD", "unmatched_gateway_payments")].value) >= 1


def test_second_run_on_same_data_is_idempotent(demo_run: DemoRun) -> None:
    first = {f.finding_id for f in demo_run.result.findings}
    again = run(load_config(demo_run.path / "tieout.yaml"))
    assert {f.finding_id for f in again.findings} == first
    assert again.lifecycle["new"] == 0
    assert again.lifecycle["seen_again"] == len(first)


def test_fixed_defect_is_closed_as_no_longer_present(tmp_path: Path, demo_run_other_seed: DemoRun) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(demo_run_other_seed.path, ws)
    (ws / "tieout.db").unlink()
    cfg = load_config(ws / "tieout.yaml")
    first = run(cfg)
    target = next(f for f in first.findings if f.category == "manual_journal_unmatched")
    gl = ws / "data" / "quickbooks_gl.csv"
    text = gl.read_text(encoding="utf-8-sig")
    gl.write_text(text.replace("Adjustment per CFO", "Adjustment per CFO INV-000001"), encoding="utf-8-sig")
    second = run(cfg)
    assert target.finding_id not in {f.finding_id for f in second.findings}
    assert second.lifecycle["no_longer_present"] == 1
    store = Store(cfg.store_url())
    try:
        assert store.finding(target.finding_id).status == "closed"
        assert [e.to_status for e in store.events(target.finding_id)] == ["open", "closed"]
    finally:
        store.close()


def test_bad_rows_are_quarantined_not_lost(tmp_path: Path, demo_run_other_seed: DemoRun) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(demo_run_other_seed.path, ws)
    (ws / "tieout.db").unlink()
    payments = ws / "data" / "payments.csv"
    lines = payments.read_text().splitlines()
    header = lines[0].split(",")
    bad = lines[5].split(",")
    bad[header.index("amount")] = "12.5O"
    lines[5] = ",".join(bad)
    lines.append(lines[7])  # an exact duplicate row
    payments.write_text("\n".join(lines) + "\n")
    result = run(load_config(ws / "tieout.yaml"))
    q = [r for r in result.quarantined if r["file"] == "data/payments.csv"]
    assert {(r["line"], r["column_name"]) for r in q} == {(6, "amount"), (len(lines), "(row)")}
    assert "'12.5O' is not a number" in next(r["reason"] for r in q if r["line"] == 6)
    counts = next(c for c in result.counts if c.file == "data/payments.csv")
    assert (counts.read, counts.quarantined) == (len(lines) - 1, 2)
    assert counts.accepted == counts.read - 2


def test_manifest_file_matches_generator(demo_run: DemoRun) -> None:
    data = json.loads((demo_run.path / "manifest.json").read_text())
    assert sorted(tuple(x) for x in data["expected"]) == sorted(demo_run.manifest.expected)


@pytest.mark.parametrize(("customers", "seed"), [(6, 10)])
def test_tiny_books_generate_and_find_exactly_what_they_inject(tmp_path_factory: pytest.TempPathFactory,
                                                               customers: int, seed: int) -> None:
    """A handful of customers still makes a workspace (some defects need more books than that and are
    not injected); whatever is injected is found, and nothing else."""
    from .conftest import _demo

    demo = _demo(tmp_path_factory, customers=customers, seed=seed)
    found = _found(demo)
    assert (sorted(demo.expected - found), sorted(found - demo.expected)) == ([], [])

"""Custom rules end to end through the CLI on a generated demo workspace: a SQL rule and a Python
rule are added, their test cases pass, wrong rules are reported with file and line while the other
checks still run, and shadow mode shows the right diff and stores nothing. Expected findings are
computed here, in Python, from the canonical tables (not by the rules under test)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tieout.checks import CheckParams
from tieout.config import load_config
from tieout.demo import generate_workspace
from tieout.engines import create_engine
from tieout.pipeline import ingest
from tieout.rules import load_rules
from tieout.store import Store

from .test_cli import _plain_wide_console, cli  # noqa: F401  (the autouse fixture applies here too)
from .test_rules import _forget_rule_modules  # noqa: F401  (autouse: rule modules leave the registry as it was)

SQL_RULE = """\
name: discount_over_limit
description: Invoice discounts above {pct}% of the subtotal need approval; the excess is at risk.
category: underbilled
severity: medium
explanation: "Invoice {{subject}} grants a discount of {{actual}}; {pct}% of its subtotal is {{expected}}."
sql: |
  SELECT invoice_id AS subject,
         customer_id,
         currency,
         discount - subtotal * {pct} // 100 AS amount_at_risk,
         subtotal * {pct} // 100 AS expected,
         discount AS actual,
         'invoices:' || invoice_id AS evidence,
         strftime(issued_at, '%Y-%m') AS period
  FROM invoices
  WHERE status <> 'void' AND discount * 100 > subtotal * {pct}
"""

SQL_CASES = """\
cases:
  - name: a 25% discount is raised with the excess over 10% at risk
    tables:
      invoices:
        - {invoice_id: I1, customer_id: C1, status: open, currency: USD, subtotal: 10000, discount: 2500,
           total: 7500, issued_at: "2026-03-01T00:00:00Z"}
    expect:
      - {subject: I1, amount_at_risk: 1500, expected: "1000", actual: "2500", period: 2026-03}
  - name: exactly 10%, and a void invoice, raise nothing
    tables:
      invoices:
        - {invoice_id: I2, customer_id: C2, status: paid, currency: USD, subtotal: 10000, discount: 1000, total: 9000}
        - {invoice_id: I3, customer_id: C3, status: void, currency: USD, subtotal: 10000, discount: 5000, total: 5000}
    expect: []
"""

PY_RULE = '''\
"""A Python rule for the e2e test: an invoice's total is subtotal - discount + tax."""

import ibis
from pydantic import Field

from tieout.checks import CheckContext, CheckParams, findings_table, month_of, ref, register_check


class InvoiceArithmeticParams(CheckParams):
    tolerance: int = Field(0, ge=0, description="Allowed difference, minor units.")


@register_check(
    "invoice_arithmetic",
    params=InvoiceArithmeticParams,
    categories=("overbilled", "underbilled"),
    tables=("invoices",),
    explanations={"overbilled": "Invoice {subject} totals {actual}; its parts add up to {expected}.",
                  "underbilled": "Invoice {subject} totals {actual}; its parts add up to {expected}."},
)
def invoice_arithmetic(ctx: CheckContext, p: InvoiceArithmeticParams):
    """Invoice total equals subtotal - discount + tax."""
    inv = ctx.table("invoices")
    inv = inv.mutate(parts=inv.subtotal.fill_null(0) - inv.discount.fill_null(0) + inv.tax.fill_null(0))
    bad = inv.filter((inv.total - inv.parts).abs() > p.tolerance)
    return findings_table(
        bad, category=ibis.ifelse(bad.total > bad.parts, "overbilled", "underbilled"), subject=bad.invoice_id,
        customer_id=bad.customer_id, currency=bad.currency, amount_at_risk=bad.total - bad.parts,
        expected=bad.parts.cast("string"), actual=bad.total.cast("string"), value_kind="money",
        period=month_of(bad.issued_at), evidence=ref("invoices", bad.invoice_id))
'''

PY_CASES = """\
cases:
  - name: a total 1.00 above its parts is overbilled, one below underbilled
    tables:
      invoices:
        - {invoice_id: I1, customer_id: C1, status: open, currency: USD, subtotal: 10000, discount: 0, tax: 0,
           total: 10100}
        - {invoice_id: I2, customer_id: C2, status: open, currency: USD, subtotal: 10000, discount: 1000, tax: 500,
           total: 9400}
    expect:
      - {category: overbilled, subject: I1, amount_at_risk: 100, expected: "10000", actual: "10100"}
      - {category: underbilled, subject: I2, amount_at_risk: 100, expected: "9500", actual: "9400"}
  - name: totals that add up raise nothing
    tables:
      invoices:
        - {invoice_id: I3, customer_id: C3, status: paid, currency: USD, subtotal: 10000, discount: 1000, tax: 500,
           total: 9500}
    expect: []
"""

BAD_SQL_RULE = """\
name: bad_column
description: Reads a column that does not exist.
category: underbilled
sql: |
  SELECT invoice_id AS subject, customer_id, currency,
         discount_amount AS amount_at_risk,
         NULL AS expected, NULL AS actual, '' AS evidence
  FROM invoices
"""

EXPLODING_RULE = '''\
from tieout.checks import CheckContext, CheckParams, register_check


@register_check("exploding", params=CheckParams, categories=("overbilled",), tables=("invoices",),
                explanations={"overbilled": "{subject}"})
def exploding(ctx: CheckContext, p: CheckParams):
    """Raises while building its query."""
    rate = 0
    return ctx.table("invoices").total / rate if rate else 1 / rate
'''


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rules-demo")
    generate_workspace(path, customers=150, seed=11)
    # One invoice whose total is 1.00 more than its parts, for the Python rule to find.
    inv = path / "data" / "invoices.csv"
    with inv.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    header = rows[0]
    total = header.index("Invoice.Amount")
    rows[5][total] = f"{float(rows[5][total]) + 1:.2f}"
    with inv.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return path


def _copy(workspace: Path, tmp_path: Path, rules: list[str], checks: str = "") -> Path:
    ws = tmp_path / "ws"
    shutil.copytree(workspace, ws, ignore=shutil.ignore_patterns("tieout.db"))
    (ws / "rules").mkdir(exist_ok=True)
    text = (ws / "tieout.yaml").read_text(encoding="utf-8")
    section = "\nrules:\n" + "".join(f"  - {r}\n" for r in rules) if rules else ""
    text = text.replace("\nchecks:\n", section + "\nchecks:\n" + checks)
    (ws / "tieout.yaml").write_text(text, encoding="utf-8")
    return ws


@pytest.fixture(scope="module")
def invoices(workspace: Path) -> list[dict[str, Any]]:
    """The workspace's canonical invoices, read once (the copies the tests run on hold the same data)."""
    engine = create_engine("duckdb")
    try:
        tables, *_ = ingest(load_config(workspace / "tieout.yaml"), engine, lambda _m: None)
        rows: list[dict[str, Any]] = tables["invoices"].to_pyarrow().to_pylist()
        return rows
    finally:
        engine.close()


def _over_limit(invoices: list[dict[str, Any]], pct: int) -> dict[str, int]:
    """invoice -> money at risk of discount_over_limit at `pct`, computed here in Python."""
    out = {}
    for r in invoices:
        sub, disc = r["subtotal"] or 0, r["discount"] or 0
        if r["status"] != "void" and disc * 100 > sub * pct:
            out[r["invoice_id"]] = disc - sub * pct // 100
    return out


def _write_rules(ws: Path, pct: int = 10, extra: str = "") -> None:
    (ws / "rules" / "discount_over_limit.yaml").write_text(SQL_RULE.format(pct=pct) + extra, encoding="utf-8")
    (ws / "rules" / "discount_over_limit.cases.yaml").write_text(SQL_CASES, encoding="utf-8")
    (ws / "rules" / "invoice_arithmetic.py").write_text(PY_RULE, encoding="utf-8")
    (ws / "rules" / "invoice_arithmetic.cases.yaml").write_text(PY_CASES, encoding="utf-8")


def _open(ws: Path, check: str) -> dict[str, int]:
    store = Store(load_config(ws / "tieout.yaml").store_url())
    try:
        return {f.subject: f.amount_at_risk for f in store.findings(check=check, status=["open"])}
    finally:
        store.close()


def test_sql_and_python_rules_run_beside_the_built_in_checks(workspace: Path, invoices: list[dict[str, Any]],
                                                            tmp_path: Path) -> None:
    ws = _copy(workspace, tmp_path, ["sql: rules/*.yaml", "python: rules/invoice_arithmetic.py"],
               "  invoice_arithmetic:\n    tolerance: 0\n")
    _write_rules(ws)
    expected = _over_limit(invoices, 10)
    assert 3 <= len(expected) < len(invoices)  # the demo books have discounts on both sides of the limit

    r = cli("run", "-c", ws / "tieout.yaml", "--fail-on", "never")
    assert r.code == 0, r.out + r.err
    assert "rule(s) failed" not in r.out
    assert _open(ws, "discount_over_limit") == expected
    broken = {i["invoice_id"]: i["total"] - ((i["subtotal"] or 0) - (i["discount"] or 0) + (i["tax"] or 0))
              for i in invoices}
    assert _open(ws, "invoice_arithmetic") == {k: abs(v) for k, v in broken.items() if v}
    assert len(_open(ws, "invoice_arithmetic")) == 1
    assert _open(ws, "gateway_billing")  # the built-in checks ran too

    store = Store(load_config(ws / "tieout.yaml").store_url())
    try:
        last = store.last_run()
        assert last is not None
        audit = {i["rule"]: i for i in json.loads(last.inputs) if "rule" in i}
    finally:
        store.close()
    assert audit["discount_over_limit"]["kind"] == "sql" and len(audit["discount_over_limit"]["version"]) == 12
    assert audit["invoice_arithmetic"]["kind"] == "python" and audit["gateway_billing"]["kind"] == "builtin"
    finding = next(iter(store_rows(ws, "discount_over_limit")))
    assert finding.severity == "medium" and "10% of its subtotal is" in finding.explanation

    listed = cli("rules", "list", "-c", ws / "tieout.yaml")
    assert listed.code == 0
    for name in ("discount_over_limit", "invoice_arithmetic", "gateway_billing", "gl_cash"):
        assert name in listed.out
    shown = cli("rules", "show", "discount_over_limit", "-c", ws / "tieout.yaml")
    assert shown.code == 0 and "discount * 100 > subtotal * 10" in shown.out and "underbilled" in shown.out
    shown = cli("rules", "show", "invoice_arithmetic", "-c", ws / "tieout.yaml")
    assert shown.code == 0 and "tolerance" in shown.out and "Allowed difference" in shown.out

    for name in ("discount_over_limit", "invoice_arithmetic"):
        tested = cli("rules", "test", name, "-c", ws / "tieout.yaml")
        assert tested.code == 0, tested.out
        assert tested.out.count(f"PASS {name}") == 2 and "2 passed, 0 failed" in tested.out


def store_rows(ws: Path, check: str) -> list[Any]:
    store = Store(load_config(ws / "tieout.yaml").store_url())
    try:
        return store.findings(check=check, status=["open"])
    finally:
        store.close()


def test_a_failing_case_shows_a_diff_and_exits_1(workspace: Path, tmp_path: Path) -> None:
    ws = _copy(workspace, tmp_path, ["sql: rules/discount_over_limit.yaml"])
    _write_rules(ws)
    wrong = SQL_CASES.replace("amount_at_risk: 1500", "amount_at_risk: 1400").replace("expect: []", (
        "expect:\n      - {subject: I9}"))
    (ws / "rules" / "discount_over_limit.cases.yaml").write_text(wrong, encoding="utf-8")
    r = cli("rules", "test", "discount_over_limit", "-c", ws / "tieout.yaml")
    assert r.code == 1
    snapshot = Path(__file__).parent / "snapshots" / "rules_test_failing_case.txt"
    assert r.out == snapshot.read_text(encoding="utf-8")  # only the rule asked for, each case, its diff


def test_wrong_rules_are_reported_with_file_and_line_and_the_rest_still_runs(workspace: Path, tmp_path: Path) -> None:
    ws = _copy(workspace, tmp_path, ["sql: rules/*.yaml", "python: rules/exploding.py"])
    _write_rules(ws)
    (ws / "rules" / "bad_column.yaml").write_text(BAD_SQL_RULE, encoding="utf-8")
    (ws / "rules" / "exploding.py").write_text(EXPLODING_RULE, encoding="utf-8")
    r = cli("run", "-c", ws / "tieout.yaml", "--fail-on", "never")
    assert r.code == 2, r.out + r.err
    flat = " ".join(r.out.split())
    assert "rules/bad_column.yaml:6: rule 'bad_column': unknown column 'discount_amount'" in flat
    assert f"{ws / 'rules' / 'exploding.py'}:9: rule 'exploding': raised ZeroDivisionError: division by zero" in flat
    assert "2 rule(s) failed: exit 2" in flat
    assert _open(ws, "discount_over_limit") and _open(ws, "gateway_billing")  # everything else ran and was stored

    tested = cli("rules", "test", "bad_column", "-c", ws / "tieout.yaml")
    assert tested.code == 1
    assert "FAIL rules/bad_column.yaml:6" in " ".join(tested.out.split())


def test_shadow_mode_shows_new_gone_and_changed_and_stores_nothing(workspace: Path, invoices: list[dict[str, Any]],
                                                                   tmp_path: Path) -> None:
    ws = _copy(workspace, tmp_path, ["sql: rules/discount_over_limit.yaml"])
    _write_rules(ws, pct=10)
    assert cli("run", "-c", ws / "tieout.yaml", "--fail-on", "never").code == 0
    active = _open(ws, "discount_over_limit")
    assert active == _over_limit(invoices, 10)
    stricter = _over_limit(invoices, 15)
    gone = set(active) - set(stricter)
    changed = {k for k in stricter if stricter[k] != active[k]}
    assert gone and changed and not set(stricter) - set(active)

    _write_rules(ws, pct=15)  # the edited rule, tried in shadow before promoting it
    r = cli("run", "-c", ws / "tieout.yaml", "--fail-on", "never", "--shadow", "discount_over_limit")
    assert r.code == 0, r.out + r.err
    flat = " ".join(r.out.split())
    assert ("shadow discount_over_limit (version " in flat and f"0 new, {len(gone)} gone, {len(changed)} changed, "
            f"{len(stricter) - len(changed)} unchanged" in flat), flat
    money_gone = sum(active[k] for k in gone)
    assert f"USD {money_gone / 100:,.2f}" in flat or "EUR" in flat
    for k in gone:
        assert k in flat
    # Nothing stored: the active version's findings are exactly as before, none closed, none added.
    assert _open(ws, "discount_over_limit") == active
    store = Store(load_config(ws / "tieout.yaml").store_url())
    try:
        last = store.last_run()
        assert last is not None
        counts = json.loads(last.counts)
        versions = {i["rule"]: i for i in json.loads(last.inputs) if "rule" in i}
    finally:
        store.close()
    assert counts["shadow_gone"] == len(gone) and counts["shadow_new"] == 0
    assert versions["discount_over_limit"]["mode"] == "shadow"


    # `mode: shadow` in the rule file, or in the config, puts the rule in shadow without the option.
    _write_rules(ws, pct=15, extra="mode: shadow\n")
    cfg = load_config(ws / "tieout.yaml")
    rules = load_rules(cfg)
    assert rules.mode(cfg, "discount_over_limit", CheckParams()) == "shadow"
    assert rules.audit(cfg)[-1] == {"rule": "discount_over_limit", "kind": "sql", "mode": "shadow",
                                    "version": rules.checks["discount_over_limit"].version,
                                    "file": str(ws / "rules" / "discount_over_limit.yaml")}
    assert rules.mode(cfg, "gl_cash", CheckParams(), shadow=["gl_cash"]) == "shadow"


def test_shadow_of_an_unknown_rule_is_a_usage_error(workspace: Path, tmp_path: Path) -> None:
    ws = _copy(workspace, tmp_path, [])
    r = cli("run", "-c", ws / "tieout.yaml", "--shadow", "no_such_rule")
    assert r.code == 2 and "--shadow no_such_rule: unknown rule" in r.err


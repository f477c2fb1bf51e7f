"""Rules without a whole run: SQL rule validation (file and line of each error), Python rule shape
errors, per-currency and per-segment parameter overrides, rule case files, the shadow diff, and
plugins found through the `tieout.checks` entry point group."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from tieout.checks import CHECKS, CheckContext, CheckParams, findings_table, register_check
from tieout.checks.registry import check_variants
from tieout.config import parse_config
from tieout.engines import create_engine
from tieout.engines.base import Engine
from tieout.errors import ConfigError
from tieout.rules import RuleError, RuleFailure, diff_shadow, evaluate, load_cases, load_rules, run_case
from tieout.rules.cases import CaseFileError, _arrow
from tieout.rules.sql import load_sql_rule

HEAD = "name: r\ndescription: d\ncategory: underbilled\nsql: |\n"
GOOD_SELECT = ("  SELECT invoice_id AS subject, customer_id, currency, total AS amount_at_risk,\n"
               "         NULL AS expected, NULL AS actual, 'invoices:' || invoice_id AS evidence\n")


@pytest.fixture(autouse=True)
def _forget_rule_modules() -> Iterator[None]:
    before = set(CHECKS)
    yield
    for name in set(CHECKS) - before:
        del CHECKS[name]


def _sql_rule(tmp_path: Path, text: str) -> Any:
    path = tmp_path / "r.yaml"
    path.write_text(text, encoding="utf-8")
    return load_sql_rule(path, "rules/r.yaml")


@pytest.mark.parametrize(("text", "line", "message"), [
    (HEAD + "  SELECT invoice_id AS subject,\n  FROM invoices WHERE (\n", 6, "SQL syntax error"),
    (HEAD + GOOD_SELECT + "  FROM invoice\n", 7,
     "unknown table 'invoice' (canonical tables: crm_accounts, crm_products, customers, "),
    (HEAD + GOOD_SELECT + "  FROM invoices JOIN payments p ON p.nope = invoices.invoice_id\n", 7,
     "unknown column 'nope' (columns of each table: docs/rules.md)"),
    (HEAD + "  SELECT invoice_id AS subject, customer_id, currency, total AS amount_at_risk\n  FROM invoices\n", 4,
     "the SELECT must return subject, customer_id, currency, amount_at_risk, expected, actual, evidence; "
     "missing: expected, actual, evidence"),
    (HEAD + "  DELETE FROM invoices\n", 5, "only a SELECT is allowed, found DELETE"),
    (HEAD + GOOD_SELECT + "  FROM invoices;\n  SELECT 1\n", 4, "expected exactly one SELECT statement, found 2"),
    (HEAD + GOOD_SELECT.replace("total AS", "total * 1.1 AS") + "  FROM invoices\n", 5,
     "amount_at_risk must be integer minor units, not DOUBLE"),
    (HEAD + GOOD_SELECT + "  FROM read_csv('/etc/passwd')\n", 7, "only canonical tables may be read"),
    (HEAD + GOOD_SELECT.replace("NULL AS expected", "NULL AS expected, 1 AS extra") + "  FROM invoices\n", 6,
     "unexpected output column(s) extra"),
    (HEAD.replace("underbilled", "underbiled") + GOOD_SELECT + "  FROM invoices\n", 3,
     "category: unknown category 'underbiled'"),
    (HEAD.replace("description: d", "descripton: d") + GOOD_SELECT + "  FROM invoices\n", 2,
     "descripton: unknown key"),
    ("name: r\ndescription: d\ncategory: underbilled\nexplanation: 'Invoice {invoice}'\nsql: |\n" + GOOD_SELECT
     + "  FROM invoices\n", 4, "explanation: unknown placeholder {invoice}"),
])
def test_a_bad_sql_rule_names_the_rule_file_and_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    failure = _sql_rule(tmp_path, text)
    assert isinstance(failure, RuleFailure), failure
    assert str(failure).startswith(f"rules/r.yaml:{line}: rule 'r': "), str(failure)
    assert message in failure.message


def test_a_good_sql_rule_declares_its_tables_category_and_version(tmp_path: Path) -> None:
    check = _sql_rule(tmp_path, HEAD + GOOD_SELECT + "  FROM invoices i JOIN customers c USING (customer_id)\n")
    assert not isinstance(check, RuleFailure), str(check)
    assert check.kind == "sql" and check.categories == ("underbilled",)
    assert check.tables == ("invoices", "customers") and len(check.version) == 12
    again = _sql_rule(tmp_path, HEAD + GOOD_SELECT + "  FROM invoices i JOIN customers c USING (customer_id)\n")
    changed = _sql_rule(tmp_path, HEAD + GOOD_SELECT + "  FROM invoices\n")
    assert again.version == check.version != changed.version


def _ctx(engine: Engine, tables: dict[str, list[dict[str, Any]]], as_of: date = date(2026, 3, 31)) -> CheckContext:
    from tieout.model import TABLES
    from tieout.rules.cases import _value

    typed = {}
    for name, rows in tables.items():
        cols = TABLES[name].columns
        typed[name] = engine.from_arrow(name, _arrow(name, [
            {**{c.name: _value(c.kind, r.get(c.name), "test", c.name) for c in cols}, "source": "t",
             "source_ref": "t:1"} for r in rows]))
    return CheckContext(engine, typed, as_of, "USD")


def test_python_rule_shape_errors_name_the_rule_file_and_line(engine: Engine) -> None:
    @register_check("not_a_table", params=CheckParams, categories=("overbilled",), tables=("invoices",),
                    explanations={"overbilled": "{subject}"})
    def not_a_table(ctx: CheckContext, p: CheckParams) -> Any:
        """Returns rows instead of a table."""
        return [{"subject": "x"}]

    @register_check("few_columns", params=CheckParams, categories=("overbilled",), tables=("invoices",),
                    explanations={"overbilled": "{subject}"})
    def few_columns(ctx: CheckContext, p: CheckParams) -> Any:
        """Returns a table without the finding columns."""
        return ctx.table("invoices").select("invoice_id")

    @register_check("undeclared", params=CheckParams, categories=("overbilled",), tables=("invoices",),
                    explanations={"overbilled": "{subject}"})
    def undeclared(ctx: CheckContext, p: CheckParams) -> Any:
        """Raises a category it does not declare."""
        t = ctx.table("invoices")
        return findings_table(t, category="underbilled", subject=t.invoice_id, customer_id=t.customer_id,
                              currency=t.currency, amount_at_risk=t.total, expected=None, actual=None,
                              value_kind="money", period=t.currency, evidence=t.invoice_id)

    ctx = _ctx(engine, {"invoices": [{"invoice_id": "I1", "customer_id": "C1", "status": "open", "currency": "USD",
                                      "total": 100}]})
    here = Path(__file__).resolve()
    for name, message in (("not_a_table", "returned list, not an Ibis table"),
                          ("few_columns", "returned a table without the finding column(s) category, subject"),
                          ("undeclared", "raised category 'underbilled', which it does not declare")):
        check = CHECKS[name]
        assert check.kind == "python"
        with pytest.raises(RuleError) as err:
            evaluate(check, ctx, [(None, CheckParams())])
        assert str(err.value).startswith(f"{here}:{check.line}: rule '{name}': {message}"), str(err.value)


def test_registering_a_name_twice_from_another_file_is_refused() -> None:
    with pytest.raises(ValueError, match="check 'gl_cash' registered twice"):
        register_check("gl_cash", params=CheckParams, categories=(), tables=(), explanations={})(lambda c, p: None)


def _config(tmp_path: Path, checks: str) -> Any:
    text = "checks:\n" + checks
    (tmp_path / "tieout.yaml").write_text(text, encoding="utf-8")
    return parse_config(text, tmp_path / "tieout.yaml")


def test_overrides_apply_their_parameters_to_one_currency_or_segment(engine: Engine, tmp_path: Path) -> None:
    cfg = _config(tmp_path, """\
  gateway_billing:
    amount_tolerance: 0
    overrides:
      - currency: jpy
        amount_tolerance: 100
      - segment: enterprise
        amount_tolerance: 100
""")
    when = "2026-03-02T10:00:00Z"
    charges, payments = [], []
    for i, (cur, cust) in enumerate((("USD", "C1"), ("JPY", "C1"), ("USD", "C2"))):
        charges.append({"txn_id": f"ch_{i}", "type": "charge", "status": "succeeded", "charge_id": f"ch_{i}",
                        "customer_id": cust, "gross": 1050, "currency": cur, "created_at": when})
        payments.append({"payment_id": f"P{i}", "customer_id": cust, "type": "payment", "method": "card",
                         "amount": 1000, "currency": cur, "received_at": when, "gateway_ref": f"ch_{i}"})
    ctx = _ctx(engine, {"gateway_transactions": charges, "payments": payments, "invoices": [],
                        "customers": [{"customer_id": "C1", "segment": "smb"},
                                      {"customer_id": "C2", "segment": "enterprise"}]})
    variants = check_variants(cfg, "gateway_billing")
    assert [str(s) for s, _ in variants[1:]] == ["currency=JPY", "segment=enterprise"]
    rows = evaluate(CHECKS["gateway_billing"], ctx, variants)
    assert [(r["category"], r["subject"]) for r in rows] == [("amount_mismatch", "P0")]
    base_only = evaluate(CHECKS["gateway_billing"], ctx, variants[:1])
    assert sorted(r["subject"] for r in base_only) == ["P0", "P1", "P2"]


@pytest.mark.parametrize(("checks", "message"), [
    ("  gl_cash:\n    overrides:\n      - amount_tolerance: 5\n",
     "tieout.yaml:4: checks.gl_cash.overrides.0: an override needs `currency:` and/or `segment:`"),
    ("  gl_cash:\n    overrides:\n      - currency: EUR\n        enabled: false\n",
     "tieout.yaml:5: checks.gl_cash.overrides.0.enabled: not allowed in an override"),
    ("  gl_cash:\n    overrides:\n      - currency: EUR\n        amount_tolerence: 5\n",
     "tieout.yaml:5: checks.gl_cash.overrides.0.amount_tolerence: unknown parameter"),
    ("  gl_cash:\n    mode: dark\n", "tieout.yaml:3: checks.gl_cash.mode: Input should be 'active' or 'shadow'"),
])
def test_bad_overrides_and_modes_name_the_line(tmp_path: Path, checks: str, message: str) -> None:
    cfg = _config(tmp_path, checks)
    with pytest.raises(ConfigError) as err:
        load_rules(cfg)
        from tieout.checks import check_params

        check_params(cfg, "gl_cash")
    assert str(err.value).startswith(message), str(err.value)


def test_rules_section_needs_exactly_one_kind(tmp_path: Path) -> None:
    text = "rules:\n  - sql: a.yaml\n    python: b.py\n"
    with pytest.raises(ConfigError, match=r"tieout.yaml:2: rules.0: give exactly one of `sql:` or `python:`"):
        parse_config(text, tmp_path / "tieout.yaml")


def test_missing_rule_files_are_failures_not_crashes(tmp_path: Path) -> None:
    text = "rules:\n  - sql: rules/none.yaml\n  - python: rules/none.py\n  - python: no_such_module_xyz\n"
    rs = load_rules(parse_config(text, tmp_path / "tieout.yaml"))
    messages = [str(f) for f in rs.failures]
    assert messages[0] == "tieout.yaml:2: rule 'none': no SQL rule file matches 'rules/none.yaml'"
    assert messages[1].startswith("rules/none.py: rule 'none': cannot read the rule module")
    assert messages[2].startswith("no_such_module_xyz: rule 'no_such_module_xyz': import failed: ModuleNotFoundError")
    assert set(rs.checks) >= {"gateway_billing", "billing_subscriptions", "gl_cash"}


def test_a_python_rule_that_fails_to_import_names_its_line(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("x = 1\n\nraise RuntimeError('no database here')\n", encoding="utf-8")
    (tmp_path / "syntax.py").write_text("def f(:\n    pass\n", encoding="utf-8")
    rs = load_rules(parse_config("rules:\n  - python: broken.py\n  - python: syntax.py\n", tmp_path / "tieout.yaml"))
    assert [str(f).replace(str(tmp_path) + "/", "") for f in rs.failures] == [
        "broken.py:3: rule 'broken': import failed: RuntimeError: no database here",
        "syntax.py:1: rule 'syntax': import failed: SyntaxError: invalid syntax (syntax.py, line 1)",
    ]


@pytest.mark.parametrize(("case", "message"), [
    ("cases:\n  - tables:\n      invoice: []\n", "c.cases.yaml:3: unknown table 'invoice'"),
    ("cases:\n  - tables:\n      invoices:\n        - {invoice_id: I1, totl: 5}\n",
     "c.cases.yaml:4: invoices has no column 'totl'"),
    ("cases:\n  - tables:\n      invoices:\n        - {invoice_id: I1, total: 5.5}\n",
     "c.cases.yaml:4: column 'total': 5.5 is not integer minor units"),
    ("cases:\n  - tables:\n      invoices:\n        - {invoice_id: I1, issued_at: yesterday}\n",
     "c.cases.yaml:4: column 'issued_at': 'yesterday' is not a timestamp"),
    ("cases:\n  - expect:\n      - {category: overbilled}\n", "c.cases.yaml:3: an expected finding is a mapping with"),
    ("cases:\n  - expect:\n      - {subject: x, amount: 5}\n", "c.cases.yaml:3: 'amount' is not a finding column"),
    ("cases:\n  - nme: x\n", "c.cases.yaml:2: unknown key 'nme'"),
    ("tests: []\n", "c.cases.yaml:1: a case file is a mapping with a `cases:` list"),
])
def test_bad_case_files_name_the_line(tmp_path: Path, case: str, message: str) -> None:
    path = tmp_path / "c.cases.yaml"
    path.write_text(case, encoding="utf-8")
    with pytest.raises(CaseFileError) as err:
        load_cases(CHECKS["gl_cash"], path)
    assert str(err.value).startswith(message), str(err.value)


def test_a_case_with_bad_params_fails_with_the_reason(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "c.cases.yaml"
    path.write_text("cases:\n  - name: p\n    params: {deposit_window_days: -1}\n", encoding="utf-8")
    [case] = load_cases(CHECKS["gl_cash"], path)
    result = run_case(CHECKS["gl_cash"], case, engine)
    assert not result.passed and result.error is not None and "deposit_window_days" in result.error


class _F:
    def __init__(self, fid: str, amount: int, currency: str = "USD", severity: str = "low") -> None:
        self.finding_id, self.category, self.subject = fid, "underbilled", fid
        self.currency, self.amount_at_risk, self.severity = currency, amount, severity
        self.expected, self.actual = None, None


def test_shadow_diff_counts_new_gone_changed_and_their_money() -> None:
    active = [_F("a", 100), _F("b", 200), _F("c", 300), _F("e", 50, "EUR")]
    shadow = [_F("b", 200), _F("c", 250), _F("d", 400), _F("e", 50, "EUR", severity="high")]
    d = diff_shadow("r", "v1", shadow, active)
    assert d.summary() == {"new": 1, "gone": 1, "changed": 2, "unchanged": 1}
    assert [s.finding_id for s in d.new] == ["d"] and [s.finding_id for s in d.gone] == ["a"]
    assert d.money() == {"EUR": {"new": 0, "gone": 0, "changed": 0}, "USD": {"new": 400, "gone": 100, "changed": -50}}


def test_a_plugin_registered_through_the_entry_point_group_is_a_rule(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    dist = tmp_path / "tieout_plugin_demo-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tieout-plugin-demo\nVersion: 1.0\n", encoding="utf-8")
    (dist / "entry_points.txt").write_text(
        "[tieout.checks]\nplugin_rules = tieout_plugin_demo\nbroken = tieout_plugin_missing\n", encoding="utf-8")
    (tmp_path / "tieout_plugin_demo.py").write_text(
        "from tieout.checks import CheckParams, register_check\n\n\n"
        "@register_check('plugin_check', params=CheckParams, categories=('overbilled',), tables=('invoices',),\n"
        "                explanations={'overbilled': '{subject}'})\n"
        "def plugin_check(ctx, p):\n    \"\"\"A plugin's check.\"\"\"\n    return ctx.table('invoices')\n",
        encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    rs = load_rules(None)
    assert rs.checks["plugin_check"].kind == "python"
    assert rs.checks["plugin_check"].origin == str(tmp_path / "tieout_plugin_demo.py")
    assert [str(f) for f in rs.failures] == [
        "entry point tieout_plugin_missing: rule 'broken': import failed: ModuleNotFoundError: No module named "
        "'tieout_plugin_missing'"]


def test_rules_doc_lists_the_canonical_tables_from_the_model() -> None:
    from tieout.rules.sql import tables_markdown

    doc = (Path(__file__).parent.parent / "docs" / "rules.md").read_text(encoding="utf-8")
    start = "<!-- generated: tieout.rules.sql.tables_markdown -->\n"
    generated = doc[doc.index(start) + len(start):doc.index("<!-- end generated -->")]
    assert generated == tables_markdown() + "\n", "docs/rules.md is stale: regenerate the canonical tables section"


def test_rules_test_reports_a_malformed_case_file_as_a_failure(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    from contextlib import redirect_stdout

    from tieout.cli import run_cli

    monkeypatch.setenv("COLUMNS", "200")
    (tmp_path / "r.yaml").write_text(HEAD + GOOD_SELECT + "  FROM invoices\n", encoding="utf-8")
    (tmp_path / "r.cases.yaml").write_text("cases:\n  - tables:\n      invoice: []\n", encoding="utf-8")
    (tmp_path / "tieout.yaml").write_text("rules:\n  - sql: r.yaml\n", encoding="utf-8")
    out = io.StringIO()
    with redirect_stdout(out):
        code = run_cli(["rules", "test", "r", "-c", str(tmp_path / "tieout.yaml")])
    assert code == 1
    assert "FAIL r: r.cases.yaml:3: unknown table 'invoice'" in out.getvalue()
    assert "0 passed, 1 failed" in out.getvalue()


def test_compare_reports_missing_unexpected_and_differing_findings() -> None:
    from tieout.rules.cases import compare

    row = {"category": "overbilled", "subject": "I1", "currency": "USD", "amount_at_risk": 100, "expected": "1",
           "actual": "2"}
    assert compare([{"subject": "I1", "amount_at_risk": 100}], [row], "overbilled") == []
    assert compare([], [row], None) == [
        "+ unexpected: category='overbilled' subject='I1' currency='USD' amount_at_risk=100 expected='1' actual='2'"]
    assert compare([{"category": "underbilled", "subject": "I1"}], [row], None) == [
        "- missing:    category='underbilled' subject='I1'",
        "+ unexpected: category='overbilled' subject='I1' currency='USD' amount_at_risk=100 expected='1' actual='2'"]
    assert compare([{"subject": "I1", "expected": None}], [row], "overbilled") == [
        "~ differs:    overbilled 'I1': expected expected None, got '1'"]


def test_the_examples_in_the_rules_doc_load(tmp_path: Path) -> None:
    import re

    doc = (Path(__file__).parent.parent / "docs" / "rules.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```(yaml|python)\n(.*?)```", doc, flags=re.S)
    sql_rule = next(text for lang, text in blocks if lang == "yaml" and text.startswith("# rules/discount_over"))
    py_rule = next(text for lang, text in blocks if lang == "python")
    cases = next(text for lang, text in blocks if lang == "yaml" and text.startswith("cases:"))
    (tmp_path / "discount_over_limit.yaml").write_text(sql_rule, encoding="utf-8")
    (tmp_path / "discount_over_limit.cases.yaml").write_text(cases, encoding="utf-8")
    (tmp_path / "invoice_arithmetic.py").write_text(py_rule, encoding="utf-8")
    cfg = parse_config("rules:\n  - sql: discount_over_limit.yaml\n  - python: invoice_arithmetic.py\n",
                       tmp_path / "tieout.yaml")
    rs = load_rules(cfg)
    assert rs.failures == []
    assert rs.checks["discount_over_limit"].kind == "sql" and rs.checks["invoice_arithmetic"].kind == "python"
    engine = create_engine("duckdb")
    try:
        results = [run_case(rs.checks["discount_over_limit"], c, engine)
                   for c in load_cases(rs.checks["discount_over_limit"])]
    finally:
        engine.close()
    assert [r.passed for r in results] == [True, True], [r.diff for r in results]

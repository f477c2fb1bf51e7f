"""`tieout rules …`: the checks and custom rules of a configuration (all read from the registry),
their test cases, and how a run renders failed and shadow rules.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tieout.cli import _out, add_row, app, money
from tieout.errors import ExitCode, InputError

if TYPE_CHECKING:
    from tieout.checks.registry import Check
    from tieout.config import Config
    from tieout.pipeline import RunResult
    from tieout.rules import RuleSet

rules_app = typer.Typer(help="Custom rules and built-in checks: list, show, test.", no_args_is_help=True)
app.add_typer(rules_app, name="rules")

RULES_CONFIG_OPT = typer.Option(None, "--config", "-c", help="Path to tieout.yaml (default: ./tieout.yaml when "
                                "present; without one, the built-in checks and installed plugins).")


def _load(config: Path | None) -> tuple[Config | None, RuleSet]:
    from tieout.config import load_config
    from tieout.rules import load_rules

    if config is None and Path("tieout.yaml").is_file():
        config = Path("tieout.yaml")
    cfg = load_config(config) if config is not None else None
    return cfg, load_rules(cfg)


def _where(check: Check) -> str:
    try:
        return str(Path(check.origin).relative_to(Path.cwd()))
    except ValueError:
        return check.origin


@rules_app.command("list")
def rules_list(config: Path | None = RULES_CONFIG_OPT) -> None:
    """Every check and rule: kind, mode, version, categories, where it is defined, its test cases."""
    from tieout.checks.registry import check_params
    from tieout.rules import load_cases
    from tieout.rules.cases import CaseFileError

    cfg, rs = _load(config)
    t = Table(title=f"{len(rs.checks)} rules")
    for col in ("rule", "kind", "mode", "version", "categories", "cases", "defined in"):
        t.add_column(col, overflow="fold")
    for c in rs.checks.values():
        params = check_params(cfg, c.name, c) if cfg is not None else c.params.model_validate({})
        mode = rs.mode(cfg, c.name, params)
        if not params.enabled:
            mode += " (disabled)"
        try:
            n = str(len(load_cases(c)) or "-")
        except CaseFileError as exc:
            n = f"invalid: {exc}"
        add_row(t, c.name, c.kind, mode, c.version, ", ".join(c.categories), n, _where(c))
    out = _out()
    out.print(t)
    for f in rs.failures:
        out.print(Text.assemble(("failed ", "bold red"), Text(str(f))))
    if rs.failures:
        raise typer.Exit(ExitCode.BAD_INPUT)


@rules_app.command("show")
def rules_show(name: str = typer.Argument(..., help="Rule or check name."),
               config: Path | None = RULES_CONFIG_OPT) -> None:
    """One rule: documentation, parameters with their defaults, categories, severity, SQL, cases."""
    from tieout.init_config import field_docs, yaml_value
    from tieout.rules import load_cases
    from tieout.rules.sql import rule_sql

    _, rs = _load(config)
    failed = rs.failed(name)
    if failed is not None:
        raise InputError(failed.file, f"rule '{name}' failed to load: {failed.message}", failed.line)
    check = rs.checks.get(name)
    if check is None:
        raise typer.BadParameter(f"unknown rule '{name}' (see `tieout rules list`)", param_hint="NAME")
    out = _out()
    out.print(Text(check.name, style="bold"))
    out.print(Text(check.doc))
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    for k, v in (("kind", check.kind), ("defined in", check.where), ("version", check.version),
                 ("mode", check.mode), ("categories", ", ".join(check.categories)),
                 ("severity", check.severity or "from money at risk (severity: in tieout.yaml)"),
                 ("tables", ", ".join(check.tables)), ("test cases", str(check.cases_file))):
        add_row(grid, k, v)
    out.print(grid)
    t = Table(title="parameters (checks." + check.name + " in tieout.yaml)")
    for col in ("parameter", "type", "default", "description"):
        t.add_column(col, overflow="fold")
    for p in field_docs(check.params):
        add_row(t, p.name, p.type_text, "required" if p.required else yaml_value(p.default), Text(p.description))
    out.print(t)
    sql = rule_sql(check)
    if sql:
        out.print(Text("SQL", style="bold"))
        out.print(Text(sql.rstrip()))
    for case in load_cases(check):
        out.print(Text(f"case: {case.name} ({len(case.expect)} expected finding(s))"))


@rules_app.command("test")
def rules_test(name: str | None = typer.Argument(None, help="Only this rule (default: every rule with cases)."),
               config: Path | None = RULES_CONFIG_OPT) -> None:
    """Run rules' test cases; pass/fail per case with a diff of expected vs actual findings; exit 1 on failure."""
    from tieout.engines import create_engine
    from tieout.rules import load_cases, run_case
    from tieout.rules.cases import CaseFileError

    cfg, rs = _load(config)
    if name is not None and name not in rs.checks and rs.failed(name) is None:
        raise typer.BadParameter(f"unknown rule '{name}' (see `tieout rules list`)", param_hint="NAME")
    out = _out()
    failures = [f for f in rs.failures if name is None or f.rule == name]
    for f in failures:
        out.print(Text.assemble(("FAIL ", "bold red"), Text(str(f))))
    checks = [c for c in rs.checks.values() if name is None or c.name == name]
    passed = failed = 0
    engine = create_engine(cfg.engine if cfg is not None else "duckdb")
    try:
        for check in checks:
            try:
                cases = load_cases(check)
            except CaseFileError as exc:  # one malformed case file fails its rule, not the whole command
                failed += 1
                out.print(Text.assemble(("FAIL ", "bold red"), f"{check.name}: ", Text(str(exc))))
                continue
            if not cases:
                out.print(Text.assemble(("no cases ", "yellow"), check.name,
                                        f" (add {check.cases_file.name} beside its definition)"))
                continue
            for case in cases:
                result = run_case(check, case, engine)
                label = f"{check.name}: {case.name}  ({Path(case.file).name}:{case.line})"
                if result.passed:
                    passed += 1
                    out.print(Text.assemble(("PASS ", "green"), label))
                    continue
                failed += 1
                out.print(Text.assemble(("FAIL ", "bold red"), label))
                for line in ([result.error] if result.error else result.diff):
                    out.print(Text("    " + line, style="red" if line.startswith(("-", "~")) else ""))
    finally:
        engine.close()
    out.print(f"{passed} passed, {failed} failed" + (f", {len(failures)} rule(s) failed to load" if failures else ""))
    if failed or failures:
        raise typer.Exit(ExitCode.FINDINGS)


def render_rules_outcome(result: RunResult, out: Console) -> None:
    """Failed rules (with file and line) and each shadow rule's diff against its active version."""
    for f in result.checks_failed:
        out.print(Text.assemble(("failed ", "bold red"), Text(str(f))), soft_wrap=True)
    for d in result.shadow:
        s = d.summary()
        out.print(Text.assemble(("shadow ", "bold magenta"), (d.rule, "bold"),
                                f" (version {d.version}): not stored, routed or notified; vs the active version: "
                                f"{s['new']} new, {s['gone']} gone, {s['changed']} changed, "
                                f"{s['unchanged']} unchanged"), soft_wrap=True)
        t = Table(title=f"shadow {d.rule}: money at risk")
        for col in ("currency", "new", "gone", "changed (net)"):
            t.add_column(col, justify="right" if col != "currency" else "left")
        for cur, m in d.money().items():
            add_row(t, cur, money(m["new"], cur), money(m["gone"], cur), money(m["changed"], cur))
        if d.money():
            out.print(t)
        rows = Table(title=f"shadow {d.rule}: differences")
        for col in ("change", "id", "category", "subject", "at risk"):
            rows.add_column(col, overflow="fold")
        for fs in d.new:
            add_row(rows, "new", fs.finding_id, fs.category, fs.subject, money(fs.amount_at_risk, fs.currency))
        for fs in d.gone:
            add_row(rows, "gone", fs.finding_id, fs.category, fs.subject, money(fs.amount_at_risk, fs.currency))
        for old, new in d.changed:
            add_row(rows, "changed", new.finding_id, new.category, new.subject,
                    f"{money(old.amount_at_risk, old.currency)} -> {money(new.amount_at_risk, new.currency)}")
        if d.new or d.gone or d.changed:
            out.print(rows)

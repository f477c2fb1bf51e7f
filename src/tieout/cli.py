"""The `tieout` command line (Typer + Rich). Renders what the library returns; holds no logic of
its own. Heavy modules are imported inside the commands so `tieout --help` stays fast.

Exit codes (a contract): 0 ran clean, 1 findings at or above the fail threshold, 2 bad input or
config, 3 internal error.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table

from tieout.errors import ExitCode, TieoutError

if TYPE_CHECKING:
    from tieout.pipeline import RunResult

app = typer.Typer(help="tieout: tie out gateway, billing, subscriptions and the ledger.", no_args_is_help=True,
                  add_completion=False)
findings_app = typer.Typer(help="Browse and export findings from the store.", no_args_is_help=True)
app.add_typer(findings_app, name="findings")
out = Console()
err = Console(stderr=True)
_state = {"debug": False}
SEVERITY_ORDER = {"low": 0, "medium": 1, "high": 2}
CONFIG_OPT = typer.Option(Path("tieout.yaml"), "--config", "-c", help="Path to tieout.yaml.")


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors.")) -> None:
    _state["debug"] = debug


def _money(minor: int, currency: str) -> str:
    from tieout.money import format_minor, is_known_currency

    return format_minor(minor, currency) if is_known_currency(currency) else f"{currency} {minor}"


def _render_run(result: RunResult, top: int = 10) -> None:
    files = Table(title="Inputs", show_lines=False)
    for col in ("file", "table", "read", "accepted", "quarantined"):
        files.add_column(col, justify="right" if col in ("read", "accepted", "quarantined") else "left")
    for c in result.counts:
        files.add_row(c.file, c.table, f"{c.read:,}", f"{c.accepted:,}",
                      f"[red]{c.quarantined:,}[/red]" if c.quarantined else "0")
    out.print(files)
    by_cat: dict[tuple[str, str], list[int]] = {}
    for f in result.findings:
        by_cat.setdefault((f.category, f.currency), []).append(f.amount_at_risk)
    cats = Table(title=f"Findings ({len(result.findings)})")
    for col in ("category", "currency", "count", "money at risk"):
        cats.add_column(col, justify="right" if col in ("count", "money at risk") else "left")
    for (cat, cur), amounts in sorted(by_cat.items(), key=lambda kv: -sum(kv[1])):
        cats.add_row(cat, cur, str(len(amounts)), _money(sum(amounts), cur))
    out.print(cats)
    wanted = ("invoiced", "collection_gap", "posting_gap", "accounting_gap", "cash_leak_pct",
              "invoice_failure_rate", "unmatched_gateway_payments", "reconciliation_coverage", "money_at_risk")
    keys = sorted({(m.period, m.currency) for m in result.metrics})
    metrics = Table(title="Metrics per period and currency")
    metrics.add_column("metric")
    for period, cur in keys:
        metrics.add_column(f"{period} {cur}", justify="right")
    index = {(m.period, m.currency, m.name): m for m in result.metrics}
    for name in wanted:
        row = [name]
        for period, cur in keys:
            m = index.get((period, cur, name))
            if m is None:
                row.append("")
            elif m.unit == "minor":
                row.append(_money(int(m.value), cur))
            elif m.unit == "percent":
                row.append(f"{m.value}%")
            else:
                row.append(m.value)
        metrics.add_row(*row)
    out.print(metrics)
    for name, why in result.checks_skipped.items():
        out.print(f"[yellow]check {name} skipped:[/yellow] {why}")
    topt = Table(title=f"Top {min(top, len(result.findings))} findings by money at risk")
    for col in ("id", "severity", "category", "customer", "at risk", "explanation"):
        topt.add_column(col)
    for f in result.findings[:top]:
        topt.add_row(f.finding_id, f.severity, f.category, f.customer_id or "", _money(f.amount_at_risk, f.currency),
                     f.explanation)
    out.print(topt)
    out.print(f"run {result.run_id}: {result.rows_read:,} rows read, {len(result.quarantined):,} quarantined, "
              f"{len(result.findings):,} findings (new {result.lifecycle.get('new', 0)}, closed "
              f"{result.lifecycle.get('no_longer_present', 0)}), as of {result.as_of}")


def _run_config(config: Path) -> RunResult:
    from tieout.config import load_config
    from tieout.pipeline import run

    cfg = load_config(config)
    with err.status("running…") as status:
        return run(cfg, progress=lambda msg: status.update(msg))


def _fails(result: RunResult, fail_on: str) -> bool:
    if fail_on == "never":
        return False
    return any(SEVERITY_ORDER[f.severity] >= SEVERITY_ORDER[fail_on] for f in result.findings)


@app.command()
def demo(
    directory: Path = typer.Option(Path("tieout-demo"), "--dir", help="Where to write the demo workspace."),
    customers: int = typer.Option(2000, help="Number of customers to simulate."),
    seed: int = typer.Option(7, help="Random seed (same seed, same data)."),
) -> None:
    """Generate a demo workspace (a quarter of books with known defects) and run tieout on it."""
    from tieout.demo import generate_workspace

    if (directory / "tieout.db").exists():
        (directory / "tieout.db").unlink()
    manifest = generate_workspace(directory, customers=customers, seed=seed)
    out.print(f"[bold]demo workspace[/bold] {directory}: {manifest.summary()}")
    result = _run_config(directory / "tieout.yaml")
    _render_run(result)
    found = {(f.check, f.category, f.subject) for f in result.findings}
    expected = set(manifest.expected)
    out.print(f"injected defects found: {len(expected & found)}/{len(expected)}; findings not injected: "
              f"{len(found - expected)}")
    out.print(f"next: tieout findings list -c {directory / 'tieout.yaml'}")


@app.command("run")
def run_cmd(
    config: Path = CONFIG_OPT,
    fail_on: str | None = typer.Option(None, help="high | medium | low | never (default: fail_on in config)."),
) -> None:
    """Run every enabled check on the configured sources; exit 1 on findings at/above fail_on."""
    from tieout.config import load_config

    threshold = fail_on or load_config(config).fail_on
    if threshold not in (*SEVERITY_ORDER, "never"):
        raise typer.BadParameter("--fail-on must be high, medium, low or never")
    result = _run_config(config)
    _render_run(result)
    if _fails(result, threshold):
        raise typer.Exit(ExitCode.FINDINGS)


def _store(config: Path) -> Any:
    from tieout.config import load_config
    from tieout.store import Store

    return Store(load_config(config).store_url())


@findings_app.command("list")
def findings_list(
    config: Path = CONFIG_OPT,
    status: list[str] = typer.Option(["open"], help="Statuses to show (repeatable)."),
    category: str | None = typer.Option(None),
    customer: str | None = typer.Option(None),
    check: str | None = typer.Option(None),
    limit: int = typer.Option(50),
) -> None:
    """Findings ordered by money at risk."""
    store = _store(config)
    rows = store.findings(status=status, category=category, customer=customer, check=check, limit=limit)
    t = Table(title=f"{len(rows)} findings")
    for col in ("id", "status", "severity", "category", "customer", "at risk", "period", "explanation"):
        t.add_column(col)
    for r in rows:
        t.add_row(r.finding_id, r.status, r.severity, r.category, r.customer_id or "",
                  _money(r.amount_at_risk, r.currency), r.period or "", r.explanation)
    out.print(t)


@findings_app.command("show")
def findings_show(finding_id: str, config: Path = CONFIG_OPT) -> None:
    """One finding: fields, explanation, the evidence from each system, its history."""
    store = _store(config)
    f = store.finding(finding_id)
    out.print(f"[bold]{f.finding_id}[/bold]  {f.category}  ({f.check})  severity {f.severity}  status {f.status}")
    out.print(f.explanation)
    at_risk = _money(f.amount_at_risk, f.currency)
    out.print(f"customer {f.customer_id or '-'}   period {f.period or '-'}   at risk {at_risk}")
    out.print(f"expected {f.expected or '-'}   actual {f.actual or '-'}   owner {f.owner or '-'}")
    out.print(f"first seen run {f.first_seen_run}, last seen run {f.last_seen_run}")
    for e in json.loads(f.evidence):
        t = Table(title=f"{e['table']} {e['key']}  ({e['source']} {e['source_ref']})", show_header=False)
        t.add_column("field")
        t.add_column("value")
        for k, v in e["record"].items():
            t.add_row(k, "" if v is None else str(v))
        out.print(t)
    for ev in store.events(f.finding_id):
        out.print(f"{ev.at:%Y-%m-%d %H:%M} {ev.actor}: {ev.from_status or '-'} → {ev.to_status} {ev.note}")


@findings_app.command("export")
def findings_export(
    output: Path = typer.Option(..., "--output", "-o", help="File to write."),
    fmt: str = typer.Option("csv", "--format", help="csv | json | xlsx"),
    config: Path = CONFIG_OPT,
    status: list[str] = typer.Option(["open"], help="Statuses to export (repeatable)."),
) -> None:
    """Export findings ordered by money at risk (CSV, JSON or XLSX)."""
    from tieout.reports.export import export_findings

    rows = _store(config).findings(status=status)
    n = export_findings(rows, output, fmt)
    out.print(f"wrote {n} findings to {output}")


@app.command()
def quarantine(config: Path = CONFIG_OPT, limit: int = typer.Option(50)) -> None:
    """Rows the last run quarantined: file:line, column, value, reason."""
    store = _store(config)
    last = store.last_run()
    if last is None:
        out.print("no run yet")
        return
    t = Table(title=f"quarantined rows of run {last.run_id}")
    for col in ("where", "column", "value", "reason"):
        t.add_column(col)
    for q in store.quarantine(last.run_id, limit):
        t.add_row(f"{q.file}:{q.line}", q.column_name or "", q.value or "", q.reason)
    out.print(t)


@app.command()
def checks() -> None:
    """The built-in checks, their categories and parameters (from the registry)."""
    from tieout.checks import CHECKS

    for c in CHECKS.values():
        out.print(f"[bold]{c.name}[/bold]: {c.doc}")
        out.print(f"  categories: {', '.join(c.categories)}")
        for name, field in c.params.model_fields.items():
            out.print(f"  {name} = {field.default!r}: {field.description or ''}")


@app.command()
def categories() -> None:
    """The finding-category vocabulary (from the registry)."""
    from tieout.categories import CATEGORIES

    for c in CATEGORIES.values():
        out.print(f"[bold]{c.name}[/bold] ({c.raised_by or 'reserved'}): {c.definition}")


def main() -> None:
    try:
        app(standalone_mode=False)
    except TieoutError as exc:
        if _state["debug"]:
            traceback.print_exc()
        err.print(f"[red]error:[/red] {exc}", highlight=False, markup=True)
        sys.exit(int(exc.exit_code))
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except SystemExit:
        raise
    except Exception as exc:  # click usage errors arrive here too
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(ExitCode.BAD_INPUT)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(130)
        if _state["debug"]:
            traceback.print_exc()
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        err.print(f"[red]internal error:[/red] {first} (run with --debug for the traceback)")
        sys.exit(ExitCode.INTERNAL)
    sys.exit(0)

"""The `tieout` command line (Typer + Rich): renders what the library returns and holds no
reconciliation logic. One module per command group beside this one, registered at the bottom of
this file. Heavy modules (ibis, duckdb, the pipeline, openpyxl) are imported inside the
commands so `tieout --help` stays fast. Every command is documented in docs/cli.md (a test checks).

Exit codes (a contract): 0 ran clean, 1 findings at or above the fail threshold, 2 bad input or
config, 3 internal error.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tieout.errors import ExitCode, InputError, TieoutError

if TYPE_CHECKING:
    from tieout.config import Config
    from tieout.findings import Finding
    from tieout.notify.outbox import DispatchReport
    from tieout.pipeline import RunResult
    from tieout.store import Store

app = typer.Typer(help="tieout: tie out gateway, billing, subscriptions and the ledger; findings ranked by "
                  "money at risk.", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
sources_app = typer.Typer(help="What tieout can read.", no_args_is_help=True)
app.add_typer(sources_app, name="sources")

_state = {"debug": False}
SEVERITY_ORDER = {"low": 0, "medium": 1, "high": 2}
TOP_FINDINGS = 10


class FailOn(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    NEVER = "never"


CONFIG_OPT = typer.Option(Path("tieout.yaml"), "--config", "-c", help="Path to tieout.yaml.")
STATUS_HELP = "Statuses to include (repeatable; 'all' for every status)."


def _out() -> Console:
    # Built per call, so COLUMNS and the current sys.stdout are honoured (tests, pipes).
    return Console(highlight=False)


def _err() -> Console:
    return Console(stderr=True, highlight=False)


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show the traceback of an error.")) -> None:
    _state["debug"] = debug


# --- rendering -----------------------------------------------------------------------------------


def add_row(table: Table, *cells: str | Text) -> None:
    """Add a row whose text is shown literally: data may contain '[...]', which Rich reads as markup."""
    table.add_row(*(Text(c) if isinstance(c, str) else c for c in cells))


def money(minor: int, currency: str) -> str:
    """'USD 1,250.00'; an unknown currency shows its code and the raw minor units."""
    from tieout.money import format_minor, is_known_currency

    return format_minor(minor, currency) if is_known_currency(currency) else f"{currency} {minor} (minor units)"


def _metric_text(value: str, unit: str, currency: str) -> str:
    if unit == "minor":
        return money(int(value), currency)
    if unit == "percent":
        return f"{value}%"
    return value


def _inputs_table(result: RunResult) -> Table:
    t = Table(title="Inputs")
    t.add_column("file", overflow="fold")
    t.add_column("table")
    for col in ("read", "accepted", "quarantined"):
        t.add_column(col, justify="right")
    for c in result.counts:
        add_row(t, Text(c.file), c.table, f"{c.read:,}", f"{c.accepted:,}",
                  Text(f"{c.quarantined:,}", style="red" if c.quarantined else ""))
    return t


def _categories_table(findings: Sequence[Finding]) -> Table:
    by_cat: dict[tuple[str, str], list[int]] = {}
    for f in findings:
        by_cat.setdefault((f.category, f.currency), []).append(f.amount_at_risk)
    t = Table(title=f"Findings per category ({len(findings)})")
    t.add_column("category")
    t.add_column("currency")
    t.add_column("count", justify="right")
    t.add_column("money at risk", justify="right")
    for (cat, cur), amounts in sorted(by_cat.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        add_row(t, cat, cur, str(len(amounts)), money(sum(amounts), cur))
    return t


def _metrics_table(result: RunResult) -> Table:
    from tieout.metrics import METRICS

    keys = sorted({(m.period, m.currency) for m in result.metrics})
    t = Table(title="Metrics per period and currency")
    t.add_column("metric")
    for period, cur in keys:
        t.add_column(f"{period} {cur}", justify="right")
    index = {(m.period, m.currency, m.name): m for m in result.metrics}
    for name in METRICS:
        cells = [name]
        for period, cur in keys:
            m = index.get((period, cur, name))
            cells.append("" if m is None else _metric_text(m.value, m.unit, cur))
        add_row(t, *cells)
    return t


def _findings_rows_table(title: str, rows: Sequence[Any], with_status: bool) -> Table:
    t = Table(title=title)
    t.add_column("id", no_wrap=True)
    if with_status:
        t.add_column("status")
    for col in ("severity", "category", "customer"):
        t.add_column(col)
    t.add_column("at risk", justify="right", no_wrap=True)
    t.add_column("period", no_wrap=True)
    t.add_column("explanation", ratio=1)
    for r in rows:
        cells: list[str | Text] = [r.finding_id]
        if with_status:
            cells.append(r.status)
        cells += [r.severity, r.category, Text(r.customer_id or ""), money(r.amount_at_risk, r.currency),
                  r.period or "", Text(r.explanation)]
        add_row(t, *cells)
    return t


def render_run(result: RunResult, out: Console) -> None:
    """Inputs, findings per category, metrics, skipped checks and the top findings of a run."""
    out.print(_inputs_table(result))
    out.print(_categories_table(result.findings))
    if result.metrics:
        out.print(_metrics_table(result))
    for name, why in result.checks_skipped.items():
        out.print(Text.assemble(("skipped ", "yellow"), (name, "bold"), f": {why}"))
    from tieout.cli.rules import render_rules_outcome

    render_rules_outcome(result, out)
    top = result.findings[:TOP_FINDINGS]
    if top:
        out.print(_findings_rows_table(f"Top {len(top)} findings by money at risk", top, with_status=False))
    out.print(f"run {result.run_id}: {result.rows_read:,} rows read, {len(result.quarantined):,} quarantined, "
              f"{len(result.findings):,} findings (new {result.lifecycle.get('new', 0)}, closed "
              f"{result.lifecycle.get('no_longer_present', 0)}), as of {result.as_of}")


def findings_at_or_above(findings: Sequence[Finding], fail_on: str) -> list[Finding]:
    """The findings that make a run fail at threshold `fail_on` ('never': none)."""
    if fail_on == FailOn.NEVER:
        return []
    return [f for f in findings if SEVERITY_ORDER[f.severity] >= SEVERITY_ORDER[fail_on]]


def _run_pipeline(cfg: Config, shadow: Sequence[str] = (), full_refresh: bool = False) -> RunResult:
    from tieout.pipeline import run

    with _err().status("reading sources…") as status:
        return run(cfg, progress=lambda msg: status.update(Text(msg)), shadow=shadow, full_refresh=full_refresh)


def report_notices(sent: DispatchReport, out: Console) -> None:
    """What a dispatch delivered, on stdout; each delivery error on stderr."""
    out.print(f"notices: {sent.notices_sent} sent in {sent.messages_sent} messages, {sent.notices_failed} failed"
              + (" (kept queued: `tieout notify send` retries)" if sent.notices_failed else ""))
    for e in sent.errors:
        _err().print(Text(e, style="bold red"), soft_wrap=True)


def _run_and_report(cfg: Config, fail_on: str, shadow: Sequence[str] = (),
                    full_refresh: bool = False) -> tuple[RunResult, int]:
    """Run like `tieout run` and render the result; returns it with the exit code for `fail_on`
    (2 when a rule failed: the other checks ran and their findings are recorded)."""
    out = _out()
    result = _run_pipeline(cfg, shadow, full_refresh)
    render_run(result, out)
    if result.notifications is not None:
        report_notices(result.notifications, out)
    if result.checks_failed:
        out.print(Text(f"{len(result.checks_failed)} rule(s) failed: exit 2", style="red"))
        return result, ExitCode.BAD_INPUT
    failing = findings_at_or_above(result.findings, fail_on)
    if failing:
        out.print(Text(f"{len(failing)} finding(s) at or above fail_on={fail_on}: exit 1", style="red"))
        return result, ExitCode.FINDINGS
    return result, ExitCode.CLEAN


@contextmanager
def _open_store(config: Path | Config) -> Iterator[Store]:
    """The store of a config file (or of a config already loaded)."""
    from tieout.config import load_config
    from tieout.store import Store

    store = Store((config if not isinstance(config, Path) else load_config(config)).store_url())
    try:
        yield store
    finally:
        store.close()


def _statuses(status: list[str]) -> list[str] | None:
    return None if "all" in status else status


# --- commands ------------------------------------------------------------------------------------


@app.command()
def demo(
    directory: Path = typer.Option(Path("tieout-demo"), "--dir", help="Where to write the demo workspace."),
    customers: int = typer.Option(2000, min=1, help="Number of customers to simulate."),
    seed: int = typer.Option(7, help="Random seed (same seed, same data)."),
    fail_on: FailOn = typer.Option(FailOn.NEVER, "--fail-on", case_sensitive=False,
                                   help="Exit 1 on findings at or above this severity (the demo has findings "
                                   "by design, so the default is never)."),
) -> None:
    """Generate a demo workspace (a quarter of books with known defects) and run tieout on it."""
    from tieout.config import load_config
    from tieout.demo import generate_workspace

    config = directory / "tieout.yaml"
    if config.exists() and not (directory / "manifest.json").exists():
        raise InputError(str(config), "exists and is not a demo workspace; choose another --dir")
    stale_store = directory / "tieout.db"  # the demo config's store: a rerun starts from a fresh history
    if stale_store.exists():
        stale_store.unlink()
    out = _out()
    manifest = generate_workspace(directory, customers=customers, seed=seed)
    out.print(Text.assemble(("demo workspace ", "bold"), str(directory), ": ", manifest.summary()))
    result, code = _run_and_report(load_config(config), fail_on.value)
    found = {(f.check, f.category, f.subject) for f in result.findings}
    expected = set(manifest.expected)
    out.print(f"injected defects found: {len(expected & found)}/{len(expected)}; findings not injected: "
              f"{len(found - expected)}")
    out.print(f"next: tieout findings list -c {config}")
    raise typer.Exit(code)


@app.command()
def init(directory: Path = typer.Option(Path("."), "--dir", help="Directory to write tieout.yaml in.")) -> None:
    """Write a commented example tieout.yaml (every key, its default and what it means)."""
    from tieout.init_config import example_config

    path = directory / "tieout.yaml"
    if path.exists():
        raise InputError(str(path), "already exists; not overwritten (move it away or choose another --dir)")
    if not directory.is_dir():
        raise InputError(str(directory), "directory does not exist")
    path.write_text(example_config(), encoding="utf-8")
    _out().print(f"wrote {path}: add your sources, then `tieout run -c {path}`")


@app.command("run")
def run_cmd(
    config: Path = CONFIG_OPT,
    fail_on: FailOn | None = typer.Option(None, "--fail-on", case_sensitive=False,
                                          help="Exit 1 on findings at or above this severity "
                                          "(default: fail_on in the config)."),
    shadow: list[str] = typer.Option([], "--shadow", help="Run this rule in shadow mode: compare its findings "
                                     "with the active version's, store and notify nothing (repeatable)."),
    full_refresh: bool = typer.Option(False, "--full-refresh", help="Pull every connector source in full "
                                      "(not only new or changed records) before the run; pinned snapshots stay."),
) -> None:
    """Run every enabled check on the configured sources; exit 1 on findings at or above fail_on."""
    from tieout.config import load_config

    cfg = load_config(config)
    _, code = _run_and_report(cfg, fail_on.value if fail_on else cfg.fail_on, shadow, full_refresh)
    raise typer.Exit(code)


@app.command()
def quarantine(
    config: Path = CONFIG_OPT,
    run: int | None = typer.Option(None, "--run", help="Run id (default: the last run)."),
    limit: int = typer.Option(50, "--limit", min=1, help="At most this many rows."),
) -> None:
    """Rows a run quarantined: file:line, column, value and reason."""
    out = _out()
    with _open_store(config) as store:
        if run is None:
            last = store.last_run()
            if last is None:
                out.print(f"no run yet: tieout run -c {config}")
                return
            run = last.run_id
        rows = store.quarantine(run, limit)
    t = Table(title=f"{len(rows)} quarantined rows of run {run}" + (f" (first {limit})" if len(rows) == limit else ""))
    for col in ("where", "table", "column", "value", "reason"):
        t.add_column(col, overflow="fold")
    for q in rows:
        add_row(t, Text(f"{q.file}:{q.line}"), q.table_name, Text(q.column_name or ""), Text(q.value or ""),
                  Text(q.reason))
    out.print(t)


@app.command()
def checks() -> None:
    """The built-in checks: what each verifies, the categories it raises, its parameters."""
    from tieout.checks import CHECKS
    from tieout.init_config import field_docs, summary, yaml_value

    out = _out()
    for c in CHECKS.values():
        out.print(Text(c.name, style="bold"))
        out.print(Text(summary(c.doc)))
        out.print(Text(f"needs: {', '.join(c.tables)}"))
        out.print(Text(f"categories: {', '.join(c.categories)}"))
        t = Table(title=None)
        for col in ("parameter", "type", "default", "description"):
            t.add_column(col, overflow="fold")
        for p in field_docs(c.params):
            add_row(t, p.name, p.type_text, "required" if p.required else yaml_value(p.default), Text(p.description))
        out.print(t)


def raised_by() -> dict[str, list[str]]:
    """category -> the checks that raise it, read from the check registry."""
    from tieout.categories import CATEGORIES
    from tieout.checks import CHECKS

    return {name: [c.name for c in CHECKS.values() if name in c.categories] for name in CATEGORIES}


def categories_markdown() -> str:
    """docs/categories.md, generated from the category and check registries."""
    from tieout.categories import CATEGORIES

    checks = raised_by()

    lines = [
        "# Finding categories",
        "",
        "Generated by `tieout categories --markdown > docs/categories.md` from `tieout.categories`;",
        "`tests/test_docs.py` fails when this file and the registry disagree. *Reserved* categories",
        "are part of the vocabulary but no built-in check raises them yet.",
        "",
        "| category | definition | raised by | owning team |",
        "|---|---|---|---|",
    ]
    for c in CATEGORIES.values():
        definition = c.definition.replace("|", "\\|")
        by = ", ".join(checks[c.name]) or "*reserved*"
        lines.append(f"| `{c.name}` | {definition} | {by} | {c.team} |")
    return "\n".join(lines) + "\n"


@app.command()
def categories(markdown: bool = typer.Option(False, "--markdown", help="Print the table of docs/categories.md.")
               ) -> None:
    """The finding-category vocabulary: definition, checks that raise it, owning team."""
    from tieout.categories import CATEGORIES

    if markdown:
        sys.stdout.write(categories_markdown())
        return
    checks = raised_by()
    t = Table(title=f"{len(CATEGORIES)} finding categories")
    for col in ("category", "raised by", "team", "definition"):
        t.add_column(col, overflow="fold")
    for c in CATEGORIES.values():
        add_row(t, c.name, ", ".join(checks[c.name]) or "reserved", c.team, c.definition)
    _out().print(t)


@sources_app.command("formats")
def sources_formats() -> None:
    """The file formats tieout reads, the canonical table each fills and what it expects."""
    from tieout.init_config import summary
    from tieout.sources import FORMATS

    t = Table(title="Source formats (`format:` of a source in tieout.yaml)")
    for col in ("format", "table", "system", "description"):
        t.add_column(col, overflow="fold")
    for f in FORMATS.values():
        add_row(t, f.name, f.table or "(set `table:`)", f.system or "", Text(summary(f.doc)))
    _out().print(t)


# --- entry point ---------------------------------------------------------------------------------


def _report_error(exc: TieoutError, debug: bool) -> None:
    err = _err()
    if debug:
        err.print(Text("".join(traceback.format_exception(exc)).rstrip()), soft_wrap=True)
    lines = str(exc).strip().splitlines() or [type(exc).__name__]
    err.print(Text(lines[0], style="bold red"), soft_wrap=True)
    for line in lines[1:]:
        err.print(Text(line), soft_wrap=True)


def _report_internal(exc: BaseException, debug: bool) -> None:
    err = _err()
    if debug:
        err.print(Text("".join(traceback.format_exception(exc)).rstrip()), soft_wrap=True)
    message = str(exc).strip().splitlines()
    first = f"{type(exc).__name__}: {message[0]}" if message else type(exc).__name__
    hint = "" if debug else " (run with --debug for the traceback)"
    err.print(Text(f"internal error: {first}{hint}", style="bold red"), soft_wrap=True)


def run_cli(argv: Sequence[str] | None = None) -> int:
    """Run the CLI on `argv` (default: sys.argv[1:]) and return the exit code; never raises."""
    args = list(sys.argv[1:] if argv is None else argv)
    _state["debug"] = False
    try:
        # Standalone mode: Typer reports usage errors itself (exit 2) and turns typer.Exit into SystemExit.
        app(args=args, prog_name="tieout", standalone_mode=True)
    except SystemExit as exc:
        return _system_exit_code(exc)
    except TieoutError as exc:
        _report_error(exc, _state["debug"] or "--debug" in args)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        _err().print("aborted")
        return 130
    except Exception as exc:
        _report_internal(exc, _state["debug"] or "--debug" in args)
        return ExitCode.INTERNAL
    return ExitCode.CLEAN


def _system_exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return ExitCode.CLEAN
    if isinstance(exc.code, int):
        return exc.code
    _err().print(Text(str(exc.code), style="bold red"), soft_wrap=True)
    return ExitCode.INTERNAL


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Console-script entry point (`tieout`)."""
    sys.exit(run_cli(argv))


# Command groups in their own modules; each registers itself on `app` when imported.
from tieout.cli import audit, db, metrics, notify  # noqa: E402,F401
from tieout.cli import findings as findings_commands  # noqa: E402,F401
from tieout.cli import links as _links  # noqa: E402, F401
from tieout.cli import report as _report  # noqa: E402, F401
from tieout.cli import rules as _rules  # noqa: E402, F401
from tieout.cli import sources as _sources  # noqa: E402,F401  (sources test, sources pull)
from tieout.cli import validate as _validate  # noqa: E402,F401

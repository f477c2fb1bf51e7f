"""`tieout report …`: the monthly reconciliation report (CSV and XLSX) and its label vocabulary."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.table import Table

from tieout.cli import CONFIG_OPT, _open_store, _out, add_row, app, money

report_app = typer.Typer(help="Reconciliation reports.", no_args_is_help=True)
app.add_typer(report_app, name="report")


@report_app.command("monthly")
def report_monthly(
    period: str = typer.Option(..., "--period", help="Month to report, YYYY-MM."),
    config: Path = CONFIG_OPT,
    out_dir: Path = typer.Option(Path("."), "--out", help="Directory for monthly-<period>.csv and .xlsx."),
) -> None:
    """One row per active customer, each system's values side by side, a status label, counts per
    label and trends per label from the store; written as CSV and XLSX."""
    from tieout.config import load_config
    from tieout.errors import InputError
    from tieout.reports.monthly import build_report, write_csv, write_xlsx

    cfg = load_config(config)
    if not out_dir.is_dir():
        raise InputError(str(out_dir), "directory does not exist")
    with _open_store(config) as store:
        report = build_report(cfg, period, store)
    csv_path = out_dir / f"monthly-{period}.csv"
    xlsx_path = out_dir / f"monthly-{period}.xlsx"
    write_csv(report, csv_path)
    write_xlsx(report, xlsx_path)
    out = _out()
    t = Table(title=f"Customers per label, {period}")
    t.add_column("label")
    t.add_column("customers", justify="right")
    for name, n in report.label_counts.items():
        add_row(t, name, str(n))
    out.print(t)
    out.print(f"{len(report.rows)} active customers in {period}")
    if report.trends:
        tr = Table(title="Trends per label (crm_operations findings in the store)")
        for col in ("period", "label", "currency", "new", "recurring", "resolved", "open value"):
            tr.add_column(col, justify="right" if col in ("new", "recurring", "resolved", "open value") else "left")
        for row in report.trends:
            add_row(tr, row.period, row.label, row.currency, str(row.new), str(row.recurring), str(row.resolved),
                    money(row.open_value, row.currency))
        out.print(tr)
    out.print(f"wrote {csv_path} and {xlsx_path}")


@report_app.command("labels")
def report_labels(markdown: bool = typer.Option(False, "--markdown", help="Print docs/report-labels.md.")) -> None:
    """The status labels of the monthly report and the finding categories behind each."""
    from tieout.reports.monthly import LABELS, labels_markdown

    if markdown:
        sys.stdout.write(labels_markdown())
        return
    t = Table(title="Monthly report labels (first matching label wins)")
    for col in ("label", "categories", "meaning"):
        t.add_column(col, overflow="fold")
    for lb in LABELS:
        add_row(t, lb.name, ", ".join(lb.categories) or "none", lb.meaning)
    _out().print(t)

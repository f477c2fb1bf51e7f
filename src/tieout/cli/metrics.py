"""`tieout metrics`: the stored metrics of every run over time, per period and currency, with the
prevented leakage (findings resolved before their invoice was sent)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import typer
from rich.table import Table

from tieout.cli import CONFIG_OPT, _metric_text, _open_store, _out, add_row, app

PREVENTED = "prevented_leakage"


@app.command("metrics")
def metrics_trend(
    config: Path = CONFIG_OPT,
    since: datetime | None = typer.Option(None, "--since", formats=["%Y-%m-%d"],
                                          help="First day of the earliest period shown (YYYY-MM-DD)."),
    currency: str | None = typer.Option(None, "--currency", help="Only this currency."),
) -> None:
    """Metrics over time: one table per currency, a column per period (the latest run's value)."""
    from tieout.metrics import METRICS

    start = since.strftime("%Y-%m") if since else ""
    with _open_store(config) as store:
        history = store.metric_history(start)
        prevented = store.prevented_leakage(start)
    out = _out()
    currencies = sorted({c for _, c, _ in history} | {c for _, c in prevented})
    if currency:
        currencies = [c for c in currencies if c == currency.upper()]
    if not currencies:
        out.print("no metrics stored for these periods yet (run `tieout run` first)")
        return
    for cur in currencies:
        periods = sorted({p for p, c, _ in history if c == cur} | {p for p, c in prevented if c == cur})
        t = Table(title=f"Metrics in {cur}" + (f" since {since:%Y-%m-%d}" if since else ""))
        t.add_column("metric")
        for p in periods:
            t.add_column(p, justify="right")
        for name in METRICS:
            cells = []
            for p in periods:
                hit = history.get((p, cur, name))
                cells.append("" if hit is None else _metric_text(hit[0], hit[1], cur))
            add_row(t, name, *cells)
        add_row(t, PREVENTED, *(_metric_text(str(prevented.get((p, cur), 0)), "minor", cur) for p in periods))
        out.print(t)

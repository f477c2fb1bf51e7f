"""`tieout validate`: pre-invoice validation of draft invoices (renders `billing.validate`).

Exit codes: 0 every draft passes, 1 a draft is held (at or above `billing.hold_on`) or a contract has
no draft, 2 bad input or config.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from tieout.cli import CONFIG_OPT, _out, add_row, app, money
from tieout.errors import ExitCode


@app.command()
def validate(
    config: Path = CONFIG_OPT,
    show_ok: bool = typer.Option(False, "--show-ok", help="List the drafts that pass too."),
    drafts: Path | None = typer.Option(None, "--drafts", help="Draft invoices and their lines from this CSV, XLSX "
                                       "or JSON file (docs/billing.md) instead of the configured invoice sources."),
) -> None:
    """Pre-invoice validation: each draft invoice against its expected invoice; ok or hold, with reasons."""
    from tieout.billing.draft_file import read_drafts
    from tieout.billing.validate import validate_drafts
    from tieout.config import load_config
    from tieout.engines import create_engine
    from tieout.pipeline import ingest

    cfg = load_config(config)
    from_file = read_drafts(drafts) if drafts is not None else {}  # a bad file stops before the sources are read
    engine = create_engine(cfg.engine)
    try:
        with _out().status("reading sources…"):
            tables, counts, quarantined, _inputs = ingest(cfg, engine, lambda _m: None)
        for name, data in from_file.items():
            tables[name] = engine.from_arrow(f"drafts_{name}", data)
        result = validate_drafts(engine, cfg.billing, cfg.severity, tables)
    finally:
        engine.close()
    out = _out()
    t = Table(title=f"Draft invoices ({len(result.drafts)}; {len(result.held)} held)")
    for col in ("draft", "customer", "verdict", "total", "money at risk", "reasons"):
        t.add_column(col, overflow="fold", justify="right" if col in ("total", "money at risk") else "left")
    for d in result.drafts:
        if d.verdict == "ok" and not show_ok:
            continue
        reasons = "\n".join(f"[{f.severity}] {f.category}: {f.explanation}" for f in d.findings) or "-"
        add_row(t, d.invoice_id, d.customer_id, Text(d.verdict, style="red" if d.verdict == "hold" else "green"),
                money(d.total, d.currency), money(d.money_at_risk, d.currency), Text(reasons))
    out.print(t)
    for f in result.missing:
        out.print(Text(f"missing draft: {f.subject}: {f.explanation}", style="red"), soft_wrap=True)
    n_q = len(quarantined)
    out.print(f"{len(result.drafts)} drafts, {len(result.held)} held, {len(result.drafts) - len(result.held)} ok, "
              f"{len(result.missing)} missing; {result.expected_lines:,} expected lines; "
              f"{sum(c.read for c in counts):,} rows read, {n_q:,} quarantined; hold_on={result.hold_on}")
    if not result.passes:
        raise typer.Exit(ExitCode.FINDINGS)

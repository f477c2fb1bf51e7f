"""`tieout sources test` and `tieout sources pull`: check and pull the configured sources.

Renders what `tieout.sources.probe` and `tieout.sources.connectors` return; no source logic here.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from tieout.cli import CONFIG_OPT, _out, add_row, sources_app
from tieout.errors import ExitCode


@sources_app.command("test")
def sources_test(
    name: list[str] | None = typer.Argument(None, help="Source names to test (default: every source)."),
    config: Path = CONFIG_OPT,
    sample: int = typer.Option(1000, "--sample", min=1, help="Records a connector reads at most for the test."),
) -> None:
    """Test each source: connectivity, authentication, columns vs the mapping, rows, time range; exit 2 on failure."""
    from tieout.config import load_config
    from tieout.sources.probe import probe_sources

    cfg = load_config(config)
    unknown = sorted(set(name or []) - {s.name for s in cfg.sources})
    if unknown:
        raise typer.BadParameter(f"no source named {', '.join(unknown)} (sources: "
                                 f"{', '.join(s.name for s in cfg.sources)})", param_hint="NAME")
    probes = probe_sources(cfg, name or None, sample)
    t = Table(title=f"Sources ({config})")
    for col in ("source", "format", "status", "rows", "time range", "columns"):
        t.add_column(col, overflow="fold")
    for p in probes:
        status = Text("ok", style="green") if p.ok else Text("FAILED", style="bold red")
        rows = f"{p.rows:,}" + (" (sample)" if p.sample else "") + (f", {p.quarantined:,} bad" if p.quarantined else "")
        span = f"{p.time_column} {p.first[:10]} .. {(p.last or '')[:10]}" if p.first else ""
        found = len(p.mapped) + len(p.missing)
        columns = p.problem or (f"{len(p.mapped)}/{found} mapped" + (f"; none for {', '.join(p.missing)}"
                                                                     if p.missing else "")
                                + (f"; {len(p.unused)} unused" if p.unused else ""))
        add_row(t, p.name, p.kind, status, rows if p.ok else "", span, Text(columns, style="" if p.ok else "red"))
    out = _out()
    out.print(t)
    failed = [p.name for p in probes if not p.ok]
    if failed:
        out.print(Text(f"{len(failed)} source(s) failed: {', '.join(failed)}: exit 2", style="red"))
        raise typer.Exit(ExitCode.BAD_INPUT)


@sources_app.command("pull")
def sources_pull(
    name: list[str] | None = typer.Argument(None, help="Connector sources to pull (default: all of them)."),
    config: Path = CONFIG_OPT,
    full_refresh: bool = typer.Option(False, "--full-refresh", help="Pull everything again, not only new or "
                                      "changed records."),
) -> None:
    """Pull connector sources now (incrementally unless --full-refresh) and snapshot each as Parquet."""
    from tieout.config import load_config
    from tieout.sources.connectors import is_connector_source, pull_source

    cfg = load_config(config)
    chosen = [(i, s) for i, s in enumerate(cfg.sources) if is_connector_source(s) and (not name or s.name in name)]
    if name and len(chosen) != len(set(name)):
        found = {s.name for _, s in chosen}
        raise typer.BadParameter(f"not a connector source: {', '.join(sorted(set(name) - found))}",
                                 param_hint="NAME")
    t = Table(title="Pulls")
    for col in ("source", "mode", "pulled", "snapshot rows", "snapshot", "sha256", "problems"):
        t.add_column(col, overflow="fold")
    for i, src in chosen:
        record, _ = pull_source(cfg, i, full_refresh=full_refresh)
        add_row(t, src.name, record.mode, f"{record.pulled:,}", f"{record.records:,}", record.pull_id,
                record.sha256[:16], str(record.problems))
    _out().print(t)

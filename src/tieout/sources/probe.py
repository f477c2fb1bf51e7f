"""`tieout sources test`: can each configured source be reached, authenticated, read and mapped?

A connector source is pulled into a throw-away directory (its cursor and snapshots untouched), a
file source is read where it lies; both then go through the real mapping and normalization, so
what this reports is what a run would see. Returns data; the CLI renders it.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tieout.config import Config, SourceConfig
from tieout.errors import TieoutError
from tieout.model import TABLES, Kind
from tieout.sources import read_file, source_files, source_format
from tieout.sources.connectors import connector_options, is_connector_source, pull_source
from tieout.sources.credentials import redact

SAMPLE_RECORDS = 1000  # a connector test reads about this many records, not the whole account


@dataclass
class SourceProbe:
    """What testing one source found."""

    name: str
    kind: str  # the format (a connector stream or a file layout)
    ok: bool = False
    reached: str = ""  # "connected" / file names
    rows: int = 0
    sample: bool = False  # rows is a sample (the connector stopped early)
    mapped: list[str] = field(default_factory=list)  # "canonical <- source column"
    missing: list[str] = field(default_factory=list)  # canonical columns with no source column
    unused: list[str] = field(default_factory=list)  # source columns nothing maps
    time_column: str | None = None
    first: str | None = None
    last: str | None = None
    quarantined: int = 0
    problem: str | None = None


def _time_column(table: str) -> str | None:
    t = TABLES[table]
    return next((c.name for c in t.columns if c.kind in (Kind.TIMESTAMP, Kind.DATE) and c.required),
                next((c.name for c in t.columns if c.kind in (Kind.TIMESTAMP, Kind.DATE)), None))


def probe_sources(cfg: Config, names: list[str] | None = None, sample: int = SAMPLE_RECORDS) -> list[SourceProbe]:
    """Test each source (or those named): reach, authenticate, read, map, count, time range."""
    from tieout.engines import create_engine

    wanted = [(i, s) for i, s in enumerate(cfg.sources) if not names or s.name in names]
    engine = create_engine(cfg.engine)
    out: list[SourceProbe] = []
    try:
        with tempfile.TemporaryDirectory(prefix="tieout-sources-test-") as tmp:
            for i, src in wanted:
                probe = SourceProbe(src.name, src.format)
                try:
                    _probe(cfg, i, src, engine, Path(tmp) / f"s{i}", sample, probe)
                    probe.ok = probe.problem is None
                except TieoutError as exc:
                    probe.problem = redact(str(exc).strip().splitlines()[0])
                out.append(probe)
    finally:
        engine.close()
    return out


def _probe(cfg: Config, index: int, src: SourceConfig, engine: object, scratch: Path, sample: int,
           probe: SourceProbe) -> None:
    from tieout.normalize import check_columns, effective_mapping, normalize

    fmt = source_format(cfg, index)
    table_name = src.table or fmt.table
    if table_name is None or table_name not in TABLES:
        probe.problem = f"no canonical table: set `table:` (one of {', '.join(sorted(TABLES))})"
        return
    table = TABLES[table_name]
    if is_connector_source(src):
        connector_options(cfg, index)
        record, _ = pull_source(cfg, index, full_refresh=True, directory=scratch, limit=sample)
        path = scratch / record.snapshot
        src = src.model_copy(update={"path": str(path)})
        probe.reached = f"connected, read {record.pulled:,} records"
        probe.sample = record.pulled >= sample
    if table_name == "gl_entries" and "currency" not in src.constants:
        src = src.model_copy(update={"constants": {**src.constants, "currency": cfg.home_currency}})
    files = source_files(cfg, src)
    if not is_connector_source(cfg.sources[index]):
        probe.reached = ", ".join(f.shown for f in files)
    time_col = _time_column(table_name)
    probe.time_column = time_col
    for f in files:
        raw = read_file(engine, fmt, src, f)  # type: ignore[arg-type]
        mapping = effective_mapping(src, fmt, table, raw.columns)
        kept = check_columns(raw, mapping, table)
        for canon in table.column_names:
            if canon in kept.columns:
                probe.mapped.append(f"{canon} <- {' | '.join(kept.columns[canon])}")
            elif canon in kept.constants:
                probe.mapped.append(f"{canon} = '{kept.constants[canon]}'")
            else:
                probe.missing.append(canon)
        used = {c for names in kept.columns.values() for c in names}
        probe.unused = [c for c in raw.columns if c not in used]
        norm = normalize(engine, raw, src, fmt, table, src.system or fmt.system or src.name)  # type: ignore[arg-type]
        counts = norm.aggregate(n=norm.count(), bad=norm._error_reason.notnull().sum()).to_pyarrow().to_pylist()[0]
        probe.rows += int(counts["n"] or 0)
        probe.quarantined += int(counts["bad"] or 0)
        if time_col:
            good = norm.filter(norm._error_reason.isnull())
            span = good.aggregate(lo=good[time_col].min(), hi=good[time_col].max()).to_pyarrow().to_pylist()[0]
            if span["lo"] is not None:
                lo, hi = str(span["lo"]), str(span["hi"])
                probe.first = lo if probe.first is None else min(probe.first, lo)
                probe.last = hi if probe.last is None else max(probe.last, hi)


__all__ = ["SourceProbe", "probe_sources"]

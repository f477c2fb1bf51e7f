"""One reconciliation run: extract → normalize → quality gate → checks → findings → metrics.

This room orchestrates and times the steps; each step lives in its own module. It returns data
(`RunResult`) and never prints: the CLI renders it.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import ibis
import ibis.expr.types as ir

from tieout.checks import CHECKS, CheckContext, check_params
from tieout.checks.registry import validate_check_names
from tieout.config import Config
from tieout.engines import create_engine
from tieout.errors import ConfigError, QueryError
from tieout.findings import Finding, build_findings, evidence_summary
from tieout.metrics import Metric, compute_metrics
from tieout.model import TABLES
from tieout.normalize import normalize
from tieout.quality import FileCount, gate
from tieout.sources import read_file, source_files, source_format
from tieout.store import Store

Progress = Callable[[str], None]


def tieout_version() -> str:
    try:
        return version("tieout")
    except PackageNotFoundError:
        return "0+unknown"


@dataclass
class RunResult:
    run_id: int
    as_of: date
    findings: list[Finding]
    counts: list[FileCount]
    metrics: list[Metric]
    quarantined: list[dict[str, Any]]
    checks_run: list[str]
    checks_skipped: dict[str, str]
    lifecycle: dict[str, int]
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def rows_read(self) -> int:
        return sum(c.read for c in self.counts)

    def findings_table(self) -> Any:
        """Findings as an Arrow table (for notebooks: `.to_pandas()`, `polars.from_arrow`)."""
        import pyarrow as pa

        rows = [f.as_dict() for f in self.findings]
        for r in rows:
            r["evidence"] = evidence_summary(r["evidence"])
        return pa.Table.from_pylist(rows)


def config_hash(cfg: Config) -> str:
    return hashlib.sha256(cfg.model_dump_json().encode()).hexdigest()


def _as_of(cfg: Config, tables: dict[str, ir.Table]) -> date:
    if cfg.as_of:
        return cfg.as_of
    candidates = []
    for name, col in (("gateway_transactions", "created_at"), ("payments", "received_at"),
                      ("invoices", "issued_at"), ("payouts", "arrival_date"), ("gl_entries", "posted_at")):
        if name in tables:
            v = tables[name][col].max().to_pyarrow().as_py()
            if v is not None:
                candidates.append(v.date() if hasattr(v, "date") else v)
    return max(candidates) if candidates else date.today()


def ingest(cfg: Config, engine: Any, progress: Progress) -> tuple[dict[str, ir.Table], list[FileCount],
                                                                    list[dict[str, Any]], list[dict[str, Any]]]:
    """Read, normalize and gate every source. Returns accepted tables, per-file counts,
    quarantined rows and the input files with checksums."""
    frames: dict[str, list[ir.Table]] = {}
    files: dict[str, list[tuple[str, str]]] = {}  # table -> (system, file) read, rows or not
    inputs: list[dict[str, Any]] = []
    for i, src in enumerate(cfg.sources):
        fmt = source_format(cfg, i)
        table_name = src.table or fmt.table
        if table_name is None:
            raise ConfigError(f"{cfg.where(('sources', i))}: sources.{i}.table: format '{fmt.name}' needs "
                              f"`table:` (one of {', '.join(sorted(TABLES))})")
        if table_name not in TABLES:
            raise ConfigError(f"{cfg.where(('sources', i, 'table'))}: sources.{i}.table: unknown table "
                              f"'{table_name}' (one of {', '.join(sorted(TABLES))})")
        table = TABLES[table_name]
        if table_name == "gl_entries" and "currency" not in src.constants:
            src = src.model_copy(update={"constants": {**src.constants, "currency": cfg.home_currency}})
        system = src.system or fmt.system or src.name
        for f in source_files(cfg, src):
            progress(f"reading {f.shown}")
            raw = read_file(engine, fmt, src, f)
            frames.setdefault(table_name, []).append(normalize(engine, raw, src, fmt, table, system))
            files.setdefault(table_name, []).append((system, f.shown))
            inputs.append({"source": src.name, "file": f.shown, "sha256": f.sha256, "bytes": f.size})
    tables: dict[str, ir.Table] = {}
    counts: list[FileCount] = []
    quarantined: list[dict[str, Any]] = []
    for name, fs in frames.items():
        progress(f"quality gate: {name}")
        g = gate(engine, TABLES[name], fs)
        tables[name] = g.accepted
        counts.extend(g.counts)
        counted = {(c.source, c.file) for c in g.counts}  # a header-only file has no row to count
        counts.extend(FileCount(name, system, shown, 0, 0, 0) for system, shown in files[name]
                      if (system, shown) not in counted)
        quarantined.extend(g.quarantine.order_by(["file", "line"]).to_pyarrow().to_pylist())
    return tables, counts, quarantined, inputs


def run(cfg: Config, *, progress: Progress | None = None, store: Store | None = None) -> RunResult:
    """Run every enabled check on the configured sources and record the results in the store."""
    say = progress or (lambda _msg: None)
    validate_check_names(cfg)
    params = {name: check_params(cfg, name) for name in CHECKS}
    own_store = store is None
    st = store or Store(cfg.store_url())
    timings: dict[str, float] = {}
    engine = create_engine(cfg.engine)
    run_id: int | None = None
    try:
        t0 = time.perf_counter()
        tables, counts, quarantined, inputs = ingest(cfg, engine, say)
        tables = engine.adopt(tables)
        timings["ingest"] = time.perf_counter() - t0
        run_id = st.start_run(config_hash(cfg), tieout_version(), inputs)
        as_of = _as_of(cfg, tables)
        ctx = CheckContext(engine, tables, as_of, cfg.home_currency)
        findings: list[Finding] = []
        ran: list[str] = []
        skipped: dict[str, str] = {}
        for name, check in CHECKS.items():
            p = params[name]
            if not p.enabled:
                skipped[name] = "disabled in config"
                continue
            missing = [t for t in check.tables if t not in tables]
            if missing:
                skipped[name] = f"no source for {', '.join(missing)}"
                continue
            say(f"check: {name}")
            t1 = time.perf_counter()
            expr = check.run(ctx, p)
            try:
                rows = expr.to_pyarrow().to_pylist()
            except Exception as exc:
                raise QueryError(f"check '{name}'", exc, _sql(expr)) from exc
            findings.extend(build_findings(name, rows, check.explanations, tables, cfg.severity))
            timings[f"check:{name}"] = time.perf_counter() - t1
            ran.append(name)
        findings.sort(key=lambda f: (-f.amount_at_risk, f.finding_id))
        t2 = time.perf_counter()
        lifecycle = st.record_findings(run_id, findings, ran)
        st.record_quarantine(run_id, [{k: r[k] for k in ("table_name", "source", "file", "line", "column_name",
                                                         "value", "reason")} for r in quarantined])
        pairs = ctx.cache.get("gateway_billing.charge_pairs")
        metrics = compute_metrics(tables, findings, pairs)
        st.record_metrics(run_id, [{"period": m.period, "currency": m.currency, "name": m.name,
                                    "value": m.value, "unit": m.unit} for m in metrics])
        timings["store"] = time.perf_counter() - t2
        timings["total"] = time.perf_counter() - t0
        result_counts = {
            "rows_read": sum(c.read for c in counts),
            "rows_accepted": sum(c.accepted for c in counts),
            "rows_quarantined": sum(c.quarantined for c in counts),
            "findings": len(findings),
            **{f"lifecycle_{k}": v for k, v in lifecycle.items()},
        }
        st.finish_run(run_id, "succeeded", as_of.isoformat(), result_counts, timings)
        return RunResult(run_id, as_of, findings, counts, metrics, quarantined, ran, skipped, lifecycle, timings)
    except BaseException:
        if run_id is not None:
            st.finish_run(run_id, "failed", None, {}, timings)
        raise
    finally:
        engine.close()
        if own_store:
            st.close()


def _sql(expr: ir.Table) -> str | None:
    try:
        return str(ibis.to_sql(expr))
    except Exception:
        return None

"""One reconciliation run: extract → normalize → quality gate → checks → findings → metrics.

This room orchestrates and times the steps; each step lives in its own module. It returns data
(`RunResult`) and never prints: the CLI renders it.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import ibis.expr.types as ir

from tieout.checks import CheckContext, check_params
from tieout.config import Config
from tieout.engines import create_engine
from tieout.errors import ConfigError, InputError, StoreError
from tieout.findings import Finding, evidence_summary
from tieout.links import link_entities, write_run_links
from tieout.metrics import Metric, compute_metrics
from tieout.model import TABLES
from tieout.normalize import normalize
from tieout.notify.outbox import DispatchReport, channel_settings, dispatch, notice_plan
from tieout.quality import FileCount, gate
from tieout.routing import triage
from tieout.rules import RuleFailure, ShadowDiff, diff_shadow, load_rules
from tieout.rules.execute import run_checks
from tieout.sources import InputFile, read_file, source_files, source_format
from tieout.sources.connectors import pull_connectors
from tieout.sources.tabular import file_read_error
from tieout.store import OPEN_STATUSES, RunRecord, Store

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
    checks_failed: list[RuleFailure] = field(default_factory=list)  # rules that failed to load or run
    shadow: list[ShadowDiff] = field(default_factory=list)  # shadow rules: findings never stored or routed
    rule_versions: dict[str, str] = field(default_factory=dict)  # rule -> content hash, also in the run record
    notifications: DispatchReport | None = None

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
    files: dict[str, list[tuple[str, InputFile]]] = {}  # table -> (system, file) read, rows or not
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
            try:
                frame = normalize(engine, raw, src, fmt, table, system)
            except Exception as exc:
                raise _read_error(exc, f, raw.kind) from None
            frames.setdefault(table_name, []).append(frame)
            files.setdefault(table_name, []).append((system, f))
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
        counts.extend(FileCount(name, system, f.shown, 0, 0, 0) for system, f in files[name]
                      if (system, f.shown) not in counted)
        quarantined.extend(g.quarantine.order_by(["file", "line"]).to_pyarrow().to_pylist())
    return tables, counts, quarantined, inputs


def _read_error(exc: Exception, f: InputFile, kind: str) -> Exception:
    """Files are read lazily, by the query that normalizes them: a malformed row (a ragged line far
    into a big CSV, a corrupt Parquet page) fails there. Name the file (and line) when the engine
    names it; anything else, an InputError already naming it included, stays as it is."""
    if isinstance(exc, InputError) or str(f.path) not in str(exc):
        return exc
    return file_read_error(f.shown, exc, kind)


def run(cfg: Config, *, progress: Progress | None = None, store: Store | None = None,
        shadow: Sequence[str] = (), notify: bool = True, actor: str = "tieout",
        full_refresh: bool = False) -> RunResult:
    """Run every enabled check and rule on the configured sources and record the results in the store (one
    transaction, under the store's run lock), then send the notices it queued. `shadow` rules run too, but
    their findings are only compared with the active version's: never stored, routed or notified.
    `full_refresh` pulls every connector source in full instead of from its cursor."""
    say = progress or (lambda _msg: None)
    rules = load_rules(cfg, shadow)
    link_readers = []  # enabled checks and rules that read the entity links (without one, resolving may be skipped)
    for name, check in rules.checks.items():
        if (check_params(cfg, name, check).enabled or name in shadow) and "entity_links" in check.tables:
            link_readers.append(check.tables)
    channel_settings(cfg)  # a bad notify section stops the run before any work
    own_store = store is None
    st = store or Store(cfg.store_url())
    timings: dict[str, float] = {}
    engine = create_engine(cfg.engine, cfg)
    started_at = datetime.now(UTC)
    inputs: list[dict[str, Any]] | None = None
    try:
        with st.run_lock():
            t0 = time.perf_counter()
            # connector sources: pull, snapshot, then read like files
            pulled = pull_connectors(cfg, say, full_refresh=full_refresh)
            tables, counts, quarantined, inputs = ingest(pulled.config, engine, say)
            pulled.annotate(inputs, quarantined)
            reads_links = any(all(t in tables for t in needs if t != "entity_links") for needs in link_readers)
            links, resolution = link_entities(cfg, engine, tables, st, read=reads_links)  # tieout.links
            tables.update(links)
            tables = engine.adopt(tables)  # the engine the checks run on takes the tables over
            timings["ingest"] = time.perf_counter() - t0
            as_of = _as_of(cfg, tables)
            ctx = CheckContext(engine, tables, as_of, cfg.home_currency,
                               billing=cfg.billing if cfg.billing.products else None)
            checks = run_checks(cfg, rules, ctx, shadow, say)
            findings, ran, skipped = checks.findings, checks.ran, checks.skipped
            timings.update(checks.timings)
            shadow_diffs = [diff_shadow(name, rules.checks[name].version, found,
                                        st.findings(check=name, status=list(OPEN_STATUSES)))
                            for name, found in checks.shadow.items()]
            pairs = ctx.cache.get("gateway_billing.charge_pairs")
            metrics = compute_metrics(tables, findings, pairs)
            t2 = time.perf_counter()
            result_counts = {
                "rows_read": sum(c.read for c in counts),
                "rows_accepted": sum(c.accepted for c in counts),
                "rows_quarantined": sum(c.quarantined for c in counts),
                "findings": len(findings),
                "checks_failed": len(checks.failed),
                **{f"shadow_{k}": sum(d.summary()[k] for d in shadow_diffs) for k in ("new", "gone", "changed")},
            }
            timings["total"] = t2 - t0
            versions = {c.name: c.version for c in rules.checks.values()}
            recorded = st.record_run(RunRecord(
                started_at=started_at, config_hash=config_hash(cfg), tieout_version=tieout_version(),
                inputs=inputs + rules.audit(cfg, shadow), rule_versions=versions, as_of=as_of.isoformat(),
                findings=findings, checks_run=ran,
                quarantine=[{k: r[k] for k in ("table_name", "source", "file", "line", "column_name", "value",
                                               "reason")} for r in quarantined],
                metrics=[{"period": m.period, "currency": m.currency, "name": m.name, "value": m.value,
                          "unit": m.unit} for m in metrics],
                counts=result_counts, timings=timings, actor=actor,
                triage=triage(cfg.priority, cfg.routing, customer_segments(tables)
                              if any(r.segment is not None for r in cfg.routing.rules) else {}),
                notices=notice_plan(cfg.notify) if cfg.notify.channels else None,  # none: no finding to look up
                also=[] if resolution is None else [lambda s, run_id: write_run_links(s, run_id, resolution)]))
            timings["store"] = time.perf_counter() - t2
        result = RunResult(recorded.run_id, as_of, findings, counts, metrics, quarantined, ran, skipped,
                           recorded.lifecycle, timings, checks_failed=list(checks.failed.values()),
                           shadow=shadow_diffs, rule_versions=versions)
        if notify and cfg.notify.channels:
            say("sending notices")
            result.notifications = dispatch(cfg, st)
        return result
    except BaseException as exc:
        if inputs is not None and not isinstance(exc, StoreError):
            with contextlib.suppress(Exception):  # the original error matters more than recording it
                st.record_failed_run(started_at, config_hash(cfg), tieout_version(), inputs,
                                     f"{type(exc).__name__}: {exc}".splitlines()[0], timings, actor)
        raise
    finally:
        engine.close()
        if own_store:
            st.close()


def customer_segments(tables: dict[str, ir.Table]) -> dict[str, str]:
    """customer_id -> segment, for routing rules on segment (a small result)."""
    customers = tables.get("customers")
    if customers is None or "segment" not in customers.columns:
        return {}
    rows = customers.filter(customers.segment.notnull()).select("customer_id", "segment").to_pyarrow().to_pylist()
    return {r["customer_id"]: r["segment"] for r in rows}


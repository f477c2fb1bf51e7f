"""Profile the checks phase of one run: ingest once (as `pipeline.run` does), then, per check, the
time to build and compile its Ibis expression, each materialization it makes, the findings query
(and each of its union's parts alone, with `--parts`), and `build_findings` split into evidence
resolution and the Python that builds the Finding objects; then the metrics.

    python bench/checks_profile.py bench/data/1M                     # every enabled check
    python bench/checks_profile.py bench/data/1M --checks gateway_billing --parts
    python bench/checks_profile.py bench/data/1M --explain gateway_billing   # EXPLAIN ANALYZE of its query

Nothing is stored. Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.operations as ops
import ibis.expr.types as ir


def _union_parts(expr: ir.Table) -> list[ir.Table]:
    """The leaves of a (nested) UNION ALL: one findings_table per category part."""
    op = expr.op()
    if isinstance(op, ops.Union) and not op.distinct:
        return _union_parts(op.left.to_expr()) + _union_parts(op.right.to_expr())
    return [expr]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workspace", type=Path)
    ap.add_argument("--checks", default="", help="comma-separated check names (default: every enabled one)")
    ap.add_argument("--parts", action="store_true", help="also time each part of a check's findings union")
    ap.add_argument("--explain", default="", help="EXPLAIN ANALYZE the findings query of this check")
    ap.add_argument("--repeat", type=int, default=1, help="run the checks this many times on one ingest")
    a = ap.parse_args(argv)

    from tieout.checks import CheckContext
    from tieout.config import load_config
    from tieout.engines import create_engine
    from tieout.engines.duckdb import DuckDBEngine
    from tieout.findings import build_findings, resolve_evidence
    from tieout.links import link_entities
    from tieout.metrics import compute_metrics
    from tieout.pipeline import _as_of, ingest
    from tieout.rules import load_rules
    from tieout.rules.execute import check_variants, findings_expr
    from tieout.store import Store

    spent: dict[str, list[float]] = {}
    orig_mat = DuckDBEngine.materialize

    def timed_mat(self: DuckDBEngine, name: str, expr: ir.Table, **kw: Any) -> ir.Table:
        t = time.perf_counter()
        try:
            return orig_mat(self, name, expr, **kw)
        finally:
            acc = spent.setdefault(name, [0.0, 0])
            acc[0] += time.perf_counter() - t
            acc[1] += 1

    DuckDBEngine.materialize = timed_mat  # type: ignore[method-assign]

    os.chdir(a.workspace)
    cfg = load_config(Path("tieout.yaml"))
    rules = load_rules(cfg, ())
    engine = create_engine(cfg.engine, cfg)
    st = Store("sqlite://")  # in memory: decisions on entity links are none
    t0 = time.perf_counter()
    tables, *_ = ingest(cfg, engine, lambda _m: None)
    links, _ = link_entities(cfg, engine, tables, st)
    tables.update(links)
    st.close()
    print(f"ingest + links: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    as_of = _as_of(cfg, tables)
    wanted = [c for c in a.checks.split(",") if c]
    load = os.getloadavg()
    for rep in range(a.repeat):
        spent.clear()
        ctx = CheckContext(engine, tables, as_of, cfg.home_currency,
                           billing=cfg.billing if cfg.billing.products else None)
        all_findings = []
        print(f"\n-- round {rep + 1} (load {load[0]:.2f})")
        for name, check in rules.checks.items():
            variants = check_variants(cfg, name, check)
            if not variants[0][1].enabled or (wanted and name not in wanted):
                continue
            if any(t not in tables for t in check.tables) or (check.needs_catalog and ctx.billing is None):
                continue
            spent.clear()
            t = time.perf_counter()
            expr = findings_expr(check, ctx, variants)
            t_build = time.perf_counter() - t
            mats = dict(spent)
            t = time.perf_counter()
            sql = ibis.to_sql(expr, dialect="duckdb")
            t_sql = time.perf_counter() - t
            t = time.perf_counter()
            rows = expr.to_pyarrow().to_pylist()
            t_query = time.perf_counter() - t
            wanted_refs: set[tuple[str, str]] = set()
            for r in rows:
                for part in (r.get("evidence") or "").split(";"):
                    if ":" in part:
                        tb, key = part.split(":", 1)
                        wanted_refs.add((tb, key))
            t = time.perf_counter()
            resolve_evidence(tables, wanted_refs)
            t_ev = time.perf_counter() - t
            t = time.perf_counter()
            found = build_findings(name, rows, check.explanations, tables, cfg.severity)
            t_bf = time.perf_counter() - t
            all_findings.extend(found)
            print(f"{name}: {len(rows)} findings; build expr (incl. materializations) {t_build:.2f} s, "
                  f"compile {t_sql:.2f} s ({len(sql):,} chars SQL), findings query {t_query:.2f} s, "
                  f"build_findings {t_bf:.2f} s (evidence alone {t_ev:.2f} s, {len(wanted_refs):,} refs)")
            for k, (s, n) in sorted(mats.items(), key=lambda kv: -kv[1][0]):
                print(f"    materialize {k:<28} {s:6.2f} s  x{int(n)}")
            if a.parts:
                for i, part in enumerate(_union_parts(expr)):
                    t = time.perf_counter()
                    n = part.to_pyarrow().num_rows
                    print(f"    part {i:<2} {time.perf_counter() - t:6.2f} s  {n:>6} rows")
            if a.explain == name:
                plan = engine.con.raw_sql(f"EXPLAIN ANALYZE {sql}").fetchall()
                print(plan[0][1])
        t = time.perf_counter()
        compute_metrics(tables, all_findings, ctx.cache.get("gateway_billing.charge_pairs"))
        print(f"metrics: {time.perf_counter() - t:.2f} s")
        load = os.getloadavg()
    print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    engine.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

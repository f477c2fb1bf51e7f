"""Profile one source's ingest query on DuckDB: EXPLAIN ANALYZE of the query that parses,
normalizes and key-counts a file (the gate's first materialization), and the time of each canonical
column's parse expression alone.

    python bench/profile.py bench/data/1M stripe_balance            # the plan, with timings
    python bench/profile.py bench/data/1M invoices --columns         # + seconds per column
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import ibis

from tieout.config import load_config
from tieout.engines.duckdb import duckdb_engine
from tieout.model import TABLES
from tieout.normalize import normalize
from tieout.sources import read_file, source_files, source_format


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workspace", type=Path)
    ap.add_argument("source", help="a source name of the workspace's tieout.yaml")
    ap.add_argument("--columns", action="store_true", help="also time each column's parse alone")
    a = ap.parse_args(argv)
    cfg = load_config(a.workspace / "tieout.yaml")
    (i, src), = [(i, s) for i, s in enumerate(cfg.sources) if s.name == a.source]
    fmt = source_format(cfg, i)
    table = TABLES[src.table or fmt.table or ""]
    engine = duckdb_engine(cfg)
    try:
        (f,) = source_files(cfg, src)
        t = time.perf_counter()
        raw = read_file(engine, fmt, src, f)
        print(f"read_file (file checks + view): {time.perf_counter() - t:.2f} s", file=sys.stderr)
        norm = normalize(engine, raw, src, fmt, table, src.system or fmt.system or src.name)
        w = ibis.window(group_by=[*(norm[k] for k in table.key), norm._error_reason.isnull()])
        expr = norm.mutate(_keyed=norm._line.count().over(w))
        sql = ibis.to_sql(expr, dialect="duckdb")
        t = time.perf_counter()
        plan = engine.con.raw_sql(f"EXPLAIN ANALYZE CREATE TABLE _profiled AS {sql}").fetchall()
        print(f"parse+normalize+count query: {time.perf_counter() - t:.2f} s", file=sys.stderr)
        print(plan[0][1])
        # What the key count costs: the same rows without the window, then a hash aggregate per key.
        plain = ibis.to_sql(norm, dialect="duckdb")
        t = time.perf_counter()
        engine.con.raw_sql(f"CREATE TABLE _plain AS {plain}")
        t_plain = time.perf_counter() - t
        keys = ", ".join(f'"{k}"' for k in table.key)
        t = time.perf_counter()
        engine.con.raw_sql(f"CREATE TABLE _shared AS SELECT {keys}, count(*) AS n FROM _plain "
                           f"WHERE _error_reason IS NULL GROUP BY ALL HAVING count(*) > 1")
        t_agg = time.perf_counter() - t
        print(f"same rows without the window: {t_plain:.2f} s; keys shared by several rows (hash aggregate): "
              f"{t_agg:.2f} s", file=sys.stderr)
        if a.columns:
            for col in table.column_names:
                q = norm.select(col, "_error_reason").aggregate(n=ibis._.count(), e=ibis._[col].count())
                t = time.perf_counter()
                q.to_pyarrow()
                print(f"  {col:<24} {time.perf_counter() - t:6.2f} s", file=sys.stderr)
    finally:
        engine.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

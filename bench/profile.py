"""Profile one source's ingest queries on DuckDB: the time of `normalize` (for a CSV read lazily it
reads the mapped columns into a scratch table: the scan that numbers lines runs on one thread), then
EXPLAIN ANALYZE of the query that parses and normalizes them (the gate's first materialization),
the gate's hash aggregate of shared keys, and the time of each canonical column's parse alone.

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
        t = time.perf_counter()
        norm = normalize(engine, raw, src, fmt, table, src.system or fmt.system or src.name)
        print(f"normalize (reads a lazy CSV's mapped columns): {time.perf_counter() - t:.2f} s", file=sys.stderr)
        sql = ibis.to_sql(norm, dialect="duckdb")
        t = time.perf_counter()
        plan = engine.con.raw_sql(f"EXPLAIN ANALYZE CREATE TABLE _plain AS {sql}").fetchall()
        print(f"parse+normalize query: {time.perf_counter() - t:.2f} s", file=sys.stderr)
        print(plan[0][1])
        keys = ", ".join(f'"{k}"' for k in table.key)
        t = time.perf_counter()
        engine.con.raw_sql(f"CREATE TABLE _shared AS SELECT {keys}, count(*) AS n FROM _plain "
                           f"WHERE _error_reason IS NULL GROUP BY ALL HAVING count(*) > 1")
        print(f"keys shared by several rows (the gate's hash aggregate): {time.perf_counter() - t:.2f} s",
              file=sys.stderr)
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

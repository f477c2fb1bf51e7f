"""DuckDB, the embedded default engine: in-process, spills to disk, reads CSV/Parquet natively."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
import pyarrow as pa

from tieout.config import Config, DuckDBConfig
from tieout.engines import register_engine

_NAIVE_TS = dt.Timestamp()
_UTC_TS = dt.Timestamp(timezone="UTC")


@ibis.udf.scalar.builtin(name="try_strptime")  # type: ignore[untyped-decorator]
def _try_strptime(text: str, fmt: str) -> _NAIVE_TS:  # type: ignore[valid-type]
    ...


@ibis.udf.scalar.builtin(name="timezone")  # type: ignore[untyped-decorator]
def _timezone(zone: str, ts: _NAIVE_TS) -> _UTC_TS:  # type: ignore[valid-type]
    ...


# DuckDB's own default is 80% of RAM, and it keeps every table in memory up to it: a 10M-row bench
# run then peaked at 17 GB (all checks, 201 s) or 11.7 GB (gateway_billing alone, 145-167 s). Capped
# at 2 GB it spills instead: 191 s at 2.7 GB, and 191 s at 2.6 GB (bench/README.md). tieout caps
# DuckDB at 2 GB unless `duckdb.memory_limit` says otherwise. More can be faster (gateway_billing alone
# at 10M: 145-167 s with 12 GB), but not always (all checks at 10M with a 3 GB cap: 206 s).
DEFAULT_MEMORY_LIMIT_BYTES = 2 * 1024**3


def default_memory_limit() -> str:
    """2 GB, or 80% of the machine's memory when that is less (DuckDB's own default)."""
    limit = DEFAULT_MEMORY_LIMIT_BYTES
    with contextlib.suppress(AttributeError, ValueError, OSError):  # no sysconf (Windows): 2 GB
        limit = min(limit, int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") * 0.8))
    return f"{limit // 1024**2}MB"


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class DuckDBEngine:
    name = "duckdb"

    def __init__(
        self, memory_limit: str | None = None, threads: int | None = None, temp_directory: str | None = None
    ) -> None:
        # An in-memory database that compresses its tables (as a database file does): at 1M bench
        # rows a table is stored about 2x faster than into a file, where every stored table is
        # written out (1M-TARGET tieout_gb: 25.8 s -> 23.6 s). Past `memory_limit` DuckDB spills its
        # blocks to `temp_directory` instead of failing. A DuckDB without in-memory compression gets
        # a database file in the same directory (compressed too, and its pages can be dropped once
        # written).
        self._tmp = tempfile.TemporaryDirectory(prefix="tieout-duckdb-", dir=temp_directory)
        self.con: Any = ibis.duckdb.connect()
        try:
            self.con.raw_sql("ATTACH ':memory:' AS work (COMPRESS)")
        except Exception:  # duckdb.ParserException/BinderException: the option is unknown
            self.con.raw_sql(f"ATTACH {_sql_string(os.path.join(self._tmp.name, 'work.duckdb'))} AS work")
        self.con.raw_sql("USE work")
        self.con.raw_sql("SET TimeZone = 'UTC'")
        self.con.raw_sql(f"SET temp_directory = {_sql_string(self._tmp.name)}")
        self.con.raw_sql(f"SET memory_limit = {_sql_string(memory_limit or default_memory_limit())}")
        if threads:
            self.con.raw_sql(f"SET threads = {int(threads)}")
        self._n = 0

    def _name(self, stem: str) -> str:
        self._n += 1
        return f"_{stem}_{self._n}"

    def read_csv_text(
        self, path: Path, *, encoding: str, delimiter: str | None, skip_rows: int = 0
    ) -> ir.Table:
        opts = [
            "header = true",
            "all_varchar = true",
            "null_padding = true",
            "auto_detect = true",
            f"encoding = {_sql_string(encoding.lower().replace('_', '-'))}",
        ]
        if delimiter:
            opts.append(f"delim = {_sql_string(delimiter)}")
        if skip_rows:
            opts.append(f"skip = {int(skip_rows)}")
        name = self._name("raw")
        # A view, not a table: the file is parsed once, by the query that normalizes it.
        # row_number() over a single scan keeps file order (DuckDB preserves insertion order);
        # tests/test_sources.py checks it on a multi-million-row file.
        self.con.raw_sql(
            f"CREATE VIEW {name} AS SELECT row_number() OVER () + {1 + int(skip_rows)} AS _line, * "
            f"FROM read_csv({_sql_string(str(path))}, {', '.join(opts)})"
        )
        return self.con.table(name)

    def read_parquet_text(self, path: Path) -> ir.Table:
        name = self._name("raw")
        self.con.raw_sql(
            f"CREATE VIEW {name}_typed AS SELECT * FROM read_parquet({_sql_string(str(path))})"
        )
        typed = self.con.table(f"{name}_typed")
        cols = {c: typed[c].cast("string") for c in typed.columns}
        expr = typed.select(_line=(ibis.row_number() + 2).cast("int64"), **cols)
        return self.con.create_view(name, expr)

    def from_arrow(self, name: str, table: pa.Table) -> ir.Table:
        return self.con.create_table(self._name(name), table)

    def materialize(self, name: str, expr: ir.Table, *, scratch: bool = False) -> ir.Table:
        # A scratch result is a temporary table: not compressed like the work database's tables (spilled
        # past memory_limit all the same); it is read a few times and dropped with the session.
        return self.con.create_table(self._name(name), expr, temp=scratch)

    def parse_timestamp(self, text: ir.StringValue, fmt: str) -> ir.TimestampValue:
        return _try_strptime(text, fmt)

    def local_to_utc(self, ts: ir.TimestampValue, zone: str) -> ir.TimestampValue:
        if zone.upper() == "UTC":
            return ts.cast(dt.Timestamp(timezone="UTC"))
        return _timezone(zone, ts)

    def adopt(self, tables: dict[str, ir.Table]) -> dict[str, ir.Table]:
        return tables  # ingest and checks share this session

    def close(self) -> None:
        try:
            self.con.disconnect()
        finally:
            self._tmp.cleanup()


def duckdb_engine(cfg: Config | None = None) -> DuckDBEngine:
    """A DuckDB session with the `duckdb:` settings of `cfg` (defaults without one)."""
    s = cfg.duckdb if cfg is not None else DuckDBConfig.model_validate({})
    temp = str(cfg.resolve(s.temp_directory)) if cfg is not None and s.temp_directory else None
    return DuckDBEngine(s.memory_limit, s.threads, temp)


@register_engine("duckdb")
def _create(cfg: Config | None = None) -> DuckDBEngine:
    return duckdb_engine(cfg)

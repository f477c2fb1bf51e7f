"""Spark (PySpark through Ibis), for data that outgrows one machine: the checks and metrics run here.

Ingest (reading the users' files, normalizing, the quality gate) stays on an embedded DuckDB
session, which owns the exact-line and encoding handling; the accepted canonical tables are then
handed to Spark as Parquet (`adopt`), and every check, match and metric runs on Spark. See
docs/spark.md. pyspark is imported only when this engine is created.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ibis.expr.types as ir
import pyarrow as pa

from tieout.engines import register_engine
from tieout.engines.duckdb import DuckDBEngine, duckdb_engine

if TYPE_CHECKING:
    from tieout.config import Config

# Where the canonical tables are staged as Parquet for Spark. Local mode: a temporary directory.
# On a cluster: a location the driver can write and every executor can read (docs/spark.md).
STAGING_ENV = "TIEOUT_SPARK_STAGING"
# Shuffle partitions for a local session: Spark's default (200) makes tiny joins slow; a cluster
# keeps whatever spark-submit / spark-defaults.conf set.
_LOCAL_SHUFFLE_PARTITIONS = "4"


def _backend_class() -> type:
    """Ibis' PySpark backend, fetching results as Arrow (`DataFrame.toArrow`, PySpark ≥ 4.0) instead
    of through pandas: exact types, and no pandas in the result path."""
    from ibis.backends.pyspark import Backend
    from ibis.formats.pyarrow import PyArrowData

    class ArrowPySparkBackend(Backend):  # type: ignore[misc]
        def to_pyarrow(self, expr: ir.Expr, /, *, params: Any = None, limit: Any = None, **kwargs: Any) -> Any:
            table_expr = expr.as_table()
            self._run_pre_execute_hooks(table_expr)
            sql = self.compile(table_expr, params=params, limit=limit, **kwargs)
            with warnings.catch_warnings():
                # PySpark leaves its result socket to the garbage collector ("automatically closed
                # when garbage-collected"), which warns; it is closed here, when the frame is freed.
                warnings.simplefilter("ignore", ResourceWarning)
                arrow = self._session.sql(sql).toArrow()
            return expr.__pyarrow_result__(PyArrowData.convert_table(arrow, table_expr.schema()))

    return ArrowPySparkBackend


def _session() -> Any:
    """The active SparkSession, or a new one. `SPARK_REMOTE` (Spark Connect), spark-submit's
    `--master`/`--conf` and spark-defaults.conf are honoured as PySpark does; alone, local mode."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    builder = SparkSession.builder.appName("tieout").config("spark.ui.showConsoleProgress", "false")
    session = builder.getOrCreate()
    try:
        master = session.conf.get("spark.master", "") or ""
    except Exception:  # a Spark Connect server may not expose it; it is not local mode then
        master = ""
    if master.startswith("local"):
        session.conf.set("spark.sql.shuffle.partitions", _LOCAL_SHUFFLE_PARTITIONS)
    return session


class SparkEngine:
    """Checks on Spark; ingest delegated to an embedded DuckDB session (`ingest`)."""

    name = "spark"

    def __init__(self, session: Any | None = None, staging: str | None = None,
                 ingest: DuckDBEngine | None = None) -> None:
        self.ingest = ingest or DuckDBEngine()
        self._session = session if session is not None else _session()
        self.con: Any = _backend_class()().connect(self._session)
        staging = staging or os.environ.get(STAGING_ENV)
        self._tmp = None if staging else tempfile.TemporaryDirectory(prefix="tieout-spark-")
        self._staging = staging or (self._tmp.name if self._tmp else "")
        self._run = os.urandom(4).hex()  # keeps staged files and views of concurrent runs apart
        self._n = 0
        self._views: list[str] = []
        self._cached: list[Any] = []
        self._adopted = False  # once the canonical tables are on Spark, new tables go there too

    def _name(self, stem: str) -> str:
        self._n += 1
        return f"_{stem}_{self._run}_{self._n}"

    # -- ingest: on the embedded DuckDB session ------------------------------------------------
    def read_csv_text(
        self, path: Path, *, encoding: str, delimiter: str | None, skip_rows: int = 0
    ) -> ir.Table:
        return self.ingest.read_csv_text(path, encoding=encoding, delimiter=delimiter, skip_rows=skip_rows)

    def read_parquet_text(self, path: Path) -> ir.Table:
        return self.ingest.read_parquet_text(path)

    def from_arrow(self, name: str, table: pa.Table) -> ir.Table:
        """Before the hand-over, a table for ingest (DuckDB); after it, a table on Spark, so a check
        that builds a small table of its own (a catalog, a calendar) joins it on the same backend."""
        staged = self.ingest.from_arrow(name, table)
        return self._stage(name, staged) if self._adopted else staged

    def parse_timestamp(self, text: ir.StringValue, fmt: str) -> ir.TimestampValue:
        return self.ingest.parse_timestamp(text, fmt)

    def local_to_utc(self, ts: ir.TimestampValue, zone: str) -> ir.TimestampValue:
        return self.ingest.local_to_utc(ts, zone)

    # -- the hand-over and the checks: on Spark -------------------------------------------------
    def adopt(self, tables: dict[str, ir.Table]) -> dict[str, ir.Table]:
        """Stage each accepted canonical table as Parquet and register it as a Spark view."""
        out = {name: self._stage(name, table) for name, table in tables.items()}
        self._adopted = True
        return out

    def _stage(self, name: str, table: ir.Table) -> ir.Table:
        view = self._name(name)
        target = f"{self._staging.rstrip('/')}/{self._run}/{view.lstrip('_')}.parquet"  # Spark skips _names
        if "://" not in target:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
        self.ingest.con.to_parquet(table, target)
        self._session.read.parquet(target).createOrReplaceTempView(view)
        self._views.append(view)
        # Spark reads Parquet's UTC timestamps as its session-zone TIMESTAMP, which Ibis types as
        # naive; the canonical types (timestamp('UTC')) are restored so results match DuckDB's.
        return self.con.table(view).cast(table.schema())

    def materialize(self, name: str, expr: ir.Table, *, scratch: bool = False) -> ir.Table:
        if expr._find_backend() is not self.con:
            return self.ingest.materialize(name, expr, scratch=scratch)
        view = self._name(name)
        # localCheckpoint computes the frame once and cuts its lineage, so the rounds of a composite
        # match do not re-plan (and re-run) every earlier round.
        self.con._run_pre_execute_hooks(expr)  # registers the in-memory tables (ibis.memtable) the SQL names
        df = self._session.sql(self.con.compile(expr)).localCheckpoint(eager=True)
        df.createOrReplaceTempView(view)
        self._views.append(view)
        self._cached.append(df)
        return self.con.table(view)

    def close(self) -> None:
        # The SparkSession is left running: it belongs to the process (getOrCreate, spark-submit),
        # and stopping it would make the next run in the same process start the JVM again.
        try:
            for df in self._cached:
                df.unpersist()
            for view in self._views:
                self._session.catalog.dropTempView(view)
        finally:
            self.ingest.close()
            if self._tmp is not None:
                self._tmp.cleanup()


@register_engine("spark")
def _create(cfg: Config | None = None) -> SparkEngine:
    return SparkEngine(ingest=duckdb_engine(cfg))  # ingest keeps the `duckdb:` settings

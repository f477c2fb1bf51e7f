"""Spark parity: the demo workspace run with `engine: spark` (PySpark, local mode) gives exactly the
findings and metrics of the DuckDB run. One Spark run for the module: the JVM start dominates.
"""

from __future__ import annotations

import gc
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DemoRun
from tieout.config import load_config
from tieout.engines import create_engine, engine_names
from tieout.pipeline import RunResult, run


@pytest.fixture(scope="module")
def spark_local(monkeypatch_module: pytest.MonkeyPatch) -> Iterator[None]:
    """A local Spark session bound to loopback, stopped when the module ends."""
    monkeypatch_module.setenv("SPARK_LOCAL_IP", "127.0.0.1")
    monkeypatch_module.delenv("SPARK_REMOTE", raising=False)
    yield
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        active.stop()
    # SparkContext.stop leaves the JVM running until Python exits; the rest of the suite does not need it.
    gateway = SparkContext._gateway
    if gateway is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)  # py4j leaves its sockets to the collector
            gateway.shutdown()
            proc = getattr(gateway, "proc", None)
            if proc is not None:
                if proc.stdin is not None:  # the JVM PySpark launched exits when its stdin closes
                    proc.stdin.close()
                proc.terminate()
                proc.wait()
            SparkContext._gateway = None
            SparkContext._jvm = None
            gc.collect()


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@pytest.fixture(scope="module")
def spark_run(demo_run_other_seed: DemoRun, spark_local: None, tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    """The same workspace, with `engine: spark` in its tieout.yaml and a store of its own."""
    demo = demo_run_other_seed
    out = tmp_path_factory.mktemp("spark-run")
    text = (demo.path / "tieout.yaml").read_text(encoding="utf-8")
    assert "engine: duckdb\n" in text
    text = text.replace("engine: duckdb\n", "engine: spark\n")
    text = text.replace("store: sqlite:///tieout.db", f"store: sqlite:///{out / 'spark.db'}")
    (out / "data").symlink_to(demo.path / "data")  # same relative paths, so the same source_ref
    (out / "tieout.yaml").write_text(text, encoding="utf-8")
    cfg = load_config(out / "tieout.yaml")
    assert cfg.engine == "spark"
    return run(cfg)


def _findings(result: RunResult) -> list[dict[str, Any]]:
    rows = [f.as_dict() for f in result.findings]
    return sorted(rows, key=lambda r: r["finding_id"])


def test_spark_is_a_registered_engine() -> None:
    assert "spark" in engine_names()


def test_findings_identical(demo_run_other_seed: DemoRun, spark_run: RunResult) -> None:
    duck = _findings(demo_run_other_seed.result)
    spark = _findings(spark_run)
    assert len(duck) > 20  # the demo injects defects of every check family
    assert [(r["finding_id"], r["category"], r["amount_at_risk"]) for r in spark] == [
        (r["finding_id"], r["category"], r["amount_at_risk"]) for r in duck
    ]
    # Everything else a user reads too: evidence, expected/actual, explanation, period, severity.
    assert spark == duck
    assert {r["check"] for r in spark} == set(spark_run.checks_run) == set(demo_run_other_seed.result.checks_run)


def test_metrics_identical(demo_run_other_seed: DemoRun, spark_run: RunResult) -> None:
    assert spark_run.metrics
    assert spark_run.metrics == demo_run_other_seed.result.metrics


def test_row_accounting_identical(demo_run_other_seed: DemoRun, spark_run: RunResult) -> None:
    assert spark_run.counts == demo_run_other_seed.result.counts
    assert spark_run.as_of == demo_run_other_seed.result.as_of


def test_checks_ran_on_spark(spark_local: None, tmp_path: Path) -> None:
    """The hand-over puts the canonical tables on the Spark backend (not a DuckDB table in disguise)."""
    import pyarrow as pa

    engine = create_engine("spark")
    try:
        raw = engine.from_arrow("t", pa.table({"x": ["1", "2"]}))
        moved = engine.adopt({"t": raw.mutate(y=raw.x.cast("int64"))})["t"]
        assert moved._find_backend().name == "pyspark"
        assert sorted(moved.to_pyarrow().column("y").to_pylist()) == [1, 2]
        kept = engine.materialize("kept", moved.filter(moved.y > 1))
        assert kept._find_backend().name == "pyspark"
        assert kept.count().to_pyarrow().as_py() == 1
    finally:
        engine.close()

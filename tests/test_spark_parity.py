"""Spark parity: the demo workspace run with `engine: spark` (PySpark, local mode) gives exactly the
findings and metrics of the DuckDB run. One Spark run for the module: the JVM start dominates.
"""

from __future__ import annotations

import gc
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import DemoRun
from tieout.checks import CHECKS
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
        # A table a check builds after the hand-over (a catalog, a calendar) lands on Spark too, so it
        # joins the canonical tables on one backend.
        small = engine.from_arrow("small", pa.table({"y": [2, 3], "label": ["two", "three"]}))
        assert small._find_backend().name == "pyspark"
        joined = moved.join(small, "y").select("x", "label").to_pyarrow().to_pylist()
        assert joined == [{"x": "2", "label": "two"}]
    finally:
        engine.close()


def _rule_findings(ws: Path, engine: str) -> list[dict[str, Any]]:
    text = (ws / "tieout.yaml").read_text(encoding="utf-8")
    text = re.sub(r"(?m)^engine: \w+$", f"engine: {engine}", text)
    text = text.replace("store: sqlite:///tieout.db", f"store: sqlite:///{engine}.db")
    (ws / "tieout.yaml").write_text(text, encoding="utf-8")
    result = run(load_config(ws / "tieout.yaml"))
    assert not result.checks_failed, result.checks_failed
    return _findings(result)


def test_custom_sql_and_python_rules_run_on_spark_as_on_duckdb(demo_run_other_seed: DemoRun, spark_local: None,
                                                              tmp_path: Path) -> None:
    """The rules of the rules e2e test (a SQL rule in DuckDB's dialect, a Python rule on Ibis) give the
    same findings on Spark."""
    from tests.test_rules_e2e import PY_RULE, SQL_RULE

    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "data").symlink_to(demo_run_other_seed.path / "data")
    (ws / "rules").mkdir()
    (ws / "rules" / "discount_over_limit.yaml").write_text(SQL_RULE.format(pct=10), encoding="utf-8")
    (ws / "rules" / "invoice_arithmetic.py").write_text(PY_RULE.replace("tolerance: int = Field(0",
                                                                        "tolerance: int = Field(-1"),
                                                        encoding="utf-8")
    cfg = yaml.safe_load((demo_run_other_seed.path / "tieout.yaml").read_text(encoding="utf-8"))
    # Only what the rules read: the invoices source, and every built-in check off.
    cfg["sources"] = [s for s in cfg["sources"] if s.get("table") == "invoices"]
    cfg["checks"] = {name: {"enabled": False} for name in cfg["checks"]}
    cfg["rules"] = [{"sql": "rules/discount_over_limit.yaml"}, {"python": "rules/invoice_arithmetic.py"}]
    (ws / "tieout.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    before = set(CHECKS)
    try:
        duck = _rule_findings(ws, "duckdb")
        spark = _rule_findings(ws, "spark")
    finally:  # Python rules register on the process-wide registry; later tests see only the built-ins
        for name in set(CHECKS) - before:
            del CHECKS[name]
    # tolerance -1 makes every invoice a finding of the Python rule (|difference| > -1): the whole table
    # goes through it on both engines; the SQL rule finds the demo's large discounts.
    checks = {r["check"] for r in duck}
    assert checks == {"discount_over_limit", "invoice_arithmetic"}
    assert sum(r["check"] == "discount_over_limit" for r in duck) >= 3
    assert spark == duck


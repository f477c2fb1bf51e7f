"""The store's schema comes from the Alembic migrations shipped in the package and equals the
models; SQLite and a real PostgreSQL server behave the same; a run holds a lock and is written in
one transaction, so a run killed with SIGKILL anywhere leaves a consistent store.

The `store` fixture (conftest) and the `finding`/`record` helpers here are shared by the lifecycle, audit,
routing and notify tests.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from tieout.config import load_config
from tieout.errors import StoreError
from tieout.findings import Finding, fingerprint
from tieout.pipeline import run
from tieout.store import Base, RecordedRun, RunRecord, Store, head_revision, upgrade

from .postgres import PostgresServer
from .test_cli import _plain_wide_console, cli, write_workspace  # noqa: F401  (autouse fixture)

ROOT = Path(__file__).parent.parent


def finding(subject: str, amount: int = 1000, *, category: str = "amount_mismatch", customer: str | None = "C1",
            currency: str = "USD", check: str = "chk") -> Finding:
    return Finding(fingerprint(check, category, subject, currency), check, category, "low", customer, currency,
                   amount, "10.00", "20.00", f"{subject} differs", "2026-07", subject, [], "billing-ops")


def record(store: Store, findings: list[Finding], checks: tuple[str, ...] = ("chk",), **kw: Any) -> RecordedRun:
    return store.record_run(RunRecord(
        started_at=datetime.now(UTC), config_hash="c" * 64, tieout_version="test",
        inputs=[{"file": "x.csv", "sha256": "0" * 64}], rule_versions={"chk": "v1"}, as_of="2026-07-31",
        findings=findings, checks_run=checks, quarantine=[], metrics=[], counts={"findings": len(findings)},
        timings={"total": 0.5}, **kw))


# --- schema ------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migrations_build_exactly_the_models_schema(backend: str, tmp_path: Path, request: pytest.FixtureRequest
                                                    ) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}" if backend == "sqlite" else \
        request.getfixturevalue("postgres").create_database()
    engine = create_engine(url)
    try:
        assert upgrade(engine) == (None, head_revision())
        with engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
        assert diffs == [], "the models and the migrations differ: add a revision (docs/workflow.md)"
        assert upgrade(engine) == (head_revision(), head_revision())  # idempotent
        with engine.begin() as conn:
            from alembic import command

            from tieout.store import alembic_config

            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "base")
            assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
    finally:
        engine.dispose()


def test_migrations_ship_inside_the_package() -> None:
    versions = ROOT / "src" / "tieout" / "migrations" / "versions"
    assert list(versions.glob("0001_*.py"))
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["tieout"]
    shipped = {p for pattern in data for p in (ROOT / "src" / "tieout").glob(pattern)}
    migration_files = {p for p in (ROOT / "src" / "tieout" / "migrations").rglob("*")
                       if p.is_file() and "__pycache__" not in p.parts}
    assert migration_files <= shipped


def test_a_store_created_without_migrations_is_refused_clearly(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    Base.metadata.create_all(engine)
    engine.dispose()
    with pytest.raises(StoreError, match="created by a tieout without migrations"):
        Store(url)


def test_db_upgrade_and_current_commands(tmp_path: Path) -> None:
    config = tmp_path / "tieout.yaml"
    config.write_text("store: sqlite:///s.db\n")
    r = cli("db", "current", "-c", config)
    assert r.code == 0 and "store schema: (empty)" in r.out and "run `tieout db upgrade`" in r.out
    r = cli("db", "upgrade", "-c", config)
    assert r.code == 0 and f"(empty) -> {head_revision()}" in r.out
    assert f"already at {head_revision()}" in cli("db", "upgrade", "-c", config).out
    assert cli("db", "current", "-c", config).out.strip() == f"store schema: {head_revision()}; newest: " \
        f"{head_revision()}"


# --- one run at a time -------------------------------------------------------------------------


def test_a_second_run_at_once_is_refused_with_a_clear_message(store: Store) -> None:
    other = Store(store.url)
    try:
        with store.run_lock(), pytest.raises(StoreError, match="another tieout run is in progress on this store"), \
                other.run_lock():
            pass  # pragma: no cover
        with other.run_lock():  # released when the first run ends
            pass
    finally:
        other.close()


def test_the_cli_refuses_a_run_while_another_holds_the_store(tmp_path: Path) -> None:
    config = write_workspace(tmp_path / "ws")
    store = Store(load_config(config).store_url())
    try:
        with store.run_lock():
            r = cli("run", "-c", config)
        assert r.code == 2
        assert r.err.splitlines()[0].startswith("another tieout run is in progress on this store")
        assert store.runs() == []
    finally:
        store.close()


def test_a_run_is_recorded_in_postgresql_like_in_sqlite(postgres: PostgresServer, tmp_path: Path) -> None:
    config = write_workspace(tmp_path / "ws")
    cfg = load_config(config)
    lite = run(cfg)
    pg = Store(postgres.create_database())
    try:
        on_pg = run(cfg, store=pg)
        assert [(f.finding_id, f.amount_at_risk) for f in on_pg.findings] == \
            [(f.finding_id, f.amount_at_risk) for f in lite.findings]
        assert on_pg.lifecycle == lite.lifecycle
        assert {r.finding_id: r.priority for r in pg.findings()} == \
            {f.finding_id: p for f, p in zip(lite.findings, ("medium", "low"), strict=True)}
        assert pg.verify_audit().ok and pg.verify_audit().entries == 1 + len(lite.findings)
    finally:
        pg.close()


# --- SIGKILL at random points of real runs ------------------------------------------------------

CHILD = """
import sys
from sqlalchemy import event
from tieout.config import load_config
from tieout.pipeline import run
from tieout.store import Store

cfg = load_config(sys.argv[1])
store = Store(cfg.store_url())

def pause(where):
    print(where, flush=True)
    sys.stdin.readline()  # the parent kills us here

@event.listens_for(store.engine, "commit")
def _before_commit(conn):
    pause("commit")

run(cfg, store=store, progress=pause)
print("done", flush=True)
"""


def _run_child(config: Path, kill_at: int | str) -> list[str]:
    """A real run in a subprocess, SIGKILLed at its `kill_at`-th pause point (a progress message, or
    just before a transaction commits, the run's rows written but not committed), or at the first pause
    point named `kill_at`. Returns the pause points it went through, the last one where it was killed."""
    seen: list[str] = []
    with subprocess.Popen([sys.executable, "-c", CHILD, str(config)], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        try:
            while True:
                where = proc.stdout.readline().strip()
                if where in ("done", ""):
                    break
                seen.append(where)
                if kill_at in (len(seen) - 1, where):
                    proc.send_signal(signal.SIGKILL)
                    break
                proc.stdin.write("\n")
                proc.stdin.flush()
        finally:
            proc.kill()
            proc.wait()
    return seen


def _consistent(store: Store) -> None:
    runs = store.runs()
    assert all(r.status in ("succeeded", "failed") and r.finished_at is not None for r in runs)
    run_ids = {r.run_id for r in runs}
    assert all(f.last_seen_run in run_ids and f.first_seen_run in run_ids for f in store.findings())
    audit_runs = [e for e in store.audit_entries() if e.kind == "run"]
    assert [int(e.subject) for e in audit_runs] == sorted(run_ids)
    assert store.verify_audit().ok, store.verify_audit().message()


def test_sigkill_at_random_points_leaves_the_store_consistent(tmp_path: Path) -> None:
    config = write_workspace(tmp_path / "ws")
    # Killed inside its write transaction; the pause points it went through are every point of a run.
    points = _run_child(config, "commit")
    assert points[-1] == "commit" and points.count("commit") == 1  # a run commits once, at its end
    assert len(points) > 2
    step = random.Random(2026).randrange(len(points) - 1)
    assert _run_child(config, step)[-1] == points[step]  # killed between two steps of the run
    # The killed runs left their lock file behind, but it holds no lock: the OS released it with the process.
    assert (tmp_path / "ws" / "tieout.db.lock").exists()
    store = Store(load_config(config).store_url())
    try:
        _consistent(store)
        assert store.runs() == []  # every run was killed before its commit: nothing of them is visible
        with store.engine.connect() as conn:
            assert conn.execute(text("select count(*) from runs")).scalar() == 0
        with store.run_lock():
            pass
        after = run(load_config(config), store=store)  # the next run completes: the lock died with the process
        # ... as a first run: every finding new, none left over by the killed runs
        assert after.lifecycle["new"] == len(after.findings) > 0
        assert sorted(f.finding_id for f in store.findings()) == sorted(f.finding_id for f in after.findings)
        assert [r.status for r in store.runs()] == ["succeeded"]
        audit_before = store.audit_entries()
        assert _run_child(config, "commit")[-1] == "commit"  # killed while writing a second run
        _consistent(store)
        assert len(store.runs()) == 1 and store.audit_entries() == audit_before
    finally:
        store.close()

"""The findings store on a real PostgreSQL server (tests/postgres.py) behaves as on SQLite."""

from __future__ import annotations

from tieout.config import load_config
from tieout.pipeline import run
from tieout.store import Store

from .conftest import DemoRun
from .postgres import PostgresServer


def test_a_demo_run_stored_in_postgresql_matches_sqlite(postgres: PostgresServer, demo_run: DemoRun) -> None:
    cfg = load_config(demo_run.path / "tieout.yaml")
    store = Store(postgres.create_database())
    try:
        first = run(cfg, store=store)
        assert first.lifecycle["new"] == len(demo_run.result.findings) > 0
        assert [(f.finding_id, f.amount_at_risk) for f in first.findings] == \
            [(f.finding_id, f.amount_at_risk) for f in demo_run.result.findings]
        stored = {row.finding_id: row for row in store.findings()}
        assert set(stored) == {f.finding_id for f in first.findings}
        assert all(stored[f.finding_id].amount_at_risk == f.amount_at_risk for f in first.findings)

        second = run(cfg, store=store)
        assert second.lifecycle["new"] == 0
        assert second.lifecycle["seen_again"] == len(first.findings)
        assert len(store.metrics(second.run_id)) == len(first.metrics)
    finally:
        store.close()

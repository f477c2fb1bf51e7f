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


def test_a_runs_entity_links_go_to_postgresql_in_bulk(postgres: PostgresServer) -> None:
    """Links are written with COPY on PostgreSQL (executemany elsewhere): every link arrives, as it was."""
    from datetime import UTC, datetime

    from tieout.entities import Link, Method, Resolution
    from tieout.links import run_links, write_resolution
    from tieout.store import RunRecord

    links = [Link("gateway", f"cus_{i}", f"C{i}", Method.MAPPED_ID, 100.0) for i in range(2500)]
    links.append(Link("crm", "S'1\tx", "C1", Method.FUZZY, 91.5))  # quote and tab survive COPY
    store = Store(postgres.create_database())
    try:
        store.record_run(RunRecord(
            started_at=datetime.now(UTC), config_hash="x", tieout_version="test", inputs=[], rule_versions={},
            as_of="2026-09-30", findings=[], checks_run=[], quarantine=[], metrics=[], counts={}, timings={},
            also=[lambda s, run_id: write_resolution(s, run_id, Resolution(links=links))]))
        got = {(r.system, r.account_id, r.customer_id, r.method, r.score) for r in run_links(store)}
        assert got == {(lk.system, lk.account_id, lk.customer_id, str(lk.method), lk.score) for lk in links}
        assert store.verify_audit().ok
    finally:
        store.close()

"""The SQL source against a real PostgreSQL server (the session's `postgres` fixture)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest

from tieout.config import Config, parse_config
from tieout.errors import ConfigError
from tieout.pipeline import run
from tieout.sources.connectors import pull_source
from tieout.sources.retry import ConnectorAuthError, ConnectorError

from .postgres import PostgresServer


def _exec(url: str, *statements: str) -> None:
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        for s in statements:
            conn.execute(s)


@pytest.fixture
def usage_db(postgres: PostgresServer) -> str:
    url = postgres.create_database()
    _exec(url, """CREATE TABLE payments (payment_id TEXT PRIMARY KEY, invoice_id TEXT, customer_id TEXT,
                  type TEXT, method TEXT, amount NUMERIC(12,2), currency CHAR(3), received_at TIMESTAMPTZ,
                  gateway_ref TEXT, updated_at TIMESTAMPTZ NOT NULL)""",
          """INSERT INTO payments VALUES
             ('P1', 'INV-1', 'C1', 'payment', 'card', 100.00, 'USD', '2026-07-01 10:00+00', 'ch_1',
              '2026-07-01 10:00+00'),
             ('P2', 'INV-2', 'C2', 'payment', 'card', 2500.50, 'EUR', '2026-07-02 23:30-04', 'ch_2',
              '2026-07-03 04:00+00'),
             ('P3', 'INV-3', 'C3', 'payment', 'wire', 99.99, 'USD', '2026-07-03 08:00+00', NULL,
              '2026-07-03 08:00+00')""")
    return url


def _config(tmp_path: Path, url: str, **options: Any) -> Config:
    opts = {"url": url, "from_table": "payments", **options}
    return parse_config(f"""
store: sqlite:///{tmp_path / 'store.db'}
sources:
  - name: billing_payments
    format: sql
    table: payments
    system: billing
    path: pulls/payments
    options: {json.dumps(opts)}
""", tmp_path / "tieout.yaml")


def _no_wait(seconds: float) -> None:
    raise AssertionError(f"a terminal failure must not be retried (asked to wait {seconds}s)")


def _snapshot(tmp_path: Path, record: Any) -> list[dict[str, Any]]:
    path = tmp_path / "pulls/payments" / record.snapshot
    return duckdb.sql(f"SELECT * FROM read_parquet('{path}') ORDER BY 1").to_arrow_table().to_pylist()


def test_sql_incremental_on_a_cursor_column(tmp_path: Path, usage_db: str) -> None:
    cfg = _config(tmp_path, usage_db, cursor_column="updated_at", key=["payment_id"], batch_size=2)
    first, _ = pull_source(cfg, 0)
    assert first.records == 3 and first.mode == "full"
    assert first.cursor["value"] == {"type": "datetime", "value": "2026-07-03 08:00:00+00:00".replace(" ", "T")}
    rows = _snapshot(tmp_path, first)
    assert rows[1]["amount"] == "2500.50" and rows[1]["received_at"] == "2026-07-03 03:30:00+00:00"
    _exec(usage_db, "UPDATE payments SET amount = 90.00, updated_at = '2026-07-05 00:00+00' WHERE payment_id = 'P3'",
          "INSERT INTO payments VALUES ('P4', 'INV-4', 'C4', 'refund', 'card', 10.00, 'USD', '2026-07-05 09:00+00', "
          "'re_4', '2026-07-05 09:00+00')")
    second, _ = pull_source(cfg, 0)
    assert second.mode == "incremental" and second.pulled == 2 and second.records == 4
    rows = {r["payment_id"]: r for r in _snapshot(tmp_path, second)}
    assert rows["P3"]["amount"] == "90.00" and rows["P4"]["type"] == "refund" and rows["P1"]["amount"] == "100.00"


def test_sql_source_feeds_a_run_and_the_inputs_name_the_snapshot(tmp_path: Path, usage_db: str) -> None:
    _exec(usage_db, "INSERT INTO payments VALUES ('P9', 'INV-9', 'C9', 'payment', 'card', 5.00, 'XYZ', "
                    "'2026-07-09 10:00+00', NULL, '2026-07-09 10:00+00')")
    cfg = _config(tmp_path, usage_db, key=["payment_id"])
    result = run(cfg)
    assert [(c.read, c.accepted, c.quarantined) for c in result.counts] == [(4, 3, 1)]
    (q,) = result.quarantined
    assert q["column_name"] == "currency" and q["reason"].startswith("record P9: unknown currency 'XYZ'")
    from tieout.store import Store

    store = Store(cfg.store_url())
    try:
        (item,) = [i for i in json.loads(store.last_run().inputs) if "rule" not in i]  # type: ignore[union-attr]
    finally:
        store.close()
    assert item["file"].startswith("pulls/payments/snapshots/") and item["snapshot"] in item["file"]
    assert item["sha256"] == __import__("hashlib").sha256((tmp_path / item["file"]).read_bytes()).hexdigest()


def test_pinned_snapshot_reruns_exactly_and_detects_tampering(tmp_path: Path, usage_db: str) -> None:
    cfg = _config(tmp_path, usage_db, key=["payment_id"])
    first, _ = pull_source(cfg, 0)
    _exec(usage_db, "DELETE FROM payments")
    pinned = _config(tmp_path, usage_db, key=["payment_id"], snapshot=first.pull_id)
    assert run(pinned).counts[0].read == 3  # the database is empty now; the pinned snapshot is not
    (tmp_path / "pulls/payments" / first.snapshot).write_bytes(b"PAR1 tampered")
    with pytest.raises(ConnectorError, match="was modified after it was pulled"):
        run(pinned)


def test_sql_unknown_role_stops_as_an_authentication_failure(tmp_path: Path, usage_db: str) -> None:
    bad = usage_db.replace("://tieout@", "://nobody:Pl4ntedPassw0rd@")
    with pytest.raises(ConnectorAuthError, match=r"^source 'billing_payments': authentication failed") as info:
        pull_source(_config(tmp_path, bad), 0, sleep=_no_wait)
    assert "Pl4ntedPassw0rd" not in str(info.value)


def test_sql_errors_name_the_source(tmp_path: Path, usage_db: str) -> None:
    with pytest.raises(ConnectorError, match=r"^source 'billing_payments': the server refused reading the query: "
                       r".*nope"):
        pull_source(_config(tmp_path, usage_db, from_table="nope"), 0, sleep=_no_wait)
    with pytest.raises(ConfigError, match=r"tieout.yaml:\d+: sources.0.options: .*exactly one of `query` and "
                       "`from_table`"):
        _config(tmp_path, usage_db, query="SELECT 1").sources  # noqa: B018
        pull_source(_config(tmp_path, usage_db, query="SELECT 1"), 0)

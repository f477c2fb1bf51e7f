"""The Chargebee connector (official SDK) against a local server speaking Chargebee's list JSON,
built on Chargebee's own invoice and transaction fixtures."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tieout.config import Config, parse_config
from tieout.engines import create_engine
from tieout.pipeline import ingest
from tieout.sources.connectors import pull_source
from tieout.sources.retry import ConnectorAuthError, ConnectorError
from tieout.sources.snapshots import last_pull

from .vendor_servers import ChargebeeServer, Fault, chargebee_server, chargebee_template

KEY = "test_cbPlantedKey_5f1e2d3c4b5a"


@pytest.fixture
def cb() -> Iterator[ChargebeeServer]:
    with chargebee_server(KEY) as server:
        yield server


def _invoice(n: int, updated: int, status: str = "paid", currency: str = "USD") -> dict[str, Any]:
    inv = chargebee_template("invoice")
    inv.update(id=f"inv_{n}", customer_id=f"cus_{n}", subscription_id=f"sub_{n}", status=status, date=updated - 50,
               updated_at=updated, currency_code=currency, sub_total=2000, total=1800, amount_paid=1800, tax=0,
               discounts=[{"amount": 200, "entity_type": "document_level_coupon"}])
    return inv


def _txn(n: int, updated: int, status: str = "success", kind: str = "payment") -> dict[str, Any]:
    t = chargebee_template("transaction")
    t.update(id=f"txn_{n}", customer_id=f"cus_{n}", type=kind, status=status, amount=1800, currency_code="USD",
             date=updated - 10, updated_at=updated, payment_method="card", id_at_gateway=f"ch_{n}",
             linked_invoices=[{"invoice_id": f"inv_{n}", "applied_amount": 1800}])
    return t


def _config(tmp_path: Path, server: ChargebeeServer, stream: str, **options: Any) -> Config:
    opts = {"api_key": KEY, "site": "acme-test", "api_base": server.url, **options}
    return parse_config(f"""
sources:
  - name: cb_{stream}
    format: chargebee.{stream}
    path: pulls/{stream}
    options: {json.dumps(opts)}
""", tmp_path / "tieout.yaml")


def _no_wait(seconds: float) -> None:
    raise AssertionError(f"unexpected retry (wait {seconds}s)")


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def test_invoices_page_incrementally_on_updated_at(tmp_path: Path, cb: ChargebeeServer) -> None:
    cb.objects["invoices"] = [_invoice(i, 1_780_000_000 + i) for i in range(1, 6)]
    cfg = _config(tmp_path, cb, "invoices", page_size=2)
    first, _ = pull_source(cfg, 0, sleep=_no_wait)
    assert first.records == 5 and first.cursor == {"updated_at": 1_780_000_005}
    assert sum("offset=" in r for r in cb.requests) == 2  # 3 pages: 2 + 2 + 1
    cb.objects["invoices"][0] = _invoice(1, 1_780_000_100, status="voided")  # changed after the pull
    cb.requests.clear()
    second, _ = pull_source(cfg, 0, sleep=_no_wait)
    assert any("updated_at%5Bafter%5D=1780000004" in r for r in cb.requests)
    assert second.mode == "incremental" and second.pulled == 2 and second.records == 5
    path = tmp_path / "pulls/invoices" / second.snapshot
    rows = {r["id"]: r for r in duckdb.sql(f"SELECT * FROM read_parquet('{path}')").to_arrow_table().to_pylist()}
    assert rows["inv_1"]["status"] == "voided" and rows["inv_2"]["discount"] == "200"


def test_invoices_and_transactions_map_onto_the_canonical_tables(tmp_path: Path, cb: ChargebeeServer) -> None:
    cb.objects["invoices"] = [_invoice(1, 1_780_000_000), _invoice(2, 1_780_000_001, status="payment_due"),
                              _invoice(3, 1_780_000_002, status="mystery"), _invoice(4, 1_780_000_003, currency="ZZZ")]
    cb.objects["transactions"] = [_txn(1, 1_780_000_000), _txn(2, 1_780_000_001, status="failure"),
                                  _txn(3, 1_780_000_002, kind="refund")]
    text = f"""
sources:
  - {{name: cb_invoices, format: chargebee.invoices, path: pulls/inv,
     options: {{api_key: {KEY}, site: acme-test, api_base: "{cb.url}"}}}}
  - {{name: cb_payments, format: chargebee.transactions, path: pulls/txn,
     options: {{api_key: {KEY}, site: acme-test, api_base: "{cb.url}"}}}}
"""
    cfg = parse_config(text, tmp_path / "tieout.yaml")
    from tieout.sources.connectors import pull_connectors

    pulled = pull_connectors(cfg)
    engine = create_engine("duckdb")
    try:
        tables, _, quarantined, inputs = ingest(pulled.config, engine, lambda _m: None)
        invoices = {r["invoice_id"]: r for r in tables["invoices"].to_pyarrow().to_pylist()}
        payments = {r["payment_id"]: r for r in tables["payments"].to_pyarrow().to_pylist()}
    finally:
        engine.close()
    pulled.annotate(inputs, quarantined)
    first = invoices["inv_1"]
    assert (first["status"], first["total"], first["discount"]) == ("paid", 1800, 200)
    assert invoices["inv_2"]["status"] == "open" and str(invoices["inv_1"]["issued_at"]).startswith("2026-05-28")
    assert sorted(payments) == ["txn_1", "txn_3"]  # the failed attempt is not a payment
    assert (payments["txn_1"]["gateway_ref"], payments["txn_1"]["invoice_id"], payments["txn_3"]["type"]) == (
        "ch_1", "inv_1", "refund")
    assert sorted((q["column_name"], q["reason"].split(":")[0]) for q in quarantined) == [
        ("currency", "record inv_4"), ("status", "record inv_3")]
    assert {i["snapshot"] for i in inputs} == {r.pull_id for _, r, _ in pulled.snapshots.values()}


def test_faults_retry_then_report_and_401_stops(tmp_path: Path, cb: ChargebeeServer,
                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    cb.objects["invoices"] = [_invoice(1, 1_780_000_000)]
    limit = json.dumps({"message": "Sorry, access has been blocked temporarily due to request count exceeding "
                        "acceptable limits.", "type": "invalid_request", "api_error_code": "api_request_limit_exceeded",
                        "http_status_code": 429})
    cb.script("invoices", Fault(429, limit, {"Retry-After": "3"}), Fault(500, "<html>Internal error</html>"),
              Fault(200, '{"list": [{"invoice": '))
    sleeps = Sleeps()
    record, _ = pull_source(_config(tmp_path, cb, "invoices"), 0, sleep=sleeps)
    assert sleeps == [3.0, 2.0, 4.0] and record.records == 1
    cb.script("invoices", *[Fault(503, "Service Unavailable 503")] * 2)
    with pytest.raises(ConnectorError, match="gave up after 2 attempts"):
        pull_source(_config(tmp_path, cb, "invoices", attempts=2), 0, sleep=Sleeps())
    assert last_pull(tmp_path / "pulls/invoices") == record
    bad = _config(tmp_path, cb, "invoices", api_key="test_cbWrongKey_000000")
    with pytest.raises(ConnectorAuthError, match=r"^source 'cb_invoices': authentication failed") as info:
        pull_source(bad, 0, sleep=Sleeps())
    assert "test_cbWrongKey_000000" not in str(info.value)
    import base64

    for secret in (KEY, "test_cbWrongKey_000000", base64.b64encode(f"{KEY}:".encode()).decode()):
        assert secret not in caplog.text
    assert "GET Request" in caplog.text  # the SDK's debug log was captured, and is clean

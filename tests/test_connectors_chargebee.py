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

from .vendor_servers import ChargebeeServer, Fault, chargebee_server, chargebee_template, ingested, pinned_ids

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


def _subscription(sid: str, updated: int, **fields: Any) -> dict[str, Any]:
    sub = chargebee_template("subscription")
    sub.update(id=sid, customer_id=f"cus_{sid}", updated_at=updated, currency_code="USD", started_at=1_780_000_000,
               subscription_items=[{"item_price_id": "basic-USD-monthly", "item_type": "plan", "quantity": 2,
                                    "unit_price": 1500, "amount": 3000, "object": "subscription_item"}])
    sub.update(fields)
    return sub


def test_subscriptions_are_one_row_per_recurring_item(tmp_path: Path, cb: ChargebeeServer) -> None:
    items = [{"item_price_id": "pro-USD-quarterly", "item_type": "plan", "quantity": 5, "unit_price": 9000},
             {"item_price_id": "seats-USD-quarterly", "item_type": "addon", "quantity": 3, "amount": 2700},
             {"item_price_id": "setup-USD", "item_type": "charge", "quantity": 1, "unit_price": 10000}]
    cb.objects["subscriptions"] = [
        _subscription("s1", 1_780_000_001, coupons=[{"coupon_id": "WELCOME", "apply_till": 1_790_000_000}]),
        _subscription("s2", 1_780_000_002, subscription_items=items, billing_period=3, status="cancelled",
                      cancelled_at=1_785_000_000),
        _subscription("s3", 1_780_000_003, status="in_trial", trial_end=1_781_000_000),
        _subscription("pc1", 1_780_000_004, subscription_items=None, plan_id="basic", plan_quantity=1,  # catalog 1.0
                      plan_unit_price=5000, addons=[{"id": "extra-seat", "quantity": 2, "unit_price": 700}])]
    tables, quarantined = ingested(_config(tmp_path, cb, "subscriptions"))
    assert not quarantined and any("sort_by%5Basc%5D=updated_at" in r for r in cb.requests)
    subs = {r["subscription_id"]: r for r in tables["subscriptions"]}
    assert sorted(subs) == ["pc1/basic", "pc1/extra-seat", "s1", "s2/pro-USD-quarterly", "s2/seats-USD-quarterly",
                            "s3"]  # no one-time charge
    assert (subs["pc1/extra-seat"]["contract_id"], subs["pc1/extra-seat"]["quantity"],
            subs["pc1/extra-seat"]["unit_amount"]) == ("pc1", 2, 700)
    s1 = subs["s1"]
    assert (s1["contract_id"], s1["sku"], s1["quantity"], s1["unit_amount"], s1["interval"], s1["status"],
            s1["coupon"], str(s1["discount_end"])) == ("s1", "basic-USD-monthly", 2, 1500, "month", "active",
                                                       "WELCOME", "2026-09-21")
    seats = subs["s2/seats-USD-quarterly"]
    assert (seats["contract_id"], seats["unit_amount"], seats["interval"], seats["status"], str(seats["end_date"])) \
        == ("s2", 900, "quarter", "canceled", "2026-07-25")
    assert (subs["s3"]["status"], str(subs["s3"]["trial_end"])) == ("trialing", "2026-06-09")


def test_credit_notes_are_negative_invoices(tmp_path: Path, cb: ChargebeeServer) -> None:
    from .vendor_servers import chargebee_credit_note

    cb.objects["credit_notes"] = [
        chargebee_credit_note(id="CN-1", updated=1_780_000_001, status="adjusted", total=500, allocated=500),
        chargebee_credit_note(id="CN-2", updated=1_780_000_002, status="refund_due", total=1200, refunded=200)]
    tables, quarantined = ingested(_config(tmp_path, cb, "credit_notes"))
    assert not quarantined and any("sort_by%5Basc%5D=date" in r for r in cb.requests)
    got = {r["invoice_id"]: (r["status"], r["subtotal"], r["total"], r["amount_paid"], r["currency"])
           for r in tables["invoices"]}
    assert got == {"CN-1": ("paid", -500, -500, -500, "USD"), "CN-2": ("open", -1200, -1200, -200, "USD")}


def test_bad_values_are_quarantined_naming_source_record_and_field(tmp_path: Path, cb: ChargebeeServer) -> None:
    cb.objects["subscriptions"] = [
        _subscription("ok", 1_780_000_001), _subscription("odd", 1_780_000_002, status="suspended_by_robot"),
        _subscription("tz", 1_780_000_003, started_at="2026-07-01 10:00:00 CEST"),
        _subscription("gbp", 1_780_000_004, currency_code="GBP"),
        _subscription("wk", 1_780_000_005, billing_period_unit="week")]
    tables, quarantined = ingested(_config(tmp_path, cb, "subscriptions", currencies=["USD", "EUR"]))
    assert [r["subscription_id"] for r in tables["subscriptions"]] == ["ok"]
    assert sorted((q["source"], q["column_name"], q["reason"]) for q in quarantined) == [
        ("chargebee", "currency", "record gbp: required value is empty (currency 'GBP' is not one the source "
                                  "declares (USD, EUR))"),
        ("chargebee", "interval", "record wk: unknown value 'week' (expected one of month, quarter, year)"),
        ("chargebee", "start_date", "record tz: '2026-07-01 10:00:00 CEST' is not a date/time in a known format "
                                    "(unix) (field 'started_at' is text with the time zone abbreviation 'CEST', "
                                    "which names no unique offset; the API sends Unix seconds)"),
        ("chargebee", "status", "record odd: unknown value 'suspended_by_robot' (expected one of active, trialing, "
                                "paused, canceled)"),
    ]


def test_invoice_lines_come_from_each_invoices_line_items(tmp_path: Path, cb: ChargebeeServer) -> None:
    inv = _invoice(1, 1_780_000_000)
    term = {"date_from": 1_782_864_000, "date_to": 1_785_542_399}  # 2026-07-01 .. 2026-07-31 23:59:59
    (template, _) = inv["line_items"]
    inv["line_items"] = [
        {**template, **term, "id": "li_1", "entity_id": "basic-USD-monthly", "entity_type": "plan_item_price",
         "quantity": 3, "unit_amount": 1000, "amount": 3000, "discount_amount": 300, "tax_amount": 270},
        {**template, "id": "li_2"}]  # Chargebee's own example line: a one-time charge, date_from == date_to
    cb.objects["invoices"] = [inv]
    tables, quarantined = ingested(_config(tmp_path, cb, "invoice_lines"))
    assert not quarantined
    lines = {r["line_id"]: r for r in tables["invoice_lines"]}
    first = lines["li_1"]
    assert (first["invoice_id"], first["sku"], first["quantity"], first["unit_amount"], first["amount"],
            first["discount"], first["tax"], first["currency"], str(first["period_start"]),
            str(first["period_end"])) == ("inv_1", "basic-USD-monthly", 3, 1000, 3000, 300, 270, "USD", "2026-07-01",
                                          "2026-08-01")
    assert (lines["li_2"]["sku"], lines["li_2"]["amount"]) == ("ssl-charge-USD", 2000)


def test_a_record_deleted_between_incremental_pulls_leaves_the_next_run(tmp_path: Path, cb: ChargebeeServer) -> None:
    cb.objects["invoices"] = [_invoice(i, 1_780_000_000 + i) for i in range(1, 4)]
    cfg = _config(tmp_path, cb, "invoices")
    first, _ = ingested(cfg)
    assert sorted(r["invoice_id"] for r in first["invoices"]) == ["inv_1", "inv_2", "inv_3"]
    before = last_pull(tmp_path / "pulls/invoices")
    cb.objects["invoices"][1].update(deleted=True, updated_at=1_780_000_100)  # deleted in Chargebee
    cb.requests.clear()
    second, _ = ingested(cfg)
    assert all("include_deleted=true" in r for r in cb.requests)
    assert sorted(r["invoice_id"] for r in second["invoices"]) == ["inv_1", "inv_3"]
    after = last_pull(tmp_path / "pulls/invoices")
    assert after is not None and after.mode == "incremental" and after.deleted == 1 and after.records == 2
    assert before is not None and pinned_ids(_config(tmp_path, cb, "invoices", snapshot=before.pull_id), "id") == [
        "inv_1", "inv_2", "inv_3"]  # the earlier snapshot, pinned, still re-runs with the invoice

"""Connectors against real components: the official Stripe SDK against a local server speaking
Stripe's documented JSON (pagination, empty pages, 429/500/401, garbled bodies), the SQL source
against the session's PostgreSQL, and `tieout run` on the demo served from both."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tieout.config import Config, parse_config
from tieout.errors import ExitCode
from tieout.pipeline import run
from tieout.sources.connectors import pull_source
from tieout.sources.retry import ConnectorAuthError, ConnectorError
from tieout.sources.snapshots import last_pull, sha256_of

from .vendor_servers import (
    Fault,
    StripeServer,
    balance_transaction,
    charge,
    stripe_server,
)

KEY = "sk_test_51NzPlantedSecretKey0123456789"


@pytest.fixture
def stripe_api() -> Any:
    with stripe_server(KEY) as server:
        yield server


def _txn(n: int, created: int, *, currency: str = "usd", category: str = "charge", amount: int = 1000,
         invoice: str | None = None) -> dict[str, Any]:
    src = charge(id=f"ch_{n:04d}", created=created, currency=currency, amount=amount, customer=f"cus_{n:04d}",
                 status="succeeded", metadata={"invoice_number": invoice or f"INV-{n:04d}"})
    return balance_transaction(id=f"txn_{n:04d}", created=created, currency=currency, amount=amount, fee=30,
                               net=amount - 30, category=category, source=src)


def _config(tmp_path: Path, server: StripeServer, stream: str = "balance_transactions", **options: Any) -> Config:
    opts = {"api_key": KEY, "api_base": server.url, "metadata_keys": ["invoice_number"], **options}
    text = f"""
sources:
  - name: stripe_{stream}
    format: stripe_api.{stream}
    path: pulls/{stream}
    columns: {{invoice_ref: "payment_metadata[invoice_number]"}}
    options: {json.dumps(opts)}
"""
    if stream != "balance_transactions":
        text = text.replace('columns: {invoice_ref: "payment_metadata[invoice_number]"}', "columns: {}")
    return parse_config(text, tmp_path / "tieout.yaml")


def _rows(path: Path) -> list[dict[str, Any]]:
    return duckdb.sql(f"SELECT * FROM read_parquet('{path}') ORDER BY 1").to_arrow_table().to_pylist()


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


# --- Stripe: pagination, cursor, snapshots -------------------------------------------------------------


def test_stripe_pages_are_streamed_into_a_checksummed_snapshot(tmp_path: Path, stripe_api: StripeServer) -> None:
    stripe_api.objects.update(balance_transactions=[_txn(i, 1_780_000_000 + i) for i in range(1, 8)],
                              payouts=[])
    record, sink = pull_source(_config(tmp_path, stripe_api, page_size=3), 0)
    snap = tmp_path / "pulls/balance_transactions" / record.snapshot
    assert record.records == 7 and record.mode == "full" and not sink.problems
    assert record.sha256 == sha256_of(snap)
    pages = [r for r in stripe_api.requests if r.startswith("/v1/balance_transactions?") and "payout=" not in r]
    assert len(pages) == 3 and "starting_after=txn_0005" in pages[1]  # newest first, 3 per page
    rows = _rows(snap)
    assert [r["balance_transaction_id"] for r in rows] == [f"txn_{i:04d}" for i in range(1, 8)]
    assert rows[0]["customer_id"] == "cus_0001" and rows[0]["payment_metadata[invoice_number]"] == "INV-0001"
    assert rows[0]["gross"] == "1000" and rows[0]["created"] == "1780000001"
    assert last_pull(tmp_path / "pulls/balance_transactions") == record


def test_incremental_pull_reads_only_new_records_and_keeps_old_snapshots(
        tmp_path: Path, stripe_api: StripeServer) -> None:
    stripe_api.objects.update(balance_transactions=[_txn(1, 1_780_000_000), _txn(2, 1_780_000_100)], payouts=[])
    cfg = _config(tmp_path, stripe_api)
    first, _ = pull_source(cfg, 0)
    stripe_api.objects["balance_transactions"].append(_txn(3, 1_780_000_200))
    stripe_api.requests.clear()
    second, _ = pull_source(cfg, 0)
    assert second.mode == "incremental" and second.cursor["created"] == 1_780_000_200
    assert any("created%5Bgte%5D=1780000100" in r or "created[gte]=1780000100" in r for r in stripe_api.requests)
    assert second.pulled == 2  # the record at the cursor second (gte) and the new one
    assert second.records == 3
    base = tmp_path / "pulls/balance_transactions"
    assert sha256_of(base / first.snapshot) == first.sha256  # earlier snapshot untouched
    full, _ = pull_source(cfg, 0, full_refresh=True)
    assert full.mode == "full" and full.pulled == 3 and full.records == 3


def test_refunds_inherit_customer_and_metadata_and_payouts_are_linked(
        tmp_path: Path, stripe_api: StripeServer) -> None:
    ch = _txn(1, 1_780_000_000)
    ch["_payout"] = "po_1"
    refund = {**ch["source"], "object": "refund", "id": "re_1", "charge": "ch_0001", "metadata": {},
              "customer": None}
    rt = balance_transaction(id="txn_r1", created=1_780_000_500, currency="usd", amount=-400, fee=0, net=-400,
                             category="refund", source=refund)
    po = {"id": "po_1", "object": "payout", "created": 1_780_050_000, "arrival_date": 1_780_200_000,
          "amount": 970, "currency": "usd", "status": "paid", "automatic": True}
    stripe_api.objects.update(balance_transactions=[ch, rt], payouts=[po])
    record, _ = pull_source(_config(tmp_path, stripe_api), 0)
    rows = {r["balance_transaction_id"]: r for r in _rows(tmp_path / "pulls/balance_transactions" / record.snapshot)}
    assert rows["txn_r1"]["charge_id"] == "ch_0001" and rows["txn_r1"]["customer_id"] == "cus_0001"
    assert rows["txn_r1"]["payment_metadata[invoice_number]"] == "INV-0001"
    assert rows["txn_0001"]["automatic_payout_id"] == "po_1" and rows["txn_r1"]["automatic_payout_id"] is None


def test_empty_pages(tmp_path: Path, stripe_api: StripeServer) -> None:
    stripe_api.objects.update(balance_transactions=[], payouts=[])
    stripe_api.script("balance_transactions", Fault(200, json.dumps(
        {"object": "list", "url": "/v1/balance_transactions", "has_more": True, "data": []})))
    record, _ = pull_source(_config(tmp_path, stripe_api), 0)
    assert record.records == 0 and record.pulled == 0
    assert _rows(tmp_path / "pulls/balance_transactions" / record.snapshot) == []


# --- Stripe: faults --------------------------------------------------------------------------------------


def test_429_waits_for_retry_after_then_succeeds(tmp_path: Path, stripe_api: StripeServer) -> None:
    stripe_api.objects.update(balance_transactions=[_txn(1, 1_780_000_000)], payouts=[])
    error = json.dumps({"error": {"type": "rate_limit_error", "message": "Too many requests"}})
    stripe_api.script("balance_transactions", Fault(429, error, {"Retry-After": "7"}))
    sleeps = Sleeps()
    record, _ = pull_source(_config(tmp_path, stripe_api), 0, sleep=sleeps)
    assert sleeps == [7.0] and record.records == 1


def test_500_backs_off_then_succeeds(tmp_path: Path, stripe_api: StripeServer) -> None:
    stripe_api.objects.update(balance_transactions=[_txn(1, 1_780_000_000)], payouts=[])
    error = json.dumps({"error": {"type": "api_error", "message": "Something went wrong"}})
    stripe_api.script("balance_transactions", Fault(500, error), Fault(503, error))
    sleeps = Sleeps()
    record, _ = pull_source(_config(tmp_path, stripe_api, backoff_seconds=2), 0, sleep=sleeps)
    assert sleeps == [2.0, 4.0] and record.records == 1


def test_malformed_json_is_retried_then_reported_without_moving_the_cursor(
        tmp_path: Path, stripe_api: StripeServer) -> None:
    stripe_api.objects.update(balance_transactions=[_txn(1, 1_780_000_000)], payouts=[])
    stripe_api.script("balance_transactions", Fault(200, '{"object": "list", "data": [{"id": '))
    cfg = _config(tmp_path, stripe_api, attempts=2)
    record, _ = pull_source(cfg, 0, sleep=Sleeps())
    assert record.records == 1  # garbled once, then fine
    stripe_api.script("balance_transactions", *[Fault(200, "<html>proxy error</html>")] * 2)
    with pytest.raises(ConnectorError, match=r"source 'stripe_balance_transactions': .*not valid JSON.*gave up "
                       r"after 2 attempts"):
        pull_source(cfg, 0, sleep=Sleeps())
    base = tmp_path / "pulls/balance_transactions"
    assert last_pull(base) == record  # cursor kept
    assert sorted(p.name for p in (base / "snapshots").iterdir()) == [f"{record.pull_id}.json",
                                                                      f"{record.pull_id}.parquet"]
    assert not [p for p in base.iterdir() if p.name.startswith(".pull-")]


def test_partial_pull_never_advances_the_cursor(tmp_path: Path, stripe_api: StripeServer) -> None:
    stripe_api.objects.update(balance_transactions=[_txn(i, 1_780_000_000 + i) for i in range(1, 6)], payouts=[])
    cfg = _config(tmp_path, stripe_api, page_size=2, attempts=2)
    stripe_api.script("balance_transactions", Fault(200, json.dumps({  # page 1 fine, then the server fails
        "object": "list", "has_more": True, "url": "/v1/balance_transactions",
        "data": [{k: v for k, v in _txn(9, 1_790_000_000).items() if not k.startswith("_")}]})),
        *[Fault(500, json.dumps({"error": {"type": "api_error"}}))] * 2)
    with pytest.raises(ConnectorError, match="gave up after 2 attempts"):
        pull_source(cfg, 0, sleep=Sleeps())
    base = tmp_path / "pulls/balance_transactions"
    assert last_pull(base) is None and not (base / "snapshots").exists()


def test_401_stops_at_once_naming_the_source(tmp_path: Path, stripe_api: StripeServer) -> None:
    stripe_api.objects.update(balance_transactions=[_txn(1, 1_780_000_000)], payouts=[])
    text = _config(tmp_path, stripe_api).model_dump()["sources"][0]
    text["options"]["api_key"] = "sk_test_wrong_key_0000000000"
    cfg = parse_config(json.dumps({"sources": [text]}), tmp_path / "tieout.yaml")
    sleeps = Sleeps()
    with pytest.raises(ConnectorAuthError, match=r"^source 'stripe_balance_transactions': authentication failed "
                       r"\(HTTP 401.*check the credentials") as info:
        pull_source(cfg, 0, sleep=sleeps)
    assert sleeps == [] and len(stripe_api.requests) == 1
    assert info.value.exit_code == ExitCode.BAD_INPUT
    assert "sk_test_wrong_key_0000000000" not in str(info.value)


def test_403_is_terminal_too(tmp_path: Path, stripe_api: StripeServer) -> None:
    stripe_api.objects.update(balance_transactions=[], payouts=[])
    stripe_api.script("balance_transactions", Fault(403, json.dumps(
        {"error": {"type": "invalid_request_error", "message": "The provided key does not have access"}})))
    with pytest.raises(ConnectorAuthError, match="HTTP 403"):
        pull_source(_config(tmp_path, stripe_api), 0, sleep=Sleeps())


# --- other Stripe streams ---------------------------------------------------------------------------------


def test_failed_charges_payouts_and_invoices(tmp_path: Path, stripe_api: StripeServer) -> None:
    from .vendor_servers import stripe_template

    ok = charge(id="ch_ok", created=1_780_000_000, currency="usd", amount=500, customer="cus_1", status="succeeded",
                metadata={})
    bad = charge(id="ch_bad", created=1_780_000_100, currency="eur", amount=700, customer="cus_2", status="failed",
                 metadata={"invoice_number": "INV-9"})
    inv = stripe_template("invoice")
    inv.update(id="in_1", created=1_780_000_000, status="open", total=1000, subtotal=1100,
               total_discount_amounts=[{"amount": 100, "discount": "di_1"}])
    stripe_api.objects.update(charges=[ok, bad], invoices=[inv])
    record, _ = pull_source(_config(tmp_path, stripe_api, "failed_charges"), 0)
    rows = _rows(tmp_path / "pulls/failed_charges" / record.snapshot)
    assert [(r["id"], r["status"], r["amount"], r["metadata[invoice_number]"]) for r in rows] == [
        ("ch_bad", "failed", "700", "INV-9")]
    record, _ = pull_source(_config(tmp_path, stripe_api, "invoices"), 0)
    (row,) = _rows(tmp_path / "pulls/invoices" / record.snapshot)
    assert (row["id"], row["customer"], row["discount"], row["total"]) == ("in_1", "cus_QXg1o8vcGmoR32", "100", "1000")


# --- bad input: quarantined with source, record and field ---------------------------------------------------


def test_bad_records_are_quarantined_naming_source_record_and_field(tmp_path: Path, stripe_api: StripeServer) -> None:
    good = _txn(1, 1_780_000_000)
    renamed = _txn(2, 1_780_000_001)
    renamed["amt"] = renamed.pop("amount")  # a renamed field
    unknown = _txn(3, 1_780_000_002, category="mystery_category")
    undeclared = _txn(4, 1_780_000_003, currency="xyz")
    stripe_api.objects.update(balance_transactions=[good, renamed, unknown, undeclared], payouts=[])
    cfg = _config(tmp_path, stripe_api)
    cfg = cfg.model_copy(update={"store": f"sqlite:///{tmp_path / 'store.db'}"})
    result = run(cfg)
    reasons = sorted((q["source"], q["column_name"], q["reason"]) for q in result.quarantined)
    assert reasons == [
        ("stripe", "currency", "record txn_0004: unknown currency 'xyz' (not an ISO-4217 code)"),
        ("stripe", "gross", "record txn_0002: required value is empty (field 'amount' missing from the balance "
                            "transaction in the API answer)"),
        ("stripe", "type", "record txn_0003: unknown value 'mystery_category' (expected one of charge, refund, "
                           "refund_reversal, dispute, dispute_reversal, fee, adjustment, payout)"),
    ]
    (count,) = result.counts
    assert (count.read, count.accepted, count.quarantined) == (4, 1, 3)

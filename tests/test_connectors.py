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
    ingested,
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
    current = stripe_template("invoice")  # API 2025-03 on: the subscription is under `parent`
    current.update(id="in_2", created=1_780_000_100, subscription=None, parent={
        "type": "subscription_details", "quote_details": None,
        "subscription_details": {"metadata": {}, "subscription": "sub_9"}})
    stripe_api.objects.update(charges=[ok, bad], invoices=[inv, current])
    record, _ = pull_source(_config(tmp_path, stripe_api, "failed_charges"), 0)
    rows = _rows(tmp_path / "pulls/failed_charges" / record.snapshot)
    assert [(r["id"], r["status"], r["amount"], r["metadata[invoice_number]"]) for r in rows] == [
        ("ch_bad", "failed", "700", "INV-9")]
    record, _ = pull_source(_config(tmp_path, stripe_api, "invoices"), 0)
    row, row2 = _rows(tmp_path / "pulls/invoices" / record.snapshot)
    assert (row["id"], row["customer"], row["discount"], row["total"]) == ("in_1", "cus_QXg1o8vcGmoR32", "100", "1000")
    assert (row["subscription"], row2["subscription"]) == (None, "sub_9")  # the fixture's quote parent names none


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


# --- Stripe Billing: subscriptions (one row per item) and invoice lines ----------------------------------


def test_stripe_subscriptions_are_one_row_per_item(tmp_path: Path, stripe_api: StripeServer) -> None:
    from .vendor_servers import subscription, subscription_item

    day = 86_400
    one = subscription(id="sub_1", created=1_767_225_600 + 14 * day, customer="cus_1", status="past_due",
                       items=[subscription_item(id="si_1", subscription="sub_1", product="prod_TEAM",
                                                unit_amount=2000, quantity=3)],
                       discounts=[{"id": "di_1", "object": "discount", "end": 1_790_000_000,
                                   "coupon": {"id": "LAUNCH10", "percent_off": 10.0}}])
    two = subscription(id="sub_2", created=1_767_225_600, customer="cus_2", status="canceled", embedded=1,
                       ended_at=1_780_000_000, items=[
                           subscription_item(id="si_a", subscription="sub_2", product="prod_SEAT", unit_amount=900,
                                             quantity=10, interval="month", interval_count=3),
                           subscription_item(id="si_b", subscription="sub_2", product="prod_ADDON", unit_amount=500,
                                             quantity=1, interval="week")])
    stripe_api.objects.update(subscriptions=[one, two], subscription_items=two["items"]["data"] + [
        subscription_item(id="si_b", subscription="sub_2", product="prod_ADDON", unit_amount=500, quantity=1,
                          interval="week")])
    record, sink = pull_source(_config(tmp_path, stripe_api, "subscriptions"), 0)
    assert not sink.problems
    assert any("status=all" in r for r in stripe_api.requests)  # canceled subscriptions too
    assert any(r.startswith("/v1/subscription_items?") and "subscription=sub_2" in r for r in stripe_api.requests)
    rows = {r["id"]: r for r in _rows(tmp_path / "pulls/subscriptions" / record.snapshot)}
    assert sorted(rows) == ["sub_1", "sub_2/si_a", "sub_2/si_b"]
    assert {k: rows["sub_1"][k] for k in ("subscription", "sku", "quantity", "unit_amount", "interval",
                                          "billing_anchor", "discount_percent", "coupon", "status")} == {
        "subscription": "sub_1", "sku": "prod_TEAM", "quantity": "3", "unit_amount": "2000", "interval": "month",
        "billing_anchor": "15", "discount_percent": "10", "coupon": "LAUNCH10", "status": "past_due"}
    assert (rows["sub_2/si_a"]["interval"], rows["sub_2/si_b"]["interval"]) == ("month*3", "week")

    tables, quarantined = ingested(_config(tmp_path / "run", stripe_api, "subscriptions"))
    subs = {r["subscription_id"]: r for r in tables["subscriptions"]}
    assert sorted(subs) == ["sub_1", "sub_2/si_a"]
    assert (subs["sub_1"]["status"], subs["sub_1"]["contract_id"], subs["sub_1"]["unit_amount"]) == (
        "active", "sub_1", 2000)
    assert (subs["sub_2/si_a"]["interval"], subs["sub_2/si_a"]["contract_id"], str(subs["sub_2/si_a"]["end_date"])) \
        == ("quarter", "sub_2", "2026-05-28")
    (q,) = quarantined
    assert (q["column_name"], q["reason"]) == ("interval", "record sub_2/si_b: unknown value 'week' (expected one "
                                                           "of month, quarter, year)")


def test_stripe_invoice_lines_read_every_page_in_both_api_shapes(tmp_path: Path, stripe_api: StripeServer) -> None:
    from .vendor_servers import invoice_line, invoice_with_lines

    start, end = 1_782_864_000, 1_785_542_400  # 2026-07-01 .. 2026-08-01
    lines = [invoice_line(id="il_1", invoice="in_1", amount=6000, quantity=3, start=start, end=end, tax=600,
                          discount=600),
             invoice_line(id="il_2", invoice="in_1", amount=-1000, quantity=1, start=start + 86_400 * 10, end=end,
                          proration=True),
             invoice_line(id="il_3", invoice="in_1", amount=500, quantity=1, start=start, end=end, old_shape=True,
                          product="prod_B", price="price_B", tax=50)]
    inv = invoice_with_lines(id="in_1", created=start, lines=lines, embedded=1, status="paid", customer="cus_1",
                             subscription="sub_1")
    stripe_api.objects.update(invoices=[inv])
    record, sink = pull_source(_config(tmp_path, stripe_api, "invoice_lines"), 0)
    assert not sink.problems and any(r.startswith("/v1/invoices/in_1/lines") for r in stripe_api.requests)
    rows = {r["id"]: r for r in _rows(tmp_path / "pulls/invoice_lines" / record.snapshot)}
    assert [(r["id"], r["sku"], r["unit_amount"], r["discount"], r["tax"], r["proration"], r["kind"])
            for r in rows.values()] == [("il_1", "prod_A", "2000", "600", "600", "false", None),
                                        ("il_2", "prod_A", "-1000", "0", "0", "true", "proration"),
                                        ("il_3", "prod_B", "500", "0", "50", "false", "recurring")]
    tables, quarantined = ingested(_config(tmp_path / "run", stripe_api, "invoice_lines"))
    assert not quarantined
    got = sorted((r["invoice_id"], r["line_id"], r["amount"], str(r["period_start"]), str(r["period_end"]))
                 for r in tables["invoice_lines"])
    assert got == [("in_1", "il_1", 6000, "2026-07-01", "2026-08-01"), ("in_1", "il_2", -1000, "2026-07-11",
                                                                        "2026-08-01"),
                   ("in_1", "il_3", 500, "2026-07-01", "2026-08-01")]


def test_stripe_bad_values_are_quarantined_naming_source_record_and_field(
        tmp_path: Path, stripe_api: StripeServer) -> None:
    from .vendor_servers import stripe_template

    def inv(n: int, **fields: Any) -> dict[str, Any]:
        i = stripe_template("invoice")
        i.update(id=f"in_{n}", created=1_780_000_000 + n, status="paid", currency="usd", total=1000,
                 period_start=1_780_000_000, period_end=1_782_000_000)
        i.update(fields)
        return i

    stripe_api.objects.update(invoices=[
        inv(1), inv(2, status="settled_elsewhere"), inv(3, period_start="2026-07-01 00:00:00 PST"),
        inv(4, currency="eur"), inv(5, currency="xyz")])
    tables, quarantined = ingested(_config(tmp_path, stripe_api, "invoices", currencies=["usd"]))
    assert [r["invoice_id"] for r in tables["invoices"]] == ["in_1"]
    assert sorted((q["source"], q["column_name"], q["reason"]) for q in quarantined) == [
        ("stripe", "currency", "record in_4: required value is empty (currency 'eur' is not one the source "
                                        "declares (usd))"),
        ("stripe", "currency", "record in_5: required value is empty (currency 'xyz' is not one the source "
                                        "declares (usd))"),
        ("stripe", "period_start", "record in_3: '2026-07-01 00:00:00 PST' is not a date/time in a known format "
                                   "(unix) (field 'period_start' is text with the time zone abbreviation 'PST', "
                                   "which names no unique offset; the API sends Unix seconds)"),
        ("stripe", "status", "record in_2: unknown value 'settled_elsewhere' (expected one of draft, open, "
                                      "paid, void, uncollectible)"),
    ]


def test_run_full_refresh_pulls_every_connector_source_in_full(tmp_path: Path, stripe_api: StripeServer) -> None:
    import io
    from contextlib import redirect_stderr, redirect_stdout

    from tieout.cli import run_cli

    stripe_api.objects.update(balance_transactions=[_txn(1, 1_780_000_000), _txn(2, 1_780_000_100)], payouts=[])
    opts = {"api_key": KEY, "api_base": stripe_api.url, "metadata_keys": ["invoice_number"]}
    (tmp_path / "tieout.yaml").write_text(f"""
store: sqlite:///{tmp_path / 'store.db'}
sources:
  - name: stripe_balance
    format: stripe_api.balance_transactions
    path: pulls/balance
    columns: {{invoice_ref: "payment_metadata[invoice_number]"}}
    options: {json.dumps(opts)}
""", encoding="utf-8")
    modes = []
    for extra in ([], ["--full-refresh"]):  # a second plain run is incremental (tested above)
        stripe_api.requests.clear()
        with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
            code = run_cli(["run", "-c", str(tmp_path / "tieout.yaml"), "--fail-on", "never", *extra])
        assert code == ExitCode.CLEAN
        pulled = [r for r in stripe_api.requests if r.startswith("/v1/balance_transactions?") and "payout=" not in r]
        record = last_pull(tmp_path / "pulls/balance")
        assert record is not None
        modes.append((record.mode, any("created" in r for r in pulled)))
    assert modes == [("full", False), ("full", False)]  # the cursor the first run stored is ignored


def test_stripe_billing_streams_feed_the_billing_subscriptions_check(tmp_path: Path, stripe_api: StripeServer) -> None:
    """Subscriptions, invoices and their lines from Stripe Billing are what `billing_subscriptions` reads:
    a line billing the contracted quantity passes, one billing a seat more is a quantity_mismatch."""
    from .vendor_servers import invoice_line, invoice_with_lines, subscription, subscription_item

    july, aug, sep = 1_782_864_000, 1_785_542_400, 1_788_220_800
    sub = subscription(id="sub_1", created=july, customer="cus_1", status="active",
                       items=[subscription_item(id="si_1", subscription="sub_1", product="prod_TEAM", unit_amount=2000,
                                                quantity=3)])
    invoices = [invoice_with_lines(id=f"in_{n}", created=start, status="paid", customer="cus_1", subscription="sub_1",
                                   currency="usd", subtotal=2000 * qty, total=2000 * qty, amount_paid=2000 * qty,
                                   period_start=start, period_end=end,
                                   lines=[invoice_line(id=f"il_{n}", invoice=f"in_{n}", amount=2000 * qty, quantity=qty,
                                                       start=start, end=end, product="prod_TEAM")])
                for n, start, end, qty in ((1, july, aug, 3), (2, aug, sep, 4))]
    stripe_api.objects.update(subscriptions=[sub], invoices=invoices)
    opts = json.dumps({"api_key": KEY, "api_base": stripe_api.url})
    cfg = parse_config(f"""
store: sqlite:///{tmp_path / 'store.db'}
as_of: 2026-09-15
sources:
  - {{name: subs, format: stripe_api.subscriptions, path: pulls/subs, options: {opts}}}
  - {{name: invoices, format: stripe_api.invoices, path: pulls/invoices, options: {opts}}}
  - {{name: lines, format: stripe_api.invoice_lines, path: pulls/lines, options: {opts}}}
""", tmp_path / "tieout.yaml")
    result = run(cfg)
    assert not result.quarantined and "billing_subscriptions" in result.checks_run
    assert [(f.check, f.category, f.subject, f.expected, f.actual) for f in result.findings] == [
        ("billing_subscriptions", "quantity_mismatch", "in_2/il_2", "3", "4")]


def test_stripe_deletions_between_incremental_pulls_reach_the_next_run(tmp_path: Path,
                                                                       stripe_api: StripeServer) -> None:
    """A deleted customer leaves the customers table; a deleted subscription (Stripe cancels it, its
    `created` unchanged, so the incremental listing never sees it) is read canceled from its event."""
    from .vendor_servers import pinned_ids, stripe_event, stripe_template, subscription, subscription_item

    t0 = 1_780_000_000
    customers = []
    for n in range(1, 4):
        c = stripe_template("customer")
        c.update(id=f"cus_{n}", created=t0 + n, name=f"Customer {n}", email=f"billing{n}@example.com")
        customers.append(c)
    subs = [subscription(id=f"sub_{n}", created=t0 + n, customer=f"cus_{n}", status="active",
                         items=[subscription_item(id=f"si_{n}", subscription=f"sub_{n}", product="prod_TEAM",
                                                  unit_amount=2000, quantity=1)]) for n in (1, 2)]
    stripe_api.objects.update(customers=customers, subscriptions=subs, events=[])
    text = f"""
sources:
  - {{name: stripe_customers, format: stripe_api.customers, path: pulls/customers,
     options: {{api_key: {KEY}, api_base: "{stripe_api.url}"}}}}
  - {{name: stripe_subscriptions, format: stripe_api.subscriptions, path: pulls/subscriptions,
     options: {{api_key: {KEY}, api_base: "{stripe_api.url}"}}}}
"""
    cfg = parse_config(text, tmp_path / "tieout.yaml")
    first, _ = ingested(cfg)
    assert sorted(r["customer_id"] for r in first["customers"]) == ["cus_1", "cus_2", "cus_3"]
    assert {r["subscription_id"]: r["status"] for r in first["subscriptions"]} == {"sub_1": "active",
                                                                                 "sub_2": "active"}
    before = last_pull(tmp_path / "pulls/customers")
    gone = stripe_api.objects["customers"].pop(1)  # DELETE /v1/customers/cus_2
    canceled = subs[0] | {"status": "canceled", "ended_at": t0 + 500, "canceled_at": t0 + 500}
    stripe_api.objects["subscriptions"][0] = canceled
    stripe_api.objects["events"] = [
        stripe_event(id="evt_1", created=t0 + 400, type="customer.deleted", obj=gone),
        stripe_event(id="evt_2", created=t0 + 500, type="customer.subscription.deleted", obj=canceled),
        stripe_event(id="evt_3", created=t0 + 600, type="invoice.paid", obj=stripe_template("invoice"))]
    stripe_api.requests.clear()
    second, _ = ingested(cfg)
    assert any(r.startswith("/v1/events?") and "customer.deleted" in r for r in stripe_api.requests)
    assert sorted(r["customer_id"] for r in second["customers"]) == ["cus_1", "cus_3"]
    subs_after = {r["subscription_id"]: r for r in second["subscriptions"]}
    assert (subs_after["sub_1"]["status"], str(subs_after["sub_1"]["end_date"])) == ("canceled", "2026-05-28")
    assert subs_after["sub_2"]["status"] == "active"
    after = last_pull(tmp_path / "pulls/customers")
    assert after is not None and (after.mode, after.deleted, after.records) == ("incremental", 1, 2)
    assert after.cursor["event_created"] == t0 + 400  # customer events only
    pinned = parse_config(text.replace('api_base: "', 'snapshot: ' + str(before.pull_id if before else "") +
                                       ', api_base: "', 1), tmp_path / "tieout.yaml")
    assert pinned_ids(pinned, "id") == ["cus_1", "cus_2", "cus_3"]  # the earlier snapshot re-runs as it was

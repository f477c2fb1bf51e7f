"""The expected-invoice engine as the one source of truth: the check "billing vs subscriptions"
prices periods with it (the workspace's catalog, or one read off the contracts), and the set-based
shortcuts of the engine (rating each distinct quantity once, one join for usage events naming a
subscription or only a customer) give what the row-by-row rules give."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from tests.test_billing_validate import canonical
from tieout.billing.catalog import BillingConfig
from tieout.billing.expected import BillingTables, expected_lines
from tieout.billing.pricing import rated_amount
from tieout.checks.billing_subscriptions import BillingSubscriptionsParams, contract_catalog
from tieout.checks.registry import CHECKS, CheckContext
from tieout.engines.base import Engine

SUB = {"customer_id": "C1", "currency": "USD", "interval": "month", "status": "active"}
CATALOG = BillingConfig.model_validate({"products": [
    {"sku": "PRO", "currency": "USD", "model": "per_unit", "amount": "10"},
    {"sku": "TEAM", "currency": "USD", "model": "graduated",
     "tiers": [{"up_to": 5, "unit_amount": "10"}, {"unit_amount": "5"}]},
    {"sku": "API", "currency": "USD", "model": "graduated", "usage": True,
     "tiers": [{"up_to": 100, "unit_amount": "0.02"}, {"unit_amount": "0.015", "flat_amount": "1"}]},
]})


def _findings(engine: Engine, name: str, subs: list[dict[str, Any]], lines: list[dict[str, Any]],
              billing: BillingConfig | None) -> list[tuple[str, str, str | None, str | None]]:
    invoices = [{"invoice_id": ln["invoice_id"], "customer_id": "C1", "subscription_id": ln.pop("sub"),
                 "status": "open", "currency": "USD", "total": ln["amount"]} for ln in lines]
    tables = {"subscriptions": engine.from_arrow(f"s_{name}", canonical("subscriptions", subs)),
              "invoices": engine.from_arrow(f"i_{name}", canonical("invoices", invoices)),
              "invoice_lines": engine.from_arrow(f"l_{name}", canonical("invoice_lines", lines))}
    ctx = CheckContext(engine, tables, date(2026, 3, 31), "USD", billing=billing)
    rows = CHECKS["billing_subscriptions"].run(ctx, BillingSubscriptionsParams()).to_pyarrow().to_pylist()
    return sorted((r["category"], r["subject"], r["expected"], r["actual"]) for r in rows)


def _line(inv: str, sub: str, sku: str, qty: int, unit: int, amount: int, start: date,
          end: date = date(2026, 4, 1)) -> dict[str, Any]:
    return {"invoice_id": inv, "line_id": "1", "sub": sub, "sku": sku, "quantity": qty, "unit_amount": unit,
            "amount": amount, "discount": 0, "currency": "USD", "period_start": start, "period_end": end}


def test_check_prices_periods_with_the_workspace_catalog(engine: Engine) -> None:
    # TEAM is graduated in the catalog: 8 seats are 5 x 10.00 + 3 x 5.00 = 65.00, not 8 x the contract's 10.00.
    subs = [dict(SUB, subscription_id="S1", sku="TEAM", quantity=8, unit_amount=1000, start_date=date(2026, 1, 1),
                 billing_anchor=1),
            dict(SUB, subscription_id="S2", sku="TEAM", quantity=8, unit_amount=1000, start_date=date(2026, 1, 1),
                 billing_anchor=1, customer_id="C2")]
    lines = [_line("I1", "S1", "TEAM", 8, 1000, 6500, date(2026, 3, 1)),
             _line("I2", "S2", "TEAM", 8, 1000, 8000, date(2026, 3, 1))]
    assert _findings(engine, "cat", subs, lines, CATALOG) == [("amount_mismatch", "I2/1", "6500", "8000")]
    # A SKU the catalog does not price keeps the contract as its price list.
    other = [dict(SUB, subscription_id="S3", sku="LEGACY", quantity=2, unit_amount=700, start_date=date(2026, 1, 1),
                  customer_id="C3")]
    bad = [_line("I3", "S3", "LEGACY", 2, 800, 1600, date(2026, 3, 1))]
    assert _findings(engine, "legacy", other, bad, CATALOG) == [("price_mismatch", "I3/1", "700", "800")]
    # Without the catalog, the contracts are the price list: 8 x 10.00 is right, 65.00 is short.
    lines = [_line("I1", "S1", "TEAM", 8, 1000, 6500, date(2026, 3, 1)),
             _line("I2", "S2", "TEAM", 8, 1000, 8000, date(2026, 3, 1))]
    assert _findings(engine, "nocat", subs, lines, None) == [("amount_mismatch", "I1/1", "8000", "6500")]


def test_check_nets_the_charge_and_the_credit_of_a_cycle_billed_in_advance(engine: Engine) -> None:
    # Canceled on March 16 of a plan billed in advance: the engine bills 10.00 on March 1 and credits
    # 16/31 of it (5.16) on April 1; the period's service is worth the net, 4.84.
    subs = [dict(SUB, subscription_id="S1", sku="PRO", quantity=1, unit_amount=1000, start_date=date(2026, 1, 1),
                 end_date=date(2026, 3, 16), status="canceled", billing_anchor=1)]
    period = {"subscriptions": engine.from_arrow("s_net", canonical("subscriptions", subs))}
    got = expected_lines(engine, CATALOG, BillingTables(period["subscriptions"]),
                         [date(2026, 3, 1), date(2026, 4, 1)]).order_by("bill_date").to_pyarrow().to_pylist()
    assert [(r["kind"], r["amount"]) for r in got] == [("recurring", 1000), ("credit", -516)]
    ok = [_line("I1", "S1", "PRO", 1, 1000, 484, date(2026, 3, 1), date(2026, 3, 16))]
    assert _findings(engine, "net_ok", subs, ok, CATALOG) == []
    full = [_line("I1", "S1", "PRO", 1, 1000, 1000, date(2026, 3, 1), date(2026, 3, 16))]
    assert _findings(engine, "net_full", subs, full, CATALOG) == [("proration_error", "I1/1", "484", "1000")]


def test_contract_catalog_has_one_product_per_sku_currency_and_interval(engine: Engine) -> None:
    subs = [dict(SUB, subscription_id="S1", sku="PRO", quantity=1, unit_amount=1000, start_date=date(2026, 1, 1)),
            dict(SUB, subscription_id="S2", sku="PRO", quantity=1, unit_amount=900, start_date=date(2026, 1, 1),
                 currency="EUR"),
            dict(SUB, subscription_id="S3", sku="PRO", quantity=1, unit_amount=900, start_date=date(2026, 1, 1),
                 interval="fortnightly")]
    cfg = contract_catalog(engine.from_arrow("s_cc", canonical("subscriptions", subs)))
    assert sorted((p.sku.split("\x1f")[1], p.months, p.model, p.timing) for p in cfg.products) == [
        ("EUR", 1, "per_unit", "arrears"), ("USD", 1, "per_unit", "arrears"), ("USD", 1, "per_unit", "arrears")]


def test_usage_events_naming_only_the_customer_count_in_each_of_its_windows(engine: Engine) -> None:
    subs = [dict(SUB, subscription_id=s, sku="API", quantity=1, unit_amount=0, start_date=date(2026, 3, 1))
            for s in ("S1", "S2")]
    at = datetime(2026, 3, 10, tzinfo=UTC)
    events = [{"event_id": "a", "customer_id": "C1", "subscription_id": "S1", "sku": "API", "quantity": 50,
               "occurred_at": at},
              {"event_id": "b", "customer_id": "C1", "subscription_id": None, "sku": "API", "quantity": 7,
               "occurred_at": at},
              # One id, two rows: one names S2, so the event is S2's alone (the customer does not decide).
              {"event_id": "c", "customer_id": "C1", "subscription_id": "S2", "sku": "API", "quantity": 3,
               "occurred_at": at},
              {"event_id": "c", "customer_id": "C9", "subscription_id": None, "sku": "API", "quantity": 3,
               "occurred_at": at},
              {"event_id": "d", "customer_id": "C2", "subscription_id": None, "sku": "API", "quantity": 1000,
               "occurred_at": at}]
    t = BillingTables(engine.from_arrow("s_loose", canonical("subscriptions", subs)),
                      usage_events=engine.from_arrow("u_loose", canonical("usage_events", events)))
    rows = expected_lines(engine, CATALOG, t, [date(2026, 4, 1)]).to_pyarrow().to_pylist()
    assert sorted((r["subscription_id"], r["quantity"], r["amount"]) for r in rows) == [
        ("S1", 57, 114), ("S2", 10, 20)]


def test_distinct_quantities_rated_once_give_each_row_its_own_amount(engine: Engine) -> None:
    qty = [1, 5, 5, 6, 8, 8, 8, 40, 0, 6]
    subs = [dict(SUB, subscription_id=f"S{i}", sku="TEAM", quantity=q, unit_amount=0, start_date=date(2026, 1, 1),
                 billing_anchor=1) for i, q in enumerate(qty)]
    t = BillingTables(engine.from_arrow("s_dq", canonical("subscriptions", subs)))
    rows = expected_lines(engine, CATALOG, t, [date(2026, 3, 1)]).to_pyarrow().to_pylist()
    got = {r["subscription_id"]: r["amount"] for r in rows}
    team = CATALOG.product("TEAM")
    assert team is not None
    want = {f"S{i}": int(rated_amount(team, q)) for i, q in enumerate(qty) if q}
    assert got == want
    assert all(r["explanation"].startswith("TEAM graduated: ") for r in rows)
    assert Decimal(got["S4"]) == Decimal(6500)


def _lines(engine: Engine, name: str, cfg: BillingConfig, subs: list[dict[str, Any]], dates: list[date],
           events: list[dict[str, Any]] | None = None) -> list[tuple[Any, ...]]:
    t = BillingTables(engine.from_arrow(f"s_{name}", canonical("subscriptions", subs)),
                      usage_events=None if events is None else engine.from_arrow(f"u_{name}",
                                                                                 canonical("usage_events", events)))
    rows = expected_lines(engine, cfg, t, dates).to_pyarrow().to_pylist()
    return sorted((r["bill_date"], r["kind"], r["sku"], r["period_start"], r["amount"], r["discount"]) for r in rows)


def test_minimum_commitment_is_prorated_by_the_policy(engine: Engine) -> None:
    """A 30.00 monthly minimum on a usage plan started on April 10 at 12:00 UTC, 50 units at 0.10 used
    (5.00). By second 1,771,200 of April's 2,592,000 seconds remain: the prorated minimum is
    30.00 × 1771200/2592000 = 20.50 and the true-up 20.50 − 5.00 = 15.50. By day (21/30): 21.00 − 5.00 = 16.00."""
    products = [{"sku": "MSG", "currency": "USD", "model": "graduated", "usage": True, "minimum": "30.00",
                 "tiers": [{"unit_amount": "0.10"}]}]
    subs = [dict(SUB, subscription_id="S1", sku="MSG", quantity=1, unit_amount=0, start_date=date(2026, 4, 10),
                 start_at=datetime(2026, 4, 10, 12, tzinfo=UTC), billing_anchor=1)]
    events = [{"event_id": f"e{i}", "customer_id": "C1", "subscription_id": "S1", "sku": "MSG", "quantity": 10,
               "occurred_at": datetime(2026, 4, 20 + i, tzinfo=UTC)} for i in range(5)]
    may = date(2026, 5, 1)
    by_second = BillingConfig.model_validate({"proration": "second", "products": products})
    by_day = BillingConfig.model_validate({"proration": "day", "products": products})
    assert _lines(engine, "min_s", by_second, subs, [may], events) == [
        (may, "minimum", "MSG", date(2026, 4, 10), 1550, 0), (may, "usage", "MSG", date(2026, 4, 10), 500, 0)]
    assert _lines(engine, "min_d", by_day, subs, [may], events) == [
        (may, "minimum", "MSG", date(2026, 4, 10), 1600, 0), (may, "usage", "MSG", date(2026, 4, 10), 500, 0)]


def test_a_coupon_cap_is_shared_across_the_invoice_by_largest_remainder(engine: Engine) -> None:
    """HALF (50 %, capped at 30.00 per invoice) on a contract with two plans: 50 % of 49.00 and of 33.33 is
    24.50 + 16.67 = 41.17, above the cap, so the 30.00 is shared in proportion: 3000 × 2450/4117 =
    1785.28 and 3000 × 1667/4117 = 1214.72; the floors (1785 + 1214) leave one unit, which goes to the
    largest remainder (0.72): 1785 + 1215 = 3000. Under the cap (one plan, 24.50) nothing changes."""
    cfg = BillingConfig.model_validate({
        "products": [{"sku": "PRO", "currency": "USD", "model": "per_unit", "amount": "4.90"},
                     {"sku": "FLAT", "currency": "USD", "model": "flat", "amount": "33.33"}],
        "coupons": [{"code": "HALF", "percent_off": 50, "cap": "30.00"}]})
    common = dict(SUB, start_date=date(2026, 1, 1), billing_anchor=1, coupon="HALF")
    subs = [dict(common, subscription_id="S1", contract_id="K1", sku="PRO", quantity=10, unit_amount=490),
            dict(common, subscription_id="S2", contract_id="K1", sku="FLAT", quantity=1, unit_amount=3333),
            dict(common, subscription_id="S3", contract_id="K2", sku="PRO", quantity=10, unit_amount=490,
                 customer_id="C2")]
    mar = date(2026, 3, 1)
    assert _lines(engine, "cap", cfg, subs, [mar]) == [
        (mar, "recurring", "FLAT", mar, 3333, 1215), (mar, "recurring", "PRO", mar, 4900, 1785),
        (mar, "recurring", "PRO", mar, 4900, 2450)]


def test_a_pause_credits_the_paused_time_and_charges_the_resumed_time(engine: Engine) -> None:
    """docs/billing.md: 30.00/month paused April 11 to April 21 (the resume keeps the anchor, as Stripe's
    resume with billing_cycle_anchor=unchanged and its default create_prorations): the May 1 invoice
    credits April 11 - May 1 (-20.00) and charges April 21 - May 1 (+10.00) besides May (30.00). Resumed
    with a new anchor (Stripe's default billing_cycle_anchor=now, the resumed row's billing_anchor 21), the
    resumed row bills a full cycle at once on April 21 and the credit comes on the contract's next invoice
    of the old anchor, May 1."""
    cfg = BillingConfig.model_validate({"products": [{"sku": "PRO", "currency": "USD", "model": "flat",
                                                      "amount": "30.00"}]})
    base = dict(SUB, sku="PRO", quantity=1, unit_amount=3000, contract_id="K1", billing_anchor=1)
    subs = [dict(base, subscription_id="S1", start_date=date(2026, 1, 1), end_date=date(2026, 4, 11)),
            dict(base, subscription_id="S1p", start_date=date(2026, 4, 11), end_date=date(2026, 4, 21),
                 status="paused"),
            dict(base, subscription_id="S1r", start_date=date(2026, 4, 21))]
    apr, may = date(2026, 4, 1), date(2026, 5, 1)
    got = _lines(engine, "pause", cfg, subs, [apr, may])
    assert got == [(apr, "recurring", "PRO", apr, 3000, 0), (may, "credit", "PRO", date(2026, 4, 11), -2000, 0),
                   (may, "proration", "PRO", date(2026, 4, 21), 1000, 0), (may, "recurring", "PRO", may, 3000, 0)]
    subs[2]["billing_anchor"] = 21
    days = [date(2026, 4, 1) + timedelta(days=k) for k in range(61)]
    assert _lines(engine, "resume_now", cfg, subs, days) == [
        (apr, "recurring", "PRO", apr, 3000, 0), (date(2026, 4, 21), "recurring", "PRO", date(2026, 4, 21), 3000, 0),
        (may, "credit", "PRO", date(2026, 4, 11), -2000, 0),
        (date(2026, 5, 21), "recurring", "PRO", date(2026, 5, 21), 3000, 0)]

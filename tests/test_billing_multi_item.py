"""`billing_subscriptions` on subscriptions with several items (Stripe) or charges (Zuora), pulled from the
local vendor servers: the connectors make one subscription row per item (`sub/si`, `NUMBER/CHARGE`,
contract_id = the subscription) while invoices name the subscription. A correctly billed subscription
raises nothing; one item billed wrong raises exactly that item's finding."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tieout.config import Config, parse_config
from tieout.pipeline import run

from .vendor_servers import (
    StripeServer,
    invoice_line,
    invoice_with_lines,
    stripe_server,
    subscription,
    subscription_item,
)
from .zuora_server import ZuoraServer, account, charge, invoice, invoice_item, product, zuora_id, zuora_server
from .zuora_server import subscription as zuora_subscription

STRIPE_KEY = "sk_test_51MultiItemPlantedKey0000000000"
ZUORA_ID, ZUORA_SECRET = "multi-item-client", "zsec_multi_item_secret"
JULY, AUG, SEP = 1_782_864_000, 1_785_542_400, 1_788_220_800  # 2026-07-01, -08-01, -09-01 (UTC)


@pytest.fixture
def stripe_api() -> Iterator[StripeServer]:
    with stripe_server(STRIPE_KEY) as server:
        yield server


@pytest.fixture
def zuora() -> Iterator[ZuoraServer]:
    with zuora_server(ZUORA_ID, ZUORA_SECRET) as server:
        yield server


def _pulling(tmp_path: Path, as_of: str, connector: str, streams: tuple[str, ...], options: dict[str, Any]) -> Config:
    """A workspace reading `streams` of `connector` (one source each) as of `as_of`."""
    return parse_config(f"store: sqlite:///{tmp_path / 'store.db'}\nas_of: {as_of}\nsources:\n" + "".join(
        f"  - {{name: {s}, format: {connector}.{s}, path: pulls/{s}, options: {json.dumps(options)}}}\n"
        for s in streams), tmp_path / "tieout.yaml")


def _stripe_subscription(sub: str, customer: str) -> dict[str, Any]:
    """Three seats at 20.00 and one support plan at 50.00, both monthly from July 1."""
    return subscription(id=sub, created=JULY, customer=customer, status="active", items=[
        subscription_item(id=f"{sub}_seats", subscription=sub, product="prod_SEATS", unit_amount=2000, quantity=3),
        subscription_item(id=f"{sub}_support", subscription=sub, product="prod_SUPPORT", unit_amount=5000,
                          quantity=1)])


def _stripe_invoice(sub: str, customer: str, n: int, start: int, end: int, support_qty: int = 1) -> dict[str, Any]:
    lines = [invoice_line(id=f"il_{sub}_{n}_1", invoice=f"in_{sub}_{n}", amount=6000, quantity=3, start=start, end=end,
                          product="prod_SEATS", unit_amount=2000),
             invoice_line(id=f"il_{sub}_{n}_2", invoice=f"in_{sub}_{n}", amount=5000 * support_qty,
                          quantity=support_qty, start=start, end=end, product="prod_SUPPORT", unit_amount=5000)]
    total = sum(ln["amount"] for ln in lines)
    return invoice_with_lines(id=f"in_{sub}_{n}", created=start, status="paid", customer=customer, subscription=sub,
                              currency="usd", subtotal=total, total=total, amount_paid=total, period_start=start,
                              period_end=end, lines=lines)


def test_stripe_subscription_with_two_items(tmp_path: Path, stripe_api: StripeServer) -> None:
    stripe_api.objects.update(
        subscriptions=[_stripe_subscription("sub_ok", "cus_1"), _stripe_subscription("sub_bad", "cus_2")],
        invoices=[_stripe_invoice("sub_ok", "cus_1", 1, JULY, AUG), _stripe_invoice("sub_ok", "cus_1", 2, AUG, SEP),
                  _stripe_invoice("sub_bad", "cus_2", 1, JULY, AUG),
                  _stripe_invoice("sub_bad", "cus_2", 2, AUG, SEP, support_qty=2)])
    cfg = _pulling(tmp_path, "2026-09-15", "stripe_api", ("subscriptions", "invoices", "invoice_lines"),
                   {"api_key": STRIPE_KEY, "api_base": stripe_api.url})
    result = run(cfg)
    assert not result.quarantined and "billing_subscriptions" in result.checks_run
    assert [(f.check, f.category, f.subject, f.expected, f.actual, f.amount_at_risk) for f in result.findings] == [
        ("billing_subscriptions", "quantity_mismatch", "in_sub_bad_2/il_sub_bad_2_2", "1", "2", 5000)]
    (f,) = result.findings
    assert [e.key for e in f.evidence if e.table == "subscriptions"] == ["sub_bad/sub_bad_support"]


def _zuora_tenant(z: ZuoraServer) -> None:
    """Two Zuora subscriptions of two charges each (PRO seats and SEATS, from March 1); S-020's SEATS
    charge is billed at a wrong unit price in April."""
    accounts = [account(1, "A-010", _at(1), name="Acme Corp", email="ap@acme.example"),
                account(2, "A-020", _at(1), name="Beta GmbH", email="ap@beta.example")]
    z.objects["accounts"] = accounts
    z.objects["products"] = [product(1, "PRO", _at(1)), product(2, "SEATS", _at(1))]
    p1, p2 = zuora_id("pr", 1), zuora_id("pr", 2)
    z.objects["subscriptions"] = [
        zuora_subscription(n, name, zuora_id("ac", n), _at(2), plans=[
            (p1, [charge(f"C-{n}1", price=Decimal("49.00"), quantity=Decimal(5), currency="USD", start="2026-03-01",
                         end=None)]),
            (p2, [charge(f"C-{n}2", price=Decimal("10.00"), quantity=Decimal(20), currency="USD", start="2026-03-01",
                         end=None)])])
        for n, name in ((1, "S-010"), (2, "S-020"))]
    invoices, items = [], []
    for n, name in ((1, "S-010"), (2, "S-020")):
        for m, (start, end) in enumerate((("2026-03-01", "2026-03-31"), ("2026-04-01", "2026-04-30"))):
            k = n * 10 + m
            seats_price = Decimal("12.00") if (name, m) == ("S-020", 1) else Decimal("10.00")
            amount = Decimal("245.00") + seats_price * 20
            invoices.append(invoice(k, f"INV-{k}", zuora_id("ac", n), _at(3), amount=amount, without_tax=amount,
                                    tax=Decimal(0), balance=Decimal(0), invoice_date=start,
                                    posted=f"{start}T02:00:00-08:00"))
            items += [invoice_item(k * 10 + 1, zuora_id("in", k), _at(3), sku="PRO", amount=Decimal("245.00"),
                                   unit_price=Decimal("49.00"), quantity=Decimal(5), start=start, end=end,
                                   subscription_number=name),
                      invoice_item(k * 10 + 2, zuora_id("in", k), _at(3), sku="SEATS", amount=seats_price * 20,
                                   unit_price=seats_price, quantity=Decimal(20), start=start, end=end,
                                   subscription_number=name)]
    z.objects["invoices"], z.objects["invoice-items"] = invoices, items


def _at(minute: int) -> str:
    return f"2026-03-02T10:{minute:02d}:00-08:00"


def test_zuora_subscription_with_two_charges(tmp_path: Path, zuora: ZuoraServer) -> None:
    _zuora_tenant(zuora)
    cfg = _pulling(tmp_path, "2026-04-15", "zuora", ("accounts", "subscriptions", "invoices", "invoice_items"),
                   {"client_id": ZUORA_ID, "client_secret": ZUORA_SECRET, "base_url": zuora.url})
    result = run(cfg)
    assert not result.quarantined and "billing_subscriptions" in result.checks_run
    wrong = zuora_id("ii", 212)
    assert [(f.check, f.category, f.subject, f.expected, f.actual, f.amount_at_risk) for f in result.findings] == [
        ("billing_subscriptions", "price_mismatch", f"INV-21/{wrong}", "USD 10.00", "USD 12.00", 4000)]
    (f,) = result.findings
    assert [e.key for e in f.evidence if e.table == "subscriptions"] == ["S-020/C-22"]

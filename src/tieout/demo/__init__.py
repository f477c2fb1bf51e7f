"""The demo workspace: a quarter of realistic books for a few thousand customers across Stripe,
a billing engine and QuickBooks, written in the vendors' export layouts, with known injected
defects (the manifest) and many legitimate look-alikes that must raise nothing.

Deterministic for a given seed. Used by `tieout demo`, the end-to-end tests and the benchmarks.
Further systems (draft invoices, CRM and operations, ...) get their own module in this package,
called from `generate_workspace`.
"""

from __future__ import annotations

import csv
import json
import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from tieout.demo.crm import add_crm_and_operations
from tieout.demo.drafts import write_drafts
from tieout.money import currency_exponent, major_text

START = date(2026, 7, 1)
AS_OF = date(2026, 9, 30)
MONTHS = (date(2026, 7, 1), date(2026, 8, 1), date(2026, 9, 1))
PRICES = {  # sku -> currency -> unit price (minor units) per month
    "PRO": {"USD": 4900, "EUR": 4500, "JPY": 5000},
    "TEAM": {"USD": 1900, "EUR": 1800, "JPY": 2000},
    "ENT": {"USD": 150000, "EUR": 140000, "JPY": 160000},
}
CASH = {"USD": "Checking", "EUR": "Checking EUR", "JPY": "Checking JPY"}
FEES = {"USD": "Merchant Fees", "EUR": "Merchant Fees EUR", "JPY": "Merchant Fees JPY"}


@dataclass
class Manifest:
    """What the demo contains: the findings a correct engine must raise, and nothing else."""

    expected: list[tuple[str, str, str]] = field(default_factory=list)  # (check, category, subject)
    lookalikes: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    rows: dict[str, int] = field(default_factory=dict)

    def expect(self, check: str, category: str, subject: str) -> None:
        self.expected.append((check, category, subject))

    def summary(self) -> str:
        cats: dict[str, int] = defaultdict(int)
        for _, c, _ in self.expected:
            cats[c] += 1
        parts = [f"{sum(self.rows.values()):,} rows in {len(self.rows)} files",
                 f"{len(self.expected)} injected defects in {len(cats)} categories",
                 f"{sum(self.lookalikes.values())} legitimate look-alikes"]
        return "; ".join(parts)

    def to_json(self) -> str:
        return json.dumps({"expected": sorted(self.expected), "lookalikes": dict(sorted(self.lookalikes.items())),
                           "rows": self.rows}, indent=1)


def _qb_amount(minor: int, style: int, currency: str = "USD") -> str:
    """QuickBooks writes thousands separators; negatives as -1,250.00 or (1,250.00)."""
    sign = minor < 0
    exp = currency_exponent(currency)
    q, r = divmod(abs(minor), 10**exp)
    text = f"{q:,}.{r:0{exp}d}" if exp else f"{q:,}"
    if not sign:
        return text
    return f"({text})" if style % 2 else f"-{text}"


def _prorate(unit: int, qty: int, days: int, period_days: int) -> int:
    return (2 * unit * qty * days + period_days) // (2 * period_days)


def _pct(amount: int, pct: int) -> int:
    return (2 * amount * pct + 100) // 200


def _next_month(d: date) -> date:
    return date(d.year + (d.month == 12), d.month % 12 + 1, 1)


def _fee(gross: int, currency: str) -> int:
    if currency == "USD":
        return (gross * 29 + 500) // 1000 + 30
    if currency == "EUR":
        return (gross * 15 + 500) // 1000 + 25
    return (gross * 36 + 500) // 1000


class _Books:
    """Accumulates the rows of every system while customers are simulated."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.customers: list[dict[str, Any]] = []
        self.subs: list[dict[str, Any]] = []
        self.invoices: list[dict[str, Any]] = []
        self.lines: list[dict[str, Any]] = []
        self.payments: list[dict[str, Any]] = []
        self.balance: list[dict[str, Any]] = []  # Stripe balance transactions
        self.failed: list[dict[str, Any]] = []  # Stripe payments export, failed attempts
        self.gl: list[dict[str, Any]] = []  # (account, date, type, num, name, memo, amount)
        self.n: defaultdict[str, int] = defaultdict(int)
        self.instalments = 1  # mean card payments per clean card invoice (`generate_workspace`)

    def next_id(self, prefix: str, width: int = 6) -> str:
        self.n[prefix] += 1
        return f"{prefix}{self.n[prefix]:0{width}d}"

    def gw_id(self, prefix: str) -> str:
        self.n["gw"] += 1
        return f"{prefix}_{self.n['gw']:08d}{self.rng.choice('ABCDEFGHJK')}"


def _ts(d: date, hour: int, minute: int = 0) -> datetime:
    return datetime(d.year, d.month, d.day, hour, minute, tzinfo=UTC)


def generate_workspace(path: Path, customers: int = 2000, seed: int = 7, instalments: int = 1) -> Manifest:
    """Write `tieout.yaml` and the data files of a demo workspace into `path`.

    `instalments` > 1 puts every clean card invoice that is large enough on a payment plan: paid in 2 to
    2 * instalments - 2 card charges (`instalments` on average), each recorded in billing as its own
    payment against the invoice. The benchmark's target mix (about five gateway transactions per
    invoice) uses it; the default (1) is the demo as it always was, byte for byte."""
    rng = random.Random(seed)
    path.mkdir(parents=True, exist_ok=True)
    (path / "data").mkdir(exist_ok=True)
    b = _Books(rng)
    b.instalments = instalments
    m = Manifest()
    defect_plan = _plan_defects(customers, rng)

    for i in range(customers):
        _simulate_customer(b, m, i, defect_plan.get(i), rng)
    _payouts_and_ledger(b, m, rng)
    add_crm_and_operations(path / "data", b, m, rng)
    _write_all(path, b, m)
    write_drafts(path, contracts=max(40, customers // 50), seed=seed)
    return m


_GATEWAY_DEFECTS = ("payment_unmatched", "paid_without_payment:card", "paid_without_payment:invoice",
                    "amount_mismatch", "currency_mismatch", "refund_not_reflected", "chargeback_not_reflected",
                    "failed_payment_not_retried", "duplicate_payment")
_BILLING_DEFECTS = ("missing_invoice", "price_mismatch", "quantity_mismatch", "proration_error",
                    "duplicate_discount", "expired_discount_applied", "overlapping_subscriptions",
                    "billed_after_cancellation")


def _plan_defects(customers: int, rng: random.Random) -> dict[int, str]:
    """Each defect kind injected several times (scaled to size), each on its own customer."""
    kinds = list(_GATEWAY_DEFECTS + _BILLING_DEFECTS)
    per_kind = max(1, customers // 400)
    slots = rng.sample(range(customers), min(customers, per_kind * len(kinds)))
    return {c: kinds[k % len(kinds)] for k, c in enumerate(slots)}


def _simulate_customer(b: _Books, m: Manifest, i: int, defect: str | None, rng: random.Random) -> None:
    cid = f"C{i + 1:05d}"
    cus = f"cus_{i + 1:07d}"
    currency = rng.choices(["USD", "EUR", "JPY"], weights=[80, 15, 5])[0]
    segment = rng.choices(["smb", "mid-market", "enterprise"], weights=[70, 25, 5])[0]
    b.customers.append({"customer_id": cid, "name": f"Customer {i + 1} Inc.", "email": f"billing@c{i + 1}.example",
                        "gateway_customer_id": cus, "crm_id": f"001A{i + 1:011d}", "segment": segment,
                        "status": "active"})
    sku = "ENT" if segment == "enterprise" else rng.choice(["PRO", "TEAM"])
    qty = 1 if sku == "ENT" else rng.randint(1, 40)
    unit = PRICES[sku][currency]
    method = "wire" if (segment == "enterprise" or rng.random() < 0.08) and defect is None else "card"
    start = date(2025, rng.randint(1, 12), rng.randint(1, 28))
    end: date | None = None
    discount_pct: int | None = None
    discount_end: date | None = None
    r = rng.random()
    if defect is None and r < 0.06:
        start = date(2026, rng.choice([7, 8]), rng.randint(2, 28))  # mid-month start: correct proration
        m.lookalikes["mid-period start, correctly prorated"] += 1
    elif defect is None and r < 0.10:
        end = rng.choice([date(2026, 8, 1), date(2026, 9, 1)])  # canceled at period end: no later invoice
        m.lookalikes["canceled at period end, not billed after"] += 1
    elif defect is None and r < 0.13:
        end = date(2026, 8, 12)  # canceled mid-period: last invoice correctly prorated
        m.lookalikes["canceled mid-period, prorated final invoice"] += 1
    if defect in ("proration_error",):
        start = date(2026, 8, rng.randint(5, 25))
    if defect in ("billed_after_cancellation",):
        end = date(2026, 9, 1)
    if (defect is None and rng.random() < 0.15) or defect in ("duplicate_discount", "expired_discount_applied"):
        discount_pct = rng.choice([10, 15, 20])
        if defect == "expired_discount_applied" or (defect is None and rng.random() < 0.4):
            discount_end = date(2026, rng.choice([8, 9]), 1)
            if defect is None:
                m.lookalikes["discount ended at a period boundary, not applied after"] += 1
    sid = f"SUB-{i + 1:05d}"
    subs = [{"subscription_id": sid, "customer_id": cid, "sku": sku, "quantity": qty, "unit_amount": unit,
             "currency": currency, "interval": "month", "start_date": start, "end_date": end,
             "status": "canceled" if end else "active", "discount_percent": discount_pct,
             "discount_end": discount_end}]
    if defect is None and sku != "ENT" and rng.random() < 0.03:
        # Upgrade: old plan ends the day the new one starts (end exclusive): no overlap.
        subs[0]["end_date"] = date(2026, 8, 1)
        subs[0]["status"] = "canceled"
        subs.append({**subs[0], "subscription_id": sid + "-U", "quantity": qty + 5, "start_date": date(2026, 8, 1),
                     "end_date": None, "status": "active"})
        m.lookalikes["upgrade on a period boundary, no overlap"] += 1
    if defect == "overlapping_subscriptions":
        subs.append({**subs[0], "subscription_id": sid + "-B", "start_date": date(2026, 8, 15), "end_date": None})
        m.expect("billing_subscriptions", "overlapping_subscriptions", f"{sid}|{sid}-B")
    b.subs.extend(subs)

    for s in subs:
        for month in MONTHS:
            _bill_period(b, m, s, month, cus, method, defect if s is subs[0] else None, rng)


def _bill_period(b: _Books, m: Manifest, s: dict[str, Any], month: date, cus: str, method: str,
                 defect: str | None, rng: random.Random) -> None:
    nxt = _next_month(month)
    end = s["end_date"]
    service_start = max(month, s["start_date"])
    service_end = min(nxt, end) if end else nxt
    period_days = (nxt - month).days
    days = (service_end - service_start).days
    after_cancel = defect == "billed_after_cancellation" and end is not None and month >= end
    if days <= 0 and not after_cancel:
        return
    if defect == "missing_invoice" and month == MONTHS[1]:
        m.expect("billing_subscriptions", "missing_invoice", f"{s['subscription_id']}@{month.isoformat()}")
        return
    currency, unit, qty = s["currency"], s["unit_amount"], s["quantity"]
    if after_cancel:
        days = period_days
        service_start = month
    inv_id = b.next_id("INV-")
    line_id = "1"
    subject = f"{inv_id}/{line_id}"
    bill_unit, bill_qty = unit, qty
    amount = _prorate(unit, qty, days, period_days)
    if defect == "price_mismatch" and month == MONTHS[1]:
        bill_unit = unit + 1000
        amount = _prorate(bill_unit, qty, days, period_days)
        m.expect("billing_subscriptions", "price_mismatch", subject)
    if defect == "quantity_mismatch" and month == MONTHS[1]:
        bill_qty = qty + 2
        amount = _prorate(unit, bill_qty, days, period_days)
        m.expect("billing_subscriptions", "quantity_mismatch", subject)
    if defect == "proration_error" and days < period_days:
        amount = unit * qty  # billed the full month for a partial first period
        m.expect("billing_subscriptions", "proration_error", subject)
    if after_cancel:
        m.expect("billing_subscriptions", "billed_after_cancellation", subject)
    pct = s["discount_percent"]
    applies = pct is not None and (s["discount_end"] is None or month < s["discount_end"])
    discount = _pct(amount, pct) if applies and pct else 0
    if defect == "duplicate_discount" and month == MONTHS[1] and pct:
        discount = 2 * _pct(amount, pct)
        m.expect("billing_subscriptions", "duplicate_discount", subject)
    if defect == "expired_discount_applied" and pct and s["discount_end"] and month >= s["discount_end"]:
        discount = _pct(amount, pct)
        m.expect("billing_subscriptions", "expired_discount_applied", subject)
    total = amount - discount
    issued = _ts(month, rng.randint(0, 5), rng.randint(0, 59))
    invoice = {"invoice_id": inv_id, "customer_id": s["customer_id"], "subscription_id": s["subscription_id"],
               "status": "paid", "issued_at": issued, "period_start": month, "period_end": nxt,
               "currency": currency, "subtotal": amount, "discount": discount, "tax": 0, "total": total,
               "amount_paid": total}
    b.invoices.append(invoice)
    b.lines.append({"invoice_id": inv_id, "line_id": line_id, "sku": s["sku"], "quantity": bill_qty,
                    "unit_amount": bill_unit, "amount": amount, "discount": discount, "currency": currency,
                    "period_start": service_start, "period_end": service_end if not after_cancel else nxt,
                    "proration": days < period_days})
    if total <= 0:
        return
    # Only one invoice per customer carries the gateway defect: the August one.
    gw_defect = defect if month == MONTHS[1] else None
    _collect(b, m, invoice, cus, method, gw_defect, rng)


def _charge(b: _Books, inv: dict[str, Any], cus: str, amount: int, when: datetime, currency: str) -> dict[str, Any]:
    ch = b.gw_id("ch")
    fee = _fee(amount, currency)
    row = {"id": ch, "type": "charge", "created": when, "currency": currency, "gross": amount, "fee": fee,
           "net": amount - fee, "charge_id": ch, "customer": cus, "invoice": inv["invoice_id"]}
    b.balance.append(row)
    return row


def _record(b: _Books, inv: dict[str, Any], kind: str, method: str, amount: int, when: datetime, ref: str | None,
            currency: str | None = None) -> str:
    pid = b.next_id("PAY-")
    b.payments.append({"payment_id": pid, "invoice_id": inv["invoice_id"], "customer_id": inv["customer_id"],
                       "type": kind, "method": method, "amount": amount, "currency": currency or inv["currency"],
                       "received_at": when, "gateway_ref": ref})
    return pid


def _collect(b: _Books, m: Manifest, inv: dict[str, Any], cus: str, method: str, defect: str | None,
             rng: random.Random) -> None:
    total, cur = inv["total"], inv["currency"]
    issued: datetime = inv["issued_at"]
    when = issued + timedelta(hours=rng.randint(1, 40))
    if issued.date() >= date(2026, 9, 1) and defect is None and rng.random() < 0.10:
        inv["status"], inv["amount_paid"] = "open", 0  # not yet due: open, no payment, nothing to flag
        m.lookalikes["open invoice, not yet due"] += 1
        return
    if method == "wire":
        pid = _record(b, inv, "payment", "wire", total, when, None)
        b.gl.append({"account": CASH[cur], "date": when.date() + timedelta(days=1), "type": "Deposit", "num": pid,
                     "name": inv["customer_id"], "memo": f"Wire {inv['invoice_id']}", "amount": total, "cur": cur})
        m.lookalikes["paid by wire, not through the gateway"] += 1
        return
    if defect == "paid_without_payment:invoice":
        m.expect("gateway_billing", "paid_without_payment", inv["invoice_id"])
        return  # marked paid, nothing recorded, nothing charged
    if defect == "paid_without_payment:card":
        pid = _record(b, inv, "payment", "card", total, when, "ch_" + "0" * 8 + "GHOST" + inv["invoice_id"][-4:])
        m.expect("gateway_billing", "paid_without_payment", pid)
        return
    if defect == "failed_payment_not_retried":
        for k in range(rng.randint(1, 3)):
            b.failed.append({"id": b.gw_id("ch"), "created": when + timedelta(days=3 * k), "amount": total,
                             "currency": cur, "customer": cus, "invoice": inv["invoice_id"]})
        inv["status"], inv["amount_paid"] = "open", 0
        m.expect("gateway_billing", "failed_payment_not_retried", inv["invoice_id"])
        return
    if defect is None and rng.random() < 0.04:
        # Failed first attempt, retried successfully two days later.
        b.failed.append({"id": b.gw_id("ch"), "created": when, "amount": total, "currency": cur, "customer": cus,
                         "invoice": inv["invoice_id"]})
        when = when + timedelta(days=2)
        m.lookalikes["failed payment retried successfully"] += 1
    if defect is None and b.instalments > 1 and _payment_plan(b, m, inv, cus, when, rng):
        return
    if defect is None and total >= 2000 and rng.random() < 0.04:
        # Paid in two instalments: two charges, two payments, sum equals the total.
        first = total // 3
        for part, delay in ((first, 0), (total - first, 5)):
            ch = _charge(b, inv, cus, part, when + timedelta(days=delay), cur)
            _record(b, inv, "payment", "card", part, ch["created"], ch["id"])
        m.lookalikes["paid in instalments (partial payments)"] += 1
        return
    if defect is None and total >= 2000 and rng.random() < 0.03:
        # Partial payment, balance still open: not a finding.
        part = total // 2
        ch = _charge(b, inv, cus, part, when, cur)
        _record(b, inv, "payment", "card", part, when, ch["id"])
        inv["status"], inv["amount_paid"] = "open", part
        m.lookalikes["partial payment with an open balance"] += 1
        return
    ch = _charge(b, inv, cus, total if defect != "amount_mismatch" else total - min(1000, total // 2), when, cur)
    if defect == "payment_unmatched":
        inv["status"], inv["amount_paid"] = "open", 0
        m.expect("gateway_billing", "payment_unmatched", ch["id"])
        return
    ref: str | None = ch["id"]
    if defect is None and rng.random() < 0.10:
        ref = None  # billing lost the gateway reference: composite match must pair it
        m.lookalikes["payment without gateway reference (composite match)"] += 1
    pay_currency = ("EUR" if cur != "EUR" else "USD") if defect == "currency_mismatch" else None
    pid = _record(b, inv, "payment", "card", total, ch["created"] + timedelta(minutes=rng.randint(0, 90)), ref,
                  pay_currency)
    if defect == "amount_mismatch":
        m.expect("gateway_billing", "amount_mismatch", pid)
    if defect == "currency_mismatch":
        m.expect("gateway_billing", "currency_mismatch", pid)
    if defect == "duplicate_payment":
        _charge(b, inv, cus, total, ch["created"] + timedelta(hours=rng.randint(1, 30)), cur)
        m.expect("gateway_billing", "duplicate_payment", inv["invoice_id"])
    refund_now = defect == "refund_not_reflected" or (defect is None and rng.random() < 0.03)
    if refund_now:
        part = total if rng.random() < 0.5 else total // 4
        re_id = b.gw_id("re")
        at = ch["created"] + timedelta(days=rng.randint(2, 9))
        b.balance.append({"id": re_id, "type": "refund", "created": at, "currency": cur, "gross": -part, "fee": 0,
                          "net": -part, "charge_id": ch["id"], "customer": cus, "invoice": inv["invoice_id"]})
        if defect == "refund_not_reflected":
            m.expect("gateway_billing", "refund_not_reflected", re_id)
        else:
            with_ref = rng.random() < 0.7
            b.n["refunds"] += 1
            if b.n["refunds"] % 8 == 0:
                # The bank returned the refund (Stripe refund_failure): billing rightly records nothing.
                b.balance.append({"id": re_id, "bt": f"txn_{re_id.split('_', 1)[1]}F", "type": "refund_failure",
                                  "created": at + timedelta(days=4), "currency": cur, "gross": part, "fee": 0,
                                  "net": part, "charge_id": ch["id"], "customer": cus, "invoice": inv["invoice_id"]})
                m.lookalikes["refund failed at the bank (reversed), billing records no refund"] += 1
            else:
                _record(b, inv, "refund", "card", part, at + timedelta(hours=2), re_id if with_ref else None)
                m.lookalikes["refund recorded in billing"] += 1
    dispute_now = defect == "chargeback_not_reflected" or (defect is None and rng.random() < 0.01)
    if dispute_now:
        du = b.gw_id("du")
        at = ch["created"] + timedelta(days=rng.randint(5, 15))
        dfee = 1500 if cur != "JPY" else 2000
        b.balance.append({"id": du, "type": "dispute", "created": at, "currency": cur, "gross": -total, "fee": dfee,
                          "net": -total - dfee, "charge_id": ch["id"], "customer": cus, "invoice": inv["invoice_id"]})
        if defect == "chargeback_not_reflected":
            m.expect("gateway_billing", "chargeback_not_reflected", du)
        else:
            # Stripe gives the reversal the dispute as its source_id; only the balance transaction differs.
            bt = "txn_" + b.gw_id("pdr").split("_", 1)[1]
            b.balance.append({"id": du, "bt": bt, "type": "dispute_reversal", "created": at + timedelta(days=20),
                              "currency": cur, "gross": total, "fee": -dfee, "net": total + dfee,
                              "charge_id": ch["id"], "customer": cus, "invoice": inv["invoice_id"]})
            m.lookalikes["dispute won (reversed), no chargeback needed"] += 1


PLAN_MIN_PART = 1000  # minor units: no instalment below 10.00 USD/EUR or 1,000 JPY
PLAN_SPAN_DAYS = 20  # a plan's instalments fall within this many days of the first


def _payment_plan(b: _Books, m: Manifest, inv: dict[str, Any], cus: str, when: datetime,
                  rng: random.Random) -> bool:
    """A clean card invoice paid on a payment plan: n card charges spread over up to 20 days, each
    recorded in billing as a payment against the invoice with its gateway reference; they sum to the
    total, so nothing is to be found. False (nothing written) when the invoice is too small to split."""
    total, cur = inv["total"], inv["currency"]
    n = min(rng.randint(2, 2 * b.instalments - 2), total // PLAN_MIN_PART)
    if n < 2:
        return False
    part = total // n
    for k in range(n):
        amount = part if k < n - 1 else total - part * (n - 1)
        at = when + timedelta(days=PLAN_SPAN_DAYS * k // (n - 1), minutes=rng.randint(0, 600))
        ch = _charge(b, inv, cus, amount, at, cur)
        _record(b, inv, "payment", "card", amount, at + timedelta(minutes=rng.randint(0, 90)), ch["id"])
    m.lookalikes["paid on a payment plan (several card instalments)"] += 1
    return True


def _payouts_and_ledger(b: _Books, m: Manifest, rng: random.Random) -> None:
    """Daily payouts per currency (arriving two days later), their ledger deposits, monthly fees,
    and manual journals (one legitimate, one not)."""
    by_day: dict[tuple[date, str], list[dict[str, Any]]] = defaultdict(list)
    for t in b.balance:
        by_day[(t["created"].date(), t["currency"])].append(t)
    b.payouts = []  # type: ignore[attr-defined]
    for (day, cur), txns in sorted(by_day.items()):
        amount = sum(t["net"] for t in txns)
        if amount <= 0:
            continue  # Stripe carries a negative balance forward; keep these unpaid for the demo
        po = b.gw_id("po")
        arrival = day + timedelta(days=2)
        for t in txns:
            t["payout"] = po
        b.payouts.append({"id": po, "amount": amount, "currency": cur, "arrival_date": arrival,  # type: ignore[attr-defined]
                          "status": "paid" if arrival <= AS_OF else "in_transit"})
    paid_usd = [p for p in b.payouts if p["status"] == "paid" and p["currency"] == "USD"]  # type: ignore[attr-defined]
    # Two deposits never booked: the first paid USD payout on or after each date (tiny books may
    # have none that late; the manifest lists only what was injected).
    drop = {next((p["id"] for p in paid_usd if p["arrival_date"] >= floor), None)
            for floor in (date(2026, 8, 10), date(2026, 9, 5))} - {None}
    for p in b.payouts:  # type: ignore[attr-defined]
        if p["status"] != "paid":
            continue
        if p["id"] in drop:
            m.expect("gl_cash", "payout_unmatched", p["id"])
            continue
        lag = rng.choice([0, 0, 1, 2])
        if lag:
            m.lookalikes["payout deposited one or two days after arrival"] += 1
        b.gl.append({"account": CASH[p["currency"]], "date": p["arrival_date"] + timedelta(days=lag),
                     "type": "Deposit", "num": "", "name": "Stripe", "memo": f"Stripe payout {p['id']}",
                     "amount": p["amount"], "cur": p["currency"]})
    fees: dict[tuple[date, str], int] = defaultdict(int)
    for t in b.balance:
        fees[(t["created"].date().replace(day=1), t["currency"])] += t["fee"]
    for (month, cur), total in sorted(fees.items()):
        booked = total
        if month == MONTHS[1] and cur == "USD":
            booked = total - 2500
            m.expect("gl_cash", "fee_not_booked", f"{month:%Y-%m}/{cur}")
        last = _next_month(month) - timedelta(days=1)
        b.gl.append({"account": FEES[cur], "date": last, "type": "Expense", "num": "", "name": "Stripe",
                     "memo": f"Stripe fees {month:%B %Y}", "amount": booked, "cur": cur})
    # A legitimate manual journal: write-off referencing an invoice.
    target = b.invoices[len(b.invoices) // 3]
    b.gl.append({"account": "Accounts Receivable (A/R)", "date": date(2026, 9, 15), "type": "Journal Entry",
                 "num": "JE-0101", "name": target["customer_id"], "memo": f"Write-off {target['invoice_id']}",
                 "amount": -500, "cur": "USD"})
    m.lookalikes["manual journal referencing an invoice"] += 1
    # An unsupported manual journal on revenue.
    b.gl.append({"account": "Sales", "date": date(2026, 9, 28), "type": "Journal Entry", "num": "JE-0102",
                 "name": "", "memo": "Adjustment per CFO", "amount": -120000, "cur": "USD"})
    m.expect("gl_cash", "manual_journal_unmatched", "2026-09-28|Sales|JE-0102|120000|Adjustment per CFO")


def _iso(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, datetime):
        return v.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> int:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return len(rows)


def _write_all(path: Path, b: _Books, m: Manifest) -> None:
    d = path / "data"
    money_cols = {"unit_amount", "amount", "subtotal", "discount", "tax", "total", "amount_paid"}

    def canonical(name: str, rows: list[dict[str, Any]], cols: list[str]) -> None:
        out = []
        for r in rows:
            out.append([major_text(r[c], r["currency"]) if c in money_cols and r[c] is not None else _iso(r[c])
                        for c in cols])
        m.rows[name] = _write_csv(d / name, cols, out)

    canonical("customers.csv", b.customers, ["customer_id", "name", "email", "gateway_customer_id", "crm_id",
                                              "segment", "status"])
    canonical("subscriptions.csv", b.subs, ["subscription_id", "customer_id", "sku", "quantity", "unit_amount",
                                            "currency", "interval", "start_date", "end_date", "status",
                                            "discount_percent", "discount_end"])
    # Invoices as the billing engine exports them (Zuora-style Object.Field headers), mapped in the config.
    inv_rows = [[r["invoice_id"], r["customer_id"], r["subscription_id"], r["status"].capitalize(),
                 _iso(r["issued_at"]), _iso(r["period_start"]), _iso(r["period_end"]), r["currency"],
                 major_text(r["subtotal"], r["currency"]), major_text(r["discount"], r["currency"]),
                 major_text(r["tax"], r["currency"]), major_text(r["total"], r["currency"]),
                 major_text(r["total"] - r["amount_paid"], r["currency"])] for r in b.invoices]
    m.rows["invoices.csv"] = _write_csv(d / "invoices.csv", [
        "Invoice.InvoiceNumber", "Account.AccountNumber", "Subscription.Name", "Invoice.Status",
        "Invoice.PostedDate", "Invoice.ServiceStartDate", "Invoice.ServiceEndDate", "Invoice.Currency",
        "Invoice.AmountWithoutTax", "Invoice.DiscountAmount__c", "Invoice.TaxAmount", "Invoice.Amount",
        "Invoice.Balance"], inv_rows)
    canonical("invoice_lines.csv", b.lines, ["invoice_id", "line_id", "sku", "quantity", "unit_amount", "amount",
                                             "discount", "currency", "period_start", "period_end", "proration"])
    canonical("payments.csv", b.payments, ["payment_id", "invoice_id", "customer_id", "type", "method", "amount",
                                           "currency", "received_at", "gateway_ref"])
    bal_header = ["balance_transaction_id", "created_utc", "available_on_utc", "currency", "gross", "fee", "net",
                  "reporting_category", "source_id", "description", "customer_id", "customer_email", "charge_id",
                  "payment_intent_id", "invoice_id", "subscription_id", "automatic_payout_id",
                  "payment_metadata[invoice_number]"]
    bal_rows = []
    for t in sorted(b.balance, key=lambda t: (t["created"], t["id"])):
        cur = t["currency"]
        bal_rows.append([
            t.get("bt") or "txn_" + t["id"].split("_", 1)[1],
            _iso(t["created"]), _iso(t["created"] + timedelta(days=2)),
            cur.lower(), major_text(t["gross"], cur), major_text(t["fee"], cur), major_text(t["net"], cur),
            t["type"], t["id"],
            "", t["customer"], "", t["charge_id"], "", "", "", t.get("payout", ""), t["invoice"]])
    m.rows["stripe_balance_itemized.csv"] = _write_csv(d / "stripe_balance_itemized.csv", bal_header, bal_rows)
    pay_header = ["id", "Description", "Seller Message", "Created (UTC)", "Amount", "Amount Refunded", "Currency",
                  "Converted Amount", "Fee", "Status", "Customer ID", "Customer Email", "Captured",
                  "Disputed Amount", "Dispute Status", "Invoice ID", "PaymentIntent ID", "invoice_number (metadata)"]
    pay_rows = [[f["id"], "Subscription payment", "Your card was declined.", f["created"].strftime("%Y-%m-%d %H:%M"),
                 major_text(f["amount"], f["currency"]), "0", f["currency"].lower(), "", "0", "Failed",
                 f["customer"], "", "false", "", "", "", "", f["invoice"]] for f in b.failed]
    m.rows["stripe_payments_failed.csv"] = _write_csv(d / "stripe_payments_failed.csv", pay_header, pay_rows)
    po_rows = [[p["id"], major_text(p["amount"], p["currency"]), p["currency"].lower(), _iso(p["arrival_date"]),
                p["status"]] for p in b.payouts]  # type: ignore[attr-defined]
    m.rows["stripe_payouts.csv"] = _write_csv(d / "stripe_payouts.csv",
                                              ["id", "Amount", "Currency", "Arrival Date (UTC)", "Status"], po_rows)
    m.rows["quickbooks_gl.csv"] = _write_gl(d / "quickbooks_gl.csv", b.gl)
    (path / "manifest.json").write_text(m.to_json(), encoding="utf-8")
    (path / "tieout.yaml").write_text(DEMO_CONFIG, encoding="utf-8")


def _write_gl(path: Path, entries: list[dict[str, Any]]) -> int:
    """The QuickBooks General Ledger CSV layout: preamble, account sections, totals, BOM, CRLF."""
    by_account: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in entries:
        by_account[e["account"]].append(e)
    lines: list[list[str]] = [["Demo Company, Inc."] + [""] * 8, ["General Ledger"] + [""] * 8,
                              ["July 1 - September 30, 2026"] + [""] * 8, [""] * 9,
                              ["", "Date", "Transaction Type", "Num", "Name", "Memo/Description", "Split", "Amount",
                               "Balance"]]
    n = 0
    grand = 0
    for account in sorted(by_account):
        lines.append([account] + [""] * 8)
        lines.append(["", "Beginning Balance", "", "", "", "", "", "", "0.00"])
        balance = 0
        for k, e in enumerate(sorted(by_account[account], key=lambda e: (e["date"], e["memo"]))):
            balance += e["amount"]
            lines.append(["", e["date"].strftime("%m/%d/%Y"), e["type"], e["num"], e["name"], e["memo"],
                          "-Split-", _qb_amount(e["amount"], k, e["cur"]), _qb_amount(balance, 0, e["cur"])])
            n += 1
        grand += balance
        cur = by_account[account][0]["cur"]
        lines.append([f"Total for {account}", "", "", "", "", "", "", "$" + _qb_amount(balance, 1, cur), ""])
    lines.append(["TOTAL", "", "", "", "", "", "", "$" + _qb_amount(grand, 1), ""])
    with path.open("w", newline="", encoding="utf-8-sig") as fh:
        csv.writer(fh, lineterminator="\r\n").writerows(lines)
    return n


DEMO_CONFIG = """\
# tieout demo workspace: a quarter of books across Stripe, the billing engine and QuickBooks.
engine: duckdb
store: sqlite:///tieout.db
home_currency: USD
as_of: 2026-09-30
fail_on: high

sources:
  - name: customers
    format: csv
    path: data/customers.csv
    table: customers
    system: billing
  - name: subscriptions
    format: csv
    path: data/subscriptions.csv
    table: subscriptions
    system: billing
  - name: invoices
    format: csv
    path: data/invoices.csv
    table: invoices
    system: billing
    columns:
      invoice_id: Invoice.InvoiceNumber
      customer_id: Account.AccountNumber
      subscription_id: Subscription.Name
      status: Invoice.Status
      issued_at: Invoice.PostedDate
      period_start: Invoice.ServiceStartDate
      period_end: Invoice.ServiceEndDate
      currency: Invoice.Currency
      subtotal: Invoice.AmountWithoutTax
      discount: Invoice.DiscountAmount__c
      tax: Invoice.TaxAmount
      total: Invoice.Amount
    value_maps:
      status: {posted: open, canceled: void}
  - name: invoice_lines
    format: csv
    path: data/invoice_lines.csv
    table: invoice_lines
    system: billing
  - name: payments
    format: csv
    path: data/payments.csv
    table: payments
    system: billing
  - name: stripe_balance
    format: stripe_balance
    path: data/stripe_balance_itemized.csv
    columns:
      invoice_ref: payment_metadata[invoice_number]
  - name: stripe_failed_payments
    format: stripe_payments
    path: data/stripe_payments_failed.csv
    columns:
      invoice_ref: invoice_number (metadata)
  - name: stripe_payouts
    format: csv
    path: data/stripe_payouts.csv
    table: payouts
    system: stripe
    columns:
      payout_id: id
      amount: Amount
      currency: Currency
      arrival_date: Arrival Date (UTC)
      status: Status
  - name: ledger
    format: quickbooks_gl
    path: data/quickbooks_gl.csv
    options:
      account_currencies:
        Checking EUR: EUR
        Checking JPY: JPY
        Merchant Fees EUR: EUR
        Merchant Fees JPY: JPY
  - name: products
    format: csv
    path: data/products.csv
    table: products
    system: billing
  - name: crm_accounts
    format: csv
    path: data/crm_accounts.csv
    table: crm_accounts
    system: crm
    columns:
      account_id: Id
      name: Name
      customer_id: Billing_Account_Number__c
      owner: Owner
      status: Status__c
      go_live_date: Go_Live_Date__c
      seats: Provider_Count__c
    date_formats: ["%m/%d/%Y"]
  - name: crm_products
    format: csv
    path: data/crm_products.csv
    table: crm_products
    system: crm
    columns:
      account_id: Account__c
      sku: Product_Code__c
      status: Status__c
  - name: operations_roster
    format: csv
    path: data/operations_roster.csv
    table: operations_roster
    system: operations
  - name: entitlements
    format: csv
    path: data/entitlements.csv
    table: entitlements
    system: entitlements
  - name: usage_events
    format: csv
    path: data/usage_events.csv
    table: usage_events
    system: operations

entities:
  alias_file: data/aliases.csv

checks:
  gateway_billing:
    date_window_days: 3
    retry_window_days: 7
  billing_subscriptions:
    amount_tolerance: 0
  gl_cash:
    cash_accounts: [Checking, Checking EUR, Checking JPY]
    fee_accounts: [Merchant Fees, Merchant Fees EUR, Merchant Fees JPY]
    deposit_window_days: 3
  crm_operations:
    go_live_tolerance_days: 7
"""

"""Demo draft invoices for pre-invoice validation (`tieout validate -c validate.yaml`): a catalog,
contracts with upgrades, usage and entitlements, taxes and coupons, and the October drafts of a
billing engine, computed independently of the engine with the `Decimal` reference functions. A few
drafts carry one injected defect each (every category `validate` raises); the rest must pass.
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from tieout.billing.catalog import BillingConfig
from tieout.billing.pricing import rated_amount, round_minor
from tieout.money import major_text

INVOICE_DATE = date(2026, 10, 1)
CYCLE = (date(2026, 9, 1), date(2026, 10, 1))  # the September cycle (usage, changes) billed on Oct 1
NEXT = (date(2026, 10, 1), date(2026, 11, 1))
RATES = {"US-NY": Decimal("8.875"), "DE": Decimal(19), "GB": Decimal(20), "JP": Decimal(10)}
DEFECTS = ("price_mismatch", "quantity_mismatch", "proration_error", "duplicate_discount", "expired_discount_applied",
           "overlapping_subscriptions", "billed_after_cancellation", "unbilled_usage", "overbilled_usage",
           "entitlement_exceeded_unbilled", "missing_invoice", "tax_mismatch", "currency_mismatch",
           "sku_not_in_catalog", "discount_not_approved", "contract_incomplete")
# The same categories again on other contract shapes: a pause billed as if it never happened, and a
# fixed coupon (not stackable) taken on both plans of one invoice.
VARIANTS = (("proration_error", "pause"), ("duplicate_discount", "two_plans"))

CATALOG_YAML = """\
billing:
  proration: day
  rounding: half_up
  tax_rounding: line
  discount_approval_percent: 30
  hold_on: low
  products:
    - {sku: PRO, name: Pro seat, currency: USD, model: per_unit, amount: "49.00"}
    - {sku: PRO-JP, name: Pro seat (Japan), currency: JPY, model: per_unit, amount: "5000"}
    - {sku: TEAM, name: Team plan, currency: USD, model: flat, amount: "190.00"}
    - {sku: ANNUAL, name: Annual licence, currency: USD, model: flat, amount: "1200.00", interval: year}
    - sku: API
      name: API calls
      currency: USD
      model: graduated
      usage: true
      requires_entitlement: true
      tiers:
        - {up_to: 10000, unit_amount: "0.002"}
        - {up_to: 100000, unit_amount: "0.0015"}
        - {unit_amount: "0.001", flat_amount: "5.00"}
    - sku: STORAGE
      name: Storage GB
      currency: USD
      model: volume
      usage: true
      tiers:
        - {up_to: 100, unit_amount: "0.50"}
        - {up_to: 1000, unit_amount: "0.40"}
        - {unit_amount: "0.25"}
    - {sku: SMS, name: SMS bundles, currency: USD, model: package, amount: "15.00", package_size: 1000, usage: true,
       minimum: "20.00"}
    - {sku: SUPPORT, name: Premium support, currency: USD, model: percentage, percent: 10}
  coupons:
    - {code: WELCOME20, percent_off: 20, duration: repeating, periods: 6}
    - {code: BIG50, percent_off: 50, duration: forever}
    - {code: TENOFF, amount_off: "10.00", currency: USD, duration: forever}
  tax_rates:
    - {jurisdiction: US-NY, tax_code: standard, rate: "8.875"}
    - {jurisdiction: DE, tax_code: standard, rate: 19}
    - {jurisdiction: GB, tax_code: standard, rate: 20}
    - {jurisdiction: JP, tax_code: standard, rate: 10, inclusive: true}
"""

SOURCES_YAML = """\
# tieout demo: pre-invoice validation of the October drafts (`tieout validate -c validate.yaml`).
engine: duckdb
store: sqlite:///validate.db
home_currency: USD
as_of: 2026-10-01
sources:
  - {name: billing_customers, format: csv, path: data/billing/customers.csv, table: customers, system: billing}
  - {name: contracts, format: csv, path: data/billing/contracts.csv, table: subscriptions, system: billing}
  - {name: usage, format: csv, path: data/billing/usage_events.csv, table: usage_events, system: metering}
  - {name: entitlements, format: csv, path: data/billing/entitlements.csv, table: entitlements, system: entitlements}
  - {name: drafts, format: csv, path: data/billing/draft_invoices.csv, table: invoices, system: billing}
  - {name: draft_lines, format: csv, path: data/billing/draft_invoice_lines.csv, table: invoice_lines,
     system: billing}
checks:  # billing_subscriptions runs too: with a catalog it leaves drafts to pre_invoice (one finding per defect)
  gateway_billing: {enabled: false}
  gl_cash: {enabled: false}
"""


@dataclass
class DraftManifest:
    """Which drafts carry which injected defect; every other draft must pass."""

    held: dict[str, str] = field(default_factory=dict)  # invoice_id -> injected category
    missing: list[str] = field(default_factory=list)  # contracts with no draft
    clean: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps({"held": dict(sorted(self.held.items())), "missing": sorted(self.missing),
                           "clean": sorted(self.clean)}, indent=1)


@dataclass
class _Out:
    customers: list[dict[str, Any]] = field(default_factory=list)
    contracts: list[dict[str, Any]] = field(default_factory=list)
    usage: list[dict[str, Any]] = field(default_factory=list)
    entitlements: list[dict[str, Any]] = field(default_factory=list)
    invoices: list[dict[str, Any]] = field(default_factory=list)
    lines: list[dict[str, Any]] = field(default_factory=list)
    n_event: int = 0


def _tax(net: int, jurisdiction: str) -> int:
    rate = RATES[jurisdiction]
    if jurisdiction == "JP":  # inclusive
        return round_minor(Decimal(net) * rate / (100 + rate))
    return round_minor(Decimal(net) * rate / 100)


def _prorate(full: Decimal, days: int, cycle_days: int) -> int:
    return round_minor(full * days / cycle_days)


def write_drafts(path: Path, contracts: int = 60, seed: int = 7) -> DraftManifest:
    """Write validate.yaml, data/billing/*.csv and validate_manifest.json into `path`."""
    rng = random.Random(seed * 7919 + 1)
    cfg = BillingConfig.model_validate(_catalog_dict())
    out = _Out()
    man = DraftManifest()
    kinds = ["pro", "pro", "upgrade", "team", "api", "storage", "sms", "annual", "jpy", "support", "pause",
             "two_plans"]
    plan: list[tuple[str | None, str | None]] = [(d, None) for d in DEFECTS] + list(VARIANTS)
    plan += [(None, None)] * max(contracts - len(plan), 0)
    for i, (defect, forced) in enumerate(plan):
        kind = forced or _kind_for(defect, kinds[i % len(kinds)])
        _contract(out, man, cfg, i, kind, defect, rng)
    d = path / "data" / "billing"
    d.mkdir(parents=True, exist_ok=True)
    _write(d / "customers.csv", out.customers, ["customer_id", "name", "email", "jurisdiction", "tax_id",
                                                "requires_po"])
    _write(d / "contracts.csv", out.contracts, ["subscription_id", "contract_id", "customer_id", "sku", "quantity",
                                                "unit_amount", "currency", "interval", "start_date", "end_date",
                                                "status", "billing_anchor", "discount_percent", "discount_end",
                                                "coupon", "po_number"])
    _write(d / "usage_events.csv", out.usage, ["event_id", "customer_id", "subscription_id", "sku", "quantity",
                                               "occurred_at"])
    _write(d / "entitlements.csv", out.entitlements, ["entitlement_id", "customer_id", "sku", "quantity",
                                                      "start_date", "end_date"])
    _write(d / "draft_invoices.csv", out.invoices, ["invoice_id", "customer_id", "subscription_id", "status",
                                                    "issued_at", "period_start", "period_end", "currency",
                                                    "subtotal", "discount", "tax", "total"])
    _write(d / "draft_invoice_lines.csv", out.lines, ["invoice_id", "line_id", "sku", "kind", "quantity",
                                                      "unit_amount", "amount", "discount", "tax", "currency",
                                                      "period_start", "period_end", "proration"])
    (d / "drafts.json").write_text(_drafts_json(out), encoding="utf-8")  # the same drafts: validate --drafts
    (path / "validate.yaml").write_text(SOURCES_YAML + CATALOG_YAML, encoding="utf-8")
    (path / "validate_manifest.json").write_text(man.to_json(), encoding="utf-8")
    return man


def _drafts_json(out: _Out) -> str:
    """The drafts in the JSON layout of `tieout validate --drafts` (docs/billing.md): invoices with lines."""
    drafts: dict[str, dict[str, Any]] = {}
    for h in out.invoices:
        drafts[h["invoice_id"]] = {"invoice_id": h["invoice_id"], "customer_id": h["customer_id"],
                                   "subscription_id": h["subscription_id"],
                                   "invoice_date": h["period_start"].isoformat(), "currency": h["currency"],
                                   "status": h["status"], "lines": []}
    for ln in out.lines:
        cur = ln["currency"]
        drafts[ln["invoice_id"]]["lines"].append({
            "line_id": ln["line_id"], "sku": ln["sku"], "kind": ln["kind"], "quantity": ln["quantity"],
            **{k: _text(k, ln[k], cur) for k in ("unit_amount", "amount", "discount", "tax")},
            "period_start": ln["period_start"].isoformat(), "period_end": ln["period_end"].isoformat(),
            "proration": ln["proration"]})
    return json.dumps(list(drafts.values()), indent=1)


def _catalog_dict() -> dict[str, Any]:
    import yaml

    data: dict[str, Any] = yaml.safe_load(CATALOG_YAML)["billing"]
    return data


def _kind_for(defect: str | None, default: str) -> str:
    return {"proration_error": "upgrade", "unbilled_usage": "storage", "overbilled_usage": "storage",
            "entitlement_exceeded_unbilled": "api", "duplicate_discount": "pro", "expired_discount_applied": "pro",
            "price_mismatch": "pro", "quantity_mismatch": "pro", "tax_mismatch": "pro", "currency_mismatch": "pro",
            "overlapping_subscriptions": "team", "billed_after_cancellation": "team", "missing_invoice": "pro",
            "sku_not_in_catalog": "legacy", "discount_not_approved": "pro", "contract_incomplete": "pro",
            }.get(defect or "", default)


def _contract(out: _Out, man: DraftManifest, cfg: BillingConfig, i: int, kind: str, defect: str | None,
              rng: random.Random) -> None:
    cid = f"CB{i + 1:04d}"
    sid = f"K-{i + 1:04d}"
    inv = f"DRAFT-{i + 1:04d}"
    jur = "JP" if kind == "jpy" else rng.choice(["US-NY", "DE", "GB"])
    currency = "JPY" if kind == "jpy" else "USD"
    out.customers.append({"customer_id": cid, "name": f"Billing customer {i + 1}", "email": f"ap@cb{i + 1}.example",
                          "jurisdiction": jur, "tax_id": f"TX{i + 1:06d}",
                          "requires_po": defect == "contract_incomplete"})
    base: dict[str, Any] = {"contract_id": sid, "customer_id": cid, "quantity": 1, "currency": currency,
                            "interval": "month", "end_date": None, "status": "active", "billing_anchor": 1,
                            "discount_percent": None, "discount_end": None, "coupon": None, "po_number": None,
                            "start_date": date(2026, rng.randint(1, 6), 1)}
    segs: list[dict[str, Any]] = []
    qty = rng.randint(1, 30)
    if kind in ("pro", "jpy", "support"):
        sku = "PRO-JP" if kind == "jpy" else "PRO"
        price = 5000 if kind == "jpy" else 4900
        segs.append({**base, "subscription_id": sid, "sku": sku, "quantity": qty, "unit_amount": price})
        if kind == "support":
            segs.append({**base, "subscription_id": sid + "-S", "sku": "SUPPORT", "unit_amount": 0})
        if defect is None and rng.random() < 0.3:
            segs[0]["discount_percent"] = Decimal(15)
            segs[0]["discount_end"] = rng.choice([date(2026, 10, 1), date(2027, 1, 1)])  # ended on the boundary: none
        if defect == "expired_discount_applied":
            segs[0]["discount_percent"], segs[0]["discount_end"] = Decimal(10), date(2026, 10, 1)
        if defect == "duplicate_discount" or (defect is None and rng.random() < 0.2):
            segs[0]["coupon"], segs[0]["start_date"] = "WELCOME20", date(2026, 8, 1)
        if defect == "discount_not_approved":
            segs[0]["coupon"] = "BIG50"
    elif kind == "pause":  # paused inside September, resumed before its end: only the active days are billed
        paused, resumed = date(2026, 9, rng.randint(2, 14)), date(2026, 9, rng.randint(15, 28))
        plan = {**base, "sku": "PRO", "quantity": qty, "unit_amount": 4900}
        segs.append({**plan, "subscription_id": sid, "end_date": paused})
        segs.append({**plan, "subscription_id": sid + "-P", "start_date": paused, "end_date": resumed,
                     "status": "paused"})
        segs.append({**plan, "subscription_id": sid + "-R", "start_date": resumed})
    elif kind == "two_plans":  # seats and a team plan on one contract, a fixed coupon on both
        segs.append({**base, "subscription_id": sid, "sku": "PRO", "quantity": qty, "unit_amount": 4900,
                     "coupon": "TENOFF"})
        segs.append({**base, "subscription_id": sid + "-T", "sku": "TEAM", "unit_amount": 19000, "coupon": "TENOFF"})
    elif kind == "upgrade":
        change = date(2026, 9, rng.randint(2, 28))
        segs.append({**base, "subscription_id": sid, "sku": "PRO", "quantity": qty, "unit_amount": 4900,
                     "end_date": change, "status": "canceled"})
        segs.append({**base, "subscription_id": sid + "-U", "sku": "PRO", "quantity": qty + 5, "unit_amount": 4900,
                     "start_date": change})
    elif kind == "team":
        segs.append({**base, "subscription_id": sid, "sku": "TEAM", "unit_amount": 19000})
        if defect == "billed_after_cancellation":
            segs[0]["end_date"], segs[0]["status"] = date(2026, 9, 1), "canceled"
        if defect == "overlapping_subscriptions":
            segs.append({**base, "subscription_id": sid + "-DUP", "contract_id": sid + "-DUP", "sku": "TEAM",
                         "unit_amount": 19000, "start_date": date(2026, 9, 1)})
    elif kind == "annual":
        segs.append({**base, "subscription_id": sid, "sku": "ANNUAL", "unit_amount": 120000,
                     "interval": "year", "start_date": date(2025, 10, 1)})
    elif kind == "legacy":
        segs.append({**base, "subscription_id": sid, "sku": "LEGACY", "unit_amount": 9900})
    else:  # usage: api, storage, sms
        sku = kind.upper()
        segs.append({**base, "subscription_id": sid, "sku": sku, "unit_amount": 0})
        if sku == "API":
            out.entitlements.append({"entitlement_id": f"ENT-{i + 1:04d}", "customer_id": cid, "sku": "API",
                                     "quantity": 5000, "start_date": date(2026, 1, 1), "end_date": None})
        units = {"API": (600, 1500), "STORAGE": (5, 60), "SMS": (3, 600)}[sku]
        for _ in range(rng.randint(10, 25)):
            out.n_event += 1
            at = datetime(2026, 9, 1) + timedelta(minutes=rng.randint(0, 30 * 24 * 60 - 1))
            ev = {"event_id": f"ev_{out.n_event:07d}", "customer_id": cid, "subscription_id": sid, "sku": sku,
                  "quantity": rng.randint(*units), "occurred_at": at}
            out.usage.append(ev)
        if rng.random() < 0.3:
            out.usage.append(dict(out.usage[-1]))  # a replayed event (same idempotency key): counted once
        out.n_event += 1  # usage after the cycle: not on this invoice
        out.usage.append({"event_id": f"ev_{out.n_event:07d}", "customer_id": cid, "subscription_id": sid, "sku": sku,
                          "quantity": 999, "occurred_at": datetime(2026, 10, 1, 0, 0, 1)})
    out.contracts.extend(segs)
    lines = _draft_lines(out, cfg, segs, jur)
    if defect == "missing_invoice":
        man.missing.append(sid)
        return
    for s in segs[1:]:
        if s["contract_id"] != sid:  # the overlapping duplicate is its own contract with its own draft
            dup_lines = _draft_lines(out, cfg, [s], jur)
            _emit(out, f"{inv}-B", s, dup_lines, currency)
            man.held[f"{inv}-B"] = "overlapping_subscriptions"
    lines = [ln for ln in lines if ln["sub"]["contract_id"] == sid]
    if defect == "billed_after_cancellation":
        full = 19000
        lines = [{"sub": segs[0], "sku": "TEAM", "kind": "recurring", "quantity": 1, "unit_amount": full,
                  "amount": full, "discount": 0, "period": NEXT}]
        _finish(lines, jur)
    _inject(lines, defect, jur)
    _emit(out, inv, segs[0], lines, "EUR" if defect == "currency_mismatch" else currency)
    if defect:
        man.held[inv] = defect
    else:
        man.clean.append(inv)


def _draft_lines(out: _Out, cfg: BillingConfig, segs: list[dict[str, Any]], jur: str) -> list[dict[str, Any]]:
    """What a correct billing engine puts on the Oct 1 invoice (the Decimal reference, line by line)."""
    lines: list[dict[str, Any]] = []
    cycle_days = (CYCLE[1] - CYCLE[0]).days
    for s in segs:
        if s["status"] == "paused":
            continue
        product = cfg.product(s["sku"])
        if product is None:  # not in the catalog: the billing engine bills it at the contract price anyway
            lines.append({"sub": s, "sku": s["sku"], "kind": "recurring", "quantity": s["quantity"],
                          "unit_amount": s["unit_amount"], "amount": s["quantity"] * s["unit_amount"], "period": NEXT})
            continue
        if product.model == "percentage":
            continue
        if product.usage:
            events = {e["event_id"]: e for e in out.usage}.values()  # one per idempotency key
            used = sum(e["quantity"] for e in events if e["subscription_id"] == s["subscription_id"]
                       and CYCLE[0] <= e["occurred_at"].date() < CYCLE[1])
            included = sum(e["quantity"] for e in out.entitlements if e["customer_id"] == s["customer_id"]
                           and e["sku"] == s["sku"])
            over = max(used - included, 0)
            exact = rated_amount(product, over)
            if over:
                lines.append({"sub": s, "sku": s["sku"], "kind": "usage", "quantity": over,
                              "unit_amount": None, "amount": round_minor(exact), "period": CYCLE})
            if product.minimum is not None:
                floor = product.minimum * 100
                if exact < floor:
                    lines.append({"sub": s, "sku": s["sku"], "kind": "minimum", "quantity": 1, "unit_amount": None,
                                  "amount": round_minor(floor - exact), "period": CYCLE})
            continue
        full = rated_amount(product, s["quantity"], s["unit_amount"])
        start, end = s["start_date"], s["end_date"]
        if product.months == 12:
            if (NEXT[0].month - start.month) % 12 == 0:
                lines.append({"sub": s, "sku": s["sku"], "kind": "recurring", "quantity": s["quantity"],
                              "unit_amount": s["unit_amount"], "amount": round_minor(full),
                              "period": (NEXT[0], date(NEXT[0].year + 1, NEXT[0].month, 1))})
            continue
        if end is not None and CYCLE[0] < end < CYCLE[1]:  # changed in September: credit unused days
            unused = (CYCLE[1] - end).days
            lines.append({"sub": s, "sku": s["sku"], "kind": "credit", "quantity": s["quantity"],
                          "unit_amount": s["unit_amount"], "amount": -_prorate(full, unused, cycle_days),
                          "period": (end, CYCLE[1])})
        if CYCLE[0] < start < CYCLE[1]:  # started in September after a change: remaining days
            days = (CYCLE[1] - start).days
            lines.append({"sub": s, "sku": s["sku"], "kind": "proration", "quantity": s["quantity"],
                          "unit_amount": s["unit_amount"], "amount": _prorate(full, days, cycle_days),
                          "period": (start, CYCLE[1])})
        if end is None or end > NEXT[0]:
            lines.append({"sub": s, "sku": s["sku"], "kind": "recurring", "quantity": s["quantity"],
                          "unit_amount": s["unit_amount"], "amount": round_minor(full), "period": NEXT})
    support = [s for s in segs if s["sku"] == "SUPPORT"]
    if support:
        base = sum(ln["amount"] for ln in lines)
        lines.append({"sub": support[0], "sku": "SUPPORT", "kind": "percentage", "quantity": 1, "unit_amount": None,
                      "amount": round_minor(Decimal(base) * 10 / 100), "period": NEXT})
    fixed_taken: set[str] = set()
    for ln in lines:
        ln["discount"] = _discount(cfg, ln, fixed_taken)
    _finish(lines, jur)
    return lines


def _discount(cfg: BillingConfig, ln: dict[str, Any], fixed_taken: set[str]) -> int:
    """The contract discount, then the coupon on what remains; a fixed coupon once per invoice (its first
    recurring line) unless stackable."""
    s = ln["sub"]
    size = abs(ln["amount"])
    cycle_start = ln["period"][0] if ln["kind"] == "recurring" else CYCLE[0]
    d = 0
    if s["discount_percent"] is not None and (s["discount_end"] is None or cycle_start < s["discount_end"]):
        d = round_minor(Decimal(size) * s["discount_percent"] / 100)
    coupon = cfg.coupon(s["coupon"]) if s["coupon"] else None
    if coupon is not None and coupon.percent_off is not None:
        n = (cycle_start.year - s["start_date"].year) * 12 + cycle_start.month - s["start_date"].month
        if coupon.periods_limit is None or n < coupon.periods_limit:
            d += round_minor(Decimal(size - d) * coupon.percent_off / 100)
    if coupon is not None and coupon.amount_off is not None and ln["kind"] == "recurring" and (
            coupon.stackable or coupon.code not in fixed_taken):
        fixed_taken.add(coupon.code)
        d += min(round_minor(coupon.amount_off * 100), size - d)
    signed: int = min(d, size) * (-1 if ln["amount"] < 0 else 1)
    return signed


def _finish(lines: list[dict[str, Any]], jur: str) -> None:
    for ln in lines:
        ln.setdefault("discount", 0)
        ln["tax"] = _tax(ln["amount"] - ln["discount"], jur)


def _inject(lines: list[dict[str, Any]], defect: str | None, jur: str) -> None:
    if not lines:
        return
    ln = lines[-1]
    if defect == "price_mismatch":
        ln["unit_amount"] += 1000
        ln["amount"] = ln["quantity"] * ln["unit_amount"]
    elif defect == "quantity_mismatch":
        ln["quantity"] += 2
        ln["amount"] = ln["quantity"] * ln["unit_amount"]
    elif defect == "proration_error":
        credit = next(x for x in lines if x["kind"] == "credit")
        credit["amount"] = -credit["quantity"] * credit["unit_amount"]  # credited the whole month
        credit["tax"] = _tax(credit["amount"], jur)
        return
    elif defect == "duplicate_discount":  # a coupon taken twice: on the same line, or on a second one
        ln["discount"] = ln["discount"] * 2 if ln["discount"] else min(1000, ln["amount"])
    elif defect == "expired_discount_applied":
        ln["discount"] = round_minor(Decimal(ln["amount"]) * 10 / 100)
    elif defect == "tax_mismatch":
        ln["tax"] = round_minor(Decimal(ln["amount"] - ln["discount"]) * 7 / 100)
        return
    elif defect in ("unbilled_usage", "overbilled_usage"):
        ln["quantity"] += -3 if defect == "unbilled_usage" else 40
        ln["amount"] = round_minor(Decimal(ln["amount"]) * ln["quantity"] / (ln["quantity"] + (3 if defect ==
                                                                                            "unbilled_usage" else -40)))
    elif defect == "entitlement_exceeded_unbilled":
        lines[:] = [x for x in lines if x["kind"] != "usage"]
        return
    else:
        return
    ln["tax"] = _tax(ln["amount"] - ln["discount"], jur)


def _emit(out: _Out, inv: str, s: dict[str, Any], lines: list[dict[str, Any]], currency: str) -> None:
    subtotal = sum(ln["amount"] for ln in lines)
    discount = sum(ln["discount"] for ln in lines)
    tax = sum(ln["tax"] for ln in lines)
    inclusive = s["customer_id"] and currency == "JPY"
    out.invoices.append({"invoice_id": inv, "customer_id": s["customer_id"], "subscription_id": s["contract_id"],
                         "status": "draft", "issued_at": datetime(2026, 10, 1, 2, 0), "period_start": NEXT[0],
                         "period_end": NEXT[1], "currency": currency, "subtotal": subtotal, "discount": discount,
                         "tax": tax, "total": subtotal - discount + (0 if inclusive else tax)})
    for k, ln in enumerate(lines, 1):
        out.lines.append({"invoice_id": inv, "line_id": str(k), "sku": ln["sku"], "kind": ln["kind"],
                          "quantity": ln["quantity"], "unit_amount": ln["unit_amount"] or 0, "amount": ln["amount"],
                          "discount": ln["discount"], "tax": ln["tax"], "currency": currency,
                          "period_start": ln["period"][0], "period_end": ln["period"][1],
                          "proration": ln["kind"] in ("proration", "credit")})


_MONEY = {"unit_amount", "amount", "discount", "tax", "subtotal", "total"}


def _text(col: str, value: Any, currency: str) -> str:
    if value is None:
        return ""
    if col in _MONEY:
        return major_text(int(value), currency)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _write(path: Path, rows: list[dict[str, Any]], cols: list[str]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for r in rows:
            w.writerow([_text(c, r.get(c), r.get("currency", "USD")) for c in cols])

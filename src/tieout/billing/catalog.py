"""The catalog and billing policy (`billing:` in tieout.yaml): products and their price models,
coupons, tax rates, proration and rounding. Validated here, so a bad tier table stops with its
YAML line; this room declares what prices are, it computes nothing.
"""

from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tieout.money import currency_exponent, is_known_currency

PriceModel = Literal["flat", "per_unit", "graduated", "volume", "package", "percentage"]
PRICE_MODELS: dict[str, str] = {
    "flat": "One amount per period whatever the quantity.",
    "per_unit": "quantity × unit amount.",
    "graduated": "Each tier prices the units that fall in it (first 1,000 at one price, the next at another).",
    "volume": "The tier the total quantity reaches prices every unit.",
    "package": "A price per started package of `package_size` units (rounded up).",
    "percentage": "A percent of the other recurring and usage lines of the same invoice (e.g. support).",
}
ROUNDING_MODES = {"half_up": ROUND_HALF_UP, "half_even": ROUND_HALF_EVEN}
INTERVAL_NAMES = {"month": 1, "quarter": 3, "year": 12}


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Tier(_M):
    """One row of a tier table: units up to `up_to` (inclusive; null = no upper bound)."""

    up_to: int | None = Field(None, ge=1, description="Last unit of this tier; empty for the last tier.")
    unit_amount: Decimal = Field(Decimal(0), ge=0, description="Price per unit in this tier, major units "
                                 "(may be finer than the currency, e.g. 0.0015).")
    flat_amount: Decimal = Field(Decimal(0), ge=0, description="Fixed fee when the quantity reaches this tier.")


class Product(_M):
    """A sellable SKU and its price model."""

    sku: str = Field(description="Product/plan code, as on subscriptions, usage events and invoice lines.")
    name: str = Field("", description="Display name.")
    currency: str = Field(description="Currency of the prices below (ISO-4217).")
    model: PriceModel = Field(description="Price model: " + "; ".join(f"{k}: {v}" for k, v in PRICE_MODELS.items()))
    amount: Decimal | None = Field(None, ge=0, description="flat: the amount; per_unit: price per unit; package: "
                                   "price per package (major units). The contract's unit_amount overrides it "
                                   "for flat and per_unit.")
    tiers: list[Tier] = Field(default_factory=list, description="graduated and volume: the tier table, "
                              "ascending `up_to`, the last open-ended.")
    package_size: int | None = Field(None, ge=1, description="package: units per package.")
    percent: Decimal | None = Field(None, ge=0, le=100, description="percentage: percent of the invoice's "
                                    "other lines.")
    interval: str = Field("month", description="Billing interval: month, quarter, year or 'N months'.")
    timing: Literal["advance", "arrears"] = Field("advance", description="Billed at the start of the period "
                                                  "(advance) or after it (arrears; usage always is).")
    usage: bool = Field(False, description="Rated from usage_events over the period instead of the contract "
                        "quantity.")
    minimum: Decimal | None = Field(None, ge=0, description="Minimum commitment per period (major units): a "
                                    "true-up line bills the shortfall.")
    tax_code: str = Field("standard", description="Product tax code, looked up in `tax_rates`.")
    requires_entitlement: bool = Field(False, description="A sale of this SKU must be backed by an "
                                       "entitlement row.")
    valid_from: date | None = Field(None, description="First day this price applies (none: always).")
    valid_to: date | None = Field(None, description="Day this price stops applying, exclusive (none: open).")

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        if not is_known_currency(value):
            raise ValueError(f"'{value}' is not an ISO-4217 currency code")
        return value.upper()

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: str) -> str:
        interval_months(value)
        return value

    @model_validator(mode="after")
    def _price_fields(self) -> Product:
        m = self.model
        if m in ("flat", "per_unit", "package") and self.amount is None:
            raise ValueError(f"model '{m}' needs `amount`")
        if m == "package" and self.package_size is None:
            raise ValueError("model 'package' needs `package_size`")
        if m == "percentage" and self.percent is None:
            raise ValueError("model 'percentage' needs `percent`")
        if m in ("graduated", "volume"):
            check_tiers(self.tiers)
        elif self.tiers:
            raise ValueError(f"model '{m}' takes no `tiers`")
        if self.valid_from and self.valid_to and self.valid_to <= self.valid_from:
            raise ValueError("valid_to must be after valid_from")
        return self

    @property
    def months(self) -> int:
        return interval_months(self.interval)


def interval_months(text: str) -> int:
    """Months in a billing interval: 'month' 1, 'quarter' 3, 'year' 12, '6 months' 6."""
    t = text.strip().lower()
    if t in INTERVAL_NAMES:
        return INTERVAL_NAMES[t]
    parts = t.split()
    if len(parts) == 2 and parts[0].isdigit() and parts[1] in ("month", "months") and 1 <= int(parts[0]) <= 120:
        return int(parts[0])
    raise ValueError(f"'{text}' is not an interval (month, quarter, year or 'N months')")


def check_tiers(tiers: list[Tier]) -> None:
    """A tier table is non-empty, strictly ascending and open-ended at the top only."""
    if not tiers:
        raise ValueError("tier table is empty")
    for i, t in enumerate(tiers[:-1]):
        if t.up_to is None:
            raise ValueError(f"tier table: tier {i + 1} has no up_to but is not the last tier")
        nxt = tiers[i + 1].up_to
        if nxt is not None and nxt <= t.up_to:
            raise ValueError(f"tier table: up_to must ascend (tier {i + 2}: {nxt} <= {t.up_to})")
    if tiers[-1].up_to is not None:
        raise ValueError("tier table: the last tier must have no up_to (it takes every unit above)")


class Coupon(_M):
    """A discount that contracts reference by code."""

    code: str = Field(description="Coupon code, as in subscriptions.coupon.")
    percent_off: Decimal | None = Field(None, gt=0, le=100, description="Percent off each line it applies to.")
    amount_off: Decimal | None = Field(None, gt=0, description="Fixed amount off the recurring line (major units).")
    currency: str | None = Field(None, description="Currency of amount_off.")
    duration: Literal["once", "repeating", "forever"] = Field("forever", description="How many periods it lasts.")
    periods: int | None = Field(None, ge=1, description="repeating: number of billing periods.")
    expires: date | None = Field(None, description="Applies to periods starting before this day only.")
    cap: Decimal | None = Field(None, gt=0, description="At most this much off one invoice (major units), "
                                "shared across its lines by largest remainder.")
    stackable: bool = Field(False, description="May apply more than once on one invoice.")
    approval_ref: str | None = Field(None, description="Approval of a discount above the approval threshold.")

    @model_validator(mode="after")
    def _one_kind(self) -> Coupon:
        if (self.percent_off is None) == (self.amount_off is None):
            raise ValueError("a coupon has exactly one of percent_off and amount_off")
        if self.amount_off is not None and self.currency is None:
            raise ValueError("amount_off needs `currency`")
        if self.duration == "repeating" and self.periods is None:
            raise ValueError("duration 'repeating' needs `periods`")
        return self

    @property
    def periods_limit(self) -> int | None:
        return {"once": 1, "repeating": self.periods, "forever": None}[self.duration]


class TaxRate(_M):
    """A tax rate for a jurisdiction and a product tax code."""

    jurisdiction: str = Field(description="Customer's tax jurisdiction, as in customers.jurisdiction.")
    tax_code: str = Field("standard", description="Product tax code.")
    rate: Decimal = Field(ge=0, le=100, description="Percent, e.g. 19 or 8.875.")
    inclusive: bool = Field(False, description="Prices include the tax (it is extracted, not added).")


class BillingConfig(_M):
    """The expected-invoice engine: catalog, coupons, taxes and policy (see docs/billing.md)."""

    proration: Literal["day", "second"] = Field("day", description="Prorate by whole days (end exclusive) or by "
                                                "seconds of the change timestamps (`start_at`/`end_at`); "
                                                "`by_day` and `by_second` are accepted too.")
    rounding: Literal["half_up", "half_even"] = Field("half_up", description="Rounding to the minor unit.")
    tax_rounding: Literal["line", "invoice"] = Field("line", description="Round tax per line or once per invoice.")
    discount_approval_percent: Decimal = Field(Decimal(30), ge=0, le=100, description="Discounts above this "
                                               "percent need an approval reference.")
    hold_on: Literal["high", "medium", "low"] = Field("low", description="`tieout validate` exits 1 when a "
                                                      "draft is held by a finding at or above this severity.")
    products: list[Product] = Field(default_factory=list, description="The catalog.")
    coupons: list[Coupon] = Field(default_factory=list, description="Coupons contracts may reference.")
    tax_rates: list[TaxRate] = Field(default_factory=list, description="Tax rate table.")

    @field_validator("proration", mode="before")
    @classmethod
    def _by(cls, value: object) -> object:
        return value.removeprefix("by_") if isinstance(value, str) else value

    @model_validator(mode="after")
    def _unique(self) -> BillingConfig:
        by_sku: dict[str, list[Product]] = {}
        for p in self.products:
            for q in by_sku.get(p.sku, []):
                if _overlap(p, q):
                    raise ValueError(f"sku '{p.sku}': price periods overlap ({_span(q)} and {_span(p)})")
            by_sku.setdefault(p.sku, []).append(p)
        codes = [c.code for c in self.coupons]
        dup = sorted({c for c in codes if codes.count(c) > 1})
        if dup:
            raise ValueError(f"coupon code '{dup[0]}' is declared twice")
        keys = [(t.jurisdiction, t.tax_code) for t in self.tax_rates]
        dup_t = sorted({k for k in keys if keys.count(k) > 1})
        if dup_t:
            raise ValueError(f"tax rate for {dup_t[0][0]}/{dup_t[0][1]} is declared twice")
        return self

    def product(self, sku: str, on: date | None = None) -> Product | None:
        for p in self.products:
            if p.sku == sku and (on is None or ((p.valid_from is None or p.valid_from <= on)
                                                and (p.valid_to is None or on < p.valid_to))):
                return p
        return None

    def coupon(self, code: str) -> Coupon | None:
        return next((c for c in self.coupons if c.code == code), None)


def _overlap(a: Product, b: Product) -> bool:
    lo = max(a.valid_from or date.min, b.valid_from or date.min)
    hi = min(a.valid_to or date.max, b.valid_to or date.max)
    return lo < hi


def _span(p: Product) -> str:
    return f"{p.valid_from or '…'} to {p.valid_to or '…'}"


def minor_scale(currency: str) -> Decimal:
    """Major → minor units multiplier of `currency` (100 for USD, 1 for JPY, 1000 for KWD)."""
    return Decimal(10) ** currency_exponent(currency)

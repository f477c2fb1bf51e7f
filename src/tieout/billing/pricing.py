"""Price models and named rounding, twice: exact `Decimal` functions (the reference, for golden
cases and one-off explanations) and the same rules as Ibis expressions for the engine, where every
row is rated set-based. Amounts here are minor units; nothing is rounded until `round_minor`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
import pyarrow as pa

from tieout.billing.catalog import ROUNDING_MODES, BillingConfig, Product, Tier, minor_scale
from tieout.money import currency_exponent

EXACT = dt.Decimal(38, 9)  # minor units with nine decimals: prices finer than the currency are exact
_PA_EXACT = pa.decimal128(38, 9)


# --- the reference (Decimal) ---------------------------------------------------------------------


def round_minor(value: Decimal, rounding: str = "half_up") -> int:
    """An exact minor-unit amount rounded to an integer with the named mode (half_up, half_even)."""
    return int(value.to_integral_value(rounding=ROUNDING_MODES[rounding]))


def _minor(major: Decimal, currency: str) -> Decimal:
    return major * minor_scale(currency)


def graduated_amount(tiers: list[Tier], quantity: int, currency: str) -> Decimal:
    """Each tier prices the units inside it, plus its flat fee once reached (Stripe 'graduated')."""
    total = Decimal(0)
    lower = 0
    for t in tiers:
        if quantity <= lower:
            break
        upper = quantity if t.up_to is None else min(quantity, t.up_to)
        total += (upper - lower) * _minor(t.unit_amount, currency) + _minor(t.flat_amount, currency)
        lower = t.up_to if t.up_to is not None else quantity
    return total


def volume_amount(tiers: list[Tier], quantity: int, currency: str) -> Decimal:
    """The tier the total quantity falls in prices every unit (Stripe 'volume'); zero units cost nothing."""
    if quantity <= 0:
        return Decimal(0)
    for t in tiers:
        if t.up_to is None or quantity <= t.up_to:
            return quantity * _minor(t.unit_amount, currency) + _minor(t.flat_amount, currency)
    raise AssertionError("tier tables are open-ended (validated in the catalog)")


def package_amount(price: Decimal, size: int, quantity: int, currency: str) -> Decimal:
    """A price per started package: 1–100 units is one package of 100, 101 is two."""
    packages = -(-quantity // size) if quantity > 0 else 0
    return packages * _minor(price, currency)


def rated_amount(product: Product, quantity: int, unit_amount_minor: int | None = None) -> Decimal:
    """The exact (unrounded) minor-unit amount of `quantity` for one full period of `product`.
    `unit_amount_minor` is the contract's negotiated price for flat and per_unit plans."""
    if quantity < 0:
        raise ValueError(f"quantity {quantity} is negative")
    cur = product.currency
    price = Decimal(unit_amount_minor) if unit_amount_minor is not None else _minor(product.amount or Decimal(0), cur)
    match product.model:
        case "flat":
            return price
        case "per_unit":
            return quantity * price
        case "graduated":
            return graduated_amount(product.tiers, quantity, cur)
        case "volume":
            return volume_amount(product.tiers, quantity, cur)
        case "package":
            return package_amount(product.amount or Decimal(0), product.package_size or 1, quantity, cur)
        case "percentage":
            raise ValueError("a percentage price needs the invoice's other lines: use percentage_amount")
    raise AssertionError(product.model)


def percentage_amount(percent: Decimal, base_minor: Decimal) -> Decimal:
    return base_minor * percent / 100


# --- the engine (Ibis) ---------------------------------------------------------------------------


def exact(value: ir.NumericValue) -> ir.DecimalValue:
    return value.cast(EXACT)


def divide_round(numerator: ir.NumericValue, denominator: ir.NumericValue, rounding: str = "half_up"
                 ) -> ir.IntegerValue:
    """numerator / denominator rounded to an integer with the named mode, exactly.

    Engines divide decimals in floating point (DuckDB returns DOUBLE), so the float quotient is only an
    estimate: it is corrected with the exact decimal remainder, which then decides the rounding. Ties
    round away from zero (half_up) or to the even neighbour (half_even), as `Decimal` does."""
    if rounding not in ROUNDING_MODES:
        raise ValueError(f"unknown rounding '{rounding}' (half_up or half_even)")
    n = numerator.cast(EXACT) if not isinstance(numerator.type(), dt.Decimal) else numerator
    d = denominator.cast(EXACT)
    a = n.abs()
    # The nearest integer by the float estimate (off by at most one), then two exact comparisons of
    # a/d with the half-way points around it: 2a − (2m ∓ 1)·d. Each input is referenced a few times
    # only: engines inline expressions, so every extra reference multiplies the SQL and its work.
    m = ((a * 2 + d).cast(dt.float64) / (d * 2).cast(dt.float64)).floor().cast(dt.Decimal(38, 0))  # a/d + ½
    below = a * 2 - (m * 2 - 1) * d  # < 0: a/d is below m − ½
    above = a * 2 - (m * 2 + 1) * d  # >= 0: a/d is at or above m + ½
    if rounding == "half_up":  # a tie goes away from zero (up, on the magnitude)
        down, up = below < 0, above >= 0
    else:  # a tie goes to the even neighbour
        odd = (m % 2) == 1
        down, up = (below < 0) | ((below == 0) & odd), (above > 0) | ((above == 0) & odd)
    magnitude = (m + ibis.cases((down, -1), (up, 1), else_=0)).cast(dt.int64)
    return magnitude * ibis.ifelse(n < 0, -1, 1)


def divide_floor(numerator: ir.NumericValue, denominator: ir.NumericValue) -> ir.IntegerValue:
    """floor(numerator / denominator), exactly, for numerator >= 0 and denominator > 0 (the float
    quotient as an estimate, corrected by the exact remainder, as in `divide_round`)."""
    n, d = numerator.cast(EXACT), denominator.cast(EXACT)
    q = (n.cast(dt.float64) / d.cast(dt.float64)).floor().cast(dt.Decimal(38, 0))
    r = n - q * d
    return (q + ibis.cases((r < 0, -1), (r >= d, 1), else_=0)).cast(dt.int64)


def round_exact(value: ir.NumericValue, rounding: str = "half_up") -> ir.IntegerValue:
    """An exact minor-unit amount to an integer with the named mode."""
    return divide_round(value, ibis.literal(1), rounding)


def products_arrow(cfg: BillingConfig) -> pa.Table:
    """The catalog as one row per (sku, validity): prices in exact minor units of the product."""
    rows: list[dict[str, Any]] = []
    for p in cfg.products:
        scale = minor_scale(p.currency)
        rows.append({
            "p_sku": p.sku, "p_currency": p.currency, "p_model": p.model,
            "p_amount": None if p.amount is None else p.amount * scale,
            "p_package_size": p.package_size, "p_percent": p.percent, "p_months": p.months,
            "p_timing": "arrears" if p.usage else p.timing, "p_usage": p.usage,
            "p_minimum": None if p.minimum is None else p.minimum * scale,
            "p_tax_code": p.tax_code, "p_requires_entitlement": p.requires_entitlement,
            "p_valid_from": p.valid_from, "p_valid_to": p.valid_to, "p_name": p.name or p.sku,
            "p_exp": currency_exponent(p.currency),
        })
    schema = pa.schema([
        ("p_sku", pa.string()), ("p_currency", pa.string()), ("p_model", pa.string()), ("p_amount", _PA_EXACT),
        ("p_package_size", pa.int64()), ("p_percent", _PA_EXACT), ("p_months", pa.int64()),
        ("p_timing", pa.string()), ("p_usage", pa.bool_()), ("p_minimum", _PA_EXACT), ("p_tax_code", pa.string()),
        ("p_requires_entitlement", pa.bool_()), ("p_valid_from", pa.date32()), ("p_valid_to", pa.date32()),
        ("p_name", pa.string()), ("p_exp", pa.int64()),
    ])
    return pa.Table.from_pylist(rows, schema=schema)


def tiers_arrow(cfg: BillingConfig) -> pa.Table:
    """Every tier of every graduated/volume product: [t_lower, t_upper) in units, prices in minor units."""
    rows: list[dict[str, Any]] = []
    for p in cfg.products:
        scale = minor_scale(p.currency)
        lower = 0
        for i, t in enumerate(p.tiers):
            rows.append({"t_sku": p.sku, "t_valid_from": p.valid_from, "t_no": i + 1, "t_lower": lower,
                         "t_upper": t.up_to, "t_unit": t.unit_amount * scale, "t_flat": t.flat_amount * scale})
            lower = t.up_to or lower
    schema = pa.schema([("t_sku", pa.string()), ("t_valid_from", pa.date32()), ("t_no", pa.int64()),
                        ("t_lower", pa.int64()), ("t_upper", pa.int64()), ("t_unit", _PA_EXACT),
                        ("t_flat", _PA_EXACT)])
    return pa.Table.from_pylist(rows, schema=schema)


def rate_quantities(q: ir.Table, tiers: ir.Table, key: str) -> ir.Table:
    """Exact amounts of tiered quantities, set-based: `q` has `key`, `p_sku`, `p_valid_from`, `p_model`,
    `p_exp` and `rate_qty`; returns (`key`, `tiered_amount`).

    Each row meets every tier of its product; a graduated row takes the units of the quantity that fall
    in each tier (the quantity clamped to [lower, upper]) and sums; a volume row keeps only the tier its
    total falls in (lower < quantity ≤ upper) and prices every unit there.

    Many rows share a quantity (seats, or usage sums over a period), so each distinct (product,
    quantity) is rated once, and the rows take their amount from it by a join."""
    rated = rate_distinct_quantities(q, tiers)
    j = q.join(rated, same_rated(q, rated))
    return j.select(j[key], tiered_amount=j.tiered_amount)


def same_rated(q: ir.Table, rated: ir.Table) -> ir.BooleanValue:
    """Join condition of rows of `q` (`p_sku`, `p_valid_from`, `rate_qty`) with their rating."""
    return ((q.p_sku == rated.r_sku) & (q.rate_qty == rated.r_qty)
            & ((q.p_valid_from.isnull() & rated.r_valid_from.isnull()) | (q.p_valid_from == rated.r_valid_from)))


def _in_tiers(q: ir.Table, tiers: ir.Table) -> ir.Table:
    """Each distinct (product, quantity) of `q` against every tier of its product, with the units the
    tier prices (`_units`) and whether it prices any (`_used`): a graduated quantity reaches a tier when
    it is above the tier's lower bound, and takes its units clamped to the tier; a volume quantity
    uses the one tier it falls in (lower < quantity ≤ upper), for every unit."""
    q = q.select("p_sku", "p_valid_from", "p_model", "p_exp", "rate_qty").distinct()
    j = q.join(tiers, (q.p_sku == tiers.t_sku) & (q.p_valid_from.isnull() & tiers.t_valid_from.isnull()
                                                   | (q.p_valid_from == tiers.t_valid_from)))
    qty = j.rate_qty
    upper = j.t_upper.fill_null(qty)
    reached = qty > j.t_lower
    is_volume = j.p_model == "volume"
    volume_tier = reached & (j.t_upper.isnull() | (qty <= j.t_upper))
    return j.mutate(_used=ibis.ifelse(is_volume, volume_tier, reached),
                    _units=ibis.ifelse(is_volume, qty, ibis.greatest(ibis.least(qty, upper) - j.t_lower, 0)))


def rate_distinct_quantities(q: ir.Table, tiers: ir.Table) -> ir.Table:
    """The exact tiered amount of each distinct (product, quantity) of `q` (columns `p_sku`,
    `p_valid_from`, `p_model`, `p_exp`, `rate_qty`): (r_sku, r_valid_from, r_qty, tiered_amount)."""
    j = _in_tiers(q, tiers)
    part = ibis.ifelse(j._used, exact(j._units) * j.t_unit + j.t_flat, exact(ibis.literal(0)))
    return j.group_by(r_sku=j.p_sku, r_valid_from=j.p_valid_from, r_qty=j.rate_qty).aggregate(
        tiered_amount=part.sum().cast(dt.Decimal(38, 18)))


def tier_words(q: ir.Table, tiers: ir.Table) -> ir.Table:
    """How each distinct (product, quantity) of `q` is rated, in words, tier by tier ('tier 1: 100 ×
    0.02; tier 2: 50 × 0.015 + 1'): (r_sku, r_valid_from, r_qty, tier_detail), null when no tier is
    reached."""
    j = _in_tiers(q, tiers)
    major = ibis.cases((j.p_exp == 0, 1), (j.p_exp == 3, Decimal("0.001")), else_=Decimal("0.01")).cast(EXACT)
    detail = ibis.ifelse(
        j._used,
        "tier " + j.t_no.cast(dt.string) + ": " + j._units.cast(dt.string) + " × "
        + _plain(j.t_unit * major) + ibis.ifelse(j.t_flat > 0, " + " + _plain(j.t_flat * major), ""),
        ibis.null(dt.string),
    )
    # The tiers' words in tier order. Not group_concat(order_by=...): Spark has no ordered aggregate,
    # so each part carries its zero-padded tier number and a unit separator, the list is sorted and
    # joined, and the numbers are dropped (no lambda: DuckDB and Spark spell them differently).
    keyed = j.t_no.cast(dt.string).lpad(_TIER_DIGITS, "0") + _MARK + detail
    out = j.mutate(_detail=keyed).group_by(r_sku=j.p_sku, r_valid_from=j.p_valid_from, r_qty=j.rate_qty).aggregate(
        _details=ibis._._detail.collect())
    words = out._details.sort().join("; ").re_replace(f"[0-9]{{{_TIER_DIGITS}}}{_MARK}", "")
    return out.mutate(tier_detail=ibis.ifelse(out._details.length() > 0, words, ibis.null(dt.string))).drop(
        "_details")


_TIER_DIGITS = 6
_MARK = "\x1f"  # ends a tier number's prefix; never in the words themselves


def _plain(value: ir.DecimalValue) -> ir.StringValue:
    """A decimal as text without trailing zeros ('4.000000000' → '4', '0.150000000' → '0.15')."""
    text = value.cast(dt.string)
    return ibis.ifelse(text.contains("."), text.re_replace(r"\.?0+$", ""), text)


def package_count(quantity: ir.IntegerValue, size: ir.IntegerValue) -> ir.IntegerValue:
    """Started packages: ceil(quantity / size) in integers (0 for no units)."""
    return ibis.ifelse(quantity > 0, (quantity + size - 1) // size, 0)



def money_text(minor: ir.IntegerValue, currency: ir.StringValue, exponent: ir.IntegerValue) -> ir.StringValue:
    """'USD 49.00', 'JPY 5000', 'KWD 1.250' from integer minor units (for explanations)."""
    scale = ibis.cases((exponent == 0, 1), (exponent == 3, 1000), (exponent == 4, 10000), else_=100)
    units = (minor.abs() // scale).cast(dt.string)
    frac = (minor.abs() % scale).cast(dt.string).lpad(exponent, "0")
    sign = ibis.ifelse(minor < 0, "-", "")
    return currency + " " + sign + units + ibis.ifelse(exponent > 0, "." + frac, "")

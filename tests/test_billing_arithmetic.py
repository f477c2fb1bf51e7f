"""The billing arithmetic: golden cases from vendor docs, and properties (hypothesis), on the Decimal
reference and on the engine (the same rules must give the same integers)."""

from __future__ import annotations

import itertools
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction

import ibis
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tieout.billing.catalog import BillingConfig, Product
from tieout.billing.pricing import (
    divide_round,
    graduated_amount,
    package_amount,
    products_arrow,
    rate_quantities,
    rated_amount,
    round_minor,
    tiers_arrow,
    volume_amount,
)
from tieout.billing.proration import (
    SECONDS_PER_DAY,
    anchor_date,
    cycle_containing,
    midnight,
    prorate_exact,
    prorate_fraction,
)
from tieout.engines.base import Engine

# Stripe's documented tiers (docs: "Tiered pricing"): 1-5 units at $7, 6-10 at $6.50, 11+ at $6.
STRIPE_TIERS = [{"up_to": 5, "unit_amount": "7.00"}, {"up_to": 10, "unit_amount": "6.50"}, {"unit_amount": "6.00"}]


def _product(model: str, **kw: object) -> Product:
    return Product.model_validate({"sku": "X", "currency": kw.pop("currency", "USD"), "model": model, **kw})


def test_stripe_graduated_and_volume_examples() -> None:
    g = _product("graduated", tiers=STRIPE_TIERS)
    v = _product("volume", tiers=STRIPE_TIERS)
    # Graduated, 6 units: 5 × 7.00 + 1 × 6.50 = 41.50; volume, 6 units: 6 × 6.50 = 39.00.
    assert rated_amount(g, 6) == Decimal("4150.00")
    assert rated_amount(v, 6) == Decimal("3900.00")
    # 15 units: graduated 35 + 32.50 + 30 = 97.50; volume 15 × 6 = 90.
    assert rated_amount(g, 15) == Decimal("9750.00")
    assert rated_amount(v, 15) == Decimal("9000.00")
    assert rated_amount(g, 0) == rated_amount(v, 0) == 0


def test_flat_fee_tiers_and_packages() -> None:
    g = _product("graduated", tiers=[{"up_to": 1000, "unit_amount": "0", "flat_amount": "10"},
                                     {"unit_amount": "0.015"}])
    assert graduated_amount(g.tiers, 1000, "USD") == Decimal(1000)
    assert graduated_amount(g.tiers, 1200, "USD") == Decimal("1300.000")  # 10 + 200 × 0.015
    assert volume_amount(g.tiers, 1000, "USD") == Decimal(1000)
    # Stripe's package example: $5 per 5 units, rounded up: 8 units → 2 packages = $10.
    assert package_amount(Decimal(5), 5, 8, "USD") == Decimal(1000)
    assert package_amount(Decimal(5), 5, 10, "USD") == Decimal(1000)
    assert package_amount(Decimal(5), 5, 11, "USD") == Decimal(1500)
    assert package_amount(Decimal(5), 5, 0, "USD") == 0


def test_currency_exponents_in_rated_amounts() -> None:
    assert rated_amount(_product("per_unit", currency="JPY", amount="500"), 3) == Decimal(1500)
    assert rated_amount(_product("per_unit", currency="KWD", amount="1.250"), 2) == Decimal("2500.000")
    assert rated_amount(_product("per_unit", amount="0.0015"), 3) == Decimal("0.4500")


def test_stripe_upgrade_halfway_credits_5_and_charges_10() -> None:
    """Stripe docs (Prorations): a 10 USD/month plan upgraded to 20 USD halfway through the month
    gives a -5 USD credit for unused time and a +10 USD charge for the remaining time."""
    period = (midnight(date(2026, 4, 1)), midnight(date(2026, 5, 1)))
    change = midnight(date(2026, 4, 16))
    half = prorate_fraction((change, period[1]), period)
    assert half == Fraction(1, 2)
    assert -round_minor(prorate_exact(1000, half)) == -500
    assert round_minor(prorate_exact(2000, half)) == 1000


def test_proration_by_day_across_month_lengths_and_leap_years() -> None:
    def share(start: date, end: date) -> Fraction:
        p0, p1 = cycle_containing(start, 1)
        return prorate_fraction((midnight(start), midnight(end)), (midnight(p0), midnight(p1)))

    assert share(date(2026, 2, 15), date(2026, 3, 1)) == Fraction(14, 28)
    assert share(date(2028, 2, 15), date(2028, 3, 1)) == Fraction(15, 29)  # leap year
    assert share(date(2026, 4, 15), date(2026, 5, 1)) == Fraction(16, 30)
    assert share(date(2026, 1, 15), date(2026, 2, 1)) == Fraction(17, 31)
    # 49.00 for 17 of 31 days: 26.870967... → 26.87
    assert round_minor(prorate_exact(4900, Fraction(17, 31))) == 2687


def test_proration_by_second() -> None:
    period = (midnight(date(2026, 4, 1)), midnight(date(2026, 5, 1)))
    start = period[0] + timedelta(days=10, hours=12)
    assert prorate_fraction((start, period[1]), period, by="second") == Fraction(39, 60)
    assert prorate_fraction((start, period[1]), period, by="day") == Fraction(19, 30)


def test_anchor_day_31_in_short_months() -> None:
    assert anchor_date(2026, 2, 31) == date(2026, 2, 28)
    assert anchor_date(2028, 2, 31) == date(2028, 2, 29)
    assert anchor_date(2026, 4, 31) == date(2026, 4, 30)
    assert cycle_containing(date(2026, 2, 28), 31) == (date(2026, 2, 28), date(2026, 3, 31))
    assert cycle_containing(date(2026, 2, 27), 31) == (date(2026, 1, 31), date(2026, 2, 28))
    assert cycle_containing(date(2026, 3, 31), 31) == (date(2026, 3, 31), date(2026, 4, 30))
    # Quarterly from May: the cycle holding August 20 starts August 31 - no, May's phase: Aug 31 - Nov 30.
    assert cycle_containing(date(2026, 9, 2), 31, 3, phase=date(2026, 5, 31)) == (date(2026, 8, 31),
                                                                                   date(2026, 11, 30))


def test_half_even_is_selectable() -> None:
    assert round_minor(Decimal("2.5")) == 3
    assert round_minor(Decimal("2.5"), "half_even") == 2
    assert round_minor(Decimal("-2.5")) == -3
    assert round_minor(Decimal("3.5"), "half_even") == 4


@pytest.mark.parametrize("yaml_products, message", [
    ([{"sku": "A", "currency": "USD", "model": "graduated", "tiers": [{"up_to": 10}, {"up_to": 5}, {}]}],
     "up_to must ascend"),
    ([{"sku": "A", "currency": "USD", "model": "volume", "tiers": [{"up_to": 10}]}], "last tier must have no up_to"),
    ([{"sku": "A", "currency": "USD", "model": "graduated", "tiers": []}], "tier table is empty"),
    ([{"sku": "A", "currency": "USD", "model": "per_unit"}], "needs `amount`"),
    ([{"sku": "A", "currency": "XXQ", "model": "flat", "amount": 1}], "not an ISO-4217"),
    ([{"sku": "A", "currency": "USD", "model": "flat", "amount": 1, "valid_from": "2026-01-01"},
      {"sku": "A", "currency": "USD", "model": "flat", "amount": 2, "valid_from": "2026-06-01"}],
     "price periods overlap"),
    ([{"sku": "A", "currency": "USD", "model": "flat", "amount": 1, "interval": "fortnight"}], "not an interval"),
])
def test_bad_catalog_is_refused_with_the_reason(yaml_products: list[dict[str, object]], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        BillingConfig.model_validate({"products": yaml_products})


def test_bad_tier_table_names_the_yaml_line(tmp_path: object) -> None:
    from pathlib import Path

    from tieout.config import load_config
    from tieout.errors import ConfigError

    p = Path(str(tmp_path)) / "tieout.yaml"
    p.write_text("billing:\n  products:\n    - sku: A\n      currency: USD\n      model: graduated\n"
                 "      tiers: [{up_to: 10}, {up_to: 5}, {}]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"tieout.yaml:3: billing.products.0: .*up_to must ascend"):
        load_config(p)


# --- properties ----------------------------------------------------------------------------------

amounts = st.integers(min_value=0, max_value=10**12)
starts = st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 1, 1))


@given(amount=amounts, start=starts, anchor=st.integers(1, 31))
def test_a_full_period_prorates_to_the_full_price(amount: int, start: date, anchor: int) -> None:
    p0, p1 = cycle_containing(start, anchor)
    assert round_minor(prorate_exact(amount, prorate_fraction((midnight(p0), midnight(p1)),
                                                              (midnight(p0), midnight(p1))))) == amount


@given(amount=amounts, start=starts, anchor=st.integers(1, 31), cuts=st.lists(st.integers(1, 27), max_size=4))
def test_split_periods_sum_to_the_whole_within_one_unit_per_split(amount: int, start: date, anchor: int,
                                                                  cuts: list[int]) -> None:
    p0, p1 = cycle_containing(start, anchor)
    days = (p1 - p0).days
    points = sorted({c for c in cuts if c < days})
    edges = [p0, *(p0 + timedelta(days=c) for c in points), p1]
    period = (midnight(p0), midnight(p1))
    parts = [round_minor(prorate_exact(amount, prorate_fraction((midnight(a), midnight(b)), period)))
             for a, b in itertools.pairwise(edges)]
    assert abs(sum(parts) - amount) <= len(parts) - 1


@given(start=starts, anchor=st.integers(1, 31), a=st.integers(0, 31), b=st.integers(0, 31))
def test_by_second_equals_by_day_for_date_only_changes(start: date, anchor: int, a: int, b: int) -> None:
    p0, p1 = cycle_containing(start, anchor)
    days = (p1 - p0).days
    lo, hi = sorted((min(a, days), min(b, days)))
    service = (midnight(p0 + timedelta(days=lo)), midnight(p0 + timedelta(days=hi)))
    period = (midnight(p0), midnight(p1))
    assert prorate_fraction(service, period, by="second") == prorate_fraction(service, period, by="day")


@given(amount=amounts, start=starts, anchor=st.integers(1, 31),
       cuts=st.lists(st.integers(1, 28 * SECONDS_PER_DAY - 1), max_size=4))
def test_split_by_seconds_sums_to_the_whole_within_one_unit_per_split(amount: int, start: date, anchor: int,
                                                                      cuts: list[int]) -> None:
    p0, p1 = cycle_containing(start, anchor)
    period = (midnight(p0), midnight(p1))
    edges = [period[0], *(period[0] + timedelta(seconds=c) for c in sorted(set(cuts))), period[1]]
    parts = [round_minor(prorate_exact(amount, prorate_fraction((a, b), period, by="second")))
             for a, b in itertools.pairwise(edges)]
    assert abs(sum(parts) - amount) <= len(parts) - 1


@given(amount=amounts, start=starts, anchor=st.integers(1, 31), by=st.sampled_from(["day", "second"]),
       pause=st.integers(0, 28 * SECONDS_PER_DAY), length=st.integers(1, 28 * SECONDS_PER_DAY))
def test_a_pause_bills_the_active_time_within_one_unit(amount: int, start: date, anchor: int, by: str, pause: int,
                                                       length: int) -> None:
    """Paused inside a cycle billed in advance: the full cycle, minus the credit for the time after the pause,
    plus the charge for the time after the resume, is the active time's share, within one minor unit."""
    p0, p1 = cycle_containing(start, anchor)
    period = (midnight(p0), midnight(p1))
    step = SECONDS_PER_DAY if by == "day" else 1  # by day, changes fall on dates
    paused = period[0] + timedelta(seconds=pause // step * step)
    resumed = min(paused + timedelta(seconds=-(-length // step) * step), period[1])
    credit = -round_minor(prorate_exact(amount, prorate_fraction((paused, period[1]), period, by)))
    charge = round_minor(prorate_exact(amount, prorate_fraction((resumed, period[1]), period, by)))
    active = 1 - prorate_fraction((paused, resumed), period, by)
    billed = amount + credit + charge
    assert 0 <= billed <= amount
    assert abs(billed - prorate_exact(amount, active)) <= 1


@settings(max_examples=60, deadline=None)
@given(n=st.integers(-10**15, 10**15), d=st.integers(1, 10**7), mode=st.sampled_from(["half_up", "half_even"]))
def test_engine_division_rounds_exactly_like_decimal(n: int, d: int, mode: str, engine: Engine) -> None:
    expr = divide_round(ibis.literal(n), ibis.literal(d), mode)
    got = expr.to_pyarrow().as_py()
    assert got == round_minor(Decimal(n) / Decimal(d), mode)


@settings(max_examples=25, deadline=None)
@given(qty=st.lists(st.integers(0, 5000), min_size=1, max_size=12),
       uppers=st.lists(st.integers(1, 3000), min_size=0, max_size=4, unique=True),
       units=st.lists(st.decimals("0", "3", places=4), min_size=5, max_size=5),
       model=st.sampled_from(["graduated", "volume"]))
def test_engine_tiers_rate_like_the_reference(qty: list[int], uppers: list[int], units: list[Decimal], model: str,
                                              engine: Engine) -> None:
    tiers = [{"up_to": u, "unit_amount": str(units[i])} for i, u in enumerate(sorted(uppers))]
    tiers.append({"unit_amount": str(units[4]), "flat_amount": "1.25"})
    cfg = BillingConfig.model_validate({"products": [{"sku": "T", "currency": "USD", "model": model,
                                                      "tiers": tiers}]})
    product = cfg.products[0]
    prods = engine.from_arrow("p_tiers_prop", products_arrow(cfg))
    tier_t = engine.from_arrow("t_tiers_prop", tiers_arrow(cfg))
    q = engine.from_arrow("q_tiers_prop", pa.table({"k": [str(i) for i in range(len(qty))], "rate_qty": qty}))
    q = q.cross_join(prods.select("p_sku", "p_valid_from", "p_model", "p_exp"))
    got = {r["k"]: r["tiered_amount"] for r in rate_quantities(q, tier_t, "k").to_pyarrow().to_pylist()}
    for i, n in enumerate(qty):
        assert got[str(i)] == rated_amount(product, n), (n, tiers)


def test_billing_doc_lists_every_price_model_and_line_kind() -> None:
    from pathlib import Path

    from tieout.billing.catalog import PRICE_MODELS
    from tieout.billing.expected import LINE_KINDS

    doc = (Path(__file__).parent.parent / "docs" / "billing.md").read_text(encoding="utf-8")
    for name, text in PRICE_MODELS.items():
        assert f"| `{name}` | {text} |" in doc, name
    for name, text in LINE_KINDS.items():
        assert f"| `{name}` | {text} |" in doc, name

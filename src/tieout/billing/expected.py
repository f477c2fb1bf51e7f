"""The expected invoice, line by line, on the engine: subscriptions (segments of contracts) × the
catalog × billing cycles × usage × coupons × taxes → one row per line an invoice should carry, with
its explanation. Set-based Ibis throughout; Python only builds the small catalog tables.

Which invoice a line goes on (its `bill_date`, the invoice's period start): a recurring charge in
advance on the cycle's first day; in arrears, usage, minimum true-ups, and the credit and charge of a
change inside a cycle on the next cycle's first day (as Stripe's pending prorations); the leading
partial period of a new contract on its start day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
import pyarrow as pa

from tieout.billing.catalog import BillingConfig, minor_scale
from tieout.billing.pricing import (
    EXACT,
    divide_floor,
    divide_round,
    exact,
    money_text,
    package_count,
    products_arrow,
    rate_distinct_quantities,
    round_exact,
    same_rated,
    tier_words,
    tiers_arrow,
)
from tieout.billing.proration import billing_cycles
from tieout.engines.base import Engine

_FAR = ibis.literal("9999-12-31").cast(dt.date)
LINE_KINDS = {
    "recurring": "the plan's price for a full billing cycle",
    "proration": "the remaining time of a cycle after a start or change inside it",
    "credit": "the unused time of a cycle billed in advance and then changed or canceled",
    "usage": "metered usage above the included quantity, rated over the cycle",
    "minimum": "the shortfall of usage below the minimum commitment",
    "percentage": "a percent of the invoice's other lines",
}
EXPECTED_COLUMNS = ("contract_id", "subscription_id", "customer_id", "currency", "sku", "kind", "match_kind",
                    "bill_date", "cycle_start", "cycle_end", "period_start", "period_end", "quantity", "unit_amount",
                    "amount", "discount", "tax", "tax_rate", "tax_inclusive", "discount_expired", "explanation")


@dataclass
class BillingTables:
    """The canonical inputs of the engine (Ibis tables); usage and the rest may be absent."""

    subscriptions: ir.Table
    customers: ir.Table | None = None
    usage_events: ir.Table | None = None
    entitlements: ir.Table | None = None


def months_between(first: date, last: date) -> list[date]:
    """Firsts of the months from `first`'s month to `last`'s, inclusive."""
    out = []
    y, m = first.year, first.month
    while (y, m) <= (last.year, last.month):
        out.append(date(y, m, 1))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def horizon(bill_dates: list[date], longest_interval_months: int) -> list[date]:
    """Months whose cycles can put a line on an invoice dated in `bill_dates` (a cycle billed in
    arrears started up to one interval before)."""
    lo, hi = min(bill_dates), max(bill_dates)
    y, m = lo.year, lo.month - longest_interval_months - 1
    while m < 1:
        y, m = y - 1, m + 12
    return months_between(date(y, m, 1), hi)


def catalog_tables(engine: Engine, cfg: BillingConfig) -> dict[str, ir.Table]:
    """The catalog, coupons and tax rates as (small) tables on the engine, beside the contracts they
    meet (after the hand-over, Spark registers them on Spark)."""
    coupons = pa.Table.from_pylist([
        {"c_code": c.code, "c_percent": c.percent_off,
         "c_amount_off": None if c.amount_off is None else c.amount_off * minor_scale(c.currency or "USD"),
         "c_currency": c.currency, "c_periods": c.periods_limit, "c_expires": c.expires,
         "c_cap_major": c.cap, "c_stackable": c.stackable, "c_approval": c.approval_ref}
        for c in cfg.coupons
    ], schema=pa.schema([("c_code", pa.string()), ("c_percent", pa.decimal128(38, 9)),
                         ("c_amount_off", pa.decimal128(38, 9)), ("c_currency", pa.string()),
                         ("c_periods", pa.int64()), ("c_expires", pa.date32()),
                         ("c_cap_major", pa.decimal128(38, 9)), ("c_stackable", pa.bool_()),
                         ("c_approval", pa.string())]))
    rates = pa.Table.from_pylist([
        {"r_jurisdiction": r.jurisdiction, "r_tax_code": r.tax_code, "r_rate": r.rate, "r_inclusive": r.inclusive}
        for r in cfg.tax_rates
    ], schema=pa.schema([("r_jurisdiction", pa.string()), ("r_tax_code", pa.string()),
                         ("r_rate", pa.decimal128(38, 9)), ("r_inclusive", pa.bool_())]))
    return {
        "products": engine.from_arrow("billing_products", products_arrow(cfg)),
        "tiers": engine.from_arrow("billing_tiers", tiers_arrow(cfg)),
        "coupons": engine.from_arrow("billing_coupons", coupons),
        "tax_rates": engine.from_arrow("billing_tax_rates", rates),
    }


def priced_segments(subs: ir.Table, products: ir.Table) -> ir.Table:
    """Subscriptions with their contract, service window, anchor and catalog price (left join: a
    SKU the catalog does not price has null `p_sku`)."""
    svc_start = ibis.greatest(subs.start_date, subs.trial_end.fill_null(subs.start_date))
    s = subs.mutate(contract=subs.contract_id.fill_null(subs.subscription_id), _svc_start=svc_start,
                    _svc_end=subs.end_date, _anchor=subs.billing_anchor.fill_null(svc_start.day()).cast(dt.int64))
    valid = ((products.p_valid_from.isnull() | (products.p_valid_from <= s._svc_start))
             & (products.p_valid_to.isnull() | (s._svc_start < products.p_valid_to)))
    return s.left_join(products, (s.sku == products.p_sku) & valid)


def expected_lines(engine: Engine, cfg: BillingConfig, t: BillingTables, bill_dates: list[date]) -> ir.Table:
    """Every line the invoices dated in `bill_dates` should carry (EXPECTED_COLUMNS).

    The lines are computed (and the intermediate steps materialized) from numbers only; each line's
    explanation is a projection of the final table, written from the numbers it carries, so a
    reader that does not select it (a total, a count) never builds a million sentences."""
    cat = catalog_tables(engine, cfg)
    products = cat["products"]
    longest = max([p.months for p in cfg.products] or [1])
    months = engine.from_arrow("billing_months",
                               pa.table({"month": pa.array(horizon(bill_dates, longest), pa.date32())}))
    wanted = engine.from_arrow("billing_dates", pa.table({"want_date": pa.array(sorted(set(bill_dates)), pa.date32())}))
    seg = priced_segments(t.subscriptions, products)
    seg = seg.filter(seg.p_sku.notnull() & (seg.currency == seg.p_currency) & (seg.status != "paused"))
    seg = seg.mutate(_months=seg.p_months)
    # A segment is a change when another segment of its contract ends the day it starts.
    ends = t.subscriptions.select(e_contract=t.subscriptions.contract_id.fill_null(t.subscriptions.subscription_id),
                                  e_end=t.subscriptions.end_date).filter(ibis._.e_end.notnull()).distinct()
    seg = seg.left_join(ends, (seg.contract == ends.e_contract) & (seg.start_date == ends.e_end))
    seg = seg.mutate(is_change=seg.e_contract.notnull())
    # Only what the lines need: every column carried is written again by each materialized step.
    seg = seg.select("subscription_id", "customer_id", "sku", "quantity", "unit_amount", "currency",
                     "discount_percent", "discount_end", "coupon", "contract", "_svc_start", "_svc_end", "_anchor",
                     "_months", "is_change", "p_sku", "p_valid_from", "p_model", "p_amount", "p_package_size",
                     "p_percent", "p_timing", "p_usage", "p_minimum", "p_tax_code", "p_exp",
                     *[c for c in ("start_at", "end_at") if c in seg.columns])
    cyc = billing_cycles(seg, months, cfg.proration)
    # Only cycles that can put a line on a wanted invoice (every line is dated on its cycle's start or
    # end, or on the first day of service): the horizon's other cycles are never rated.
    due = sorted(set(bill_dates))
    cyc = cyc.filter(cyc.cycle_start.isin(due) | cyc.cycle_end.isin(due) | cyc.service_start.isin(due))
    cyc = engine.materialize("billing_cycles", cyc, scratch=True)

    lines = [_recurring_lines(engine, cyc, cat["tiers"]), _usage_lines(engine, cyc, cat["tiers"], t)]
    base = ibis.union(*lines, distinct=False)
    base = base.join(wanted, base.bill_date == wanted.want_date).drop("want_date")
    all_lines = base
    if any(p.model == "percentage" for p in cfg.products):  # they read the other lines: compute those once
        base = engine.materialize("expected_base_lines", base, scratch=True)
        pct = _percentage_lines(cyc, base, cfg.rounding)
        pct = pct.join(wanted, pct.bill_date == wanted.want_date).drop("want_date")
        all_lines = ibis.union(base, pct, distinct=False)
    all_lines = engine.materialize("expected_priced_lines", all_lines.filter(all_lines.amount != 0), scratch=True)
    return _explained(_discount_and_tax(all_lines, cat, t.customers, cfg), all_lines, cat["tiers"])


def _with_tiers(c: ir.Table, tiers: ir.Table) -> ir.Table:
    """`c` with the exact tiered amount of its `rate_qty` (null for plans without tiers)."""
    tiered = c.filter(c.p_model.isin(TIERED))
    rated = rate_distinct_quantities(tiered, tiers)
    return c.left_join(rated, same_rated(c, rated)).drop("r_sku", "r_valid_from", "r_qty")


TIERED = ["graduated", "volume"]


def _full_price(c: ir.Table, qty: ir.IntegerValue) -> ir.DecimalValue:
    """Exact minor-unit price of one full cycle for the price models other than percentage."""
    unit = exact(c.unit_amount)
    return ibis.cases(
        (c.p_model == "flat", unit),
        (c.p_model == "per_unit", exact(qty) * unit),
        (c.p_model == "package", exact(package_count(qty, c.p_package_size.fill_null(1))) * c.p_amount),
        (c.p_model.isin(TIERED), c.tiered_amount.fill_null(0).cast(EXACT)),
        else_=exact(ibis.literal(0)),
    )


def _dates(a: ir.DateValue, b: ir.DateValue) -> ir.StringValue:
    return a.strftime("%Y-%m-%d") + " to " + b.strftime("%Y-%m-%d")


# What a line says about itself (`why`), each written in `_explained` from the numbers the line carries.
_NULL_INT = ibis.null(dt.int64)


def _line(c: ir.Table, *, kind: str | ir.StringValue, why: str, bill_date: ir.DateValue, period_start: ir.DateValue,
          period_end: ir.DateValue, quantity: ir.IntegerValue, unit_amount: ir.Value, amount: ir.IntegerValue,
          units: ir.IntegerValue = _NULL_INT, used: ir.IntegerValue = _NULL_INT, events: ir.IntegerValue = _NULL_INT,
          included: ir.IntegerValue = _NULL_INT, base: ir.IntegerValue = _NULL_INT) -> ir.Table:
    """One kind of expected line from the rows of `c`: its money, and the numbers its explanation cites
    (`x_units` of `x_cycle_units` days or seconds; usage `x_used` from `x_events` events, `x_included`;
    a percentage's `x_base`)."""
    kind_v = ibis.literal(kind) if isinstance(kind, str) else kind
    return c.select(
        contract_id=c.contract, subscription_id=c.subscription_id, customer_id=c.customer_id, currency=c.currency,
        sku=c.sku, kind=kind_v, bill_date=bill_date.cast(dt.date), cycle_start=c.cycle_start.cast(dt.date),
        cycle_end=c.cycle_end.cast(dt.date), cycle_no=c.cycle_no,
        # Dates, said explicitly: Spark types date arithmetic (greatest, + interval) as a timestamp.
        period_start=period_start.cast(dt.date), period_end=period_end.cast(dt.date), quantity=quantity.cast(dt.int64),
        unit_amount=unit_amount.cast(dt.int64), amount=amount.cast(dt.int64), p_tax_code=c.p_tax_code,
        p_exp=c.p_exp, discount_percent=c.discount_percent, discount_end=c.discount_end, coupon=c.coupon,
        why=ibis.literal(why), p_model=c.p_model, p_package_size=c.p_package_size, p_valid_from=c.p_valid_from,
        x_units=units.cast(dt.int64), x_cycle_units=c.cycle_units, x_by_day=c.cycle_units == c.cycle_days,
        x_used=used.cast(dt.int64), x_events=events.cast(dt.int64), x_included=included.cast(dt.int64),
        x_minimum=c.p_minimum.cast(EXACT), x_percent=c.p_percent.cast(EXACT), x_base=base.cast(dt.int64),
    )


def _recurring_lines(engine: Engine, cyc: ir.Table, tiers: ir.Table) -> ir.Table:
    """Recurring charges, remaining-time charges and unused-time credits of non-usage plans."""
    c = cyc.filter(~cyc.p_usage & (cyc.p_model != "percentage"))
    c = _with_tiers(c.mutate(rate_qty=c.quantity.cast(dt.int64)), tiers)
    c = c.mutate(_full=_full_price(c, c.quantity))
    c = engine.materialize("recurring_priced", c, scratch=True)
    unit = ibis.ifelse(c.p_model.isin(["flat", "per_unit"]), c.unit_amount, ibis.null(dt.int64))
    advance = c.p_timing == "advance"
    at_start = c.lead_units == 0
    partial = c.service_units < c.cycle_units
    out = []
    # In advance, active on the cycle's first day: the full cycle on that day's invoice.
    r = c.filter(advance & at_start)
    out.append(_line(r, kind="recurring", why="full", bill_date=r.cycle_start, period_start=r.cycle_start,
                     period_end=r.cycle_end, quantity=r.quantity, unit_amount=unit, amount=round_exact(r._full)))
    # ...then changed or canceled inside it: credit the unused days on the next invoice.
    cr = c.filter(advance & at_start & (c.unused_units > 0))
    out.append(_line(cr, kind="credit", why="unused", bill_date=cr.cycle_end, period_start=cr.service_end,
                     period_end=cr.cycle_end, quantity=cr.quantity, unit_amount=unit,
                     amount=-divide_round(cr._full * cr.unused_units, cr.cycle_units), units=cr.unused_units))
    # In advance, starting inside the cycle: the remaining time (a new contract: at once; a change: next invoice).
    p = c.filter(advance & ~at_start)
    out.append(_line(p, kind="proration", why="remaining", bill_date=ibis.ifelse(p.is_change, p.cycle_end,
                                                                                   p.service_start),
                     period_start=p.service_start, period_end=p.service_end, quantity=p.quantity, unit_amount=unit,
                     amount=divide_round(p._full * p.service_units, p.cycle_units), units=p.service_units))
    # In arrears: the service days of the cycle, on the next invoice.
    a = c.filter(~advance)
    out.append(_line(a, kind=ibis.ifelse(partial, "proration", "recurring"), why="arrears", bill_date=a.cycle_end,
                     period_start=a.service_start, period_end=a.service_end, quantity=a.quantity, unit_amount=unit,
                     amount=divide_round(a._full * a.service_units, a.cycle_units), units=a.service_units))
    return ibis.union(*out, distinct=False)


def _usage_lines(engine: Engine, cyc: ir.Table, tiers: ir.Table, t: BillingTables) -> ir.Table:
    """Usage over each cycle's service window, above the included quantity, rated; plus minimum true-ups."""
    c = cyc.filter(cyc.p_usage)
    if t.usage_events is not None:
        used = _usage_by_window(engine, c, t.usage_events)
        c = c.left_join(used, (c.subscription_id == used.u_sub) & (c.cycle_start == used.u_cycle))
    else:
        c = c.mutate(used=ibis.literal(0, dt.int64), events=ibis.literal(0, dt.int64))
    if t.entitlements is not None:
        en = t.entitlements
        ej = c.select(i_sub=c.subscription_id, i_customer=c.customer_id, i_sku=c.sku, i_at=c.cycle_start)
        ej = ej.join(en, (ej.i_customer == en.customer_id) & (ej.i_sku == en.sku) & (en.start_date <= ej.i_at)
                     & (ej.i_at < en.end_date.fill_null(_FAR)))
        # A null quantity is an unlimited entitlement: nothing above it is overage.
        incl = ej.group_by("i_sub", "i_at").aggregate(included=ej.quantity.sum().cast(dt.int64),
                                                       unlimited=ej.quantity.isnull().any())
        c = c.left_join(incl, (c.subscription_id == incl.i_sub) & (c.cycle_start == incl.i_at))
    else:
        c = c.mutate(included=ibis.literal(0, dt.int64), unlimited=ibis.literal(False))
    c = c.mutate(used=c.used.fill_null(0), events=c.events.fill_null(0), included=c.included.fill_null(0))
    c = c.mutate(overage=c.unlimited.fill_null(False).ifelse(ibis.literal(0, dt.int64),
                                                             ibis.greatest(c.used - c.included, 0)))
    c = _with_tiers(c.mutate(rate_qty=c.overage), tiers)
    c = c.mutate(_usage_exact=_full_price(c, c.overage))
    c = engine.materialize("usage_rated", c, scratch=True)
    unit = ibis.ifelse(c.p_model.isin(["flat", "per_unit"]), c.unit_amount, ibis.null(dt.int64))
    u = _line(c, kind="usage", why="usage", bill_date=c.cycle_end, period_start=c.service_start,
              period_end=c.service_end, quantity=c.overage, unit_amount=unit, amount=round_exact(c._usage_exact),
              used=c.used, events=c.events, included=c.included)
    # The commitment is prorated like any charge, by the policy's units (days, or seconds): the shortfall is
    # (minimum × service/cycle − usage), computed as (minimum × service − usage × cycle) / cycle, rounded once.
    m = c.filter(c.p_minimum.notnull())
    m = m.mutate(_short=m.p_minimum * exact(m.service_units) - m._usage_exact * exact(m.cycle_units))
    m = m.filter(m._short > 0)
    mline = _line(m, kind="minimum", why="minimum", bill_date=m.cycle_end, period_start=m.service_start,
                  period_end=m.service_end, quantity=ibis.literal(1), unit_amount=ibis.null(dt.int64),
                  amount=divide_round(m._short, m.cycle_units), units=m.service_units)
    return ibis.union(u, mline, distinct=False)


def _usage_by_window(engine: Engine, c: ir.Table, events: ir.Table) -> ir.Table:
    """Usage of each (subscription, cycle) of `c` over its service window: (u_sub, u_cycle, used, events)."""
    ev = events.filter(events.quantity >= 0)
    # Idempotency: one event per id whatever the input repeats (the gate quarantines repeats too). The
    # ids that repeat are found first (a count per id; few or none), so the events whose id is unique,
    # nearly all, go to the windows as they are, and only the repeated ones are folded into one event
    # each: the customer decides only for an event no row of which names a subscription.
    counts = ev.group_by("event_id").aggregate(_rows=ev.count())
    repeated = engine.materialize("usage_repeated_ids", counts.filter(counts._rows > 1).select("event_id"),
                                  scratch=True)
    unique = ev.anti_join(repeated, "event_id")
    unique = unique.select(u_customer=ibis.ifelse(unique.subscription_id.isnull(), unique.customer_id,
                                                  ibis.null(dt.string)),
                           u_sub=unique.subscription_id, u_sku=unique.sku, u_qty=unique.quantity,
                           u_at=unique.occurred_at)
    rep = ev.semi_join(repeated, "event_id")
    folded = rep.group_by("event_id").aggregate(u_customer=rep.customer_id.min(where=rep.subscription_id.isnull()),
                                                u_sub=rep.subscription_id.min(), u_sku=rep.sku.min(),
                                                u_qty=rep.quantity.min(), u_at=rep.occurred_at.min()).drop("event_id")
    ev = ibis.union(unique, folded, distinct=False)
    ts = dt.Timestamp(timezone="UTC")
    # An event names its subscription, or only its customer (then it counts in every window of the
    # customer's subscriptions to the SKU). One equi-join on (id, whether it is a subscription's)
    # against the windows listed under both ids: the events are read once, and no join on an OR
    # (which engines run as a nested loop).
    win = c.select(w_cycle=c.cycle_start, w_sub=c.subscription_id, w_sku=c.sku,
                   w_start=c.service_start.cast(ts), w_end=c.service_end.cast(ts), w_customer=c.customer_id)
    windows = ibis.union(win.mutate(w_ref=win.w_sub, w_by_sub=True), win.mutate(w_ref=win.w_customer, w_by_sub=False),
                         distinct=False)
    ev = ev.mutate(u_ref=ibis.coalesce(ev.u_sub, ev.u_customer), u_by_sub=ev.u_sub.notnull())
    j = ev.join(windows, (ev.u_ref == windows.w_ref) & (ev.u_by_sub == windows.w_by_sub)
                & (ev.u_sku == windows.w_sku) & (ev.u_at >= windows.w_start) & (ev.u_at < windows.w_end))
    return j.group_by(u_sub=j.w_sub, u_cycle=j.w_cycle).aggregate(used=j.u_qty.sum().cast(dt.int64),
                                                                events=j.count())


def _percentage_lines(cyc: ir.Table, base: ir.Table, rounding: str) -> ir.Table:
    """Percentage plans: a percent of the other lines on the same invoice, before discounts."""
    c = cyc.filter(cyc.p_model == "percentage")
    c = c.mutate(bill=ibis.ifelse(c.p_timing == "advance", c.cycle_start, c.cycle_end))
    sums = base.group_by(s_contract=base.contract_id, s_bill=base.bill_date).aggregate(s_base=base.amount.sum())
    j = c.join(sums, (c.contract == sums.s_contract) & (c.bill == sums.s_bill))
    amount = divide_round(exact(j.s_base) * j.p_percent, ibis.literal(100), rounding)
    return _line(j, kind="percentage", why="percentage", bill_date=j.bill, period_start=j.cycle_start,
                 period_end=j.cycle_end, quantity=ibis.literal(1), unit_amount=ibis.null(dt.int64), amount=amount,
                 base=j.s_base)


def _discount_and_tax(lines: ir.Table, cat: dict[str, ir.Table], customers: ir.Table | None,
                      cfg: BillingConfig) -> ir.Table:
    """Contract discount, then the coupon on what remains (never beyond the line; capped per invoice),
    then tax on the net, exclusive or inclusive, rounded per line with the named mode."""
    mode = cfg.rounding
    if cfg.coupons:
        coupons = cat["coupons"]
        j = lines.left_join(coupons, lines.coupon == coupons.c_code)
        j = j.mutate(_c_on=(j.c_code.notnull() & (j.c_expires.isnull() | (j.cycle_start < j.c_expires))
                            & (j.c_periods.isnull() | (j.cycle_no < j.c_periods))))
    else:  # no coupon to look up
        j = lines.mutate(c_code=ibis.null(dt.string), _c_on=ibis.literal(False))
    j = j.mutate(_size=j.amount.abs(),
                 _pct_on=j.discount_percent.notnull() & (j.discount_end.isnull() | (j.cycle_start < j.discount_end)))
    j = j.mutate(_d1=ibis.ifelse(j._pct_on, divide_round(exact(j._size) * j.discount_percent.cast(EXACT),
                                                         ibis.literal(100), mode), 0))
    if cfg.coupons:
        # Lines without a coupon (most) take no window: the invoice-level coupon rules run on the others only.
        j = j.mutate(_rest=j._size - j._d1)
        plain = j.filter(j.c_code.isnull()).mutate(_d2=ibis.literal(0, dt.int64))
        j = ibis.union(plain, _coupon_discounts(j.filter(j.c_code.notnull()), mode), distinct=False)
    else:
        j = j.mutate(_d2=ibis.literal(0, dt.int64))
    j = j.mutate(discount=ibis.ifelse(j.amount < 0, -(j._d1 + j._d2), j._d1 + j._d2).cast(dt.int64),
                 discount_expired=(j.discount_percent.notnull() & ~j._pct_on) | (j.c_code.notnull() & ~j._c_on),
                 x_coupon=ibis.ifelse(j._c_on & (j._d2 > 0), j.c_code, ibis.null(dt.string)))
    j = j.mutate(net=j.amount - j.discount)
    if customers is not None:
        cust = customers.select(t_customer=customers.customer_id, t_jur=customers.jurisdiction)
        j = j.left_join(cust, j.customer_id == cust.t_customer)
    else:
        j = j.mutate(t_jur=ibis.null(dt.string))
    rates = cat["tax_rates"]
    j = j.left_join(rates, (j.t_jur == rates.r_jurisdiction) & (j.p_tax_code == rates.r_tax_code))
    rate = j.r_rate.fill_null(0).cast(EXACT)
    inclusive = j.r_inclusive.fill_null(False)
    denom = ibis.ifelse(inclusive, rate + 100, ibis.literal(100).cast(EXACT))
    j = j.mutate(_rate=rate, _inclusive=inclusive, _denom=denom)
    j = j.mutate(_tax=divide_round(exact(j.net) * j._rate, j._denom, mode))
    return j.select(
        contract_id=j.contract_id, subscription_id=j.subscription_id, customer_id=j.customer_id, currency=j.currency,
        sku=j.sku, kind=j.kind, match_kind=ibis.cases((j.kind == "credit", "credit"), (j.kind == "minimum", "minimum"),
                                                      else_="charge"),
        bill_date=j.bill_date, cycle_start=j.cycle_start, cycle_end=j.cycle_end, period_start=j.period_start,
        period_end=j.period_end,
        quantity=j.quantity, unit_amount=j.unit_amount, amount=j.amount, discount=j.discount,
        tax=j._tax.cast(dt.int64), tax_rate=j._rate, tax_inclusive=j._inclusive,
        discount_expired=j.discount_expired,
        # What the explanation cites.
        why=j.why, p_model=j.p_model, p_package_size=j.p_package_size, p_valid_from=j.p_valid_from, p_exp=j.p_exp,
        x_units=j.x_units, x_cycle_units=j.x_cycle_units, x_by_day=j.x_by_day, x_used=j.x_used, x_events=j.x_events,
        x_included=j.x_included, x_minimum=j.x_minimum, x_percent=j.x_percent, x_base=j.x_base,
        x_discount_percent=ibis.ifelse(j._pct_on, j.discount_percent, ibis.null(j.discount_percent.type())),
        x_coupon=j.x_coupon, x_jurisdiction=j.t_jur,
    )


def _coupon_discounts(j: ir.Table, mode: str) -> ir.Table:
    """`_d2`, each coupon line's coupon discount: `percent_off` of what remains after the contract
    discount, or `amount_off` on the first recurring line of the invoice (each recurring line if
    stackable); never more than what remains of the line. A `cap` bounds the coupon on one invoice:
    when its lines' discounts add up to more, the cap is shared in proportion to them, in whole minor
    units by largest remainder (each line takes the floor of its share, and the units left go one by
    one to the largest remainders, ties by service start, SKU, subscription and kind), so the lines
    sum to the cap exactly. Charges and credits are capped apart (a credit returns a charge's
    discount)."""
    first = ibis.row_number().over(group_by=[j.contract_id, j.bill_date, j.c_code, j.kind],
                                   order_by=[j.period_start, j.sku, j.subscription_id])
    j = j.mutate(
        _c_pct=ibis.ifelse(j.c_percent.notnull(), divide_round(exact(j._rest) * j.c_percent, ibis.literal(100), mode),
                           0),
        _c_fixed=ibis.ifelse(j.c_amount_off.notnull() & (j.kind == "recurring") & (j.c_currency == j.currency)
                             & (j.c_stackable | (first == 0)), round_exact(j.c_amount_off), 0),
        _cap=ibis.ifelse(j.c_cap_major.notnull(), round_exact(j.c_cap_major * _scale(j.p_exp)), _NULL_INT),
    )
    j = j.mutate(_d2_line=ibis.ifelse(j._c_on, ibis.least(j._c_pct + j._c_fixed, j._rest), 0))
    invoice = ibis.window(group_by=[j.contract_id, j.bill_date, j.c_code, j.amount < 0])
    j = j.mutate(_total=j._d2_line.sum().over(invoice))
    j = j.mutate(_capped=j._cap.notnull() & (j._total > j._cap))
    j = j.mutate(_share=exact(j._cap.fill_null(0)) * exact(j._d2_line),
                 _of=exact(ibis.ifelse(j._capped, j._total, 1)))
    j = j.mutate(_floor=divide_floor(j._share, j._of))
    j = j.mutate(_remainder=j._share - exact(j._floor) * j._of)
    rank = ibis.row_number().over(group_by=[j.contract_id, j.bill_date, j.c_code, j.amount < 0],
                                  order_by=[j._remainder.desc(), j.period_start, j.sku, j.subscription_id, j.kind])
    j = j.mutate(_left=j._cap - j._floor.sum().over(invoice), _rank=rank)
    j = j.mutate(_d2=ibis.ifelse(j._capped, j._floor + ibis.ifelse(j._rank < j._left, 1, 0), j._d2_line)
                 .cast(dt.int64))
    return j.drop("_c_pct", "_c_fixed", "_cap", "_d2_line", "_total", "_capped", "_share", "_of", "_floor",
                  "_remainder", "_left", "_rank")


def _explained(lines: ir.Table, priced: ir.Table, tiers: ir.Table) -> ir.Table:
    """EXPECTED_COLUMNS: the lines with their explanation written from the numbers they carry (which
    plan and price, which dates, which fraction, which coupon, which tax). A projection only, with a
    join to the words of the tiered quantities of `priced` (the lines before discounts), unique per
    quantity, which engines drop when the explanation is not read."""
    tiered = priced.filter(priced.p_model.isin(TIERED))
    rated = tier_words(tiered.mutate(p_sku=tiered.sku, rate_qty=tiered.quantity), tiers)
    j = lines.left_join(rated, (lines.sku == rated.r_sku) & (lines.quantity == rated.r_qty)
                        & lines.p_valid_from.identical_to(rated.r_valid_from))
    unit = money_text(j.unit_amount, j.currency, j.p_exp)
    qty = j.quantity.cast(dt.string)
    # Each part once (engines inline every reference to an expression): the plan and price in words,
    # between what the line's kind says before and after it.
    words = j.sku + " " + j.p_model + ": " + ibis.cases(
        (j.p_model == "flat", unit + " flat"),
        (j.p_model == "per_unit", qty + " × " + unit),
        (j.p_model == "package", package_count(j.quantity, j.p_package_size.fill_null(1)).cast(dt.string)
         + " package(s) of " + j.p_package_size.cast(dt.string) + " for " + qty + " units"),
        else_=qty + " units (" + j.tier_detail.fill_null("no tier reached") + ")",
    )
    fraction = (j.x_units.cast(dt.string) + "/" + j.x_cycle_units.cast(dt.string)
                + ibis.ifelse(j.x_by_day, " days", " seconds"))
    cycle = _dates(j.cycle_start, j.cycle_end)
    before = j.why.cases(
        ("unused", "unused time on "), ("remaining", "remaining time on "),
        ("usage", j.x_used.cast(dt.string) + " units from " + j.x_events.cast(dt.string) + " events "
         + _dates(j.period_start, j.period_end) + ", " + j.x_included.cast(dt.string) + " included, " + qty
         + " billed; "),
        ("minimum", "minimum commitment " + money_text(round_exact(j.x_minimum), j.currency, j.p_exp) + " × "),
        ("percentage", j.sku + " " + _pct_text(j.x_percent) + " of the invoice's other lines ("
         + money_text(j.x_base, j.currency, j.p_exp) + ")"),
        else_="",
    )
    between = ibis.cases((j.why == "full", ", full cycle " + cycle), (j.why.isin(["unused", "remaining"]), ": "),
                         (j.why == "arrears", " in arrears: "), else_="")
    span = ibis.ifelse(j.why.isin(["unused", "remaining", "arrears"]),
                       fraction + " " + _dates(j.period_start, j.period_end) + " of cycle " + cycle, "")
    tail = ibis.ifelse(j.why == "minimum", fraction + ", usage rated below it", "")
    text = before + ibis.ifelse(j.why.isin(["minimum", "percentage"]), "", words) + between + span + tail
    discount = (ibis.ifelse(j.x_discount_percent.notnull(),
                            "; contract discount " + _pct_text(j.x_discount_percent), "")
                + ibis.ifelse(j.x_coupon.notnull(), "; coupon " + j.x_coupon, ""))
    tax = ibis.ifelse(j.tax_rate > 0, "; tax " + _pct_text(j.tax_rate) + " " + j.x_jurisdiction.fill_null("")
                      + ibis.ifelse(j.tax_inclusive, " included", ""), "")
    return j.select(*[c for c in EXPECTED_COLUMNS if c != "explanation"], explanation=text + discount + tax)


def _scale(exponent: ir.IntegerValue) -> ir.DecimalValue:
    return ibis.cases((exponent == 0, 1), (exponent == 3, 1000), (exponent == 4, 10000), else_=100).cast(EXACT)


def _pct_text(value: ir.NumericValue) -> ir.StringValue:
    return value.cast(dt.Decimal(12, 4)).cast(dt.string).re_replace(r"\.?0+$", "") + "%"

"""Billing periods and day-based proration, as Ibis expressions (one source of truth for what a
subscription line should cost in a period).

Policy: periods are aligned to calendar months (a quarter is 3, a year 12 months counted from the
subscription's start month); service in a period is [max(period start, start), min(period end,
end)) with end dates exclusive; a line costs unit × quantity × service days / period days, rounded
half-up to the minor unit.
"""

from __future__ import annotations

from decimal import Decimal

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir

INTERVAL_MONTHS = {"month": 1, "quarter": 3, "year": 12}
_FAR = ibis.literal("9999-12-31").cast(dt.date)


def interval_months(interval: ir.StringValue) -> ir.IntegerValue:
    return interval.substitute(INTERVAL_MONTHS, else_=1)


def month_index(d: ir.DateValue) -> ir.IntegerValue:
    return d.year() * 12 + d.month() - 1


def add_months(d: ir.DateValue, months: ir.IntegerValue) -> ir.DateValue:
    """First day of the month `months` after the month of `d`."""
    first = d.truncate("M")
    return first + months.as_interval("M")


def expected_periods(subs: ir.Table, months: ir.Table) -> ir.Table:
    """One row per (subscription, period) whose period starts in `months` (column `month`, a date
    on the 1st) and overlaps the subscription's service. Adds period_start/period_end (the full
    period), service_start/service_end, service_days and period_days."""
    k = interval_months(subs.interval)
    grid = subs.mutate(_k=k).cross_join(months)
    offset = month_index(grid.month) - month_index(grid.start_date)
    grid = grid.filter((offset >= 0) & ((offset % grid._k) == 0))
    period_start = grid.month
    period_end = add_months(grid.month, grid._k)
    service_start = ibis.greatest(period_start, grid.start_date)
    service_end = ibis.least(period_end, grid.end_date.fill_null(_FAR))
    grid = grid.mutate(
        period_start=period_start,
        period_end=period_end,
        service_start=service_start,
        service_end=service_end,
    )
    grid = grid.mutate(
        service_days=(grid.service_end.delta(grid.service_start, unit="day")).cast(dt.int64),
        period_days=(grid.period_end.delta(grid.period_start, unit="day")).cast(dt.int64),
    )
    return grid.filter(grid.service_days > 0).drop("_k")


def prorated_amount(unit_amount: ir.IntegerValue, quantity: ir.IntegerValue, service_days: ir.IntegerValue,
                    period_days: ir.IntegerValue) -> ir.IntegerValue:
    """unit × quantity × service_days / period_days, half-up to the minor unit, in exact decimals."""
    gross = (unit_amount * quantity).cast(dt.Decimal(38, 6))
    exact = gross * service_days.cast(dt.Decimal(38, 6)) / period_days.cast(dt.Decimal(38, 6))
    return (exact + ibis.literal(Decimal("0.5"), dt.Decimal(38, 6))).floor().cast(dt.int64)


def discount_amount(gross: ir.IntegerValue, percent: ir.NumericValue, applies: ir.BooleanValue) -> ir.IntegerValue:
    """percent of gross, half-up, when `applies`; else 0. Never more than the gross."""
    raw = gross.cast(dt.Decimal(38, 6)) * percent.cast(dt.Decimal(38, 6)) / 100
    disc = (raw + ibis.literal(Decimal("0.5"), dt.Decimal(38, 6))).floor().cast(dt.int64)
    disc = ibis.least(disc, gross)
    return ibis.ifelse(applies & percent.notnull(), disc, 0).cast(dt.int64)

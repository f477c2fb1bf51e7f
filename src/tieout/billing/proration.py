"""Billing cycles and proration: the reference (Python, exact: `cycle_containing`, `prorate_fraction`,
`prorate_exact`) and the same rules on the engine (`billing_cycles`, Ibis), so golden cases and
properties test the rules the engine runs.

Policy (docs/billing.md): cycles start on the anchor day (clamped to short months) every interval,
phased on the cycle that holds the service start; service in a cycle is [max(cycle start, start),
min(cycle end, end)) with end dates exclusive; a partial cycle costs the full price × service units /
cycle units, whole days or seconds (`proration: day | second`), rounded once with the named mode.
"""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime
from decimal import Decimal
from fractions import Fraction

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir

_FAR = ibis.literal("9999-12-31").cast(dt.date)


def month_index(d: ir.DateValue) -> ir.IntegerValue:
    return d.year() * 12 + d.month() - 1


def add_months(d: ir.DateValue, months: ir.IntegerValue) -> ir.DateValue:
    """First day of the month `months` after the month of `d`."""
    first = d.truncate("M")
    return first + months.as_interval("M")


# --- billing cycles with an anchor day, and proration by day or by second ----------------------
# The reference (Python, exact) first, then the same rules on the engine.

SECONDS_PER_DAY = 86_400


def days_in_month(year: int, month: int) -> int:
    return calendar.monthrange(year, month)[1]


def anchor_date(year: int, month: int, anchor_day: int) -> date:
    """The anchor day in a month, clamped to its last day: anchor 31 in February is the 28th (29th)."""
    return date(year, month, min(anchor_day, days_in_month(year, month)))


def _shift(year: int, month: int, months: int) -> tuple[int, int]:
    index = year * 12 + month - 1 + months
    return index // 12, index % 12 + 1


def cycle_containing(day: date, anchor_day: int, months: int = 1, phase: date | None = None) -> tuple[date, date]:
    """[start, end) of the billing cycle containing `day`: cycles start on the anchor day every
    `months` months, counted from the month of `phase` (default: the cycle `day` starts in)."""
    y, m = day.year, day.month
    if anchor_date(y, m, anchor_day) > day:
        y, m = _shift(y, m, -1)
    if phase is not None:
        back = (y * 12 + m - (phase.year * 12 + phase.month)) % months
        y, m = _shift(y, m, -back)
    ny, nm = _shift(y, m, months)
    return anchor_date(y, m, anchor_day), anchor_date(ny, nm, anchor_day)


def prorate_fraction(service: tuple[datetime, datetime], period: tuple[datetime, datetime],
                     by: str = "day") -> Fraction:
    """Share of `period` covered by `service` (both [start, end), datetimes; a date is its midnight,
    see `midnight`): counted in whole days (`day`: complete 24-hour days) or in seconds (`second`)."""
    def length(a: datetime, b: datetime) -> int:
        delta = b - a
        return delta.days if by == "day" else delta.days * SECONDS_PER_DAY + delta.seconds

    lo, hi = max(service[0], period[0]), min(service[1], period[1])
    if hi <= lo:
        return Fraction(0)
    return Fraction(length(lo, hi), length(*period))


def midnight(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


def prorate_exact(amount_minor: Decimal | int, fraction: Fraction) -> Decimal:
    """amount × fraction, exact (rounded later, once, with the named mode)."""
    return Decimal(amount_minor) * fraction.numerator / fraction.denominator


def days_in_month_of(d: ir.DateValue) -> ir.IntegerValue:
    first = d.truncate("M")
    return (first + ibis.interval(months=1)).delta(first, unit="day").cast(dt.int64)


def anchor_in_month(month_first: ir.DateValue, anchor_day: ir.IntegerValue) -> ir.DateValue:
    """The anchor day in the month starting at `month_first`, clamped to the month's last day."""
    day = ibis.least(anchor_day, days_in_month_of(month_first))
    return month_first + (day - 1).as_interval("D")


def billing_cycles(subs: ir.Table, months: ir.Table, by: str = "day") -> ir.Table:
    """One row per (subscription row, billing cycle) whose cycle starts in a month of `months`
    (column `month`, a 1st) and overlaps the service [`_svc_start`, `_svc_end`).

    `subs` carries `_anchor` (day 1-31), `_months` (interval) and `_svc_start`/`_svc_end`, and may carry
    `start_at`/`end_at` (UTC timestamps of a start or change within its day). Cycles are phased on the
    cycle that contains the service start, so a quarterly plan started in May bills in May, August,
    November. Adds cycle_start, cycle_end, cycle_no (0 = first), service_start, service_end, service_days,
    cycle_days, and the proration units (days, or seconds when `by` is `second`): lead_units (cycle start
    to service start), service_units, unused_units (service end to cycle end) and cycle_units."""
    s0 = subs._svc_start
    first_month = s0.truncate("M")
    phase = month_index(first_month) - ibis.ifelse(anchor_in_month(first_month, subs._anchor) > s0, 1, 0)
    grid = subs.mutate(_phase=phase).cross_join(months)
    offset = month_index(grid.month) - grid._phase
    grid = grid.filter((offset >= 0) & ((offset % grid._months) == 0))
    cycle_start = anchor_in_month(grid.month, grid._anchor)
    cycle_end = anchor_in_month(add_months(grid.month, grid._months), grid._anchor)
    # Dates, said explicitly: Spark types month arithmetic on a date as a timestamp.
    grid = grid.mutate(cycle_start=cycle_start.cast(dt.date), cycle_end=cycle_end.cast(dt.date),
                       cycle_no=((month_index(grid.month) - grid._phase) // grid._months).cast(dt.int64))
    grid = grid.mutate(service_start=ibis.greatest(grid.cycle_start, grid._svc_start),
                       service_end=ibis.least(grid.cycle_end, grid._svc_end.fill_null(_FAR)))
    grid = grid.mutate(
        service_days=grid.service_end.delta(grid.service_start, unit="day").cast(dt.int64),
        cycle_days=grid.cycle_end.delta(grid.cycle_start, unit="day").cast(dt.int64),
    )
    grid = grid.mutate(**_units(grid, by))
    return grid.filter(grid.service_units > 0).drop("_phase", "month")


def _units(g: ir.Table, by: str) -> dict[str, ir.IntegerValue]:
    """The proration units of each cycle row: whole days, or seconds from the change timestamps (a
    date-only row counts from midnight UTC, so its fraction in seconds equals its fraction in days)."""
    if by not in PRORATION_UNITS:
        raise ValueError(f"unknown proration '{by}' ({' or '.join(PRORATION_UNITS)})")
    if by == "day":
        return {"lead_units": g.service_start.delta(g.cycle_start, unit="day").cast(dt.int64),
                "service_units": g.service_days,
                "unused_units": g.cycle_end.delta(g.service_end, unit="day").cast(dt.int64),
                "cycle_units": g.cycle_days}
    cs, ce = _utc(g.cycle_start), _utc(g.cycle_end)
    svc_start = _utc(g._svc_start)
    svc_end = _utc(g._svc_end.fill_null(_FAR))
    if "start_at" in g.columns:  # a start within its day, never before the service (a trial) starts
        svc_start = ibis.greatest(svc_start, g.start_at.fill_null(svc_start))
    if "end_at" in g.columns:
        svc_end = g.end_at.fill_null(svc_end)
    start, end = ibis.greatest(cs, svc_start), ibis.least(ce, svc_end)
    return {"lead_units": start.delta(cs, unit="second").cast(dt.int64),
            "service_units": ibis.greatest(end.delta(start, unit="second"), 0).cast(dt.int64),
            "unused_units": ce.delta(end, unit="second").cast(dt.int64),
            "cycle_units": ce.delta(cs, unit="second").cast(dt.int64)}


def _utc(d: ir.DateValue) -> ir.TimestampValue:
    return d.cast(dt.Timestamp(timezone="UTC"))


PRORATION_UNITS = {"day": "whole days, end date exclusive", "second": "seconds, from the change timestamps"}

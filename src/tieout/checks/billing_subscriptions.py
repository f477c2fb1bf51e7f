"""Playbook check 2, billing vs subscriptions: every contracted period is invoiced, at the
contracted price and quantity, prorated by day, with the contracted discount, and nothing is
billed after cancellation or twice through overlapping subscriptions.
"""

from __future__ import annotations

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
from pydantic import Field

from tieout.billing.proration import discount_amount, expected_periods, prorated_amount
from tieout.checks.registry import CheckContext, CheckParams, findings_table, month_of, ref, refs, register_check

_FAR = ibis.literal("9999-12-31").cast(dt.date)


class BillingSubscriptionsParams(CheckParams):
    """Parameters of `billing_subscriptions`."""

    amount_tolerance: int = Field(0, ge=0, description="Allowed difference per line, minor units.")
    statuses: list[str] = Field(["active", "canceled", "trialing"], description="Subscription statuses "
                                "whose periods must be invoiced (a canceled one until its end date).")


def _billing_months(ctx: CheckContext, lines: ir.Table) -> tuple[ir.Table, ir.Table]:
    """(months seen on invoice lines, those up to the as-of month): periods are invoiced for the
    months the billing data covers; a missing invoice is only reported for months already due."""
    seen = lines.select(month=lines.period_start.truncate("M")).distinct()
    due_until = ibis.literal(ctx.as_of).cast(dt.date).truncate("M")
    return seen, seen.filter(seen.month <= due_until)


@register_check(
    "billing_subscriptions",
    params=BillingSubscriptionsParams,
    categories=(
        "missing_invoice", "price_mismatch", "quantity_mismatch", "proration_error", "amount_mismatch",
        "duplicate_discount", "expired_discount_applied", "overlapping_subscriptions",
        "billed_after_cancellation", "currency_mismatch",
    ),
    tables=("subscriptions", "invoices", "invoice_lines"),
    explanations={
        "missing_invoice": "Subscription {subject} has service in this period worth {expected} but no "
        "invoice line bills it.",
        "price_mismatch": "Line {subject} bills unit price {actual}; the contract says {expected}.",
        "quantity_mismatch": "Line {subject} bills quantity {actual}; the contract says {expected}.",
        "proration_error": "Line {subject} bills {actual} for a partial period; {detail} prorate to {expected}.",
        "amount_mismatch": "Line {subject}: {detail}; expected {expected}, billed {actual}.",
        "duplicate_discount": "Line {subject} carries a discount of {actual}; the contract grants {expected}.",
        "expired_discount_applied": "Line {subject} applies a discount of {actual} although the discount "
        "ended on {detail}.",
        "overlapping_subscriptions": "Subscriptions {subject} bill the same product to the same customer "
        "over the same days ({detail}).",
        "billed_after_cancellation": "Line {subject} bills {actual} for a period starting after the "
        "subscription ended on {detail}.",
        "currency_mismatch": "Line {subject} is billed in {actual}; the contract is in {expected}.",
    },
)
def billing_subscriptions(ctx: CheckContext, p: BillingSubscriptionsParams) -> ir.Table:
    """Billing vs subscriptions: invoice lines against the contracted price, quantity, proration
    and discount for each period; missing invoices; billing after cancellation; overlaps."""
    subs = ctx.table("subscriptions")
    subs = subs.filter(subs.status.isin(p.statuses))
    inv = ctx.table("invoices")
    inv = inv.filter(inv.status != "void")
    lines = ctx.table("invoice_lines")
    heads = inv.select(l_inv=inv.invoice_id, sub_id=inv.subscription_id, inv_currency=inv.currency,
                       inv_customer=inv.customer_id)
    lines = lines.join(heads, lines.invoice_id == heads.l_inv)
    lines = lines.mutate(line_key=lines.invoice_id + "/" + lines.line_id, line_month=lines.period_start.truncate("M"))
    # read three times below (billing months, lines vs contract, billed after cancellation): join once
    lines = ctx.engine.materialize("billed_lines", lines)
    seen, due = _billing_months(ctx, lines)
    periods = expected_periods(subs, seen.select(month=seen.month))
    periods = periods.mutate(
        exp_gross=prorated_amount(periods.unit_amount, periods.quantity, periods.service_days, periods.period_days),
        disc_applies=periods.discount_end.isnull() | (periods.period_start < periods.discount_end.fill_null(_FAR)),
    )
    periods = periods.mutate(exp_discount=discount_amount(periods.exp_gross, periods.discount_percent,
                                                          periods.disc_applies))
    periods = ctx.engine.materialize("expected_periods", periods)
    out: list[ir.Table] = []

    j = lines.join(periods, (lines.sub_id == periods.subscription_id) & (lines.sku == periods.sku)
                   & (lines.line_month == periods.period_start))
    j = ctx.engine.materialize("line_vs_contract", j)
    tol = p.amount_tolerance
    ev = refs(ref("invoice_lines", j.line_key), ref("invoices", j.invoice_id),
              ref("subscriptions", j.subscription_id))
    base = {"subject": j.line_key, "customer_id": j.customer_id, "period": month_of(j.period_start),
            "evidence": ev}
    cur_bad = j.inv_currency != j.currency_right
    price_bad = ~cur_bad & (j.unit_amount != j.unit_amount_right)
    qty_bad = ~cur_bad & ~price_bad & (j.quantity != j.quantity_right)
    partial = j.service_days < j.period_days
    amount_off = (j.amount - j.exp_gross).abs() > tol
    prorate_bad = ~cur_bad & ~price_bad & ~qty_bad & amount_off & partial
    full_bad = ~cur_bad & ~price_bad & ~qty_bad & amount_off & ~partial

    t = j.filter(cur_bad)
    out.append(findings_table(t, category="currency_mismatch", currency=t.currency_right, amount_at_risk=t.amount,
                              expected=t.currency_right, actual=t.inv_currency, value_kind="text",
                              **_pick(base, t)))
    t = j.filter(price_bad)
    out.append(findings_table(t, category="price_mismatch", currency=t.currency_right,
                              amount_at_risk=t.amount - t.exp_gross, expected=t.unit_amount_right.cast(dt.string),
                              actual=t.unit_amount.cast(dt.string), value_kind="money", **_pick(base, t)))
    t = j.filter(qty_bad)
    out.append(findings_table(t, category="quantity_mismatch", currency=t.currency_right,
                              amount_at_risk=t.amount - t.exp_gross, expected=t.quantity_right.cast(dt.string),
                              actual=t.quantity.cast(dt.string), value_kind="quantity", **_pick(base, t)))
    t = j.filter(prorate_bad)
    out.append(findings_table(
        t, category="proration_error", currency=t.currency_right, amount_at_risk=t.amount - t.exp_gross,
        expected=t.exp_gross.cast(dt.string), actual=t.amount.cast(dt.string), value_kind="money",
        detail=t.service_days.cast(dt.string) + " of " + t.period_days.cast(dt.string) + " days from "
        + t.service_start.strftime("%Y-%m-%d"), **_pick(base, t)))
    t = j.filter(full_bad)
    out.append(findings_table(
        t, category="amount_mismatch", currency=t.currency_right, amount_at_risk=t.amount - t.exp_gross,
        expected=t.exp_gross.cast(dt.string), actual=t.amount.cast(dt.string), value_kind="money",
        detail="the line amount is not quantity × unit price", **_pick(base, t)))

    disc = j.discount.fill_null(0)
    t = j.filter(~cur_bad & (disc > 0) & (j.exp_discount == 0) & j.discount_end.notnull()
                 & (j.period_start >= j.discount_end))
    out.append(findings_table(
        t, category="expired_discount_applied", currency=t.currency_right, amount_at_risk=t.discount,
        expected=ibis.literal("0"), actual=t.discount.cast(dt.string), value_kind="money",
        detail=t.discount_end.strftime("%Y-%m-%d"), **_pick(base, t)))
    t = j.filter(~cur_bad & (j.exp_discount > 0) & (disc - j.exp_discount > tol))
    out.append(findings_table(
        t, category="duplicate_discount", currency=t.currency_right, amount_at_risk=t.discount - t.exp_discount,
        expected=t.exp_discount.cast(dt.string), actual=t.discount.cast(dt.string), value_kind="money",
        **_pick(base, t)))
    t = j.filter(~cur_bad & (j.exp_discount > 0) & (j.exp_discount - disc > tol))
    out.append(findings_table(
        t, category="amount_mismatch", currency=t.currency_right, amount_at_risk=t.exp_discount - disc,
        expected=t.exp_discount.cast(dt.string), actual=disc.cast(dt.string), value_kind="money",
        detail="the contracted discount is missing or short", **_pick(base, t)))

    # missing_invoice: a due period with service and no line for it.
    billed = j.select(b_sub=j.subscription_id, b_start=j.line_month).distinct()
    due_periods = periods.join(due, periods.period_start == due.month)
    miss = due_periods.anti_join(billed, (due_periods.subscription_id == billed.b_sub)
                                 & (due_periods.period_start == billed.b_start))
    miss = miss.mutate(exp_net=miss.exp_gross - miss.exp_discount)
    out.append(findings_table(
        miss, category="missing_invoice", subject=miss.subscription_id + "@" + miss.period_start.strftime("%Y-%m-%d"),
        customer_id=miss.customer_id, currency=miss.currency, amount_at_risk=miss.exp_net,
        expected=miss.exp_net.cast(dt.string), actual=ibis.literal("0"), value_kind="money",
        period=month_of(miss.period_start), evidence=ref("subscriptions", miss.subscription_id)))

    # billed_after_cancellation: lines for periods starting on/after the subscription's end.
    ended = ctx.table("subscriptions")
    ended = ended.filter(ended.end_date.notnull())
    late = lines.join(ended, (lines.sub_id == ended.subscription_id) & (lines.sku == ended.sku)
                      & (lines.period_start >= ended.end_date))
    late = late.mutate(net=late.amount - late.discount.fill_null(0))
    out.append(findings_table(
        late, category="billed_after_cancellation", subject=late.line_key, customer_id=late.inv_customer,
        currency=late.inv_currency, amount_at_risk=late.net, expected=ibis.literal("0"),
        actual=late.net.cast(dt.string), value_kind="money", period=month_of(late.period_start),
        evidence=refs(ref("invoice_lines", late.line_key), ref("invoices", late.invoice_id),
                      ref("subscriptions", late.subscription_id)),
        detail=late.end_date.strftime("%Y-%m-%d")))

    # overlapping_subscriptions: same customer and product, service days in common.
    a = subs.select(a_id=subs.subscription_id, a_cust=subs.customer_id, a_sku=subs.sku, a_start=subs.start_date,
                    a_end=subs.end_date.fill_null(_FAR))
    b = subs.select(b_id=subs.subscription_id, b_cust=subs.customer_id, b_sku=subs.sku, b_start=subs.start_date,
                    b_end=subs.end_date.fill_null(_FAR), b_unit=subs.unit_amount, b_qty=subs.quantity,
                    b_cur=subs.currency)
    ov = a.join(b, (a.a_cust == b.b_cust) & (a.a_sku == b.b_sku) & (a.a_id < b.b_id)
                & (a.a_start < b.b_end) & (b.b_start < a.a_end))
    overlap_start = ibis.greatest(ov.a_start, ov.b_start)
    out.append(findings_table(
        ov, category="overlapping_subscriptions", subject=ov.a_id + "|" + ov.b_id, customer_id=ov.a_cust,
        currency=ov.b_cur, amount_at_risk=ov.b_unit * ov.b_qty, expected=None,
        actual=(ov.b_unit * ov.b_qty).cast(dt.string), value_kind="money", period=month_of(overlap_start),
        evidence=refs(ref("subscriptions", ov.a_id), ref("subscriptions", ov.b_id)),
        detail=ibis.literal("from ") + overlap_start.strftime("%Y-%m-%d")))
    return ibis.union(*out, distinct=False)


def _pick(base: dict[str, ir.Value], t: ir.Table) -> dict[str, ir.Value]:
    """The shared columns of `base`, for a filtered `t` (Ibis dereferences parent columns)."""
    del t
    return base

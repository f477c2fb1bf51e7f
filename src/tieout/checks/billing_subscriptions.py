"""Playbook check 2, billing vs subscriptions: every contracted period is invoiced, at the
contracted price and quantity, prorated by day, with the contracted discount, and nothing is
billed after cancellation or twice through overlapping subscriptions.

What a period should cost comes from the expected-invoice engine (`tieout.billing.expected_lines`),
the one source of truth `tieout validate` uses too: with the workspace's catalog (`billing:`), or,
without one, a catalog read off the contracts themselves (see `contract_catalog`). This room prices
nothing itself.
"""

from __future__ import annotations

from datetime import date, timedelta

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
from pydantic import Field

from tieout.billing.catalog import BillingConfig, interval_months
from tieout.billing.expected import BillingTables, expected_lines, months_between
from tieout.checks.registry import CheckContext, CheckParams, findings_table, month_of, ref, refs, register_check
from tieout.money import is_known_currency

_FAR = ibis.literal("9999-12-31").cast(dt.date)


class BillingSubscriptionsParams(CheckParams):
    """Parameters of `billing_subscriptions`."""

    amount_tolerance: int = Field(0, ge=0, description="Allowed difference per line, minor units.")
    statuses: list[str] = Field(["active", "canceled", "trialing"], description="Subscription statuses "
                                "whose periods must be invoiced (a canceled one until its end date).")


def _billing_months(ctx: CheckContext, lines: ir.Table) -> tuple[list[date], ir.Table]:
    """(months seen on invoice lines, those up to the as-of month as a table): periods are invoiced
    for the months the billing data covers; a missing invoice is only reported for months already due."""
    seen = lines.select(month=lines.period_start.truncate("M")).distinct().filter(ibis._.month.notnull())
    months = sorted(r["month"] for r in seen.to_pyarrow().to_pylist())
    due_until = ibis.literal(ctx.as_of).cast(dt.date).truncate("M")
    return months, seen.filter(seen.month <= due_until)


_SEP = "\x1f"  # joins sku, currency and interval into the key of a product read off the contracts


def contract_catalog(subs: ir.Table) -> BillingConfig:
    """A catalog read off the contracts, for SKUs the workspace's `billing:` does not price: one product per (sku,
    currency, interval) of `subs`, priced per unit at the contract's own unit amount (the engine takes
    a contract's negotiated price for per_unit plans). Billed in arrears, so each cycle's service is
    one line (the days of service × the contract / the days of the cycle, half-up), the amount an
    invoice line for that period must carry; an interval the catalog cannot read counts as a month,
    and a row in an unknown currency prices nothing."""
    rows = subs.select("sku", "currency", "interval").distinct().to_pyarrow().to_pylist()
    products = []
    for r in rows:
        if r["sku"] is None or r["currency"] is None or not is_known_currency(r["currency"]):
            continue
        products.append({"sku": _contract_sku(r["sku"], r["currency"], r["interval"]), "currency": r["currency"],
                         "model": "per_unit", "amount": 0, "interval": _interval(r["interval"]),
                         "timing": "arrears"})
    return BillingConfig.model_validate({"products": products})


def _interval(text: str | None) -> str:
    try:
        interval_months(text or "")
    except ValueError:
        return "month"
    return text or "month"


def _contract_sku(sku: str, currency: str, interval: str | None) -> str:
    return _SEP.join((sku, currency, interval or ""))


def contracted_periods(ctx: CheckContext, subs: ir.Table, months: list[date]) -> ir.Table:
    """What each subscription's billing cycle starting in `months` should be invoiced, from the
    expected-invoice engine: one row per (subscription, cycle) with the contract's unit amount and
    quantity, the service window and the expected amount and discount (the net of the cycle's charge,
    proration and unused-time credit lines)."""
    catalog = ctx.billing.products if ctx.billing is not None else []
    known = sorted({p.sku for p in catalog})
    # A contract whose SKU the catalog does not price is its own price list; without an anchor, its
    # periods are calendar months.
    own = ~subs.sku.isin(known) if known else ibis.literal(True)
    derived = contract_catalog(subs.filter(own))
    base = ctx.billing if ctx.billing is not None else derived
    cfg = base.model_copy(update={"products": [*catalog, *derived.products]})
    priced = subs.mutate(
        sku=ibis.ifelse(own, subs.sku + _SEP + subs.currency + _SEP + subs.interval.fill_null(""), subs.sku),
        billing_anchor=ibis.ifelse(own, subs.billing_anchor.fill_null(1), subs.billing_anchor))
    longest = max([p.months for p in cfg.products] or [1])
    last = months_between(months[-1], months[-1] + timedelta(days=31 * (longest + 1)))[-1]
    days = [months[0] + timedelta(days=k) for k in range((last - months[0]).days + 1)]
    lines = expected_lines(ctx.engine, cfg, BillingTables(priced), days)
    lines = lines.filter(lines.kind.isin(["recurring", "proration", "credit"])
                         & lines.cycle_start.truncate("M").isin(months))
    credit = lines.kind == "credit"
    per = lines.group_by(subscription_id=lines.subscription_id, cycle_start=lines.cycle_start).aggregate(
        cycle_end=lines.cycle_end.max(), exp_gross=lines.amount.sum(), exp_discount=lines.discount.sum(),
        c_unit=lines.unit_amount.max(), c_qty=lines.quantity.max(), c_currency=lines.currency.max(),
        service_start=lines.period_start.min(where=~credit), charged_to=lines.period_end.max(where=~credit),
        credited_from=lines.period_start.min(where=credit))
    contract = subs.select(s_id=subs.subscription_id, sku=subs.sku, customer_id=subs.customer_id,
                           discount_end=subs.discount_end, contract=subs.contract_id.fill_null(subs.subscription_id))
    j = per.join(contract, per.subscription_id == contract.s_id)
    service_end = ibis.least(j.charged_to, j.credited_from.fill_null(j.charged_to))
    return j.select(
        subscription_id=j.subscription_id, contract=j.contract, customer_id=j.customer_id, sku=j.sku,
        currency=j.c_currency,
        unit_amount=j.c_unit, quantity=j.c_qty, period_start=j.cycle_start.truncate("M"), discount_end=j.discount_end,
        service_start=j.service_start, service_days=service_end.delta(j.service_start, unit="day").cast(dt.int64),
        period_days=j.cycle_end.delta(j.cycle_start, unit="day").cast(dt.int64),
        exp_gross=j.exp_gross, exp_discount=j.exp_discount)


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
    named = subs.select(n_id=subs.subscription_id).distinct()
    subs = subs.filter(subs.status.isin(p.statuses))
    inv = ctx.table("invoices")
    inv = inv.filter(inv.status != "void")
    lines = ctx.table("invoice_lines")
    heads = inv.select(l_inv=inv.invoice_id, sub_id=inv.subscription_id, inv_currency=inv.currency,
                       inv_customer=inv.customer_id, inv_draft=(inv.status == "draft").fill_null(False))
    lines = lines.join(heads, lines.invoice_id == heads.l_inv)
    lines = lines.mutate(line_key=lines.invoice_id + "/" + lines.line_id, line_month=lines.period_start.truncate("M"))
    # read several times below (billing months, lines vs contract, billed after cancellation): join once
    lines = ctx.engine.materialize("billed_lines", lines)
    # With a catalog, `pre_invoice` validates draft invoices (and reports the contracts due one without a
    # draft): this check compares issued invoices only, so one defect is one finding.
    drafts_elsewhere = ctx.billing is not None and bool(ctx.billing.products)
    issued = lines.filter(~lines.inv_draft) if drafts_elsewhere else lines
    months, due = _billing_months(ctx, issued)
    if drafts_elsewhere:
        draft_months = lines.filter(lines.inv_draft).select(d_month=lines.line_month).distinct()
        due = due.anti_join(draft_months, due.month == draft_months.d_month)
    if not months:
        periods = subs.select(subscription_id=subs.subscription_id, contract=subs.subscription_id,
                              customer_id=subs.customer_id, sku=subs.sku,
                              currency=subs.currency, unit_amount=subs.unit_amount, quantity=subs.quantity,
                              period_start=subs.start_date, discount_end=subs.discount_end,
                              service_start=subs.start_date, service_days=ibis.literal(0, dt.int64),
                              period_days=ibis.literal(0, dt.int64), exp_gross=ibis.literal(0, dt.int64),
                              exp_discount=ibis.literal(0, dt.int64)).limit(0)
    else:
        periods = contracted_periods(ctx, subs, months)
    periods = ctx.engine.materialize("expected_periods", periods)
    out: list[ir.Table] = []

    linked = invoice_names(periods, named)
    j = issued.join(linked, (issued.sub_id == linked.link) & (issued.sku == linked.sku)
                    & (issued.line_month == linked.period_start))
    # A line naming a contract of several rows with its SKU (two items of one product) is the row it
    # agrees with most: the same quantity, then the same unit price.
    j = j.mutate(_rank=ibis.row_number().over(group_by=j.line_key, order_by=[
        (j.quantity == j.quantity_right).fill_null(False).desc(),
        (j.unit_amount == j.unit_amount_right).fill_null(False).desc(), j.subscription_id]))
    j = j.filter(j._rank == 0).drop("_rank")
    j = ctx.engine.materialize("line_vs_contract", j)
    tol = p.amount_tolerance
    ev = refs(ref("invoice_lines", j.line_key), ref("invoices", j.invoice_id),
              ref("subscriptions", j.subscription_id))
    base = {"subject": j.line_key, "customer_id": j.customer_id, "period": month_of(j.period_start),
            "evidence": ev}
    # A null compares as "no difference" (a tiered plan has no unit price), never as unknown, so the
    # amount is still checked below.
    cur_bad = (j.inv_currency != j.currency_right).fill_null(False)
    price_bad = ~cur_bad & (j.unit_amount != j.unit_amount_right).fill_null(False)
    qty_bad = ~cur_bad & ~price_bad & (j.quantity != j.quantity_right).fill_null(False)
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
    billed = j.select(b_sub=j.subscription_id, b_start=j.line_month)
    if drafts_elsewhere:  # a period a draft bills is not missing: pre_invoice validates the draft
        d = lines.filter(lines.inv_draft)
        d = d.join(linked, (d.sub_id == linked.link) & (d.sku == linked.sku) & (d.line_month == linked.period_start))
        billed = billed.union(d.select(b_sub=d.subscription_id, b_start=d.line_month))
    billed = billed.distinct()
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
    ended = invoice_names(ended.mutate(contract=ended.contract_id.fill_null(ended.subscription_id)), named)
    late = issued.join(ended, (issued.sub_id == ended.link) & (issued.sku == ended.sku)
                       & (issued.period_start >= ended.end_date))
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
    if drafts_elsewhere:  # a contract with a draft: pre_invoice holds the draft for the overlap
        drafted = lines.filter(lines.inv_draft).select(d_sub=lines.sub_id).distinct()
        rows = ctx.table("subscriptions")
        rows = rows.select(r_id=rows.subscription_id, r_contract=rows.contract_id.fill_null(rows.subscription_id))
        rows = rows.join(drafted, rows.r_contract == drafted.d_sub).select("r_id")
        ov = ov.filter(~ov.a_id.isin(rows.r_id) & ~ov.b_id.isin(rows.r_id))
    overlap_start = ibis.greatest(ov.a_start, ov.b_start)
    out.append(findings_table(
        ov, category="overlapping_subscriptions", subject=ov.a_id + "|" + ov.b_id, customer_id=ov.a_cust,
        currency=ov.b_cur, amount_at_risk=ov.b_unit * ov.b_qty, expected=None,
        actual=(ov.b_unit * ov.b_qty).cast(dt.string), value_kind="money", period=month_of(overlap_start),
        evidence=refs(ref("subscriptions", ov.a_id), ref("subscriptions", ov.b_id)),
        detail=ibis.literal("from ") + overlap_start.strftime("%Y-%m-%d")))
    return ibis.union(*out, distinct=False)


def invoice_names(rows: ir.Table, named: ir.Table) -> ir.Table:
    """`rows` (with `subscription_id` and `contract`) with `link`, the id an invoice names a row by: its
    own id, and, for the rows of a contract no row is named after (a Stripe or Chargebee subscription's
    items `sub/si`, a Zuora subscription's charges `NUMBER/CHARGE`), the contract's id too. A contract
    whose first segment carries its name (an upgrade's rows) is not widened: its invoices name segments."""
    own = rows.mutate(link=rows.subscription_id)
    parts = rows.filter(rows.contract != rows.subscription_id)
    parts = parts.anti_join(named, parts.contract == named.n_id)
    return own.union(parts.mutate(link=parts.contract), distinct=False)


def _pick(base: dict[str, ir.Value], t: ir.Table) -> dict[str, ir.Value]:
    """The shared columns of `base`, for a filtered `t` (Ibis dereferences parent columns)."""
    del t
    return base

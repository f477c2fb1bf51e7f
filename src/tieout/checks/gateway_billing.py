"""Playbook check 1, gateway vs billing: every settled charge is a recorded payment, every
recorded card payment was settled, refunds and lost disputes reach billing, failed payments are
retried, nobody pays twice. Written once in Ibis.
"""

from __future__ import annotations

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
from pydantic import Field

from tieout.checks.registry import (
    CheckContext,
    CheckParams,
    findings_table,
    month_of,
    ref,
    ref_list,
    refs,
    register_check,
)
from tieout.matching import Side, match_one_to_one


class GatewayBillingParams(CheckParams):
    """Parameters of `gateway_billing`."""

    amount_tolerance: int = Field(0, ge=0, description="Composite match: allowed amount difference, "
                                  "minor units.")
    date_window_days: int = Field(3, ge=0, description="Composite match: allowed days between gateway "
                                  "and billing dates.")
    retry_window_days: int = Field(7, ge=0, description="A failed payment older than this with nothing "
                                   "succeeding after it is 'not retried'.")
    gateway_methods: list[str] = Field(["card"], description="Billing payment methods that go through "
                                       "the gateway (others, e.g. wire, are not expected there).")


def _customer_map(ctx: CheckContext) -> ir.Table | None:
    if not ctx.has("customers"):
        return None
    c = ctx.table("customers")
    return c.filter(c.gateway_customer_id.notnull()).select(
        gw_customer=c.gateway_customer_id, billing_customer=c.customer_id
    ).distinct(on="gw_customer", keep="first")


def _with_billing_customer(ctx: CheckContext, gt: ir.Table) -> ir.Table:
    cmap = _customer_map(ctx)
    if cmap is None:
        return gt.mutate(billing_customer=gt.customer_id)
    j = gt.left_join(cmap, gt.customer_id == cmap.gw_customer)
    return j.mutate(billing_customer=ibis.coalesce(j.billing_customer, j.customer_id)).drop("gw_customer")


_GATEWAY_COLUMNS = ("txn_id", "type", "status", "charge_id", "customer_id", "billing_customer", "invoice_ref",
                    "gross", "currency", "created_at")


def _gateway(ctx: CheckContext) -> ir.Table:
    """Gateway transactions with the billing customer, persisted once: every pairing and most
    categories read it (recomputed, the customer join would run once per reader)."""
    def build() -> ir.Table:
        gt = _with_billing_customer(ctx, ctx.table("gateway_transactions"))
        # only the columns this check reads: a narrower table is cheaper to write and to spill; a scratch
        # table, not compressed (compressing it cost about 3x the query)
        return ctx.engine.materialize("gateway_billing", gt.select(*_GATEWAY_COLUMNS), scratch=True)

    return ctx.memo("gateway_billing.gateway", build)


def _pairs(ctx: CheckContext, p: GatewayBillingParams, gw_type: str, billing_types: list[str],
           methods: list[str] | None = None) -> ir.Table:
    """Succeeded gateway movements of `gw_type` paired with billing records of `billing_types`
    (exact gateway ref first, then composite customer + currency + amount + date)."""
    gt = _gateway(ctx)
    moves = gt.filter((gt.type == gw_type) & (gt.status == "succeeded"))
    pay = ctx.table("payments")
    wanted = pay.type.isin(billing_types)
    if methods is not None:
        wanted = wanted & pay.method.isin(methods)
    recorded = pay.filter(wanted)
    return match_one_to_one(
        ctx.engine,
        Side(moves, "txn_id", "gross", "created_at", ("billing_customer", "currency")),
        Side(recorded, "payment_id", "amount", "received_at", ("customer_id", "currency")),
        exact_keys=[("txn_id", "gateway_ref")],
        amount_tolerance=p.amount_tolerance,
        window_days=p.date_window_days,
    )


def _not_reflected(moves: ir.Table, category: str) -> ir.Table:
    """Findings for gateway reversals (refunds, lost disputes) billing has no record of."""
    return findings_table(
        moves, category=category, subject=moves.txn_id, customer_id=moves.billing_customer,
        currency=moves.currency, amount_at_risk=moves.gross, expected=None,
        actual=moves.gross.abs().cast(dt.string), value_kind="money", period=month_of(moves.created_at),
        evidence=refs(ref("gateway_transactions", moves.txn_id), ref("gateway_transactions", moves.charge_id)),
    )


def charge_payment_pairs(ctx: CheckContext, p: GatewayBillingParams) -> ir.Table:
    """Settled gateway charges paired with billing payments made through the gateway."""
    return _pairs(ctx, p, "charge", ["payment"], p.gateway_methods)


@register_check(
    "gateway_billing",
    params=GatewayBillingParams,
    categories=(
        "payment_unmatched", "paid_without_payment", "amount_mismatch", "currency_mismatch",
        "refund_not_reflected", "chargeback_not_reflected", "failed_payment_not_retried",
        "duplicate_payment",
    ),
    tables=("gateway_transactions", "payments", "invoices"),
    explanations={
        "payment_unmatched": "Gateway charge {subject} of {actual} settled but no payment in billing records it.",
        "paid_without_payment": "{detail}",
        "amount_mismatch": "Gateway charge and billing payment {subject} disagree: billing records "
        "{expected}, the gateway settled {actual}.",
        "currency_mismatch": "{subject}: billing records the payment in {expected} but the gateway "
        "settled it in {actual}.",
        "refund_not_reflected": "Gateway refund {subject} of {actual} has no refund in billing; billing "
        "still counts the payment.",
        "chargeback_not_reflected": "Dispute {subject} withdrew {actual} and was not reversed, but billing "
        "records no chargeback.",
        "failed_payment_not_retried": "Invoice {subject} is unpaid ({actual} open): its last charge "
        "failed on {detail} and nothing succeeded since.",
        "duplicate_payment": "Invoice {subject} for {expected} was charged {actual} at the gateway, net "
        "of refunds: the customer paid twice.",
    },
)
def gateway_billing(ctx: CheckContext, p: GatewayBillingParams) -> ir.Table:
    """Gateway vs billing: settled charges, refunds and disputes against billing payments and
    invoices; failed payments not retried; duplicate payments."""
    gt = _gateway(ctx)
    pay = ctx.table("payments")
    inv = ctx.table("invoices")
    pairs = ctx.memo("gateway_billing.charge_pairs", lambda: charge_payment_pairs(ctx, p))
    charges = gt.filter((gt.type == "charge") & (gt.status == "succeeded"))
    out: list[ir.Table] = []

    # Settled per invoice, net of refunds and lost disputes: the basis of duplicate_payment.
    pay_inv = pay.select(pid=pay.payment_id, pinv=pay.invoice_id)
    ch = charges.select("txn_id", "billing_customer", "currency", "gross", "created_at", "invoice_ref")
    paired = pairs.select("left_id", "right_id")
    ch = ch.left_join(paired, ch.txn_id == paired.left_id).drop("left_id")
    # One join per stored step: a query with three hash joins has to hold all three tables at
    # once, and ran out of memory under a small `memory_limit` (1M rows in 200 MB, 10M in 2 GB).
    ch = ctx.engine.materialize("charges_paired", ch, scratch=True)
    ch = ch.left_join(pay_inv, ch.right_id == pay_inv.pid)
    ch = ch.mutate(inv_key=ibis.coalesce(ch.invoice_ref, ch.pinv))
    ch = ctx.engine.materialize("charges_invoiced", ch, scratch=True)
    reversals = gt.filter(gt.type.isin(["refund", "refund_reversal", "dispute", "dispute_reversal"])
                          & (gt.status == "succeeded"))
    rev_by_charge = reversals.group_by(rc=reversals.charge_id).aggregate(reversed=reversals.gross.sum())
    ch = ch.left_join(rev_by_charge, ch.txn_id == rev_by_charge.rc)
    ch = ch.mutate(kept=ch.gross + ch.reversed.fill_null(0))
    ch = ctx.engine.materialize("settled_charges", ch.select(  # read three times below
        "txn_id", "billing_customer", "currency", "gross", "created_at", "right_id", "inv_key", "kept"), scratch=True)
    # Sums and counts first (an aggregate the engine can spill); the charge ids are collected only for
    # the few invoices charged twice: a list per invoice over every charge does not spill (DuckDB ran
    # out of memory there at 10M rows under a 2 GB limit).
    keyed = ch.filter(ch.inv_key.notnull())
    per_inv = keyed.group_by("inv_key").aggregate(settled=ibis._.kept.sum(), n_charges=ibis._.count())
    per_inv = per_inv.filter(per_inv.n_charges > 1)
    inv_live = inv.filter(inv.status != "void")
    dup = per_inv.join(inv_live, per_inv.inv_key == inv_live.invoice_id)
    dup = ctx.engine.materialize("dup_payment", dup.filter(dup.settled > dup.total), scratch=True)
    twice = keyed.semi_join(dup, keyed.inv_key == dup.invoice_id)
    dup_refs = twice.group_by(ref_inv=twice.inv_key).aggregate(
        charge_refs=twice.txn_id.collect().sort().join(";"),  # sorted: group_concat order is the engine's
    )
    dup = dup.join(dup_refs, dup.invoice_id == dup_refs.ref_inv)
    out.append(findings_table(
        dup, category="duplicate_payment", subject=dup.invoice_id, customer_id=dup.customer_id,
        currency=dup.currency, amount_at_risk=dup.settled - dup.total, expected=dup.total.cast(dt.string),
        actual=dup.settled.cast(dt.string), value_kind="money", period=month_of(dup.issued_at),
        evidence=refs(ref("invoices", dup.invoice_id),
                      ref_list("gateway_transactions", dup.charge_refs)),
    ))

    # payment_unmatched: a settled charge billing never recorded (unless it is the extra charge of a
    # duplicate payment, which is reported once, as duplicate_payment).
    unmatched = ch.filter(ch.right_id.isnull())
    unmatched = unmatched.anti_join(dup, unmatched.inv_key == dup.invoice_id)
    out.append(findings_table(
        unmatched, category="payment_unmatched", subject=unmatched.txn_id,
        customer_id=unmatched.billing_customer, currency=unmatched.currency, amount_at_risk=unmatched.gross,
        expected=None, actual=unmatched.gross.cast(dt.string), value_kind="money",
        period=month_of(unmatched.created_at), evidence=ref("gateway_transactions", unmatched.txn_id),
    ))

    # Exact pairs that disagree on amount or currency.
    matched = pairs.join(charges, pairs.left_id == charges.txn_id).join(pay, pairs.right_id == pay.payment_id)
    cur = matched.filter(matched.currency != matched.currency_right)
    out.append(findings_table(
        cur, category="currency_mismatch", subject=cur.payment_id, customer_id=cur.customer_id_right,
        currency=cur.currency_right, amount_at_risk=cur.amount, expected=cur.currency_right,
        actual=cur.currency, value_kind="text", period=month_of(cur.received_at),
        evidence=refs(ref("payments", cur.payment_id), ref("gateway_transactions", cur.txn_id)),
    ))
    amt = matched.filter((matched.currency == matched.currency_right) & (matched.gross != matched.amount)
                         & (matched.amount_diff > p.amount_tolerance))
    out.append(findings_table(
        amt, category="amount_mismatch", subject=amt.payment_id, customer_id=amt.customer_id_right,
        currency=amt.currency, amount_at_risk=amt.gross - amt.amount, expected=amt.amount.cast(dt.string),
        actual=amt.gross.cast(dt.string), value_kind="money", period=month_of(amt.received_at),
        evidence=refs(ref("payments", amt.payment_id), ref("gateway_transactions", amt.txn_id)),
    ))

    # paid_without_payment (a): a card payment recorded in billing that the gateway never settled.
    card = pay.filter((pay.type == "payment") & pay.method.isin(p.gateway_methods))
    ghost = card.anti_join(pairs, card.payment_id == pairs.right_id)
    out.append(findings_table(
        ghost, category="paid_without_payment", subject=ghost.payment_id, customer_id=ghost.customer_id,
        currency=ghost.currency, amount_at_risk=ghost.amount, expected=ghost.amount.cast(dt.string),
        actual=ibis.literal("0"), value_kind="money", period=month_of(ghost.received_at),
        evidence=refs(ref("payments", ghost.payment_id), ref("invoices", ghost.invoice_id)),
        detail=ibis.literal("Billing records card payment ") + ghost.payment_id
        + " but the gateway settled no such charge.",
    ))

    # paid_without_payment (b): an invoice marked paid with less recorded against it than its total.
    received = pay.filter(pay.type == "payment")
    per_invoice = received.filter(received.invoice_id.notnull()).group_by(rinv=ibis._.invoice_id).aggregate(
        recorded=ibis._.amount.sum()
    )
    paid = inv.filter(inv.status == "paid")
    paid = paid.left_join(per_invoice, paid.invoice_id == per_invoice.rinv)
    paid = paid.mutate(recorded=paid.recorded.fill_null(0))
    short = paid.filter(paid.recorded < paid.total)
    out.append(findings_table(
        short, category="paid_without_payment", subject=short.invoice_id, customer_id=short.customer_id,
        currency=short.currency, amount_at_risk=short.total - short.recorded,
        expected=short.total.cast(dt.string), actual=short.recorded.cast(dt.string), value_kind="money",
        period=month_of(short.issued_at), evidence=ref("invoices", short.invoice_id),
        detail=ibis.literal("Invoice ") + short.invoice_id + " is marked paid but payments recorded against "
        "it fall short of its total.",
    ))

    # Refunds and lost disputes that billing does not reflect.
    ref_pairs = ctx.memo("gateway_billing.refund_pairs", lambda: _pairs(ctx, p, "refund", ["refund"]))
    refunds = gt.filter((gt.type == "refund") & (gt.status == "succeeded"))
    # A refund the gateway later reversed (Stripe refund_failure) gave the customer nothing back.
    failed_refunds = gt.filter(gt.type == "refund_reversal").select(failed_refund=gt.txn_id).distinct()
    refunds = refunds.anti_join(failed_refunds, refunds.txn_id == failed_refunds.failed_refund)
    nr = refunds.anti_join(ref_pairs, refunds.txn_id == ref_pairs.left_id)
    out.append(_not_reflected(nr, "refund_not_reflected"))
    won = gt.filter(gt.type == "dispute_reversal").select(won_charge=gt.charge_id).distinct()
    disputes = gt.filter((gt.type == "dispute") & (gt.status == "succeeded"))
    lost = disputes.anti_join(won, disputes.charge_id == won.won_charge)
    cb_pairs = ctx.memo(
        "gateway_billing.dispute_pairs",
        lambda: _pairs(ctx, p, "dispute", ["chargeback", "refund"]),
    )
    nc = lost.anti_join(cb_pairs, lost.txn_id == cb_pairs.left_id)
    out.append(_not_reflected(nc, "chargeback_not_reflected"))

    # failed_payment_not_retried: last failure per invoice, nothing succeeded after it, still unpaid.
    failed = gt.filter((gt.status == "failed") & (gt.type == "charge") & gt.invoice_ref.notnull())
    last_fail = failed.group_by(finv=failed.invoice_ref).aggregate(
        failed_at=failed.created_at.max(), failed_refs=failed.txn_id.collect().sort().join(";")
    )
    ok = charges.filter(charges.invoice_ref.notnull())
    later_ok = last_fail.join(ok, (last_fail.finv == ok.invoice_ref) & (ok.created_at > last_fail.failed_at))
    later_ok = later_ok.select(ok_inv=later_ok.finv).distinct()
    stuck = last_fail.anti_join(later_ok, last_fail.finv == later_ok.ok_inv)
    cutoff = ibis.literal(ctx.as_of).cast(dt.Timestamp(timezone="UTC")) - ibis.interval(days=p.retry_window_days)
    stuck = stuck.filter(stuck.failed_at <= cutoff)
    stuck = stuck.join(inv, stuck.finv == inv.invoice_id)
    stuck = stuck.filter(stuck.status.isin(["open", "uncollectible"]))
    open_amount = stuck.total - stuck.amount_paid.fill_null(0)
    stuck = stuck.mutate(open_amount=open_amount).filter(open_amount > 0)
    out.append(findings_table(
        stuck, category="failed_payment_not_retried", subject=stuck.invoice_id, customer_id=stuck.customer_id,
        currency=stuck.currency, amount_at_risk=stuck.open_amount, expected=None,
        actual=stuck.open_amount.cast(dt.string), value_kind="money", period=month_of(stuck.issued_at),
        evidence=refs(ref("invoices", stuck.invoice_id),
                      ref_list("gateway_transactions", stuck.failed_refs)),
        detail=stuck.failed_at.strftime("%Y-%m-%d"),
    ))
    return ibis.union(*out, distinct=False)

"""Playbook check 3, general ledger vs cash: every gateway payout is deposited in the ledger's cash
account, gateway fees are booked, manual journals on watched accounts point at a known record,
and each payout equals the transactions it settles (one-to-many).
"""

from __future__ import annotations

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
from pydantic import Field

from tieout.checks.registry import CheckContext, CheckParams, findings_table, month_of, ref, refs, register_check
from tieout.matching import Side, match_one_to_one, roll_up


class GlCashParams(CheckParams):
    """Parameters of `gl_cash`."""

    cash_accounts: list[str] = Field(["Checking"], description="Ledger accounts where payouts land.")
    fee_accounts: list[str] = Field(["Merchant Fees"], description="Ledger accounts for gateway fees.")
    watched_accounts: list[str] = Field(
        ["Accounts Receivable (A/R)", "Sales", "Undeposited Funds"],
        description="Besides cash accounts, accounts where a manual journal must reference a known record.",
    )
    deposit_window_days: int = Field(3, ge=0, description="Days between payout arrival and ledger deposit.")
    amount_tolerance: int = Field(0, ge=0, description="Allowed difference, minor units.")
    fee_tolerance: int = Field(0, ge=0, description="Allowed monthly difference in fees, minor units.")
    payout_settling_days: int = Field(
        7, ge=0, description="Payouts arriving this soon after the first gateway transaction may settle "
        "transactions from before the data starts; their components are not compared.",
    )


@register_check(
    "gl_cash",
    params=GlCashParams,
    categories=("payout_unmatched", "fee_not_booked", "manual_journal_unmatched", "amount_mismatch"),
    tables=("payouts", "gl_entries", "gateway_transactions"),
    explanations={
        "payout_unmatched": "Payout {subject} of {expected} arrived but no deposit in the ledger's cash "
        "account matches it.",
        "fee_not_booked": "Gateway fees of {subject} total {expected}; the ledger's fee accounts show {actual}.",
        "manual_journal_unmatched": "Manual journal {detail} references no invoice, payment or payout "
        "known to billing or the gateway.",
        "amount_mismatch": "Payout {subject} is {expected} but the transactions it settles net to {actual}.",
    },
)
def gl_cash(ctx: CheckContext, p: GlCashParams) -> ir.Table:
    """GL vs cash: payouts against ledger deposits, gateway fees against fee accounts, manual
    journals without a known reference, payouts against the transactions they settle."""
    payouts = ctx.table("payouts")
    gl = ctx.table("gl_entries")
    gt = ctx.table("gateway_transactions")
    out: list[ir.Table] = []

    deposits = gl.filter(gl.account.isin(p.cash_accounts) & (gl.debit.fill_null(0) > 0))
    deposits = deposits.mutate(amount=deposits.debit)
    live = payouts.filter(payouts.status.isnull() | (payouts.status == "paid"))
    pairs = ctx.memo("gl_cash.payout_pairs", lambda: match_one_to_one(
        ctx.engine,
        Side(live, "payout_id", "amount", "arrival_date", ("currency",)),
        Side(deposits, "entry_id", "amount", "posted_at", ("currency",)),
        exact_keys=[],
        amount_tolerance=p.amount_tolerance,
        window_days=p.deposit_window_days,
    ))
    due = ibis.literal(ctx.as_of).cast(dt.date) - ibis.interval(days=p.deposit_window_days)
    lost = live.anti_join(pairs, live.payout_id == pairs.left_id).filter(live.arrival_date <= due)
    out.append(findings_table(
        lost, category="payout_unmatched", subject=lost.payout_id, customer_id=ibis.null(dt.string),
        currency=lost.currency, amount_at_risk=lost.amount, expected=lost.amount.cast(dt.string),
        actual=ibis.literal("0"), value_kind="money", period=month_of(lost.arrival_date),
        evidence=ref("payouts", lost.payout_id)))

    # One-to-many: a payout equals the net of the transactions it settles.
    parts = roll_up(gt, "payout_id", "net")
    first_txn = gt.created_at.min().as_scalar().cast(dt.date)
    settled = live.join(parts, live.payout_id == parts.payout_id)
    settled = settled.filter((settled.child_total != settled.amount)
                             & (settled.arrival_date >= first_txn + ibis.interval(days=p.payout_settling_days)))
    out.append(findings_table(
        settled, category="amount_mismatch", subject=settled.payout_id, customer_id=ibis.null(dt.string),
        currency=settled.currency, amount_at_risk=settled.amount - settled.child_total,
        expected=settled.amount.cast(dt.string), actual=settled.child_total.cast(dt.string),
        value_kind="money", period=month_of(settled.arrival_date), evidence=ref("payouts", settled.payout_id)))

    # fee_not_booked: per month and currency, gateway fees vs fee accounts (complete months only).
    due_month = ibis.literal(ctx.as_of).cast(dt.date).truncate("M")
    fees = gt.filter(gt.fee.notnull() & (gt.fee != 0))
    gw_fees = fees.group_by(month=fees.created_at.cast(dt.date).truncate("M"), cur=fees.currency).aggregate(
        gateway_fees=fees.fee.sum())
    fee_lines = gl.filter(gl.account.isin(p.fee_accounts))
    gl_fees = fee_lines.group_by(gmonth=fee_lines.posted_at.truncate("M"), gcur=fee_lines.currency).aggregate(
        booked=(fee_lines.debit.fill_null(0) - fee_lines.credit.fill_null(0)).sum())
    f = gw_fees.left_join(gl_fees, (gw_fees.month == gl_fees.gmonth) & (gw_fees.cur == gl_fees.gcur))
    f = f.mutate(booked=f.booked.fill_null(0))
    f = f.filter((f.month < due_month) | (ibis.literal(ctx.as_of).cast(dt.date) == (f.month + ibis.interval(months=1)
                                                                                     - ibis.interval(days=1))))
    f = f.filter(f.gateway_fees - f.booked > p.fee_tolerance)
    out.append(findings_table(
        f, category="fee_not_booked", subject=f.month.strftime("%Y-%m") + "/" + f.cur, customer_id=ibis.null(dt.string),
        currency=f.cur, amount_at_risk=f.gateway_fees - f.booked, expected=f.gateway_fees.cast(dt.string),
        actual=f.booked.cast(dt.string), value_kind="money", period=f.month.strftime("%Y-%m"),
        evidence=ibis.literal("")))

    # manual_journal_unmatched: manual lines on watched accounts whose reference/memo names nothing known.
    watched = [*p.cash_accounts, *p.watched_accounts]
    manual = gl.filter((gl.journal_type == "manual") & gl.account.isin(watched))
    tokens = manual.select(entry_id=manual.entry_id,
                           token=(manual.reference.fill_null("") + " " + manual.memo.fill_null(""))
                           .re_split(r"[\s,;:()\[\]#/]+").unnest())
    hit = _known_hits(ctx, tokens)
    orphan = manual.anti_join(hit, manual.entry_id == hit.hit_id)
    amount = orphan.debit.fill_null(0) + orphan.credit.fill_null(0)
    label = (orphan.posted_at.strftime("%Y-%m-%d") + " " + orphan.account + " "
             + ibis.ifelse(orphan.debit.fill_null(0) > 0, "Dr", "Cr") + " " + amount.cast(dt.string)
             + " '" + orphan.memo.fill_null("") + "'")
    out.append(findings_table(
        orphan, category="manual_journal_unmatched",
        subject=orphan.posted_at.strftime("%Y-%m-%d") + "|" + orphan.account + "|" + orphan.reference.fill_null("")
        + "|" + amount.cast(dt.string) + "|" + orphan.memo.fill_null(""),
        customer_id=ibis.null(dt.string), currency=orphan.currency, amount_at_risk=amount, expected=None,
        actual=amount.cast(dt.string), value_kind="money", period=month_of(orphan.posted_at),
        evidence=refs(ref("gl_entries", orphan.entry_id)), detail=label))
    return ibis.union(*out, distinct=False)


def _known_hits(ctx: CheckContext, tokens: ir.Table) -> ir.Table:
    """`hit_id`: the entries of `tokens` with a token that is an invoice, payment, payout, gateway
    transaction or subscription id. Each id table is probed with the few tokens (a semi-join per
    table), never collected into one distinct set of every known id (millions of rows)."""
    parts = []
    for table, col in (("invoices", "invoice_id"), ("payments", "payment_id"), ("payouts", "payout_id"),
                       ("gateway_transactions", "txn_id"), ("subscriptions", "subscription_id")):
        if ctx.has(table):
            t = ctx.table(table)
            known = t.select(known_id=t[col].cast(dt.string))
            found = tokens.semi_join(known, tokens.token == known.known_id)
            parts.append(found.select(hit_id=found.entry_id))
    return ibis.union(*parts, distinct=True)

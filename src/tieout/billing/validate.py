"""Pre-invoice validation: the billing engine's draft invoices against the expected invoices, line by
line, on the engine. `compare_drafts` gives the findings as a table (the `pre_invoice` check returns
it to a run, which stores and routes them); `validate_drafts` adds a verdict per draft (ok / hold)
with money at risk and reasons. Comparisons are joins; Python only walks the findings (a small result).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir

from tieout.billing.catalog import BillingConfig
from tieout.billing.expected import BillingTables, catalog_tables, expected_lines, priced_segments
from tieout.billing.pricing import EXACT, divide_round, exact
from tieout.config import SeverityConfig
from tieout.engines.base import Engine
from tieout.errors import InputError
from tieout.findings import Finding, build_findings

CHECK_NAME = "pre_invoice"
SEVERITY_ORDER = {"low": 0, "medium": 1, "high": 2}
_FAR = ibis.literal("9999-12-31").cast(dt.date)
_KEY = ("invoice_id", "sku", "period_start", "match_kind")
VALIDATE_CATEGORIES = (
    "price_mismatch", "quantity_mismatch", "proration_error", "duplicate_discount", "expired_discount_applied",
    "overlapping_subscriptions", "billed_after_cancellation", "unbilled_usage", "overbilled_usage",
    "entitlement_exceeded_unbilled", "missing_invoice", "tax_mismatch", "currency_mismatch", "sku_not_in_catalog",
    "discount_not_approved", "contract_incomplete",
)
# The sentence is written on the engine (it cites the expected line's own explanation), in `detail`.
EXPLANATIONS = dict.fromkeys(VALIDATE_CATEGORIES, "{detail}")


@dataclass
class DraftVerdict:
    invoice_id: str
    customer_id: str
    currency: str
    total: int
    verdict: str  # ok | hold
    money_at_risk: int
    findings: list[Finding] = field(default_factory=list)


@dataclass
class ValidationResult:
    drafts: list[DraftVerdict]
    missing: list[Finding]  # contracts due on an invoice date with no draft (subject 'contract@date')
    expected_lines: int
    hold_on: str

    @property
    def held(self) -> list[DraftVerdict]:
        return [d for d in self.drafts if d.verdict == "hold"]

    @property
    def passes(self) -> bool:
        return not self.held and not self.missing


def _f(t: ir.Table, *, category: str | ir.StringValue, invoice_id: ir.Value, subject: ir.Value,
       customer_id: ir.Value, currency: ir.Value, amount_at_risk: ir.Value, expected: ir.Value, actual: ir.Value,
       explanation: ir.Value, period: ir.Value, value_kind: str, evidence: ir.Value) -> ir.Table:
    """One finding row per row of `t`: the run's finding columns, plus the draft it holds."""
    # Imported here: `tieout.checks` registers the pre_invoice check, which imports this module.
    from tieout.checks.registry import FINDING_COLUMNS

    values: dict[str, ir.Value] = {
        "category": ibis.literal(category) if isinstance(category, str) else category, "subject": subject,
        "customer_id": customer_id, "currency": currency, "amount_at_risk": amount_at_risk.abs(),
        "expected": expected, "actual": actual, "value_kind": ibis.literal(value_kind), "period": period,
        "evidence": evidence, "detail": explanation,
    }
    return t.select(**{k: v.cast(FINDING_COLUMNS[k]) for k, v in values.items()},
                    invoice_id=invoice_id.cast(dt.string))


def _evidence(*, lines: ir.Value | None = None, invoice: ir.Value | None = None,
              subscription: ir.Value | None = None) -> ir.StringValue:
    """Evidence references: the draft's lines (a ';'-joined list of 'invoice/line'), the draft, the contract row."""
    from tieout.checks.registry import ref, ref_list, refs

    parts = [ref_list("invoice_lines", lines) if lines is not None else None,
             ref("invoices", invoice) if invoice is not None else None,
             ref("subscriptions", subscription) if subscription is not None else None]
    return refs(*[p for p in parts if p is not None])


def _s(v: ir.Value) -> ir.StringValue:
    return v.cast(dt.string).fill_null("none")


def draft_lines(invoices: ir.Table, lines: ir.Table) -> tuple[ir.Table, ir.Table]:
    """(draft headers, draft lines aggregated per match key)."""
    heads = invoices.filter(invoices.status == "draft")
    h = heads.select(h_inv=heads.invoice_id, h_contract=heads.subscription_id, h_bill=heads.period_start,
                     h_currency=heads.currency, h_customer=heads.customer_id)
    j = lines.join(h, lines.invoice_id == h.h_inv)
    kind = j.kind.fill_null("").lower()
    j = j.mutate(match_kind=ibis.cases((kind == "minimum", "minimum"), ((kind == "credit") | (j.amount < 0), "credit"),
                                       else_="charge"))
    agg = j.group_by(["invoice_id", "sku", "period_start", "match_kind"]).aggregate(
        d_contract=j.h_contract.min(), d_bill=j.h_bill.min(), d_customer=j.h_customer.min(),
        d_currency=j.currency.fill_null(j.h_currency).min(), d_qty=j.quantity.sum(), d_unit=j.unit_amount.max(),
        d_amount=j.amount.sum(), d_discount=j.discount.fill_null(0).sum(), d_tax=j.tax.fill_null(0).sum(),
        d_lines=j.invoice_id.count(), d_ref=(j.invoice_id + "/" + j.line_id).min(),
        d_refs=(j.invoice_id + "/" + j.line_id).group_concat(";"),
        d_period_end=j.period_end.max(), d_kind=j.kind.fill_null("").lower().max(),
    )
    return heads, agg


@dataclass
class DraftComparison:
    """The drafts against their expected invoices, as engine tables."""

    findings: ir.Table  # the run's finding columns plus invoice_id (null: a contract due an invoice has no draft)
    heads: ir.Table  # the drafts: x_inv, x_contract, x_bill, x_currency, x_customer, x_tax, x_total
    expected: ir.Table | None  # the expected lines of the drafts' dates (None: there are no drafts)


def validate_drafts(engine: Engine, cfg: BillingConfig, severity: SeverityConfig, tables: dict[str, ir.Table]
                    ) -> ValidationResult:
    """Compare every draft invoice with its expected invoice; verdict per draft. The findings are the
    `pre_invoice` check's, built as a run builds them: the same money at risk, so the same severity."""
    cmp = compare_drafts(engine, cfg, tables)
    if cmp.expected is None:
        return ValidationResult([], [], 0, cfg.hold_on)
    n_expected = int(cmp.expected.count().to_pyarrow().as_py())
    rows = cmp.findings.to_pyarrow().to_pylist()
    found = build_findings(CHECK_NAME, rows, EXPLANATIONS, tables, severity)  # severity as in a run
    heads = cmp.heads.select("x_inv", "x_customer", "x_currency", "x_total").to_pyarrow().to_pylist()
    return _verdicts([(r["invoice_id"], f) for r, f in zip(rows, found, strict=True)], heads, cfg.hold_on,
                     n_expected)


def compare_drafts(engine: Engine, cfg: BillingConfig, tables: dict[str, ir.Table]) -> DraftComparison:
    """Every draft invoice against its expected invoice, line by line, and the contracts with no draft:
    one finding row per discrepancy. Bad input (a negative quantity, a draft without a date or contract)
    raises `InputError` naming the file, line and column."""
    for need in ("subscriptions", "invoices", "invoice_lines"):
        if need not in tables:
            raise InputError("tieout.yaml", f"pre-invoice validation needs a source for the '{need}' table")
    reject_negative_quantities(tables)
    inv = tables["invoices"]
    heads, dl = draft_lines(inv, tables["invoice_lines"])
    undated = heads.filter(heads.period_start.isnull() | heads.subscription_id.isnull())
    first = [undated.source_ref.length(), undated.source_ref]  # file order: 'f.csv:9' before 'f.csv:10'
    bad = undated.select("invoice_id", "source_ref").order_by(first).limit(1).to_pyarrow().to_pylist()
    if bad:
        raise InputError(bad[0]["source_ref"].rsplit(":", 1)[0], f"draft invoice {bad[0]['invoice_id']} has no "
                         "period start or subscription: the expected invoice cannot be computed",
                         int(bad[0]["source_ref"].rsplit(":", 1)[1]), "period_start")
    dates: list[date] = [r["period_start"] for r in heads.select("period_start").distinct().to_pyarrow().to_pylist()]
    t = BillingTables(tables["subscriptions"], tables.get("customers"), tables.get("usage_events"),
                      tables.get("entitlements"))
    hd = heads.select(x_inv=heads.invoice_id, x_contract=heads.subscription_id, x_bill=heads.period_start,
                      x_currency=heads.currency, x_customer=heads.customer_id, x_tax=heads.tax.fill_null(0),
                      x_total=heads.total)
    hd = engine.materialize("draft_heads", hd)
    if not dates:
        none = _f(hd, category="missing_invoice", invoice_id=hd.x_inv, subject=hd.x_inv, customer_id=hd.x_customer,
                  currency=hd.x_currency, amount_at_risk=ibis.literal(0), expected=ibis.literal(""),
                  actual=ibis.literal(""), explanation=ibis.literal(""), period=ibis.literal(""), value_kind="text",
                  evidence=ibis.literal(""))
        return DraftComparison(none.limit(0), hd, None)
    exp = engine.materialize("expected_lines", expected_lines(engine, cfg, t, dates))
    out: list[ir.Table] = []

    # Expected lines of contracts that have a draft on that date, keyed like the draft lines.
    ek = exp.join(hd, (exp.contract_id == hd.x_contract) & (exp.bill_date == hd.x_bill))
    ea = ek.group_by(invoice_id=ek.x_inv, sku=ek.sku, period_start=ek.period_start, match_kind=ek.match_kind).aggregate(
        e_customer=ek.customer_id.min(), e_currency=ek.currency.min(), e_kind=ek.kind.min(), e_qty=ek.quantity.sum(),
        e_unit=ek.unit_amount.max(), e_amount=ek.amount.sum(), e_discount=ek.discount.sum(), e_tax=ek.tax.sum(),
        e_expired=ek.discount_expired.any(), e_expl=ek.explanation.group_concat(" + "),
        e_sub=ek.subscription_id.min(), e_contract=ek.contract_id.min(),
    )
    j = dl.outer_join(ea, [dl[k] == ea[k] for k in _KEY])
    j = j.mutate(**{k: ibis.coalesce(j[k], j[k + "_right"]) for k in _KEY})
    j = j.mutate(subject=ibis.coalesce(j.d_ref, j.invoice_id + "/" + j.sku + "@" + j.period_start.cast(dt.string)),
                 customer=ibis.coalesce(j.d_customer, j.e_customer), cur=ibis.coalesce(j.e_currency, j.d_currency),
                 per=j.period_start.strftime("%Y-%m"))
    j = engine.materialize("draft_vs_expected", j)
    both = j.filter(j.d_lines.notnull() & j.e_amount.notnull())
    only_exp = j.filter(j.d_lines.isnull())
    only_draft = j.filter(j.e_amount.isnull())

    def F(t: ir.Table, category: str | ir.StringValue, risk: ir.Value, expected: ir.Value, actual: ir.Value,
          why: ir.Value, kind: str = "money") -> ir.Table:
        return _f(t, category=category, invoice_id=t.invoice_id, subject=t.subject, customer_id=t.customer,
                  currency=t.cur, amount_at_risk=risk, expected=expected, actual=actual, explanation=why, period=t.per,
                  value_kind=kind, evidence=_evidence(lines=t.d_refs, invoice=t.invoice_id, subscription=t.e_sub))

    b = both
    cur_bad = b.d_currency != b.e_currency
    usage = b.e_kind == "usage"
    unit_bad = ~cur_bad & ~usage & b.e_unit.notnull() & (b.d_unit != b.e_unit)
    qty_bad = ~cur_bad & ~unit_bad & (b.d_qty != b.e_qty)
    amt_bad = ~cur_bad & ~unit_bad & ~qty_bad & (b.d_amount != b.e_amount)
    t1 = b.filter(cur_bad)
    out.append(F(t1, "currency_mismatch", t1.d_amount, t1.e_currency, t1.d_currency,
                 "Draft line " + t1.subject + " is in " + t1.d_currency + "; the contract is in " + t1.e_currency
                 + ".", "text"))
    t1 = b.filter(unit_bad)
    out.append(F(t1, "price_mismatch", t1.d_amount - t1.e_amount, _s(t1.e_unit), _s(t1.d_unit),
                 "Draft line " + t1.subject + " bills unit price " + _s(t1.d_unit) + "; expected " + _s(t1.e_unit)
                 + " (" + t1.e_expl + ")."))
    t1 = b.filter(qty_bad)
    cat_q = ibis.cases(
        ((t1.e_kind == "usage") & (t1.d_qty < t1.e_qty), "unbilled_usage"), (t1.e_kind == "usage", "overbilled_usage"),
        else_="quantity_mismatch")
    out.append(F(t1, cat_q, t1.d_amount - t1.e_amount, _s(t1.e_qty), _s(t1.d_qty),
                 "Draft line " + t1.subject + " bills quantity " + _s(t1.d_qty) + "; expected " + _s(t1.e_qty)
                 + " (" + t1.e_expl + ").", "quantity"))
    t1 = b.filter(amt_bad)
    cat_a = ibis.cases((t1.e_kind.isin(["proration", "credit"]), "proration_error"), else_="price_mismatch")
    out.append(F(t1, cat_a, t1.d_amount - t1.e_amount, _s(t1.e_amount), _s(t1.d_amount),
                 "Draft line " + t1.subject + " bills " + _s(t1.d_amount) + " minor units; expected "
                 + _s(t1.e_amount) + " (" + t1.e_expl + ")."))
    # Discounts: more than granted (a coupon twice, or one that expired), or less.
    t1 = b.filter(~cur_bad & (b.d_discount.abs() > b.e_discount.abs()))
    cat_d = ibis.ifelse((t1.e_discount == 0) & t1.e_expired, "expired_discount_applied", "duplicate_discount")
    out.append(F(t1, cat_d, t1.d_discount - t1.e_discount, _s(t1.e_discount), _s(t1.d_discount),
                 "Draft line " + t1.subject + " carries a discount of " + _s(t1.d_discount) + "; the contract grants "
                 + _s(t1.e_discount) + ibis.ifelse(t1.e_expired, " (its discount has expired)", "") + "."))
    t1 = b.filter(~cur_bad & (b.d_discount.abs() < b.e_discount.abs()))
    out.append(F(t1, "price_mismatch", t1.e_discount - t1.d_discount, _s(t1.e_discount), _s(t1.d_discount),
                 "Draft line " + t1.subject + " misses discount: " + _s(t1.d_discount) + " instead of "
                 + _s(t1.e_discount) + "."))
    # Tax per line (per-invoice rounding is compared on the header below).
    if cfg.tax_rounding == "line":
        t1 = b.filter(~cur_bad & ~unit_bad & ~qty_bad & ~amt_bad & (b.d_tax != b.e_tax))
        out.append(F(t1, "tax_mismatch", t1.d_tax - t1.e_tax, _s(t1.e_tax), _s(t1.d_tax),
                     "Draft line " + t1.subject + " carries tax " + _s(t1.d_tax) + "; the rate table gives "
                     + _s(t1.e_tax) + "."))

    # Expected but not on the draft.
    t1 = only_exp
    cat_m = ibis.cases((t1.e_kind.isin(["proration", "credit"]), "proration_error"),
                       ((t1.e_kind == "usage") & t1.e_expl.contains(" 0 included"), "unbilled_usage"),
                       (t1.e_kind == "usage", "entitlement_exceeded_unbilled"), else_="missing_invoice")
    out.append(F(t1, cat_m, t1.e_amount - t1.e_discount, _s(t1.e_amount), ibis.literal("none"),
                 "Draft " + t1.invoice_id + " lacks the line " + t1.e_expl + "."))
    # On the draft but not expected: after the contract ended, usage that never happened, or a stray line.
    segs = tables["subscriptions"]
    ended = segs.select(z_contract=segs.contract_id.fill_null(segs.subscription_id), z_sku=segs.sku,
                        z_end=segs.end_date).group_by(["z_contract", "z_sku"]).aggregate(
        z_end=ibis._.z_end.max(), z_open=ibis._.z_end.isnull().any())
    od = only_draft.left_join(ended, (only_draft.d_contract == ended.z_contract) & (only_draft.sku == ended.z_sku))
    after = od.z_end.notnull() & ~od.z_open.fill_null(False) & (od.period_start >= od.z_end)
    # A contracted SKU the catalog does not price has no expected line: its draft lines are the money of
    # the contract's sku_not_in_catalog guardrail below, not a second finding.
    priced = sorted({p.sku for p in cfg.products})
    od = od.filter(after | (od.sku.isin(priced) if priced else ibis.literal(False)) | od.z_contract.isnull())
    after = od.z_end.notnull() & ~od.z_open.fill_null(False) & (od.period_start >= od.z_end)
    cat_o = ibis.cases((after, "billed_after_cancellation"), (od.d_kind == "usage", "overbilled_usage"),
                       (od.match_kind == "credit", "proration_error"), else_="quantity_mismatch")
    out.append(F(od, cat_o, od.d_amount, ibis.literal("none"), _s(od.d_amount),
                 "Draft line " + od.subject + " bills " + od.sku + " for " + od.period_start.cast(dt.string)
                 + ibis.ifelse(after, ", after the contract ended on " + od.z_end.cast(dt.string), "")
                 + "; no such line is expected."))

    # Header: currency, and tax rounded per invoice.
    gh = exp.group_by(g_contract=exp.contract_id, g_bill=exp.bill_date).aggregate(g_currency=exp.currency.min())
    gh = gh.join(invoice_tax(exp, cfg.rounding), ["g_contract", "g_bill"])
    hx = hd.join(gh, (hd.x_contract == gh.g_contract) & (hd.x_bill == gh.g_bill))
    hx = hx.mutate(per=hx.x_bill.strftime("%Y-%m"))
    t1 = hx.filter(hx.x_currency != hx.g_currency)
    out.append(_f(t1, category="currency_mismatch", invoice_id=t1.x_inv, subject=t1.x_inv, customer_id=t1.x_customer,
                  currency=t1.g_currency, amount_at_risk=t1.x_total, expected=t1.g_currency, actual=t1.x_currency,
                  explanation="Draft " + t1.x_inv + " is in " + t1.x_currency + "; the contract is in "
                  + t1.g_currency + ".", period=t1.per, value_kind="text", evidence=_evidence(invoice=t1.x_inv)))
    if cfg.tax_rounding == "invoice":
        t1 = hx.filter((hx.x_currency == hx.g_currency) & (hx.x_tax != hx.g_inv_tax))
        out.append(_f(t1, category="tax_mismatch", invoice_id=t1.x_inv, subject=t1.x_inv, customer_id=t1.x_customer,
                      currency=t1.g_currency, amount_at_risk=t1.x_tax - t1.g_inv_tax, expected=_s(t1.g_inv_tax),
                      actual=_s(t1.x_tax), explanation="Draft " + t1.x_inv + " carries tax " + _s(t1.x_tax)
                      + "; rounded per invoice the rate table gives " + _s(t1.g_inv_tax) + ".", period=t1.per,
                      value_kind="money", evidence=_evidence(invoice=t1.x_inv)))

    out.extend(_guardrails(engine, cfg, tables, hd, dl))
    m = _missing_drafts(exp, inv)
    out.append(_f(m, category="missing_invoice", invoice_id=ibis.null(dt.string),
                  subject=m.m_contract + "@" + m.m_bill.cast(dt.string), customer_id=m.m_customer,
                  currency=m.m_currency, amount_at_risk=m.m_net, expected=_s(m.m_net), actual=ibis.literal("none"),
                  explanation="Contract " + m.m_contract + " is due an invoice on " + m.m_bill.cast(dt.string) + " ("
                  + m.m_expl + ") but has no draft.", period=m.m_bill.strftime("%Y-%m"), value_kind="money",
                  evidence=_evidence(subscription=m.m_sub)))
    return DraftComparison(ibis.union(*out, distinct=False), hd, exp)


def reject_negative_quantities(tables: dict[str, ir.Table]) -> None:
    """A negative contracted or metered quantity cannot be rated: stop with its file, line and column."""
    for name in ("subscriptions", "usage_events"):
        if name not in tables:
            continue
        t = tables[name]
        bad = t.filter(t.quantity < 0)
        first = bad.select("source_ref", "quantity").order_by([bad.source_ref.length(), bad.source_ref]).limit(1)
        rows = first.to_pyarrow().to_pylist()
        if rows:
            file, _, line = rows[0]["source_ref"].rpartition(":")
            raise InputError(file, f"{name}.quantity {rows[0]['quantity']} is negative (a quantity is >= 0)",
                             int(line) if line.isdigit() else None, "quantity")


def invoice_tax(exp: ir.Table, rounding: str) -> ir.Table:
    """Tax rounded once per invoice and rate (g_contract, g_bill, g_inv_tax): the exact sum of the
    lines' nets at one rate, times the rate, rounded once."""
    g = exp.group_by(g_contract=exp.contract_id, g_bill=exp.bill_date, g_rate=exp.tax_rate,
                     g_incl=exp.tax_inclusive).aggregate(g_net=(exp.amount - exp.discount).sum())
    denom = ibis.ifelse(g.g_incl, g.g_rate + 100, ibis.literal(100).cast(EXACT))
    g = g.mutate(part=divide_round(exact(g.g_net) * g.g_rate, denom, rounding))
    return g.group_by(["g_contract", "g_bill"]).aggregate(g_inv_tax=g.part.sum())


def _missing_drafts(exp: ir.Table, invoices: ir.Table) -> ir.Table:
    """Contracts with lines due on an invoice date that has drafts, but no invoice of their own on it
    (neither a draft nor one already issued)."""
    due = exp.group_by(m_contract=exp.contract_id, m_bill=exp.bill_date).aggregate(
        m_customer=exp.customer_id.min(), m_currency=exp.currency.min(), m_net=(exp.amount - exp.discount).sum(),
        m_expl=exp.explanation.group_concat(" + "), m_sub=exp.subscription_id.min())
    have = invoices.filter(invoices.status != "void")
    have = have.select(y_contract=have.subscription_id, y_bill=have.period_start)
    miss = due.anti_join(have, (due.m_contract == have.y_contract) & (due.m_bill == have.y_bill))
    return miss.filter(miss.m_net > 0)


def _guardrails(engine: Engine, cfg: BillingConfig, tables: dict[str, ir.Table], hd: ir.Table,
                dl: ir.Table) -> list[ir.Table]:
    """Contract and catalog problems that must stop a draft: unknown SKU or missing entitlement,
    currency other than the plan's, unapproved discounts, incomplete contracts, overlaps. Their money at
    risk is what the draft bills on the contract row's SKU (net of discount; for an unapproved discount,
    the discount), as it would go out: severity follows it as for every finding."""
    cat = catalog_tables(engine, cfg)
    segs = priced_segments(tables["subscriptions"], cat["products"])
    segs = segs.join(hd, segs.contract == hd.x_contract)
    # Only segments serving the draft's date or the cycle before it.
    segs = segs.filter((segs.start_date < segs.x_bill + ibis.interval(days=1))
                       & (segs.end_date.isnull() | (segs.end_date > segs.x_bill - ibis.interval(days=400))))
    billed = dl.group_by(b_inv=dl.invoice_id, b_sku=dl.sku).aggregate(
        b_net=(dl.d_amount - dl.d_discount).sum(), b_discount=dl.d_discount.sum())
    segs = segs.left_join(billed, (segs.x_inv == billed.b_inv) & (segs.sku == billed.b_sku))
    segs = segs.mutate(per=segs.x_bill.strftime("%Y-%m"), b_net=segs.b_net.fill_null(0),
                       b_discount=segs.b_discount.fill_null(0))
    out = []

    def G(t: ir.Table, category: str, expected: ir.Value, actual: ir.Value, why: ir.Value,
          risk: ir.Value | None = None) -> ir.Table:
        return _f(t, category=category, invoice_id=t.x_inv, subject=t.subscription_id, customer_id=t.customer_id,
                  currency=t.currency, amount_at_risk=t.b_net if risk is None else risk, expected=expected,
                  actual=actual, explanation=why, period=t.per, value_kind="text",
                  evidence=_evidence(invoice=t.x_inv, subscription=t.subscription_id))

    t = segs.filter(segs.p_sku.isnull())
    out.append(G(t, "sku_not_in_catalog", ibis.literal("a catalog SKU"), t.sku,
                 "Subscription " + t.subscription_id + " sells SKU " + t.sku + ", which the catalog does not price."))
    t = segs.filter(segs.p_sku.notnull() & (segs.currency != segs.p_currency))
    out.append(G(t, "currency_mismatch", t.p_currency, t.currency, "Subscription " + t.subscription_id + " is in "
                 + t.currency + " but plan " + t.sku + " is priced in " + t.p_currency + "."))
    if "entitlements" in tables:
        en = tables["entitlements"]
        has = en.select(n_customer=en.customer_id, n_sku=en.sku).distinct()
        t = segs.filter(segs.p_requires_entitlement.fill_null(False))
        t = t.anti_join(has, (t.customer_id == has.n_customer) & (t.sku == has.n_sku))
    else:
        t = segs.filter(segs.p_requires_entitlement.fill_null(False))
    out.append(G(t, "sku_not_in_catalog", ibis.literal("an entitlement"), ibis.literal("none"),
                 "Subscription " + t.subscription_id + " sells " + t.sku + ", which needs an entitlement, but the "
                 "customer has none."))
    threshold = ibis.literal(cfg.discount_approval_percent).cast(EXACT)
    coupons = cat["coupons"]
    t = segs.left_join(coupons, segs.coupon == coupons.c_code)
    too_much = (t.discount_percent.fill_null(0).cast(EXACT) > threshold) | (
        (t.c_percent.fill_null(0) > threshold) & t.c_approval.isnull())
    t = t.filter(too_much)
    out.append(G(t, "discount_not_approved", ibis.literal("an approval reference"), ibis.literal("none"),
                 "Subscription " + t.subscription_id + " carries a discount above "
                 + ibis.literal(str(cfg.discount_approval_percent)) + "% without an approval reference.",
                 t.b_discount))
    if "customers" in tables:
        cu = tables["customers"]
        cq = cu.select(k_customer=cu.customer_id, k_email=cu.email, k_tax_id=cu.tax_id, k_po=cu.requires_po,
                       k_jur=cu.jurisdiction)
        rates = cat["tax_rates"]
        t = segs.left_join(cq, segs.customer_id == cq.k_customer)
        t = t.left_join(rates, (t.k_jur == rates.r_jurisdiction) & (t.p_tax_code == rates.r_tax_code))
        why = ibis.cases((t.k_customer.isnull(), "the customer is unknown"),
                         (t.k_email.isnull(), "the customer has no billing contact"),
                         ((t.r_rate.fill_null(0) > 0) & t.k_tax_id.isnull(), "a taxed customer has no tax id"),
                         (t.k_po.fill_null(False) & t.po_number.isnull(), "the customer requires a PO number"),
                         else_=ibis.null(dt.string))
        t = t.mutate(_why=why).filter(ibis._._why.notnull())
        out.append(G(t, "contract_incomplete", ibis.literal("complete"), t._why,
                     "Subscription " + t.subscription_id + " cannot be invoiced as is: " + t._why + "."))
    a = segs.select(a_inv=segs.x_inv, a_id=segs.subscription_id, a_cust=segs.customer_id, a_sku=segs.sku,
                    a_start=segs.start_date, a_end=segs.end_date.fill_null(_FAR), a_cur=segs.currency,
                    a_per=segs.per, a_contract=segs.contract, a_net=segs.b_net)
    subs = tables["subscriptions"]
    o = subs.select(o_id=subs.subscription_id, o_cust=subs.customer_id, o_sku=subs.sku, o_start=subs.start_date,
                    o_end=subs.end_date.fill_null(_FAR))
    ov = a.join(o, (a.a_cust == o.o_cust) & (a.a_sku == o.o_sku) & (a.a_id != o.o_id) & (a.a_start < o.o_end)
                & (o.o_start < a.a_end))
    out.append(_f(ov, category="overlapping_subscriptions", invoice_id=ov.a_inv, subject=ov.a_id + "|" + ov.o_id,
                  customer_id=ov.a_cust, currency=ov.a_cur, amount_at_risk=ov.a_net,
                  expected=ibis.literal("one subscription"), actual=ibis.literal("two"),
                  explanation="Subscriptions " + ov.a_id + " and " + ov.o_id + " bill "
                  + ov.a_sku + " to " + ov.a_cust + " over the same days.", period=ov.a_per, value_kind="text",
                  evidence=_evidence(invoice=ov.a_inv, subscription=ov.a_id)
                  + ";" + ibis.literal("subscriptions:") + ov.o_id))
    return out


def _verdicts(found: list[tuple[str | None, Finding]], heads: list[dict[str, Any]], hold_on: str,
              n_expected: int) -> ValidationResult:
    by_draft: dict[str | None, list[Finding]] = defaultdict(list)
    for invoice_id, f in found:
        by_draft[invoice_id].append(f)
    drafts = []
    for h in sorted(heads, key=lambda h: h["x_inv"]):
        fs = sorted(by_draft.get(h["x_inv"], []), key=lambda f: (-f.amount_at_risk, f.category, f.subject))
        hold = any(SEVERITY_ORDER[f.severity] >= SEVERITY_ORDER[hold_on] for f in fs)
        drafts.append(DraftVerdict(h["x_inv"], h["x_customer"], h["x_currency"], h["x_total"],
                                   "hold" if hold else "ok", sum(f.amount_at_risk for f in fs), fs))
    missing = sorted(by_draft.get(None, []), key=lambda f: f.subject)
    return ValidationResult(drafts, missing, n_expected, hold_on)

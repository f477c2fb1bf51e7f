"""CRM ↔ billing ↔ operations ↔ entitlements, per customer and period: is every live customer in
every system, do seat/provider counts, statuses, go-live dates and active products agree, and is
usage within entitlements and billed. Accounts are joined through the run's `entity_links`.

The per-customer view (`customer_view`) is also what the monthly report prints side by side.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
from pydantic import Field, field_validator

from tieout.checks.registry import CheckContext, CheckParams, findings_table, ref, refs, register_check

_FAR = date(9999, 12, 31)


class CrmOperationsParams(CheckParams):
    """Parameters of `crm_operations`."""

    period: str = Field("", description="Month compared, YYYY-MM (empty: the month of the run's as-of "
                        "date). Counts are taken on the month's last day.")
    go_live_tolerance_days: int = Field(7, ge=0, description="Go-live dates (CRM, billing start, first "
                                        "provider) may differ by this many days.")
    live_statuses: list[str] = Field(["live"], description="CRM statuses of a customer that should be "
                                     "billed and served.")
    churned_statuses: list[str] = Field(["churned"], description="CRM statuses of a customer that should "
                                        "no longer be billed.")
    subscription_statuses: list[str] = Field(["active", "trialing", "canceled"], description="Subscription "
                                             "statuses that bill while their dates cover the day.")

    @field_validator("period")
    @classmethod
    def _month(cls, value: str) -> str:
        if value:
            month_bounds(value)
        return value


def month_bounds(period: str) -> tuple[date, date]:
    """(first day, first day of the next month) of 'YYYY-MM'; ValueError otherwise."""
    try:
        year, month = (int(p) for p in period.split("-"))
        start = date(year, month, 1)
    except ValueError:
        raise ValueError(f"'{period}' is not a month (YYYY-MM)") from None
    return start, date(year + (month == 12), month % 12 + 1, 1)


@dataclass(frozen=True)
class Window:
    period: str
    start: date
    end: date  # exclusive

    @property
    def last_day(self) -> date:
        return self.end - timedelta(days=1)


def window(ctx: CheckContext, p: CrmOperationsParams) -> Window:
    period = p.period or ctx.as_of.strftime("%Y-%m")
    start, end = month_bounds(period)
    return Window(period, start, end)


def _d(value: date) -> ir.DateValue:
    return ibis.literal(value).cast(dt.date)


def _linked(links: ir.Table, system: str, t: ir.Table, account_col: str) -> ir.Table:
    """`t` with `entity` (the linked billing customer id, or '<system>:<account id>' when the
    account is linked to none) and `linked`. Mapped ids were already turned into links."""
    lk = links.filter(links.system == system).select(_lk_account=links.account_id, _lk_customer=links.customer_id)
    j = t.left_join(lk, t[account_col].cast(dt.string) == lk._lk_account)
    entity = ibis.coalesce(j._lk_customer, ibis.literal(system + ":") + j[account_col].cast(dt.string))
    return j.mutate(entity=entity, linked=j._lk_customer.notnull()).drop("_lk_account", "_lk_customer")


def _catalog(ctx: CheckContext) -> ir.Table:
    """sku, currency, pricing_model, unit_amount (empty when there is no catalog)."""
    if ctx.has("products"):
        pr = ctx.table("products")
        return pr.select(c_sku=pr.sku, c_currency=pr.currency, c_model=pr.pricing_model, c_price=pr.unit_amount)
    schema = ibis.schema({"c_sku": "string", "c_currency": "string", "c_model": "string", "c_price": "int64"})
    return ibis.memtable({k: [] for k in schema.names}, schema=schema)


def _sku_models(ctx: CheckContext) -> ir.Table:
    cat = _catalog(ctx)
    return cat.group_by(m_sku=cat.c_sku).aggregate(m_model=cat.c_model.max())


def customer_view(ctx: CheckContext, p: CrmOperationsParams) -> ir.Table:
    """One row per customer (billing id; '<system>:<id>' for an account linked to no billing
    customer) with each system's values for the period side by side."""
    w = window(ctx, p)
    last = _d(w.last_day)
    ps, pe = _d(w.start), _d(w.end)
    links = ctx.table("entity_links")
    models = _sku_models(ctx)
    parts: list[ir.Table] = []

    # CRM
    crm = _linked(links, "crm", ctx.table("crm_accounts"), "account_id")
    crm = crm.group_by("entity").aggregate(
        crm_account=crm.account_id.min(), crm_name=crm.name.min(), crm_status=crm.status.min(),
        crm_go_live=crm.go_live_date.min(), crm_seats=crm.seats.sum(), crm_linked=crm.linked.max(),
        crm_accounts=crm.account_id.nunique())
    parts.append(crm.select("entity"))
    if ctx.has("crm_products"):
        cp = ctx.table("crm_products")
        cp = cp.filter(cp.status == "active")
        cmap = _linked(links, "crm", ctx.table("crm_accounts").select("account_id"), "account_id")
        cp = cp.join(cmap, cp.account_id == cmap.account_id).select("entity", "sku")
        crm_prod = cp.group_by("entity").aggregate(crm_products=cp.sku.collect().sort().join(";"))
    else:
        crm_prod = None

    # Billing: subscriptions covering the period's last day; lines of the period.
    cust = ctx.table("customers")
    bill = cust.select(entity=cust.customer_id, bill_name=cust.name)
    parts.append(bill.select("entity"))
    subs_v = None
    billed_v = None
    if ctx.has("subscriptions"):
        s = ctx.table("subscriptions")
        s = s.filter(s.status.isin(p.subscription_statuses))
        starts = s.group_by(entity=s.customer_id).aggregate(bill_start=s.start_date.min(),
                                                            bill_currency=s.currency.max())
        live = s.filter((s.start_date <= last) & (s.end_date.isnull() | (s.end_date > last)))
        live = live.left_join(models, live.sku == models.m_sku)
        seat = live.m_model.isnull() | (live.m_model == "per_seat")
        subs_v = live.group_by(entity=live.customer_id).aggregate(
            bill_active=live.subscription_id.notnull().any(),
            bill_seats=ibis.ifelse(seat, live.quantity, ibis.null(dt.int64)).sum(),
            bill_seat_price=ibis.ifelse(seat, live.unit_amount, ibis.null(dt.int64)).max(),
            bill_monthly=(live.unit_amount * live.quantity).sum(),
            bill_products=live.sku.collect().sort().join(";"),
            bill_subs=live.subscription_id.collect().sort().join(";"))
        subs_v = starts.left_join(subs_v, starts.entity == subs_v.entity).drop("entity_right")
    if ctx.has("invoices", "invoice_lines"):
        ln = _period_lines(ctx, ps, pe)
        billed_v = ln.group_by(entity=ln.i_customer).aggregate(
            billed_amount=(ln.amount - ln.discount.fill_null(0)).sum())

    # Operations: providers active on the period's last day.
    ops_v = None
    if ctx.has("operations_roster"):
        r = _linked(links, "operations", ctx.table("operations_roster"), "account_id")
        active = (r.activated_on <= last) & (r.deactivated_on.isnull() | (r.deactivated_on > last))
        ops_v = r.group_by("entity").aggregate(
            ops_account=r.account_id.min(), ops_providers=ibis.ifelse(active, 1, 0).sum(),
            ops_first_active=r.activated_on.min())
        parts.append(ops_v.select("entity"))

    # Entitlements active on the last day, and usage of the period.
    ent_v = None
    if ctx.has("entitlements"):
        e = _entitled(ctx, links)
        e = e.filter((e.start_date <= last) & (e.end_date.isnull() | (e.end_date > last)))
        ent_v = e.group_by("entity").aggregate(ent_products=e.sku.collect().sort().join(";"))
        parts.append(ent_v.select("entity"))
    use_v = None
    if ctx.has("usage_events"):
        u = _usage(ctx, links)
        first = u.group_by("entity").aggregate(first_usage=u.occurred_at.min().date())
        up = u.filter((u.occurred_at.date() >= ps) & (u.occurred_at.date() < pe))
        per = up.group_by("entity").aggregate(usage_units=up.quantity.sum(),
                                              usage_products=up.sku.collect().sort().join(";"))
        use_v = first.left_join(per, first.entity == per.entity).drop("entity_right")
        parts.append(use_v.select("entity"))

    keys = ibis.union(*parts, distinct=True)
    view = keys
    for extra in (crm, crm_prod, bill, subs_v, billed_v, ops_v, ent_v, use_v):
        if extra is not None:
            view = view.left_join(extra, view.entity == extra.entity).drop("entity_right")
    for col, kind in (("crm_products", dt.string), ("bill_start", dt.date), ("bill_currency", dt.string),
                      ("bill_active", dt.boolean), ("bill_seats", dt.int64), ("bill_seat_price", dt.int64),
                      ("bill_monthly", dt.int64), ("bill_products", dt.string), ("bill_subs", dt.string),
                      ("billed_amount", dt.int64), ("ops_account", dt.string), ("ops_providers", dt.int64),
                      ("ops_first_active", dt.date), ("ent_products", dt.string), ("first_usage", dt.date),
                      ("usage_units", dt.int64), ("usage_products", dt.string)):
        if col not in view.columns:
            view = view.mutate(**{col: ibis.null(kind)})
    view = view.mutate(
        period=ibis.literal(w.period),
        in_billing=view.bill_name.notnull() | view.bill_start.notnull(),
        in_crm=view.crm_account.notnull(),
        in_operations=view.ops_account.notnull(),
        currency=view.bill_currency.fill_null(ctx.home_currency),
        bill_active=view.bill_active.fill_null(False),
        billed_amount=view.billed_amount.fill_null(0),
    )
    return ctx.engine.materialize("crm_customer_view", view)


def _period_lines(ctx: CheckContext, ps: ir.DateValue, pe: ir.DateValue) -> ir.Table:
    """Invoice lines of non-void invoices for service starting in [ps, pe), with `i_customer`."""
    inv = ctx.table("invoices")
    inv = inv.filter(inv.status != "void").select(i_id=inv.invoice_id, i_customer=inv.customer_id)
    ln = ctx.table("invoice_lines")
    ln = ln.filter((ln.period_start >= ps) & (ln.period_start < pe))
    return ln.join(inv, ln.invoice_id == inv.i_id)


def _with_customer(ctx: CheckContext, links: ir.Table, table: str, system: str) -> ir.Table:
    """Rows of `table` with `entity`: their own billing customer id when billing knows it, else the
    customer their `account_id` in `system` links to (else '<system>:<account id>')."""
    t = _linked(links, system, ctx.table(table), "account_id")
    own = ctx.table("customers").select(k_id=ctx.table("customers").customer_id)
    t = t.left_join(own, t.customer_id == own.k_id)
    t = t.mutate(entity=ibis.coalesce(t.k_id, t.entity)).drop("k_id")
    return t.filter(t.entity.notnull())


def _entitled(ctx: CheckContext, links: ir.Table) -> ir.Table:
    return _with_customer(ctx, links, "entitlements", "entitlements")


def _usage(ctx: CheckContext, links: ir.Table) -> ir.Table:
    return _with_customer(ctx, links, "usage_events", "operations")


def _side_by_side(v: ir.Table, *pairs: tuple[str, ir.Value]) -> ir.StringValue:
    """'CRM 40 · billing 35 · operations 40' (a missing value shows as —)."""
    out: ir.StringValue | None = None
    for label, value in pairs:
        part = ibis.literal(label + " ") + value.cast(dt.string).fill_null("—")
        out = part if out is None else out + " · " + part
    assert out is not None
    return out


def _price(ctx: CheckContext, t: ir.Table, sku: ir.Value, currency: ir.Value) -> ir.Table:
    cat = _catalog(ctx)
    j = t.left_join(cat, (sku == cat.c_sku) & (currency == cat.c_currency))
    return j.drop("c_sku", "c_currency")


@register_check(
    "crm_operations",
    params=CrmOperationsParams,
    categories=(
        "missing_from_crm", "missing_from_billing", "missing_from_operations", "status_mismatch",
        "seat_count_mismatch", "overbilled", "underbilled", "go_live_mismatch", "product_mismatch",
        "unbilled_usage", "entitlement_exceeded_unbilled", "usage_without_entitlement",
    ),
    tables=("customers", "crm_accounts", "entity_links"),
    explanations={
        "missing_from_crm": "Customer {customer} is billed or served this month but no CRM account links to "
        "it ({detail}).",
        "missing_from_billing": "{subject} is live in the CRM or served by operations but no billing customer "
        "links to it ({detail}); worth {amount} a month at list price.",
        "missing_from_operations": "Customer {customer} is billed this month but operations serves no active "
        "provider for it ({detail}).",
        "status_mismatch": "Customer {customer}: the CRM says {expected}, billing says {actual} ({detail}).",
        "seat_count_mismatch": "Customer {customer}: the CRM has {expected} seats, billing bills {actual} "
        "({detail}).",
        "overbilled": "Customer {customer} is billed for {actual} seats but operations serves {expected} "
        "({detail}).",
        "underbilled": "Customer {customer} is billed for {actual} seats but operations serves {expected} "
        "({detail}).",
        "go_live_mismatch": "Customer {customer}: go-live dates disagree ({detail}).",
        "product_mismatch": "Customer {customer}, product {detail}.",
        "unbilled_usage": "{subject}: {actual} units used this month but the customer is not billed ({detail}).",
        "entitlement_exceeded_unbilled": "{subject}: {actual} units used against an entitlement of "
        "{expected} and the overage is not billed ({detail}).",
        "usage_without_entitlement": "{subject}: {actual} units used with no entitlement to the product "
        "({detail}).",
    },
)
def crm_operations(ctx: CheckContext, p: CrmOperationsParams) -> ir.Table:
    """CRM vs billing vs operations vs entitlements per customer and month: missing customers, seat
    counts, status, go-live dates, active products, usage against entitlements and billing."""
    w = window(ctx, p)
    v = customer_view(ctx, p)
    out: list[ir.Table] = []
    per = ibis.literal(w.period)
    crm_live = v.crm_status.isin(p.live_statuses)
    crm_churned = v.crm_status.isin(p.churned_statuses)
    ev = refs(ibis.ifelse(v.in_crm, ref("crm_accounts", v.crm_account), ibis.null(dt.string)),
              ibis.ifelse(v.in_billing, ref("customers", v.entity), ibis.null(dt.string)))
    base = {"period": per, "evidence": ev}

    def emit(t: ir.Table, category: str, amount: ir.Value, expected: ir.Value | None, actual: ir.Value | None,
             kind: str, detail: ir.Value, subject: ir.Value | None = None) -> None:
        out.append(findings_table(
            t, category=category, subject=t.entity if subject is None else subject,
            customer_id=ibis.ifelse(t.in_billing, t.entity, ibis.null(dt.string)), currency=t.currency,
            amount_at_risk=amount.fill_null(0).cast(dt.int64), expected=None if expected is None
            else expected.cast(dt.string), actual=None if actual is None else actual.cast(dt.string),
            value_kind=kind, detail=detail, **base))

    served = v.ops_providers.fill_null(0) > 0
    billed = v.bill_active | (v.billed_amount > 0)
    month_value = v.bill_monthly.fill_null(v.billed_amount)

    t = v.filter(v.in_billing & ~v.in_crm & (billed | served))
    emit(t, "missing_from_crm", month_value, None, None, "text",
         _side_by_side(t, ("billing", t.bill_products), ("operations providers", t.ops_providers)))

    crm_value = _crm_list_value(ctx, v)
    t = crm_value.filter(~crm_value.in_billing & ((crm_value.in_crm & crm_value.crm_status.isin(p.live_statuses))
                                                  | (crm_value.ops_providers.fill_null(0) > 0)))
    emit(t, "missing_from_billing", t.list_value, None, None, "text",
         _side_by_side(t, ("CRM", t.crm_status), ("CRM seats", t.crm_seats),
                       ("operations providers", t.ops_providers)))

    if ctx.has("operations_roster"):
        t = v.filter(v.in_billing & v.bill_active & ~served & v.in_crm & crm_live)
        emit(t, "missing_from_operations", month_value, None, None, "text",
             _side_by_side(t, ("CRM", t.crm_status), ("billing", t.bill_products),
                           ("operations account", t.ops_account)))

    t = v.filter(v.in_billing & v.in_crm & ((crm_churned & v.bill_active)
                                            | (crm_live & ~v.bill_active & (v.crm_go_live <= _d(w.last_day)))))
    emit(t, "status_mismatch", ibis.ifelse(t.bill_active, month_value, t.crm_seats.fill_null(1)
                                           * t.bill_seat_price.fill_null(0)),
         t.crm_status, ibis.ifelse(t.bill_active, "active", "not billing"), "text",
         _side_by_side(t, ("billing subscriptions", t.bill_subs), ("operations providers", t.ops_providers)))

    # Seats: operations is what is delivered; billing what is charged; the CRM what was sold.
    has_seats = v.in_billing & v.bill_active & v.bill_seats.notnull() & (v.bill_seats > 0)
    ops_known = v.in_operations
    t = v.filter(has_seats & ops_known & (v.ops_providers > v.bill_seats))
    emit(t, "underbilled", (t.ops_providers - t.bill_seats) * t.bill_seat_price, t.ops_providers, t.bill_seats,
         "quantity", _side_by_side(t, ("CRM", t.crm_seats), ("billing", t.bill_seats),
                                   ("operations", t.ops_providers)))
    t = v.filter(has_seats & ops_known & (v.ops_providers < v.bill_seats) & (v.ops_providers > 0))
    emit(t, "overbilled", (t.bill_seats - t.ops_providers) * t.bill_seat_price, t.ops_providers, t.bill_seats,
         "quantity", _side_by_side(t, ("CRM", t.crm_seats), ("billing", t.bill_seats),
                                   ("operations", t.ops_providers)))
    t = v.filter(has_seats & v.in_crm & v.crm_seats.notnull() & (v.crm_seats != v.bill_seats)
                 & (~ops_known | (v.crm_seats != v.ops_providers)))
    emit(t, "seat_count_mismatch", (t.crm_seats - t.bill_seats).abs() * t.bill_seat_price, t.crm_seats,
         t.bill_seats, "quantity", _side_by_side(t, ("CRM", t.crm_seats), ("billing", t.bill_seats),
                                                 ("operations", t.ops_providers)))

    # Go-live: the CRM date, the first billed day and the first provider should agree.
    tol = p.go_live_tolerance_days
    g = v.filter(v.in_billing & v.in_crm & v.crm_go_live.notnull() & v.bill_start.notnull())
    off_crm = g.crm_go_live.delta(g.bill_start, unit="day").abs()
    off_ops = ibis.ifelse(g.ops_first_active.isnull(), 0, g.ops_first_active.delta(g.bill_start, unit="day").abs())
    off_use = ibis.ifelse(g.first_usage.isnull() | (g.first_usage >= g.bill_start), 0,
                          g.bill_start.delta(g.first_usage, unit="day"))
    spread = ibis.greatest(off_crm, off_ops, off_use)
    g = g.mutate(_spread=spread).filter(spread > tol)
    emit(g, "go_live_mismatch", (g.bill_monthly.fill_null(0) * g._spread + 15) // 30,
         g.crm_go_live.strftime("%Y-%m-%d"), g.bill_start.strftime("%Y-%m-%d"), "text",
         _side_by_side(g, ("CRM go-live", g.crm_go_live.strftime("%Y-%m-%d")),
                       ("billing start", g.bill_start.strftime("%Y-%m-%d")),
                       ("first provider", g.ops_first_active.strftime("%Y-%m-%d")),
                       ("first usage", g.first_usage.strftime("%Y-%m-%d"))))

    out.extend(_product_findings(ctx, v))
    out.extend(_usage_findings(ctx, p, v))
    return ibis.union(*out, distinct=False)


def _crm_list_value(ctx: CheckContext, v: ir.Table) -> ir.Table:
    """`v` with `list_value`: the CRM's products at list price (seats × price for per-seat ones),
    in the home currency, for a customer billing does not know."""
    if not ctx.has("crm_products"):
        return v.mutate(list_value=ibis.literal(0, dt.int64))
    cp = ctx.table("crm_products")
    cp = cp.filter(cp.status == "active")
    cmap = _linked(ctx.table("entity_links"), "crm", ctx.table("crm_accounts").select("account_id"), "account_id")
    cp = cp.join(cmap, cp.account_id == cmap.account_id)
    cat = _catalog(ctx)
    cp = cp.join(cat, (cp.sku == cat.c_sku) & (cat.c_currency == ctx.home_currency))
    seats = ctx.table("crm_accounts").select(s_acc="account_id", s_seats="seats")
    cp = cp.join(seats, cp.account_id == seats.s_acc)
    val = ibis.ifelse(cp.c_model == "per_seat", cp.c_price * cp.s_seats.fill_null(1), cp.c_price)
    per = cp.group_by(lv_entity=cp.entity).aggregate(list_value=val.sum())
    j = v.left_join(per, v.entity == per.lv_entity).drop("lv_entity")
    return j.mutate(list_value=j.list_value.fill_null(0))


def _split(v: ir.Table, col: str, system: str) -> ir.Table:
    t = v.filter(v[col].notnull())
    t = t.select("entity", sku=t[col].split(";").unnest())
    return t.mutate(**{"in_" + system: ibis.literal(True)})


def _product_findings(ctx: CheckContext, v: ir.Table) -> list[ir.Table]:
    """product_mismatch: a plan product active in some systems and not in the others (each system
    that knows the customer counts; usage-priced products are compared with usage instead)."""
    sides = [("billing", "bill_products", "in_billing")]
    if ctx.has("crm_products"):
        sides.insert(0, ("crm", "crm_products", "in_crm"))
    if ctx.has("entitlements"):
        sides.append(("entitlements", "ent_products", "ent_known"))
    ent_known = ctx.has("entitlements")
    v = v.mutate(ent_known=v.ent_products.notnull() if ent_known else ibis.literal(False))
    frames = [_split(v, col, name) for name, col, _ in sides]
    keys = ibis.union(*[f.select("entity", "sku") for f in frames], distinct=True)
    if len(sides) < 2:
        return []
    t = keys
    for (name, _, _), f in zip(sides, frames, strict=True):
        f = f.select(f_entity=f.entity, f_sku=f.sku, **{"has_" + name: f["in_" + name]})
        t = t.left_join(f, (t.entity == f.f_entity) & (t.sku == f.f_sku)).drop("f_entity", "f_sku")
    models = _sku_models(ctx)
    t = t.left_join(models, t.sku == models.m_sku).drop("m_sku")
    t = t.filter(t.m_model.isnull() | (t.m_model != "per_unit"))
    t = t.join(v, "entity")
    t = t.filter(t.in_billing & t.in_crm & t.bill_active)
    present = [t["has_" + name].fill_null(False) for name, _, _ in sides]
    known = [t[flag] for _, _, flag in sides]
    mismatch = ibis.literal(False)
    for k, has in zip(known, present, strict=True):
        for k2, has2 in zip(known, present, strict=True):
            mismatch = mismatch | (k & k2 & has & ~has2)
    t = t.mutate(_mis=mismatch).filter(ibis._._mis)
    t = _price(ctx, t, t.sku, t.currency)
    qty = ibis.ifelse(t.c_model == "per_seat", ibis.coalesce(t.bill_seats, t.crm_seats, 1), 1)
    amount = t.c_price.fill_null(0) * qty
    listing = [ibis.ifelse(t["has_" + name].fill_null(False), name, ibis.null(dt.string)) for name, _, _ in sides]
    where = listing[0].fill_null("")
    for item in listing[1:]:
        where = ibis.ifelse(item.isnull(), where, ibis.ifelse(where == "", item, where + ", " + item))
    missing = [ibis.ifelse(k & ~h, name, ibis.null(dt.string))
               for (name, _, _), k, h in zip(sides, [t[f] for _, _, f in sides],
                                             [t["has_" + n].fill_null(False) for n, _, _ in sides], strict=True)]
    absent = missing[0].fill_null("")
    for item in missing[1:]:
        absent = ibis.ifelse(item.isnull(), absent, ibis.ifelse(absent == "", item, absent + ", " + item))
    detail = t.sku + ": active in " + where + ", missing in " + absent
    ev = refs(ref("crm_accounts", t.crm_account), ref("customers", t.entity))
    billed_here = t.has_billing.fill_null(False)
    return [findings_table(
        t, category="product_mismatch", subject=t.entity + "|" + t.sku, customer_id=t.entity, currency=t.currency,
        amount_at_risk=amount.cast(dt.int64), expected=where, actual=ibis.ifelse(billed_here, "billed", "not billed"),
        value_kind="text", period=t.period, evidence=ev, detail=detail)]


def _usage_findings(ctx: CheckContext, p: CrmOperationsParams, v: ir.Table) -> list[ir.Table]:
    """Usage of the month per customer and usage-priced product against entitlements and billing."""
    if not ctx.has("usage_events"):
        return []
    w = window(ctx, p)
    ps, pe, last = _d(w.start), _d(w.end), _d(w.last_day)
    links = ctx.table("entity_links")
    u = _usage(ctx, links)
    u = u.filter((u.occurred_at.date() >= ps) & (u.occurred_at.date() < pe))
    used = u.group_by(["entity", "sku"]).aggregate(units=u.quantity.sum(), u_ref=u.event_id.min())
    if ctx.has("entitlements"):
        e = _entitled(ctx, links)
        e = e.filter((e.start_date <= last) & (e.end_date.isnull() | (e.end_date > last)))
        lim = e.group_by(e_entity=e.entity, e_sku=e.sku).aggregate(
            ent_limit=e.quantity.sum(), unlimited=e.quantity.isnull().any(), e_ref=e.entitlement_id.min())
    else:
        schema = ibis.schema({"e_entity": "string", "e_sku": "string", "ent_limit": "int64", "unlimited": "boolean",
                              "e_ref": "string"})
        lim = ibis.memtable({k: [] for k in schema.names}, schema=schema)
    if ctx.has("invoices", "invoice_lines"):
        ln = _period_lines(ctx, ps, pe)
        paid = ln.group_by(b_entity=ln.i_customer, b_sku=ln.sku).aggregate(billed_units=ln.quantity.sum())
    else:
        schema = ibis.schema({"b_entity": "string", "b_sku": "string", "billed_units": "int64"})
        paid = ibis.memtable({k: [] for k in schema.names}, schema=schema)
    t = used.left_join(lim, (used.entity == lim.e_entity) & (used.sku == lim.e_sku))
    t = t.left_join(paid, (t.entity == paid.b_entity) & (t.sku == paid.b_sku))
    t = t.join(v.select("entity", "in_billing", "in_crm", "bill_active", "currency", "billed_amount"), "entity")
    t = _price(ctx, t, t.sku, t.currency)
    t = t.mutate(billed_units=t.billed_units.fill_null(0), price=t.c_price.fill_null(0))
    subject = t.entity + "|" + t.sku
    ev = refs(ref("usage_events", t.u_ref), ibis.ifelse(t.e_ref.isnull(), ibis.null(dt.string),
                                                        ref("entitlements", t.e_ref)),
              ibis.ifelse(t.in_billing, ref("customers", t.entity), ibis.null(dt.string)))
    out: list[ir.Table] = []

    def emit(x: ir.Table, category: str, amount: ir.Value, expected: ir.Value | None, detail: ir.Value) -> None:
        out.append(findings_table(
            x, category=category, subject=subject, customer_id=ibis.ifelse(x.in_billing, x.entity,
                                                                            ibis.null(dt.string)),
            currency=x.currency, amount_at_risk=amount.cast(dt.int64),
            expected=None if expected is None else expected.cast(dt.string), actual=x.units.cast(dt.string),
            value_kind="quantity", period=ibis.literal(w.period), evidence=ev, detail=detail))

    not_billed = ~t.bill_active & (t.billed_amount == 0)
    unbilled_units = t.units - t.billed_units
    x = t.filter(not_billed & (unbilled_units > 0))
    emit(x, "unbilled_usage", (x.units - x.billed_units) * x.price, None,
         _side_by_side(x, ("used", x.units), ("billed", x.billed_units), ("entitled", x.ent_limit)))
    if ctx.has("entitlements"):
        x = t.filter(~not_billed & x_missing(t))
        emit(x, "usage_without_entitlement", ibis.greatest(x.units - x.billed_units, 0) * x.price, None,
             _side_by_side(x, ("used", x.units), ("billed", x.billed_units), ("entitled", ibis.literal("none"))))
        over = t.units - t.ent_limit.fill_null(0)
        x = t.filter(~not_billed & t.e_entity.notnull() & ~t.unlimited & (over > t.billed_units))
        emit(x, "entitlement_exceeded_unbilled", (x.units - x.ent_limit - x.billed_units) * x.price, x.ent_limit,
             _side_by_side(x, ("used", x.units), ("entitled", x.ent_limit), ("overage billed", x.billed_units)))
    return out


def x_missing(t: ir.Table) -> ir.BooleanValue:
    """No entitlement covers the product on the period's last day."""
    return t.e_entity.isnull()

"""Pre-invoice validation as a check of the run: the billing engine's draft invoices against the
expected invoices (`tieout.billing.validate`), so their findings are stored, routed and notified like
every other. Runs when the workspace has draft invoices and the config has a billing catalog.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from tieout.billing.validate import EXPLANATIONS, VALIDATE_CATEGORIES, compare_drafts
from tieout.checks.registry import FINDING_COLUMNS, CheckContext, CheckParams, register_check


class PreInvoiceParams(CheckParams):
    """Parameters of `pre_invoice` (the catalog and policy are the `billing:` section)."""


@register_check(
    "pre_invoice",
    params=PreInvoiceParams,
    categories=VALIDATE_CATEGORIES,
    tables=("subscriptions", "invoices", "invoice_lines"),
    explanations=EXPLANATIONS,
    needs_catalog=True,
)
def pre_invoice(ctx: CheckContext, p: PreInvoiceParams) -> ir.Table:
    """Pre-invoice validation: every draft invoice (status draft) line by line against the invoice the
    contracts, catalog, coupons, proration, usage and taxes say it should be (`billing:`); contracts due
    an invoice without a draft; catalog and contract guardrails. `tieout validate` gives the verdicts."""
    if ctx.billing is None or not ctx.billing.products:
        return _none(ctx)
    return compare_drafts(ctx.engine, ctx.billing, ctx.tables).findings.select(*FINDING_COLUMNS)


def _none(ctx: CheckContext) -> ir.Table:
    """No catalog, nothing to price: an empty table of the finding columns."""
    inv = ctx.table("invoices")
    return inv.select(**{c: ibis.null(t) for c, t in FINDING_COLUMNS.items()}).limit(0)

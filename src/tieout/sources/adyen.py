"""Adyen settlement details report (CSV), as Adyen writes it.

Each row's `Creation Date` is local to its `TimeZone` column, an abbreviation (CET, CEST, PST...):
the reader appends the abbreviation's UTC offset so normalization converts it; an abbreviation that
is unknown or ambiguous (IST, CST...) is kept in the text, so the row is quarantined naming the
file, line and column. Debits and credits come in separate columns: the reader signs them. Only
text is derived here; every value is parsed (and may be quarantined) in normalization.
"""

from __future__ import annotations

from pathlib import Path

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir

from tieout.config import SourceConfig
from tieout.engines.base import Engine
from tieout.errors import InputError
from tieout.sources.base import RawFrame, SourceFormat, register_format
from tieout.sources.tabular import read_csv

# Unambiguous abbreviations only: CST, IST, BST... name several zones and are refused (quarantined).
TZ_OFFSETS = {
    "UTC": "+00:00", "GMT": "+00:00", "WET": "+00:00", "WEST": "+01:00", "CET": "+01:00", "CEST": "+02:00",
    "EET": "+02:00", "EEST": "+03:00", "MSK": "+03:00", "PST": "-08:00", "PDT": "-07:00", "MST": "-07:00",
    "MDT": "-06:00", "EST": "-05:00", "EDT": "-04:00", "AEST": "+10:00", "AEDT": "+11:00", "JST": "+09:00",
    "HKT": "+08:00", "SGT": "+08:00", "NZST": "+12:00", "NZDT": "+13:00",
}
TYPES = {
    "settled": "charge", "settledbulk": "charge", "refunded": "refund", "refundedbulk": "refund",
    "chargeback": "dispute", "secondchargeback": "dispute", "chargebackreversed": "dispute_reversal",
    "fee": "fee", "invoicededuction": "fee", "depositcorrection": "adjustment", "balancetransfer": "adjustment",
    "merchantpayout": "payout",
}
FEE_PARTS = ("Commission (NC)", "Markup (NC)", "Scheme Fees (NC)", "Interchange (NC)")
REQUIRED = ("Psp Reference", "Creation Date", "TimeZone", "Type", "Gross Currency", "Gross Debit (GC)",
            "Gross Credit (GC)")


def _text(t: ir.Table, name: str) -> ir.StringValue:
    if name in t.columns:
        col: ir.StringValue = t[name].cast(dt.string).strip().nullif("")
        return col
    return ibis.null(dt.string)


def _signed(t: ir.Table, credit: str, debit: str) -> ir.StringValue:
    """Credit as is, a debit negated; both present: credit - debit when both are numbers."""
    c, d = _text(t, credit), _text(t, debit)
    both = c.try_cast(dt.Decimal(38, 9)) - d.try_cast(dt.Decimal(38, 9))
    return ibis.cases(
        (c.notnull() & d.notnull() & both.notnull(), both.cast(dt.string)),
        (c.notnull(), c),
        (d.notnull(), ibis.ifelse(d.startswith("-"), d.substr(1), "-" + d)),
        else_=ibis.null(dt.string),
    )


def _fee(t: ir.Table) -> ir.StringValue:
    """Sum of the fee columns present; the first non-numeric part's text when one does not parse."""
    parts = [_text(t, c) for c in FEE_PARTS if c in t.columns]
    if not parts:
        return ibis.null(dt.string)
    total = sum((p.try_cast(dt.Decimal(38, 9)).fill_null(0) for p in parts), ibis.literal(0, dt.Decimal(38, 9)))
    bad = [(p.notnull() & p.try_cast(dt.Decimal(38, 9)).isnull(), p) for p in parts]
    anything = ibis.or_(*[p.notnull() for p in parts])
    return ibis.cases(*bad, (anything, total.cast(dt.string)), else_=ibis.null(dt.string))


def read_settlement_details(engine: Engine, path: Path, src: SourceConfig, shown: str) -> RawFrame:
    raw = read_csv(engine, path, src, shown)
    missing = [c for c in REQUIRED if c not in raw.columns]
    if missing:
        raise InputError(shown, f"not an Adyen settlement details report: missing column '{missing[0]}' "
                         f"(found: {', '.join(raw.columns)})", line=1)
    t = raw.table
    tz = _text(t, "TimeZone")
    offset = tz.upper().substitute(TZ_OFFSETS, else_=ibis.null(dt.string))
    created = _text(t, "Creation Date")
    kind = _text(t, "Type")
    psp, modification = _text(t, "Psp Reference"), _text(t, "Modification Reference")
    is_payment = kind.lower().isin(["settled", "settledbulk"])
    derived = {
        "Created UTC": ibis.cases(
            (created.isnull(), ibis.null(dt.string)),
            (offset.notnull(), created + offset),
            else_=created + " " + tz.fill_null("(no TimeZone)"),  # unparseable on purpose: quarantined
        ),
        "Transaction ID": ibis.ifelse(is_payment, psp, ibis.coalesce(modification, psp)),
        "Gross": _signed(t, "Gross Credit (GC)", "Gross Debit (GC)"),
        "Net": _signed(t, "Net Credit (NC)", "Net Debit (NC)"),
        "Fee": _fee(t),
    }
    table = engine.materialize("adyen", t.mutate(**derived))
    return RawFrame(table, shown, (*raw.columns, *derived))


register_format(
    SourceFormat(
        name="adyen_settlement",
        doc="Adyen settlement details report (CSV). Creation Date in the row's TimeZone abbreviation "
        "(unknown or ambiguous ones are quarantined); debit and credit columns signed; decimal major units.",
        reader=read_settlement_details,
        table="gateway_transactions",
        system="adyen",
        columns={
            "txn_id": "Transaction ID", "type": "Type", "charge_id": "Psp Reference",
            "invoice_ref": "Merchant Reference", "gross": "Gross", "fee": "Fee", "net": "Net",
            "currency": "Gross Currency", "created_at": "Created UTC", "payout_id": "Batch Number",
        },
        constants={"status": "succeeded"},
        value_maps={"type": TYPES},
        amount_unit="major",
    )
)

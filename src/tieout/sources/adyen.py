"""Adyen's settlement details report and payment accounting report (CSV), as Adyen writes them.

Each row's `Creation Date` (`Booking Date`) is local to its `TimeZone` column, an abbreviation (CET, CEST, PST...):
the reader appends the abbreviation's UTC offset so normalization converts it; an abbreviation that
is unknown or ambiguous (IST, CST...) is kept in the text, so the row is quarantined naming the
file, line and column. Debits and credits come in separate columns: the reader signs them. The
payment accounting report lists each payment once per lifecycle step (Received, Authorised,
SentForSettle, Settled...): only the steps that move money are kept, so a payment counts once. Only
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
# Payment accounting report: the record types that move money, onto gateway_transactions types.
# Refused/Error are failed attempts (a charge with status failed), as Stripe's failed charges are.
RECORD_TYPES = {
    "settled": "charge", "settledbulk": "charge", "settledininstallments": "charge", "refused": "charge",
    "error": "charge", "refunded": "refund", "refundedbulk": "refund", "refundedexternally": "refund",
    "refundedininstallments": "refund", "refundedreversed": "refund_reversal", "chargeback": "dispute",
    "secondchargeback": "dispute", "chargebackexternally": "dispute", "chargebackreversed": "dispute_reversal",
    "chargebackreversedexternally": "dispute_reversal",
}
FAILED_RECORDS = ("refused", "error")
NEGATIVE_TYPES = ("refund", "dispute")
# Lifecycle steps that move no money (the Settled or Refunded record that follows does): left out.
# Any record type in neither list is kept and quarantined as an unknown value, never dropped unseen.
LIFECYCLE_RECORDS = ("received", "authorised", "authorisedpending", "sentforsettle", "sentforrefund",
                     "cancelled", "cancelorrefund", "expired", "capturefailed", "refundfailed", "retried",
                     "pending", "reserved")
PAR_FEE_PARTS = ("Commission (SC)", "Markup (SC)", "Scheme Fees (SC)", "Interchange (SC)")
PAR_REQUIRED = ("Psp Reference", "Booking Date", "TimeZone", "Record Type", "Main Currency", "Main Amount")


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


def _fee(t: ir.Table, columns: tuple[str, ...] = FEE_PARTS) -> ir.StringValue:
    """Sum of the fee columns present; the first non-numeric part's text when one does not parse."""
    parts = [_text(t, c) for c in columns if c in t.columns]
    if not parts:
        return ibis.null(dt.string)
    total = sum((p.try_cast(dt.Decimal(38, 9)).fill_null(0) for p in parts), ibis.literal(0, dt.Decimal(38, 9)))
    bad = [(p.notnull() & p.try_cast(dt.Decimal(38, 9)).isnull(), p) for p in parts]
    anything = ibis.or_(*[p.notnull() for p in parts])
    return ibis.cases(*bad, (anything, total.cast(dt.string)), else_=ibis.null(dt.string))


def _report(engine: Engine, path: Path, src: SourceConfig, shown: str, report: str,
            required: tuple[str, ...]) -> RawFrame:
    """The CSV's rows; an error naming the first missing column when it is not this report."""
    raw = read_csv(engine, path, src, shown)
    missing = [c for c in required if c not in raw.columns]
    if missing:
        raise InputError(shown, f"not an Adyen {report}: missing column '{missing[0]}' "
                         f"(found: {', '.join(raw.columns)})", line=1)
    return raw


def read_settlement_details(engine: Engine, path: Path, src: SourceConfig, shown: str) -> RawFrame:
    raw = _report(engine, path, src, shown, "settlement details report", REQUIRED)
    t = raw.table
    kind = _text(t, "Type")
    psp, modification = _text(t, "Psp Reference"), _text(t, "Modification Reference")
    is_payment = kind.lower().isin(["settled", "settledbulk"])
    derived = {
        "Created UTC": _utc_text(t, "Creation Date"),
        "Transaction ID": ibis.ifelse(is_payment, psp, ibis.coalesce(modification, psp)),
        "Gross": _signed(t, "Gross Credit (GC)", "Gross Debit (GC)"),
        "Net": _signed(t, "Net Credit (NC)", "Net Debit (NC)"),
        "Fee": _fee(t),
    }
    table = engine.materialize("adyen", t.mutate(**derived))
    return RawFrame(table, shown, (*raw.columns, *derived))


def _utc_text(t: ir.Table, column: str) -> ir.StringValue:
    """`column` (local time) with the UTC offset of the row's TimeZone appended; an unknown or ambiguous
    abbreviation is kept in the text instead, so the value does not parse and the row is quarantined."""
    tz = _text(t, "TimeZone")
    offset = tz.upper().substitute(TZ_OFFSETS, else_=ibis.null(dt.string))
    local = _text(t, column)
    return ibis.cases(
        (local.isnull(), ibis.null(dt.string)),
        (offset.notnull(), local + offset),
        else_=local + " " + tz.fill_null("(no TimeZone)"),
    )


def read_payment_accounting(engine: Engine, path: Path, src: SourceConfig, shown: str) -> RawFrame:
    raw = _report(engine, path, src, shown, "payment accounting report", PAR_REQUIRED)
    t = raw.table
    record = _text(t, "Record Type")
    low = record.lower()
    t = t.filter(record.isnull() | ~low.isin(list(LIFECYCLE_RECORDS)))
    record = _text(t, "Record Type")
    low = record.lower()
    psp = _text(t, "Psp Reference")
    # A refund or chargeback has its own PSP reference when the report carries the modification's column.
    modification = ibis.coalesce(_text(t, "Modification Psp Reference"), _text(t, "Modification Reference"))
    negative = low.substitute(RECORD_TYPES, else_=ibis.null(dt.string)).isin(list(NEGATIVE_TYPES))
    amount = _text(t, "Main Amount")
    derived = {
        "Created UTC": _utc_text(t, "Booking Date"),
        "Transaction ID": ibis.ifelse(low.substitute(RECORD_TYPES, else_="").isin(["charge", ""]), psp,
                                      ibis.coalesce(modification, psp)),
        "Gross": ibis.ifelse(negative & amount.notnull() & ~amount.startswith("-"), "-" + amount, amount),
        "Fee": _fee(t, PAR_FEE_PARTS),
        "Status": ibis.ifelse(low.isin(list(FAILED_RECORDS)), "failed", "succeeded"),
    }
    table = engine.materialize("adyen_par", t.mutate(**derived))
    return RawFrame(table, shown, (*raw.columns, *derived))


register_format(
    SourceFormat(
        name="adyen_payment_accounting",
        doc="Adyen payment accounting report (CSV). One row per lifecycle step of a payment: the steps that "
        "move no money (Received, Authorised, SentForSettle, SentForRefund, Cancelled, Expired...) are left out "
        "so a payment counts once; Settled is the charge, Refused/Error a failed charge, Refunded a refund, "
        "Chargeback a dispute (a refund or chargeback keyed by `Modification Psp Reference` when the report "
        "has it). Booking Date in the row's TimeZone abbreviation (unknown or ambiguous ones are "
        "quarantined); gross = Main Amount (negative for refunds and chargebacks), fee = the (SC) fee "
        "columns, net = Payable (SC); decimal major units.",
        reader=read_payment_accounting,
        table="gateway_transactions",
        system="adyen",
        columns={
            "txn_id": "Transaction ID", "type": "Record Type", "status": "Status", "charge_id": "Psp Reference",
            "invoice_ref": "Merchant Reference", "gross": "Gross", "fee": "Fee", "net": "Payable (SC)",
            "currency": "Main Currency", "created_at": "Created UTC", "payout_id": "Batch Number",
        },
        value_maps={"type": RECORD_TYPES},
        amount_unit="major",
    )
)


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

"""Stripe file exports: the itemized balance change report and the Dashboard payments export.

Both write decimal major units ("10.00"; "71000" for yen) and UTC timestamps. Invoices billed
outside Stripe Billing reach Stripe only through metadata: map `invoice_ref` to the metadata
column (e.g. `payment_metadata[invoice_number]` or `invoice_number (metadata)`) in the config.
"""

from __future__ import annotations

from tieout.sources.base import ISO_FORMATS, SourceFormat, register_format
from tieout.sources.tabular import read_csv

BALANCE_CATEGORIES = {
    "charge": "charge",
    "payment": "charge",
    "refund": "refund",
    "payment_refund": "refund",
    "dispute": "dispute",
    "dispute_reversal": "dispute_reversal",
    "fee": "fee",
    "other_adjustment": "adjustment",
    "payout_reversal": "adjustment",
    "refund_failure": "refund_reversal",
    "partial_capture_reversal": "adjustment",
    "transfer": "adjustment",
    "tax": "fee",
}

PAYMENT_STATUSES = {
    "paid": "succeeded",
    "succeeded": "succeeded",
    "refunded": "succeeded",
    "partially refunded": "succeeded",
    "disputed": "succeeded",
    "failed": "failed",
    "canceled": "failed",
    "blocked": "failed",
    "pending": "pending",
    "uncaptured": "pending",
    "incomplete": "pending",
}

register_format(
    SourceFormat(
        name="stripe_balance",
        doc="Stripe report balance_change_from_activity.itemized (every settled balance transaction "
        "except payouts). Decimal major units; created_utc in UTC.",
        reader=read_csv,
        table="gateway_transactions",
        system="stripe",
        columns={
            "txn_id": ("source_id", "balance_transaction_id"),
            "type": "reporting_category",
            "charge_id": "charge_id",
            "customer_id": "customer_id",
            "invoice_ref": "invoice_id",
            "gross": "gross",
            "fee": "fee",
            "net": "net",
            "currency": "currency",
            "created_at": "created_utc",
            "payout_id": "automatic_payout_id",
        },
        constants={"status": "succeeded"},
        value_maps={"type": BALANCE_CATEGORIES},
        amount_unit="major",
        date_formats=ISO_FORMATS,
    )
)

register_format(
    SourceFormat(
        name="stripe_payments",
        doc="Stripe Dashboard 'Payments' export (Title Case headers, failed attempts included). "
        "Amount in decimal major units; 'Created (UTC)'.",
        reader=read_csv,
        table="gateway_transactions",
        system="stripe",
        columns={
            "txn_id": "id",
            "charge_id": "id",
            "status": "Status",
            "customer_id": "Customer ID",
            "invoice_ref": "Invoice ID",
            "gross": "Amount",
            "fee": "Fee",
            "currency": "Currency",
            "created_at": "Created (UTC)",
        },
        constants={"type": "charge"},
        value_maps={"status": PAYMENT_STATUSES},
        amount_unit="major",
        date_formats=ISO_FORMATS,
    )
)

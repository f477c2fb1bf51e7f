"""The canonical model (DESIGN §2): one declaration per table and column, read by sources,
normalization, the quality gate, the docs and the tests.

Money columns hold integer minor units; the currency column of the same row says which. Timestamps
are UTC; date-only fields stay dates. Every table also carries `source` and `source_ref`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Kind(StrEnum):
    """How a canonical column is parsed and typed."""

    ID = "id"  # trimmed, case kept (ids are case-sensitive in most systems)
    TEXT = "text"  # trimmed, empty -> null
    NAME = "name"  # trimmed, inner whitespace collapsed
    MONEY = "money"  # integer minor units of the row's currency
    CURRENCY = "currency"  # ISO-4217, upper case, must be known
    TIMESTAMP = "timestamp"  # UTC
    DATE = "date"
    INTEGER = "integer"
    DECIMAL = "decimal"  # a non-money ratio such as a discount percent
    ENUM = "enum"  # lower case, mapped through the source's value map, must be in the vocabulary
    BOOL = "bool"


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    doc: str
    required: bool = False
    vocabulary: tuple[str, ...] = ()


@dataclass(frozen=True)
class Table:
    name: str
    doc: str
    key: tuple[str, ...]
    columns: tuple[Column, ...]
    lineage: tuple[str, ...] = field(default=("source", "source_ref"))
    # Columns a finding's evidence names a record by, when not the whole key.
    ref_columns: tuple[str, ...] = ()

    @property
    def ref_key(self) -> tuple[str, ...]:
        return self.ref_columns or self.key

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"table '{self.name}' has no column '{name}'")

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)


def _c(name: str, kind: Kind, doc: str, required: bool = False, vocabulary: tuple[str, ...] = ()) -> Column:
    return Column(name, kind, doc, required, vocabulary)


INVOICE_STATUSES = ("draft", "open", "paid", "void", "uncollectible")
GATEWAY_TYPES = ("charge", "refund", "refund_reversal", "dispute", "dispute_reversal", "fee", "adjustment", "payout")
GATEWAY_STATUSES = ("succeeded", "failed", "pending")
PAYMENT_TYPES = ("payment", "refund", "chargeback")
PAYMENT_METHODS = ("card", "ach", "wire", "check", "cash", "other")
SUBSCRIPTION_STATUSES = ("active", "trialing", "paused", "canceled")
INTERVALS = ("month", "quarter", "year")
JOURNAL_TYPES = ("manual", "system")
PAYOUT_STATUSES = ("paid", "pending", "in_transit", "failed", "canceled")
CRM_STATUSES = ("prospect", "onboarding", "live", "churned")
ACTIVE_STATUSES = ("active", "inactive")
PRICING_MODELS = ("per_seat", "flat", "per_unit")

TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        Table(
            "customers",
            "One row per customer as the billing system knows it, with its ids in other systems.",
            ("customer_id",),
            (
                _c("customer_id", Kind.ID, "Billing system's customer/account id.", True),
                _c("name", Kind.NAME, "Legal or display name."),
                _c("email", Kind.TEXT, "Billing contact e-mail."),
                _c("gateway_customer_id", Kind.ID, "Customer id in the payment gateway (e.g. cus_...)."),
                _c("crm_id", Kind.ID, "Account id in the CRM."),
                _c("segment", Kind.TEXT, "Customer segment used by routing (smb, mid-market, enterprise)."),
                _c("status", Kind.TEXT, "Account status in billing."),
                _c("jurisdiction", Kind.TEXT, "Tax jurisdiction (e.g. US-NY, DE), looked up in the tax rate table."),
                _c("tax_id", Kind.ID, "Customer's tax/VAT id, needed on its first invoice where taxed."),
                _c("requires_po", Kind.BOOL, "The customer needs a purchase-order number on every invoice."),
            ),
        ),
        Table(
            "subscriptions",
            "Contracted recurring charges: what each customer should be billed each period.",
            ("subscription_id",),
            (
                _c("subscription_id", Kind.ID, "Subscription or contract id.", True),
                _c("customer_id", Kind.ID, "Customer id (billing).", True),
                _c("sku", Kind.ID, "Product/plan code.", True),
                _c("quantity", Kind.INTEGER, "Seats or units contracted.", True),
                _c("unit_amount", Kind.MONEY, "Price per unit per interval.", True),
                _c("currency", Kind.CURRENCY, "Currency of the contract.", True),
                _c("interval", Kind.ENUM, "Billing interval.", True, INTERVALS),
                _c("start_date", Kind.DATE, "First day of service.", True),
                _c("end_date", Kind.DATE, "Day service ends, exclusive (null = open-ended)."),
                _c("status", Kind.ENUM, "Subscription status.", True, SUBSCRIPTION_STATUSES),
                _c("discount_percent", Kind.DECIMAL, "Contracted discount, percent of the line."),
                _c("discount_end", Kind.DATE, "Discount applies to periods starting before this day."),
                _c("contract_id", Kind.ID, "Contract these rows belong to: one row per segment between "
                   "changes (upgrade, quantity change); defaults to subscription_id."),
                _c("billing_anchor", Kind.INTEGER, "Day of month billing periods start (1-31; 31 = the last day "
                   "of short months); default: the start day."),
                _c("trial_end", Kind.DATE, "Service before this day is a free trial."),
                _c("coupon", Kind.ID, "Catalog coupon code applied to this subscription."),
                _c("po_number", Kind.ID, "Purchase-order number for customers that require one."),
                _c("start_at", Kind.TIMESTAMP, "Time service starts within start_date (UTC), for `billing.proration: "
                   "second`; default its midnight."),
                _c("end_at", Kind.TIMESTAMP, "Time service ends within end_date (UTC, exclusive), for `billing."
                   "proration: second`; default its midnight."),
            ),
        ),
        Table(
            "invoices",
            "Invoice headers from the billing engine, drafts included (pre-invoice validation).",
            ("invoice_id",),
            (
                _c("invoice_id", Kind.ID, "Invoice number.", True),
                _c("customer_id", Kind.ID, "Customer id (billing).", True),
                _c("subscription_id", Kind.ID, "Subscription billed, if any."),
                _c("status", Kind.ENUM, "Invoice status.", True, INVOICE_STATUSES),
                _c("issued_at", Kind.TIMESTAMP, "When the invoice was (or will be) issued."),
                _c("period_start", Kind.DATE, "Service period start."),
                _c("period_end", Kind.DATE, "Service period end, exclusive."),
                _c("currency", Kind.CURRENCY, "Invoice currency.", True),
                _c("subtotal", Kind.MONEY, "Sum of lines before discount and tax."),
                _c("discount", Kind.MONEY, "Total discount."),
                _c("tax", Kind.MONEY, "Total tax."),
                _c("total", Kind.MONEY, "Amount due.", True),
                _c("amount_paid", Kind.MONEY, "Amount the billing system counts as paid."),
            ),
        ),
        Table(
            "invoice_lines",
            "Invoice lines: what was charged for which product, quantity and service period.",
            ("invoice_id", "line_id"),
            (
                _c("invoice_id", Kind.ID, "Invoice number.", True),
                _c("line_id", Kind.ID, "Line id, unique within the invoice.", True),
                _c("sku", Kind.ID, "Product/plan code.", True),
                _c("quantity", Kind.INTEGER, "Quantity billed.", True),
                _c("unit_amount", Kind.MONEY, "Unit price billed.", True),
                _c("amount", Kind.MONEY, "Line amount before discount.", True),
                _c("discount", Kind.MONEY, "Discount applied to this line."),
                _c("currency", Kind.CURRENCY, "Line currency (defaults to the invoice's).", True),
                _c("period_start", Kind.DATE, "Service period start.", True),
                _c("period_end", Kind.DATE, "Service period end, exclusive.", True),
                _c("proration", Kind.BOOL, "Line covers part of a period."),
                _c("tax", Kind.MONEY, "Tax on this line."),
                _c("kind", Kind.TEXT, "Line kind when the billing engine says: recurring, proration, credit, usage, "
                   "minimum, percentage (a negative amount reads as a credit)."),
            ),
        ),
        Table(
            "payments",
            "Payments, refunds and chargebacks as recorded in the billing system.",
            ("payment_id",),
            (
                _c("payment_id", Kind.ID, "Payment number in billing.", True),
                _c("invoice_id", Kind.ID, "Invoice the payment is applied to."),
                _c("customer_id", Kind.ID, "Customer id (billing).", True),
                _c("type", Kind.ENUM, "payment, refund or chargeback.", True, PAYMENT_TYPES),
                _c("method", Kind.ENUM, "How the customer paid.", True, PAYMENT_METHODS),
                _c("amount", Kind.MONEY, "Amount, positive.", True),
                _c("currency", Kind.CURRENCY, "Currency.", True),
                _c("received_at", Kind.TIMESTAMP, "Effective date of the payment.", True),
                _c("gateway_ref", Kind.ID, "The gateway's transaction id (charge, refund or dispute id)."),
            ),
        ),
        Table(
            "gateway_transactions",
            "Money movements at the payment gateway: charges (failed attempts too), refunds, disputes. "
            "A reversal shares the id of what it reverses (Stripe: a dispute_reversal's source is the "
            "dispute, a refund_failure's the refund), so the key is id and type.",
            ("txn_id", "type"),
            (
                _c("txn_id", Kind.ID, "Gateway id of the movement (ch_..., re_..., du_...).", True),
                _c("type", Kind.ENUM, "Kind of movement.", True, GATEWAY_TYPES),
                _c("status", Kind.ENUM, "succeeded, failed or pending.", True, GATEWAY_STATUSES),
                _c("charge_id", Kind.ID, "The charge this movement belongs to (itself for a charge)."),
                _c("customer_id", Kind.ID, "Gateway customer id."),
                _c("invoice_ref", Kind.ID, "Invoice reference carried by the gateway (configurable)."),
                _c("gross", Kind.MONEY, "Gross amount, signed as the gateway reports it.", True),
                _c("fee", Kind.MONEY, "Gateway fee."),
                _c("net", Kind.MONEY, "Net amount."),
                _c("currency", Kind.CURRENCY, "Currency.", True),
                _c("created_at", Kind.TIMESTAMP, "When the movement happened.", True),
                _c("payout_id", Kind.ID, "Payout that settled this movement."),
            ),
            ref_columns=("txn_id",),
        ),
        Table(
            "payouts",
            "Transfers from the gateway to the bank account.",
            ("payout_id",),
            (
                _c("payout_id", Kind.ID, "Payout id.", True),
                _c("amount", Kind.MONEY, "Amount paid out.", True),
                _c("currency", Kind.CURRENCY, "Currency.", True),
                _c("arrival_date", Kind.DATE, "Expected or actual arrival at the bank.", True),
                _c("status", Kind.ENUM, "Payout status.", False, PAYOUT_STATUSES),
            ),
        ),
        Table(
            "gl_entries",
            "General-ledger lines: one account movement each, debit or credit.",
            ("entry_id",),
            (
                _c("entry_id", Kind.ID, "Ledger line id (derived from file and line when absent).", True),
                _c("posted_at", Kind.DATE, "Posting date.", True),
                _c("account", Kind.NAME, "Account name or code.", True),
                _c("debit", Kind.MONEY, "Debit amount (>= 0)."),
                _c("credit", Kind.MONEY, "Credit amount (>= 0)."),
                _c("currency", Kind.CURRENCY, "Currency.", True),
                _c("txn_type", Kind.TEXT, "Transaction type (Payment, Deposit, Journal Entry...)."),
                _c("reference", Kind.ID, "Document number."),
                _c("name", Kind.NAME, "Customer or vendor name."),
                _c("memo", Kind.TEXT, "Memo / description."),
                _c("journal_type", Kind.ENUM, "manual or system.", True, JOURNAL_TYPES),
            ),
        ),
        Table(
            "products",
            "The product catalog: one price per product and currency (prices findings where possible).",
            ("sku", "currency"),
            (
                _c("sku", Kind.ID, "Product/plan code.", True),
                _c("currency", Kind.CURRENCY, "Currency of this price.", True),
                _c("name", Kind.NAME, "Product name."),
                _c("unit", Kind.TEXT, "What one unit is (seat, provider, API call...)."),
                _c("pricing_model", Kind.ENUM, "per_seat (quantity = seats), flat, or per_unit (usage).", True,
                   PRICING_MODELS),
                _c("unit_amount", Kind.MONEY, "List price per unit (per month for per_seat and flat).", True),
            ),
        ),
        Table(
            "crm_accounts",
            "Accounts as the CRM knows them: status, go-live and the seat/provider count sold.",
            ("account_id",),
            (
                _c("account_id", Kind.ID, "CRM account id (e.g. a Salesforce Id).", True),
                _c("name", Kind.NAME, "Account name as typed in the CRM.", True),
                _c("customer_id", Kind.ID, "Billing customer id recorded in the CRM, if any (a mapped id)."),
                _c("owner", Kind.TEXT, "Account owner."),
                _c("status", Kind.ENUM, "Lifecycle status.", True, CRM_STATUSES),
                _c("go_live_date", Kind.DATE, "Date the customer went (or goes) live."),
                _c("seats", Kind.INTEGER, "Seats/providers sold, per the CRM."),
            ),
        ),
        Table(
            "crm_products",
            "Products the CRM says each account has (one row per account and product).",
            ("account_id", "sku"),
            (
                _c("account_id", Kind.ID, "CRM account id.", True),
                _c("sku", Kind.ID, "Product/plan code.", True),
                _c("status", Kind.ENUM, "active or inactive.", True, ACTIVE_STATUSES),
            ),
        ),
        Table(
            "operations_roster",
            "Who operations actually serves: one row per provider (seat) per operations account.",
            ("account_id", "provider_id"),
            (
                _c("account_id", Kind.ID, "Account id in the operations system.", True),
                _c("account_name", Kind.NAME, "Account name in the operations system.", True),
                _c("customer_id", Kind.ID, "Billing customer id recorded by operations, if any (a mapped id)."),
                _c("provider_id", Kind.ID, "Provider/seat id.", True),
                _c("status", Kind.ENUM, "active or inactive.", True, ACTIVE_STATUSES),
                _c("activated_on", Kind.DATE, "First day the provider was active.", True),
                _c("deactivated_on", Kind.DATE, "Day the provider stopped, exclusive (null = still active)."),
            ),
        ),
        Table(
            "entitlements",
            "What each customer may use: a product and a quantity (limit per month) over a date range.",
            ("entitlement_id",),
            (
                _c("entitlement_id", Kind.ID, "Entitlement id.", True),
                _c("customer_id", Kind.ID, "Billing customer id, when the entitlement system records it."),
                _c("account_id", Kind.ID, "Account id in the entitlement system (resolved when customer_id "
                   "is absent)."),
                _c("account_name", Kind.NAME, "Account name in the entitlement system."),
                _c("sku", Kind.ID, "Product code.", True),
                _c("quantity", Kind.INTEGER, "Units included per month (the limit; usage above it is overage "
                   "billed at the catalog price); null = unlimited."),
                _c("start_date", Kind.DATE, "First day of the entitlement.", True),
                _c("end_date", Kind.DATE, "Day it ends, exclusive (null = open-ended)."),
            ),
        ),
        Table(
            "usage_events",
            "Metered usage; `event_id` is the idempotency key (a retried event counts once).",
            ("event_id",),
            (
                _c("event_id", Kind.ID, "Idempotency key of the event.", True),
                _c("customer_id", Kind.ID, "Billing customer id, when the emitter records it."),
                _c("account_id", Kind.ID, "Account id in the operations system (resolved when customer_id "
                   "is absent)."),
                _c("subscription_id", Kind.ID, "Contract/subscription the usage belongs to, if known."),
                _c("sku", Kind.ID, "Product code.", True),
                _c("quantity", Kind.INTEGER, "Units consumed.", True),
                _c("occurred_at", Kind.TIMESTAMP, "When the usage happened.", True),
            ),
        ),
    )
}

LINEAGE_COLUMNS = ("source", "source_ref")


def table(name: str) -> Table:
    """The canonical table `name`; KeyError with the known names otherwise."""
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"unknown canonical table '{name}' (known: {', '.join(sorted(TABLES))})") from None

"""The finding-category vocabulary (DESIGN §3): one entry per category with its definition.

Docs, the config schema and the tests read this registry; a category is declared nowhere else.
Which checks raise a category is read from the check registry (each check declares its categories),
not kept here a second time.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Category:
    name: str
    definition: str
    team: str  # default owning team, used until routing rules say otherwise


_ENTRIES = (
    Category("payment_unmatched", "A settled gateway charge has no payment recorded in billing: cash was "
             "received but no invoice shows it.", "billing-ops"),
    Category("paid_without_payment", "Billing counts money as received (invoice paid, or a card payment "
             "recorded) that the gateway never settled.", "billing-ops"),
    Category("amount_mismatch", "Two records of the same money movement disagree on the amount.",
             "billing-ops"),
    Category("refund_not_reflected", "The gateway refunded a charge but billing still counts the payment.",
             "billing-ops"),
    Category("chargeback_not_reflected", "A dispute was lost at the gateway (funds withdrawn, not reversed) "
             "but billing still counts the payment.", "billing-ops"),
    Category("failed_payment_not_retried", "A charge for an unpaid invoice failed and nothing succeeded "
             "after it within the retry window.", "collections"),
    Category("duplicate_payment", "The gateway settled more for an invoice than the invoice total, net of "
             "refunds: the customer paid twice.", "billing-ops"),
    Category("currency_mismatch", "Two records of the same movement, or an invoice and its contract, are "
             "in different currencies.", "billing-ops"),
    Category("missing_invoice", "An active subscription has a billing period with service but no invoice "
             "line.", "billing-ops"),
    Category("price_mismatch", "An invoice line's unit price differs from the contracted price.",
             "billing-ops"),
    Category("quantity_mismatch", "An invoice line's quantity differs from the contracted quantity.",
             "billing-ops"),
    Category("proration_error", "A partial-period line's amount differs from the day-based proration of "
             "the contracted price (end date exclusive).", "billing-ops"),
    Category("duplicate_discount", "A line carries more discount than the contract grants, e.g. the same "
             "coupon applied twice.", "billing-ops"),
    Category("expired_discount_applied", "A discount was applied to a period starting on or after the "
             "discount's end date.", "billing-ops"),
    Category("overlapping_subscriptions", "A customer has two active subscriptions to the same product "
             "over the same days.", "billing-ops"),
    Category("billed_after_cancellation", "An invoice line bills a period that starts on or after the "
             "subscription's end date.", "billing-ops"),
    Category("payout_unmatched", "A gateway payout reached (or should have reached) the bank but no "
             "deposit in the ledger's cash account matches it.", "accounting"),
    Category("fee_not_booked", "Gateway fees of a month are missing from the ledger's fee account.",
             "accounting"),
    Category("manual_journal_unmatched", "A manual journal entry on a cash or revenue account references "
             "no invoice, payment or payout known to any system.", "accounting"),
    Category("fx_difference", "A foreign-currency movement differs from its ledger posting by more than "
             "the FX tolerance.", "accounting"),
    Category("tax_mismatch", "Invoice tax differs from the tax computed from the rate table.", "billing-ops"),
    Category("unbilled_usage", "Usage was consumed but never billed.", "billing-ops"),
    Category("overbilled_usage", "More usage was billed than was consumed.", "billing-ops"),
    Category("entitlement_exceeded_unbilled", "Usage above the entitlement was not billed as overage.",
             "billing-ops"),
    Category("usage_without_entitlement", "Usage recorded for a product the customer is not entitled to.",
             "customer-success"),
    Category("sku_not_in_catalog", "A contract or draft invoice sells a SKU the catalog does not price, or "
             "a SKU that needs an entitlement without one.", "billing-ops"),
    Category("discount_not_approved", "A contract carries a discount above the approval threshold without an "
             "approval reference.", "billing-ops"),
    Category("contract_incomplete", "A contract lacks a field its invoice needs: the customer's tax id where "
             "taxed, a billing contact, a purchase-order number where the customer requires one.", "billing-ops"),
    Category("missing_from_crm", "A billed or live customer is missing from the CRM.", "revops"),
    Category("missing_from_billing", "A CRM customer or product is missing from billing.", "revops"),
    Category("missing_from_operations", "A billed customer is not live in operations.", "revops"),
    Category("status_mismatch", "Systems disagree on a customer's status.", "revops"),
    Category("seat_count_mismatch", "Seat/provider counts differ between CRM, billing and operations.",
             "revops"),
    Category("go_live_mismatch", "Go-live dates differ between CRM, billing and first usage.", "revops"),
    Category("product_mismatch", "Active products differ between CRM, billing and entitlements.", "revops"),
    Category("overbilled", "A customer is billed for more than operations delivers.", "revops"),
    Category("underbilled", "A customer is billed for less than operations delivers.", "revops"),
)

CATEGORIES: dict[str, Category] = {c.name: c for c in _ENTRIES}


def category(name: str) -> Category:
    try:
        return CATEGORIES[name]
    except KeyError:
        raise KeyError(f"unknown finding category '{name}'") from None

"""Chargebee API connector, through the official `chargebee` SDK (endpoint overridable).

Streams: invoices and their lines, successful transactions (the billing engine's payments, with the
gateway's id), subscriptions (one row per recurring item) and credit notes (negative invoices). Truly incremental:
`updated_at[after]` the stored cursor, sorted by `updated_at` (credit notes, which Chargebee sorts
only by date: by `date`), so changed records (an invoice paid, a payment refunded) come again.
Deleted records come once more with `include_deleted` and leave the state. Amounts are minor units,
times Unix seconds. The SDK's own retries stay off: `retry.RetryPolicy` decides.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

from pydantic import Field, SecretStr

from tieout.sources.connectors import (
    MAIN,
    Connector,
    ConnectorOptions,
    PullContext,
    Stream,
    flag_row,
    register_connector,
)
from tieout.sources.credentials import register_secret
from tieout.sources.retry import AuthFailure, ConnectorError, Refused, TransientError, retry_after_seconds

INVOICE_STATUSES = {"paid": "paid", "posted": "open", "payment_due": "open", "not_paid": "uncollectible",
                    "voided": "void", "pending": "draft"}
TRANSACTION_TYPES = {"payment": "payment", "refund": "refund"}
PAYMENT_METHODS = {"card": "card", "direct_debit": "ach", "bank_transfer": "wire", "check": "check",
                   "cash": "cash", "other": "other", "paypal_express_checkout": "other", "ach": "ach"}
# future (starts later) and non_renewing (ends at term end) still bill each period until they end.
SUBSCRIPTION_STATUSES = {"future": "active", "in_trial": "trialing", "active": "active", "non_renewing": "active",
                         "paused": "paused", "cancelled": "canceled", "transferred": "canceled"}
# billing_period_unit x billing_period; any other pair (a week, two months) is quarantined by name.
INTERVALS = {"month": "month", "month*3": "quarter", "year": "year", "month*12": "year"}
# A credit note is settled once applied to invoices (adjusted) or paid back (refunded); refund_due is owed.
CREDIT_NOTE_STATUSES = {"adjusted": "paid", "refunded": "paid", "refund_due": "open", "voided": "void"}
_STATUS_IN_TEXT = re.compile(r"http_status_code:\s*(\d{3})")


class ChargebeeOptions(ConnectorOptions):
    """`options:` of a Chargebee connector source."""

    api_key: SecretStr = Field(description="Full-access or read-only API key, e.g. ${CHARGEBEE_API_KEY}.")
    site: str = Field(description="Site name: `acme` for acme.chargebee.com.")
    api_base: str | None = Field(None, description="Base URL instead of https://<site>.chargebee.com "
                                 "(a proxy or a local test server); /api/v2 is appended.")
    page_size: int = Field(100, ge=1, le=100, description="Records per page (Chargebee allows at most 100).")
    currencies: list[str] = Field(default_factory=list, description="Currencies the site declares (e.g. "
                                  "[USD, EUR]); a record in any other is quarantined, naming it. Empty: any.")


def _translate(call: Callable[[], Any]) -> Any:
    """Call the SDK; map its errors onto transient (retried) and terminal failures."""
    import chargebee
    import httpx

    try:
        return call()
    except chargebee.APIError as exc:
        status = exc.http_status_code
        if status in (401, 403):
            raise AuthFailure(str(exc) or exc.api_error_code or "refused", status) from None
        if status == 429 or (status is not None and status >= 500):
            headers = exc.http_headers or {}
            raise TransientError(f"HTTP {status} ({exc.api_error_code})",
                                 retry_after_seconds(headers.get("retry-after"))) from None
        raise Refused(f"HTTP {status}: {exc} ({exc.api_error_code})") from None
    except httpx.TransportError as exc:
        raise TransientError(f"connection failed: {type(exc).__name__}") from None
    except ConnectorError:
        raise
    except Exception as exc:  # the SDK raises bare Exceptions for bodies that are not Chargebee JSON
        found = _STATUS_IN_TEXT.search(str(exc))
        status = int(found.group(1)) if found else None
        if status in (401, 403):
            raise AuthFailure("refused", status) from None
        raise TransientError(f"the answer is not Chargebee JSON (HTTP {status or '200'})") from None


INVOICE_COLUMNS = ("id", "customer_id", "subscription_id", "status", "date", "updated_at", "currency_code",
                   "sub_total", "discount", "tax", "total", "amount_paid")
TRANSACTION_COLUMNS = ("id", "invoice_id", "customer_id", "type", "payment_method", "status", "amount",
                       "currency_code", "date", "updated_at", "id_at_gateway", "gateway")
LINE_COLUMNS = ("invoice_id", "id", "entity_id", "entity_type", "quantity", "unit_amount", "amount", "discount_amount",
                "tax_amount", "currency_code", "date_from", "date_to", "subscription_id", "updated_at")
SUBSCRIPTION_COLUMNS = ("id", "subscription_id", "item_price_id", "item_type", "customer_id", "status", "quantity",
                        "unit_price", "currency_code", "interval", "started_at", "cancelled_at", "trial_end",
                        "coupon_id", "coupon_apply_till", "updated_at")
CREDIT_NOTE_COLUMNS = ("id", "customer_id", "subscription_id", "reference_invoice_id", "type", "reason_code",
                       "status", "date", "updated_at", "currency_code", "sub_total", "discount", "tax", "total",
                       "amount_settled", "amount_refunded", "amount_allocated")


class ChargebeeConnector(Connector):
    name = "chargebee"
    doc = ("Chargebee API through the official SDK: invoices and their lines, successful transactions, "
           "subscriptions and credit notes, incremental on updated_at. Minor units, Unix timestamps.")
    options_model = ChargebeeOptions
    streams: ClassVar[Mapping[str, Stream]] = {s.name: s for s in (
        Stream("invoices", "invoices; discount is the sum of `discounts`; statuses mapped (posted, payment_due "
               "-> open; not_paid -> uncollectible; voided -> void; pending -> draft).", "invoices", "id",
               key=("id",),
               columns={"invoice_id": "id", "customer_id": "customer_id", "subscription_id": "subscription_id",
                        "status": "status", "issued_at": "date", "currency": "currency_code",
                        "subtotal": "sub_total", "discount": "discount", "tax": "tax", "total": "total",
                        "amount_paid": "amount_paid"},
               value_maps={"status": INVOICE_STATUSES}),
        Stream("invoice_lines", "the `line_items` of every invoice: sku = entity_id (the item price), discount "
               "= discount_amount, tax = tax_amount; Chargebee's date_to is the period's last second, so "
               "period_end is one second later (exclusive). An invoice read again replaces all its lines.",
               "invoice_lines", "id", key=("invoice_id",),
               columns={"invoice_id": "invoice_id", "line_id": "id", "sku": "entity_id", "quantity": "quantity",
                        "unit_amount": "unit_amount", "amount": "amount", "discount": "discount_amount",
                        "tax": "tax_amount", "currency": "currency_code", "period_start": "date_from",
                        "period_end": "date_to"}),
        Stream("transactions", "successful payment and refund transactions (status success), with the "
               "gateway's id as gateway_ref and the first linked invoice.", "payments", "id", key=("id",),
               columns={"payment_id": "id", "invoice_id": "invoice_id", "customer_id": "customer_id",
                        "type": "type", "method": "payment_method", "amount": "amount",
                        "currency": "currency_code", "received_at": "date", "gateway_ref": "id_at_gateway"},
               value_maps={"type": TRANSACTION_TYPES, "method": PAYMENT_METHODS}),
        Stream("subscriptions", "subscriptions, one row per plan or addon item (`subscription_items`; on "
               "Product Catalog 1.0 sites the plan and its addons): the subscription id when it has one item, "
               "`<subscription>/<item_price_id>` when several (contract_id is the subscription either way); "
               "interval from billing_period_unit x billing_period (month, 3 months = quarter, year); statuses "
               "mapped (future, non_renewing -> active; in_trial -> trialing; cancelled, transferred -> "
               "canceled); end_date = cancelled_at; the first coupon's id and apply_till (Chargebee keeps the "
               "percentage on the coupon, so discount_percent stays empty). One-time charge items are not "
               "subscriptions and are left out.", "subscriptions", "id", key=("subscription_id",),
               columns={"subscription_id": "id", "contract_id": "subscription_id", "customer_id": "customer_id",
                        "sku": "item_price_id", "quantity": "quantity", "unit_amount": "unit_price",
                        "currency": "currency_code", "interval": "interval", "start_date": "started_at",
                        "end_date": "cancelled_at", "status": "status", "trial_end": "trial_end",
                        "coupon": "coupon_id", "discount_end": "coupon_apply_till"},
               value_maps={"status": SUBSCRIPTION_STATUSES, "interval": INTERVALS}),
        Stream("credit_notes", "credit notes as negative invoices (the canonical model has no credit-note "
               "table; this is how the ledger sees them): amounts negated, statuses mapped (adjusted, refunded "
               "-> paid; refund_due -> open; voided -> void), amount_paid = -(allocated + refunded). Their "
               "refunds reach `payments` through the transactions stream (type refund), not from here.",
               "invoices", "id", key=("id",),
               columns={"invoice_id": "id", "customer_id": "customer_id", "subscription_id": "subscription_id",
                        "status": "status", "issued_at": "date", "currency": "currency_code",
                        "subtotal": "sub_total", "discount": "discount", "tax": "tax", "total": "total",
                        "amount_paid": "amount_settled"},
               value_maps={"status": CREDIT_NOTE_STATUSES}),
    )}

    def _client(self, opts: ChargebeeOptions) -> Any:
        import chargebee

        key = opts.api_key.get_secret_value()
        register_secret(base64.b64encode(f"{key}:".encode()).decode())  # the Basic credentials, as sent
        client = chargebee.Chargebee(api_key=key, site=opts.site)
        if opts.api_base:
            client.env.api_endpoint = opts.api_base.rstrip("/") + "/api/v2"
        return client

    def _pages(self, ctx: PullContext, resource: Any, kind: str) -> Iterator[list[dict[str, Any]]]:
        """Offset pagination (`next_offset`), oldest change first, from the cursor on."""
        sort = "date" if kind == "credit_note" else "updated_at"  # credit notes sort by date only
        # include_deleted: a record deleted since the last pull comes back once more, marked `deleted`.
        params: dict[str, Any] = {"limit": ctx.options.page_size, "sort_by": {"asc": sort}, "include_deleted": True}
        if ctx.cursor and ctx.cursor.get("updated_at") is not None:
            params["updated_at"] = {"after": int(ctx.cursor["updated_at"]) - 1}  # `after` is exclusive
        offset: str | None = None
        page_no = 0
        while True:
            page_no += 1
            p = {**params, **({"offset": offset} if offset else {})}

            def fetch(p: dict[str, Any] = p) -> Any:
                return _translate(lambda: resource.list(p))

            response = ctx.call(f"listing {kind}s (page {page_no})", fetch)
            entries = [getattr(e, kind).raw_data for e in response.list if getattr(e, kind, None) is not None]
            if entries:
                yield entries
            offset = response.next_offset
            if not offset or not entries or ctx.enough():
                return

    def pull(self, ctx: PullContext) -> dict[str, Any]:
        import chargebee

        client = self._client(ctx.options)
        # The SDK forces https while its (class-wide) certificate check is on; a plain-http api_base (a
        # local server, a proxy on loopback) needs it off for the pull, and nothing else runs meanwhile.
        plain = bool(ctx.options.api_base and ctx.options.api_base.startswith("http://"))
        saved = chargebee.Chargebee.verify_ca_certs
        if plain:
            chargebee.Chargebee.verify_ca_certs = False
            client.env.protocol = "http"
        try:
            if ctx.stream.name == "invoices":
                return self._pull(ctx, client.Invoice, "invoice", INVOICE_COLUMNS, _invoice_row)
            if ctx.stream.name == "invoice_lines":
                return self._pull(ctx, client.Invoice, "invoice", LINE_COLUMNS, _line_rows)
            if ctx.stream.name == "subscriptions":
                return self._pull(ctx, client.Subscription, "subscription", SUBSCRIPTION_COLUMNS, _subscription_rows)
            if ctx.stream.name == "credit_notes":
                return self._pull(ctx, client.CreditNote, "credit_note", CREDIT_NOTE_COLUMNS, _credit_note_row)
            return self._pull(ctx, client.Transaction, "transaction", TRANSACTION_COLUMNS, _transaction_row)
        finally:
            chargebee.Chargebee.verify_ca_certs = saved

    def _pull(self, ctx: PullContext, resource: Any, kind: str, columns: Sequence[str],
              row: Callable[[PullContext, dict[str, Any]], dict[str, Any] | list[dict[str, Any]] | None],
              ) -> dict[str, Any]:
        ctx.sink.columns(MAIN, columns)
        newest = ctx.cursor.get("updated_at") if ctx.cursor else None
        for page in self._pages(ctx, resource, kind):
            rows = []
            for record in page:
                updated = record.get("updated_at")
                if isinstance(updated, int):
                    newest = updated if newest is None else max(int(newest), updated)
                if record.get("deleted") is True:  # gone from Chargebee: it leaves the state
                    ctx.sink.delete(MAIN, {ctx.stream.key[0]: record.get("id")})
                    continue
                r = row(ctx, record)
                if isinstance(r, list):
                    rows.extend(r)
                elif r is not None:
                    rows.append(r)
            for r in rows:
                flag_row(ctx, r, ctx.options.currencies)
            ctx.sink.write(MAIN, rows)
        return {"updated_at": newest}


def _need(ctx: PullContext, record: Mapping[str, Any], name: str, kind: str) -> Any:
    if name not in record:
        ctx.sink.problem(str(record.get("id", "?")), name, f"field '{name}' missing from the {kind} in the API answer")
        return None
    return record[name]


def _invoice_row(ctx: PullContext, r: dict[str, Any]) -> dict[str, Any]:
    discounts = r.get("discounts") or []
    taxes = r.get("tax")
    return {"id": _need(ctx, r, "id", "invoice"), "customer_id": _need(ctx, r, "customer_id", "invoice"),
            "subscription_id": r.get("subscription_id"), "status": _need(ctx, r, "status", "invoice"),
            "date": r.get("date"), "updated_at": r.get("updated_at"),
            "currency_code": _need(ctx, r, "currency_code", "invoice"), "sub_total": r.get("sub_total"),
            "discount": sum(int(d.get("amount") or 0) for d in discounts if isinstance(d, dict)),
            "tax": taxes, "total": _need(ctx, r, "total", "invoice"), "amount_paid": r.get("amount_paid")}


def _transaction_row(ctx: PullContext, r: dict[str, Any]) -> dict[str, Any] | None:
    if r.get("status") != "success":  # failed, voided, in-progress attempts are not payments
        return None
    invoices = r.get("linked_invoices") or []
    first = invoices[0].get("invoice_id") if invoices and isinstance(invoices[0], dict) else None
    return {"id": _need(ctx, r, "id", "transaction"), "invoice_id": first,
            "customer_id": _need(ctx, r, "customer_id", "transaction"), "type": _need(ctx, r, "type", "transaction"),
            "payment_method": r.get("payment_method"), "status": r.get("status"),
            "amount": _need(ctx, r, "amount", "transaction"),
            "currency_code": _need(ctx, r, "currency_code", "transaction"),
            "date": _need(ctx, r, "date", "transaction"),
            "updated_at": r.get("updated_at"), "id_at_gateway": r.get("id_at_gateway"), "gateway": r.get("gateway")}


def _line_rows(ctx: PullContext, r: dict[str, Any]) -> list[dict[str, Any]]:
    invoice = _need(ctx, r, "id", "invoice")
    lines = r.get("line_items")
    if not isinstance(lines, list):
        _need(ctx, r, "line_items", "invoice")
        return []
    rows = []
    for line in (ln for ln in lines if isinstance(ln, dict)):
        start, end = line.get("date_from"), line.get("date_to")
        if isinstance(start, int) and isinstance(end, int) and end > start:
            end += 1  # the period's last second -> its exclusive end
        rows.append({"invoice_id": invoice, "id": _need(ctx, line, "id", "invoice line"),
                     "entity_id": line.get("entity_id"), "entity_type": line.get("entity_type"),
                     "quantity": line.get("quantity"), "unit_amount": line.get("unit_amount"),
                     "amount": _need(ctx, line, "amount", "invoice line"),
                     "discount_amount": line.get("discount_amount"), "tax_amount": line.get("tax_amount"),
                     "currency_code": r.get("currency_code"),
                     "date_from": start, "date_to": end, "subscription_id": line.get("subscription_id")
                     or r.get("subscription_id"), "updated_at": r.get("updated_at")})
    return rows


def _subscription_rows(ctx: PullContext, r: dict[str, Any]) -> list[dict[str, Any]]:
    sub = str(_need(ctx, r, "id", "subscription"))
    items = r.get("subscription_items")
    if items is None and r.get("plan_id") is not None:  # Product Catalog 1.0: a plan and its addons
        items = [{"item_price_id": r["plan_id"], "item_type": "plan", "quantity": r.get("plan_quantity", 1),
                  "unit_price": r.get("plan_unit_price")},
                 *({"item_price_id": a.get("id"), "item_type": "addon", "quantity": a.get("quantity", 1),
                    "unit_price": a.get("unit_price")} for a in r.get("addons") or [] if isinstance(a, dict))]
    if not isinstance(items, list):
        _need(ctx, r, "subscription_items", "subscription")
        return []
    recurring = [i for i in items if isinstance(i, dict) and i.get("item_type") != "charge"]
    unit, count = r.get("billing_period_unit"), r.get("billing_period") or 1
    interval = None if unit is None else unit if count == 1 else f"{unit}*{count}"
    coupons = [c for c in r.get("coupons") or [] if isinstance(c, dict)]
    rows = []
    for item in recurring:
        rid = sub if len(recurring) == 1 else f"{sub}/{item.get('item_price_id')}"
        head = {**r, "id": rid}  # problems name the row
        quantity = item.get("quantity", 1)
        price = item.get("unit_price")
        if price is None and isinstance(item.get("amount"), int) and quantity:  # tiered: the average
            price = item["amount"] // quantity if item["amount"] % quantity == 0 else None
        rows.append({"id": rid, "subscription_id": sub, "item_price_id": item.get("item_price_id"),
                     "item_type": item.get("item_type"), "customer_id": _need(ctx, head, "customer_id", "subscription"),
                     "status": _need(ctx, head, "status", "subscription"), "quantity": quantity, "unit_price": price,
                     "currency_code": _need(ctx, head, "currency_code", "subscription"), "interval": interval,
                     "started_at": r.get("started_at") or r.get("start_date"), "cancelled_at": r.get("cancelled_at"),
                     "trial_end": r.get("trial_end"), "coupon_id": coupons[0].get("coupon_id") if coupons else None,
                     "coupon_apply_till": coupons[0].get("apply_till") if coupons else None,
                     "updated_at": r.get("updated_at")})
    return rows


def _negated(value: Any) -> Any:
    return -value if isinstance(value, int) and not isinstance(value, bool) else value


def _credit_note_row(ctx: PullContext, r: dict[str, Any]) -> dict[str, Any]:
    discounts = r.get("discounts") or []
    settled = [r.get("amount_allocated"), r.get("amount_refunded")]
    return {"id": _need(ctx, r, "id", "credit note"), "customer_id": _need(ctx, r, "customer_id", "credit note"),
            "subscription_id": r.get("subscription_id"), "reference_invoice_id": r.get("reference_invoice_id"),
            "type": r.get("type"), "reason_code": r.get("reason_code"),
            "status": _need(ctx, r, "status", "credit note"), "date": r.get("date"), "updated_at": r.get("updated_at"),
            "currency_code": _need(ctx, r, "currency_code", "credit note"), "sub_total": _negated(r.get("sub_total")),
            "discount": -sum(int(d.get("amount") or 0) for d in discounts if isinstance(d, dict)),
            "tax": _negated(r.get("tax")), "total": _negated(_need(ctx, r, "total", "credit note")),
            "amount_settled": -sum(v for v in settled if isinstance(v, int)),
            "amount_refunded": r.get("amount_refunded"), "amount_allocated": r.get("amount_allocated")}


register_connector(ChargebeeConnector())

"""Stripe API connector, through the official `stripe` SDK (`StripeClient`, base URL overridable).

Streams: balance transactions (the API twin of the itemized balance report: source expanded for
customer, invoice and metadata; payout links from `balance_transactions?payout=`), failed charges,
payouts, customers, and Stripe Billing's invoices, invoice lines and subscriptions (one row per
subscription item). Deletions come from the Events API (a deleted customer or invoice leaves the
state; a deleted subscription is canceled and replaces the version held). Amounts stay in minor
units, times in Unix seconds; normalization parses them.
The SDK's own retries are off: `retry.RetryPolicy` decides.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, Literal

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
from tieout.sources.retry import AuthFailure, ConnectorError, Refused, TransientError, retry_after_seconds
from tieout.sources.stripe import BALANCE_CATEGORIES, PAYMENT_STATUSES

DAY = 86_400
# Stripe subscription statuses onto the canonical ones: past_due and unpaid still bill each period;
# incomplete has not started (its first payment is pending), incomplete_expired never will.
SUBSCRIPTION_STATUSES = {"active": "active", "trialing": "trialing", "past_due": "active", "unpaid": "active",
                         "paused": "paused", "canceled": "canceled", "incomplete": "paused",
                         "incomplete_expired": "canceled"}
# `recurring.interval` x `interval_count`; any other pair (a week, two months) is quarantined by name.
INTERVALS = {"month": "month", "month*3": "quarter", "year": "year", "month*12": "year"}


class StripeOptions(ConnectorOptions):
    """`options:` of a Stripe connector source."""

    api_key: SecretStr = Field(description="Secret or restricted key with read access, e.g. ${STRIPE_API_KEY}.")
    api_base: str | None = Field(None, description="Base URL of the API (default https://api.stripe.com); "
                                 "a proxy or a local test server.")
    stripe_account: str | None = Field(None, description="Connected account id (acct_...) to read as.")
    metadata_keys: list[str] = Field(default_factory=list, description="Metadata keys to keep, as columns "
                                     "`payment_metadata[KEY]` (balance) or `metadata[KEY]` (other streams).")
    lookback_days: int = Field(0, ge=0, description="Re-read objects created this many days before the cursor, "
                               "to catch ones that changed (a payout paid, an invoice settled).")
    page_size: int = Field(100, ge=1, le=100, description="Objects per page (Stripe allows at most 100).")
    sku_from: Literal["product", "price", "lookup_key"] = Field(
        "product", description="What an invoice line's or subscription item's `sku` is: the price's product "
        "id, the price id, or the price's lookup_key.")
    currencies: list[str] = Field(default_factory=list, description="Currencies this account declares "
                                  "(e.g. [usd, eur]); a record in any other is quarantined, naming it. Empty: any.")


def _translate(what: Callable[[], Any]) -> Any:
    """Call the SDK; map its errors onto transient (retried) and terminal failures."""
    import stripe

    try:
        return what()
    except (stripe.AuthenticationError, stripe.PermissionError) as exc:
        raise AuthFailure(exc.user_message or "refused", exc.http_status) from None
    except stripe.RateLimitError as exc:
        headers = exc.headers or {}
        raise TransientError(f"rate limited (HTTP {exc.http_status})",
                             retry_after_seconds(headers.get("Retry-After") or headers.get("retry-after"))) from None
    except stripe.APIConnectionError as exc:
        raise TransientError(f"connection failed: {exc.user_message or type(exc).__name__}") from None
    except stripe.StripeError as exc:
        status = exc.http_status
        if status is not None and status < 400:  # the SDK could not parse a 2xx body
            raise TransientError(f"the answer is not valid JSON (HTTP {status})") from None
        if status is None or status >= 500:
            raise TransientError(f"server error (HTTP {status})") from None
        raise Refused(f"HTTP {status}: {exc.user_message or type(exc).__name__}") from None


class _Fields:
    """Reads documented fields off one API object; a missing one is a Problem, not a crash."""

    def __init__(self, ctx: PullContext, record: Mapping[str, Any], kind: str):
        self.ctx, self.record, self.kind = ctx, record, kind
        self.rid = str(record.get("id", "?"))

    def need(self, name: str) -> Any:
        if name not in self.record:
            self.ctx.sink.problem(self.rid, name, f"field '{name}' missing from the {self.kind} in the API answer")
            return None
        return self.record[name]

    def get(self, name: str) -> Any:
        value = self.record.get(name)
        return value.get("id") if isinstance(value, dict) else value


def _metadata(obj: Mapping[str, Any], keys: Sequence[str], prefix: str) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    return {f"{prefix}[{k}]": meta.get(k) for k in keys}


def _meta_columns(keys: Sequence[str], prefix: str) -> list[str]:
    return [f"{prefix}[{k}]" for k in keys]


@dataclass(frozen=True)
class _Resource:
    service: str  # attribute of client.v1
    kind: str  # object name in messages
    expand: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Deletions:
    """How a stream learns, from the Events API, what left Stripe after it was listed (list endpoints
    filter on `created` only and never return a deleted object)."""

    removed: tuple[str, ...] = ()  # event types whose object no longer exists: it leaves the state
    replaced: tuple[str, ...] = ()  # event types whose object still exists, changed (a subscription canceled)


# A deleted customer or (draft) invoice is gone; a "deleted" subscription is canceled, and stays listed
# (`status=all`) as canceled: its event's object replaces the version held.
DELETIONS = {"customers": _Deletions(removed=("customer.deleted",)),
             "invoices": _Deletions(removed=("invoice.deleted",)),
             "invoice_lines": _Deletions(removed=("invoice.deleted",)),
             "subscriptions": _Deletions(replaced=("customer.subscription.deleted",))}

BALANCE_COLUMNS = ("balance_transaction_id", "created", "available_on", "currency", "gross", "fee", "net",
                   "reporting_category", "type", "status", "source_id", "source_object", "description",
                   "customer_id", "charge_id", "payment_intent_id", "invoice_id")
LINK_COLUMNS = ("payout_id", "balance_transaction_id")
CHARGE_COLUMNS = ("id", "created", "amount", "currency", "status", "customer", "invoice", "payment_intent",
                  "failure_code", "failure_message")
PAYOUT_COLUMNS = ("id", "created", "arrival_date", "amount", "currency", "status", "automatic", "method")
CUSTOMER_COLUMNS = ("id", "created", "name", "email", "delinquent")
INVOICE_COLUMNS = ("id", "number", "created", "customer", "subscription", "status", "period_start", "period_end",
                   "currency", "subtotal", "discount", "tax", "total", "amount_paid")
LINE_COLUMNS = ("invoice", "id", "created", "sku", "price", "product", "quantity", "unit_amount", "amount",
                "discount", "tax", "currency", "period_start", "period_end", "proration", "kind",
                "subscription", "subscription_item")
SUBSCRIPTION_COLUMNS = ("id", "subscription", "item", "created", "customer", "status", "sku", "price", "product",
                        "quantity", "unit_amount", "currency", "interval", "start_date", "end_date",
                        "billing_anchor", "trial_end", "discount_percent", "discount_end", "coupon")


class StripeConnector(Connector):
    name = "stripe_api"
    doc = ("Stripe API through the official SDK: balance transactions, failed charges, payouts, customers, "
           "and Stripe Billing's invoices, invoice lines and subscriptions. Minor units, Unix timestamps.")
    options_model = StripeOptions
    streams: ClassVar[Mapping[str, Stream]] = {s.name: s for s in (
        Stream("balance_transactions", "balance transactions with their charge, customer, invoice, metadata and "
               "payout (as the itemized balance report).", "gateway_transactions", "balance_transaction_id",
               key=("balance_transaction_id",),
               columns={"txn_id": ("source_id", "balance_transaction_id"), "type": "reporting_category",
                        "charge_id": "charge_id", "customer_id": "customer_id", "invoice_ref": "invoice_id",
                        "gross": "gross", "fee": "fee", "net": "net", "currency": "currency",
                        "created_at": "created", "payout_id": "automatic_payout_id"},
               constants={"status": "succeeded"}, value_maps={"type": BALANCE_CATEGORIES},
               part_keys={"payout_links": ("balance_transaction_id",)}),
        Stream("failed_charges", "charges whose status is failed (they never reach the balance).",
               "gateway_transactions", "id", key=("id",),
               columns={"txn_id": "id", "charge_id": "id", "status": "status", "customer_id": "customer",
                        "invoice_ref": "invoice", "gross": "amount", "currency": "currency", "created_at": "created"},
               constants={"type": "charge"}, value_maps={"status": PAYMENT_STATUSES}),
        Stream("payouts", "payouts to the bank account.", "payouts", "id", key=("id",),
               columns={"payout_id": "id", "amount": "amount", "currency": "currency",
                        "arrival_date": "arrival_date", "status": "status"}),
        Stream("customers", "customers (Stripe Billing).", "customers", "id", key=("id",),
               columns={"customer_id": "id", "gateway_customer_id": "id", "name": "name", "email": "email"}),
        Stream("invoices", "invoices (Stripe Billing); discount is the sum of total_discount_amounts.",
               "invoices", "id", key=("id",),
               columns={"invoice_id": "id", "customer_id": "customer", "subscription_id": "subscription",
                        "status": "status", "issued_at": "created", "period_start": "period_start",
                        "period_end": "period_end", "currency": "currency", "subtotal": "subtotal",
                        "discount": "discount", "tax": "tax", "total": "total", "amount_paid": "amount_paid"}),
        Stream("invoice_lines", "the lines of every invoice (the embedded first page, the rest from "
               "`invoices/{id}/lines`); sku per `sku_from`; discount and tax summed from discount_amounts and "
               "taxes (tax_amounts on older API versions); an invoice read again replaces all its lines.",
               "invoice_lines", "id", key=("invoice",),
               columns={"invoice_id": "invoice", "line_id": "id", "sku": "sku", "quantity": "quantity",
                        "unit_amount": "unit_amount", "amount": "amount", "discount": "discount", "tax": "tax",
                        "currency": "currency", "period_start": "period_start", "period_end": "period_end",
                        "proration": "proration", "kind": "kind"}),
        Stream("subscriptions", "subscriptions of every status (`status=all`), one row per item: the "
               "subscription id when it has one item, `sub_.../si_...` when several (contract_id is the "
               "subscription either way); interval from recurring.interval x interval_count (month, 3 months "
               "= quarter, year); statuses mapped (past_due, unpaid -> active; incomplete -> paused; "
               "incomplete_expired -> canceled); end_date = ended_at, else cancel_at; the first percent-off "
               "discount as discount_percent/discount_end/coupon; billing_anchor = billing_cycle_anchor's day "
               "(UTC). A subscription read again replaces all its items.",
               "subscriptions", "id", key=("subscription",),
               columns={"subscription_id": "id", "contract_id": "subscription", "customer_id": "customer",
                        "sku": "sku", "quantity": "quantity", "unit_amount": "unit_amount", "currency": "currency",
                        "interval": "interval", "start_date": "start_date", "end_date": "end_date",
                        "status": "status", "billing_anchor": "billing_anchor", "trial_end": "trial_end",
                        "discount_percent": "discount_percent", "discount_end": "discount_end", "coupon": "coupon"},
               value_maps={"status": SUBSCRIPTION_STATUSES, "interval": INTERVALS}),
    )}

    # --- calls ---------------------------------------------------------------------------------

    def _client(self, opts: StripeOptions) -> Any:
        import stripe

        kwargs: dict[str, Any] = {"max_network_retries": 0}
        if opts.api_base:
            kwargs["base_addresses"] = {"api": opts.api_base.rstrip("/")}
        if opts.stripe_account:
            kwargs["stripe_account"] = opts.stripe_account
        return stripe.StripeClient(opts.api_key.get_secret_value(), **kwargs)

    def _pages(self, ctx: PullContext, client: Any, res: _Resource,
               params: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
        """Pages of a list endpoint (newest first, `starting_after` cursor) until has_more is false."""
        # `raw_request` keeps the SDK's authentication, API version, parameter encoding and typed errors
        # but skips building StripeObjects (~4 ms per charge): pages stay plain JSON dicts.
        url = f"/v1/{res.service}"
        after: str | None = None
        page_no = 0
        while True:
            p: dict[str, Any] = {**params, "limit": ctx.options.page_size}
            if res.expand:
                p["expand"] = [f"data.{e}" for e in res.expand]
            if after:
                p["starting_after"] = after
            page_no += 1

            def fetch(p: dict[str, Any] = p) -> Any:
                return _translate(lambda: client.raw_request("get", url, **p))

            body = ctx.call(f"listing {res.kind}s (page {page_no})", fetch).data
            if not isinstance(body, dict) or not isinstance(body.get("data"), list):
                raise ConnectorError(ctx.source, f"listing {res.kind}s (page {page_no}): the answer is not a "
                                     "Stripe list object (no `data` array)")
            data = [obj for obj in body["data"] if isinstance(obj, dict)]
            if data:
                yield data
            if not body.get("has_more") or not data or ctx.enough():
                return
            after = str(data[-1].get("id"))

    @staticmethod
    def _created_filter(ctx: PullContext, cursor_key: str) -> dict[str, Any]:
        if ctx.cursor and ctx.cursor.get(cursor_key) is not None:
            since = int(ctx.cursor[cursor_key]) - ctx.options.lookback_days * DAY
            return {"created": {"gte": since}}
        return {}

    # --- streams -------------------------------------------------------------------------------

    def pull(self, ctx: PullContext) -> dict[str, Any]:
        client = self._client(ctx.options)
        pull = {"balance_transactions": self._balance, "failed_charges": self._failed_charges,
                "payouts": self._payouts, "customers": self._customers, "invoices": self._invoices,
                "invoice_lines": self._invoice_lines, "subscriptions": self._subscriptions}
        return pull[ctx.stream.name](ctx, client)

    def _simple(self, ctx: PullContext, client: Any, res: _Resource, columns: Sequence[str],
                row: Callable[[_Fields], dict[str, Any] | list[dict[str, Any]] | None],
                params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        ctx.sink.columns(MAIN, columns)
        deletions = DELETIONS.get(ctx.stream.name)
        changed: dict[str, dict[str, Any]] = {}
        event_cursor: dict[str, Any] = {}
        if deletions is not None:
            changed, event_cursor = self._deletion_events(ctx, client, deletions)
        newest = ctx.cursor.get("created") if ctx.cursor else None
        for page in self._pages(ctx, client, res, {**(params or {}), **self._created_filter(ctx, "created")}):
            rows = []
            for obj in page:
                changed.pop(str(obj.get("id")), None)  # listed now: its newest version is this one
                f = _Fields(ctx, obj, res.kind)
                created = f.need("created")
                if isinstance(created, int):
                    newest = created if newest is None else max(int(newest), created)
                r = row(f)
                if isinstance(r, list):
                    rows.extend(r)
                elif r is not None:
                    rows.append(r)
            for r in rows:
                flag_row(ctx, r, ctx.options.currencies)
            ctx.sink.write(MAIN, rows)
        replaced: list[dict[str, Any]] = []
        for obj in changed.values():
            r = row(_Fields(ctx, obj, res.kind))
            replaced.extend(r if isinstance(r, list) else [r] if r is not None else [])
        for r in replaced:
            flag_row(ctx, r, ctx.options.currencies)
        ctx.sink.write(MAIN, replaced)
        return {"created": newest, **event_cursor}

    def _deletion_events(self, ctx: PullContext, client: Any,
                         deletions: _Deletions) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
        """Read the deletion events since the last pull's newest (Stripe keeps 30 days of events): a removed
        object's key goes to the sink's deletions; a replaced object is returned (id -> newest version)
        to be written unless the listing brings it. Also the new event cursor."""
        newest = ctx.cursor.get("event_created") if ctx.cursor else None
        params: dict[str, Any] = {"types": [*deletions.removed, *deletions.replaced]}
        if newest is not None:
            params["created"] = {"gte": int(newest)}  # inclusive: an event of the cursor's second comes again
        changed: dict[str, dict[str, Any]] = {}
        for page in self._pages(ctx, client, _Resource("events", "event"), params):
            for event in page:  # newest first
                created = event.get("created")
                if isinstance(created, int):
                    newest = created if newest is None else max(int(newest), created)
                obj = _obj(_obj(event.get("data")).get("object"))
                oid = obj.get("id")
                if oid is None:
                    continue
                if event.get("type") in deletions.removed:
                    ctx.sink.delete(MAIN, {ctx.stream.key[0]: oid})
                elif event.get("type") in deletions.replaced:
                    changed.setdefault(str(oid), obj)
        return changed, {"event_created": newest}

    def _failed_charges(self, ctx: PullContext, client: Any) -> dict[str, Any]:
        keys = ctx.options.metadata_keys

        def row(f: _Fields) -> dict[str, Any] | None:
            if f.get("status") != "failed":
                return None
            return {"id": f.need("id"), "created": f.need("created"), "amount": f.need("amount"),
                    "currency": f.need("currency"), "status": f.need("status"), "customer": f.get("customer"),
                    "invoice": f.get("invoice"), "payment_intent": f.get("payment_intent"),
                    "failure_code": f.get("failure_code"), "failure_message": f.get("failure_message"),
                    **_metadata(f.record, keys, "metadata")}

        return self._simple(ctx, client, _Resource("charges", "charge"),
                            [*CHARGE_COLUMNS, *_meta_columns(keys, "metadata")], row)

    def _payouts(self, ctx: PullContext, client: Any) -> dict[str, Any]:
        def row(f: _Fields) -> dict[str, Any]:
            return {"id": f.need("id"), "created": f.need("created"), "arrival_date": f.need("arrival_date"),
                    "amount": f.need("amount"), "currency": f.need("currency"), "status": f.need("status"),
                    "automatic": f.get("automatic"), "method": f.get("method")}

        return self._simple(ctx, client, _Resource("payouts", "payout"), PAYOUT_COLUMNS, row)

    def _customers(self, ctx: PullContext, client: Any) -> dict[str, Any]:
        keys = ctx.options.metadata_keys

        def row(f: _Fields) -> dict[str, Any]:
            return {"id": f.need("id"), "created": f.need("created"), "name": f.get("name"),
                    "email": f.get("email"), "delinquent": f.get("delinquent"),
                    **_metadata(f.record, keys, "metadata")}

        return self._simple(ctx, client, _Resource("customers", "customer"),
                            [*CUSTOMER_COLUMNS, *_meta_columns(keys, "metadata")], row)

    def _invoices(self, ctx: PullContext, client: Any) -> dict[str, Any]:
        keys = ctx.options.metadata_keys

        def row(f: _Fields) -> dict[str, Any]:
            r = f.record
            discounts = r.get("total_discount_amounts") or []
            taxes = r.get("total_taxes") or []
            tax = r["tax"] if "tax" in r else sum(int(t.get("amount") or 0) for t in taxes)
            return {"id": f.need("id"), "number": f.get("number"), "created": f.need("created"),
                    "customer": f.need("customer"), "subscription": _invoice_subscription(r),
                    "status": f.need("status"), "period_start": f.get("period_start"),
                    "period_end": f.get("period_end"), "currency": f.need("currency"),
                    "subtotal": f.get("subtotal"), "discount": sum(int(d.get("amount") or 0) for d in discounts),
                    "tax": tax, "total": f.need("total"), "amount_paid": f.get("amount_paid"),
                    **_metadata(r, keys, "metadata")}

        return self._simple(ctx, client, _Resource("invoices", "invoice"),
                            [*INVOICE_COLUMNS, *_meta_columns(keys, "metadata")], row)

    def _invoice_lines(self, ctx: PullContext, client: Any) -> dict[str, Any]:
        def rows(f: _Fields) -> list[dict[str, Any]]:
            invoice = f.need("id")
            lines = f.record.get("lines")
            if not isinstance(lines, dict) or not isinstance(lines.get("data"), list):
                f.need("lines")  # named as missing: the invoice's lines cannot be read
                return []
            data: list[dict[str, Any]] = [ln for ln in lines["data"] if isinstance(ln, dict)]
            if lines.get("has_more"):  # the embedded list is a first page: read them all
                data = [ln for page in self._pages(ctx, client, _Resource(f"invoices/{invoice}/lines",
                                                                          "invoice line"), {}) for ln in page]
            return [self._line_row(ctx, f, ln) for ln in data]

        return self._simple(ctx, client, _Resource("invoices", "invoice"), LINE_COLUMNS, rows)

    def _line_row(self, ctx: PullContext, inv: _Fields, line: dict[str, Any]) -> dict[str, Any]:
        f = _Fields(ctx, line, "invoice line")
        price, product = _line_price(line)
        parent = _obj(line.get("parent"))
        details = _obj(parent.get("subscription_item_details") or parent.get("invoice_item_details"))
        proration = line.get("proration", details.get("proration"))
        quantity = f.need("quantity")
        amount = f.need("amount")
        unit = _unit_amount(line, price, quantity, amount)
        taxes = line.get("taxes") if line.get("taxes") is not None else line.get("tax_amounts")
        recurring = price.get("recurring") if isinstance(price, dict) else None
        kind = ("proration" if proration else "usage" if isinstance(recurring, dict)
                and recurring.get("usage_type") == "metered" else "recurring" if recurring else None)
        period = _obj(line.get("period"))
        if not period:
            f.need("period")
        return {"invoice": inv.rid, "id": f.need("id"), "created": inv.record.get("created"),
                "sku": _sku(ctx, price, product), "price": price.get("id") if isinstance(price, dict) else price,
                "product": product, "quantity": quantity, "unit_amount": unit, "amount": amount,
                "discount": sum(int(d.get("amount") or 0) for d in line.get("discount_amounts") or []
                                if isinstance(d, dict)),
                "tax": None if taxes is None else sum(int(t.get("amount") or 0) for t in taxes if isinstance(t, dict)),
                "currency": f.need("currency"), "period_start": period.get("start"),
                "period_end": period.get("end"), "proration": proration, "kind": kind,
                "subscription": _id(line.get("subscription") or details.get("subscription")),
                "subscription_item": _id(line.get("subscription_item") or details.get("subscription_item"))}

    def _subscriptions(self, ctx: PullContext, client: Any) -> dict[str, Any]:
        def rows(f: _Fields) -> list[dict[str, Any]]:
            sub = f.need("id")
            items = f.record.get("items")
            if not isinstance(items, dict) or not isinstance(items.get("data"), list):
                f.need("items")
                return []
            data: list[dict[str, Any]] = [i for i in items["data"] if isinstance(i, dict)]
            if items.get("has_more"):
                data = [i for page in self._pages(ctx, client, _Resource("subscription_items", "subscription item"),
                                                  {"subscription": sub}) for i in page]
            return [self._item_row(ctx, f, item, len(data)) for item in data]

        return self._simple(ctx, client, _Resource("subscriptions", "subscription", expand=("discounts",)),
                            SUBSCRIPTION_COLUMNS, rows, {"status": "all"})

    def _item_row(self, ctx: PullContext, sub: _Fields, item: dict[str, Any], items: int) -> dict[str, Any]:
        f = _Fields(ctx, item, "subscription item")
        f.rid = sub.rid if items == 1 else f"{sub.rid}/{f.rid}"  # as the row's id: problems name the row
        head = _Fields(ctx, sub.record, "subscription")
        head.rid = f.rid
        price = _obj(item.get("price"))
        if not price:
            f.need("price")
        recurring = _obj(price.get("recurring"))
        every, count = recurring.get("interval"), recurring.get("interval_count") or 1
        interval = None if every is None else every if count == 1 else f"{every}*{count}"
        r = sub.record
        percent, discount_end, coupon = _percent_discount(r)
        anchor = r.get("billing_cycle_anchor")
        return {"id": f.rid, "subscription": sub.rid, "item": item.get("id"),
                "created": r.get("created"), "customer": head.need("customer"), "status": head.need("status"),
                "sku": _sku(ctx, price, price.get("product")), "price": price.get("id"),
                "product": _id(price.get("product")), "quantity": item.get("quantity", 1),
                "unit_amount": price.get("unit_amount") if price.get("unit_amount") is not None
                else _whole(price.get("unit_amount_decimal")),
                "currency": price.get("currency") or head.need("currency"),
                "interval": interval, "start_date": head.need("start_date"),
                "end_date": r.get("ended_at") or r.get("cancel_at"),
                "billing_anchor": datetime.fromtimestamp(anchor, UTC).day if isinstance(anchor, int) else None,
                "trial_end": r.get("trial_end"), "discount_percent": percent, "discount_end": discount_end,
                "coupon": coupon}

    def _balance(self, ctx: PullContext, client: Any) -> dict[str, Any]:
        keys = ctx.options.metadata_keys
        ctx.sink.columns("payout_links", LINK_COLUMNS)

        def row(f: _Fields) -> dict[str, Any] | None:
            if f.record.get("type") == "payout":  # the itemized report leaves payouts out: they are a stream
                return None
            return self._balance_row(f, keys)

        cursor = self._simple(ctx, client, _Resource("balance_transactions", "balance transaction",
                                                     expand=("source",)),
                              [*BALANCE_COLUMNS, *_meta_columns(keys, "payment_metadata")], row)
        return {**cursor, "payout_created": self._payout_links(ctx, client)}

    @staticmethod
    def _balance_row(f: _Fields, keys: Sequence[str]) -> dict[str, Any]:
        source = f.need("source")
        src: dict[str, Any] = source if isinstance(source, dict) else {}
        kind = src.get("object")
        charge = src.get("id") if kind == "charge" else src.get("charge")
        customer = src.get("customer")
        return {
            "balance_transaction_id": f.need("id"), "created": f.need("created"),
            "available_on": f.get("available_on"), "currency": f.need("currency"), "gross": f.need("amount"),
            "fee": f.need("fee"), "net": f.need("net"), "reporting_category": f.need("reporting_category"),
            "type": f.get("type"), "status": f.get("status"),
            "source_id": src.get("id") if src else source, "source_object": kind,
            "description": f.get("description"),
            "customer_id": customer.get("id") if isinstance(customer, dict) else customer,
            "charge_id": charge.get("id") if isinstance(charge, dict) else charge,
            "payment_intent_id": src.get("payment_intent"), "invoice_id": src.get("invoice"),
            **_metadata(src, keys, "payment_metadata"),
        }

    def _payout_links(self, ctx: PullContext, client: Any) -> Any:
        """Which payout settled which balance transaction: `balance_transactions?payout=po_...` per payout."""
        newest = ctx.cursor.get("payout_created") if ctx.cursor else None
        payouts = _Resource("payouts", "payout")
        linked = _Resource("balance_transactions", "balance transaction")
        for page in self._pages(ctx, client, payouts, self._created_filter(ctx, "payout_created")):
            for po in page:
                pid = po.get("id")
                created = po.get("created")
                if isinstance(created, int):
                    newest = created if newest is None else max(int(newest), created)
                if not pid or not po.get("automatic", True):
                    continue
                for links in self._pages(ctx, client, linked, {"payout": pid}):
                    ctx.sink.write("payout_links", [{"payout_id": pid, "balance_transaction_id": t.get("id")}
                                                    for t in links if t.get("type") != "payout"])
        return newest

    def finalize_sql(self, ctx: PullContext, parts: Mapping[str, str]) -> str:
        if ctx.stream.name != "balance_transactions":
            return super().finalize_sql(ctx, parts)
        # Refunds and disputes carry the charge's customer, invoice and metadata, as in the report.
        inherit = ["customer_id", "invoice_id", "payment_intent_id",
                   *_meta_columns(ctx.options.metadata_keys, "payment_metadata")]
        ch_cols = ", ".join(f'"{c}" AS "c_{c}"' for c in inherit)
        replace = ", ".join(f'coalesce(b."{c}", ch."c_{c}") AS "{c}"' for c in inherit)
        return (
            f"WITH b AS (SELECT * FROM read_parquet({parts[MAIN]})), "
            f"ch AS (SELECT charge_id AS c_charge, {ch_cols} FROM b WHERE source_object = 'charge' "
            f"QUALIFY row_number() OVER (PARTITION BY charge_id ORDER BY created DESC) = 1), "
            f"l AS (SELECT * FROM read_parquet({parts['payout_links']}) "
            f"QUALIFY row_number() OVER (PARTITION BY balance_transaction_id ORDER BY payout_id) = 1) "
            f"SELECT b.* REPLACE ({replace}), l.payout_id AS automatic_payout_id FROM b "
            f"LEFT JOIN ch ON ch.c_charge = b.charge_id "
            f"LEFT JOIN l ON l.balance_transaction_id = b.balance_transaction_id "
            f"ORDER BY b.balance_transaction_id"
        )


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _id(value: Any) -> Any:
    return value.get("id") if isinstance(value, dict) else value


def _invoice_subscription(invoice: Mapping[str, Any]) -> Any:
    """`subscription` (API versions before 2025-03) or `parent.subscription_details.subscription`."""
    if invoice.get("subscription") is not None:
        return _id(invoice["subscription"])
    parent = _obj(invoice.get("parent"))
    details = _obj(parent.get("subscription_details")) if parent.get("type") == "subscription_details" else {}
    return _id(details.get("subscription"))


def _line_price(line: Mapping[str, Any]) -> tuple[Any, Any]:
    """(price, product) of a line: `price` on older API versions, `pricing.price_details` on newer."""
    price = line.get("price")
    if isinstance(price, dict):
        return price, _id(price.get("product"))
    pricing = line.get("pricing")
    details = pricing.get("price_details") if isinstance(pricing, dict) else None
    if isinstance(details, dict):
        return details.get("price"), _id(details.get("product"))
    return price, None


def _sku(ctx: PullContext, price: Any, product: Any) -> Any:
    """The sku per `sku_from`; a price given only by its id has no lookup_key to offer."""
    mode = ctx.options.sku_from
    if mode == "product":
        return _id(product)
    if not isinstance(price, dict):
        return price if mode == "price" else None
    return price.get("id") if mode == "price" else price.get("lookup_key")


def _whole(text: Any) -> Any:
    """A `*_decimal` amount (minor units as text) as a whole number when it is one; else the text, which
    normalization then quarantines as not a whole number."""
    if text is None:
        return None
    try:
        value = Decimal(str(text))
    except InvalidOperation:
        return text
    return int(value) if value == value.to_integral_value() else text


def _unit_amount(line: Mapping[str, Any], price: Any, quantity: Any, amount: Any) -> Any:
    if isinstance(price, dict) and price.get("unit_amount") is not None:
        return price["unit_amount"]
    pricing = line.get("pricing")
    if isinstance(pricing, dict) and pricing.get("unit_amount_decimal") is not None:
        return _whole(pricing["unit_amount_decimal"])
    if isinstance(amount, int) and isinstance(quantity, int) and quantity and amount % quantity == 0:
        return amount // quantity
    return None


def _percent_discount(sub: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    """(percent_off, end, coupon id) of the subscription's first percent-off discount (`discounts`
    expanded, or the older single `discount`)."""
    found = [d for d in (sub.get("discounts") or []) if isinstance(d, dict)]
    if isinstance(sub.get("discount"), dict):
        found.append(sub["discount"])
    for d in found:
        coupon = d.get("coupon")
        if coupon is None and isinstance(d.get("source"), dict):
            coupon = d["source"].get("coupon")
        if isinstance(coupon, dict) and coupon.get("percent_off") is not None:
            return coupon["percent_off"], d.get("end"), coupon.get("id")
    return None, None, None


register_connector(StripeConnector())

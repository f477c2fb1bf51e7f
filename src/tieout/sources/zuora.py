"""Zuora connector: the v1 REST Object Query API (`GET /object-query/<object>`) over httpx, with
OAuth 2.0 client credentials; plus Zuora's Data Source export CSVs (`Object.Field` headers).

Streams: accounts, subscriptions (one row per recurring rate plan charge), invoices, invoice items,
payments with refunds. Incremental on `updatedDate` (`filter[]=updateddate.GE:`, sorted ascending,
`cursor`/`nextPage` pages). Amounts are decimal major units, read as `Decimal` and written as text:
never a float. The official `zuora-sdk` is not used: see docs/connectors.md (Zuora).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from tieout.config import SourceConfig
from tieout.engines.base import Engine
from tieout.sources.base import RawFrame, SourceFormat, register_format
from tieout.sources.connectors import MAIN, Connector, ConnectorOptions, PullContext, Stream, register_connector
from tieout.sources.credentials import ClientCredentials, register_secret
from tieout.sources.retry import AuthFailure, ConnectorError, Refused, TransientError, retry_after_seconds
from tieout.sources.tabular import read_csv

# Keys are lower case: normalization lower-cases a value before its map.
INVOICE_STATUSES = {"draft": "draft", "posted": "open", "paid": "paid", "canceled": "void", "cancelled": "void"}
SUBSCRIPTION_STATUSES = {"active": "active", "cancelled": "canceled", "suspended": "paused", "expired": "canceled"}
BILLING_PERIODS = {"month": "month", "quarter": "quarter", "annual": "year"}
PAYMENT_METHODS = {"creditcard": "card", "creditcardreferencetransaction": "card", "debitcard": "card",
                   "applepay": "card", "googlepay": "card", "ach": "ach", "banktransfer": "ach",
                   "wiretransfer": "wire", "check": "check", "cash": "cash", "paypal": "other", "other": "other"}
NOT_YET_CONTRACTED = {"Draft", "Pending Activation", "Pending Acceptance"}  # not billed: no subscription row
TOKEN_MARGIN_SECONDS = 60.0  # a token this close to expiry is renewed before use


class ZuoraOptions(ConnectorOptions, ClientCredentials):
    """`options:` of a Zuora connector source: the client id and secret of an API user (OAuth 2.0 client
    credentials)."""

    grants: ClassVar[tuple[str, ...]] = ("client_credentials",)
    base_url: str = Field("https://rest.zuora.com", description="REST endpoint of the tenant: "
                          "https://rest.zuora.com (US), https://rest.eu.zuora.com (EU), "
                          "https://rest.apisandbox.zuora.com (sandbox), ... or a local test server.")
    page_size: int = Field(50, ge=1, le=99, description="Records per Object Query page (Zuora allows 1-99).")
    custom_fields: list[str] = Field(default_factory=list, description="Custom fields (`Name__c`) of the "
                                     "stream's main object to keep as columns of the same name, for `columns:`.")
    timeout_seconds: float = Field(60.0, gt=0, description="Timeout of one HTTP request.")


# --- calls ---------------------------------------------------------------------------------------------


@dataclass
class _Token:
    value: str
    expires: float  # time.monotonic() after which it is not used


_TOKENS: dict[tuple[str, str], _Token] = {}  # (base URL, digest of the credentials): reused until expiry
_TOKENS_LOCK = threading.Lock()


def _reason(response: Any) -> str:
    """Zuora's own words from an error answer (`reasons[0].message`, `message` or OAuth's `error`)."""
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase or "no reason given"
    if isinstance(body, dict):
        reasons = body.get("reasons")
        if isinstance(reasons, list) and reasons and isinstance(reasons[0], dict) and reasons[0].get("message"):
            return str(reasons[0]["message"])
        for key in ("message", "error_description", "error"):
            if body.get(key):
                return str(body[key])
    return response.reason_phrase or "no reason given"


def _classify(response: Any) -> Any:
    """A parsed 2xx body, or the failure the status means (transient, terminal or refused)."""
    status = response.status_code
    if 200 <= status < 300:
        try:
            return json.loads(response.content, parse_float=Decimal)  # exact amounts: never a float
        except ValueError:
            raise TransientError(f"the answer is not valid JSON (HTTP {status})") from None
    if status in (401, 403):
        raise AuthFailure(_reason(response), status)
    if status == 429 or status >= 500:
        wait = retry_after_seconds(response.headers.get("Retry-After"))
        raise TransientError(f"HTTP {status} ({_reason(response)})", wait)
    raise Refused(f"HTTP {status}: {_reason(response)}")


class _Session:
    """One pull's HTTP client: bearer token from /oauth/token, reused until it expires; a data call
    answered 401 gets one new token and one more try, a second 401 is terminal."""

    def __init__(self, ctx: PullContext):
        import httpx

        opts: ZuoraOptions = ctx.options
        self.ctx = ctx
        self.http = httpx.Client(base_url=opts.base_url.rstrip("/"), timeout=opts.timeout_seconds)
        self.client = (opts.secret("client_id"), opts.secret("client_secret"))
        # the cache key carries a digest of the credentials, not the credentials
        self.key = (opts.base_url.rstrip("/"), hashlib.sha256("\0".join(self.client).encode()).hexdigest())

    def close(self) -> None:
        self.http.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            return self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise TransientError(f"connection failed: {type(exc).__name__}") from None

    def _token(self, renew: bool = False) -> str:
        with _TOKENS_LOCK:
            held = _TOKENS.get(self.key)
        if held is not None and not renew and time.monotonic() < held.expires:
            return held.value
        response = self._send("POST", "/oauth/token", data={
            "client_id": self.client[0], "client_secret": self.client[1], "grant_type": "client_credentials"})
        if response.status_code in (400, 401, 403):  # OAuth answers a wrong client with 400 or 401
            raise AuthFailure(f"the token request was refused: {_reason(response)}", response.status_code)
        body = _classify(response)
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise TransientError("the token answer has no access_token")
        register_secret(token)
        lifetime = body.get("expires_in")
        seconds = float(lifetime) if isinstance(lifetime, int | Decimal) else 0.0
        with _TOKENS_LOCK:
            _TOKENS[self.key] = _Token(token, time.monotonic() + max(seconds - TOKEN_MARGIN_SECONDS, 0.0))
        return token

    def get(self, path: str, params: Sequence[tuple[str, str]], what: str) -> Any:
        def attempt() -> Any:
            response = self._send("GET", path, params=list(params),
                                  headers={"Authorization": f"Bearer {self._token()}"})
            if response.status_code == 401:  # expired or revoked early: one new token, one more try
                response = self._send("GET", path, params=list(params),
                                      headers={"Authorization": f"Bearer {self._token(renew=True)}"})
            return _classify(response)

        return self.ctx.call(what, attempt)


# --- reading records ----------------------------------------------------------------------------------


class _Fields:
    """Reads documented fields off one Object Query record; a missing one is a Problem, not a crash."""

    def __init__(self, ctx: PullContext, record: Mapping[str, Any], kind: str):
        self.ctx, self.record, self.kind = ctx, record, kind
        self.rid = str(record.get("id", "?"))

    def missing(self, name: str) -> None:
        self.ctx.sink.problem(self.rid, name, f"field '{name}' missing from the {self.kind} in the API answer")

    def need(self, name: str) -> Any:
        if name not in self.record:
            self.missing(name)
            return None
        return self.record[name]

    def get(self, name: str) -> Any:
        return self.record.get(name)

    def nested(self, obj: str, name: str) -> Any:
        """`obj.name` of an expanded object (its absence is a problem: the expansion was asked for)."""
        inner = self.record.get(obj)
        if not isinstance(inner, dict) or name not in inner:
            self.missing(f"{obj}.{name}")
            return None
        return inner[name]

    def custom(self, names: Sequence[str]) -> dict[str, Any]:
        return {n: self.record.get(n) for n in names}


def _utc(value: Any) -> datetime | None:
    """An `updatedDate` as an aware UTC datetime (Zuora sends ISO 8601 with the tenant's offset)."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


class _Newest:
    """The high-water mark of `updatedDate` over a pull, starting from the stored cursor."""

    def __init__(self, ctx: PullContext, key: str):
        stored = ctx.cursor.get(key) if ctx.cursor else None
        self.value = _utc(stored)

    def see(self, f: _Fields) -> None:
        raw = f.need("updatedDate")
        when = _utc(raw)
        if when is None:
            if raw is not None:
                f.ctx.sink.problem(f.rid, "updatedDate", f"updatedDate {raw!r} is not an ISO 8601 date-time")
            return
        if self.value is None or when > self.value:
            self.value = when

    def text(self) -> str | None:
        return None if self.value is None else self.value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _whole(value: Any) -> Any:
    """A quantity: Zuora sends decimals (`40.0`); a whole one is written as an integer."""
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    return value


def _day_after(f: _Fields, name: str, value: Any) -> Any:
    """Zuora's inclusive service end date as the canonical exclusive one (the next day)."""
    if not isinstance(value, str):
        return value
    try:
        return (date.fromisoformat(value[:10]) + timedelta(days=1)).isoformat()
    except ValueError:
        f.ctx.sink.problem(f.rid, name, f"{name} {value!r} is not a date")
        return value  # left as sent: normalization quarantines it


def _is_discount(item: Mapping[str, Any]) -> bool:
    # Object Query says "Discount"; Zuora's database-style exports say 1 (Charge is 0).
    return str(item.get("processingType", "")).strip().lower() in ("discount", "1")


# --- streams -----------------------------------------------------------------------------------------

ACCOUNT_COLUMNS = ("id", "accountNumber", "name", "status", "currency", "crmId", "billToEmail", "batch", "updatedDate")
SUBSCRIPTION_COLUMNS = ("chargeNumber", "subscriptionRowId", "subscriptionNumber", "subscriptionId", "accountNumber",
                        "productId", "chargeName", "chargeModel", "quantity", "price", "currency", "billingPeriod",
                        "effectiveStartDate", "effectiveEndDate", "status", "discountPercentage", "discountEndDate",
                        "updatedDate")
PRODUCT_COLUMNS = ("id", "sku", "name")
INVOICE_COLUMNS = ("id", "invoiceNumber", "accountNumber", "subscriptionNumber", "status", "settledStatus", "issuedAt",
                   "invoiceDate", "dueDate", "servicePeriodStart", "servicePeriodEnd", "currency", "subtotal",
                   "discount", "amountWithoutTax", "taxAmount", "amount", "balance", "amountPaid", "updatedDate")
ITEM_COLUMNS = ("id", "invoiceId", "invoiceNumber", "currency", "sku", "chargeName", "chargeNumber", "processingType",
                "appliedToInvoiceItemId", "quantity", "unitPrice", "chargeAmount", "taxAmount", "serviceStartDate",
                "serviceEndDate", "servicePeriodEnd", "subscriptionNumber", "updatedDate")
PAYMENT_COLUMNS = ("id", "object", "number", "type", "accountNumber", "invoiceId", "status", "method", "amount",
                   "currency", "effectiveDate", "referenceId", "gateway", "updatedDate")
NUMBER_COLUMNS = ("id", "invoiceNumber")


class ZuoraConnector(Connector):
    name = "zuora"
    doc = ("Zuora Billing through its v1 REST Object Query API (httpx, OAuth client credentials): accounts, "
           "subscriptions, invoices, invoice items, payments and refunds, incremental on updatedDate. Decimal "
           "major units, ISO 8601 dates.")
    options_model = ZuoraOptions
    streams: ClassVar[Mapping[str, Stream]] = {s.name: s for s in (
        Stream("accounts", "billing accounts: accountNumber is the customer id, the bill-to contact's work "
               "e-mail the e-mail.", "customers", "id", key=("id",),
               columns={"customer_id": "accountNumber", "name": "name", "email": "billToEmail", "crm_id": "crmId",
                        "status": "status"},
               amount_unit="major", date_formats=()),
        Stream("subscriptions", "latest subscription versions, one row per recurring rate plan charge (id: the "
               "subscription number, or NUMBER/CHARGE when it has several); price and currency of the first tier; "
               "sku from the product; a Discount-Percentage charge of the same rate plan gives discount_percent "
               "and discount_end. Draft and pending subscriptions are left out.", "subscriptions", "chargeNumber",
               key=("chargeNumber",),
               columns={"subscription_id": "subscriptionRowId", "contract_id": "subscriptionNumber",
                        "customer_id": "accountNumber", "sku": "sku", "quantity": "quantity", "unit_amount": "price",
                        "currency": "currency", "interval": "billingPeriod", "start_date": "effectiveStartDate",
                        "end_date": "effectiveEndDate", "status": "status", "discount_percent": "discountPercentage",
                        "discount_end": "discountEndDate"},
               value_maps={"interval": BILLING_PERIODS, "status": SUBSCRIPTION_STATUSES},
               amount_unit="major", date_formats=(), part_keys={"products": ("id",)}),
        Stream("invoices", "invoices with their items: subtotal is the sum of charge items, discount minus the "
               "sum of discount items, the period spans the items' service dates; a Posted invoice with no "
               "balance left is paid (Posted -> open, Canceled -> void).", "invoices", "id", key=("id",),
               columns={"invoice_id": "invoiceNumber", "customer_id": "accountNumber",
                        "subscription_id": "subscriptionNumber", "status": "settledStatus", "issued_at": "issuedAt",
                        "period_start": "servicePeriodStart", "period_end": "servicePeriodEnd", "currency": "currency",
                        "subtotal": "subtotal", "discount": "discount", "tax": "taxAmount", "total": "amount",
                        "amount_paid": "amountPaid"},
               value_maps={"status": INVOICE_STATUSES}, amount_unit="major", date_formats=()),
        Stream("invoice_items", "invoice items (charges; each discount item is folded into the discount of the "
               "item it applies to); the inclusive serviceEndDate becomes the exclusive period_end.",
               "invoice_lines", "id", key=("id",),
               columns={"invoice_id": "invoiceNumber", "line_id": "id", "sku": "sku", "quantity": "quantity",
                        "unit_amount": "unitPrice", "amount": "chargeAmount", "discount": "discount",
                        "currency": "currency", "period_start": "serviceStartDate", "period_end": "servicePeriodEnd",
                        "tax": "taxAmount"},
               amount_unit="major", date_formats=()),
        Stream("payments", "processed payments and refunds (other statuses are not money moved), with the "
               "invoice number of their first application and the gateway's reference id.", "payments", "id",
               key=("id",),
               columns={"payment_id": "number", "invoice_id": "invoiceNumber", "customer_id": "accountNumber",
                        "type": "type", "method": "method", "amount": "amount", "currency": "currency",
                        "received_at": "effectiveDate", "gateway_ref": "referenceId"},
               value_maps={"method": PAYMENT_METHODS}, amount_unit="major", date_formats=(),
               part_keys={"invoice_numbers": ("id",)}),
    )}

    def _pages(self, ctx: PullContext, session: _Session, obj: str, kind: str, newest_key: str,
               expand: Sequence[str] = (), fields: Sequence[str] = ()) -> Iterator[list[dict[str, Any]]]:
        """Object Query pages, oldest change first, from the stored cursor on (inclusive: a record
        changed in the cursor's second comes again and replaces itself)."""
        params: list[tuple[str, str]] = [("pageSize", str(ctx.options.page_size)), ("sort[]", "updateddate.ASC")]
        params += [("expand[]", e) for e in expand]
        params += [("fields[]", ",".join(fields))] if fields else []
        since = _utc(ctx.cursor.get(newest_key)) if ctx.cursor else None
        if since is not None:
            params.append(("filter[]", f"updateddate.GE:{since.strftime('%Y-%m-%dT%H:%M:%SZ')}"))
        cursor: str | None = None
        page_no = 0
        while True:
            page_no += 1
            body = session.get(f"/object-query/{obj}", params + ([("cursor", cursor)] if cursor else []),
                               f"listing {kind}s (page {page_no})")
            data = body.get("data") if isinstance(body, dict) else None
            if not isinstance(data, list):
                raise ConnectorError(ctx.source, f"listing {kind}s (page {page_no}): the answer is not an Object "
                                     "Query list (no `data` array)")
            records = [r for r in data if isinstance(r, dict)]
            if records:
                yield records
            nxt = body.get("nextPage")
            if not nxt or not records or ctx.enough():
                return
            cursor = str(nxt)

    def pull(self, ctx: PullContext) -> dict[str, Any]:
        session = _Session(ctx)
        pull: dict[str, Callable[[PullContext, _Session], dict[str, Any]]] = {
            "accounts": self._accounts, "subscriptions": self._subscriptions, "invoices": self._invoices,
            "invoice_items": self._invoice_items, "payments": self._payments}
        try:
            return pull[ctx.stream.name](ctx, session)
        finally:
            session.close()

    def _simple(self, ctx: PullContext, session: _Session, obj: str, kind: str, columns: Sequence[str],
                expand: Sequence[str], rows: Callable[[_Fields], list[dict[str, Any]]], part: str = MAIN,
                newest_key: str = "updatedDate", fields: Sequence[str] = ()) -> str | None:
        ctx.sink.columns(part, columns)
        newest = _Newest(ctx, newest_key)
        for page in self._pages(ctx, session, obj, kind, newest_key, expand, fields):
            out: list[dict[str, Any]] = []
            for record in page:
                f = _Fields(ctx, record, kind)
                newest.see(f)
                out += rows(f)
            ctx.sink.write(part, out)
        return newest.text()

    def _accounts(self, ctx: PullContext, session: _Session) -> dict[str, Any]:
        custom = ctx.options.custom_fields

        def rows(f: _Fields) -> list[dict[str, Any]]:
            bill_to = f.get("billTo")
            return [{"id": f.need("id"), "accountNumber": f.need("accountNumber"), "name": f.need("name"),
                     "status": f.get("status"), "currency": f.get("currency"), "crmId": f.get("crmId"),
                     "billToEmail": bill_to.get("workEmail") if isinstance(bill_to, dict) else None,
                     "batch": f.get("batch"), "updatedDate": f.get("updatedDate"), **f.custom(custom)}]

        newest = self._simple(ctx, session, "accounts", "account", [*ACCOUNT_COLUMNS, *custom], ["billto"], rows)
        return {"updatedDate": newest}

    def _subscriptions(self, ctx: PullContext, session: _Session) -> dict[str, Any]:
        custom = ctx.options.custom_fields

        def product(f: _Fields) -> list[dict[str, Any]]:
            return [{"id": f.need("id"), "sku": f.get("sku"), "name": f.get("name")}]

        products = self._simple(ctx, session, "products", "product", PRODUCT_COLUMNS, (), product,
                                part="products", newest_key="productsUpdatedDate")
        newest = self._simple(ctx, session, "subscriptions", "subscription", [*SUBSCRIPTION_COLUMNS, *custom],
                              ["account", "rateplans.rateplancharges.rateplanchargetiers"],
                              lambda f: _subscription_rows(f, custom))
        return {"updatedDate": newest, "productsUpdatedDate": products}

    def _invoices(self, ctx: PullContext, session: _Session) -> dict[str, Any]:
        custom = ctx.options.custom_fields
        newest = self._simple(ctx, session, "invoices", "invoice", [*INVOICE_COLUMNS, *custom],
                              ["account", "invoiceitems"], lambda f: [_invoice_row(f, custom)])
        return {"updatedDate": newest}

    def _invoice_items(self, ctx: PullContext, session: _Session) -> dict[str, Any]:
        custom = ctx.options.custom_fields

        def rows(f: _Fields) -> list[dict[str, Any]]:
            end = f.need("serviceEndDate")
            return [{"id": f.need("id"), "invoiceId": f.need("invoiceId"),
                     "invoiceNumber": f.nested("invoice", "invoiceNumber"), "currency": f.nested("invoice", "currency"),
                     "sku": f.get("sKU"), "chargeName": f.get("chargeName"), "chargeNumber": f.get("chargeNumber"),
                     "processingType": f.get("processingType"),
                     "appliedToInvoiceItemId": f.get("appliedToInvoiceItemId"),
                     "quantity": _whole(f.get("quantity")), "unitPrice": f.get("unitPrice"),
                     "chargeAmount": f.need("chargeAmount"), "taxAmount": f.get("taxAmount"),
                     "serviceStartDate": f.need("serviceStartDate"), "serviceEndDate": end,
                     "servicePeriodEnd": _day_after(f, "serviceEndDate", end),
                     "subscriptionNumber": f.get("subscriptionNumber"), "updatedDate": f.get("updatedDate"),
                     **f.custom(custom)}]

        newest = self._simple(ctx, session, "invoice-items", "invoice item", [*ITEM_COLUMNS, *custom], ["invoice"],
                              rows)
        return {"updatedDate": newest}

    def _payments(self, ctx: PullContext, session: _Session) -> dict[str, Any]:
        custom = ctx.options.custom_fields
        columns = [*PAYMENT_COLUMNS, *custom]

        def payment(f: _Fields) -> list[dict[str, Any]]:
            if f.get("status") != "Processed":
                return []
            method = f.get("paymentMethod")
            apps = f.get("paymentApplications") or []
            return [_money_row(f, "payment", f.need("paymentNumber"), f.need("effectiveDate"),
                               method.get("type") if isinstance(method, dict) else None, apps,
                               f.get("referenceId"), custom)]

        def refund(f: _Fields) -> list[dict[str, Any]]:
            if f.get("status") != "Processed":
                return []
            apps = f.get("refundApplications") or []
            ref = f.get("referenceID") if "referenceID" in f.record else f.get("referenceId")
            return [_money_row(f, "refund", f.need("refundNumber"), f.need("refundDate"), f.need("methodType"), apps,
                               ref, custom)]

        def number(f: _Fields) -> list[dict[str, Any]]:
            return [{"id": f.need("id"), "invoiceNumber": f.need("invoiceNumber")}]

        paid = self._simple(ctx, session, "payments", "payment", columns,
                            ["account", "paymentmethod", "paymentapplications"], payment)
        refunded = self._simple(ctx, session, "refunds", "refund", columns, ["account", "refundapplications"], refund,
                                newest_key="refundsUpdatedDate")
        numbers = self._simple(ctx, session, "invoices", "invoice", NUMBER_COLUMNS, (), number, part="invoice_numbers",
                               newest_key="invoicesUpdatedDate", fields=("id", "invoicenumber", "updateddate"))
        return {"updatedDate": paid, "refundsUpdatedDate": refunded, "invoicesUpdatedDate": numbers}

    def finalize_sql(self, ctx: PullContext, parts: Mapping[str, str]) -> str:
        main = f"read_parquet({parts[MAIN]})"
        if ctx.stream.name == "subscriptions":
            return (f"SELECT s.*, p.sku AS sku FROM {main} s LEFT JOIN read_parquet({parts['products']}) p "
                    f'ON p.id = s."productId" ORDER BY s."chargeNumber"')
        if ctx.stream.name == "invoice_items":
            discount = "lower(trim(coalesce(\"processingType\", ''))) IN ('discount', '1')"
            return (f"WITH i AS (SELECT * FROM {main}), "
                    f'd AS (SELECT "appliedToInvoiceItemId" AS d_item, sum(TRY_CAST("chargeAmount" AS DECIMAL(38, 9))) '
                    f"AS d_sum FROM i WHERE {discount} GROUP BY 1) "
                    f"SELECT i.*, CAST(-coalesce(d.d_sum, 0) AS VARCHAR) AS discount FROM i "
                    f"LEFT JOIN d ON d.d_item = i.id WHERE NOT ({discount}) ORDER BY i.id")
        if ctx.stream.name == "payments":
            return (f'SELECT p.*, n."invoiceNumber" AS "invoiceNumber" FROM {main} p '
                    f"LEFT JOIN read_parquet({parts['invoice_numbers']}) n ON n.id = p.\"invoiceId\" ORDER BY p.id")
        return super().finalize_sql(ctx, parts)


def _subscription_rows(f: _Fields, custom: Sequence[str]) -> list[dict[str, Any]]:
    """One row per recurring charge of a subscription's latest version."""
    if f.get("isLatestVersion") is False or f.get("status") in NOT_YET_CONTRACTED:
        return []
    account = f.nested("account", "accountNumber")
    name = f.need("name")
    plans = f.need("ratePlans") or []
    charges: list[tuple[dict[str, Any], dict[str, Any], dict[str, Any] | None]] = []  # plan, charge, discount
    for plan in plans if isinstance(plans, list) else []:
        plan_charges = [c for c in plan.get("ratePlanCharges") or [] if isinstance(c, dict)]
        discount = next((c for c in plan_charges if str(c.get("chargeModel", "")).startswith("Discount-Percentage")),
                        None)
        charges += [(plan, c, discount) for c in plan_charges if c.get("chargeType") == "Recurring"
                    and not str(c.get("chargeModel", "")).startswith("Discount")]
    rows = []
    for plan, charge, discount in charges:
        tiers = [t for t in charge.get("ratePlanChargeTiers") or [] if isinstance(t, dict)]
        first = tiers[0] if tiers else {}
        off = [t for t in (discount or {}).get("ratePlanChargeTiers") or [] if isinstance(t, dict)]
        number = charge.get("chargeNumber")
        if number is None:
            f.missing("ratePlanCharges.chargeNumber")
        if "price" not in first:
            f.missing(f"ratePlanCharges[{number}].ratePlanChargeTiers.price")
        rows.append({
            "chargeNumber": number, "subscriptionRowId": name if len(charges) == 1 else f"{name}/{number}",
            "subscriptionNumber": name, "subscriptionId": f.get("id"), "accountNumber": account,
            "productId": plan.get("productId"), "chargeName": charge.get("name"),
            "chargeModel": charge.get("chargeModel"),
            "quantity": _whole(charge.get("quantity")), "price": first.get("price"),
            "currency": first.get("currency") or f.get("currency"), "billingPeriod": charge.get("billingPeriod"),
            "effectiveStartDate": charge.get("effectiveStartDate"), "effectiveEndDate": charge.get("effectiveEndDate"),
            "status": f.need("status"), "discountPercentage": off[0].get("discountPercentage") if off else None,
            "discountEndDate": (discount or {}).get("effectiveEndDate"), "updatedDate": f.get("updatedDate"),
            **f.custom(custom)})
    return rows


def _invoice_row(f: _Fields, custom: Sequence[str]) -> dict[str, Any]:
    items = [i for i in f.get("invoiceItems") or [] if isinstance(i, dict)]
    charges = [i for i in items if not _is_discount(i)]
    amount, balance, without_tax = f.need("amount"), f.get("balance"), f.get("amountWithoutTax")
    subtotal: Any = without_tax
    discount: Any = None
    if items and all(isinstance(i.get("chargeAmount"), Decimal | int) for i in items):
        subtotal = sum((Decimal(i["chargeAmount"]) for i in charges), Decimal(0))
        discount = -sum((Decimal(i["chargeAmount"]) for i in items if _is_discount(i)), Decimal(0))
    starts = sorted(str(i["serviceStartDate"]) for i in charges if i.get("serviceStartDate"))
    ends = sorted(str(i["serviceEndDate"]) for i in charges if i.get("serviceEndDate"))
    status = f.need("status")
    settled = status
    if status == "Posted" and isinstance(balance, Decimal | int) and balance == 0:
        settled = "Paid"
    paid = amount - balance if isinstance(amount, Decimal | int) and isinstance(balance, Decimal | int) else None
    return {"id": f.need("id"), "invoiceNumber": f.need("invoiceNumber"),
            "accountNumber": f.nested("account", "accountNumber"),
            "subscriptionNumber": next((i.get("subscriptionNumber") for i in charges if i.get("subscriptionNumber")),
                                       None),
            "status": status, "settledStatus": settled, "issuedAt": f.get("postedDate") or f.get("invoiceDate"),
            "invoiceDate": f.get("invoiceDate"), "dueDate": f.get("dueDate"),
            "servicePeriodStart": starts[0] if starts else None,
            "servicePeriodEnd": _day_after(f, "serviceEndDate", ends[-1]) if ends else None,
            "currency": f.need("currency"), "subtotal": subtotal, "discount": discount,
            "amountWithoutTax": without_tax, "taxAmount": f.get("taxAmount"), "amount": amount, "balance": balance,
            "amountPaid": paid, "updatedDate": f.get("updatedDate"), **f.custom(custom)}


def _money_row(f: _Fields, kind: str, number: Any, effective: Any, method: Any, applications: Any,
               reference: Any, custom: Sequence[str]) -> dict[str, Any]:
    apps = [a for a in applications if isinstance(a, dict)] if isinstance(applications, list) else []
    return {"id": f.need("id"), "object": kind, "number": number, "type": kind,
            "accountNumber": f.nested("account", "accountNumber"),
            "invoiceId": next((a["invoiceId"] for a in apps if a.get("invoiceId")), None), "status": f.get("status"),
            "method": method, "amount": f.need("amount"), "currency": f.need("currency"), "effectiveDate": effective,
            "referenceId": reference, "gateway": f.get("gateway"), "updatedDate": f.get("updatedDate"),
            **f.custom(custom)}


register_connector(ZuoraConnector())


# --- Data Source exports (CSV, `Object.Field` headers) ---------------------------------------------------

SERVICE_END = "InvoiceItem.ServiceEndDate"
SERVICE_END_EXCLUSIVE = "InvoiceItem.ServiceEndDate (exclusive)"


def read_invoice_item_export(engine: Engine, path: Path, src: SourceConfig, shown: str) -> RawFrame:
    """The InvoiceItem export, plus the day after each inclusive `InvoiceItem.ServiceEndDate` (the
    canonical period end is exclusive). A text that is not a date is passed on as it is, so
    normalization quarantines it naming its line."""
    import ibis

    raw = read_csv(engine, path, src, shown)
    if SERVICE_END not in raw.columns:
        return raw
    text = raw.table[SERVICE_END]
    day = engine.parse_timestamp(text.substr(0, 10), "%Y-%m-%d")
    after = (day + ibis.interval(days=1)).strftime("%Y-%m-%d")
    table = raw.table.mutate(**{SERVICE_END_EXCLUSIVE: ibis.ifelse(day.isnull(), text, after)})
    return RawFrame(table, raw.file, (*raw.columns, SERVICE_END_EXCLUSIVE))


for _fmt in (
    SourceFormat("zuora_accounts", "Zuora Data Source export of Account (with BillToContact): one row per "
                 "billing account.", read_csv, table="customers", system="zuora",
                 columns={"customer_id": "Account.AccountNumber", "name": "Account.Name",
                          "email": "BillToContact.WorkEmail", "crm_id": "Account.CrmId", "status": "Account.Status"}),
    SourceFormat("zuora_subscriptions", "Zuora Data Source export of RatePlanCharge (with Subscription, Account, "
                 "Product and RatePlanChargeTier): one row per charge; the subscription number is the id.",
                 read_csv, table="subscriptions", system="zuora",
                 columns={"subscription_id": "Subscription.Name", "contract_id": "Subscription.Name",
                          "customer_id": "Account.AccountNumber", "sku": "Product.SKU",
                          "quantity": "RatePlanCharge.Quantity", "unit_amount": "RatePlanChargeTier.Price",
                          "currency": ("RatePlanChargeTier.Currency", "Account.Currency"),
                          "interval": "RatePlanCharge.BillingPeriod", "start_date": "RatePlanCharge.EffectiveStartDate",
                          "end_date": "RatePlanCharge.EffectiveEndDate", "status": "Subscription.Status"},
                 value_maps={"interval": BILLING_PERIODS, "status": SUBSCRIPTION_STATUSES}),
    SourceFormat("zuora_invoices", "Zuora Data Source export of Invoice (with Account and Subscription). "
                 "Decimal major units; Posted -> open, Canceled -> void (an export does not say paid: map "
                 "`amount_paid` from Invoice.PaymentAmount).", read_csv, table="invoices", system="zuora",
                 columns={"invoice_id": "Invoice.InvoiceNumber", "customer_id": "Account.AccountNumber",
                          "subscription_id": "Subscription.Name", "status": "Invoice.Status",
                          "issued_at": ("Invoice.PostedDate", "Invoice.InvoiceDate"),
                          "currency": ("Invoice.Currency", "Account.Currency"), "subtotal": "Invoice.AmountWithoutTax",
                          "tax": "Invoice.TaxAmount", "total": "Invoice.Amount",
                          "amount_paid": "Invoice.PaymentAmount"},
                 value_maps={"status": INVOICE_STATUSES}),
    SourceFormat("zuora_invoice_items", "Zuora Data Source export of InvoiceItem (with Invoice and Account); the "
                 "inclusive InvoiceItem.ServiceEndDate becomes the exclusive period_end; discount items are "
                 "lines with a negative amount.", read_invoice_item_export, table="invoice_lines", system="zuora",
                 columns={"invoice_id": "Invoice.InvoiceNumber", "line_id": "InvoiceItem.Id",
                          "sku": ("InvoiceItem.SKU", "Product.SKU"), "quantity": "InvoiceItem.Quantity",
                          "unit_amount": "InvoiceItem.UnitPrice", "amount": "InvoiceItem.ChargeAmount",
                          "currency": ("Invoice.Currency", "Account.Currency"),
                          "period_start": "InvoiceItem.ServiceStartDate", "period_end": SERVICE_END_EXCLUSIVE,
                          "tax": "InvoiceItem.TaxAmount"}),
    SourceFormat("zuora_payments", "Zuora Data Source export of Payment (with Account, Invoice and "
                 "PaymentMethod): Payment.ReferenceId is the gateway's transaction id.", read_csv, table="payments",
                 system="zuora",
                 columns={"payment_id": "Payment.PaymentNumber", "invoice_id": "Invoice.InvoiceNumber",
                          "customer_id": "Account.AccountNumber", "method": "PaymentMethod.Type",
                          "amount": "Payment.Amount", "currency": ("Payment.Currency", "Account.Currency"),
                          "received_at": "Payment.EffectiveDate", "gateway_ref": "Payment.ReferenceId"},
                 constants={"type": "payment"}, value_maps={"method": PAYMENT_METHODS}),
):
    register_format(_fmt)

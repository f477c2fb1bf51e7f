"""Chargebee API connector, through the official `chargebee` SDK (endpoint overridable).

Streams: invoices and successful transactions (the billing engine's payments, with the gateway's
id). Truly incremental: `updated_at[after]` the stored cursor, sorted by `updated_at`, so changed
records (an invoice paid, a payment refunded) come again. Amounts are minor units, times Unix
seconds. The SDK's own retries stay off: `retry.RetryPolicy` decides.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

from pydantic import Field, SecretStr

from tieout.sources.connectors import MAIN, Connector, ConnectorOptions, PullContext, Stream, register_connector
from tieout.sources.credentials import register_secret
from tieout.sources.retry import AuthFailure, ConnectorError, Refused, TransientError, retry_after_seconds

INVOICE_STATUSES = {"paid": "paid", "posted": "open", "payment_due": "open", "not_paid": "uncollectible",
                    "voided": "void", "pending": "draft"}
TRANSACTION_TYPES = {"payment": "payment", "refund": "refund"}
PAYMENT_METHODS = {"card": "card", "direct_debit": "ach", "bank_transfer": "wire", "check": "check",
                   "cash": "cash", "other": "other", "paypal_express_checkout": "other", "ach": "ach"}
_STATUS_IN_TEXT = re.compile(r"http_status_code:\s*(\d{3})")


class ChargebeeOptions(ConnectorOptions):
    """`options:` of a Chargebee connector source."""

    api_key: SecretStr = Field(description="Full-access or read-only API key, e.g. ${CHARGEBEE_API_KEY}.")
    site: str = Field(description="Site name: `acme` for acme.chargebee.com.")
    api_base: str | None = Field(None, description="Base URL instead of https://<site>.chargebee.com "
                                 "(a proxy or a local test server); /api/v2 is appended.")
    page_size: int = Field(100, ge=1, le=100, description="Records per page (Chargebee allows at most 100).")


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


class ChargebeeConnector(Connector):
    name = "chargebee"
    doc = ("Chargebee API through the official SDK: invoices and successful transactions, incremental on "
           "updated_at. Minor units, Unix timestamps.")
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
        Stream("transactions", "successful payment and refund transactions (status success), with the "
               "gateway's id as gateway_ref and the first linked invoice.", "payments", "id", key=("id",),
               columns={"payment_id": "id", "invoice_id": "invoice_id", "customer_id": "customer_id",
                        "type": "type", "method": "payment_method", "amount": "amount",
                        "currency": "currency_code", "received_at": "date", "gateway_ref": "id_at_gateway"},
               value_maps={"type": TRANSACTION_TYPES, "method": PAYMENT_METHODS}),
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
        params: dict[str, Any] = {"limit": ctx.options.page_size, "sort_by": {"asc": "updated_at"}}
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
            return self._pull(ctx, client.Transaction, "transaction", TRANSACTION_COLUMNS, _transaction_row)
        finally:
            chargebee.Chargebee.verify_ca_certs = saved

    def _pull(self, ctx: PullContext, resource: Any, kind: str, columns: Sequence[str],
              row: Callable[[PullContext, dict[str, Any]], dict[str, Any] | None]) -> dict[str, Any]:
        ctx.sink.columns(MAIN, columns)
        newest = ctx.cursor.get("updated_at") if ctx.cursor else None
        for page in self._pages(ctx, resource, kind):
            rows = []
            for record in page:
                updated = record.get("updated_at")
                if isinstance(updated, int):
                    newest = updated if newest is None else max(int(newest), updated)
                r = row(ctx, record)
                if r is not None:
                    rows.append(r)
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


register_connector(ChargebeeConnector())

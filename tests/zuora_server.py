"""A local Zuora REST server for connector tests: `POST /oauth/token` (client credentials, bearer
tokens with an `expires_in`) and `GET /object-query/<object>` (the Object Query API: `pageSize`,
`cursor`/`nextPage`, `sort[]=updateddate.ASC`, `filter[]=updateddate.GE:`, `expand[]`, `fields[]`).

Objects start from Zuora records as Fivetran syncs them (/work/shared/samples/zuora, dbt_zuora's
seeds, Apache-2.0; see its PROVENANCE.md), their snake_case columns turned back into the API's
camelCase fields, with our values laid over them. Amounts are JSON numbers written from Decimals.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import csv
import functools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from .vendor_servers import SAMPLES, Fault, VendorServer, _Prefix

ZUORA_SAMPLES = SAMPLES / "zuora"
_NUMBER = re.compile(r"-?\d+(\.\d+)?")
_SAMPLE_FILES = {"account": "account", "subscription": "subscription", "rate_plan_charge": "rate_plan_charge",
                 "invoice": "invoice", "invoice_item": "invoice_item", "payment": "payment", "refund": "refund",
                 "product": "product"}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def _api_value(text: str) -> Any:
    if text == "":
        return None
    if text in ("TRUE", "FALSE"):
        return text == "TRUE"
    if _NUMBER.fullmatch(text) and not (len(text) > 1 and text.startswith("0") and "." not in text):
        return Decimal(text) if "." in text else int(text)
    if re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?", text):
        return text[:19].replace(" ", "T") + "-08:00"  # Zuora answers in the tenant's zone, with its offset
    return text


@functools.cache
def _sample(kind: str) -> dict[str, Any]:
    path = ZUORA_SAMPLES / f"dbt_zuora_seed__zuora_{_SAMPLE_FILES[kind]}_data.csv"
    with path.open(newline="", encoding="utf-8") as fh:
        first = next(csv.DictReader(fh))
    return {_camel(k): _api_value(v) for k, v in first.items() if not k.startswith("_fivetran")}


def zuora_template(kind: str) -> dict[str, Any]:
    """The first record of a Zuora sample table as the Object Query API names its fields."""
    return copy.deepcopy(_sample(kind))


def dumps(body: Any) -> str:
    """JSON with Decimals as numbers, digit for digit (Zuora's amounts are decimal numbers)."""
    text = json.dumps(body, default=lambda d: f"@@{d}@@" if isinstance(d, Decimal) else str(d))
    return re.sub(r'"@@(-?[0-9.E+-]+)@@"', r"\1", text)


def _utc(text: str) -> datetime:
    parsed = datetime.fromisoformat(text)
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


@dataclass
class ZuoraServer(VendorServer):
    """`objects` per Object Query resource (accounts, subscriptions, products, invoices, invoice-items,
    payments, refunds); expansions are served from the same objects, joined by their ids."""

    client_secret: str = ""
    expires_in: int = 3600
    issued: list[str] = field(default_factory=list)
    revoked: set[str] = field(default_factory=set)
    token_requests: int = 0
    reject_every_token: bool = False  # data calls answer 401 whatever the token (a user lacking a permission)

    def token(self, request: Request) -> Response:
        self.token_requests += 1
        form = request.form
        if (form.get("grant_type") != "client_credentials" or form.get("client_id") != self.api_key
                or form.get("client_secret") != self.client_secret):
            return _json({"error": "invalid_client", "error_description": "Bad client credentials"}, 401)
        fault = self.queued_fault("oauth")
        if fault is not None:
            return fault
        value = f"tok{len(self.issued) + 1}-" + base64.b16encode(self.client_secret.encode()).decode()[:8].lower()
        self.issued.append(value)
        return _json({"access_token": value, "token_type": "bearer", "expires_in": self.expires_in,
                      "scope": "user.7d2c entity.1a2b", "jti": f"jti-{len(self.issued)}"})

    def handle(self, request: Request) -> Response:
        resource = request.path.removeprefix("/object-query/")
        self.requests.append(request.full_path)
        auth = request.headers.get("Authorization", "")
        value = auth.removeprefix("Bearer ")
        if self.reject_every_token or value not in self.issued or value in self.revoked:
            return _json({"success": False, "processId": "5F3A", "reasons": [
                {"code": "90000011", "message": "this resource is protected, please sign in first"}]}, 401)
        fault = self.queued_fault(resource)
        if fault is not None:
            return fault
        items = sorted(self.objects.get(resource, []), key=lambda o: (_utc(o["updatedDate"]), o["id"]))
        for flt in request.args.getlist("filter[]"):
            fld, _, rest = flt.partition(".")
            op, _, val = rest.partition(":")
            assert (fld, op) == ("updateddate", "GE"), f"filter not served: {flt}"
            items = [o for o in items if _utc(o["updatedDate"]) >= _utc(val.replace("Z", "+00:00"))]
        start = int(base64.b64decode(request.args["cursor"]).decode()) if "cursor" in request.args else 0
        size = int(request.args.get("pageSize", "10"))
        assert 1 <= size <= 99, "Zuora answers 400 outside 1..99"
        page = [self._expand(resource, o, request.args.getlist("expand[]")) for o in items[start:start + size]]
        wanted = ",".join(request.args.getlist("fields[]"))
        if wanted:
            keep = {f.strip().lower() for f in wanted.split(",")}
            page = [{k: v for k, v in o.items() if k.lower() in keep} for o in page]
        body: dict[str, Any] = {"data": page}
        if start + size < len(items):
            body["nextPage"] = base64.b64encode(str(start + size).encode()).decode()
        return Response(dumps(body), status=200, content_type="application/json")

    def _by_id(self, resource: str, key: str, value: Any) -> list[dict[str, Any]]:
        return [o for o in self.objects.get(resource, []) if o.get(key) == value]

    def _expand(self, resource: str, obj: dict[str, Any], expand: list[str]) -> dict[str, Any]:
        out = {k: v for k, v in obj.items() if not k.startswith("_")}
        for e in expand:
            if e == "account":
                out["account"] = next(iter(self._by_id("accounts", "id", obj.get("accountId"))), None)
            elif e == "billto":
                out["billTo"] = obj.get("_billTo")
            elif e == "invoiceitems":
                out["invoiceItems"] = self._by_id("invoice-items", "invoiceId", obj["id"])
            elif e == "invoice":
                out["invoice"] = next(iter(self._by_id("invoices", "id", obj.get("invoiceId"))), None)
            elif e == "paymentmethod":
                out["paymentMethod"] = obj.get("_paymentMethod")
            elif e in ("paymentapplications", "refundapplications"):
                key = "paymentApplications" if e == "paymentapplications" else "refundApplications"
                out[key] = obj.get(f"_{key}", [])
            elif e == "rateplans.rateplancharges.rateplanchargetiers":
                out["ratePlans"] = obj.get("_ratePlans", [])
            else:
                raise AssertionError(f"expand not served: {e}")
        return out


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")


@contextlib.contextmanager
def zuora_server(client_id: str, client_secret: str) -> Iterator[ZuoraServer]:
    """A Zuora server on a free port of 127.0.0.1."""
    http = HTTPServer(host="127.0.0.1", port=0)
    http.start()
    server = ZuoraServer(http, client_id, client_secret=client_secret)
    try:
        http.expect_request("/oauth/token", method="POST").respond_with_handler(server.token)
        http.expect_request(_Prefix("/object-query/"), method="GET").respond_with_handler(server.handle)
        yield server
    finally:
        http.clear()
        if http.is_running():
            http.stop()


# --- objects -----------------------------------------------------------------------------------------


def zuora_id(prefix: str, n: int) -> str:
    """A 32-hex Zuora id, readable in failures."""
    head = prefix.encode().hex()
    return head + f"{n:0{32 - len(head)}x}"


def account(n: int, number: str, updated: str, *, name: str, currency: str = "USD", email: str | None = None,
            status: str = "Active", crm_id: str | None = None, **custom: Any) -> dict[str, Any]:
    a = zuora_template("account")
    a.update(id=zuora_id("ac", n), accountNumber=number, name=name, currency=currency, status=status, crmId=crm_id,
             updatedDate=updated, **custom)
    a["_billTo"] = {"id": zuora_id("ct", n), "workEmail": email, "firstName": "Ada", "lastName": "Lovelace"}
    return a


def product(n: int, sku: str, updated: str) -> dict[str, Any]:
    p = zuora_template("product")
    p.update(id=zuora_id("pr", n), sku=sku, name=sku.title(), updatedDate=updated)
    return p


def charge(number: str, *, price: Decimal | None, quantity: Decimal, currency: str, start: str, end: str | None,
           period: str = "Month", model: str = "Per Unit Pricing", charge_type: str = "Recurring",
           discount_percentage: Decimal | None = None) -> dict[str, Any]:
    c = zuora_template("rate_plan_charge")
    tier: dict[str, Any] = {"tier": 1, "currency": currency, "startingUnit": Decimal("0")}
    if price is not None:
        tier["price"] = price
    if discount_percentage is not None:
        tier["discountPercentage"] = discount_percentage
    c.update(id=f"rc-{number}", chargeNumber=number,
             chargeModel=model, chargeType=charge_type, billingPeriod=period, quantity=quantity,
             effectiveStartDate=start, effectiveEndDate=end, ratePlanChargeTiers=[tier], name=f"{model} {number}")
    return c


def subscription(n: int, name: str, account_id: str, updated: str, *, status: str = "Active",
                 plans: list[tuple[str, list[dict[str, Any]]]], latest: bool = True) -> dict[str, Any]:
    s = zuora_template("subscription")
    s.update(id=zuora_id("su", n), name=name, accountId=account_id, status=status, updatedDate=updated,
             isLatestVersion=latest)
    s["_ratePlans"] = [{"id": zuora_id("rp", n * 10 + i), "productId": pid, "name": "Plan", "ratePlanCharges": cs}
                       for i, (pid, cs) in enumerate(plans)]
    return s


def invoice(n: int, number: str, account_id: str, updated: str, *, status: str = "Posted", currency: str = "USD",
            amount: Decimal, without_tax: Decimal, tax: Decimal, balance: Decimal,
            posted: str | None = "2026-03-01T02:00:00-08:00", invoice_date: str = "2026-03-01") -> dict[str, Any]:
    i = zuora_template("invoice")
    i.update(id=zuora_id("in", n), invoiceNumber=number, accountId=account_id, status=status, currency=currency,
             amount=amount, amountWithoutTax=without_tax, taxAmount=tax, balance=balance, postedDate=posted,
             invoiceDate=invoice_date, updatedDate=updated, paymentAmount=amount - balance)
    return i


def invoice_item(n: int, invoice_id: str, updated: str, *, sku: str, amount: Decimal, unit_price: Decimal,
                 quantity: Decimal, start: str, end: str, subscription_number: str | None, tax: Decimal = Decimal(0),
                 processing_type: str = "Charge", applied_to: str | None = None) -> dict[str, Any]:
    it = zuora_template("invoice_item")
    it.update(id=zuora_id("ii", n), invoiceId=invoice_id, sKU=sku, chargeAmount=amount, unitPrice=unit_price,
              quantity=quantity, serviceStartDate=start, serviceEndDate=end, subscriptionNumber=subscription_number,
              taxAmount=tax, processingType=processing_type, appliedToInvoiceItemId=applied_to, updatedDate=updated)
    it.pop("sku", None)  # the sample's `sku` column is the API's `sKU`
    return it


def payment(n: int, number: str, account_id: str, updated: str, *, amount: Decimal, currency: str,
            effective: str, invoice_id: str | None, method: str = "CreditCard", status: str = "Processed",
            reference: str | None = None) -> dict[str, Any]:
    p = zuora_template("payment")
    p.update(id=zuora_id("pa", n), paymentNumber=number, accountId=account_id, amount=amount, currency=currency,
             effectiveDate=effective, status=status, referenceId=reference, updatedDate=updated)
    p["_paymentMethod"] = {"id": zuora_id("pm", n), "type": method}
    p["_paymentApplications"] = [{"id": zuora_id("ap", n), "invoiceId": invoice_id, "applyAmount": amount}] \
        if invoice_id else []
    return p


def refund(n: int, number: str, account_id: str, updated: str, *, amount: Decimal, currency: str, refund_date: str,
           invoice_id: str | None, method: str = "CreditCard", reference: str | None = None) -> dict[str, Any]:
    r = zuora_template("refund")
    r.update(id=zuora_id("re", n), refundNumber=number, accountId=account_id, amount=amount, currency=currency,
             refundDate=refund_date, methodType=method, status="Processed", referenceID=reference,
             updatedDate=updated)
    r.pop("referenceId", None)
    r["_refundApplications"] = [{"id": zuora_id("ra", n), "invoiceId": invoice_id, "applyAmount": amount}] \
        if invoice_id else []
    return r


__all__ = ["Fault", "ZuoraServer", "zuora_server", "zuora_template"]


# --- the demo's billing engine as a Zuora tenant ------------------------------------------------------

_PERIODS = {"month": "Month", "quarter": "Quarter", "year": "Annual"}
_SUB_STATUSES = {"active": "Active", "canceled": "Cancelled", "paused": "Suspended"}
_METHODS = {"card": "CreditCard", "ach": "ACH", "wire": "WireTransfer", "check": "Check", "cash": "Cash",
            "other": "Other"}
_DEMO_CLOCK = "2026-09-30T12:00:00+00:00"  # every record last changed at the demo's as-of


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _write(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _day_before(text: str) -> str:
    return (date.fromisoformat(text) - timedelta(days=1)).isoformat()


def demo_zuora_tenant(workspace: Path) -> dict[str, list[dict[str, Any]]]:
    """The demo workspace's billing tables as a Zuora tenant's objects; the workspace's billing CSVs
    are rewritten to what those objects carry (a Zuora invoice item's id is its line id, a payment's
    effective date has no time of day, invoices export their PaymentAmount), so a run on the files
    and a run on the tenant read the same facts."""
    data = workspace / "data"
    accounts: dict[str, dict[str, Any]] = {}
    for n, r in enumerate(_read(data / "customers.csv"), 1):
        accounts[r["customer_id"]] = account(
            n, r["customer_id"], _DEMO_CLOCK, name=r["name"], email=r["email"] or None, crm_id=r["crm_id"] or None,
            GatewayCustomerId__c=r["gateway_customer_id"] or None, Segment__c=r["segment"] or None)
    products = {sku: product(n, sku, _DEMO_CLOCK)
                for n, sku in enumerate(sorted({r["sku"] for r in _read(data / "products.csv")}), 1)}
    subscriptions = []
    for n, r in enumerate(_read(data / "subscriptions.csv"), 1):
        charges = [charge(f"C-{r['subscription_id']}", price=Decimal(r["unit_amount"]), quantity=Decimal(r["quantity"]),
                          currency=r["currency"], start=r["start_date"], end=r["end_date"] or None,
                          period=_PERIODS[r["interval"]])]
        if r["discount_percent"]:
            charges.append(charge(f"D-{r['subscription_id']}", price=None, quantity=Decimal(1), currency=r["currency"],
                                  start=r["start_date"], end=r["discount_end"] or None, model="Discount-Percentage",
                                  discount_percentage=Decimal(r["discount_percent"])))
        subscriptions.append(subscription(n, r["subscription_id"], accounts[r["customer_id"]]["id"], _DEMO_CLOCK,
                                          status=_SUB_STATUSES[r["status"]],
                                          plans=[(products[r["sku"]]["id"], charges)]))
    invoices: dict[str, dict[str, Any]] = {}
    heads = _read(data / "invoices.csv")
    for n, r in enumerate(heads, 1):
        inv = invoice(n, r["Invoice.InvoiceNumber"], accounts[r["Account.AccountNumber"]]["id"], _DEMO_CLOCK,
                      status="Posted", currency=r["Invoice.Currency"], amount=Decimal(r["Invoice.Amount"]),
                      without_tax=Decimal(r["Invoice.AmountWithoutTax"]), tax=Decimal(r["Invoice.TaxAmount"]),
                      balance=Decimal(r["Invoice.Balance"]), invoice_date=r["Invoice.PostedDate"][:10],
                      posted=r["Invoice.PostedDate"].replace(" ", "T") + "+00:00")
        inv["DiscountAmount__c"] = Decimal(r["Invoice.DiscountAmount__c"])
        invoices[r["Invoice.InvoiceNumber"]] = inv
        r["Invoice.PaymentAmount"] = str(Decimal(r["Invoice.Amount"]) - Decimal(r["Invoice.Balance"]))
    _write(data / "invoices.csv", heads)
    heads_by_number = {r["Invoice.InvoiceNumber"]: r for r in heads}
    items = []
    lines = _read(data / "invoice_lines.csv")
    for n, r in enumerate(lines, 1):
        inv = invoices[r["invoice_id"]]
        sub_name = heads_by_number[r["invoice_id"]]["Subscription.Name"] or None
        item = invoice_item(2 * n, inv["id"], _DEMO_CLOCK, sku=r["sku"], amount=Decimal(r["amount"]),
                            unit_price=Decimal(r["unit_amount"]), quantity=Decimal(r["quantity"]),
                            start=r["period_start"], end=_day_before(r["period_end"]),
                            subscription_number=sub_name)
        items.append(item)
        if Decimal(r["discount"] or "0"):
            items.append(invoice_item(2 * n + 1, inv["id"], _DEMO_CLOCK, sku=r["sku"], amount=-Decimal(r["discount"]),
                                      unit_price=Decimal(0), quantity=Decimal(1), start=r["period_start"],
                                      end=_day_before(r["period_end"]), subscription_number=sub_name,
                                      processing_type="Discount", applied_to=item["id"]))
        r["line_id"] = item["id"]
        r.pop("proration", None)  # Zuora's items do not say
    _write(data / "invoice_lines.csv", lines)
    payments, refunds = [], []
    rows = _read(data / "payments.csv")
    for n, r in enumerate(rows, 1):
        acct = accounts[r["customer_id"]]["id"]
        inv_id = invoices[r["invoice_id"]]["id"] if r["invoice_id"] in invoices else None
        day = r["received_at"][:10]
        if r["type"] == "refund":
            refunds.append(refund(n, r["payment_id"], acct, _DEMO_CLOCK, amount=Decimal(r["amount"]),
                                  currency=r["currency"], refund_date=day, invoice_id=inv_id,
                                  method=_METHODS[r["method"]], reference=r["gateway_ref"] or None))
        else:
            payments.append(payment(n, r["payment_id"], acct, _DEMO_CLOCK, amount=Decimal(r["amount"]),
                                    currency=r["currency"], effective=day, invoice_id=inv_id,
                                    method=_METHODS[r["method"]], reference=r["gateway_ref"] or None))
        r["received_at"] = day
    _write(data / "payments.csv", rows)
    return {"accounts": list(accounts.values()), "products": list(products.values()), "subscriptions": subscriptions,
            "invoices": list(invoices.values()), "invoice-items": items, "payments": payments, "refunds": refunds}

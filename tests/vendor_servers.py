"""Local HTTP servers that speak vendors' documented JSON shapes, for connector tests.

Objects start from the vendors' own example objects (/work/shared/samples, see its PROVENANCE.md:
Stripe's OpenAPI fixtures3.json, MIT) with our values laid over them. Served with pytest-httpserver
on 127.0.0.1; `script` queues faults (429, 500, 401, a garbled body) ahead of normal answers.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import functools
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from pytest_httpserver import HTTPServer, URIPattern
from werkzeug import Request, Response

from tieout.config import Config
from tieout.money import CURRENCY_EXPONENTS

SAMPLES = Path("/work/shared/samples")
STRIPE_FIXTURES = SAMPLES / "stripe" / "stripe_openapi_fixtures3.json"


@functools.cache
def _stripe_resources() -> dict[str, Any]:
    return json.loads(STRIPE_FIXTURES.read_text(encoding="utf-8"))["resources"]  # type: ignore[no-any-return]


def stripe_template(kind: str) -> dict[str, Any]:
    """Stripe's own example object of `kind` (from its OpenAPI fixtures)."""
    return copy.deepcopy(_stripe_resources()[kind])


@dataclass
class Fault:
    status: int
    body: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class VendorServer:
    """What every local vendor server keeps: its objects per resource, the faults queued ahead of
    normal answers, and the requests it received."""

    http: HTTPServer
    api_key: str
    objects: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    faults: dict[str, list[Fault]] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.http.url_for("").rstrip("/")

    def script(self, resource: str, *faults: Fault) -> None:
        """Answer the next requests for `resource` with these faults first."""
        self.faults.setdefault(resource, []).extend(faults)

    def queued_fault(self, resource: str) -> Response | None:
        queued = self.faults.get(resource)
        if not queued:
            return None
        f = queued.pop(0)
        return Response(f.body, status=f.status, headers=f.headers, content_type="application/json")


@dataclass
class StripeServer(VendorServer):
    """/v1/<resource> list endpoints with Stripe's cursor pagination, `created` filters, `expand`
    of `data.source`, `payout=` on balance transactions, `types[]` on events and Bearer-key
    authentication."""

    def handle(self, request: Request) -> Response:
        resource = request.path.removeprefix("/v1/")
        self.requests.append(request.full_path)
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _json({"error": {"type": "invalid_request_error", "message": "Invalid API Key provided: "
                                    + _mask(request.headers.get("Authorization", ""))}}, 401)
        fault = self.queued_fault(resource)
        if fault is not None:
            return fault
        nested = self._invoice_lines(resource)
        if resource not in self.objects and nested is None:
            return _json({"error": {"type": "invalid_request_error", "message": f"Unrecognized request URL "
                                    f"(GET: /v1/{resource})"}}, 404)
        return _json(self._list(resource, request.args, nested))

    def _invoice_lines(self, resource: str) -> list[dict[str, Any]] | None:
        """`invoices/<id>/lines`: every line of the invoice (its `_lines`, else the embedded page), in order."""
        parts = resource.split("/")
        if len(parts) != 3 or parts[0] != "invoices" or parts[2] != "lines":
            return None
        for inv in self.objects.get("invoices", []):
            if inv["id"] == parts[1]:
                return list(inv.get("_lines") or inv["lines"]["data"])
        return None

    def _list(self, resource: str, args: Any, nested: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        if nested is not None:
            items = nested  # a sub-list keeps its own order and has no `created`
        else:
            items = sorted(self.objects[resource], key=lambda o: (o["created"], o["id"]), reverse=True)
        if "created[gte]" in args:
            items = [o for o in items if o["created"] >= int(args["created[gte]"])]
        types = {v for k, v in args.items(multi=True) if k == "types" or k.startswith("types[")}
        if types:  # the Events API's filter on event types
            items = [o for o in items if o.get("type") in types]
        if "payout" in args:
            items = [o for o in items if o.get("_payout") == args["payout"]]
        if "subscription" in args:
            items = [o for o in items if o.get("subscription") == args["subscription"]]
        if "starting_after" in args:
            ids = [o["id"] for o in items]
            items = items[ids.index(args["starting_after"]) + 1:]
        limit = int(args.get("limit", 10))
        page = items[:limit]
        expand = {v for k, v in args.items(multi=True) if k.startswith("expand")}
        data = []
        for o in page:
            out = {k: v for k, v in o.items() if not k.startswith("_")}
            if "data.source" not in expand and isinstance(out.get("source"), dict):
                out["source"] = out["source"]["id"]
            data.append(out)
        return {"object": "list", "url": f"/v1/{resource}", "has_more": len(items) > limit, "data": data}


def _mask(auth: str) -> str:
    key = auth.removeprefix("Bearer ")
    return key[:3] + "*" * max(len(key) - 7, 0) + key[-4:] if len(key) > 8 else "****"


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")


S = TypeVar("S", "StripeServer", "ChargebeeServer")


@contextmanager
def _serve(prefix: str, build: Callable[[HTTPServer], S]) -> Iterator[S]:
    """A vendor server on a free port of 127.0.0.1 answering every GET under `prefix`."""
    http = HTTPServer(host="127.0.0.1", port=0)
    http.start()
    server = build(http)
    try:
        http.expect_request(_Prefix(prefix), method="GET").respond_with_handler(server.handle)
        yield server
    finally:
        http.clear()
        if http.is_running():
            http.stop()


class _Prefix(URIPattern):
    """Matches every path under a prefix (pytest-httpserver accepts objects with `match`)."""

    def __init__(self, prefix: str):
        self.prefix = prefix

    def match(self, uri: str) -> bool:
        return uri.startswith(self.prefix)


def stripe_server(api_key: str) -> contextlib.AbstractContextManager[StripeServer]:
    return _serve("/v1/", lambda http: StripeServer(http, api_key, objects={"events": []}))  # no events yet


def ingested(cfg: Config) -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]]]:
    """Pull (connector sources), read and quality-gate like a run: (accepted rows per canonical table,
    quarantined rows, with connector record ids in their reasons)."""
    from tieout.engines import create_engine
    from tieout.pipeline import ingest
    from tieout.sources.connectors import pull_connectors

    pulled = pull_connectors(cfg)
    engine = create_engine("duckdb")
    try:
        tables, _, quarantined, inputs = ingest(pulled.config, engine, lambda _m: None)
        rows = {name: t.to_pyarrow().to_pylist() for name, t in tables.items()}
    finally:
        engine.close()
    pulled.annotate(inputs, quarantined)
    return rows, quarantined


def pinned_ids(cfg: Config, column: str) -> list[str]:
    """The record ids (`column`) of the snapshot the first source pins, after its checksum is verified:
    what a run pinned to it reads."""
    import pyarrow.parquet as pq

    from tieout.sources.connectors import connector_options, pinned_snapshot, source_directory

    pin = connector_options(cfg, 0).snapshot
    assert pin is not None
    record = pinned_snapshot(cfg, 0, pin)
    path = source_directory(cfg, cfg.sources[0]) / record.snapshot
    return sorted(str(v) for v in pq.read_table(path, columns=[column]).column(0).to_pylist())


# --- objects ----------------------------------------------------------------------------------------


def unix(text: str) -> int:
    fmt = "%Y-%m-%d %H:%M:%S" if text.count(":") == 2 else "%Y-%m-%d %H:%M" if ":" in text else "%Y-%m-%d"
    return int(datetime.strptime(text, fmt).replace(tzinfo=UTC).timestamp())


def minor(amount: str, currency: str) -> int:
    exponent = CURRENCY_EXPONENTS.get(currency.upper(), 2)
    return int(Decimal(amount) * (10 ** exponent))


def balance_transaction(*, id: str, created: int, currency: str, amount: int, fee: int, net: int,
                        category: str, source: dict[str, Any], payout: str | None = None) -> dict[str, Any]:
    bt = stripe_template("balance_transaction")
    bt.update(id=id, created=created, available_on=created + 2 * 86_400, currency=currency, amount=amount,
              fee=fee, net=net, reporting_category=category, source=source, status="available",
              type={"dispute": "adjustment"}.get(category, category), description=None)
    bt["_payout"] = payout
    return bt


def charge(*, id: str, created: int, currency: str, amount: int, customer: str | None, status: str,
           metadata: dict[str, str]) -> dict[str, Any]:
    ch = stripe_template("charge")
    ch.update(id=id, created=created, currency=currency, amount=amount, customer=customer, status=status,
              metadata=metadata, paid=status == "succeeded", captured=status == "succeeded",
              amount_captured=amount if status == "succeeded" else 0,
              failure_code="card_declined" if status == "failed" else None,
              failure_message="Your card was declined." if status == "failed" else None)
    return ch


def subscription_item(*, id: str, subscription: str, product: str, unit_amount: int, quantity: int,
                      currency: str = "usd", interval: str = "month", interval_count: int = 1) -> dict[str, Any]:
    item = stripe_template("subscription_item")
    price = item["price"]
    price.update(id=f"price_{id}", product=product, unit_amount=unit_amount, unit_amount_decimal=str(unit_amount),
                 currency=currency, lookup_key=f"{product}-{interval}")
    price["recurring"].update(interval=interval, interval_count=interval_count)
    item.update(id=id, subscription=subscription, quantity=quantity)
    return item


def subscription(*, id: str, created: int, customer: str, status: str, items: list[dict[str, Any]],
                 embedded: int | None = None, **fields: Any) -> dict[str, Any]:
    """A subscription whose `items` list embeds the first `embedded` items (all by default); the rest
    are served by `subscription_items?subscription=`."""
    sub = stripe_template("subscription")
    shown = items[:embedded] if embedded is not None else items
    sub.update(id=id, created=created, customer=customer, status=status, start_date=created,
               billing_cycle_anchor=created, ended_at=None, cancel_at=None, canceled_at=None, trial_end=None,
               discounts=[], currency=items[0]["price"]["currency"] if items else "usd")
    sub.update(fields)
    sub["items"] = {"object": "list", "data": shown, "has_more": len(shown) < len(items),
                    "url": f"/v1/subscription_items?subscription={id}"}
    return sub


def stripe_event(*, id: str, created: int, type: str, obj: dict[str, Any]) -> dict[str, Any]:
    """An Events API event (Stripe's example event) carrying `obj` as `data.object`."""
    event = stripe_template("event")
    event.update(id=id, created=created, type=type, data={"object": copy.deepcopy(obj)})
    return event


def invoice_with_lines(*, id: str, created: int, lines: list[dict[str, Any]], embedded: int | None = None,
                       **fields: Any) -> dict[str, Any]:
    """An invoice embedding its first `embedded` lines; `invoices/<id>/lines` serves them all."""
    inv = stripe_template("invoice")
    shown = lines[:embedded] if embedded is not None else lines
    inv.update(id=id, created=created)
    inv.update(fields)
    inv["lines"] = {"object": "list", "data": shown, "has_more": len(shown) < len(lines),
                    "url": f"/v1/invoices/{id}/lines"}
    inv["_lines"] = lines
    return inv


def invoice_line(*, id: str, invoice: str, amount: int, quantity: int, start: int, end: int,
                 old_shape: bool = False, proration: bool = False, product: str = "prod_A", price: str = "price_A",
                 unit_amount: int | None = None, discount: int = 0, tax: int = 0,
                 currency: str = "usd") -> dict[str, Any]:
    """A line item in the current API shape (`pricing.price_details`, `parent`, `taxes`) or, with
    `old_shape`, the pre-2025 one (`price`, `proration`, `tax_amounts`)."""
    line = stripe_template("line_item")
    line.update(id=id, invoice=invoice, amount=amount, quantity=quantity, currency=currency,
                period={"start": start, "end": end},
                discount_amounts=[{"amount": discount, "discount": "di_1"}] if discount else [])
    unit = unit_amount if unit_amount is not None else amount // quantity
    if old_shape:
        for k in ("pricing", "parent", "taxes"):
            line.pop(k, None)
        line.update(price={**stripe_template("price"), "id": price, "product": product, "unit_amount": unit},
                    proration=proration, tax_amounts=[{"amount": tax, "inclusive": False}] if tax else [])
    else:
        line["pricing"] = {"type": "price_details", "price_details": {"price": price, "product": product},
                           "unit_amount_decimal": f"{unit}.000000000000"}
        line["parent"] = {"type": "subscription_item_details", "invoice_item_details": None,
                          "subscription_item_details": {"proration": proration, "subscription": "sub_1",
                                                        "subscription_item": "si_1", "invoice_item": None}}
        line["taxes"] = [{"amount": tax, "type": "tax_rate_details"}] if tax else []
    return line


def demo_stripe_objects(workspace: Path) -> dict[str, list[dict[str, Any]]]:
    """The demo workspace's Stripe exports as the API would return the same account's objects."""
    data = workspace / "data"
    balance: list[dict[str, Any]] = []
    charges: list[dict[str, Any]] = []
    with (data / "stripe_balance_itemized.csv").open(newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            cur = r["currency"]
            created = unix(r["created_utc"])
            number = r["payment_metadata[invoice_number]"]
            meta = {"invoice_number": number} if number else {}
            gross = minor(r["gross"], cur)
            kind = r["reporting_category"]
            if kind == "charge":
                src = charge(id=r["source_id"], created=created, currency=cur, amount=gross,
                             customer=r["customer_id"] or None, status="succeeded", metadata=meta)
                charges.append(src)
            elif kind == "refund":  # refunds name their charge; customer and metadata live on the charge
                src = stripe_template("refund")
                src.update(id=r["source_id"], created=created, currency=cur, amount=-gross, charge=r["charge_id"],
                           metadata={}, customer=None, status="succeeded")
            else:
                src = stripe_template("dispute")
                src.update(id=r["source_id"], created=created, currency=cur, amount=-gross, charge=r["charge_id"],
                           metadata={}, status="lost")
            balance.append(balance_transaction(
                id=r["balance_transaction_id"], created=created, currency=cur, amount=gross,
                fee=minor(r["fee"], cur), net=minor(r["net"], cur), category=kind, source=src,
                payout=r["automatic_payout_id"] or None))
    with (data / "stripe_payments_failed.csv").open(newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            meta = {"invoice_number": r["invoice_number (metadata)"]} if r["invoice_number (metadata)"] else {}
            charges.append(charge(id=r["id"], created=unix(r["Created (UTC)"]), currency=r["Currency"],
                                  amount=minor(r["Amount"], r["Currency"]), customer=r["Customer ID"] or None,
                                  status="failed", metadata=meta))
    payouts: list[dict[str, Any]] = []
    with (data / "stripe_payouts.csv").open(newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            po = stripe_template("payout")
            arrival = unix(r["Arrival Date (UTC)"])
            po.update(id=r["id"], amount=minor(r["Amount"], r["Currency"]), currency=r["Currency"],
                      arrival_date=arrival, created=arrival - 2 * 86_400, status=r["Status"], automatic=True,
                      balance_transaction=None)
            payouts.append(po)
    return {"balance_transactions": balance, "charges": charges, "payouts": payouts}


# --- PostgreSQL ---------------------------------------------------------------------------------------


def _pg_type(values: list[str]) -> str:
    present = [v for v in values if v != ""]
    if not present:
        return "TEXT"
    checks = (
        ("BIGINT", lambda v: v.lstrip("-").isdigit() and len(v) < 18 and not (len(v) > 1 and v.startswith("0"))),
        ("NUMERIC(20,4)", lambda v: v.lstrip("-").replace(".", "", 1).isdigit() and "." in v),
        ("DATE", lambda v: _is(v, "%Y-%m-%d")),
        ("TIMESTAMPTZ", lambda v: _is(v, "%Y-%m-%d %H:%M:%S")),
        ("BOOLEAN", lambda v: v in ("true", "false")),
    )
    for sql_type, ok in checks:
        if all(ok(v) for v in present):
            return sql_type
    return "TEXT"


def _is(text: str, fmt: str) -> bool:
    try:
        datetime.strptime(text, fmt)
    except ValueError:
        return False
    return True


def load_csv_into_postgres(url: str, table: str, csv_path: Path) -> list[str]:
    """Create `table` with column types inferred from the CSV (NUMERIC, DATE, TIMESTAMPTZ in UTC,
    BIGINT, BOOLEAN, TEXT) and COPY the rows in. Returns the column names."""
    import psycopg

    with csv_path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    types = [_pg_type([r[i] for r in body]) for i in range(len(header))]
    cols = ", ".join(f'"{h}" {t}' for h, t in zip(header, types, strict=True))
    conninfo = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        conn.execute(f'CREATE TABLE "{table}" ({cols})')
        with conn.cursor().copy(f'COPY "{table}" FROM STDIN') as copy_:
            for r in body:
                copy_.write_row([None if v == "" else v for v in r])
    return header


def as_date(value: int) -> date:
    return datetime.fromtimestamp(value, UTC).date()


# --- Chargebee -----------------------------------------------------------------------------------------

CHARGEBEE_SAMPLES = SAMPLES / "chargebee"


def chargebee_template(kind: str) -> dict[str, Any]:
    """Chargebee's own example `invoice` or `transaction` (its Java SDK's test fixtures); a `subscription`
    comes from its example event's content."""
    if kind == "subscription":
        data = json.loads((CHARGEBEE_SAMPLES / "chargebee-java__events.json").read_text(encoding="utf-8"))
        return copy.deepcopy(data["event"]["content"]["subscription"])  # type: ignore[no-any-return]
    data = json.loads((CHARGEBEE_SAMPLES / f"chargebee-java__{kind}.json").read_text(encoding="utf-8"))
    return copy.deepcopy(data.get(kind, data))


def chargebee_credit_note(*, id: str, updated: int, status: str, total: int, currency: str = "USD",
                          allocated: int = 0, refunded: int = 0, invoice: str = "inv_1") -> dict[str, Any]:
    """A credit note in the shape Chargebee's API reference documents (the samples hold none)."""
    return {"id": id, "object": "credit_note", "customer_id": "cus_1", "subscription_id": "sub_1",
            "reference_invoice_id": invoice, "type": "refundable" if refunded else "adjustment",
            "reason_code": "product_unsatisfactory", "status": status, "price_type": "tax_exclusive",
            "date": updated - 100, "updated_at": updated, "currency_code": currency, "sub_total": total, "total": total,
            "amount_allocated": allocated, "amount_refunded": refunded,
            "amount_available": total - allocated - refunded, "discounts": [], "tax": 0, "deleted": False,
            "linked_refunds": [{"txn_id": "txn_r1", "applied_amount": refunded, "applied_at": updated,
                                "txn_status": "success", "txn_date": updated, "txn_amount": refunded}]
            if refunded else [],
            "line_items": [{"id": f"li_{id}", "date_from": updated - 86_400 * 30, "date_to": updated,
                            "unit_amount": total, "quantity": 1, "amount": total, "is_taxed": False,
                            "tax_amount": 0, "discount_amount": 0, "entity_type": "plan_item_price",
                            "entity_id": "basic-USD-monthly", "description": "Basic", "pricing_model": "flat_fee"}]}


@dataclass
class ChargebeeServer(VendorServer):
    """/api/v2/<resource> list endpoints: offset pagination (`next_offset`), `updated_at[after]`,
    `sort_by[asc]=updated_at`, `include_deleted`, HTTP Basic authentication with the API key as user name."""

    def handle(self, request: Request) -> Response:
        import base64

        resource = request.path.removeprefix("/api/v2/")
        self.requests.append(request.full_path)
        expected = "Basic " + base64.b64encode(f"{self.api_key}:".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return _json({"message": "Sorry, authentication failed. Invalid api key", "type": "invalid_request",
                          "api_error_code": "api_authentication_failed", "error_code": "api_authentication_invalid_key",
                          "http_status_code": 401}, 401)
        fault = self.queued_fault(resource)
        if fault is not None:
            return fault
        kind = resource.rstrip("s")
        items = sorted(self.objects.get(resource, []), key=lambda o: (o["updated_at"], o["id"]))
        # Deleted records stay listed, marked `deleted`, for `include_deleted=true` only (Chargebee's lists).
        if request.args.get("include_deleted") != "true":
            items = [o for o in items if not o.get("deleted")]
        if "updated_at[after]" in request.args:
            items = [o for o in items if o["updated_at"] > int(request.args["updated_at[after]"])]
        start = int(request.args.get("offset", "0"))
        limit = int(request.args.get("limit", "10"))
        page = items[start:start + limit]
        # A subscription comes with its customer, as the list subscriptions endpoint documents.
        extra = (lambda o: {"customer": {"id": o["customer_id"], "object": "customer"}}) \
            if kind == "subscription" else (lambda o: {})
        body: dict[str, Any] = {"list": [{kind: o, **extra(o)} for o in page]}
        if start + limit < len(items):
            body["next_offset"] = str(start + limit)
        return _json(body)


def chargebee_server(api_key: str) -> contextlib.AbstractContextManager[ChargebeeServer]:
    return _serve("/api/v2/", lambda http: ChargebeeServer(http, api_key))

"""The Zuora connector (REST Object Query API over httpx, OAuth client credentials) against a local
server speaking Zuora's JSON, built on Zuora records from the dbt_zuora seeds (tests/zuora_server.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tieout.config import Config, parse_config
from tieout.engines import create_engine
from tieout.pipeline import ingest
from tieout.sources.connectors import pull_source
from tieout.sources.retry import ConnectorAuthError, ConnectorError
from tieout.sources.snapshots import last_pull

from .vendor_servers import ingested
from .zuora_server import (
    Fault,
    ZuoraServer,
    account,
    charge,
    invoice,
    invoice_item,
    payment,
    product,
    refund,
    subscription,
    zuora_id,
    zuora_server,
)

CLIENT_ID = "0f3c9a7e-client-planted"
SECRET = "zsec_PlantedSecret_7c1d9e2b4a"
D = Decimal


@pytest.fixture
def zuora() -> Iterator[ZuoraServer]:
    with zuora_server(CLIENT_ID, SECRET) as server:
        yield server


def _config(tmp_path: Path, server: ZuoraServer, stream: str, **options: Any) -> Config:
    opts = {"client_id": CLIENT_ID, "client_secret": SECRET, "base_url": server.url, **options}
    return parse_config(f"""
sources:
  - name: zuora_{stream}
    format: zuora.{stream}
    path: pulls/{stream}
    options: {json.dumps(opts)}
""", tmp_path / "tieout.yaml")


def _rows(tmp_path: Path, stream: str, snapshot: str) -> dict[str, dict[str, Any]]:
    path = tmp_path / "pulls" / stream / snapshot
    return {r["id"]: r for r in duckdb.sql(f"SELECT * FROM read_parquet('{path}')").to_arrow_table().to_pylist()}


def _no_wait(seconds: float) -> None:
    raise AssertionError(f"unexpected retry (wait {seconds}s)")


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def _at(minute: int) -> str:
    return f"2026-03-02T10:{minute:02d}:00-08:00"  # the tenant's zone: 18:MM UTC


def test_accounts_page_on_cursor_incrementally_with_one_token(tmp_path: Path, zuora: ZuoraServer) -> None:
    zuora.objects["accounts"] = [account(i, f"A{i:05d}", _at(i), name=f"Acct {i}", email=f"b{i}@x.example")
                                 for i in range(1, 6)]
    cfg = _config(tmp_path, zuora, "accounts", page_size=2)
    first, _ = pull_source(cfg, 0, sleep=_no_wait)
    assert first.records == 5 and first.cursor == {"updatedDate": "2026-03-02T18:05:00Z"}
    assert sum("cursor=" in r for r in zuora.requests) == 2  # 3 pages: 2 + 2 + 1
    assert all("sort%5B%5D=updateddate.ASC" in r and "expand%5B%5D=billto" in r for r in zuora.requests)
    zuora.objects["accounts"][0] = account(1, "A00001", _at(30), name="Acct 1 renamed", email="b1@x.example")
    zuora.requests.clear()
    second, _ = pull_source(cfg, 0, sleep=_no_wait)
    assert [r for r in zuora.requests if "filter" in r] == zuora.requests
    assert "filter%5B%5D=updateddate.GE%3A2026-03-02T18%3A05%3A00Z" in zuora.requests[0]
    # the record of the cursor's second comes again (GE) and replaces itself; the changed one replaces its old version
    assert second.mode == "incremental" and second.pulled == 2 and second.records == 5
    rows = _rows(tmp_path, "accounts", second.snapshot)
    assert rows[zuora_id("ac", 1)]["name"] == "Acct 1 renamed"
    assert rows[zuora_id("ac", 2)]["billToEmail"] == "b2@x.example"
    assert zuora.token_requests == 1  # one token for both pulls: reused until it expires
    zuora.objects["accounts"] = []
    third, _ = pull_source(cfg, 0, sleep=_no_wait)  # an empty page: nothing new, the cursor stays
    assert third.pulled == 0 and third.records == 5 and third.cursor == second.cursor


def _billing(z: ZuoraServer) -> None:
    """Two customers (USD, JPY) with subscriptions, invoices with items, payments and a refund; plus one
    record of each kind of bad input."""
    a1, a2 = zuora_id("ac", 1), zuora_id("ac", 2)
    z.objects["accounts"] = [account(1, "A-001", _at(1), name="Acme Corp", email="ap@acme.example"),
                             account(2, "A-002", _at(2), name="Kaisha KK", currency="JPY")]
    z.objects["products"] = [product(1, "PRO", _at(1)), product(2, "SEATS", _at(1))]
    p1, p2 = zuora_id("pr", 1), zuora_id("pr", 2)
    z.objects["subscriptions"] = [
        subscription(1, "S-001", a1, _at(3), plans=[(p1, [
            charge("C-001", price=D("19.99"), quantity=D("40.000000000"), currency="USD", start="2026-01-01",
                   end=None),
            charge("C-002", price=None, quantity=D(1), currency="USD", start="2026-01-01", end="2026-04-01",
                   model="Discount-Percentage", discount_percentage=D("20"))])]),
        subscription(2, "S-002", a2, _at(4), plans=[
            (p1, [charge("C-003", price=D(5000), quantity=D(3), currency="JPY", start="2025-06-15", end="2026-06-15",
                         period="Annual")]),
            (p2, [charge("C-004", price=D(120), quantity=D(10), currency="JPY", start="2025-06-15", end=None),
                  charge("C-005", price=D(9), quantity=D(1), currency="JPY", start="2025-06-15", end=None,
                         charge_type="OneTime")])]),
        subscription(3, "S-003", a1, _at(5), status="Draft", plans=[]),  # not contracted yet: no row
        subscription(4, "S-004", a1, _at(6), plans=[(p1, [
            charge("C-006", price=D(10), quantity=D(1), currency="USD", start="2026-01-01", end=None,
                   period="Eighteen_Months")])]),  # an interval the canonical model does not know
        subscription(5, "S-001", a1, _at(2), latest=False, plans=[]),  # an older version of S-001
    ]
    i1, i2, i3 = zuora_id("in", 1), zuora_id("in", 2), zuora_id("in", 3)
    bad = invoice(3, "INV-003", a1, _at(9), amount=D("10.00"), without_tax=D("10.00"), tax=D(0), balance=D(0))
    bad["currencyCode"] = bad.pop("currency")  # a renamed field
    z.objects["invoices"] = [
        invoice(1, "INV-001", a1, _at(7), amount=D("692.66"), without_tax=D("639.68"), tax=D("52.98"),
                balance=D(0)),
        invoice(2, "INV-002", a2, _at(8), currency="JPY", amount=D(16500), without_tax=D(15000), tax=D(1500),
                balance=D(6500)),
        bad,
        invoice(4, "INV-004", a2, _at(10), status="Error", currency="JPY", amount=D(1), without_tax=D(1),
                tax=D(0), balance=D(1)),
    ]
    line = zuora_id("ii", 1)
    z.objects["invoice-items"] = [
        invoice_item(1, i1, _at(7), sku="PRO", amount=D("799.60"), unit_price=D("19.99"), quantity=D(40),
                     start="2026-03-01", end="2026-03-31", subscription_number="S-001", tax=D("52.98")),
        invoice_item(2, i1, _at(7), sku="PRO", amount=D("-159.92"), unit_price=D("0"), quantity=D(1),
                     start="2026-03-01", end="2026-03-31", subscription_number="S-001", processing_type="Discount",
                     applied_to=line),
        invoice_item(3, i2, _at(8), sku="SEATS", amount=D(15000), unit_price=D(1500), quantity=D(10),
                     start="2026-02-15", end="2026-03-14", subscription_number="S-002", tax=D(1500)),
    ]
    z.objects["payments"] = [
        payment(1, "P-001", a1, _at(11), amount=D("692.66"), currency="USD", effective="2026-03-03",
                invoice_id=i1, reference="ch_3PqA"),
        payment(2, "P-002", a2, _at(12), amount=D(10000), currency="JPY", effective="2026-03-04", invoice_id=i2,
                method="BankTransfer"),
        payment(3, "P-003", a2, _at(13), amount=D(5), currency="JPY", effective="2026-03-04", invoice_id=i2,
                status="Error"),  # a failed attempt is not money received
        payment(4, "P-004", a1, _at(14), amount=D(1), currency="USD", effective="2026-03-05", invoice_id=None,
                method="Bitcoin"),  # an unknown payment method
    ]
    z.objects["refunds"] = [refund(1, "R-001", a1, _at(15), amount=D("100.00"), currency="USD",
                                   refund_date="2026-03-06", invoice_id=i1, reference="re_3PqB")]
    del i3


def test_streams_map_onto_the_canonical_tables_and_bad_records_are_quarantined(tmp_path: Path,
                                                                                zuora: ZuoraServer) -> None:
    _billing(zuora)
    opts = f'{{client_id: "{CLIENT_ID}", client_secret: "{SECRET}", base_url: "{zuora.url}"}}'
    cfg = parse_config("sources:\n" + "".join(
        f"  - {{name: z_{s}, format: zuora.{s}, path: pulls/{s}, options: {opts}}}\n"
        for s in ("accounts", "subscriptions", "invoices", "invoice_items", "payments")), tmp_path / "tieout.yaml")
    got, quarantined = ingested(cfg)
    customers = {r["customer_id"]: r for r in got["customers"]}
    assert (customers["A-001"]["name"], customers["A-001"]["email"]) == ("Acme Corp", "ap@acme.example")
    subs = {r["subscription_id"]: r for r in got["subscriptions"]}
    assert sorted(subs) == ["S-001", "S-002/C-003", "S-002/C-004"]
    s1 = subs["S-001"]
    assert (s1["sku"], s1["quantity"], s1["unit_amount"], s1["currency"], s1["interval"], s1["status"]) == (
        "PRO", 40, 1999, "USD", "month", "active")
    assert (s1["discount_percent"], str(s1["discount_end"]), s1["end_date"]) == (D("20"), "2026-04-01", None)
    assert (subs["S-002/C-003"]["interval"], subs["S-002/C-003"]["unit_amount"], subs["S-002/C-004"]["sku"]) == (
        "year", 5000, "SEATS")
    assert subs["S-002/C-003"]["contract_id"] == "S-002"
    invoices = {r["invoice_id"]: r for r in got["invoices"]}
    inv1 = invoices["INV-001"]
    assert (inv1["status"], inv1["subtotal"], inv1["discount"], inv1["tax"], inv1["total"], inv1["amount_paid"]) == (
        "paid", 79960, 15992, 5298, 69266, 69266)
    assert (str(inv1["period_start"]), str(inv1["period_end"]), inv1["subscription_id"]) == (
        "2026-03-01", "2026-04-01", "S-001")
    assert str(inv1["issued_at"]).startswith("2026-03-01 10:00:00")  # 02:00 at -08:00, in UTC
    inv2 = invoices["INV-002"]
    assert (inv2["status"], inv2["total"], inv2["amount_paid"], inv2["currency"]) == ("open", 16500, 10000, "JPY")
    lines = {r["line_id"]: r for r in got["invoice_lines"]}
    assert len(lines) == 2  # the discount item is folded into the line it applies to
    l1 = lines[zuora_id("ii", 1)]
    assert (l1["invoice_id"], l1["amount"], l1["discount"], l1["unit_amount"], l1["quantity"], l1["tax"]) == (
        "INV-001", 79960, 15992, 1999, 40, 5298)
    assert str(l1["period_end"]) == "2026-04-01"  # Zuora's inclusive 2026-03-31, exclusive
    payments = {r["payment_id"]: r for r in got["payments"]}
    assert sorted(payments) == ["P-001", "P-002", "R-001"]
    assert (payments["P-001"]["invoice_id"], payments["P-001"]["method"], payments["P-001"]["gateway_ref"],
            payments["P-001"]["amount"]) == ("INV-001", "card", "ch_3PqA", 69266)
    assert (payments["P-002"]["method"], payments["R-001"]["type"], payments["R-001"]["invoice_id"],
            payments["R-001"]["gateway_ref"], payments["R-001"]["customer_id"]) == (
        "ach", "refund", "INV-001", "re_3PqB", "A-001")
    reasons = sorted((q["table_name"], q["column_name"], q["reason"]) for q in quarantined)
    assert [(t, c) for t, c, _ in reasons] == [("invoices", "currency"), ("invoices", "status"),
                                              ("payments", "method"), ("subscriptions", "interval")]
    assert {q["file"].split("/snapshots/")[0] for q in quarantined} == {
        "pulls/invoices", "pulls/payments", "pulls/subscriptions"}  # the source's own pull directory
    by_col = {c: r for _, c, r in reasons}
    assert by_col["currency"] == (f"record {zuora_id('in', 3)}: required value is empty (field 'currency' missing "
                                  "from the invoice in the API answer)")
    assert by_col["status"].startswith(f"record {zuora_id('in', 4)}: unknown value 'Error'")
    assert by_col["method"].startswith(f"record {zuora_id('pa', 4)}: unknown value 'Bitcoin'")
    assert by_col["interval"].startswith("record C-006: unknown value 'Eighteen_Months'")


def test_faults_retry_then_report_and_401_refetches_once_then_stops(tmp_path: Path, zuora: ZuoraServer,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    zuora.objects["accounts"] = [account(1, "A-001", _at(1), name="Acme")]
    limit = json.dumps({"success": False, "reasons": [{"code": "50000040", "message": "Too many requests"}]})
    zuora.script("accounts", Fault(429, limit, {"Retry-After": "3"}), Fault(500, "<html>Internal error</html>"),
                 Fault(200, '{"data": [{"id": '))
    sleeps = Sleeps()
    record, _ = pull_source(_config(tmp_path, zuora, "accounts"), 0, sleep=sleeps)
    assert sleeps == [3.0, 2.0, 4.0] and record.records == 1
    zuora.script("accounts", *[Fault(503, "Service Unavailable")] * 2)
    with pytest.raises(ConnectorError, match="gave up after 2 attempts"):
        pull_source(_config(tmp_path, zuora, "accounts", attempts=2), 0, sleep=Sleeps())
    assert last_pull(tmp_path / "pulls/accounts") == record  # a failed pull moves nothing
    zuora.script("accounts", Fault(200, '{"records": []}'))
    with pytest.raises(ConnectorError, match=r"not an Object Query list \(no `data` array\)"):
        pull_source(_config(tmp_path, zuora, "accounts"), 0, sleep=_no_wait)
    # a token revoked early: one new token, and the pull goes on
    zuora.revoked.update(zuora.issued)
    before = zuora.token_requests
    again, _ = pull_source(_config(tmp_path, zuora, "accounts"), 0, sleep=_no_wait)
    assert again.records == 1 and zuora.token_requests == before + 1
    # a 401 that a new token does not cure is terminal, and names the source
    zuora.reject_every_token = True
    before = zuora.token_requests
    with pytest.raises(ConnectorAuthError, match=r"^source 'zuora_accounts': authentication failed \(HTTP 401: "
                       "this resource is protected"):
        pull_source(_config(tmp_path, zuora, "accounts"), 0, sleep=_no_wait)
    assert zuora.token_requests == before + 1
    zuora.reject_every_token = False
    with pytest.raises(ConnectorAuthError, match=r"^source 'zuora_accounts': authentication failed .*Bad client "
                       "credentials") as info:
        pull_source(_config(tmp_path, zuora, "accounts", client_secret="zsec_WrongSecret_0000"), 0, sleep=_no_wait)
    assert "zsec_WrongSecret_0000" not in str(info.value)
    for secret in (SECRET, "zsec_WrongSecret_0000", *zuora.issued):
        assert secret not in caplog.text
    assert "/oauth/token" in caplog.text  # httpx's log was captured, and is clean


def test_an_expired_token_is_renewed_before_use(tmp_path: Path, zuora: ZuoraServer) -> None:
    zuora.expires_in = 30  # below the renewal margin: every call takes a new token
    zuora.objects["accounts"] = [account(i, f"A{i}", _at(i), name=f"N{i}") for i in range(1, 4)]
    record, _ = pull_source(_config(tmp_path, zuora, "accounts", page_size=1,
                                    client_secret=SECRET), 0, sleep=_no_wait)
    assert record.records == 3 and zuora.token_requests == 3


ZUORA_SOURCES = {  # demo source -> (stream, what the demo tenant's exports map beyond the defaults)
    "customers": ("accounts", {"columns": {"gateway_customer_id": "GatewayCustomerId__c", "segment": "Segment__c"},
                               "custom_fields": ["GatewayCustomerId__c", "Segment__c"]}),
    "subscriptions": ("subscriptions", {}),
    "invoices": ("invoices", {"columns": {"subtotal": "amountWithoutTax", "discount": "DiscountAmount__c"},
                              "custom_fields": ["DiscountAmount__c"]}),
    "invoice_lines": ("invoice_items", {}),
    "payments": ("payments", {}),
}


UNRELATED_SOURCES = ("ledger", "stripe_payouts", "crm_accounts", "crm_products", "operations_roster", "entitlements",
                     "usage_events")


@pytest.mark.e2e
def test_run_with_billing_from_zuora_finds_what_the_exports_find(tmp_path_factory: pytest.TempPathFactory,
                                                                 zuora: ZuoraServer) -> None:
    import os

    import yaml

    from tieout.config import load_config
    from tieout.demo import generate_workspace
    from tieout.pipeline import run

    from .zuora_server import demo_zuora_tenant

    files = tmp_path_factory.mktemp("zuora-files")
    generate_workspace(files, customers=60, seed=11)
    zuora.objects.update(demo_zuora_tenant(files))
    cfg = yaml.safe_load((files / "tieout.yaml").read_text(encoding="utf-8"))
    # the checks that read billing (the others' sources go: the run is done twice)
    cfg["sources"] = [s for s in cfg["sources"] if s["name"] not in UNRELATED_SOURCES]
    cfg["checks"].update(gl_cash={"enabled": False}, crm_operations={"enabled": False})
    for src in cfg["sources"]:
        if src["name"] == "invoices":
            src["columns"]["amount_paid"] = "Invoice.PaymentAmount"
    (files / "tieout.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    on_files = run(load_config(files / "tieout.yaml"))

    connected = tmp_path_factory.mktemp("zuora-connected")
    sources = []
    for src in cfg["sources"]:
        if src["name"] in ZUORA_SOURCES:
            stream, extra = ZUORA_SOURCES[src["name"]]
            opts = {"client_id": "${ZUORA_CLIENT_ID}", "client_secret": "${ZUORA_CLIENT_SECRET}",
                    "base_url": zuora.url, **{k: v for k, v in extra.items() if k != "columns"}}
            src = {"name": src["name"], "format": f"zuora.{stream}", "path": f"pulls/{src['name']}",
                   **({"columns": extra["columns"]} if "columns" in extra else {}), "options": opts}
        else:
            src = {**src, "path": str(files / src["path"])}
        sources.append(src)
    entities = cfg.get("entities") or {}
    if entities.get("alias_file"):
        entities["alias_file"] = str(files / entities["alias_file"])
    (connected / "tieout.yaml").write_text(yaml.safe_dump({**cfg, "sources": sources}, sort_keys=False),
                                           encoding="utf-8")
    os.environ.update(ZUORA_CLIENT_ID=CLIENT_ID, ZUORA_CLIENT_SECRET=SECRET)
    try:
        on_zuora = run(load_config(connected / "tieout.yaml"))
    finally:
        for name in ("ZUORA_CLIENT_ID", "ZUORA_CLIENT_SECRET"):
            os.environ.pop(name, None)

    def keys(findings: Any) -> set[tuple[Any, ...]]:
        return {(f.check, f.category, f.subject, f.customer_id, f.currency, f.amount_at_risk, f.expected, f.actual,
                 f.period) for f in findings}

    assert keys(on_zuora.findings) == keys(on_files.findings)
    assert len(on_zuora.findings) >= 10
    assert {f.check for f in on_zuora.findings} == {"billing_subscriptions", "gateway_billing"}
    read = {c.table: c.read for c in on_zuora.counts if c.table in ("invoices", "payments", "invoice_lines")}
    assert read == {c.table: c.read for c in on_files.counts if c.table in read}
    written = [p.read_bytes().decode("latin-1") for p in connected.rglob("*") if p.is_file()]
    assert len(written) > 10 and not [s for s in (CLIENT_ID, SECRET, *zuora.issued) for w in written if s in w]


def test_data_source_exports_are_file_formats(tmp_path: Path) -> None:
    """Zuora's Data Source exports (`Object.Field` headers, FORMATS.md), with the sample tenant's values:
    invoice INV00000030 (USD 65 + 5.36 tax) and its JPY usage item over August 2015."""
    from .zuora_server import zuora_template

    inv, item = zuora_template("invoice"), zuora_template("invoice_item")
    (tmp_path / "invoices.csv").write_text(
        "Invoice.InvoiceNumber,Account.AccountNumber,Subscription.Name,Invoice.Status,Invoice.PostedDate,"
        "Invoice.InvoiceDate,Account.Currency,Invoice.AmountWithoutTax,Invoice.TaxAmount,Invoice.Amount,"
        "Invoice.PaymentAmount\n"
        f"{inv['invoiceNumber']},A00000001,A-S00000011,{inv['status']},,{inv['invoiceDate']},USD,"
        f"{inv['amountWithoutTax']},{inv['taxAmount']},{inv['amount']},{inv['paymentAmount']}\n"
        "INV00000031,A00000001,A-S00000011,Canceled,2015-11-15 10:00:00,2015-11-15,USD,65,5.36,70.36,0\n",
        encoding="utf-8")
    (tmp_path / "items.csv").write_text(
        "Invoice.InvoiceNumber,InvoiceItem.Id,InvoiceItem.SKU,InvoiceItem.Quantity,InvoiceItem.UnitPrice,"
        "InvoiceItem.ChargeAmount,Invoice.Currency,InvoiceItem.ServiceStartDate,InvoiceItem.ServiceEndDate,"
        "InvoiceItem.TaxAmount\n"
        f"INV00000029,{item['id']},{item['sku']},{item['quantity']},"
        f"{item['unitPrice']},{item['chargeAmount']},{item['transactionCurrency']},{item['serviceStartDate']},"
        f"{item['serviceEndDate']},{item['taxAmount']}\n"
        "INV00000029,i-2,SKU-00000016,1,17,17,JPY,2015-08-01,31/08/2015,0\n",
        encoding="utf-8")
    cfg = parse_config("""
sources:
  - {name: zinv, format: zuora_invoices, path: invoices.csv}
  - {name: zitems, format: zuora_invoice_items, path: items.csv}
""", tmp_path / "tieout.yaml")
    engine = create_engine("duckdb")
    try:
        tables, _, quarantined, _ = ingest(cfg, engine, lambda _m: None)
        invoices = {r["invoice_id"]: r for r in tables["invoices"].to_pyarrow().to_pylist()}
        lines = tables["invoice_lines"].to_pyarrow().to_pylist()
    finally:
        engine.close()
    first = invoices["INV00000030"]
    assert (first["status"], first["subtotal"], first["tax"], first["total"], first["amount_paid"], first["currency"]) \
        == ("open", 6500, 536, 7036, 7036, "USD")
    assert str(first["issued_at"]).startswith("2015-10-15") and invoices["INV00000031"]["status"] == "void"
    (line,) = lines
    assert (line["sku"], line["quantity"], line["unit_amount"], line["amount"], line["currency"], line["tax"]) == (
        "SKU-00000016", 33580, 17, 570860, "JPY", 45668)
    assert (str(line["period_start"]), str(line["period_end"])) == ("2015-08-01", "2015-09-01")
    (bad,) = quarantined
    assert (bad["line"], bad["column_name"], bad["value"]) == (3, "period_end", "31/08/2015")

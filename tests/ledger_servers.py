"""Local QuickBooks Online and Xero API servers for the accounting connectors' tests.

QuickBooks: the query endpoint (`select * from <Entity> where MetaData.LastUpdatedTime >= '…'
orderby … startposition n maxresults m`), the GeneralLedger report (Header/Columns/Rows with nested
sections and ColData) and the OAuth2 token endpoint; objects start from the quickbooks-go fixtures
(/work/shared/samples/quickbooks, BSD-2-Clause: the JournalEntry's envelope, MetaData and lines).
Xero: /BankTransactions, /Payments, /ManualJournals with `page`/`pageSize`, If-Modified-Since and the
xero-tenant-id header, in the envelope and objects of Xero's OpenAPI examples (samples/xero, MIT).
"""

from __future__ import annotations

import base64
import copy
import csv
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from .vendor_servers import SAMPLES, Fault, VendorServer, _Prefix

QBO_REALM = "9130350000000001"
CLIENT_ID = "ABclientIdPlanted00000000000000000000000000"
CLIENT_SECRET = "secretPlanted0000000000000000000000000000"


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body, default=str), status=status, content_type="application/json",
                    headers=headers or {})


def _sample(path: str) -> dict[str, Any]:
    return json.loads((SAMPLES / path).read_text(encoding="utf-8"), parse_float=Decimal)  # type: ignore[no-any-return]


# --- QuickBooks Online -------------------------------------------------------------------------------------


def qbo_journal_entry(id: str, txn_date: str, updated: str, lines: list[tuple[str, str, str]],
                      doc: str | None = None) -> dict[str, Any]:
    """The quickbooks-go JournalEntry fixture with our id, date and lines (posting type, account, amount)."""
    je = copy.deepcopy(_sample("quickbooks/quickbooks-go__journal-entry.json")["JournalEntry"])
    template = je["Line"][0]
    je.update(Id=id, TxnDate=txn_date, DocNumber=doc or f"JE-{id}")
    je["MetaData"] = {"CreateTime": updated, "LastUpdatedTime": updated}
    je["Line"] = []
    for n, (posting, account, amount) in enumerate(lines):
        line = copy.deepcopy(template)
        line.update(Id=str(n), Amount=Decimal(amount), Description=f"line {n}")
        line["JournalEntryLineDetail"] = {"PostingType": posting, "AccountRef": {"name": account, "value": str(n)}}
        je["Line"].append(line)
    return je


def qbo_payment(id: str, txn_date: str, updated: str, amount: str, method: str | None = "Visa",
                invoice: str | None = None) -> dict[str, Any]:
    """A Payment as the API documents it (the fixture's envelope fields: domain, sparse, SyncToken, MetaData)."""
    p: dict[str, Any] = {"domain": "QBO", "sparse": False, "SyncToken": "0", "Id": id, "TxnDate": txn_date,
                         "TotalAmt": Decimal(amount), "UnappliedAmt": 0, "ProcessPayment": False,
                         "CustomerRef": {"value": f"C{id}", "name": f"Customer {id}"},
                         "CurrencyRef": {"value": "USD", "name": "United States Dollar"},
                         "DepositToAccountRef": {"value": "4", "name": "Undeposited Funds"},
                         "PaymentRefNum": f"ch_{id}",
                         "MetaData": {"CreateTime": updated, "LastUpdatedTime": updated},
                         "Line": [{"Amount": Decimal(amount),
                                   "LinkedTxn": [{"TxnId": invoice or f"INV-{id}", "TxnType": "Invoice"}]}]}
    if method:
        p["PaymentMethodRef"] = {"value": "1", "name": method}
    return p


def qbo_deposit(id: str, txn_date: str, updated: str, account: str, payments: list[str],
                fee: tuple[str, str] | None = None) -> dict[str, Any]:
    """A Deposit: payments settled from Undeposited Funds (LinkedTxn) and a negative fee line."""
    lines: list[dict[str, Any]] = [
        {"Id": str(n), "LineNum": n, "Amount": Decimal(a), "DetailType": "DepositLineDetail",
         "DepositLineDetail": {}, "LinkedTxn": [{"TxnId": f"P{n}", "TxnType": "Payment", "TxnLineId": "0"}]}
        for n, a in enumerate(payments, start=1)]
    if fee:
        lines.append({"Id": str(len(lines) + 1), "Amount": -Decimal(fee[1]), "DetailType": "DepositLineDetail",
                      "Description": "Stripe fees",
                      "DepositLineDetail": {"AccountRef": {"value": "9", "name": fee[0]}}})
    total = sum((Decimal(line["Amount"]) for line in lines), Decimal(0))
    return {"domain": "QBO", "sparse": False, "SyncToken": "0", "Id": id, "TxnDate": txn_date, "TotalAmt": total,
            "DepositToAccountRef": {"value": "35", "name": account},
            "CurrencyRef": {"value": "USD", "name": "United States Dollar"}, "PrivateNote": f"payout {id}",
            "MetaData": {"CreateTime": updated, "LastUpdatedTime": updated}, "Line": lines}


@dataclass
class GlEntry:
    """One line of the GeneralLedger report."""

    account: str
    date: str  # yyyy-MM-dd
    txn_type: str
    txn_id: str
    num: str
    name: str
    memo: str
    amount: Decimal


GL_COLUMNS = [("Date", "Date", "tx_date"), ("Transaction Type", "String", "txn_type"), ("Num", "String", "doc_num"),
              ("Name", "String", "name"), ("Memo/Description", "String", "memo"), ("Split", "String", "split_acc"),
              ("Amount", "Money", "subt_nat_amount"), ("Balance", "Money", "rbal_nat_amount")]


def general_ledger_report(entries: list[GlEntry], start: str, end: str,
                          rename: dict[str, str] | None = None) -> dict[str, Any]:
    """The GeneralLedger report JSON: one Section per account (Header, Data rows with ColData, Summary)."""
    rename = rename or {}
    columns = [{"ColTitle": title, "ColType": kind, "MetaData": [{"Name": "ColKey", "Value": rename.get(key, key)}]}
               for title, kind, key in GL_COLUMNS]
    sections = []
    by_account: dict[str, list[GlEntry]] = {}
    for e in entries:
        by_account.setdefault(e.account, []).append(e)
    for account in sorted(by_account):
        balance = Decimal(0)
        rows: list[dict[str, Any]] = [{"ColData": [{"value": "Beginning Balance"}] + [{"value": ""}] * 6
                                       + [{"value": "0.00"}], "type": "Data"}]
        for e in sorted(by_account[account], key=lambda e: (e.date, e.memo)):
            balance += e.amount
            rows.append({"type": "Data", "ColData": [
                {"value": e.date}, {"value": e.txn_type, "id": e.txn_id}, {"value": e.num},
                {"value": e.name, "id": "58"}, {"value": e.memo}, {"value": "-Split-", "id": "-1"},
                {"value": f"{e.amount:.2f}" if isinstance(e.amount, Decimal) else str(e.amount)},
                {"value": f"{balance:.2f}"}]})
        sections.append({"Header": {"ColData": [{"value": account, "id": str(abs(hash(account)) % 1000)}]
                                    + [{"value": ""}] * 7},
                         "Rows": {"Row": rows},
                         "Summary": {"ColData": [{"value": f"Total for {account}"}] + [{"value": ""}] * 5
                                     + [{"value": f"{balance:.2f}"}, {"value": ""}]},
                         "type": "Section"})
    return {"Header": {"Time": "2026-10-01T09:00:00-07:00", "ReportName": "GeneralLedger", "ReportBasis": "Accrual",
                       "StartPeriod": start, "EndPeriod": end, "Currency": "USD",
                       "Option": [{"Name": "NoReportData", "Value": "false" if entries else "true"}]},
            "Columns": {"Column": columns}, "Rows": {"Row": sections}}


def gl_entries_from_export(path: Path) -> list[GlEntry]:
    """The lines of a QuickBooks General Ledger CSV export (the demo's), as the report JSON carries them."""
    entries: list[GlEntry] = []
    account = None
    with path.open(newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.reader(fh))
    for n, row in enumerate(rows[5:], start=6):
        first = row[0].strip()
        if first:
            account = None if first == "TOTAL" or first.startswith("Total for ") else first
            continue
        if not any(row) or row[1] == "Beginning Balance" or account is None:
            continue
        text = row[7].replace(",", "").replace("$", "")
        amount = -Decimal(text.strip("()")) if text.startswith("(") else Decimal(text)
        when = datetime.strptime(row[1], "%m/%d/%Y").date().isoformat()
        entries.append(GlEntry(account, when, row[2], str(1000 + n), row[3], row[4], row[5], amount))
    return entries


@dataclass
class QuickBooksServer(VendorServer):
    """/v3/company/<realm>/query, /cdc and /reports/GeneralLedger with Bearer tokens; /oauth2/… token
    endpoint. An object marked `_deleted` is left out of queries and comes from /cdc as deleted."""

    refresh_token: str = "AB11refreshPlanted0000000000000000000000"
    report: dict[str, Any] | None = None
    report_params: list[dict[str, str]] = field(default_factory=list)
    token_requests: int = 0

    @property
    def token_url(self) -> str:
        return f"{self.url}/oauth2/v1/tokens/bearer"

    def handle(self, request: Request) -> Response:
        if request.method == "POST":
            return self._token(request)
        self.requests.append(request.full_path)
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _json({"Fault": {"Error": [{"Message": "message=AuthenticationFailed; errorCode=003200; "
                                               "statusCode=401", "code": "3200"}], "type": "AUTHENTICATION"},
                          "time": "2026-10-01T09:00:00.000-07:00"}, 401)
        path = request.path.removeprefix(f"/v3/company/{QBO_REALM}/")
        if path == "reports/GeneralLedger":
            fault = self.queued_fault("GeneralLedger")
            if fault is not None:
                return fault
            self.report_params.append(dict(request.args))
            return _json(self.report or general_ledger_report([], request.args["start_date"], request.args["end_date"]))
        if path == "cdc":
            return self._cdc(request.args["entities"].split(","), datetime.fromisoformat(request.args["changedSince"]))
        if path != "query":
            return _json({"Fault": {"Error": [{"Message": "Unsupported Operation", "code": "500"}]}}, 400)
        return self._query(request.args["query"])

    def _cdc(self, entities: list[str], since: datetime) -> Response:
        """Change data capture: per entity, every object changed since `since`, a deleted one (`_deleted`)
        as the documented stub `{"domain": "QBO", "status": "Deleted", "Id", "MetaData"}`."""
        parts = []
        for entity in entities:
            fault = self.queued_fault(f"cdc:{entity}")
            if fault is not None:
                return fault
            found = [({"domain": "QBO", "status": "Deleted", "Id": o["Id"], "MetaData": {
                "LastUpdatedTime": o["MetaData"]["LastUpdatedTime"]}} if o.get("_deleted") else o)
                for o in self.objects.get(entity, []) if _qbo_time(o) >= since]
            parts.append({entity: found, "startPosition": 1, "maxResults": len(found), "totalCount": len(found)}
                         if found else {})
        return _json({"CDCResponse": [{"QueryResponse": parts}], "time": _server_time()})

    def _query(self, query: str) -> Response:
        found = re.fullmatch(r"select \* from (\w+)(?: where MetaData\.LastUpdatedTime >= '([^']+)')? "
                             r"orderby MetaData\.LastUpdatedTime startposition (\d+) maxresults (\d+)", query)
        if not found:
            return _json({"Fault": {"Error": [{"Message": "Error parsing query", "Detail": query, "code": "4000"}],
                                    "type": "ValidationFault"}}, 400)
        entity, since, start, size = found.group(1), found.group(2), int(found.group(3)), int(found.group(4))
        fault = self.queued_fault(entity)
        if fault is not None:
            return fault
        items = sorted((o for o in self.objects.get(entity, []) if not o.get("_deleted")),
                       key=lambda o: (_qbo_time(o), o["Id"]))
        if since:
            items = [o for o in items if _qbo_time(o) >= datetime.fromisoformat(since)]
        page = items[start - 1:start - 1 + size]
        answer: dict[str, Any] = {"startPosition": start, "maxResults": len(page)} if page else {}
        if page:
            answer[entity] = page
        return _json({"QueryResponse": answer, "time": _server_time()})

    def _token(self, request: Request) -> Response:
        self.token_requests += 1
        basic = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        form = parse_qs(request.get_data(as_text=True))
        if request.headers.get("Authorization") != basic:
            return _json({"error": "invalid_client"}, 401)
        if form.get("grant_type") != ["refresh_token"] or form.get("refresh_token") != [self.refresh_token]:
            return _json({"error": "invalid_grant"}, 400)
        return _json({"token_type": "bearer", "access_token": self.api_key, "expires_in": 3600,
                      "refresh_token": self.refresh_token + "x", "x_refresh_token_expires_in": 8726400})


def _server_time() -> str:
    """The `time` QuickBooks stamps on every answer: the server's clock, in its own zone."""
    return datetime.now(UTC).astimezone(timezone(timedelta(hours=-8))).isoformat(timespec="milliseconds")


def _qbo_time(o: dict[str, Any]) -> datetime:
    try:
        return datetime.fromisoformat(o["MetaData"]["LastUpdatedTime"])
    except ValueError:
        return datetime(1970, 1, 1, tzinfo=UTC)


# --- Xero ----------------------------------------------------------------------------------------------------

XERO_TENANT = "4f1c2b8e-0a9d-4c55-9d8e-1b2c3d4e5f60"


def ms_json(day: str, ms: int = 0) -> str:
    """A date as Xero writes it: /Date(<ms since epoch>+0000)/."""
    moment = datetime.combine(date.fromisoformat(day), datetime.min.time(), UTC)
    return f"/Date({int(moment.timestamp() * 1000) + ms}+0000)/"


def xero_example(resource: str) -> dict[str, Any]:
    """Xero's own OpenAPI example answer for GET /<resource>."""
    return _sample(f"xero/xero_openapi_example__GET_{resource}.json")


def xero_bank_transaction(id: str, day: str, updated_ms: int, total: str, kind: str = "RECEIVE",
                          account: str = "Business Wells Fargo", lines: list[tuple[str, str]] | None = None,
                          status: str = "AUTHORISED", currency: str = "USD") -> dict[str, Any]:
    bt = copy.deepcopy(xero_example("BankTransactions")["BankTransactions"][0])
    bt.pop("BatchPayment", None)
    bt.pop("PrepaymentID", None)
    bt.update(BankTransactionID=id, Date=ms_json(day), DateString=f"{day}T00:00:00", Type=kind, Status=status,
              Total=Decimal(total), SubTotal=Decimal(total), CurrencyCode=currency, Reference=f"ref {id}",
              UpdatedDateUTC=f"/Date({updated_ms}+0000)/")
    bt["BankAccount"]["Name"] = account
    bt["LineItems"] = [{"LineItemID": f"{id}-{n}", "Description": f"line {n}", "AccountCode": code,
                        "LineAmount": Decimal(amount), "Quantity": 1, "UnitAmount": Decimal(amount)}
                       for n, (code, amount) in enumerate(lines or [("200", total)])]
    return bt


def xero_payment(id: str, day: str, updated_ms: int, amount: str, kind: str = "ACCRECPAYMENT",
                 invoice: str = "INV-0002") -> dict[str, Any]:
    p = copy.deepcopy(xero_example("Payments")["Payments"][0])
    p.update(PaymentID=id, Date=ms_json(day), Amount=Decimal(amount), BankAmount=Decimal(amount), PaymentType=kind,
             UpdatedDateUTC=f"/Date({updated_ms}+0000)/", Reference=f"ch_{id}")
    p["Invoice"]["InvoiceNumber"] = invoice
    return p


def xero_manual_journal(id: str, day: str, updated_ms: int, lines: list[tuple[str, str]],
                        status: str = "POSTED", narration: str = "Accrual") -> dict[str, Any]:
    mj = copy.deepcopy(xero_example("ManualJournals")["ManualJournals"][0])
    mj.update(ManualJournalID=id, Date=ms_json(day), Status=status, Narration=narration,
              UpdatedDateUTC=f"/Date({updated_ms}+0000)/")
    mj["JournalLines"] = [{"LineAmount": Decimal(amount), "AccountCode": code, "Description": f"line {n}",
                           "TaxType": "NONE", "IsBlank": False} for n, (code, amount) in enumerate(lines)]
    return mj


@dataclass
class XeroServer(VendorServer):
    """GET /api.xro/2.0/<Resource>?page=&pageSize= with If-Modified-Since; POST /connect/token."""

    refresh_token: str = "xeroRefreshPlanted00000000000000000000000"
    modified_since: list[str | None] = field(default_factory=list)

    @property
    def api_base(self) -> str:
        return f"{self.url}/api.xro/2.0"

    @property
    def token_url(self) -> str:
        return f"{self.url}/connect/token"

    def handle(self, request: Request) -> Response:
        if request.method == "POST":
            form = parse_qs(request.get_data(as_text=True))
            if form.get("refresh_token") != [self.refresh_token] or form.get("client_id") != [CLIENT_ID]:
                return _json({"error": "invalid_grant"}, 400)
            return _json({"access_token": self.api_key, "expires_in": 1800, "token_type": "Bearer",
                          "refresh_token": self.refresh_token + "x", "scope": "accounting.transactions.read"})
        resource = request.path.removeprefix("/api.xro/2.0/")
        self.requests.append(request.full_path)
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _json({"Type": None, "Title": "Unauthorized", "Status": 401,
                          "Detail": "AuthenticationUnsuccessful", "Instance": "f0a5e4a6"}, 401)
        if request.headers.get("xero-tenant-id") != XERO_TENANT:
            return _json({"Title": "Forbidden", "Status": 403, "Detail": "AuthorizationUnsuccessful"}, 403)
        fault = self.queued_fault(resource)
        if fault is not None:
            return fault
        since = request.headers.get("If-Modified-Since")
        self.modified_since.append(since)
        items = sorted(self.objects.get(resource, []), key=lambda o: (o["UpdatedDateUTC"], json.dumps(o, default=str)))
        if since:
            limit = datetime.fromisoformat(since.replace("Z", "+00:00"))
            if limit.tzinfo is None:
                limit = limit.replace(tzinfo=UTC)
            items = [o for o in items if _xero_ms(o["UpdatedDateUTC"]) >= limit]
        page, size = int(request.args.get("page", "1")), int(request.args.get("pageSize", "100"))
        chunk = items[(page - 1) * size:page * size]
        body = xero_example(resource)
        body[resource] = chunk
        body["pagination"] = {"page": page, "pageSize": size, "pageCount": max(1, -(-len(items) // size)),
                              "itemCount": len(items)}
        return _json(body)


def _xero_ms(text: str) -> datetime:
    found = re.match(r"/Date\((\d+)", text)
    assert found, text
    return datetime.fromtimestamp(int(found.group(1)) / 1000, UTC)


@contextmanager
def _serve(prefixes: tuple[str, ...], server: Any) -> Iterator[Any]:
    try:
        for prefix in prefixes:
            server.http.expect_request(_Prefix(prefix)).respond_with_handler(server.handle)
        yield server
    finally:
        server.http.clear()
        if server.http.is_running():
            server.http.stop()


def _http() -> HTTPServer:
    http = HTTPServer(host="127.0.0.1", port=0)
    http.start()
    return http


@contextmanager
def quickbooks_server(access_token: str) -> Iterator[QuickBooksServer]:
    with _serve(("/v3/company/", "/oauth2/"), QuickBooksServer(_http(), access_token)) as server:
        yield server


@contextmanager
def xero_server(access_token: str) -> Iterator[XeroServer]:
    with _serve(("/api.xro/2.0/", "/connect/"), XeroServer(_http(), access_token)) as server:
        yield server


__all__ = ["Fault"]

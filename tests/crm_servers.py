"""Local HTTP servers speaking Salesforce's REST/Bulk 2.0 and HubSpot's CRM v3 shapes, for the CRM
connector tests.

Records start from vendor-derived rows (/work/shared/samples/salesforce and /hubspot, see its
PROVENANCE.md: Fivetran's dbt_salesforce and dbt_hubspot seeds, Apache-2.0), renamed to the APIs'
field names, with our values laid over them. `script` queues faults ahead of normal answers.
"""

from __future__ import annotations

import csv
import functools
import io
import itertools
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from .vendor_servers import SAMPLES, VendorServer, _json, _Prefix

SF_VERSION = "59.0"
# The partner WSDL's loginResponse and LoginFault, as Salesforce's SOAP API documents them.
_SOAP_LOGIN = """<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns="urn:partner.soap.sforce.com"
 xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><loginResponse><result>
<metadataServerUrl>{url}/services/Soap/m/{version}/{org}</metadataServerUrl><passwordExpired>false</passwordExpired>
<sandbox>false</sandbox><serverUrl>{url}/services/Soap/u/{version}/{org}</serverUrl><sessionId>{session}</sessionId>
<userId>0055e000001Ab2cAAC</userId><userInfo><organizationId>{org}</organizationId><userName>{user}</userName>
</userInfo></result></loginResponse></soapenv:Body></soapenv:Envelope>"""
_SOAP_FAULT = """<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
 xmlns:sf="urn:fault.partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<soapenv:Body><soapenv:Fault><faultcode>sf:INVALID_LOGIN</faultcode><faultstring>INVALID_LOGIN: Invalid username,
 password, security token; or user locked out.</faultstring><detail><sf:LoginFault xsi:type="sf:LoginFault">
<sf:exceptionCode>INVALID_LOGIN</sf:exceptionCode><sf:exceptionMessage>Invalid username, password, security token;
 or user locked out.</sf:exceptionMessage></sf:LoginFault></detail></soapenv:Fault></soapenv:Body>
</soapenv:Envelope>"""


def _api_name(column: str) -> str:
    """Fivetran's snake_case column as Salesforce's field name: owner_id -> OwnerId."""
    return "".join(part.capitalize() for part in column.split("_"))


@functools.cache
def _sample_rows(system: str, table: str) -> list[dict[str, str]]:
    path = SAMPLES / system / f"dbt_{system}_seed__{table}_data.csv"
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _typed(value: str) -> Any:
    if value == "":
        return None
    return {"true": True, "false": False}.get(value.lower(), value)


def salesforce_template(sobject: str, n: int = 0) -> dict[str, Any]:
    """Row `n` of the Salesforce sample table of `sobject` (Account, Product2...) as the REST API
    returns it: Salesforce field names, JSON types, `attributes`; Fivetran's sync columns dropped."""
    table = {"Account": "sf_account", "Product2": "sf_product_2", "Opportunity": "sf_opportunity"}[sobject]
    rows = _sample_rows("salesforce", table)
    row = rows[n % len(rows)]
    record = {_api_name(k): _typed(v) for k, v in row.items() if not k.startswith("_")}
    record["attributes"] = {"type": sobject, "url": f"/services/data/v{SF_VERSION}/sobjects/{sobject}/{record['Id']}"}
    return record


def stamp(seconds: int) -> str:
    """A SystemModstamp as Salesforce writes it."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def _parse_stamp(text: str) -> datetime:
    text = text.replace("Z", "+0000")
    fmt = "%Y-%m-%dT%H:%M:%S.%f%z" if "." in text else "%Y-%m-%dT%H:%M:%S%z"
    return datetime.strptime(text, fmt)


_SOQL = re.compile(r"^SELECT (?P<fields>.+?) FROM (?P<object>\w+)(?: WHERE (?P<where>.+?))?"
                   r"(?: ORDER BY (?P<order>.+))?$")
_SINCE = re.compile(r"SystemModstamp >= (\S+)")
_MISSING = object()


def _path(record: dict[str, Any], name: str) -> Any:
    node: Any = record
    for part in name.split("."):
        if node is None:
            return None
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def field_paths(record: dict[str, Any], prefix: str = "") -> Iterator[str]:
    for k, v in record.items():
        if k == "attributes":
            continue
        if isinstance(v, dict):
            yield from field_paths(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}"


@dataclass
class SalesforceServer(VendorServer):
    """/services/data/vNN.N/: `query` and `queryAll` with `nextRecordsUrl` pages (batchSize from the
    Sforce-Query-Options header) and `SystemModstamp >=` filters; Bulk API 2.0 query jobs (create,
    state, CSV results by `Sforce-Locator`); Bearer session id. Fields are checked against the
    object's fields (the union of its records'), as Salesforce answers INVALID_FIELD. Faults are
    scripted per resource: `query` (first pages and more), `jobs`."""

    results: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    job_fields: dict[str, list[str]] = field(default_factory=dict)
    schema: dict[str, set[str]] = field(default_factory=dict)  # fields of an object beyond its records'
    jobs_in_progress: int = 0  # state checks answering InProgress before JobComplete
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    # Logins that give the session id (`api_key`): SOAP username-password, OAuth 2.0 JWT bearer.
    username: str = "integration@acme.example"
    password: str = ""
    security_token: str = ""
    consumer_key: str = ""
    public_key_pem: bytes = b""  # the certificate's key the connected app holds, for JWT signatures

    def handle(self, request: Request) -> Response:
        self.requests.append(f"{request.method} {request.full_path}")
        if request.method == "POST" and request.path == f"/services/Soap/u/{SF_VERSION}":
            return self._soap_login(request)
        if request.method == "POST" and request.path == "/services/oauth2/token":
            return self._token(request)
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _json([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}], 401)
        rest = request.path.split(f"/services/data/v{SF_VERSION}/", 1)[-1]
        resource = "jobs" if rest.startswith("jobs/") else "query"
        fault = self.queued_fault(resource)
        if fault is not None:
            return fault
        if rest in ("query/", "queryAll/", "query", "queryAll"):
            size = _batch_size(request)
            try:
                _, records = self._select(request.args["q"], deleted=rest.startswith("queryAll"))
            except LookupError as exc:
                return _json([{"message": str(exc), "errorCode": "INVALID_FIELD"}], 400)
            qid = f"01g{next(self._ids):015d}"
            self.results[qid] = records
            return _json(self._query_page(qid, 0, size))
        if rest.startswith("query/"):
            qid, _, offset = rest.removeprefix("query/").rpartition("-")
            size = _batch_size(request)
            return _json(self._query_page(qid, int(offset), size))
        if rest == "jobs/query" and request.method == "POST":
            payload = json.loads(request.get_data(as_text=True))
            try:
                fields, records = self._select(payload["query"], deleted=payload["operation"] == "queryAll")
            except LookupError as exc:
                return _json([{"message": str(exc), "errorCode": "INVALIDJOB"}], 400)
            jid = f"750{next(self._ids):015d}"
            self.results[jid] = records
            self.job_fields[jid] = fields
            return _json({"id": jid, "operation": payload["operation"], "state": "UploadComplete",
                          "concurrencyMode": "Parallel", "contentType": "CSV", "apiVersion": float(SF_VERSION)})
        job = re.fullmatch(r"jobs/query/(\w+)(/results)?", rest)
        if job and not job.group(2):
            state = "JobComplete"
            if self.jobs_in_progress > 0:
                self.jobs_in_progress -= 1
                state = "InProgress"
            return _json({"id": job.group(1), "operation": "queryAll", "state": state,
                          "numberRecordsProcessed": len(self.results[job.group(1)])})
        if job:
            return self._bulk_results(job.group(1), request.args)
        return _json([{"message": f"The requested resource does not exist: {request.path}",
                       "errorCode": "NOT_FOUND"}], 404)

    def _soap_login(self, request: Request) -> Response:
        """The partner API's `login` call: a loginResponse with serverUrl and sessionId, or (HTTP 500, as
        Salesforce answers) a LoginFault."""
        from xml.etree import ElementTree

        ns = {"urn": "urn:partner.soap.sforce.com"}
        body = ElementTree.fromstring(request.get_data())
        user = body.findtext(".//urn:login/urn:username", namespaces=ns)
        given = body.findtext(".//urn:login/urn:password", namespaces=ns)
        if request.headers.get("SOAPAction") != "login" or user != self.username or \
                given != self.password + self.security_token:
            return Response(_SOAP_FAULT, status=500, content_type="text/xml; charset=utf-8")
        org = "00D5e000000Planted"
        return Response(_SOAP_LOGIN.format(url=self.url, version=SF_VERSION, org=org, session=self.api_key,
                                           user=self.username), content_type="text/xml; charset=utf-8")

    def _token(self, request: Request) -> Response:
        """The OAuth 2.0 token endpoint, JWT bearer grant: the assertion signed (RS256) with the connected
        app's key, issued by its consumer key for the user, audience the login host."""
        import jwt

        form = request.form
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return _json({"error": "unsupported_grant_type", "error_description": "grant type not supported"}, 400)
        try:
            claims = jwt.decode(form.get("assertion", ""), self.public_key_pem, algorithms=["RS256"],
                                audience="https://login.salesforce.com", options={"require": ["exp", "iss", "sub"]})
        except jwt.PyJWTError:
            return _json({"error": "invalid_grant", "error_description": "invalid assertion"}, 400)
        if claims["iss"] != self.consumer_key:
            return _json({"error": "invalid_client_id", "error_description": "client identifier invalid"}, 400)
        if claims["sub"] != self.username:
            return _json({"error": "invalid_grant", "error_description": "user not found"}, 400)
        return _json({"access_token": self.api_key, "scope": "api", "instance_url": self.url,
                      "id": "https://login.salesforce.com/id/00D5e000000Planted/0055e000001Ab2c",
                      "token_type": "Bearer"})

    def _select(self, soql: str, deleted: bool) -> tuple[list[str], list[dict[str, Any]]]:
        m = _SOQL.match(" ".join(soql.split()))
        if not m:
            raise LookupError(f"unexpected token in SOQL: {soql[:40]}")
        sobject = m.group("object")
        fields = [f.strip() for f in m.group("fields").split(",")]
        pool = self.objects.get(sobject, [])
        known = {p for r in pool for p in field_paths(r)} | {"Id", "IsDeleted", "SystemModstamp"} | \
            self.schema.get(sobject, set())
        for f in fields:
            if f not in known and not any(k.startswith(f.split(".")[0] + ".") for k in known):
                raise LookupError(f"\n{', '.join(fields)}\n       ^\nERROR at Row:1:Column:8\n"
                                  f"No such column '{f}' on entity '{sobject}'. If you are attempting to use a "
                                  "custom field, be sure to append the '__c' after the custom field name.")
        since = _SINCE.search(m.group("where") or "")
        rows = [r for r in pool if deleted or not r.get("IsDeleted")]
        if since:
            rows = [r for r in rows if _parse_stamp(r["SystemModstamp"]) >= _parse_stamp(since.group(1))]
        rows.sort(key=lambda r: (_parse_stamp(r["SystemModstamp"]), r["Id"]))
        out = []
        for r in rows:
            rec: dict[str, Any] = {"attributes": r.get("attributes") or {"type": sobject}}
            for f in fields:
                value = _path(r, f)
                if value is _MISSING:
                    continue  # a record without the field (a proxy, an old API version) answers without it
                root, _, leaf = f.partition(".")
                if not leaf:
                    rec[f] = value
                elif r.get(root) is None:
                    rec[root] = None  # a null relationship is null, not an object of nulls
                else:
                    rec.setdefault(root, {"attributes": {"type": root}})[leaf] = value
            out.append(rec)
        return fields, out

    def _query_page(self, qid: str, offset: int, size: int) -> dict[str, Any]:
        records = self.results[qid]
        page = records[offset:offset + size]
        body: dict[str, Any] = {"totalSize": len(records), "done": offset + size >= len(records), "records": page}
        if not body["done"]:
            body["nextRecordsUrl"] = f"/services/data/v{SF_VERSION}/query/{qid}-{offset + size}"
        return body

    def _bulk_results(self, jid: str, args: Any) -> Response:
        records = self.results[jid]
        start = int(args.get("locator") or 0)
        size = int(args.get("maxRecords", 50_000))
        page = records[start:start + size]
        fields = self.job_fields[jid]
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(fields)
        for r in page:
            w.writerow([_csv_value(_path(r, f)) for f in fields])
        more = start + size < len(records)
        return Response(out.getvalue(), status=200, content_type="text/csv", headers={
            "Sforce-Locator": str(start + size) if more else "null", "Sforce-NumberOfRecords": str(len(page))})


def _batch_size(request: Request) -> int:
    found = re.search(r"batchSize=(\d+)", request.headers.get("Sforce-Query-Options", ""))
    return int(found.group(1)) if found else 2000


def _csv_value(value: Any) -> str:
    if value is None or value is _MISSING:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # a Number(18, 0) field, as Bulk results write it
    return str(value)


@contextmanager
def _serve_any(prefix: str, server_of: Any) -> Iterator[Any]:
    http = HTTPServer(host="127.0.0.1", port=0)
    http.start()
    server = server_of(http)
    try:
        for method in ("GET", "POST"):
            http.expect_request(_Prefix(prefix), method=method).respond_with_handler(server.handle)
        yield server
    finally:
        http.clear()
        if http.is_running():
            http.stop()


@contextmanager
def salesforce_server(token: str) -> Iterator[SalesforceServer]:
    with _serve_any("/services/", lambda http: SalesforceServer(http, token)) as server:
        yield server


# --- the demo's CRM as Salesforce records -------------------------------------------------------------


def demo_salesforce_objects(workspace: Path) -> dict[str, list[dict[str, Any]]]:
    """The demo workspace's CRM exports as Salesforce records: Accounts (custom fields as in the
    export's header) and a custom junction object `Account_Product__c`."""
    data = workspace / "data"
    accounts = []
    base = salesforce_template("Account")
    with (data / "crm_accounts.csv").open(newline="", encoding="utf-8") as fh:
        for i, r in enumerate(csv.DictReader(fh)):
            rec = dict(base)
            go_live = r["Go_Live_Date__c"]
            seats = r["Provider_Count__c"]
            rec.update(
                Id=r["Id"], Name=r["Name"], Billing_Account_Number__c=r["Billing_Account_Number__c"] or None,
                Owner={"attributes": {"type": "User"}, "Name": r["Owner"]} if r["Owner"] else None,
                Status__c=r["Status__c"] or None, IsDeleted=False, SystemModstamp=stamp(1_780_000_000 + i),
                Go_Live_Date__c=datetime.strptime(go_live, "%m/%d/%Y").date().isoformat() if go_live else None,
                Provider_Count__c=float(seats) if seats else None,
                attributes={"type": "Account", "url": f"/services/data/v{SF_VERSION}/sobjects/Account/{r['Id']}"})
            accounts.append(rec)
    products = []
    with (data / "crm_products.csv").open(newline="", encoding="utf-8") as fh:
        for i, r in enumerate(csv.DictReader(fh)):
            pid = f"a0B{i:015d}"
            products.append({"attributes": {"type": "Account_Product__c"}, "Id": pid, "IsDeleted": False,
                             "SystemModstamp": stamp(1_780_000_000 + i), "Account__c": r["Account__c"],
                             "Product_Code__c": r["Product_Code__c"], "Status__c": r["Status__c"]})
    return {"Account": accounts, "Account_Product__c": products}


# --- HubSpot --------------------------------------------------------------------------------------------


def hubspot_template(kind: str, n: int = 0) -> dict[str, Any]:
    """Row `n` of the HubSpot sample table (company, deal) as CRM v3 returns the object: `id`,
    `properties` (the seed's `property_*` columns, every value a string), timestamps, `archived`."""
    rows = _sample_rows("hubspot", kind)
    row = rows[n % len(rows)]
    oid = row.get("id") or row.get(f"{kind}_id") or str(n)
    props = {k.removeprefix("property_"): (v or None) for k, v in row.items() if k.startswith("property_")}
    return {"id": oid, "properties": props, "createdAt": "2019-07-05T20:35:26.000Z",
            "updatedAt": "2019-07-05T20:35:26.000Z", "archived": False}


def hs_time(seconds: int) -> str:
    """A HubSpot datetime property value (ISO 8601, milliseconds, Z)."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def hubspot_company(n: int, modified: int, **properties: Any) -> dict[str, Any]:
    c = hubspot_template("company", n)
    c["id"] = str(9_000_000_000 + n)
    c["properties"].update(name=f"Globex Dental {n} LLC", hubspot_owner_id="31207954", lifecyclestage="customer",
                           hs_lastmodifieddate=hs_time(modified), createdate="2019-07-05T20:35:26.000Z",
                           hs_object_id=c["id"], domain=None)
    c["properties"].update(properties)
    c["updatedAt"] = hs_time(modified)
    return c


@dataclass
class HubSpotServer(VendorServer):
    """CRM v3 objects (`GET /crm/v3/objects/<type>` with `after` paging, `properties` and `archived`
    (true: only archived objects, with `archivedAt`; search never returns them); `POST
    .../search` with a GTE filter and ascending sort on a property, the 10,000-result window) and v4
    association batch reads. Bearer private-app token. A requested property the object type lacks is
    left out of the answer, as HubSpot does. Objects keep their associations under `_<type>` keys.
    Faults are scripted per object type and `associations`."""

    search_window: int = 10_000

    def handle(self, request: Request) -> Response:
        self.requests.append(f"{request.method} {request.full_path}")
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _json({"status": "error", "message": "Authentication credentials not found. This API supports "
                          "OAuth 2.0 authentication.", "correlationId": "5fd3c1a6-0c5b-4c1b-9bd6-6c9f2b0a7d11",
                          "category": "INVALID_AUTHENTICATION"}, 401)
        assoc = re.fullmatch(r"/crm/v4/associations/(\w+)/(\w+)/batch/read", request.path)
        if assoc:
            fault = self.queued_fault("associations")
            return fault or self._associations(assoc.group(1), assoc.group(2), request)
        m = re.fullmatch(r"/crm/v3/objects/(\w+)(/search)?", request.path)
        if not m:
            return _json({"status": "error", "message": "Resource not found", "category": "OBJECT_NOT_FOUND"}, 404)
        kind = m.group(1)
        fault = self.queued_fault(kind)
        if fault is not None:
            return fault
        pool = [o for o in self.objects.get(kind, []) if not o.get("archived")]
        if m.group(2):
            body = json.loads(request.get_data(as_text=True))
            f = body["filterGroups"][0]["filters"][0]
            since = datetime.fromtimestamp(int(f["value"]) / 1000, UTC)
            prop = f["propertyName"]
            items = [o for o in pool if _hs_time(o["properties"].get(prop)) >= since]
            items.sort(key=lambda o: (_hs_time(o["properties"].get(prop)), int(o["id"])))
            props, limit, start = body.get("properties") or [], int(body.get("limit", 10)), int(body.get("after", 0))
            if start >= self.search_window:
                return _json({"status": "error", "message": "There was a problem with the request.",
                              "category": "VALIDATION_ERROR"}, 400)
            answer = self._page(items, props, start, limit)
            answer["total"] = len(items)
            return _json(answer)
        if (request.args.get("archived") or "").lower() == "true":  # only the archived objects (the SDK sends True)
            pool = [o for o in self.objects.get(kind, []) if o.get("archived")]
        items = sorted(pool, key=lambda o: int(o["id"]))
        return _json(self._page(items, request.args.getlist("properties"), int(request.args.get("after", 0)),
                                int(request.args.get("limit", 10))))

    @staticmethod
    def _page(items: list[dict[str, Any]], props: list[str], start: int,
              limit: int) -> dict[str, Any]:
        results = []
        for o in items[start:start + limit]:
            out = {k: v for k, v in o.items() if not k.startswith("_")}
            # A property the object does not have (renamed, deleted, never created) is left out.
            out["properties"] = {p: o["properties"][p] for p in props if p in o["properties"]}
            results.append(out)
        page: dict[str, Any] = {"results": results}
        if start + limit < len(items):
            page["paging"] = {"next": {"after": str(start + limit), "link": f"?after={start + limit}"}}
        return page

    def _associations(self, from_type: str, to_type: str, request: Request) -> Response:
        by_id = {o["id"]: o for o in self.objects.get(from_type, [])}
        results = []
        for item in json.loads(request.get_data(as_text=True))["inputs"]:
            targets = (by_id.get(item["id"]) or {}).get(f"_{to_type}") or []
            if targets:
                results.append({"from": {"id": item["id"]}, "to": [
                    {"toObjectId": int(t), "associationTypes": [{"category": "HUBSPOT_DEFINED", "typeId": 5,
                                                                 "label": None}]} for t in targets]})
        return _json({"status": "COMPLETE", "results": results, "startedAt": "2026-09-30T00:00:00.000Z",
                      "completedAt": "2026-09-30T00:00:00.100Z"})


def _hs_time(value: str | None) -> datetime:
    return datetime.fromisoformat((value or "1970-01-01T00:00:00Z").replace("Z", "+00:00"))


@contextmanager
def hubspot_server(token: str) -> Iterator[HubSpotServer]:
    with _serve_any("/crm/", lambda http: HubSpotServer(http, token)) as server:
        yield server


# --- the demo's CRM as HubSpot objects ----------------------------------------------------------------


HUBSPOT_OWNERS = {"ana": "31207954", "ben": "31207955", "chloe": "31207956", "dana": "31207957", "eve": "31207958"}


def demo_hubspot_objects(workspace: Path) -> tuple[dict[str, list[dict[str, Any]]], dict[str, str]]:
    """The demo workspace's CRM exports as HubSpot CRM objects: companies (the export's custom fields as
    custom properties billing_account_number, account_status, go_live_date, provider_count), one deal
    per company, and a line item (hs_sku, custom property product_status) per product on that deal.
    Also the export's account ids -> the HubSpot company ids they became."""
    data = workspace / "data"
    companies: list[dict[str, Any]] = []
    company_of: dict[str, str] = {}
    with (data / "crm_accounts.csv").open(newline="", encoding="utf-8") as fh:
        for i, r in enumerate(csv.DictReader(fh)):
            go_live = r["Go_Live_Date__c"]
            c = hubspot_company(i, 1_780_000_000 + i, name=r["Name"], hubspot_owner_id=HUBSPOT_OWNERS.get(r["Owner"]),
                                lifecyclestage="customer",
                                billing_account_number=r["Billing_Account_Number__c"] or None,
                                account_status=r["Status__c"] or None, provider_count=r["Provider_Count__c"] or None,
                                go_live_date=datetime.strptime(go_live, "%m/%d/%Y").date().isoformat()
                                if go_live else None)
            company_of[r["Id"]] = c["id"]
            companies.append(c)
    deals: dict[str, dict[str, Any]] = {}
    items: list[dict[str, Any]] = []
    with (data / "crm_products.csv").open(newline="", encoding="utf-8") as fh:
        for i, r in enumerate(csv.DictReader(fh)):
            company = company_of.setdefault(r["Account__c"], str(9_000_000_000 + 5_000 + len(company_of)))
            deal = deals.get(company)
            if deal is None:
                deal = hubspot_template("deal", len(deals))
                deal["id"] = str(7_000_000_000 + len(deals))
                deal["properties"].update(hs_lastmodifieddate=hs_time(1_780_000_000), createdate=hs_time(1_770_000_000))
                deal["_companies"] = [company]
                deals[company] = deal
            items.append({"id": str(5_000_000_000 + i), "archived": False, "createdAt": hs_time(1_770_000_000),
                          "updatedAt": hs_time(1_780_000_000 + i), "_deals": [deal["id"]],
                          "properties": {"hs_sku": r["Product_Code__c"], "name": r["Product_Code__c"],
                                         "quantity": "1", "price": "0", "hs_product_id": None,
                                         "createdate": hs_time(1_770_000_000),
                                         "hs_lastmodifieddate": hs_time(1_780_000_000 + i),
                                         "product_status": r["Status__c"] or None}})
    return {"companies": companies, "deals": list(deals.values()), "line_items": items}, company_of

"""Salesforce connector, through `simple-salesforce`: SOQL (`query` + `query_more`, the pages of
`query_all_iter`) for ordinary objects, the Bulk API 2.0 query jobs for large ones.

Streams: accounts (crm_accounts) and the products each account has (crm_products, `Asset` by
default). Incremental on `SystemModstamp`, deletions included (`queryAll`, `IsDeleted` dropped at
the snapshot). Custom fields (`Provider_Count__c`) are selected with `fields:` and mapped with
`columns:`. The SDK's own retries stay off: `retry.RetryPolicy` decides.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, Self, TypeVar
from urllib.parse import urlparse

from pydantic import Field, SecretStr, field_validator, model_validator

from tieout.sources.connectors import MAIN, Connector, ConnectorOptions, PullContext, Stream, register_connector
from tieout.sources.credentials import AccessToken, ClientCredentials, UsernamePassword, register_secret
from tieout.sources.retry import AuthFailure, ConnectorError, Refused, TransientError, retry_after_seconds

T = TypeVar("T")
API_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*$")
CURSOR_FIELD = "SystemModstamp"
LOGIN_URL = "https://login.salesforce.com"
BASE_FIELDS = ("Id", "IsDeleted", CURSOR_FIELD)  # every stream selects them: key, deletions, cursor
# Asset.Status picklist values (Salesforce's defaults) onto crm_products.status.
ASSET_STATUSES = {"purchased": "active", "shipped": "active", "installed": "active", "registered": "active",
                  "obsolete": "inactive"}


class SalesforceOptions(ConnectorOptions, AccessToken, ClientCredentials, UsernamePassword):
    """`options:` of a Salesforce connector source. Three ways in, the first complete one is used: an
    `access_token` (session id, `sf org display` shows one) with `instance_url`; the OAuth 2.0 JWT bearer
    flow (`username`, `client_id` = the connected app's consumer key, `private_key`); or a
    username-password SOAP login (`username`, `password`, `security_token`)."""

    grants: ClassVar[tuple[str, ...]] = ("access_token", "jwt_bearer", "password")
    instance_url: str | None = Field(None, description="Your instance, e.g. https://acme.my.salesforce.com (an "
                                     "http:// URL reaches a local test server or a loopback proxy); required with "
                                     "access_token, else the login answers it.")
    login_url: str = Field(LOGIN_URL, description="Where to log in (JWT bearer or username-password): "
                           "https://login.salesforce.com, https://test.salesforce.com for a sandbox, your My "
                           "Domain, or a proxy or local test server.")
    security_token: SecretStr | None = Field(None, description="Username-password login: the user's security "
                                             "token (appended to the password), e.g. ${SALESFORCE_SECURITY_TOKEN}; "
                                             "not needed from a trusted IP range.")
    private_key: SecretStr | None = Field(None, description="JWT bearer flow: the PEM private key whose certificate "
                                          "the connected app holds, e.g. ${SALESFORCE_JWT_KEY} (`\\n` escapes "
                                          "read as line breaks).")
    api_version: str = Field("59.0", pattern=r"^\d+\.\d$", description="REST API version.")
    object: str | None = Field(None, description="SObject to read instead of the stream's (e.g. a custom "
                               "`Account_Product__c`).")
    fields: list[str] | None = Field(None, description="Fields to select besides Id, IsDeleted and "
                                     "SystemModstamp (custom ones such as Provider_Count__c, relationship "
                                     "ones such as Owner.Name); map them with `columns:`. Default: the "
                                     "stream's.")
    where: str | None = Field(None, description="Extra SOQL condition ANDed to the query, e.g. "
                              "`RecordType.Name = 'Customer'`.")
    bulk: bool = Field(False, description="Read through a Bulk API 2.0 query job (large objects: millions "
                       "of rows) instead of SOQL pages.")
    page_size: int = Field(2000, ge=200, le=50_000, description="Records per page: SOQL batchSize (200-2000) "
                           "or Bulk result chunk (maxRecords).")
    timeout_seconds: float = Field(120.0, gt=0, description="Longest wait for one answer (a stalled "
                                   "connection is then retried).")
    bulk_poll_seconds: float = Field(2.0, ge=0, description="Wait between checks of a Bulk job's state.")
    bulk_timeout_seconds: float = Field(3600.0, ge=0, description="Give up on a Bulk job still running after "
                                        "this long.")

    @field_validator("client_secret")
    @classmethod
    def _no_client_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            raise ValueError("Salesforce's flows here take no client_secret (JWT bearer: client_id and private_key)")
        return value

    @model_validator(mode="after")
    def _instance_for_a_token(self) -> Self:
        if self.grant() == "access_token" and not self.instance_url:
            raise ValueError("access_token needs instance_url (the login flows answer it)")
        return self

    @field_validator("object")
    @classmethod
    def _object_name(cls, value: str | None) -> str | None:
        if value is not None and not API_NAME.match(value):
            raise ValueError(f"'{value}' is not an SObject API name")
        return value

    @field_validator("fields")
    @classmethod
    def _field_names(cls, value: list[str] | None) -> list[str] | None:
        for name in value or ():
            if not API_NAME.match(name):
                raise ValueError(f"'{name}' is not a field API name (Name, Custom__c, Owner.Name)")
        return value


class _Api:
    """One pull's SDK client, with the response headers it last saw (Retry-After lives there)."""

    def __init__(self, ctx: PullContext):
        import requests
        from simple_salesforce.api import Salesforce

        opts: SalesforceOptions = ctx.options
        self.session = requests.Session()
        self.headers: Mapping[str, str] = {}
        self.session.hooks["response"].append(self._remember)
        # The SDK builds every URL as https://<instance> (query pages, Bulk jobs): on a plain-http
        # instance (a local server, a loopback proxy) the session sends those requests over http.
        self.session.mount("https://", _transport(opts.timeout_seconds, plain=False))
        for url in (urlparse(opts.instance_url or ""), urlparse(opts.login_url)):
            if url.scheme == "http":
                self.session.mount(f"https://{url.netloc}", _transport(opts.timeout_seconds, plain=True))
        grant = opts.grant()
        if grant == "access_token":
            self.sf = Salesforce(instance_url=opts.instance_url, session_id=opts.secret("access_token"),
                                 version=opts.api_version, session=self.session)
            return
        login = urlparse(opts.login_url)
        host = login.netloc.lower()
        if login.scheme == "https" and host.endswith(".salesforce.com"):
            domain = host.removesuffix(".salesforce.com")
        else:  # a proxy or local server: the SDK logs in at https://login.salesforce.com, sent there instead
            domain = "login"
            self.session.mount("https://login.salesforce.com",
                               _transport(opts.timeout_seconds, plain=login.scheme == "http", host=login.netloc))
        if grant == "jwt_bearer":
            key = opts.secret("private_key").replace("\\n", "\n")
            how = "logging in (OAuth 2.0 JWT bearer flow)"
            check = "options.username, client_id (the connected app's consumer key) and private_key, and that the " \
                    "app holds its certificate and the user is pre-authorized"

            def connect() -> Any:
                return Salesforce(username=opts.username, consumer_key=opts.secret("client_id"), privatekey=key,
                                  domain=domain, version=opts.api_version, session=self.session)
        else:
            how = "logging in (username-password)"
            check = "options.username, password and security_token (a new one is e-mailed when the password changes)"
            token = opts.secret("security_token") if opts.security_token is not None else ""

            def connect() -> Any:
                return Salesforce(username=opts.username, password=opts.secret("password"), security_token=token,
                                  domain=domain, version=opts.api_version, session=self.session)

        self.sf = ctx.call(how, lambda: _login(connect, check))
        register_secret(self.sf.session_id)

    def _remember(self, response: Any, *_args: Any, **_kwargs: Any) -> None:
        self.headers = response.headers

    def call(self, fn: Callable[[], T]) -> T:
        """Call the SDK; map its errors onto transient (retried) and terminal failures."""
        import requests
        import simple_salesforce.exceptions as sfe

        try:
            return fn()
        except (sfe.SalesforceExpiredSession, sfe.SalesforceRefusedRequest) as exc:
            code, message = _error_of(exc.content)
            if code == "REQUEST_LIMIT_EXCEEDED":  # Salesforce's daily API limit: a 403, not a bad token
                raise Refused(f"API request limit exceeded ({message})") from None
            raise AuthFailure(f"{code or 'refused'}: {message}" if message else code or "refused",
                              exc.status) from None
        except sfe.SalesforceGeneralError as exc:
            if exc.status == 429 or exc.status >= 500:
                raise TransientError(f"HTTP {exc.status}", retry_after_seconds(self.headers.get("Retry-After"))) \
                    from None
            code, message = _error_of(exc.content)
            raise Refused(f"HTTP {exc.status}: {code} {message}".strip()) from None
        except sfe.SalesforceError as exc:  # 400 (a bad field or query), 404, 300
            code, message = _error_of(exc.content)
            raise Refused(f"HTTP {exc.status}: {code}: {message}" if code else f"HTTP {exc.status}: {message}") \
                from None
        except sfe.SalesforceOperationError as exc:  # a Bulk job that failed or was aborted
            raise Refused(str(exc)) from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise TransientError(f"connection failed: {type(exc).__name__}") from None
        except (ValueError, KeyError):  # a 2xx body that is not Salesforce JSON (or a Bulk chunk without its headers)
            raise TransientError("the answer is not valid Salesforce JSON") from None


def _login(connect: Callable[[], T], check: str) -> T:
    """Log in through the SDK; a refused login is terminal (naming what to check), a server error transient."""
    import requests
    from simple_salesforce.exceptions import SalesforceAuthenticationFailed

    try:
        return connect()
    except SalesforceAuthenticationFailed as exc:
        code = getattr(exc, "code", None)
        content = exc.content.decode("utf-8", "replace") if isinstance(exc.content, bytes) else str(exc.content)
        if isinstance(code, int) and (code == 429 or code >= 500):
            raise TransientError(f"login HTTP {code}") from None
        reason = " ".join(f"{code or ''}: {content}".split())[:300].strip(": ")
        raise AuthFailure(f"login refused ({reason}); check {check}") from None
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise TransientError(f"connection failed: {type(exc).__name__}") from None


def _transport(timeout: float, *, plain: bool, host: str | None = None) -> Any:
    """A requests transport adapter giving every call a timeout (the SDK sets none), sending an https://
    request over plain http when `plain`, and to `host` instead of the URL's when given."""
    from requests.adapters import HTTPAdapter

    class Transport(HTTPAdapter):
        def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
            if host is not None:
                rest = urlparse(request.url)
                request.url = rest._replace(netloc=host).geturl()
            if plain:
                request.url = "http://" + request.url.removeprefix("https://")
            if kwargs.get("timeout") is None:
                kwargs["timeout"] = timeout
            return super().send(request, *args, **kwargs)

    return Transport()


def _error_of(content: Any) -> tuple[str, str]:
    """(errorCode, message) of a Salesforce error body: `[{"errorCode": ..., "message": ...}]`."""
    first = content[0] if isinstance(content, list) and content else content
    if isinstance(first, dict):
        code = str(first.get("errorCode") or first.get("error") or "")
        message = str(first.get("message") or first.get("error_description") or "")
    else:
        code, message = "", str(content or "")[:200]
    # A malformed query's message repeats the query and points at it, then says what is wrong: that
    # last line is what a user needs on the first line of the error.
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    return code, lines[-1] if lines else ""


def _soql_datetime(value: str) -> str:
    """A SystemModstamp as Salesforce returns it (2026-09-30T12:00:00.000+0000) as a SOQL literal."""
    parsed = _parse_stamp(value)
    return parsed.strftime("%Y-%m-%dT%H:%M:%SZ") if parsed else value


def _parse_stamp(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    text = value.replace("Z", "+0000")
    for fmt in ("%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z"):
        try:
            return datetime.strptime(text, fmt).astimezone(UTC)
        except ValueError:
            continue
    return None


class SalesforceConnector(Connector):
    name = "salesforce"
    doc = ("Salesforce through simple-salesforce: accounts and account products by SOQL (`queryAll` pages) or "
           "a Bulk API 2.0 query job, incremental on SystemModstamp; custom fields selected with `fields:`.")
    options_model = SalesforceOptions
    streams: ClassVar[Mapping[str, Stream]] = {s.name: s for s in (
        Stream("accounts", "Account (default fields Owner.Name, Billing_Account_Number__c, Status__c, "
               "Go_Live_Date__c, Provider_Count__c); deleted accounts dropped.", "crm_accounts", "Id", key=("Id",),
               columns={"account_id": "Id", "name": "Name", "customer_id": "Billing_Account_Number__c",
                        "owner": "Owner.Name", "status": "Status__c", "go_live_date": "Go_Live_Date__c",
                        "seats": "Provider_Count__c"},
               amount_unit="major", date_formats=()),
        Stream("account_products", "Asset (default fields AccountId, Product2.ProductCode, Status; Purchased, "
               "Shipped, Installed, Registered -> active, Obsolete -> inactive), or a custom object via "
               "`object:`.", "crm_products", "Id", key=("Id",),
               columns={"account_id": "AccountId", "sku": "Product2.ProductCode", "status": "Status"},
               value_maps={"status": ASSET_STATUSES}, amount_unit="major", date_formats=()),
    )}
    default_objects: ClassVar[Mapping[str, str]] = {"accounts": "Account", "account_products": "Asset"}
    default_fields: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "accounts": ("Name", "Owner.Name", "Billing_Account_Number__c", "Status__c", "Go_Live_Date__c",
                     "Provider_Count__c"),
        "account_products": ("AccountId", "Product2.ProductCode", "Status"),
    }

    def fields(self, ctx: PullContext) -> list[str]:
        chosen = ctx.options.fields if ctx.options.fields is not None else self.default_fields[ctx.stream.name]
        return list(dict.fromkeys([*BASE_FIELDS, *chosen]))

    def soql(self, ctx: PullContext) -> str:
        opts: SalesforceOptions = ctx.options
        sobject = opts.object or self.default_objects[ctx.stream.name]
        conditions = []
        if ctx.cursor and ctx.cursor.get(CURSOR_FIELD):
            # `>=`: records stamped in the cursor's second are read again, and merged by Id.
            conditions.append(f"{CURSOR_FIELD} >= {_soql_datetime(str(ctx.cursor[CURSOR_FIELD]))}")
        if opts.where:
            conditions.append(f"({opts.where})")
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        return f"SELECT {', '.join(self.fields(ctx))} FROM {sobject}{where} ORDER BY {CURSOR_FIELD}, Id"

    def pull(self, ctx: PullContext) -> dict[str, Any]:
        api = _Api(ctx)
        fields = self.fields(ctx)
        ctx.sink.columns(MAIN, fields)
        newest = _parse_stamp(ctx.cursor.get(CURSOR_FIELD)) if ctx.cursor else None
        pages = self._bulk_pages(ctx, api) if ctx.options.bulk else self._soql_pages(ctx, api)
        kind = ctx.options.object or self.default_objects[ctx.stream.name]
        for page in pages:
            rows = []
            for record in page:
                row = _row(ctx, record, fields, kind)
                stamp = _parse_stamp(row.get(CURSOR_FIELD))
                if stamp is not None and (newest is None or stamp > newest):
                    newest = stamp
                rows.append(row)
            ctx.sink.write(MAIN, rows)
        return {CURSOR_FIELD: newest.strftime("%Y-%m-%dT%H:%M:%SZ") if newest else None}

    def finalize_sql(self, ctx: PullContext, parts: Mapping[str, str]) -> str:
        # A record deleted since the last pull came back (queryAll) with IsDeleted true and replaced
        # its earlier version in the merge: the snapshot leaves it out.
        return (f"SELECT * EXCLUDE (\"IsDeleted\") FROM read_parquet({parts[MAIN]}) "
                f"WHERE coalesce(lower(\"IsDeleted\"), 'false') <> 'true' ORDER BY \"Id\"")

    def _soql_pages(self, ctx: PullContext, api: _Api) -> Iterator[Sequence[Mapping[str, Any]]]:
        """`queryAll` then `nextRecordsUrl` pages, as `query_all_iter` walks them, each page retried alone."""
        headers = {"Sforce-Query-Options": f"batchSize={min(ctx.options.page_size, 2000)}"}
        soql = self.soql(ctx)

        def first() -> Any:
            return api.call(lambda: _page(api.sf.query(soql, include_deleted=True, headers=headers)))

        result = ctx.call("running the SOQL query (page 1)", first)
        page_no = 1
        while True:
            if result["records"]:
                yield result["records"]
            if result["done"] or ctx.enough():
                return
            page_no += 1
            next_url = str(result["nextRecordsUrl"])

            def more(url: str = next_url) -> Any:
                return api.call(lambda: _page(api.sf.query_more(url, identifier_is_url=True, headers=headers)))

            result = ctx.call(f"reading the SOQL query's page {page_no}", more)

    def _bulk_pages(self, ctx: PullContext, api: _Api) -> Iterator[Sequence[Mapping[str, Any]]]:
        """A Bulk API 2.0 `queryAll` job: create, wait (our sleep, so a test needs none), read CSV chunks
        by locator. Each request is retried alone; the SDK's `bulk2.<Object>.query` generator would
        sleep in real time and cannot resume after a failed chunk, so its job client is driven here."""
        from simple_salesforce.bulk2 import Operation

        opts: SalesforceOptions = ctx.options
        client = getattr(api.sf.bulk2, opts.object or self.default_objects[ctx.stream.name])._client
        soql = self.soql(ctx)
        job = ctx.call("creating the Bulk API 2.0 query job",
                       lambda: api.call(lambda: client.create_job(Operation.query_all, soql)))
        job_id = str(job["id"])
        waited = 0.0
        while True:
            info = ctx.call(f"checking Bulk job {job_id}", lambda: api.call(lambda: client.get_job(job_id, True)))
            state = info.get("state")
            if state == "JobComplete":
                break
            if state in ("Failed", "Aborted"):
                raise ConnectorError(ctx.source, f"Bulk job {job_id} {state.lower()}: "
                                     f"{info.get('errorMessage') or 'no reason given'}")
            if waited >= opts.bulk_timeout_seconds:
                raise ConnectorError(ctx.source, f"Bulk job {job_id} still {state} after {waited:g}s "
                                     "(bulk_timeout_seconds); the cursor was not advanced")
            ctx.policy.sleep(opts.bulk_poll_seconds)
            waited += opts.bulk_poll_seconds
        locator = ""
        chunk = 0
        while True:
            chunk += 1

            def results(loc: str = locator) -> Any:
                return api.call(lambda: client.get_query_results(job_id, loc, opts.page_size))

            result = ctx.call(f"reading Bulk job {job_id} results (chunk {chunk})", results)
            records = list(csv.DictReader(io.StringIO(result["records"])))
            if records:
                yield records
            locator = result["locator"]
            if not locator or ctx.enough():
                return


def _page(body: Any) -> Mapping[str, Any]:
    """A SOQL result page, checked: `records` list, `done`, and `nextRecordsUrl` when not done."""
    if not isinstance(body, dict) or not isinstance(body.get("records"), list) or "done" not in body:
        raise ValueError("not a query result")
    if not body["done"] and not body.get("nextRecordsUrl"):
        raise ValueError("no nextRecordsUrl")
    return body


_MISSING = object()


def _value(record: Mapping[str, Any], path: str) -> Any:
    """A field of a SOQL record; `Owner.Name` walks the relationship (a null relationship is null).
    Bulk CSV rows carry `Owner.Name` as a column of its own."""
    if path in record:
        return record[path]
    node: Any = record
    for part in path.split("."):
        if node is None:
            return None
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _row(ctx: PullContext, record: Mapping[str, Any], fields: Sequence[str], kind: str) -> dict[str, Any]:
    rid = str(record.get("Id") or "?")
    row: dict[str, Any] = {}
    for name in fields:
        value = _value(record, name)
        if value is _MISSING:
            ctx.sink.problem(rid, name, f"field '{name}' missing from the {kind} in the API answer")
            value = None
        row[name] = value
    return row


register_connector(SalesforceConnector())

"""Xero accounting connector, through the official `xero-python` SDK (its base URL overridable), and
Xero's Account Transactions CSV export as a file format.

Streams: bank transactions and manual journals (lines onto `gl_entries`) and payments; the `page`
parameter pages, `If-Modified-Since` makes pulls incremental. Answers are read raw and parsed with
Decimal (the SDK's models hold floats); `/Date(1476316800000+0000)/` becomes an ISO date or time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

from pydantic import Field

from tieout.sources.connectors import MAIN, Connector, ConnectorOptions, PullContext, Stream, register_connector
from tieout.sources.credentials import AccessToken, ClientCredentials, RefreshToken, register_secret
from tieout.sources.retry import AuthFailure, ConnectorError, Refused, TransientError, retry_after_seconds

TOKEN_URL = "https://identity.xero.com/connect/token"
_MS_DATE = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")
# Which side of the bank account a bank transaction is on; anything else is an unknown type.
BANK_SIDES = {"RECEIVE": 1, "RECEIVE-OVERPAYMENT": 1, "RECEIVE-PREPAYMENT": 1, "RECEIVE-TRANSFER": 1,
              "SPEND": -1, "SPEND-OVERPAYMENT": -1, "SPEND-PREPAYMENT": -1, "SPEND-TRANSFER": -1}
JOURNAL_TYPES = {t.lower(): "system" for t in BANK_SIDES} | {"manual journal": "manual"}
# Customer-side payment types (supplier payments are left out); others are unknown values.
PAYMENT_TYPES = {"accrecpayment": "payment", "arcreditpayment": "refund", "aroverpaymentpayment": "refund",
                 "arprepaymentpayment": "refund"}
SUPPLIER_PAYMENTS = {"ACCPAYPAYMENT", "APCREDITPAYMENT", "APOVERPAYMENTPAYMENT", "APPREPAYMENTPAYMENT"}
GONE = {"DELETED", "VOIDED"}
LINE_COLUMNS = ("entry_id", "txn_id", "status", "date", "account", "type", "reference", "name", "memo", "debit",
                "credit", "currency", "updated")
# Both ledger streams map onto gl_entries alike; the journal type derives from the transaction type.
LEDGER_MAPPING = {"entry_id": "entry_id", "posted_at": "date", "account": "account", "debit": "debit",
                  "credit": "credit", "currency": "currency", "txn_type": "type", "reference": "reference",
                  "name": "name", "memo": "memo", "journal_type": "type"}
PAYMENT_COLUMNS = ("id", "status", "date", "amount", "currency", "type", "invoice_id", "invoice_number",
                   "contact_id", "reference", "updated")


class XeroOptions(ConnectorOptions, AccessToken, ClientCredentials, RefreshToken):
    """`options:` of a Xero connector source: an access token, or a refresh token with the app's client
    id and secret (preferred when both are given)."""

    grants: ClassVar[tuple[str, ...]] = ("refresh_token", "access_token")
    tenant_id: str = Field(description="Xero tenant (organisation) id, sent as the xero-tenant-id header.")
    scopes: list[str] = Field(["offline_access", "accounting.transactions.read"],
                              description="Scopes asked for when refreshing.")
    api_base: str = Field("https://api.xero.com/api.xro/2.0", description="Accounting API base URL (a proxy or a "
                          "local test server).")
    page_size: int = Field(100, ge=1, le=1000, description="Records per page (Xero allows up to 1000).")
    account_names: dict[str, str] = Field(default_factory=dict, description="Ledger account name per Xero account "
                                          "code, for line items and journal lines (which carry only the code).")
    account_currencies: dict[str, str] = Field(default_factory=dict, description="Manual journals: currency of "
                                               "accounts not in the base currency, {account: ISO code}.")


def _translate(call: Callable[[], Any]) -> Any:
    """Call the SDK (raw answer); map its errors onto transient and terminal failures."""
    import urllib3
    from xero_python.exceptions import ApiException, OAuth2Error

    try:
        response = call()
    except ApiException as exc:
        status = exc.status or 0
        if status in (401, 403):
            raise AuthFailure(_problem_title(exc.body) or "refused", status) from None
        if status == 429 or status >= 500 or status == 0:
            headers = exc.headers or {}
            raise TransientError(f"HTTP {status or 'connection'} ({_problem_title(exc.body) or exc.reason})",
                                 retry_after_seconds(headers.get("Retry-After") or headers.get("retry-after"))
                                 ) from None
        raise Refused(f"HTTP {status}: {_problem_title(exc.body) or exc.reason}") from None
    except OAuth2Error as exc:
        raise AuthFailure(type(exc).__name__) from None
    except urllib3.exceptions.HTTPError as exc:
        raise TransientError(f"connection failed: {type(exc).__name__}") from None
    try:
        return json.loads(response.data.decode("utf-8"), parse_float=Decimal)
    except (ValueError, UnicodeDecodeError):
        raise TransientError(f"the answer is not valid JSON (HTTP {response.status})") from None


def _problem_title(body: Any) -> str | None:
    try:
        data = json.loads(body) if body else None
    except (ValueError, TypeError):
        return None
    if isinstance(data, dict):
        return str(data.get("Title") or data.get("Message") or data.get("Detail") or "") or None
    return None


def ms_date(value: Any, with_time: bool) -> Any:
    """`/Date(1476316800000+0000)/` as an ISO date (`2016-10-13`) or UTC time; other values unchanged, so
    normalization quarantines them, naming the field."""
    found = _MS_DATE.match(value) if isinstance(value, str) else None
    if not found:
        return value
    moment = datetime.fromtimestamp(int(found.group(1)) / 1000, UTC)
    if with_time:
        return moment.isoformat().replace("+00:00", "Z")
    offset = found.group(2) or "+0000"
    minutes = (int(offset[1:3]) * 60 + int(offset[3:])) * (-1 if offset[0] == "-" else 1)
    return (moment + timedelta(minutes=minutes)).date().isoformat()


def _amount(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value)) if value is not None else None
    except InvalidOperation:
        return None


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _sides(amount: Decimal | None, raw: Any, field: str) -> tuple[Any, Any]:
    """(debit, credit) text: positive debits, negative credits. A non-number goes to debit as is, a missing
    amount as `<missing FIELD>`: normalization quarantines the line rather than book it as zero."""
    if amount is None:
        return (f"<missing {field}>" if raw in (None, "") else raw), None
    if amount < 0:
        return None, -amount
    return (amount, None) if amount > 0 else (None, None)


class XeroConnector(Connector):
    name = "xero"
    doc = ("Xero Accounting API through the official xero-python SDK: bank transactions, manual journals and "
           "payments; pages of `page`, incremental on If-Modified-Since. Decimal major units.")
    options_model = XeroOptions
    streams: ClassVar[Mapping[str, Stream]] = {s.name: s for s in (
        Stream("bank_transactions", "bank transactions: the bank account debited (RECEIVE*) or credited "
               "(SPEND*) with the total; each line item on the other side, on its account code (names from "
               "account_names). An unknown Type is quarantined.", "gl_entries", "txn_id", key=("txn_id",),
               columns=LEDGER_MAPPING,
               value_maps={"journal_type": JOURNAL_TYPES}, amount_unit="major", date_formats=("%Y-%m-%d",)),
        Stream("manual_journals", "posted manual journals, one ledger line per journal line (positive "
               "LineAmount debits, negative credits), journal type manual.", "gl_entries", "txn_id",
               key=("txn_id",),
               columns=LEDGER_MAPPING,
               value_maps={"journal_type": JOURNAL_TYPES}, amount_unit="major", date_formats=("%Y-%m-%d",)),
        Stream("payments", "payments on sales invoices and credit notes (supplier payments left out): "
               "ACCRECPAYMENT -> payment; ARCREDIT/AROVERPAYMENT/ARPREPAYMENT payments -> refund.", "payments",
               "id", key=("id",),
               columns={"payment_id": "id", "invoice_id": "invoice_number", "customer_id": "contact_id",
                        "type": "type", "amount": "amount", "currency": "currency", "received_at": "date",
                        "gateway_ref": "reference"},
               constants={"method": "other"}, value_maps={"type": PAYMENT_TYPES}, amount_unit="major",
               date_formats=("%Y-%m-%d",)),
    )}

    # --- calls ---------------------------------------------------------------------------------

    def _api(self, ctx: PullContext) -> Any:
        from xero_python.accounting import AccountingApi
        from xero_python.api_client import ApiClient, Configuration
        from xero_python.api_client.oauth2 import OAuth2Token, TokenApi

        opts: XeroOptions = ctx.options
        token: dict[str, Any] = {}
        client = ApiClient(Configuration(oauth2_token=OAuth2Token()), oauth2_token_getter=lambda: token,
                           oauth2_token_saver=token.update, pool_threads=1)
        # urllib3 would otherwise retry a 429 by itself, sleeping out Retry-After unseen: RetryPolicy decides.
        client.rest_client.pool_manager.connection_pool_kw["retries"] = False
        if opts.grant() == "refresh_token":
            token_api = TokenApi(client, opts.secret("client_id"), opts.secret("client_secret"))
            token_api.refresh_token_url = opts.token_url or TOKEN_URL  # this instance only
            refresh = opts.secret("refresh_token")

            def fetch() -> Any:
                import urllib3
                from xero_python.exceptions import ApiException

                try:
                    return token_api.refresh_token(refresh, opts.scopes)
                except ApiException as exc:
                    status = exc.status or 0
                    if status == 429 or status >= 500:
                        raise TransientError(f"token endpoint HTTP {status}", retry_after_seconds(
                            (exc.headers or {}).get("Retry-After"))) from None
                    raise AuthFailure("the token endpoint refused the refresh token or client credentials",
                                      status or None) from None
                except urllib3.exceptions.HTTPError as exc:
                    raise TransientError(f"connection to the token endpoint failed: {type(exc).__name__}") from None
                except ValueError:
                    raise TransientError("the token endpoint's answer is not valid JSON") from None

            fresh = ctx.call("refreshing the OAuth2 access token", fetch)
            access = fresh.get("access_token") if isinstance(fresh, dict) else None
            if not isinstance(access, str) or not access:
                raise ConnectorError(ctx.source, "the token endpoint answered without an access_token")
            for key in ("access_token", "refresh_token", "id_token"):
                register_secret(fresh.get(key))
        else:
            access = opts.secret("access_token")
        token.update(access_token=access, token_type="Bearer", scope=opts.scopes, expires_in=None, expires_at=None)
        return AccountingApi(client, base_url=opts.api_base.rstrip("/"))

    def _pages(self, ctx: PullContext, method: Callable[..., Any], kind: str,
               since: datetime | None) -> Iterator[list[dict[str, Any]]]:
        """Pages 1, 2, … until one comes back shorter than the page size."""
        opts: XeroOptions = ctx.options
        page = 0
        while True:
            page += 1
            kwargs: dict[str, Any] = {"page": page, "page_size": opts.page_size,
                                      "_preload_content": False, "_return_http_data_only": True}
            if since is not None:
                kwargs["if_modified_since"] = since

            def fetch(kwargs: dict[str, Any] = kwargs) -> Any:
                return _translate(lambda: method(opts.tenant_id, **kwargs))

            body = ctx.call(f"listing {kind} (page {page})", fetch)
            items = body.get(kind) if isinstance(body, dict) else None
            if not isinstance(items, list):
                raise ConnectorError(ctx.source, f"listing {kind} (page {page}): the answer has no {kind} array")
            records = [r for r in items if isinstance(r, dict)]
            if records:
                yield records
            if len(items) < opts.page_size or ctx.enough():
                return

    def pull(self, ctx: PullContext) -> dict[str, Any]:
        api = self._api(ctx)
        since = None
        if ctx.cursor and ctx.cursor.get("updated"):
            since = datetime.fromisoformat(str(ctx.cursor["updated"]).replace("Z", "+00:00"))
        if ctx.stream.name == "bank_transactions":
            return self._run(ctx, self._pages(ctx, api.get_bank_transactions, "BankTransactions", since),
                             LINE_COLUMNS, "BankTransactionID", self._bank_rows)
        if ctx.stream.name == "manual_journals":
            return self._run(ctx, self._pages(ctx, api.get_manual_journals, "ManualJournals", since),
                             LINE_COLUMNS, "ManualJournalID", self._journal_rows)
        return self._run(ctx, self._pages(ctx, api.get_payments, "Payments", since), PAYMENT_COLUMNS, "PaymentID",
                         self._payment_rows)

    def _run(self, ctx: PullContext, pages: Iterator[list[dict[str, Any]]], columns: Sequence[str], id_field: str,
             rows_of: Callable[[PullContext, dict[str, Any], str], list[dict[str, Any]]]) -> dict[str, Any]:
        ctx.sink.columns(MAIN, columns)
        newest = ctx.cursor.get("updated") if ctx.cursor else None
        for page in pages:
            rows: list[dict[str, Any]] = []
            for record in page:
                rid = str(record.get(id_field) or "?")
                if id_field not in record:
                    ctx.sink.problem(rid, id_field, f"field '{id_field}' missing from the record in the API answer")
                updated = ms_date(record.get("UpdatedDateUTC"), with_time=True)
                if isinstance(updated, str) and updated.endswith("Z") and (newest is None or updated > newest):
                    newest = updated
                rows.extend(rows_of(ctx, record, rid))
            ctx.sink.write(MAIN, rows)
        return {"updated": newest}

    @staticmethod
    def _need(ctx: PullContext, r: Mapping[str, Any], rid: str, name: str, kind: str) -> Any:
        if name not in r:
            ctx.sink.problem(rid, name, f"field '{name}' missing from the {kind} in the API answer")
            return None
        return r[name]

    def _account(self, ctx: PullContext, code: Any) -> Any:
        names: dict[str, str] = ctx.options.account_names
        return names.get(str(code), code) if code is not None else None

    def _bank_rows(self, ctx: PullContext, r: dict[str, Any], rid: str) -> list[dict[str, Any]]:
        status = r.get("Status")
        base = {"txn_id": rid, "status": status, "updated": ms_date(r.get("UpdatedDateUTC"), with_time=True)}
        if status in GONE:
            return [{**base, "entry_id": f"{rid}:gone"}]  # replaces the lines held; dropped from the snapshot
        kind = self._need(ctx, r, rid, "Type", "bank transaction")
        side = BANK_SIDES.get(kind) if isinstance(kind, str) else None
        if kind is not None and side is None:
            ctx.sink.problem(rid, "Type", f"unknown bank transaction Type '{kind}'")
        bank, contact = _obj(r.get("BankAccount")), _obj(r.get("Contact"))
        common = {**base, "date": ms_date(self._need(ctx, r, rid, "Date", "bank transaction"), with_time=False),
                  "type": kind, "reference": r.get("Reference"), "name": contact.get("Name"),
                  "currency": self._need(ctx, r, rid, "CurrencyCode", "bank transaction")}
        total_raw = self._need(ctx, r, rid, "Total", "bank transaction")
        total = _amount(total_raw)
        side = side or 1  # an unknown Type is quarantined by its journal_type; the amounts stay readable
        debit, credit = _sides(total * side if total is not None else None, total_raw, "Total")
        rows = [{**common, "entry_id": f"{rid}:0", "account": bank.get("Name") or bank.get("Code"),
                 "memo": r.get("Reference"), "debit": debit, "credit": credit}]
        for n, item in enumerate(r.get("LineItems") or [], start=1):
            if not isinstance(item, dict):
                continue
            raw = item.get("LineAmount")
            amount = _amount(raw)
            d, c = _sides(-amount * side if amount is not None else None, raw, "LineAmount")
            rows.append({**common, "entry_id": f"{rid}:{n}", "account": self._account(ctx, item.get("AccountCode")),
                         "memo": item.get("Description"), "debit": d, "credit": c})
        if total is None:  # the whole transaction is quarantined, not only its bank line
            for row in rows:
                row.update(debit=debit, credit=None)
        return rows

    def _journal_rows(self, ctx: PullContext, r: dict[str, Any], rid: str) -> list[dict[str, Any]]:
        status = r.get("Status")
        base = {"txn_id": rid, "status": status, "updated": ms_date(r.get("UpdatedDateUTC"), with_time=True)}
        if status != "POSTED":  # drafts are not in the ledger; deleted and voided ones leave it
            return [{**base, "entry_id": f"{rid}:gone"}]
        when = ms_date(self._need(ctx, r, rid, "Date", "manual journal"), with_time=False)
        rows = []
        for n, line in enumerate(r.get("JournalLines") or [], start=1):
            if not isinstance(line, dict):
                continue
            raw = self._need(ctx, line, rid, "LineAmount", "manual journal line")
            d, c = _sides(_amount(raw), raw, "LineAmount")
            account = self._account(ctx, self._need(ctx, line, rid, "AccountCode", "manual journal line"))
            rows.append({**base, "entry_id": f"{rid}:{n}", "date": when, "account": account, "type": "Manual Journal",
                         "reference": None, "name": None, "memo": line.get("Description") or r.get("Narration"),
                         "debit": d, "credit": c,
                         "currency": ctx.options.account_currencies.get(account) if account else None})
        return rows

    def _payment_rows(self, ctx: PullContext, r: dict[str, Any], rid: str) -> list[dict[str, Any]]:
        kind = self._need(ctx, r, rid, "PaymentType", "payment")
        if kind in SUPPLIER_PAYMENTS:
            return []
        invoice = _obj(r.get("Invoice"))
        contact = _obj(invoice.get("Contact"))
        return [{"id": rid, "status": r.get("Status"), "date": ms_date(self._need(ctx, r, rid, "Date", "payment"),
                                                                     with_time=False),
                 "amount": self._need(ctx, r, rid, "Amount", "payment"), "currency": invoice.get("CurrencyCode"),
                 "type": kind, "invoice_id": invoice.get("InvoiceID"), "invoice_number": invoice.get("InvoiceNumber"),
                 "contact_id": contact.get("ContactID"), "reference": r.get("Reference") or None,
                 "updated": ms_date(r.get("UpdatedDateUTC"), with_time=True)}]

    def finalize_sql(self, ctx: PullContext, parts: Mapping[str, str]) -> str:
        """Deleted, voided (and draft) records stay in the state, to replace older copies, but leave the snapshot."""
        order = "entry_id" if ctx.stream.name != "payments" else "id"
        gone = "(status IS NULL OR status NOT IN ('DELETED', 'VOIDED'))"
        if ctx.stream.name == "manual_journals":
            gone = "status = 'POSTED'"
        return f'SELECT * FROM read_parquet({parts[MAIN]}) WHERE {gone} ORDER BY "{order}"'


register_connector(XeroConnector())

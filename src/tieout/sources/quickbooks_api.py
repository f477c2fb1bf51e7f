"""QuickBooks Online Accounting API connector over its documented REST API (httpx; OAuth2 bearer).

Streams: the GeneralLedger report (nested Rows/ColData flattened into one ledger line per row, as
the CSV export of `sources/quickbooks.py`), Deposits and JournalEntries (lines onto `gl_entries`)
and Payments, through the query endpoint, incremental on `MetaData.LastUpdatedTime`, with deletions
from the change data capture endpoint (`/cdc`). Amounts stay
decimal text (JSON parsed with Decimal, never float); normalization turns them into minor units.

Why not python-quickbooks: it is community-maintained, turns amounts into floats, hard-codes the
Intuit hosts and token endpoint, and has no GeneralLedger report type; the REST shapes are small.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

from pydantic import Field

from tieout.sources.connectors import MAIN, Connector, ConnectorOptions, PullContext, Stream, register_connector
from tieout.sources.credentials import AccessToken, ClientCredentials, RefreshToken, register_secret
from tieout.sources.retry import AuthFailure, ConnectorError, Refused, TransientError, retry_after_seconds

log = logging.getLogger("tieout.sources")

TOKEN_URL = "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer"
CDC_DAYS = 30  # how far back the change data capture endpoint looks
CDC_MAX = 1000  # objects it answers at most
PAYMENT_METHODS = {"visa": "card", "mastercard": "card", "american express": "card", "discover": "card",
                   "diners club": "card", "credit card": "card", "check": "check", "cash": "cash",
                   "ach": "ach", "bank transfer": "wire", "wire": "wire", "direct debit": "ach"}
GL_COLUMNS = ("entry_id", "txn_id", "date", "account", "txn_type", "num", "name", "memo", "split", "amount",
              "debit", "credit", "journal_type", "currency")
LINE_COLUMNS = ("entry_id", "txn_id", "date", "account", "txn_type", "num", "name", "memo", "debit", "credit",
                "journal_type", "currency", "last_updated")
PAYMENT_COLUMNS = ("id", "txn_date", "customer_id", "customer_name", "total_amt", "currency", "payment_method",
                   "payment_ref_num", "invoice_id", "deposit_to_account", "last_updated")
# The ledger streams' columns, mapped onto gl_entries the same way by all three.
LEDGER_MAPPING = {"entry_id": "entry_id", "posted_at": "date", "account": "account", "debit": "debit",
                  "credit": "credit", "currency": "currency", "txn_type": "txn_type", "reference": "num",
                  "name": "name", "memo": "memo", "journal_type": "journal_type"}
# GeneralLedger report columns by their ColKey (the ColTitle is shown to users and may be localized).
GL_KEYS = {"tx_date": "date", "txn_type": "txn_type", "doc_num": "num", "name": "name", "memo": "memo",
           "split_acc": "split", "subt_nat_amount": "amount"}


class QuickBooksOptions(ConnectorOptions, AccessToken, ClientCredentials, RefreshToken):
    """`options:` of a QuickBooks Online connector source: an access token (valid one hour), or a refresh
    token with the app's client id and secret (preferred when both are given)."""

    grants: ClassVar[tuple[str, ...]] = ("refresh_token", "access_token")
    realm_id: str = Field(description="Company id (realm) of the QuickBooks Online company.")
    api_base: str = Field("https://quickbooks.api.intuit.com", description="API host (the sandbox, a proxy or a "
                          "local test server); /v3/company/<realm_id> is appended.")
    minor_version: int = Field(75, ge=1, description="`minorversion` of the API requested.")
    page_size: int = Field(1000, ge=1, le=1000, description="MAXRESULTS per query page (QuickBooks allows 1000).")
    start_date: date | None = Field(None, description="GeneralLedger report: first day (default: 1 January of "
                                    "last year).")
    end_date: date | None = Field(None, description="GeneralLedger report: last day (default: today).")
    lookback_days: int = Field(35, ge=0, description="GeneralLedger report: an incremental pull re-reads this "
                               "many days before the last pull's end (back-dated entries).")
    account_currencies: dict[str, str] = Field(default_factory=dict, description="Currency of accounts not "
                                               "kept in the home currency, {account name: ISO code}.")
    manual_types: list[str] = Field(["Journal Entry"], description="GeneralLedger report: transaction types "
                                    "that are manual journals.")
    undeposited_funds_account: str = Field("Undeposited Funds", description="Deposits: account credited by a "
                                           "deposit line that settles a payment (LinkedTxn).")


def _decimal_json(text: str) -> Any:
    return json.loads(text, parse_float=Decimal)


def _fault_message(body: Any) -> str:
    fault = body.get("Fault") if isinstance(body, dict) else None
    errors = fault.get("Error") if isinstance(fault, dict) else None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        e = errors[0]
        return f"{e.get('Message', '')} {e.get('Detail', '')} (code {e.get('code', '?')})".strip()
    return "no Fault detail"


class _Api:
    """GET requests against one company, classified into transient and terminal failures."""

    def __init__(self, opts: QuickBooksOptions, client: Any, token: str):
        self.opts, self.client, self.token = opts, client, token
        self.base = f"{opts.api_base.rstrip('/')}/v3/company/{opts.realm_id}"

    def get(self, path: str, params: Mapping[str, str]) -> Any:
        import httpx

        try:
            r = self.client.get(f"{self.base}/{path}", params={**params, "minorversion": str(self.opts.minor_version)},
                                headers={"Authorization": f"Bearer {self.token}", "Accept": "application/json"})
        except httpx.TransportError as exc:
            raise TransientError(f"connection failed: {type(exc).__name__}") from None
        return _answer(r)


def _answer(r: Any) -> Any:
    status = r.status_code
    body: Any = None
    try:
        body = _decimal_json(r.text)
    except ValueError:
        if 200 <= status < 300:
            raise TransientError(f"the answer is not valid JSON (HTTP {status})") from None
    if status in (401, 403):
        raise AuthFailure(_fault_message(body) if body is not None else "refused", status)
    if status == 429 or status >= 500:
        raise TransientError(f"HTTP {status}", retry_after_seconds(r.headers.get("Retry-After")))
    if status >= 300:
        raise Refused(f"HTTP {status}: {_fault_message(body)}")
    if isinstance(body, dict) and "Fault" in body:
        raise Refused(f"fault in the answer: {_fault_message(body)}")
    return body


def _access_token(ctx: PullContext, client: Any) -> str:
    """The access token given, or one obtained from the refresh token at `token_url`."""
    import httpx

    opts: QuickBooksOptions = ctx.options
    if opts.grant() == "access_token":
        return opts.secret("access_token")
    auth = (opts.secret("client_id"), opts.secret("client_secret"))
    register_secret(base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())  # the Basic credentials, as sent
    form = {"grant_type": "refresh_token", "refresh_token": opts.secret("refresh_token")}

    def fetch() -> Any:
        try:
            r = client.post(opts.token_url or TOKEN_URL, auth=auth, headers={"Accept": "application/json"}, data=form)
        except httpx.TransportError as exc:
            raise TransientError(f"connection failed: {type(exc).__name__}") from None
        if r.status_code in (400, 401):  # invalid_grant / invalid_client: the credentials, not the server
            raise AuthFailure("the token endpoint refused the refresh token or client credentials", r.status_code)
        return _answer(r)

    body = ctx.call("refreshing the OAuth2 access token", fetch)
    token = body.get("access_token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        raise ConnectorError(ctx.source, "the token endpoint answered without an access_token")
    register_secret(token)
    if isinstance(body.get("refresh_token"), str):
        register_secret(body["refresh_token"])
    return token


def _ref(obj: Any, key: str, part: str = "name") -> Any:
    ref = obj.get(key) if isinstance(obj, dict) else None
    return ref.get(part) if isinstance(ref, dict) else None


def _signed(ctx: PullContext, rid: str, field: str, amount: Any) -> tuple[Any, Any]:
    """(debit, credit) text of a signed amount: positive debits, negative credits. A missing or bad
    amount goes to debit as text (`<missing Amount>`), so normalization quarantines the line."""
    if amount is None:
        return f"<missing {field}>", None
    try:
        value = Decimal(str(amount))
    except InvalidOperation:
        ctx.sink.problem(rid, field, f"'{amount}' in field '{field}' is not a number")
        return str(amount), None  # normalization quarantines the text, naming the column
    if value < 0:
        return None, -value
    return (value, None) if value > 0 else (None, None)


def _negated(amount: Any) -> Any:
    """-amount, or the text unchanged when it is not a number (normalization then quarantines it)."""
    try:
        return -Decimal(str(amount))
    except InvalidOperation:
        return amount


def _updated(record: Mapping[str, Any]) -> str | None:
    meta = record.get("MetaData")
    value = meta.get("LastUpdatedTime") if isinstance(meta, dict) else None
    return value if isinstance(value, str) else None


def _instant(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else None


class QuickBooksConnector(Connector):
    name = "quickbooks_api"
    doc = ("QuickBooks Online Accounting API (REST, OAuth2): the GeneralLedger report, deposits, journal entries "
           "and payments; incremental on MetaData.LastUpdatedTime. Decimal major units, ISO dates.")
    options_model = QuickBooksOptions
    streams: ClassVar[Mapping[str, Stream]] = {s.name: s for s in (
        Stream("general_ledger", "the GeneralLedger report, one line per report row (as the CSV export): "
               "positive amounts debit, negative credit; manual_types are manual journals.", "gl_entries",
               "entry_id", key=("entry_id",),
               columns=LEDGER_MAPPING, amount_unit="major", date_formats=("%Y-%m-%d",)),
        Stream("deposits", "deposits: the deposit-to account debited with the total; each line credits its "
               "account (a linked payment: undeposited funds), a negative line (fees) debits it.", "gl_entries",
               "txn_id", key=("txn_id",),
               columns=LEDGER_MAPPING, amount_unit="major", date_formats=("%Y-%m-%d",)),
        Stream("journal_entries", "journal entries, one ledger line per JournalEntryLineDetail (PostingType "
               "Debit or Credit), journal type manual.", "gl_entries", "txn_id", key=("txn_id",),
               columns=LEDGER_MAPPING, amount_unit="major", date_formats=("%Y-%m-%d",)),
        Stream("payments", "customer payments received (type payment); PaymentMethodRef names mapped onto "
               "methods (Visa, MasterCard... -> card; Check; Cash), none -> other.", "payments", "id", key=("id",),
               columns={"payment_id": "id", "invoice_id": "invoice_id", "customer_id": "customer_id",
                        "method": "payment_method", "amount": "total_amt", "currency": "currency",
                        "received_at": "txn_date", "gateway_ref": "payment_ref_num"},
               constants={"type": "payment", "method": "other"}, value_maps={"method": PAYMENT_METHODS},
               amount_unit="major", date_formats=("%Y-%m-%d", "%Y-%m-%dT%H:%M:%S")),
    )}

    def pull(self, ctx: PullContext) -> dict[str, Any]:
        import httpx

        with httpx.Client(timeout=60.0) as client:
            api = _Api(ctx.options, client, _access_token(ctx, client))
            if ctx.stream.name == "general_ledger":
                return self._general_ledger(ctx, api)
            entity, columns = {"deposits": ("Deposit", LINE_COLUMNS), "journal_entries": ("JournalEntry", LINE_COLUMNS),
                               "payments": ("Payment", PAYMENT_COLUMNS)}[ctx.stream.name]
            return self._query(ctx, api, entity, columns)

    # --- query endpoint ------------------------------------------------------------------------

    def _pages(self, ctx: PullContext, api: _Api, entity: str,
               clock: dict[str, str]) -> Iterator[list[dict[str, Any]]]:
        """`select * from <entity>` pages (STARTPOSITION/MAXRESULTS), changed since the cursor; `clock`
        gets the server's `time` of the first answer."""
        where = ""
        if ctx.cursor and ctx.cursor.get("last_updated"):
            # >= rather than >: a record changed in the same second as the last one read is not lost
            # (the merge replaces the copy already held).
            where = f" where MetaData.LastUpdatedTime >= '{ctx.cursor['last_updated']}'"
        size = ctx.options.page_size
        start = 1
        page_no = 0
        while True:
            page_no += 1
            query = (f"select * from {entity}{where} orderby MetaData.LastUpdatedTime "
                     f"startposition {start} maxresults {size}")

            def fetch(query: str = query) -> Any:
                return api.get("query", {"query": query})

            body = ctx.call(f"querying {entity} (page {page_no})", fetch)
            if isinstance(body, dict) and isinstance(body.get("time"), str):
                clock.setdefault("time", body["time"])
            answer = body.get("QueryResponse") if isinstance(body, dict) else None
            if not isinstance(answer, dict):
                raise ConnectorError(ctx.source, f"querying {entity} (page {page_no}): the answer has no "
                                     "QueryResponse object")
            items = [o for o in answer.get(entity, []) if isinstance(o, dict)]
            if items:
                yield items
            if len(items) < size or ctx.enough():
                return
            start += size

    def _query(self, ctx: PullContext, api: _Api, entity: str, columns: Sequence[str]) -> dict[str, Any]:
        ctx.sink.columns(MAIN, columns)
        newest = ctx.cursor.get("last_updated") if ctx.cursor else None
        # Deletions first: the next pull asks for those after this answer's time (a full pull: the query's).
        checked_at = self._deleted(ctx, api, entity) if ctx.cursor else None
        clock: dict[str, str] = {}
        row = {"Deposit": self._deposit_rows, "JournalEntry": self._journal_rows, "Payment": self._payment_rows}[entity]
        for page in self._pages(ctx, api, entity, clock):
            rows: list[dict[str, Any]] = []
            for record in page:
                rid = str(record.get("Id", "?"))
                updated = _updated(record)
                moment = _instant(updated)
                if moment is None:
                    ctx.sink.problem(rid, "MetaData.LastUpdatedTime", f"'{updated}' in field MetaData.LastUpdatedTime "
                                     f"of the {entity} is not an ISO time with offset")
                elif newest is None or moment > _instant(str(newest)):  # type: ignore[operator]
                    newest = updated
                rows.extend(row(ctx, record, rid, updated))
            ctx.sink.write(MAIN, rows)
        return {"last_updated": newest, "checked_at": checked_at or clock.get("time")}

    def _deleted(self, ctx: PullContext, api: _Api, entity: str) -> str | None:
        """The query endpoint never returns a deleted entity; the change data capture endpoint does, as
        `{"status": "Deleted", "Id": ...}`: those leave the state. Asked for what changed since the last
        pull's start (server time), it answers its own time, the next pull's start. CDC looks back at most
        30 days and answers at most 1,000 objects: past either, only a full refresh removes the rest."""
        since = (ctx.cursor or {}).get("checked_at") or (ctx.cursor or {}).get("last_updated")
        moment = _instant(str(since)) if since else None
        if moment is None or datetime.now(UTC) - moment > timedelta(days=CDC_DAYS):
            log.warning("source '%s': the last pull was more than %d days ago, beyond what QuickBooks' change data "
                        "capture keeps: %s deleted since then stay until a full refresh", ctx.source, CDC_DAYS, entity)
            return None

        def fetch() -> Any:
            return api.get("cdc", {"entities": entity, "changedSince": str(since)})

        body = ctx.call(f"reading {entity} changes (change data capture)", fetch)
        answers = body.get("CDCResponse") if isinstance(body, dict) else None
        if not isinstance(answers, list):
            raise ConnectorError(ctx.source, f"reading {entity} changes: the answer has no CDCResponse list")
        changed: list[dict[str, Any]] = []
        for answer in answers:
            for part in (answer.get("QueryResponse") or []) if isinstance(answer, dict) else []:
                if isinstance(part, dict):
                    changed.extend(o for o in part.get(entity) or [] if isinstance(o, dict))
        if len(changed) >= CDC_MAX:
            log.warning("source '%s': change data capture answered %d %s changes, its maximum: some deletions may be "
                        "missing until a full refresh", ctx.source, len(changed), entity)
        for o in changed:
            if o.get("status") == "Deleted" and o.get("Id") is not None:
                ctx.sink.delete(MAIN, {ctx.stream.key[0]: o["Id"]})
        return str(body["time"]) if isinstance(body.get("time"), str) else None

    @staticmethod
    def _need(ctx: PullContext, record: Mapping[str, Any], rid: str, name: str, kind: str) -> Any:
        if name not in record:
            ctx.sink.problem(rid, name, f"field '{name}' missing from the {kind} in the API answer")
            return None
        return record[name]

    def _payment_rows(self, ctx: PullContext, r: dict[str, Any], rid: str, updated: str | None) -> list[dict[str, Any]]:
        invoice = None
        for line in r.get("Line") or []:
            for linked in (line.get("LinkedTxn") or []) if isinstance(line, dict) else []:
                if isinstance(linked, dict) and linked.get("TxnType") == "Invoice" and invoice is None:
                    invoice = linked.get("TxnId")
        return [{"id": rid, "txn_date": self._need(ctx, r, rid, "TxnDate", "Payment"),
                 "customer_id": _ref(r, "CustomerRef", "value"), "customer_name": _ref(r, "CustomerRef"),
                 "total_amt": self._need(ctx, r, rid, "TotalAmt", "Payment"),
                 "currency": _ref(r, "CurrencyRef", "value"), "payment_method": _ref(r, "PaymentMethodRef"),
                 "payment_ref_num": r.get("PaymentRefNum"), "invoice_id": invoice,
                 "deposit_to_account": _ref(r, "DepositToAccountRef"), "last_updated": updated}]

    def _line(self, ctx: PullContext, r: dict[str, Any], rid: str, n: int, account: Any, amount: Any,
              kind: str, updated: str | None, memo: Any) -> dict[str, Any]:
        debit, credit = _signed(ctx, rid, "Amount", amount)
        opts: QuickBooksOptions = ctx.options
        currency = _ref(r, "CurrencyRef", "value") or (opts.account_currencies.get(account) if account else None)
        return {"entry_id": f"{kind}:{rid}:{n}", "txn_id": rid, "date": self._need(ctx, r, rid, "TxnDate", kind),
                "account": account, "txn_type": kind, "num": r.get("DocNumber"), "name": None, "memo": memo,
                "debit": debit, "credit": credit, "journal_type": "manual" if kind == "Journal Entry" else "system",
                "currency": currency, "last_updated": updated}

    def _deposit_rows(self, ctx: PullContext, r: dict[str, Any], rid: str, updated: str | None) -> list[dict[str, Any]]:
        opts: QuickBooksOptions = ctx.options
        to = _ref(r, "DepositToAccountRef")
        if to is None:
            ctx.sink.problem(rid, "DepositToAccountRef", "field 'DepositToAccountRef' missing from the Deposit")
        total = self._need(ctx, r, rid, "TotalAmt", "Deposit")
        rows = [self._line(ctx, r, rid, 0, to, total, "Deposit", updated, r.get("PrivateNote"))]
        for n, line in enumerate(r.get("Line") or [], start=1):
            if not isinstance(line, dict) or line.get("DetailType") != "DepositLineDetail":
                continue
            account = _ref(line.get("DepositLineDetail"), "AccountRef")
            if account is None and line.get("LinkedTxn"):
                account = opts.undeposited_funds_account
            rows.append(self._line(ctx, r, rid, n, account, _negated(line.get("Amount")), "Deposit", updated,
                                   line.get("Description")))
        return rows

    def _journal_rows(self, ctx: PullContext, r: dict[str, Any], rid: str, updated: str | None) -> list[dict[str, Any]]:
        rows = []
        for n, line in enumerate(r.get("Line") or []):
            if not isinstance(line, dict) or line.get("DetailType") != "JournalEntryLineDetail":
                continue
            detail = line.get("JournalEntryLineDetail") or {}
            posting = detail.get("PostingType")
            amount = line.get("Amount")
            if posting == "Credit":
                amount = _negated(amount)
            elif posting != "Debit":
                ctx.sink.problem(rid, "PostingType", f"unknown PostingType '{posting}' on line {n} of the "
                                 "JournalEntry (expected Debit or Credit)")
                amount = f"{amount} ({posting})"  # not a number: normalization quarantines the line
            rows.append(self._line(ctx, r, rid, n, _ref(detail, "AccountRef"), amount, "Journal Entry", updated,
                                   line.get("Description") or r.get("PrivateNote")))
        return rows

    # --- GeneralLedger report ------------------------------------------------------------------

    def _general_ledger(self, ctx: PullContext, api: _Api) -> dict[str, Any]:
        opts: QuickBooksOptions = ctx.options
        today = datetime.now(UTC).date()
        end = opts.end_date or today
        start = opts.start_date or date(today.year - 1, 1, 1)
        if ctx.cursor and ctx.cursor.get("end_date"):
            start = max(start, date.fromisoformat(ctx.cursor["end_date"]) - timedelta(days=opts.lookback_days))
        params = {"start_date": start.isoformat(), "end_date": end.isoformat()}
        body = ctx.call(f"reading the GeneralLedger report {start}..{end}",
                        lambda: api.get("reports/GeneralLedger", params))
        if not isinstance(body, dict) or not isinstance(body.get("Columns"), dict):
            raise ConnectorError(ctx.source, "reading the GeneralLedger report: the answer has no Columns object")
        positions = _report_columns(body["Columns"])
        ctx.sink.columns(MAIN, GL_COLUMNS)
        missing = [key for key in ("tx_date", "subt_nat_amount") if key not in positions]
        manual = {t.lower() for t in opts.manual_types}
        rows: list[dict[str, Any]] = []
        seen: dict[str, int] = {}
        for account, cells in _report_lines(body.get("Rows")):
            values = {name: (cells[i].get("value") if i < len(cells) else None) for name, i in positions.items()}
            txn_cell = cells[positions["txn_type"]] if "txn_type" in positions and positions["txn_type"] < len(cells) \
                else {}
            base = f"{values.get('txn_type') or 'row'}:{txn_cell.get('id') or '?'}:{account}"
            seen[base] = seen.get(base, 0) + 1
            entry = f"{base}:{seen[base]}"
            for key in missing:
                ctx.sink.problem(entry, key, f"column '{key}' missing from the GeneralLedger report answer")
            amount = values.get("subt_nat_amount")
            debit, credit = _signed(ctx, entry, "subt_nat_amount", amount) if amount != "" else (None, None)
            txn_type = values.get("txn_type") or ""
            rows.append({"entry_id": entry, "txn_id": txn_cell.get("id"), "date": values.get("tx_date"),
                         "account": account, "txn_type": txn_type, "num": values.get("doc_num"),
                         "name": values.get("name"), "memo": values.get("memo"), "split": values.get("split_acc"),
                         "amount": amount, "debit": debit, "credit": credit,
                         "journal_type": "manual" if txn_type.lower() in manual else "system",
                         "currency": opts.account_currencies.get(account)})
            if len(rows) >= 10_000:
                ctx.sink.write(MAIN, rows)
                rows = []
        ctx.sink.write(MAIN, rows)
        return {"end_date": end.isoformat()}


def _report_columns(columns: Mapping[str, Any]) -> dict[str, int]:
    """Position of each known column, by its ColKey (falling back to the English ColTitle)."""
    titles = {"Date": "tx_date", "Transaction Type": "txn_type", "Num": "doc_num", "Name": "name",
              "Memo/Description": "memo", "Split": "split_acc", "Amount": "subt_nat_amount"}
    out: dict[str, int] = {}
    for i, col in enumerate(columns.get("Column") or []):
        if not isinstance(col, dict):
            continue
        key = next((m.get("Value") for m in col.get("MetaData") or [] if isinstance(m, dict)
                    and m.get("Name") == "ColKey"), None) or titles.get(str(col.get("ColTitle")))
        if key in GL_KEYS and key not in out:
            out[key] = i
    return out


def _report_lines(rows: Any, account: str | None = None) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """(account, cells) of every data row, depth first; a section's header names its account."""
    for row in (rows or {}).get("Row") or [] if isinstance(rows, dict) else []:
        if not isinstance(row, dict):
            continue
        if "Rows" in row or "Header" in row:
            header = (row.get("Header") or {}).get("ColData") or []
            name = header[0].get("value") if header and isinstance(header[0], dict) else None
            yield from _report_lines(row.get("Rows"), name or account)
            continue
        cells = [c if isinstance(c, dict) else {} for c in row.get("ColData") or []]
        if not cells or account is None or row.get("type", "Data") != "Data":
            continue
        if cells[0].get("value") == "Beginning Balance":
            continue
        yield account, cells


register_connector(QuickBooksConnector())

"""HubSpot connector, through the official `hubspot-api-client` SDK (CRM v3 objects, host overridable).

Streams: companies (crm_accounts), deals, and line items (crm_products: each line item's deal and
that deal's company, from the v4 associations API). A full pull lists objects (`after` paging); an
incremental one searches `hs_lastmodifieddate >=` the cursor, oldest first, restarting from the newest
change seen when the search reaches its 10,000-result window; search never returns archived
(deleted) objects, so an incremental pull also lists them (`archived=true`) and they leave the state.
Custom properties are read with
`properties:` and mapped with `columns:`. The SDK's urllib3 retries are off: `retry.RetryPolicy` decides.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar

from pydantic import Field, field_validator

from tieout.sources.connectors import MAIN, Connector, ConnectorOptions, PullContext, Stream, register_connector
from tieout.sources.credentials import AccessToken
from tieout.sources.retry import AuthFailure, Refused, TransientError, retry_after_seconds

T = TypeVar("T")
MODIFIED = "hs_lastmodifieddate"
SEARCH_WINDOW = 10_000  # a CRM search pages through at most this many results
PROPERTY_NAME = re.compile(r"^[a-z0-9_][a-z0-9_\-]*$")
# Company lifecycle stages (HubSpot's defaults) onto crm_accounts.status.
LIFECYCLE_STATUSES = {"subscriber": "prospect", "lead": "prospect", "marketingqualifiedlead": "prospect",
                      "salesqualifiedlead": "prospect", "opportunity": "prospect", "customer": "live",
                      "evangelist": "live"}


class HubSpotOptions(ConnectorOptions, AccessToken):
    """`options:` of a HubSpot connector source: `access_token` is a private app's token (or an OAuth 2.0
    access token) with crm.objects.*.read scopes, e.g. ${HUBSPOT_ACCESS_TOKEN}."""

    grants: ClassVar[tuple[str, ...]] = ("access_token",)
    api_base: str | None = Field(None, description="Base URL instead of https://api.hubapi.com (a proxy or a "
                                 "local test server).")
    properties: list[str] = Field(default_factory=list, description="Properties to read besides the stream's "
                                  "own (custom ones such as provider_count), as columns of the same name; map "
                                  "them with `columns:`.")
    page_size: int = Field(100, ge=1, le=100, description="Objects per page (HubSpot allows at most 100 when "
                           "listing, 200 when searching).")
    timeout_seconds: float = Field(120.0, gt=0, description="Longest wait for one answer (a stalled "
                                   "connection is then retried).")

    @field_validator("properties")
    @classmethod
    def _property_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not PROPERTY_NAME.match(name):
                raise ValueError(f"'{name}' is not a HubSpot property name (lower case, digits, _)")
        return value


def _message(body: Any) -> str:
    try:
        data = json.loads(body) if isinstance(body, str | bytes) else body
    except ValueError:
        return ""
    if isinstance(data, dict):
        return str(data.get("message") or data.get("category") or "")
    return ""


def _translate(call: Callable[[], Any]) -> Any:
    """Call the SDK and decode the JSON body; map errors onto transient (retried) and terminal failures."""
    import urllib3

    try:
        response = call()
    except urllib3.exceptions.HTTPError as exc:
        raise TransientError(f"connection failed: {type(exc).__name__}") from None
    except Exception as exc:
        status = getattr(exc, "status", None)
        if not type(exc).__module__.startswith("hubspot.") or not isinstance(status, int):
            raise
        message = _message(getattr(exc, "body", None))
        if status in (401, 403):
            raise AuthFailure(message or "refused", status) from None
        if status == 429 or status >= 500 or status == 0:
            headers = getattr(exc, "headers", None) or {}
            raise TransientError(f"HTTP {status}" + (f" ({message})" if message else ""),
                                 retry_after_seconds(headers.get("Retry-After"))) from None
        raise Refused(f"HTTP {status}: {message}") from None
    try:
        return json.loads(response.data)
    except ValueError:
        raise TransientError(f"the answer is not valid JSON (HTTP {response.status})") from None


class HubSpotConnector(Connector):
    name = "hubspot"
    doc = ("HubSpot CRM v3 through the official SDK: companies, deals, line items (with their deal and company), "
           "incremental on hs_lastmodifieddate; custom properties read with `properties:`.")
    options_model = HubSpotOptions
    streams: ClassVar[Mapping[str, Stream]] = {s.name: s for s in (
        Stream("companies", "companies (properties name, hubspot_owner_id, lifecyclestage: customer, evangelist "
               "-> live; subscriber, lead, MQL, SQL, opportunity -> prospect).", "crm_accounts", "id", key=("id",),
               columns={"account_id": "id", "name": "name", "owner": "hubspot_owner_id", "status": "lifecyclestage"},
               value_maps={"status": LIFECYCLE_STATUSES}, amount_unit="major", date_formats=()),
        Stream("deals", "deals (dealname, amount, deal_currency_code, dealstage, pipeline, closedate) with the "
               "first associated company as company_id; set `table:` to use them.", None, "id", key=("id",),
               amount_unit="major", date_formats=()),
        Stream("line_items", "line items (hs_sku, name, quantity, price) with their deal (deal_id) and that deal's "
               "company (company_id); each one an active product of the company.", "crm_products", "id",
               key=("id",), columns={"account_id": "company_id", "sku": "hs_sku"},
               constants={"status": "active"}, amount_unit="major", date_formats=()),
    )}
    object_types: ClassVar[Mapping[str, str]] = {"companies": "companies", "deals": "deals",
                                                 "line_items": "line_items"}
    default_properties: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "companies": ("name", "domain", "hubspot_owner_id", "lifecyclestage", "createdate", MODIFIED),
        "deals": ("dealname", "amount", "deal_currency_code", "dealstage", "pipeline", "closedate", "createdate",
                  MODIFIED),
        "line_items": ("hs_sku", "name", "quantity", "price", "hs_product_id", "createdate", MODIFIED),
    }
    singular: ClassVar[Mapping[str, str]] = {"companies": "company", "deals": "deal", "line_items": "line item"}
    links: ClassVar[Mapping[str, tuple[str, ...]]] = {"companies": (), "deals": ("company_id",),
                                                      "line_items": ("deal_id", "company_id")}

    def _client(self, opts: HubSpotOptions) -> Any:
        from hubspot import HubSpot

        kwargs: dict[str, Any] = {"access_token": opts.secret("access_token"), "retry": False}
        if opts.api_base:
            kwargs["host"] = opts.api_base.rstrip("/")
        return HubSpot(**kwargs)

    def properties(self, ctx: PullContext) -> list[str]:
        return list(dict.fromkeys([*self.default_properties[ctx.stream.name], *ctx.options.properties]))

    def pull(self, ctx: PullContext) -> dict[str, Any]:
        client = self._client(ctx.options)
        kind = ctx.stream.name
        props = self.properties(ctx)
        ctx.sink.columns(MAIN, ["id", "archived", *props, *self.links[kind]])
        since = ctx.cursor.get(MODIFIED) if ctx.cursor else None
        newest = _parse_time(since)
        incremental = newest is not None
        pages = self._search(ctx, client, props, newest) if newest else self._list(ctx, client, props)
        for page in pages:
            rows = []
            for obj in page:
                row = _row(ctx, obj, props, self.singular[kind])
                stamp = _parse_time(row.get(MODIFIED))
                if stamp is not None and (newest is None or stamp > newest):
                    newest = stamp
                rows.append(row)
            self._link(ctx, client, rows)
            ctx.sink.write(MAIN, rows)
        if incremental:  # search never returns archived (deleted) objects: list them to drop them
            for page in self._list(ctx, client, ["hs_object_id"], archived=True):
                for obj in page:
                    if obj.get("id") is not None:
                        ctx.sink.delete(MAIN, {"id": obj["id"]})
        return {MODIFIED: newest.isoformat(timespec="milliseconds").replace("+00:00", "Z") if newest else None}

    def _api(self, client: Any, kind: str) -> Any:
        return getattr(client.crm, kind)

    def _list(self, ctx: PullContext, client: Any, props: Sequence[str],
              archived: bool = False) -> Iterator[list[dict[str, Any]]]:
        """Every object (or, with `archived`, every archived one), by `after` cursor, until `paging.next`
        is gone."""
        api = self._api(client, self.object_types[ctx.stream.name]).basic_api
        after: str | None = None
        page_no = 0
        while True:
            page_no += 1
            kwargs: dict[str, Any] = {"limit": ctx.options.page_size, "properties": list(props),
                                      "archived": archived, "_preload_content": False,
                                      "_request_timeout": ctx.options.timeout_seconds}
            if after:
                kwargs["after"] = after

            def fetch(kw: dict[str, Any] = kwargs) -> Any:
                return _translate(lambda: api.get_page(**kw))

            what = "archived " if archived else ""
            body = ctx.call(f"listing {what}{ctx.stream.name} (page {page_no})", fetch)
            results, after = _results(body)
            if results:
                yield results
            if not after or (ctx.enough() and not archived):
                return

    def _search(self, ctx: PullContext, client: Any, props: Sequence[str],
                since: datetime) -> Iterator[list[dict[str, Any]]]:
        """Objects changed since the cursor, oldest change first. A search pages through at most 10,000
        results: past that, it starts again from the newest change seen, skipping the objects of that
        instant it already gave."""
        api = self._api(client, self.object_types[ctx.stream.name]).search_api
        start, after, page_no = since, None, 0
        newest, at_newest = since, set[str]()  # latest change time given, and the ids changed at it
        skip: set[str] = set()
        while True:
            page_no += 1
            request: dict[str, Any] = {
                "filterGroups": [{"filters": [{"propertyName": MODIFIED, "operator": "GTE",
                                               "value": str(int(start.timestamp() * 1000))}]}],
                "sorts": [{"propertyName": MODIFIED, "direction": "ASCENDING"}],
                "properties": list(props), "limit": ctx.options.page_size}
            if after:
                request["after"] = after

            def fetch(req: dict[str, Any] = request) -> Any:
                return _translate(lambda: api.do_search(public_object_search_request=req, _preload_content=False,
                                                        _request_timeout=ctx.options.timeout_seconds))

            body = ctx.call(f"searching {ctx.stream.name} changed since {start.isoformat()} (page {page_no})", fetch)
            results, after = _results(body)
            fresh = []
            for r in results:
                rid = str(r.get("id"))
                stamp = _parse_time((r.get("properties") or {}).get(MODIFIED))
                if stamp == start and rid in skip:
                    continue
                if stamp is not None and stamp > newest:
                    newest, at_newest = stamp, {rid}
                elif stamp == newest:
                    at_newest.add(rid)
                fresh.append(r)
            if fresh:
                yield fresh
            if not after or ctx.enough():
                return
            if int(after) + ctx.options.page_size > SEARCH_WINDOW:
                if newest <= start:
                    raise Refused(f"more than {SEARCH_WINDOW} {ctx.stream.name} changed at {start.isoformat()}: "
                                  "run a full refresh")
                start, after, skip = newest, None, set(at_newest)

    def _link(self, ctx: PullContext, client: Any, rows: list[dict[str, Any]]) -> None:
        """Fill a page's association columns: deals -> company; line items -> deal -> company."""
        links = self.links[ctx.stream.name]
        if not links or not rows:
            return
        from_type = self.object_types[ctx.stream.name]
        if links[0] == "company_id":
            first = self._associated(ctx, client, from_type, "companies", [r["id"] for r in rows])
            for r in rows:
                r["company_id"] = first.get(r["id"])
            return
        deal_of = self._associated(ctx, client, from_type, "deals", [r["id"] for r in rows])
        company_of = self._associated(ctx, client, "deals", "companies", sorted(set(deal_of.values())))
        for r in rows:
            r["deal_id"] = deal_of.get(r["id"])
            r["company_id"] = company_of.get(r["deal_id"] or "")
            if r["company_id"] is None:
                where = f"deal {r['deal_id']} has no company" if r["deal_id"] else "it is on no deal"
                ctx.sink.problem(str(r["id"]), "company_id", f"no company for the line item: {where}")

    def _associated(self, ctx: PullContext, client: Any, from_type: str, to_type: str,
                    ids: Sequence[str]) -> dict[str, str]:
        """id -> the first (lowest) associated id, by the v4 associations batch read (100 ids a call)."""
        out: dict[str, str] = {}
        api = client.crm.associations.v4.batch_api
        for i in range(0, len(ids), 100):
            inputs = {"inputs": [{"id": x} for x in ids[i:i + 100]]}

            def fetch(body: dict[str, Any] = inputs) -> Any:
                return _translate(lambda: api.get_page(
                    from_type, to_type, batch_input_public_fetch_associations_batch_request=body,
                    _preload_content=False, _request_timeout=ctx.options.timeout_seconds))

            answer = ctx.call(f"reading {from_type} -> {to_type} associations", fetch)
            for result in answer.get("results") or [] if isinstance(answer, dict) else []:
                targets = sorted((str(t.get("toObjectId")) for t in result.get("to") or []), key=_id_order)
                source = str((result.get("from") or {}).get("id"))
                if targets:
                    out[source] = targets[0]
        return out


def _id_order(value: str) -> tuple[int, str]:
    return (int(value), value) if value.isdigit() else (0, value)


def _results(body: Any) -> tuple[list[dict[str, Any]], str | None]:
    """A CRM v3 page: its objects and the `paging.next.after` cursor, checked."""
    if not isinstance(body, dict) or not isinstance(body.get("results"), list):
        raise TransientError("the answer is not a HubSpot page (no `results` array)")
    nxt = ((body.get("paging") or {}).get("next") or {}).get("after")
    return [r for r in body["results"] if isinstance(r, dict)], None if nxt in (None, "") else str(nxt)


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _row(ctx: PullContext, obj: Mapping[str, Any], props: Sequence[str], kind: str) -> dict[str, Any]:
    rid = str(obj.get("id", "?"))
    if "id" not in obj:
        ctx.sink.problem(rid, "id", f"field 'id' missing from the {kind} in the API answer")
    given = obj.get("properties")
    properties: Mapping[str, Any] = given if isinstance(given, dict) else {}
    row: dict[str, Any] = {"id": obj.get("id"), "archived": obj.get("archived")}
    for name in props:
        if name not in properties:  # HubSpot leaves out a property it does not know (renamed, deleted)
            ctx.sink.problem(rid, name, f"property '{name}' missing from the {kind} in the API answer")
        row[name] = properties.get(name)
    return row


register_connector(HubSpotConnector())

"""The CRM connectors against local servers speaking the vendors' shapes: Salesforce through
simple-salesforce (SOQL pages and Bulk API 2.0 jobs), HubSpot through the official
hubspot-api-client (CRM v3 list and search). Records start from the vendors' sample rows."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml

from tieout.cli import run_cli
from tieout.config import Config, load_config, parse_config
from tieout.demo import DEMO_CONFIG, generate_workspace
from tieout.errors import ExitCode
from tieout.pipeline import run
from tieout.sources.connectors import pull_source
from tieout.sources.retry import ConnectorAuthError, ConnectorError
from tieout.sources.snapshots import last_pull

from .crm_servers import (
    SF_VERSION,
    HubSpotServer,
    SalesforceServer,
    demo_hubspot_objects,
    demo_salesforce_objects,
    field_paths,
    hs_time,
    hubspot_company,
    hubspot_server,
    salesforce_server,
    salesforce_template,
    stamp,
)
from .vendor_servers import Fault, ingested, pinned_ids

SF_TOKEN = "00DPlantedOrg!AQ4AQPlantedSessionTokenX9"
HS_TOKEN = "pat-na1-planted-0d9c8b7a-6e5f-4d3c-2b1a"
T0 = 1_780_000_000


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def _no_wait(seconds: float) -> None:
    raise AssertionError(f"unexpected wait ({seconds}s)")


def _rows(path: Path) -> dict[str, dict[str, Any]]:
    table = duckdb.sql(f"SELECT * FROM read_parquet('{path}')").to_arrow_table().to_pylist()
    key = "Id" if table and "Id" in table[0] else "id"
    return {r[key]: r for r in table}


def _ingested(cfg: Config, table: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Pull every connector source of `cfg`, ingest: the accepted rows of `table` and the quarantine,
    its reasons naming the API record."""
    rows, quarantined = ingested(cfg)
    return rows[table], quarantined


# --- Salesforce -------------------------------------------------------------------------------------


@pytest.fixture
def sf() -> Iterator[SalesforceServer]:
    with salesforce_server(SF_TOKEN) as server:
        yield server


def _account(n: int, modified: int, **fields: Any) -> dict[str, Any]:
    a = salesforce_template("Account", n)
    a.update(Id=f"0015e{n:013d}AAA", Name=f"Acme Dental {n} Inc.", SystemModstamp=stamp(modified), IsDeleted=False,
             Owner={"attributes": {"type": "User"}, "Name": "ana"}, Billing_Account_Number__c=f"C{n:05d}",
             Status__c="Live", Go_Live_Date__c="2026-07-01", Provider_Count__c=12.0)
    a.update(fields)
    return a


def _one_source(tmp_path: Path, name: str, fmt: str, options: dict[str, Any]) -> Config:
    """A config with one connector source, pulled into `pulls/<stream>`."""
    return parse_config(f"""
sources:
  - name: {name}
    format: {fmt}
    path: pulls/{fmt.split(".")[-1]}
    options: {json.dumps(options)}
""", tmp_path / "tieout.yaml")


def _sf_config(tmp_path: Path, server: SalesforceServer, stream: str = "accounts", **options: Any) -> Config:
    opts = {"instance_url": server.url, "access_token": SF_TOKEN, **options}
    return _one_source(tmp_path, f"sf_{stream}", f"salesforce.{stream}", opts)


def test_salesforce_pages_incrementally_on_systemmodstamp_with_deletions(tmp_path: Path,
                                                                         sf: SalesforceServer) -> None:
    sf.objects["Account"] = [_account(i, T0 + i) for i in range(450)]
    cfg = _sf_config(tmp_path, sf, page_size=200)
    first, sink = pull_source(cfg, 0, sleep=_no_wait)
    assert (first.records, first.pulled, sink.problems) == (450, 450, [])
    assert first.cursor == {"SystemModstamp": "2026-05-28T20:34:09Z"}
    assert [r.split("?")[0].rstrip("/").rsplit("/", 1)[-1] for r in sf.requests] == [
        "queryAll", "01g000000000000001-200", "01g000000000000001-400"]  # 200 + 200 + 50
    assert "Provider_Count__c" in sf.requests[0] and "WHERE" not in sf.requests[0]
    sf.objects["Account"][3] = _account(3, T0 + 1000, Status__c="Churned", Provider_Count__c=None)
    sf.objects["Account"][4] = _account(4, T0 + 1001, IsDeleted=True)
    sf.requests.clear()
    second, _ = pull_source(cfg, 0, sleep=_no_wait)
    assert "SystemModstamp+%3E%3D+2026-05-28T20%3A34%3A09Z" in sf.requests[0]
    assert (second.mode, second.pulled, second.records) == ("incremental", 3, 449)  # 449 re-read, 3, 4
    rows = _rows(tmp_path / "pulls/accounts" / second.snapshot)
    assert rows["0015e0000000000003AAA"]["Status__c"] == "Churned"
    assert rows["0015e0000000000003AAA"]["Provider_Count__c"] is None
    assert "0015e0000000000004AAA" not in rows and rows["0015e0000000000005AAA"]["Owner.Name"] == "ana"
    assert second.cursor == {"SystemModstamp": "2026-05-28T20:43:21Z"}


SF_PASSWORD = "Planted-Pa55word!"
SF_SECURITY_TOKEN = "PlantedSecTok0a1b2c3d4e"


def _rsa_key_pair() -> tuple[str, bytes]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


def test_salesforce_logs_in_with_username_password_or_a_jwt_and_a_refused_login_stops(
        tmp_path: Path, sf: SalesforceServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    sf.objects["Account"] = [_account(i, T0 + i) for i in range(3)]
    sf.password, sf.security_token = SF_PASSWORD, SF_SECURITY_TOKEN
    private, sf.public_key_pem = _rsa_key_pair()
    sf.consumer_key = "3MVG9PlantedConsumerKey"
    login = {"login_url": sf.url, "username": sf.username}
    by_password = _one_source(tmp_path / "soap", "sf_accounts", "salesforce.accounts",
                              {**login, "password": SF_PASSWORD, "security_token": SF_SECURITY_TOKEN})
    record, _ = pull_source(by_password, 0, sleep=_no_wait)
    assert record.records == 3 and sf.requests[0] == f"POST /services/Soap/u/{SF_VERSION}?"
    assert sf.requests[1].startswith(f"GET /services/data/v{SF_VERSION}/queryAll")  # with the session id given
    sf.requests.clear()
    by_jwt = _one_source(tmp_path / "jwt", "sf_accounts", "salesforce.accounts",
                         {**login, "client_id": sf.consumer_key, "private_key": private.replace("\n", "\\n")})
    record, _ = pull_source(by_jwt, 0, sleep=_no_wait)
    assert record.records == 3 and sf.requests[0] == "POST /services/oauth2/token?"
    wrong = _one_source(tmp_path / "wrong", "sf_accounts", "salesforce.accounts",
                        {**login, "password": SF_PASSWORD, "security_token": "PlantedWrongToken99"})
    with pytest.raises(ConnectorAuthError) as caught:
        pull_source(wrong, 0, sleep=_no_wait)
    message = str(caught.value)
    assert caught.value.exit_code == ExitCode.BAD_INPUT and "\n" not in message
    assert message.startswith("source 'sf_accounts': authentication failed (login refused (INVALID_LOGIN")
    assert "check options.username, password and security_token" in message
    _, other = _rsa_key_pair()
    sf.public_key_pem = other  # the app holds another certificate
    with pytest.raises(ConnectorAuthError, match=r"invalid_grant: invalid assertion.*private_key"):
        pull_source(by_jwt, 0, sleep=_no_wait)
    for secret in (SF_PASSWORD, SF_SECURITY_TOKEN, "PlantedWrongToken99", SF_TOKEN, private.splitlines()[1]):
        assert secret not in caplog.text and secret not in message
    for path in tmp_path.rglob("*"):
        if path.is_file():
            text = path.read_bytes().decode("latin-1")
            assert SF_TOKEN not in text and SF_PASSWORD not in text and SF_SECURITY_TOKEN not in text


def test_salesforce_bulk_job_is_polled_and_read_by_locator(tmp_path: Path, sf: SalesforceServer) -> None:
    sf.objects["Account"] = [_account(i, T0 + i) for i in range(450)]
    sf.jobs_in_progress = 2
    sleeps = Sleeps()
    record, sink = pull_source(_sf_config(tmp_path, sf, bulk=True, page_size=200, bulk_poll_seconds=0.5),
                               0, sleep=sleeps)
    assert (record.records, sink.problems, sleeps) == (450, [], [0.5, 0.5])
    results = [r for r in sf.requests if "/results" in r]
    assert len(results) == 3 and "locator=400" in results[-1]
    rows = _rows(tmp_path / "pulls/accounts" / record.snapshot)
    assert rows["0015e0000000000001AAA"]["Provider_Count__c"] == "12"
    assert rows["0015e0000000000001AAA"]["Owner.Name"] == "ana"


def test_salesforce_empty_object_gives_an_empty_snapshot(tmp_path: Path, sf: SalesforceServer) -> None:
    sf.objects["Account"] = []
    sf.schema["Account"] = set(field_paths(_account(0, T0)))
    record, _ = pull_source(_sf_config(tmp_path, sf), 0, sleep=_no_wait)
    assert (record.records, record.cursor) == (0, {"SystemModstamp": None})
    again, _ = pull_source(_sf_config(tmp_path, sf), 0, sleep=_no_wait)
    assert again.records == 0


def test_salesforce_faults_retry_then_report_and_401_stops(tmp_path: Path, sf: SalesforceServer,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    sf.objects["Account"] = [_account(i, T0 + i) for i in range(3)]
    limit = json.dumps([{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}])
    sf.script("query", Fault(429, limit, {"Retry-After": "3"}), Fault(500, '[{"errorCode": "UNKNOWN_EXCEPTION"}]'),
              Fault(200, '{"totalSize": 3, "done": tr'))
    sleeps = Sleeps()
    record, _ = pull_source(_sf_config(tmp_path, sf), 0, sleep=sleeps)
    assert sleeps == [3.0, 2.0, 4.0] and record.records == 3
    sf.script("query", *[Fault(503, "Service Unavailable")] * 2)
    with pytest.raises(ConnectorError, match="gave up after 2 attempts"):
        pull_source(_sf_config(tmp_path, sf, attempts=2), 0, sleep=Sleeps())
    assert last_pull(tmp_path / "pulls/accounts") == record
    sf.script("query", Fault(403, limit))
    with pytest.raises(ConnectorError, match="API request limit exceeded"):
        pull_source(_sf_config(tmp_path, sf), 0, sleep=_no_wait)
    wrong = "00DPlantedOrg!WrongTokenNeverShown77"
    with pytest.raises(ConnectorAuthError, match=r"^source 'sf_accounts': authentication failed \(HTTP 401: "
                       r"INVALID_SESSION_ID") as info:
        pull_source(_sf_config(tmp_path, sf, access_token=wrong), 0, sleep=_no_wait)
    assert wrong not in str(info.value)
    assert SF_TOKEN not in caplog.text and wrong not in caplog.text


def test_salesforce_missing_field_is_quarantined_and_an_unknown_one_named(tmp_path: Path,
                                                                          sf: SalesforceServer) -> None:
    accounts = [_account(i, T0 + i) for i in range(3)]
    del accounts[1]["Name"]  # the answer lacks the field for this record
    accounts[2]["Status__c"] = "Dormant"
    sf.objects["Account"] = accounts
    cfg = _sf_config(tmp_path, sf)
    accepted, quarantined = _ingested(cfg, "crm_accounts")
    assert [a["account_id"] for a in accepted] == ["0015e0000000000000AAA"]
    assert (accepted[0]["seats"], accepted[0]["owner"], accepted[0]["status"]) == (12, "ana", "live")
    reasons = {q["column_name"]: q for q in quarantined}
    assert set(reasons) == {"name", "status"}
    assert reasons["name"]["source"] == "salesforce" and "pulls/accounts/snapshots/" in reasons["name"]["file"]
    assert reasons["name"]["reason"].startswith("record 0015e0000000000001AAA: ")
    assert "field 'Name' missing from the Account in the API answer" in reasons["name"]["reason"]
    assert reasons["status"]["reason"].startswith("record 0015e0000000000002AAA: ") and "Dormant" in \
        reasons["status"]["reason"]
    # A custom field renamed in Salesforce: the query is refused, naming the source and the field.
    for a in sf.objects["Account"]:
        a["Seats__c"] = a.pop("Provider_Count__c")
    with pytest.raises(ConnectorError, match=r"^source 'sf_accounts': the server refused running the SOQL query "
                       r"\(page 1\): HTTP 400: INVALID_FIELD: No such column 'Provider_Count__c' on entity "
                       r"'Account'"):
        pull_source(cfg, 0, sleep=_no_wait)


def test_salesforce_options_reject_what_is_not_an_api_name(tmp_path: Path) -> None:
    from tieout.errors import ConfigError
    from tieout.sources.connectors import connector_options

    cfg = _one_source(tmp_path, "sf_accounts", "salesforce.accounts",
                      {"instance_url": "https://acme.my.salesforce.com", "access_token": SF_TOKEN,
                       "fields": ["Name", "Seats__c FROM User --"]})
    with pytest.raises(ConfigError, match=r"sources\.0\.options\.fields.*'Seats__c FROM User --' is not a field "
                       r"API name"):
        connector_options(cfg, 0)


# --- HubSpot ----------------------------------------------------------------------------------------


@pytest.fixture
def hs() -> Iterator[HubSpotServer]:
    with hubspot_server(HS_TOKEN) as server:
        yield server


def _hs_config(tmp_path: Path, server: HubSpotServer, stream: str = "companies", **options: Any) -> Config:
    opts = {"access_token": HS_TOKEN, "api_base": server.url, **options}
    return _one_source(tmp_path, f"hs_{stream}", f"hubspot.{stream}", opts)


def test_hubspot_companies_list_then_search_on_hs_lastmodifieddate(tmp_path: Path, hs: HubSpotServer,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    hs.objects["companies"] = [hubspot_company(i, T0 + i, provider_count=str(i)) for i in range(7)]
    cfg = _hs_config(tmp_path, hs, page_size=3, properties=["provider_count"])
    first, sink = pull_source(cfg, 0, sleep=_no_wait)
    assert (first.records, sink.problems, first.cursor) == (7, [], {"hs_lastmodifieddate": "2026-05-28T20:26:46.000Z"})
    lists = [r for r in hs.requests if r.startswith("GET /crm/v3/objects/companies")]
    assert len(lists) == 3 and "after=6" in lists[-1] and "properties=provider_count" in lists[0]
    for i in (2, 5):
        hs.objects["companies"][i] = hubspot_company(i, T0 + 100 + i, lifecyclestage="other", provider_count="40")
    hs.requests.clear()
    monkeypatch.setattr("tieout.sources.hubspot.SEARCH_WINDOW", 3)  # the 10,000-result window, made small
    hs.search_window = 3
    second, _ = pull_source(cfg, 0, sleep=_no_wait)
    searches = [r for r in hs.requests if r.startswith("POST /crm/v3/objects/companies/search")]
    assert hs.requests[len(searches):] == [  # then the archived ones, which search never returns
        "GET /crm/v3/objects/companies?limit=3&properties=hs_object_id&archived=True"]
    assert (second.mode, second.pulled, second.records) == ("incremental", 3, 7)  # 6 (the cursor's), 2, 5
    rows = _rows(tmp_path / "pulls/companies" / second.snapshot)
    assert rows["9000000005"]["provider_count"] == "40" and rows["9000000005"]["lifecyclestage"] == "other"
    assert second.cursor == {"hs_lastmodifieddate": "2026-05-28T20:28:25.000Z"}
    # 7 objects past the cursor, 3 a page, a window of 3: each window restarts from the newest seen.
    hs.objects["companies"] = [hubspot_company(i, T0 + 200 + i) for i in range(7)]
    hs.requests.clear()
    third, _ = pull_source(cfg, 0, sleep=_no_wait)
    searches = [r for r in hs.requests if "/search" in r]
    assert (third.pulled, third.records) == (7, 7) and len(searches) == 3  # 0-2; 2-4 less 2; 4-6 less 4
    assert third.cursor == {"hs_lastmodifieddate": "2026-05-28T20:30:06.000Z"}


def test_hubspot_company_archived_between_incremental_pulls_leaves_the_next_run(tmp_path: Path,
                                                                               hs: HubSpotServer) -> None:
    hs.objects["companies"] = [hubspot_company(i, T0 + i) for i in range(4)]
    cfg = _hs_config(tmp_path, hs)
    first, _ = _ingested(cfg, "crm_accounts")
    assert sorted(r["account_id"] for r in first) == ["9000000000", "9000000001", "9000000002", "9000000003"]
    before = last_pull(tmp_path / "pulls/companies")
    hs.objects["companies"][1].update(archived=True, archivedAt=hs_time(T0 + 50))  # deleted: in the recycle bin
    hs.requests.clear()
    second, _ = _ingested(cfg, "crm_accounts")
    assert any(r.startswith("POST /crm/v3/objects/companies/search") for r in hs.requests)
    assert any("archived=true" in r.lower() for r in hs.requests)
    assert sorted(r["account_id"] for r in second) == ["9000000000", "9000000002", "9000000003"]
    after = last_pull(tmp_path / "pulls/companies")
    assert after is not None and (after.mode, after.deleted, after.records) == ("incremental", 1, 3)
    assert before is not None and pinned_ids(_hs_config(tmp_path, hs, snapshot=before.pull_id), "id") == [
        "9000000000", "9000000001", "9000000002", "9000000003"]  # the earlier snapshot still re-runs as it was


def test_hubspot_line_items_carry_their_deal_and_company(tmp_path: Path, hs: HubSpotServer) -> None:
    hs.objects["companies"] = [hubspot_company(i, T0) for i in range(2)]
    hs.objects["deals"] = [
        {"id": str(700 + i), "archived": False, "_companies": [str(9_000_000_000 + i)],
         "properties": {"dealname": f"Renewal {i}", "amount": "1200.50", "dealstage": "closedwon",
                        "hs_lastmodifieddate": hs_time(T0)}} for i in range(2)]
    hs.objects["line_items"] = [
        {"id": str(800 + i), "archived": False, "_deals": [str(700 + i % 2)],
         "properties": {"hs_sku": sku, "name": sku.title(), "quantity": "3", "price": "10.00", "hs_product_id": "11",
                        "createdate": hs_time(T0), "hs_lastmodifieddate": hs_time(T0 + i)}}
        for i, sku in enumerate(("PRO", "API", "ENT"))]
    hs.objects["line_items"].append({"id": "899", "archived": False, "properties": {
        "hs_sku": "TEAM", "name": "Team", "quantity": "1", "price": "5", "hs_product_id": "12",
        "createdate": hs_time(T0), "hs_lastmodifieddate": hs_time(T0 + 9)}})  # on no deal
    cfg = parse_config(f"""
sources:
  - {{name: hs_items, format: hubspot.line_items, path: pulls/items,
     options: {{access_token: "{HS_TOKEN}", api_base: "{hs.url}", page_size: 2}}}}
  - {{name: hs_deals, format: hubspot.deals, path: pulls/deals, table: subscriptions,
     options: {{access_token: "{HS_TOKEN}", api_base: "{hs.url}"}}}}
""", tmp_path / "tieout.yaml")
    items, sink = pull_source(cfg, 0, sleep=_no_wait)
    assert [(p.record, p.field) for p in sink.problems] == [("899", "company_id")]
    rows = _rows(tmp_path / "pulls/items" / items.snapshot)
    assert {k: (r["deal_id"], r["company_id"]) for k, r in rows.items()} == {
        "800": ("700", "9000000000"), "801": ("701", "9000000001"), "802": ("700", "9000000000"),
        "899": (None, None)}
    deals, deal_sink = pull_source(cfg, 1, sleep=_no_wait)
    assert {r["id"]: r["company_id"] for r in _rows(tmp_path / "pulls/deals" / deals.snapshot).values()} == {
        "700": "9000000000", "701": "9000000001"}
    assert {p.field for p in deal_sink.problems} == {"deal_currency_code", "pipeline", "closedate", "createdate"}
    rows_, quarantined = _ingested(cfg.model_copy(update={"sources": cfg.sources[:1]}), "crm_products")
    products = sorted((r["account_id"], r["sku"], r["status"]) for r in rows_)
    assert products == [("9000000000", "ENT", "active"), ("9000000000", "PRO", "active"),
                        ("9000000001", "API", "active")]
    assert [(q["column_name"], q["reason"]) for q in quarantined] == [
        ("account_id", "record 899: required value is empty (no company for the line item: it is on no deal)")]


def test_hubspot_empty_faults_and_401(tmp_path: Path, hs: HubSpotServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    hs.objects["companies"] = []
    empty, _ = pull_source(_hs_config(tmp_path, hs), 0, sleep=_no_wait)
    assert (empty.records, empty.cursor) == (0, {"hs_lastmodifieddate": None})
    hs.objects["companies"] = [hubspot_company(i, T0 + i) for i in range(2)]
    limit = json.dumps({"status": "error", "message": "You have reached your secondly limit.",
                        "errorType": "RATE_LIMIT", "correlationId": "c0ffee", "policyName": "SECONDLY"})
    hs.script("companies", Fault(429, limit, {"Retry-After": "3"}), Fault(502, "<html>Bad Gateway</html>"),
              Fault(200, '{"results": [{"id": "9'))
    sleeps = Sleeps()
    record, _ = pull_source(_hs_config(tmp_path, hs, full_refresh=True), 0, sleep=sleeps)
    assert sleeps == [3.0, 2.0, 4.0] and record.records == 2
    hs.script("companies", *[Fault(500, '{"status": "error", "message": "internal error"}')] * 2)
    with pytest.raises(ConnectorError, match=r"^source 'hs_companies': HTTP 500 \(internal error\) while .*gave up "
                       r"after 2 attempts"):
        pull_source(_hs_config(tmp_path, hs, attempts=2, full_refresh=True), 0, sleep=Sleeps())
    assert last_pull(tmp_path / "pulls/companies") == record
    wrong = "pat-na1-wrong-token-never-shown-4321"
    with pytest.raises(ConnectorAuthError, match=r"^source 'hs_companies': authentication failed \(HTTP 401: "
                       r"Authentication credentials not found") as info:
        pull_source(_hs_config(tmp_path, hs, access_token=wrong), 0, sleep=_no_wait)
    assert wrong not in str(info.value)
    assert HS_TOKEN not in caplog.text and wrong not in caplog.text


def test_hubspot_renamed_property_quarantines_naming_record_and_field(tmp_path: Path, hs: HubSpotServer) -> None:
    companies = [hubspot_company(i, T0 + i) for i in range(3)]
    companies[1]["properties"]["lifecycle_stage"] = companies[1]["properties"].pop("lifecyclestage")
    companies[2]["properties"]["lifecyclestage"] = "churned-ish"
    hs.objects["companies"] = companies
    accepted, quarantined = _ingested(_hs_config(tmp_path, hs), "crm_accounts")
    assert [(a["account_id"], a["status"], a["owner"]) for a in accepted] == [("9000000000", "live", "31207954")]
    assert [q["column_name"] for q in quarantined] == ["status", "status"]
    reasons = sorted(q["reason"] for q in quarantined)
    assert reasons[0].startswith("record 9000000001: required value is empty")
    assert "property 'lifecyclestage' missing from the company in the API answer" in reasons[0]
    assert reasons[1].startswith("record 9000000002: ") and "churned-ish" in reasons[1]


def test_sources_test_reaches_both_crms_and_fails_on_a_bad_token(tmp_path: Path, sf: SalesforceServer,
                                                                  hs: HubSpotServer,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    sf.objects["Account"] = [_account(i, T0 + i) for i in range(3)]
    hs.objects["companies"] = [hubspot_company(i, T0 + i) for i in range(2)]
    config = tmp_path / "tieout.yaml"
    config.write_text(f"""
sources:
  - {{name: sf_accounts, format: salesforce.accounts, path: pulls/sf,
     options: {{instance_url: "{sf.url}", access_token: "${{SF_TOKEN}}"}}}}
  - {{name: hs_companies, format: hubspot.companies, path: pulls/hs,
     options: {{access_token: "${{HS_TOKEN}}", api_base: "{hs.url}"}}}}
""", encoding="utf-8")
    monkeypatch.setenv("SF_TOKEN", SF_TOKEN)
    monkeypatch.setenv("HS_TOKEN", HS_TOKEN)
    monkeypatch.setenv("COLUMNS", "250")
    code, text = _cli("sources", "test", "-c", str(config))
    assert code == ExitCode.CLEAN, text
    assert "sf_accounts" in text and "hs_companies" in text and "FAILED" not in text
    assert not (tmp_path / "pulls").exists()  # a test pull leaves the cursors alone
    monkeypatch.setenv("HS_TOKEN", "pat-na1-revoked-token-000000000")
    code, text = _cli("sources", "test", "-c", str(config))
    assert code == ExitCode.BAD_INPUT and "authentication failed" in text and "hs_companies" in text
    assert "pat-na1-revoked-token-000000000" not in text and HS_TOKEN not in text


def _cli(*args: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = run_cli(list(args))
    return code, out.getvalue() + err.getvalue()


# --- end to end -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crm_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("crm-demo")
    generate_workspace(path, customers=150, seed=5)
    return path


def _crm_config(demo: Path, sources: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The demo's tieout.yaml reduced to what `crm_operations` reads (no gateway or ledger, the other
    checks off), its CRM sources replaced by `sources`."""
    cfg = yaml.safe_load(DEMO_CONFIG)
    kept = []
    for src in cfg["sources"]:
        if src["name"].startswith("stripe_") or src["name"] in ("ledger", "payments"):
            continue
        kept.append(sources.get(src["name"]) or {**src, "path": str(demo / src["path"])})
    cfg["sources"] = kept
    cfg["entities"]["alias_file"] = str(demo / cfg["entities"]["alias_file"])
    for check in ("gateway_billing", "billing_subscriptions", "gl_cash"):
        cfg["checks"][check] = {**(cfg["checks"].get(check) or {}), "enabled": False}
    return cfg


def _run(directory: Path, cfg: dict[str, Any]) -> Any:
    directory.mkdir()
    (directory / "tieout.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return run(load_config(directory / "tieout.yaml"))


@pytest.mark.e2e
def test_run_with_crm_from_salesforce_finds_what_the_csv_finds(crm_demo: Path, tmp_path: Path) -> None:
    """The demo's CSVs raise exactly its manifest's crm_operations defects (tests/test_demo.py); read
    from Salesforce, the CRM gives exactly those findings too (a second run on the CSVs would double
    this test's time for the same comparison)."""
    with salesforce_server(SF_TOKEN) as sf:
        sf.objects.update(demo_salesforce_objects(crm_demo))
        opts = {"instance_url": sf.url, "access_token": "${SALESFORCE_ACCESS_TOKEN}"}
        crm = {"crm_accounts": {"name": "crm_accounts", "format": "salesforce.accounts", "path": "pulls/sf_accounts",
                                "options": {**opts, "bulk": True}},
               "crm_products": {"name": "crm_products", "format": "salesforce.account_products",
                                "path": "pulls/sf_products",
                                "columns": {"account_id": "Account__c", "sku": "Product_Code__c",
                                            "status": "Status__c"},
                                "options": {**opts, "object": "Account_Product__c",
                                            "fields": ["Account__c", "Product_Code__c", "Status__c"]}}}
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("SALESFORCE_ACCESS_TOKEN", SF_TOKEN)
            pulled = _run(tmp_path / "connected", _crm_config(crm_demo, crm))
    manifest = json.loads((crm_demo / "manifest.json").read_text())
    expected = {(c, subject) for check, c, subject in manifest["expected"] if check == "crm_operations"}
    assert {"missing_from_billing", "missing_from_crm", "seat_count_mismatch", "status_mismatch",
            "go_live_mismatch", "product_mismatch"} <= {c for c, _ in expected}
    assert {(f.category, f.subject) for f in pulled.findings} == expected
    read = {c.table: c.read for c in pulled.counts if c.table.startswith("crm_")}
    assert read == {"crm_accounts": manifest["rows"]["crm_accounts.csv"],
                    "crm_products": manifest["rows"]["crm_products.csv"]}
    assert [q for q in pulled.quarantined if q.get("table_name", "").startswith("crm_")] == []


@pytest.mark.e2e
def test_run_with_crm_from_hubspot_finds_what_the_csv_finds(crm_demo: Path, tmp_path: Path) -> None:
    """The same comparison from HubSpot: companies with the export's fields as custom properties, line
    items on one deal per company. HubSpot names companies by its own ids, so a finding whose subject
    is a CRM account id (`crm:<id>`) names the company the export's account became."""
    objects, company_of = demo_hubspot_objects(crm_demo)
    with hubspot_server(HS_TOKEN) as hs:
        hs.objects.update(objects)
        opts = {"api_base": hs.url, "access_token": "${HUBSPOT_ACCESS_TOKEN}"}
        crm = {"crm_accounts": {"name": "crm_accounts", "format": "hubspot.companies", "path": "pulls/hs_companies",
                                "columns": {"customer_id": "billing_account_number", "status": "account_status",
                                            "go_live_date": "go_live_date", "seats": "provider_count"},
                                "options": {**opts, "properties": ["billing_account_number", "account_status",
                                                                   "go_live_date", "provider_count"]}},
               "crm_products": {"name": "crm_products", "format": "hubspot.line_items", "path": "pulls/hs_items",
                                "columns": {"status": "product_status"},
                                "options": {**opts, "properties": ["product_status"]}}}
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("HUBSPOT_ACCESS_TOKEN", HS_TOKEN)
            pulled = _run(tmp_path / "connected", _crm_config(crm_demo, crm))
    manifest = json.loads((crm_demo / "manifest.json").read_text())
    expected = {(c, "crm:" + company_of[subject[4:]] if subject.startswith("crm:") else subject)
                for check, c, subject in manifest["expected"] if check == "crm_operations"}
    assert any(subject.startswith("crm:") for _, subject in expected)
    assert {(f.category, f.subject) for f in pulled.findings} == expected
    read = {c.table: c.read for c in pulled.counts if c.table.startswith("crm_")}
    assert read == {"crm_accounts": manifest["rows"]["crm_accounts.csv"],
                    "crm_products": manifest["rows"]["crm_products.csv"]}
    assert [q for q in pulled.quarantined if q.get("table_name", "").startswith("crm_")] == []

"""The accounting connectors against local servers speaking their documented JSON: QuickBooks Online
(plain REST: query endpoint, GeneralLedger report, OAuth2 refresh) and Xero (the official SDK aimed at
the local server). Pagination, empty pages, faults, bad records, incremental pulls, and the demo's
ledger served by the QuickBooks API giving `gl_cash` the findings the CSV export gives."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import duckdb
import pytest
import yaml

from tieout.config import Config, load_config, parse_config
from tieout.pipeline import run
from tieout.sources.connectors import pull_source
from tieout.sources.retry import ConnectorAuthError, ConnectorError
from tieout.sources.snapshots import last_pull
from tieout.sources.xero import ms_date

from .ledger_servers import (
    CLIENT_ID,
    CLIENT_SECRET,
    QBO_REALM,
    XERO_TENANT,
    Fault,
    GlEntry,
    QuickBooksServer,
    XeroServer,
    general_ledger_report,
    gl_entries_from_export,
    qbo_deposit,
    qbo_journal_entry,
    qbo_payment,
    quickbooks_server,
    xero_bank_transaction,
    xero_manual_journal,
    xero_payment,
    xero_server,
)
from .vendor_servers import ingested, pinned_ids

QBO_TOKEN = "eyJQboPlantedAccessToken.0000000000000000"
XERO_TOKEN = "eyJXeroPlantedAccessToken.000000000000000"


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def _no_wait(seconds: float) -> None:
    raise AssertionError(f"unexpected retry (wait {seconds}s)")


def _rows(path: Path) -> list[dict[str, Any]]:
    return duckdb.sql(f"SELECT * FROM read_parquet('{path}')").to_arrow_table().to_pylist()


def _config(tmp_path: Path, fmt: str, options: dict[str, Any], name: str = "books") -> Config:
    return parse_config(f"""
sources:
  - name: {name}
    format: {fmt}
    path: pulls/{name}
    options: {json.dumps(options)}
""", tmp_path / "tieout.yaml")


# --- QuickBooks Online ---------------------------------------------------------------------------------------


@pytest.fixture
def qbo() -> Iterator[QuickBooksServer]:
    with quickbooks_server(QBO_TOKEN) as server:
        yield server


def _qbo_options(server: QuickBooksServer, **more: Any) -> dict[str, Any]:
    return {"realm_id": QBO_REALM, "api_base": server.url, "token_url": server.token_url, "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET, "refresh_token": server.refresh_token, **more}


def test_qbo_payments_page_through_the_query_endpoint_and_pull_incrementally(
        tmp_path: Path, qbo: QuickBooksServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    qbo.objects["Payment"] = [qbo_payment(str(i), "2026-07-0" + str(i), f"2026-07-0{i}T10:00:00-07:00", f"{i}00.10")
                              for i in range(1, 6)]
    cfg = _config(tmp_path, "quickbooks_api.payments", _qbo_options(qbo, page_size=2))
    first, _ = pull_source(cfg, 0, sleep=_no_wait)
    assert first.records == 5 and first.cursor["last_updated"] == "2026-07-05T10:00:00-07:00"
    assert [q.split("startposition+")[1].split("+")[0] for q in qbo.requests] == ["1", "3", "5"]
    assert qbo.token_requests == 1
    qbo.objects["Payment"][0] = qbo_payment("1", "2026-07-01", "2026-07-06T08:00:00-07:00", "99.99")
    qbo.requests.clear()
    second, _ = pull_source(cfg, 0, sleep=_no_wait)
    queries = [unquote_plus(r) for r in qbo.requests if "/query?" in r]
    assert "where MetaData.LastUpdatedTime >= '2026-07-05T10:00:00-07:00' orderby" in queries[0]
    assert second.mode == "incremental" and second.pulled == 2 and second.records == 5
    rows = {r["id"]: r for r in _rows(tmp_path / "pulls/books" / second.snapshot)}
    assert rows["1"]["total_amt"] == "99.99" and rows["2"]["total_amt"] == "200.10"  # exact decimal text
    for secret in (QBO_TOKEN, CLIENT_SECRET, qbo.refresh_token):
        assert secret not in caplog.text


def test_qbo_payment_deleted_between_incremental_pulls_leaves_the_next_run(tmp_path: Path,
                                                                          qbo: QuickBooksServer) -> None:
    from datetime import UTC, datetime, timedelta

    qbo.objects["Payment"] = [qbo_payment(str(i), "2026-07-0" + str(i), f"2026-07-0{i}T10:00:00-07:00", f"{i}0.00")
                              for i in range(1, 4)]
    cfg = _config(tmp_path, "quickbooks_api.payments", _qbo_options(qbo))
    first, _ = ingested(cfg)
    assert sorted(r["payment_id"] for r in first["payments"]) == ["1", "2", "3"]
    before = last_pull(tmp_path / "pulls/books")
    assert before is not None and before.cursor["checked_at"]  # the server's time of the full pull
    # Deleted in QuickBooks after that pull (stamped by the server's clock, as CDC reports it).
    qbo.objects["Payment"][1]["_deleted"] = True
    qbo.objects["Payment"][1]["MetaData"]["LastUpdatedTime"] = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    qbo.requests.clear()
    second, _ = ingested(cfg)
    cdc = [unquote_plus(r) for r in qbo.requests if "/cdc?" in r]
    assert len(cdc) == 1 and f"changedSince={before.cursor['checked_at']}" in cdc[0] and "entities=Payment" in cdc[0]
    assert sorted(r["payment_id"] for r in second["payments"]) == ["1", "3"]
    after = last_pull(tmp_path / "pulls/books")
    assert after is not None and (after.mode, after.deleted, after.records) == ("incremental", 1, 2)
    pinned = _config(tmp_path, "quickbooks_api.payments", _qbo_options(qbo, snapshot=before.pull_id))
    assert pinned_ids(pinned, "id") == ["1", "2", "3"]  # the earlier snapshot re-runs as it was


def test_qbo_empty_answer_and_exact_page_end(tmp_path: Path, qbo: QuickBooksServer) -> None:
    cfg = _config(tmp_path, "quickbooks_api.payments", _qbo_options(qbo, page_size=2))
    record, _ = pull_source(cfg, 0, sleep=_no_wait)
    assert record.records == 0 and len(qbo.requests) == 1 and record.cursor["last_updated"] is None
    qbo.objects["Payment"] = [qbo_payment(str(i), "2026-07-01", f"2026-07-01T1{i}:00:00Z", "5.00") for i in range(4)]
    qbo.requests.clear()
    record, _ = pull_source(_config(tmp_path, "quickbooks_api.payments", _qbo_options(qbo, page_size=2,
                                                                                      full_refresh=True)), 0)
    assert record.records == 4 and len(qbo.requests) == 3  # the third page comes back empty: QueryResponse {}


def test_qbo_faults_retry_then_succeed_and_401_stops_naming_the_source(tmp_path: Path, qbo: QuickBooksServer) -> None:
    qbo.objects["Payment"] = [qbo_payment("1", "2026-07-01", "2026-07-01T10:00:00Z", "10.00")]
    throttle = json.dumps({"Fault": {"Error": [{"Message": "message=ThrottleExceeded", "code": "003001"}],
                                     "type": "SERVICE"}})
    qbo.script("Payment", Fault(429, throttle, {"Retry-After": "3"}), Fault(500, "<html>oops</html>"),
               Fault(200, '{"QueryResponse": {"Payment": ['))
    sleeps = Sleeps()
    record, _ = pull_source(_config(tmp_path, "quickbooks_api.payments", _qbo_options(qbo)), 0, sleep=sleeps)
    assert sleeps == [3.0, 2.0, 4.0] and record.records == 1
    qbo.script("Payment", *[Fault(503, "unavailable")] * 2)
    with pytest.raises(ConnectorError, match="gave up after 2 attempts"):
        pull_source(_config(tmp_path, "quickbooks_api.payments", _qbo_options(qbo, attempts=2)), 0, sleep=Sleeps())
    assert last_pull(tmp_path / "pulls/books") == record  # the cursor did not move
    wrong = "eyJWrongPlantedToken.111111111111"
    bad = _config(tmp_path, "quickbooks_api.payments", {"realm_id": QBO_REALM, "api_base": qbo.url,
                                                        "access_token": wrong})
    with pytest.raises(ConnectorAuthError, match=r"^source 'books': authentication failed \(HTTP 401") as info:
        pull_source(bad, 0, sleep=_no_wait)
    assert wrong not in str(info.value) and "AuthenticationFailed" in str(info.value)
    revoked = _config(tmp_path, "quickbooks_api.payments", _qbo_options(qbo, refresh_token="AB11revoked0000000"))
    with pytest.raises(ConnectorAuthError, match="refreshing the OAuth2 access token"):
        pull_source(revoked, 0, sleep=_no_wait)


def test_qbo_bad_records_are_quarantined_naming_record_and_field(tmp_path: Path, qbo: QuickBooksServer) -> None:
    renamed = qbo_payment("2", "2026-07-02", "2026-07-02T10:00:00Z", "20.00")
    renamed["TotalAmount"] = renamed.pop("TotalAmt")
    qbo.objects["Payment"] = [
        qbo_payment("1", "2026-07-01", "2026-07-01T10:00:00Z", "1250.50", invoice="INV-7"), renamed,
        qbo_payment("3", "2026-07-03", "2026-07-03T10:00:00Z", "30.00", method="Bitcoin"),
        qbo_payment("4", "2026-07-04T10:00:00 PST", "2026-07-04T10:00:00Z", "40.00"),
        qbo_payment("5", "2026-07-05", "2026-07-05T10:00:00Z", "50.00", method=None)]
    tables, quarantined = ingested(_config(tmp_path, "quickbooks_api.payments", _qbo_options(qbo)))
    payments = {p["payment_id"]: p for p in tables["payments"]}
    assert sorted(payments) == ["1", "5"]
    assert (payments["1"]["amount"], payments["1"]["method"], payments["1"]["invoice_id"]) == (125050, "card", "INV-7")
    assert payments["5"]["method"] == "other" and payments["1"]["gateway_ref"] == "ch_1"
    why = {q["column_name"]: q["reason"] for q in quarantined}
    assert why["amount"].startswith("record 2: required value is empty") and "'TotalAmt' missing" in why["amount"]
    assert why["method"].startswith("record 3: unknown value 'Bitcoin'")
    assert why["received_at"].startswith("record 4: '2026-07-04T10:00:00 PST' is not a date/time")


def test_qbo_report_deposits_and_journals_become_ledger_lines(tmp_path: Path, qbo: QuickBooksServer) -> None:
    qbo.report = general_ledger_report([
        GlEntry("Checking", "2026-07-03", "Deposit", "145", "", "", "Stripe payout", Decimal("2250.00")),
        GlEntry("Undeposited Funds", "2026-07-03", "Deposit", "145", "", "", "Stripe payout", Decimal("-2250.00")),
        GlEntry("Sales", "2026-07-04", "Journal Entry", "227", "JE-9", "", "Adjustment", Decimal("-120.00")),
        GlEntry("Checking EUR", "2026-07-05", "Deposit", "146", "", "", "EUR payout", Decimal("10.05"))],
        "2026-07-01", "2026-09-30")
    qbo.objects["Deposit"] = [qbo_deposit("77", "2026-07-03", "2026-07-03T10:00:00Z", "Checking", ["1000.00", "250.00"],
                                          fee=("Merchant Fees", "36.55"))]
    qbo.objects["JournalEntry"] = [qbo_journal_entry("227", "2026-07-04", "2026-07-04T10:00:00Z",
                                                     [("Debit", "Sales", "120.00"), ("Credit", "Checking", "120.00"),
                                                      ("Dr", "Sales", "1.00")])]
    opts = {"start_date": "2026-07-01", "end_date": "2026-09-30", "account_currencies": {"Checking EUR": "EUR"}}
    text = "sources:\n" + "".join(
        f"  - {{name: {n}, format: quickbooks_api.{n}, path: pulls/{n}, "
        f"options: {json.dumps(_qbo_options(qbo, **o))}}}\n"
        for n, o in (("general_ledger", opts), ("deposits", {}), ("journal_entries", {})))
    tables, quarantined = ingested(parse_config(text, tmp_path / "tieout.yaml"))
    lines = sorted((r["source_ref"].split("/")[1], str(r["posted_at"]), r["account"], r["debit"], r["credit"],
                    r["currency"], r["journal_type"]) for r in tables["gl_entries"])
    assert [x[1:] for x in lines if x[0] == "general_ledger"] == [
        ("2026-07-03", "Checking", 225000, None, "USD", "system"),
        ("2026-07-03", "Undeposited Funds", None, 225000, "USD", "system"),
        ("2026-07-04", "Sales", None, 12000, "USD", "manual"),
        ("2026-07-05", "Checking EUR", 1005, None, "EUR", "system")]
    assert sorted(x[2:5] for x in lines if x[0] == "deposits") == [
        ("Checking", 121345, None), ("Merchant Fees", 3655, None), ("Undeposited Funds", None, 25000),
        ("Undeposited Funds", None, 100000)]
    assert sorted(x[2:5] for x in lines if x[0] == "journal_entries") == [("Checking", None, 12000),
                                                                         ("Sales", 12000, None)]
    assert [q["column_name"] for q in quarantined] == ["debit"]
    assert quarantined[0]["reason"].startswith("record 227: '1.00 (Dr)' is not a number")
    assert "unknown PostingType 'Dr'" in quarantined[0]["reason"]
    assert qbo.report_params[0] == {"start_date": "2026-07-01", "end_date": "2026-09-30", "minorversion": "75"}


def test_qbo_report_with_a_renamed_column_quarantines_every_line(tmp_path: Path, qbo: QuickBooksServer) -> None:
    entry = GlEntry("Checking", "2026-07-03", "Deposit", "145", "", "", "m", Decimal("5.00"))
    qbo.report = general_ledger_report([entry], "2026-07-01", "2026-07-31", rename={"tx_date": "date"})
    qbo.report["Columns"]["Column"][0]["ColTitle"] = "Txn Date"
    tables, quarantined = ingested(_config(tmp_path, "quickbooks_api.general_ledger", _qbo_options(qbo)))
    assert tables["gl_entries"] == [] and len(quarantined) == 1
    q = quarantined[0]
    assert q["column_name"] == "posted_at" and q["reason"].startswith("record Deposit:145:Checking:1: required")
    assert "column 'tx_date' missing from the GeneralLedger report" in q["reason"]


# --- Xero ---------------------------------------------------------------------------------------------------


@pytest.fixture
def xero() -> Iterator[XeroServer]:
    with xero_server(XERO_TOKEN) as server:
        yield server


def _xero_options(server: XeroServer, **more: Any) -> dict[str, Any]:
    return {"tenant_id": XERO_TENANT, "api_base": server.api_base, "access_token": XERO_TOKEN, **more}


def test_ms_json_dates() -> None:
    assert ms_date("/Date(1476316800000+0000)/", with_time=False) == "2016-10-13"
    assert ms_date("/Date(1476389616437+0000)/", with_time=True) == "2016-10-13T20:13:36.437000Z"
    assert ms_date("/Date(1476316800000-0500)/", with_time=False) == "2016-10-12"
    assert ms_date("13 Oct 2016 PST", with_time=False) == "13 Oct 2016 PST"  # left for normalization to reject


def test_xero_bank_transactions_page_and_pull_incrementally(tmp_path: Path, xero: XeroServer) -> None:
    base = 1_780_000_000_000
    xero.objects["BankTransactions"] = [
        xero_bank_transaction(f"bt-{i}", "2026-07-0" + str(i), base + i * 1000, f"{i}0.25") for i in range(1, 6)]
    cfg = _config(tmp_path, "xero.bank_transactions", _xero_options(xero, page_size=2))
    first, _ = pull_source(cfg, 0, sleep=_no_wait)
    assert first.records == 10 and first.pulled == 10  # bank line + one line item each
    assert [r.split("page=")[1].split("&")[0] for r in xero.requests] == ["1", "2", "3"]
    assert first.cursor == {"updated": "2026-05-28T20:26:45Z"} and xero.modified_since == [None] * 3
    xero.objects["BankTransactions"][0] = xero_bank_transaction("bt-1", "2026-07-01", base + 9000, "0",
                                                                status="DELETED")
    xero.objects["BankTransactions"][1] = xero_bank_transaction("bt-2", "2026-07-02", base + 9000, "99.99")
    xero.requests.clear()
    xero.modified_since.clear()
    second, _ = pull_source(cfg, 0, sleep=_no_wait)
    assert xero.modified_since[0] is not None and xero.modified_since[0].startswith("2026-05-28T20:26:45")
    rows = _rows(tmp_path / "pulls/books" / second.snapshot)
    assert second.mode == "incremental" and second.records == 8
    assert {r["txn_id"] for r in rows} == {"bt-2", "bt-3", "bt-4", "bt-5"}
    assert [r["debit"] for r in rows if r["entry_id"] == "bt-2:0"] == ["99.99"]


def test_xero_faults_retry_then_succeed_and_401_stops(tmp_path: Path, xero: XeroServer,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    xero.objects["Payments"] = [xero_payment("p-1", "2026-07-01", 1_780_000_000_000, "46.00")]
    xero.script("Payments", Fault(429, '{"Title": "Too Many Requests"}', {"Retry-After": "7"}),
                Fault(500, '{"Title": "An error occurred"}'), Fault(200, '{"Payments": [{"PaymentID": '))
    sleeps = Sleeps()
    record, _ = pull_source(_config(tmp_path, "xero.payments", _xero_options(xero)), 0, sleep=sleeps)
    assert sleeps == [7.0, 2.0, 4.0] and record.records == 1
    empty, _ = pull_source(_config(tmp_path, "xero.bank_transactions", _xero_options(xero), name="bank"), 0)
    assert empty.records == 0
    wrong = "eyJWrongXeroToken.2222222222222"
    with pytest.raises(ConnectorAuthError, match=r"^source 'books': authentication failed \(HTTP 401: "
                                                 r"Unauthorized\) while listing Payments") as info:
        pull_source(_config(tmp_path, "xero.payments", _xero_options(xero, access_token=wrong)), 0, sleep=_no_wait)
    assert wrong not in str(info.value)
    refreshed = _xero_options(xero, access_token=None, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                              refresh_token=xero.refresh_token, token_url=xero.token_url, full_refresh=True)
    again, _ = pull_source(_config(tmp_path, "xero.payments", refreshed), 0, sleep=_no_wait)
    assert again.records == 1
    revoked = {**refreshed, "refresh_token": "xeroRevoked000000000000"}
    with pytest.raises(ConnectorAuthError, match=r"\(HTTP 400: the token endpoint refused .*\) while refreshing"):
        pull_source(_config(tmp_path, "xero.payments", revoked), 0, sleep=_no_wait)
    assert "source 'books': HTTP 429 (Too Many Requests) while listing Payments (page 1); retry 1 in 7s" in caplog.text
    for secret in (XERO_TOKEN, wrong, CLIENT_SECRET, xero.refresh_token, xero.refresh_token + "x"):
        assert secret not in caplog.text


def test_xero_records_map_onto_the_ledger_and_bad_ones_are_quarantined(tmp_path: Path, xero: XeroServer) -> None:
    base = 1_780_000_000_000
    missing = xero_bank_transaction("bt-3", "2026-07-03", base, "5.00")
    del missing["Total"]
    xero.objects["BankTransactions"] = [
        xero_bank_transaction("bt-1", "2026-07-01", base, "1213.45", lines=[("200", "1250.00"), ("404", "-36.55")]),
        xero_bank_transaction("bt-2", "2026-07-02", base, "10.00", kind="RECEIVE-BITCOIN"), missing,
        xero_bank_transaction("bt-4", "2026-07-04", base, "99.00", kind="SPEND", lines=[("429", "99.00")])]
    xero.objects["ManualJournals"] = [
        xero_manual_journal("mj-1", "2026-07-05", base, [("200", "-120.00"), ("610", "120.00")]),
        xero_manual_journal("mj-2", "2026-07-06", base, [("200", "-5.00"), ("610", "5.00")], status="DRAFT")]
    xero.objects["Payments"] = [xero_payment("p-1", "2026-07-01", base, "46.00"),
                                xero_payment("p-2", "2026-07-02", base, "2.00", kind="ARCREDITPAYMENT"),
                                xero_payment("p-3", "2026-07-02", base, "9.00", kind="ACCPAYPAYMENT"),
                                xero_payment("p-4", "2026-07-02", base, "9.00", kind="ARMYSTERYPAYMENT")]
    names = {"200": "Sales", "404": "Merchant Fees", "610": "Accounts Receivable (A/R)", "429": "General Expenses"}
    text = "sources:\n" + "".join(
        f"  - {{name: {n}, format: xero.{n}, path: pulls/{n}, "
        f"options: {json.dumps(_xero_options(xero, account_names=names))}}}\n"
        for n in ("bank_transactions", "manual_journals", "payments"))
    tables, quarantined = ingested(parse_config(text, tmp_path / "tieout.yaml"))
    gl = sorted((r["entry_id"], str(r["posted_at"]), r["account"], r["debit"], r["credit"], r["journal_type"])
                for r in tables["gl_entries"])
    assert gl == [
        ("bt-1:0", "2026-07-01", "Business Wells Fargo", 121345, None, "system"),
        ("bt-1:1", "2026-07-01", "Sales", None, 125000, "system"),
        ("bt-1:2", "2026-07-01", "Merchant Fees", 3655, None, "system"),
        ("bt-4:0", "2026-07-04", "Business Wells Fargo", None, 9900, "system"),
        ("bt-4:1", "2026-07-04", "General Expenses", 9900, None, "system"),
        ("mj-1:1", "2026-07-05", "Sales", None, 12000, "manual"),
        ("mj-1:2", "2026-07-05", "Accounts Receivable (A/R)", 12000, None, "manual")]
    payments = {p["payment_id"]: (p["type"], p["amount"], p["currency"], p["invoice_id"], str(p["received_at"])[:10])
                for p in tables["payments"]}
    assert payments == {"p-1": ("payment", 4600, "NZD", "INV-0002", "2026-07-01"),
                        "p-2": ("refund", 200, "NZD", "INV-0002", "2026-07-02")}
    why = sorted((q["column_name"], q["reason"]) for q in quarantined)
    assert [w[0] for w in why] == ["debit", "debit", "journal_type", "journal_type", "type"]
    assert why[0][1] == ("record bt-3: '<missing Total>' is not a number (field 'Total' missing from the bank "
                         "transaction in the API answer)")
    assert why[2][1].startswith("record bt-2: unknown value 'RECEIVE-BITCOIN' (expected one of manual, system)")
    assert "(unknown bank transaction Type 'RECEIVE-BITCOIN')" in why[2][1]
    assert why[4][1].startswith("record p-4: unknown value 'ARMYSTERYPAYMENT'")


# --- the ledger from the connector gives the file ledger's gl_cash findings --------------------------------------


@pytest.mark.e2e
def test_demo_ledger_from_the_quickbooks_api_gives_the_file_findings(
        tmp_path_factory: pytest.TempPathFactory, qbo: QuickBooksServer) -> None:
    from tieout.checks.registry import CHECKS
    from tieout.demo import generate_workspace

    path = tmp_path_factory.mktemp("ledger-demo")
    generate_workspace(path, customers=120, seed=5)
    cfg = yaml.safe_load((path / "tieout.yaml").read_text(encoding="utf-8"))
    keep = {"stripe_balance", "stripe_payouts", "ledger", "invoices", "payments"}
    cfg["sources"] = [s for s in cfg["sources"] if s["name"] in keep]
    cfg["checks"] = {**{k: {"enabled": False} for k in CHECKS if k != "gl_cash"}, "gl_cash": cfg["checks"]["gl_cash"]}
    cfg.pop("entities", None)
    (path / "files.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    qbo.report = general_ledger_report(gl_entries_from_export(path / "data/quickbooks_gl.csv"),
                                       "2026-07-01", "2026-09-30")
    ledger = next(s for s in cfg["sources"] if s["name"] == "ledger")
    ledger.update(format="quickbooks_api.general_ledger", path="pulls/ledger", options={
        **ledger["options"], "realm_id": QBO_REALM, "api_base": qbo.url, "access_token": QBO_TOKEN,
        "start_date": "2026-07-01", "end_date": "2026-09-30"})
    cfg["store"] = "sqlite:///api.db"
    (path / "api.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")

    def found(name: str) -> set[tuple[Any, ...]]:
        result = run(load_config(path / name))
        return {(f.check, f.category, f.subject, f.currency, f.amount_at_risk, f.expected, f.actual, f.period)
                for f in result.findings}

    files, api = found("files.yaml"), found("api.yaml")
    manifest = json.loads((path / "manifest.json").read_text())
    injected = {(c, k, s) for c, k, s in manifest["expected"] if c == "gl_cash"}
    assert {(c, k, s) for c, k, s, *_ in files} == injected and len(injected) >= 3
    assert api == files

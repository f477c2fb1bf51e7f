"""End to end: the demo's Stripe data served by a local Stripe API and its billing tables by
PostgreSQL give `tieout run` the same findings as the demo's files; `tieout sources test`; and a
planted secret appears in no output, file or store."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tieout.cli import run_cli
from tieout.config import load_config
from tieout.demo import DEMO_CONFIG
from tieout.errors import ExitCode
from tieout.pipeline import run

from .conftest import DemoRun, _demo
from .postgres import PostgresServer
from .vendor_servers import StripeServer, demo_stripe_objects, load_csv_into_postgres, stripe_server

STRIPE_KEY = "sk_test_51PlantedE2eKeyNeverShown9f8e7d6c"
DB_PASSWORD = "Pw-planted-3b9c1e77"
BILLING_TABLES = ("customers", "subscriptions", "invoices", "invoice_lines", "payments")
KEYS = {"customers": ["customer_id"], "subscriptions": ["subscription_id"], "invoices": ["Invoice.InvoiceNumber"],
        "invoice_lines": ["invoice_id", "line_id"], "payments": ["payment_id"]}


@dataclass
class ConnectedDemo:
    demo: DemoRun
    stripe: StripeServer
    db_url: str
    workspace: Path


def connector_config(demo: Path, stripe_url: str, db_url: str) -> dict[str, Any]:
    """The demo's tieout.yaml with Stripe read through the API and billing from PostgreSQL; credentials
    as `${...}` references (environment and secrets file), never literal."""
    cfg = yaml.safe_load(DEMO_CONFIG)
    cfg["store"] = "sqlite:///tieout.db"
    cfg["secrets_file"] = "secrets.env"
    url = db_url.replace("://tieout@", "://tieout:${BILLING_DB_PASSWORD}@")
    stripe_opts = {"api_key": "${STRIPE_API_KEY}", "api_base": stripe_url, "metadata_keys": ["invoice_number"]}
    sources = []
    for src in cfg["sources"]:
        name = src["name"]
        if name in BILLING_TABLES:
            src = {k: v for k, v in src.items() if k != "format"}
            src.update(format="sql", path=f"pulls/{name}", options={"url": url, "from_table": name, "key": KEYS[name]})
        elif name == "stripe_balance":
            src = {"name": name, "format": "stripe_api.balance_transactions", "path": "pulls/stripe_balance",
                   "columns": {"invoice_ref": "payment_metadata[invoice_number]"}, "options": stripe_opts}
        elif name == "stripe_failed_payments":
            src = {"name": name, "format": "stripe_api.failed_charges", "path": "pulls/stripe_failed",
                   "columns": {"invoice_ref": "metadata[invoice_number]"}, "options": stripe_opts}
        elif name == "stripe_payouts":
            src = {"name": name, "format": "stripe_api.payouts", "path": "pulls/stripe_payouts",
                   "options": stripe_opts}
        else:
            src = {**src, "path": str(demo / src["path"])}
        sources.append(src)
    cfg["sources"] = sources
    entities = cfg.get("entities") or {}
    if entities.get("alias_file"):
        entities["alias_file"] = str(demo / entities["alias_file"])
    return cfg


@pytest.fixture(scope="module")
def connected(postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConnectedDemo]:
    demo_run = _demo(tmp_path_factory, customers=300, seed=11)  # small: the run is repeated over connectors
    db_url = postgres.create_database()
    for table in BILLING_TABLES:
        load_csv_into_postgres(db_url, table, demo_run.path / "data" / f"{table}.csv")
    workspace = tmp_path_factory.mktemp("connected-demo")
    with stripe_server(STRIPE_KEY) as stripe:
        stripe.objects.update(demo_stripe_objects(demo_run.path))
        config = connector_config(demo_run.path, stripe.url, db_url)
        (workspace / "tieout.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        (workspace / "secrets.env").write_text(f"# billing database\nBILLING_DB_PASSWORD={DB_PASSWORD}\n",
                                               encoding="utf-8")
        old = os.environ.get("STRIPE_API_KEY")
        os.environ["STRIPE_API_KEY"] = STRIPE_KEY
        try:
            yield ConnectedDemo(demo_run, stripe, db_url, workspace)
        finally:
            if old is None:
                os.environ.pop("STRIPE_API_KEY", None)
            else:
                os.environ["STRIPE_API_KEY"] = old


def _finding_keys(findings: Any) -> set[tuple[Any, ...]]:
    return {(f.finding_id, f.check, f.category, f.subject, f.customer_id, f.currency, f.amount_at_risk, f.expected,
             f.actual, f.period) for f in findings}


def _cli(*args: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "250"  # tables unwrapped, so names can be searched
    try:
        with redirect_stdout(out), redirect_stderr(err):
            code = run_cli(list(args))
    finally:
        if old is None:
            os.environ.pop("COLUMNS")
        else:
            os.environ["COLUMNS"] = old
    return code, out.getvalue() + err.getvalue()


@pytest.mark.e2e
def test_run_on_connectors_finds_what_the_files_find(connected: ConnectedDemo) -> None:
    cfg = load_config(connected.workspace / "tieout.yaml")
    result = run(cfg)
    files = connected.demo.result
    assert _finding_keys(result.findings) == _finding_keys(files.findings)
    assert len(result.findings) > 20
    by_source = {}
    for c in result.counts:
        by_source[c.table] = by_source.get(c.table, 0) + c.read
    assert by_source == {t: n for t, n in
                         ((c.table, sum(x.read for x in files.counts if x.table == c.table)) for c in files.counts)}
    assert len(result.quarantined) == len(files.quarantined)
    inputs = {i["source"]: i for i in json.loads(_last_run_inputs(cfg.store_url())) if "source" in i}
    assert inputs["stripe_balance"]["snapshot"] in inputs["stripe_balance"]["file"]
    assert inputs["stripe_balance"]["pull_mode"] == "full" and len(inputs["payments"]["sha256"]) == 64


def _last_run_inputs(url: str) -> str:
    from tieout.store import Store

    store = Store(url)
    try:
        last = store.last_run()
        assert last is not None
        return last.inputs
    finally:
        store.close()


@pytest.mark.e2e
def test_sources_test_reports_every_source_and_fails_with_exit_2(connected: ConnectedDemo) -> None:
    config = str(connected.workspace / "tieout.yaml")
    code, text = _cli("sources", "test", "-c", config)
    assert code == ExitCode.CLEAN, text
    for name in ("stripe_balance", "stripe_failed_payments", "customers", "ledger"):
        assert name in text
    assert "FAILED" not in text and "created_at 2026-07-01" in text
    os.environ["STRIPE_API_KEY"] = "sk_test_revoked_key_000000000000"
    try:
        code, text = _cli("sources", "test", "stripe_payouts", "customers", "-c", config)
    finally:
        os.environ["STRIPE_API_KEY"] = STRIPE_KEY
    assert code == ExitCode.BAD_INPUT
    assert "FAILED" in text and "authentication failed" in text and "stripe_payouts" in text
    assert "1 source(s) failed: stripe_payouts" in " ".join(text.split())


@pytest.mark.e2e
def test_a_planted_secret_appears_in_no_output(connected: ConnectedDemo, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    ws = connected.workspace
    config = str(ws / "tieout.yaml")
    outputs = []
    # a fault on the way, so retry warnings are logged too
    from .vendor_servers import Fault

    connected.stripe.script("payouts", Fault(429, '{"error": {"type": "rate_limit_error"}}', {"Retry-After": "0"}))
    for args in (["run", "-c", config, "--fail-on", "never"], ["sources", "pull", "-c", config],
                 ["findings", "export", "-o", str(ws / "findings.csv"), "-c", config], ["quarantine", "-c", config]):
        code, text = _cli(*args)
        assert code in (ExitCode.CLEAN, ExitCode.FINDINGS), (args, text)
        outputs.append(text)
    cursor = json.loads((ws / "pulls/stripe_balance/cursor.json").read_text())
    assert cursor["mode"] == "incremental" and cursor["records"] > 0  # `sources pull` after the run
    os.environ["STRIPE_API_KEY"] = "sk_test_wrong_but_planted_key_1234"
    try:
        code, text = _cli("--debug", "run", "-c", config)
    finally:
        os.environ["STRIPE_API_KEY"] = STRIPE_KEY
    assert code == ExitCode.BAD_INPUT and "authentication failed" in text
    outputs.append(text)
    outputs.append(caplog.text)
    for path in ws.rglob("*"):
        if path.is_file() and path.name != "secrets.env":
            outputs.append(path.read_bytes().decode("latin-1"))
    secrets = (STRIPE_KEY, DB_PASSWORD, "sk_test_wrong_but_planted_key_1234")
    leaks = [(s, i) for i, text in enumerate(outputs) for s in secrets if s in text]
    assert leaks == []
    assert len(outputs) > 15 and any("tieout.db" in str(p) for p in ws.rglob("*"))


def test_planted_oauth_credentials_appear_in_no_output(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The shared OAuth options (client id and secret, refresh token, the access token it gives) and the
    Salesforce login's (password, security token, the session id it gives), planted through `${...}`:
    `sources pull`, `sources test` and a refused login with --debug leave them in no output, log or file."""
    from .crm_servers import salesforce_server, salesforce_template, stamp
    from .ledger_servers import CLIENT_ID, CLIENT_SECRET, QBO_REALM, qbo_payment, quickbooks_server

    caplog.set_level("DEBUG")
    planted = {"QBO_CLIENT_ID": CLIENT_ID, "QBO_CLIENT_SECRET": CLIENT_SECRET,
               "SF_PASSWORD": "Planted-SfPassword-77", "SF_SECURITY_TOKEN": "PlantedSfToken0011"}
    with quickbooks_server("eyJPlantedQboAccess.000000000000") as qbo, \
            salesforce_server("00DPlanted!SessionFromLogin0000") as sf:
        qbo.objects["Payment"] = [qbo_payment("1", "2026-07-01", "2026-07-01T10:00:00Z", "10.00")]
        account = salesforce_template("Account")
        account.update(Id="0015e0000000000001AAA", IsDeleted=False, SystemModstamp=stamp(1_780_000_000),
                       Name="Acme Dental Inc.", Owner={"attributes": {"type": "User"}, "Name": "ana"},
                       Billing_Account_Number__c="C00001", Status__c="Live", Go_Live_Date__c="2026-07-01",
                       Provider_Count__c=12.0)
        sf.objects["Account"] = [account]
        sf.password, sf.security_token = planted["SF_PASSWORD"], planted["SF_SECURITY_TOKEN"]
        planted["QBO_REFRESH_TOKEN"] = qbo.refresh_token
        cfg = {"secrets_file": "secrets.env", "sources": [
            {"name": "books", "format": "quickbooks_api.payments", "path": "pulls/books", "options": {
                "realm_id": QBO_REALM, "api_base": qbo.url, "token_url": qbo.token_url, "client_id": "${QBO_CLIENT_ID}",
                "client_secret": "${QBO_CLIENT_SECRET}", "refresh_token": "${QBO_REFRESH_TOKEN}"}},
            {"name": "crm_accounts", "format": "salesforce.accounts", "path": "pulls/crm", "options": {
                "login_url": sf.url, "username": sf.username, "password": "${SF_PASSWORD}",
                "security_token": "${SF_SECURITY_TOKEN}"}}]}
        (tmp_path / "tieout.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
        (tmp_path / "secrets.env").write_text("".join(f"{k}={v}\n" for k, v in planted.items()), encoding="utf-8")
        config = str(tmp_path / "tieout.yaml")
        outputs = []
        for args in (["sources", "pull", "-c", config], ["sources", "test", "-c", config]):
            code, text = _cli(*args)
            assert code == ExitCode.CLEAN, (args, text)
            outputs.append(text)
        sf.password = "Changed-By-Admin-99"  # the planted password is now refused
        code, text = _cli("--debug", "sources", "pull", "crm_accounts", "-c", config)
        assert code == ExitCode.BAD_INPUT and "INVALID_LOGIN" in text and "security_token" in text
        outputs.append(text)
    outputs.append(caplog.text)
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.name != "secrets.env":
            outputs.append(path.read_bytes().decode("latin-1"))
    secrets = (*planted.values(), "eyJPlantedQboAccess.000000000000", "00DPlanted!SessionFromLogin0000")
    leaks = [(s, i) for i, text in enumerate(outputs) for s in secrets if s in text]
    assert leaks == [] and len(outputs) > 6

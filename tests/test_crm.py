"""CRM ↔ billing ↔ operations ↔ entitlements: the link review flow end to end through the CLI on a
small hand-written workspace, bad input quarantined, no false merge in the demo, trends across periods."""

from __future__ import annotations

import csv
import io
import json
import re
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from tieout.cli import run_cli
from tieout.config import load_config
from tieout.links import run_links
from tieout.pipeline import run
from tieout.reports.monthly import trends
from tieout.store import Store

from .conftest import DemoRun
from .postgres import PostgresServer


def cli(*args: str | Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = run_cli([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(autouse=True)
def _wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")


def _csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


CUSTOMERS = [["C1", "Acme Corp"], ["C2", "Acme Labs"], ["C3", "Globex International Ltd"],
             ["C4", "Initech Healthcare Partners LLC"], ["C5", "Vandelay Industries Inc."]]
CRM = [["S1", "ACME Corporation, Inc.", "live", "2025-01-10", 5],
       ["S2", "Acme Labs", "live", "2025-01-10", 5],
       ["S3", "Globex Intl", "live", "2025-01-10", 5],
       ["S4", "Initech Healthcare Partners Group", "live", "2025-01-10", 5],  # an extra word: review
       ["S5", "Vandelay Industires", "live", "2025-01-10", 5],  # a typo: fuzzy
       ["S9", "Acme Lab", "prospect", "", ""]]  # a prospect with a look-alike name


def small_workspace(root: Path, as_of: str = "2026-09-30", seats_c5: int = 5, crm: list[list[object]] | None = None
                    ) -> Path:
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    _csv(data / "customers.csv", ["customer_id", "name"], CUSTOMERS)
    _csv(data / "subscriptions.csv", ["subscription_id", "customer_id", "sku", "quantity", "unit_amount", "currency",
                                      "interval", "start_date", "status"],
         [[f"SUB-{c}", c, "PRO", seats_c5 if c == "C5" else 5, "49.00", "USD", "month", "2025-01-10", "active"]
          for c, _ in CUSTOMERS])
    _csv(data / "crm_accounts.csv", ["account_id", "name", "status", "go_live_date", "seats"], crm or CRM)
    (root / "tieout.yaml").write_text(f"""\
store: sqlite:///tieout.db
as_of: {as_of}
sources:
  - {{name: customers, format: csv, path: data/customers.csv, table: customers, system: billing}}
  - {{name: subscriptions, format: csv, path: data/subscriptions.csv, table: subscriptions, system: billing}}
  - {{name: crm, format: csv, path: data/crm_accounts.csv, table: crm_accounts, system: crm}}
""", encoding="utf-8")
    return root / "tieout.yaml"


def _ids(text: str) -> list[str]:
    return re.findall(r"\bL[0-9a-f]{11}\b", text)


def test_link_review_flow_end_to_end_through_the_cli(tmp_path: Path) -> None:
    config = small_workspace(tmp_path)
    code, out, err = cli("run", "-c", config, "--fail-on", "never")
    assert code == 0, err
    store = Store(load_config(config).store_url())
    try:
        first = {(f.category, f.subject) for f in store.findings()}
        links = {r.account_id: (r.customer_id, r.method) for r in run_links(store)}
    finally:
        store.close()
    # The uncertain pair is not merged: both sides are reported until a person decides.
    assert first == {("missing_from_crm", "C4"), ("missing_from_billing", "crm:S4")}
    assert links["S1"] == ("C1", "exact_name") and links["S2"] == ("C2", "exact_name")
    assert links["S3"] == ("C3", "exact_name") and links["S5"] == ("C5", "fuzzy")
    assert "S4" not in links and "S9" not in links

    code, out, _ = cli("links", "review", "-c", config)
    assert code == 0
    rows = {_ids(line)[0]: line for line in out.splitlines() if _ids(line)}
    s4 = next(cid for cid, line in rows.items() if " S4 " in line and " C4 " in line)
    s9 = [cid for cid, line in rows.items() if " S9 " in line]
    assert s9, out  # the prospect's look-alike is proposed, not linked

    code, out, _ = cli("links", "confirm", s4[:8], "-c", config, "--by", "ana", "--note", "same company")
    assert code == 0 and "confirmed" in out
    for cid in s9:
        assert cli("links", "reject", cid, "-c", config, "--by", "ana")[0] == 0

    code, out, err = cli("run", "-c", config, "--fail-on", "low")
    assert code == 0, out + err  # the confirmed link ends both findings
    code, out, _ = cli("links", "list", "-c", config, "--method", "confirmed")
    assert "S4" in out and "C4" in out and "confirmed" in out
    code, out, _ = cli("links", "review", "-c", config)
    assert _ids(out) == []  # decided candidates leave the queue...
    code, out, _ = cli("links", "review", "-c", config, "--status", "rejected")
    assert sorted(_ids(out)) == sorted(s9)  # ...and the rejection is remembered
    store = Store(load_config(config).store_url())
    try:
        assert {f.status for f in store.findings(status=None)} == {"closed"}
    finally:
        store.close()


def test_deciding_an_unknown_candidate_is_a_clear_error(tmp_path: Path) -> None:
    config = small_workspace(tmp_path)
    code, _, err = cli("links", "confirm", "Lnothere", "-c", config)
    assert code == 2
    assert err.splitlines()[0] == "no link candidate with id 'Lnothere' (see `tieout links review`)"


def test_bad_crm_rows_are_quarantined_with_their_reason(tmp_path: Path) -> None:
    crm = [*CRM,
           ["S1", "Acme Corp duplicate", "live", "2025-01-10", 5],  # duplicate id within the CRM
           ["S6", "", "live", "2025-01-10", 5],  # empty name
           ["S7", "Hooli", "live", "2025-01-10", "forty"],  # a count that is not a number
           ["S8", "Wonka", "live", "31.09.2026", 5]]  # a date in an unknown format
    config = small_workspace(tmp_path, crm=crm)
    result = run(load_config(config))
    q = {(r["line"], r["column_name"]): r["reason"] for r in result.quarantined if r["file"] == "data/crm_accounts.csv"}
    assert set(q) == {(8, "account_id"), (9, "name"), (10, "seats"), (11, "go_live_date")}, q
    assert "duplicate account_id 'S1'" in q[(8, "account_id")]
    assert "'forty' is not" in q[(10, "seats")]
    assert "'31.09.2026' is not a date" in q[(11, "go_live_date")]
    counts = next(c for c in result.counts if c.file == "data/crm_accounts.csv")
    assert (counts.read, counts.accepted, counts.quarantined) == (10, 6, 4)


def test_bad_alias_file_is_a_clear_config_error(tmp_path: Path) -> None:
    config = small_workspace(tmp_path)
    config.write_text(config.read_text() + "entities:\n  alias_file: data/aliases.csv\n", encoding="utf-8")
    (tmp_path / "data" / "aliases.csv").write_text("legacy,current\nKramerica,Vandelay\n", encoding="utf-8")
    code, _, err = cli("run", "-c", config)
    assert code == 2
    assert err.splitlines()[0].startswith("aliases.csv:1: alias file needs the columns alias,name")


def test_trends_count_new_recurring_and_resolved_across_periods(tmp_path: Path) -> None:
    config = small_workspace(tmp_path, as_of="2026-08-31", seats_c5=5)
    run(load_config(config))  # August: S4 unresolved -> missing_from_crm C4, missing_from_billing crm:S4
    small_workspace(tmp_path, as_of="2026-09-30", seats_c5=8)  # September: C5 bills 8 seats, the CRM sold 5
    run(load_config(config))
    crm_fixed = [r if r[0] != "S4" else ["S4", "Initech Healthcare Partners LLC", "live", "2025-01-10", 5]
                 for r in CRM]
    small_workspace(tmp_path, as_of="2026-10-31", seats_c5=8, crm=crm_fixed)  # October: S4 renamed, links
    run(load_config(config))
    store = Store(load_config(config).store_url())
    try:
        rows = {(t.period, t.label): (t.new, t.recurring, t.resolved) for t in trends(store)}
    finally:
        store.close()
    assert rows[("2026-08", "Missing from CRM")] == (1, 0, 0)
    assert rows[("2026-09", "Missing from CRM")] == (0, 1, 0)
    assert rows[("2026-09", "Billing mismatch")] == (1, 0, 0)
    assert rows[("2026-10", "Missing from CRM")] == (0, 0, 1)
    assert rows[("2026-10", "Billing mismatch")] == (0, 1, 0)


def test_demo_links_every_crm_account_to_its_own_customer(demo_run: DemoRun) -> None:
    """No false merge: the demo's CRM ids encode their customer (0015g…0025AAA or the billing
    record's crm id 001A…25 are customer C00025), so every link can be checked."""
    store = Store(load_config(demo_run.path / "tieout.yaml").store_url())
    try:
        links = [r for r in run_links(store) if r.system == "crm"]
    finally:
        store.close()
    methods = {r.method for r in links}
    assert {"mapped_id", "exact_name", "fuzzy", "alias"} <= methods
    for r in links:
        assert int(re.sub(r"\D", "", r.account_id[4:]).lstrip("0") or "0") == int(r.customer_id[1:]), r
    lookalikes = demo_run.manifest_json["lookalikes"]
    assert lookalikes["similar names of distinct customers, not merged"] >= 4
    with (demo_run.path / "data" / "customers.csv").open(encoding="utf-8") as fh:
        names = {r["customer_id"]: r["name"] for r in csv.DictReader(fh)}
    labs = [c for c, n in names.items() if n.endswith("Labs Inc.")]
    linked = {r.customer_id for r in links}
    assert labs and set(labs) <= linked


def test_demo_crm_findings_show_every_system_side_by_side(demo_run: DemoRun) -> None:
    mine = [f for f in demo_run.result.findings if f.check == "crm_operations"]
    assert {f.category for f in mine} == set(json.loads(json.dumps(
        [c for chk, c, _ in demo_run.expected if chk == "crm_operations"])))
    seats = [f for f in mine if f.category in ("underbilled", "overbilled", "seat_count_mismatch")]
    for f in seats:
        assert "CRM " in f.explanation and "billing " in f.explanation and "operations " in f.explanation
        assert f.expected and f.actual and f.amount_at_risk > 0


def test_review_decisions_persist_in_postgresql(postgres: PostgresServer) -> None:
    from datetime import UTC, datetime

    from tieout.entities import Candidate, Resolution
    from tieout.links import candidates, decide, decisions, write_resolution
    from tieout.store import RunRecord

    def run_proposing(res: Resolution) -> None:  # a run writes its links inside its own transaction
        store.record_run(RunRecord(
            started_at=datetime.now(UTC), config_hash="x", tieout_version="test", inputs=[], rule_versions={},
            as_of="2026-09-30", findings=[], checks_run=[], quarantine=[], metrics=[], counts={}, timings={},
            also=[lambda s, run_id: write_resolution(s, run_id, res)]))

    store = Store(postgres.create_database())
    try:
        queue = [Candidate("crm", "S4", "Initech Group", "C4", "Initech LLC", 88.0, "a word differs"),
                 Candidate("crm", "S9", "Acme Lab", "C2", "Acme Labs", 87.5, "not similar enough")]
        run_proposing(Resolution(review=queue))
        pending = {c.account_id: c.candidate_id for c in candidates(store)}
        decide(store, pending["S4"], "confirmed", "ana", "same company")
        decide(store, pending["S9"], "rejected", "ana")
        run_proposing(Resolution(review=queue))  # proposed again: decisions stay
        d = decisions(store)
        assert d.confirmed == [("crm", "S4", "C4")] and d.rejected == [("crm", "S9", "C2")]
        assert candidates(store) == []
        assert [c.decided_by for c in candidates(store, "confirmed")] == ["ana"]
    finally:
        store.close()

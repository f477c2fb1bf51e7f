"""The finding lifecycle on SQLite and PostgreSQL: who/when/why on every transition, illegal ones
refused with nothing written, reopen on reappearance, waivers with expiry, closing what is gone,
and the CLI commands and the bulk spreadsheet import on top of it."""

from __future__ import annotations

import csv
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from openpyxl import load_workbook
from sqlalchemy import update

from tieout.cli import run_cli
from tieout.config import load_config
from tieout.lifecycle import ACTIONS, RESOLUTIONS, STATUSES, Change, LifecycleError
from tieout.store import FindingRow, Store

from .test_cli import _plain_wide_console, cli, write_workspace  # noqa: F401  (autouse fixture)
from .test_store import finding, record


def test_every_transition_records_who_when_and_why(store: Store) -> None:
    a, b = finding("A", 5000), finding("B", 700)
    record(store, [a, b])
    store.apply([Change(a.finding_id, "ack", "looking")], "ann")
    store.apply([Change(a.finding_id, "assign", "yours", owner="bob", team="billing-ops")], "ann")
    store.apply([Change(a.finding_id, "comment", "credit note drafted")], "bob")
    store.apply([Change(a.finding_id, "resolve", "CN-12 issued", resolution="credit_note")], "bob")
    store.apply([Change(b.finding_id, "waive", "contractual rounding", until=date(2099, 1, 1))], "cat")
    row = store.finding(a.finding_id)
    assert (row.status, row.owner, row.team, row.resolution) == ("resolved", "bob", "billing-ops", "credit_note")
    history = [(e.actor, e.action, e.from_status, e.to_status, e.note) for e in store.events(a.finding_id)]
    assert history == [
        ("tieout", "found", None, "open", "priority low"),
        ("ann", "ack", "open", "acknowledged", "looking"),
        ("ann", "assign", "acknowledged", "assigned", "yours"),
        ("bob", "comment", "assigned", "assigned", "credit note drafted"),
        ("bob", "resolve", "assigned", "resolved", "CN-12 issued"),
    ]
    assert all(e.at is not None for e in store.events(a.finding_id))
    assert store.finding(b.finding_id).waived_until == date(2099, 1, 1)
    kinds = [(e.kind, e.actor) for e in store.audit_entries()][3:]
    assert kinds == [("transition", "ann"), ("transition", "ann"), ("comment", "bob"), ("transition", "bob"),
                     ("transition", "cat")]


@pytest.mark.parametrize(("status", "action", "kw", "message"), [
    ("closed", "resolve", {"resolution": "write_off"}, "cannot resolve finding {id}: it is closed"),
    ("resolved", "ack", {}, "cannot ack finding {id}: it is resolved"),
    ("open", "reopen", {}, "cannot reopen finding {id}: it is open"),
    ("open", "resolve", {"resolution": "shrug"}, "resolution 'shrug' is not one of fixed_in_source"),
    ("open", "resolve", {}, "resolution none is not one of"),
    ("open", "waive", {}, "a reason is required"),
    ("open", "assign", {}, "no owner given"),
    ("open", "ack", {"until": date(2030, 1, 1)}, "an expiry date applies only to waive"),
])
def test_illegal_changes_are_refused_and_nothing_is_written(store: Store, status: str, action: str,
                                                            kw: dict[str, object], message: str) -> None:
    a, b = finding("A"), finding("B")
    record(store, [a, b])
    with store.engine.begin() as conn:
        conn.execute(update(FindingRow).where(FindingRow.finding_id == a.finding_id).values(status=status))
    audit = store.audit_entries()
    good = Change(b.finding_id, "ack", "fine")
    with pytest.raises(LifecycleError) as err:
        store.apply([good, Change(a.finding_id, action, "", **kw)], "ann")  # type: ignore[arg-type]
    assert message.format(id=a.finding_id) in str(err.value)
    assert str(err.value).splitlines()[0].endswith("nothing was changed")
    assert store.finding(b.finding_id).status == "open"  # the valid change in the same batch was not applied
    assert store.audit_entries() == audit
    assert [e.action for e in store.events(b.finding_id)] == ["found"]


def test_unknown_ids_are_reported_together(store: Store) -> None:
    record(store, [finding("A")])
    with pytest.raises(LifecycleError) as err:
        store.apply([Change("Fnope", "ack"), Change("Fzilch", "ack")], "ann")
    lines = str(err.value).splitlines()
    assert lines[0] == "change 1: no finding with id 'Fnope' (1 more below); nothing was changed"
    assert lines[1] == "change 2: no finding with id 'Fzilch'"


def test_found_again_reopened_and_no_longer_present_closed(store: Store) -> None:
    a, b, c = finding("A"), finding("B"), finding("C")
    record(store, [a, b, c])
    store.apply([Change(a.finding_id, "resolve", "fixed", resolution="fixed_in_source"),
                 Change(b.finding_id, "waive", "accepted")], "ann")
    second = record(store, [a, b])  # A is back, B is waived (no expiry), C is gone
    assert second.lifecycle == {"new": 0, "seen_again": 1, "reopened": 1, "no_longer_present": 1, "escalated": 0}
    ra, rb, rc = (store.finding(f.finding_id) for f in (a, b, c))
    assert (ra.status, ra.resolution) == ("open", None)
    assert store.events(a.finding_id)[-1].note == "reopened: found again after resolved"
    assert rb.status == "waived"
    assert (rc.status, store.events(c.finding_id)[-1].note) == ("closed", "no longer present")
    third = record(store, [c])  # C reappears; A gone again; only findings of checks that ran are closed
    assert third.lifecycle["reopened"] == 1 and third.lifecycle["no_longer_present"] == 1
    assert store.finding(c.finding_id).status == "open"
    assert store.finding(b.finding_id).status == "waived"  # not active: not closed, kept as waived


def test_an_expired_waiver_reopens_when_found_again(store: Store) -> None:
    a = finding("A")
    record(store, [a])
    store.apply([Change(a.finding_id, "waive", "until quarter end", until=date.today() - timedelta(days=1))], "ann")
    out = record(store, [a])
    assert out.lifecycle["reopened"] == 1
    assert store.events(a.finding_id)[-1].note == "reopened: waiver expired"
    assert store.finding(a.finding_id).waived_until is None


def test_manual_reopen_clears_the_resolution(store: Store) -> None:
    a = finding("A")
    record(store, [a])
    store.apply([Change(a.finding_id, "resolve", "oops", resolution="false_positive")], "ann")
    store.apply([Change(a.finding_id, "reopen", "it is real")], "bob")
    row = store.finding(a.finding_id)
    assert (row.status, row.resolution) == ("open", None)


def test_the_registry_is_consistent() -> None:
    for action in ACTIONS.values():
        assert set(action.applies_to) <= set(STATUSES)
        assert action.to_status is None or action.to_status in STATUSES
    assert set(RESOLUTIONS) == {"fixed_in_source", "credit_note", "write_off", "false_positive"}


# --- the CLI -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ran_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = write_workspace(tmp_path_factory.mktemp("lifecycle") / "ws")
    assert run_cli(["run", "-c", str(config), "--fail-on", "never"]) == 0
    return config.parent


@pytest.fixture
def ws(ran_once: Path, tmp_path: Path) -> Path:
    """A workspace after one run (a copy, so each test starts from the same store)."""
    shutil.copytree(ran_once, tmp_path / "ws")
    return tmp_path / "ws" / "tieout.yaml"


def _ids(config: Path) -> dict[str, str]:
    store = Store(load_config(config).store_url())
    try:
        return {r.category: r.finding_id for r in store.findings()}
    finally:
        store.close()


def test_cli_lifecycle_commands(ws: Path) -> None:
    ids = _ids(ws)
    pay, price = ids["payment_unmatched"], ids["price_mismatch"]
    r = cli("findings", "assign", pay[:8], "--owner", "bob", "--team", "billing-ops", "-m", "big one",
            "--actor", "ann", "-c", ws)
    assert r.code == 0, r.err
    assert "ann: assign: open -> assigned  (big one)" in r.out
    assert cli("findings", "ack", pay, "--actor", "bob", "-c", ws).code == 0
    assert cli("findings", "comment", pay, "-m", "asked finance", "--actor", "bob", "-c", ws).code == 0
    r = cli("findings", "resolve", pay, "--resolution", "fixed_in_source", "-m", "posted PAY-9", "--actor", "bob",
            "-c", ws)
    assert r.code == 0, r.err
    r = cli("findings", "waive", price, "-m", "grandfathered price", "--until", "2099-12-31", "-c", ws)
    assert r.code == 0, r.err
    listed = cli("findings", "list", "--status", "all", "--owner", "bob", "-c", ws)
    assert pay in listed.out and price not in listed.out and "resolved" in listed.out
    assert price in cli("findings", "list", "--status", "waived", "-c", ws).out
    show = cli("findings", "show", pay, "-c", ws)
    assert "bob: resolve: acknowledged -> resolved  (posted PAY-9)" in show.out
    assert "resolution    fixed_in_source" in show.out
    assert cli("findings", "reopen", pay, "-m", "came back", "-c", ws).code == 0
    assert "open" in cli("findings", "list", "--owner", "bob", "-c", ws).out
    assert cli("audit", "verify", "-c", ws).code == 0


def test_cli_bad_input_exits_2_with_one_clear_line_and_writes_nothing(ws: Path) -> None:
    pay = _ids(ws)["payment_unmatched"]
    before = cli("audit", "export", "-o", ws.parent / "a.json", "-c", ws).out
    r = cli("findings", "ack", "Fnope", "-c", ws)
    assert (r.code, r.err.splitlines()[0]) == (2, "no finding with id 'Fnope'; nothing was changed")
    r = cli("findings", "reopen", pay, "-c", ws)
    assert r.code == 2
    assert r.err.splitlines()[0] == (f"cannot reopen finding {pay}: it is open (reopen applies to resolved, waived, "
                                     "closed findings); nothing was changed")
    r = cli("findings", "resolve", pay, "--resolution", "magic", "-c", ws)
    assert r.code == 2 and "resolution 'magic' is not one of" in r.err
    assert cli("findings", "list", "--status", "nonsense", "-c", ws).code == 2
    assert cli("audit", "export", "-o", ws.parent / "a.json", "-c", ws).out == before  # same count


def _export(config: Path, fmt: str) -> Path:
    path = config.parent / f"queue.{fmt}"
    assert cli("findings", "export", "-o", path, "--format", fmt, "-c", config).code == 0
    return path


def test_bulk_edit_through_a_csv_export(ws: Path) -> None:
    ids = _ids(ws)
    path = _export(ws, "csv")
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        if row["finding_id"] == ids["payment_unmatched"]:
            row["owner"] = "dana"
        else:
            row["status"] = "waived"
    fields = [*rows[0].keys(), "note"]
    rows = [{**r, "note": "bulk triage"} for r in rows]
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    dry = cli("findings", "import", path, "--dry-run", "-c", ws)
    assert dry.code == 0 and "2 changes valid (dry run: nothing written)" in dry.out
    assert ids["payment_unmatched"] not in cli("findings", "list", "--owner", "dana", "-c", ws).out
    r = cli("findings", "import", path, "--actor", "ann", "-c", ws)
    assert r.code == 0, r.err
    store = Store(load_config(ws).store_url())
    try:
        assert (store.finding(ids["payment_unmatched"]).status, store.finding(ids["payment_unmatched"]).owner) == \
            ("assigned", "dana")
        assert store.finding(ids["price_mismatch"]).status == "waived"
        assert {e.payload for e in store.audit_entries() if e.kind == "transition" and e.actor == "ann"}
        assert all('"source":"import queue.csv"' in e.payload for e in store.audit_entries() if e.actor == "ann")
    finally:
        store.close()


def test_bulk_import_from_xlsx_reports_every_bad_row_and_applies_nothing(ws: Path) -> None:
    ids = _ids(ws)
    path = _export(ws, "xlsx")
    wb = load_workbook(path)
    sheet = wb.active
    assert sheet is not None
    header = [c.value for c in sheet[1]]
    col = {name: header.index(name) + 1 for name in ("finding_id", "status", "owner")}
    sheet.cell(2, col["owner"], "erin")  # a fine change
    sheet.cell(3, col["status"], "resolved")  # no resolution column: refused
    sheet.cell(4, col["finding_id"], "Fghost")  # an unknown id
    sheet.cell(4, col["status"], "acknowledged")
    wb.save(path)
    r = cli("findings", "import", path, "-c", ws)
    assert r.code == 2
    lines = r.err.splitlines()
    assert lines[0].startswith("queue.xlsx:3: cannot resolve finding ") and lines[0].endswith(
        "(1 more below); nothing was changed")
    assert lines[1] == "queue.xlsx:4: no finding with id 'Fghost'"
    store = Store(load_config(ws).store_url())
    try:
        assert {store.finding(i).owner for i in ids.values()} == {None}
        assert all(e.kind == "run" or e.actor == "tieout" for e in store.audit_entries())
    finally:
        store.close()


def test_findings_show_has_the_customers_other_findings(ws: Path) -> None:
    pay = _ids(ws)["price_mismatch"]
    out = cli("findings", "show", pay, "-c", ws).out
    assert "priority      low (below every tier)" in out
    assert "Customer C2: 0 other findings" in out


def test_age_filter_and_priority_filter(ws: Path) -> None:
    store = Store(load_config(ws).store_url())
    try:
        ids = _ids(ws)
        with store.engine.begin() as conn:
            conn.execute(update(FindingRow).where(FindingRow.finding_id == ids["price_mismatch"])
                         .values(first_seen_at=datetime.now(UTC) - timedelta(days=9)))
    finally:
        store.close()
    old = cli("findings", "list", "--older-than", "7", "-c", ws).out
    assert ids["price_mismatch"] in old and ids["payment_unmatched"] not in old
    medium = cli("findings", "list", "--priority", "medium", "-c", ws).out
    assert ids["payment_unmatched"] in medium and ids["price_mismatch"] not in medium


# --- metrics over time and prevented leakage -------------------------------------------------------


def test_metrics_trend_and_prevented_leakage(tmp_path: Path) -> None:
    from tieout.findings import Evidence

    config = tmp_path / "tieout.yaml"
    config.write_text("store: sqlite:///m.db\n")
    s = Store(f"sqlite:///{tmp_path / 'm.db'}")

    def metric(period: str, value: str) -> dict[str, str]:
        return {"period": period, "currency": "USD", "name": "invoiced", "value": value, "unit": "minor"}

    def invoice(status: str, issued_at: str | None) -> Evidence:
        return Evidence("invoices", "INV", "billing", "invoices.csv:2", {"status": status, "issued_at": issued_at})

    try:
        draft, sent, later = finding("DRAFT", 40_000), finding("SENT", 7_000), finding("LATER", 2_500)
        draft.evidence, sent.evidence = [invoice("draft", None)], [invoice("open", "2026-07-01 00:00:00")]
        later.evidence = [invoice("open", "2999-01-01 00:00:00")]
        from tieout.store import RunRecord
        base = dict(config_hash="c", tieout_version="t", inputs=[], rule_versions={}, as_of="2026-07-31",
                    checks_run=["chk"], quarantine=[], counts={}, timings={})
        s.record_run(RunRecord(started_at=datetime.now(UTC), findings=[draft, sent, later],
                               metrics=[metric("2026-06", "100"), metric("2026-07", "5000")], **base))  # type: ignore[arg-type]
        s.record_run(RunRecord(started_at=datetime.now(UTC), findings=[draft, sent, later],
                               metrics=[metric("2026-07", "6000"), metric("2026-08", "700")], **base))  # type: ignore[arg-type]
        s.apply([Change(f.finding_id, "resolve", "caught in review", resolution="fixed_in_source")
                 for f in (draft, sent, later)], "ann")
        assert s.prevented_leakage("2026-07") == {("2026-07", "USD"): 42_500}  # the draft and the not yet sent
    finally:
        s.close()
    r = cli("metrics", "--since", "2026-07-01", "-c", config)
    assert r.code == 0, r.err
    lines = {line.split("│")[1].strip(): line for line in r.out.splitlines() if line.count("│") >= 3}
    assert "2026-06" not in r.out and "2026-07" in r.out and "2026-08" in r.out
    assert "USD 60.00" in lines["invoiced"] and "USD 7.00" in lines["invoiced"]  # the latest run's values
    assert "USD 425.00" in lines["prevented_leakage"]
    assert "no metrics stored" in cli("metrics", "--currency", "EUR", "-c", config).out


def test_findings_show_timeline_of_the_customer_across_systems(ws: Path) -> None:
    price = _ids(ws)["price_mismatch"]
    r = cli("findings", "show", price, "--timeline", "-c", ws)
    assert r.code == 0, r.err
    part = r.out[r.out.index("Timeline of customer C2 across systems (3 records)"):]
    assert part.index("INV-2") < part.index("ch_2") < part.index("PAY-2")  # oldest first, then by table
    assert "INV-1" not in part and "PAY-1" not in part and "ch_3" not in part

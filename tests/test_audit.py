"""The audit log is a hash chain: every run, transition, comment and notification is in it, and
`tieout audit verify` names the first entry that was edited, deleted or moved — tested by
tampering with the rows directly in the database (SQLite and PostgreSQL)."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import pytest
from sqlalchemy import delete, update

from tieout.audit import GENESIS, entry_hash, verify_chain
from tieout.lifecycle import Change
from tieout.store import AuditRow, Store

from .test_cli import _plain_wide_console, cli  # noqa: F401  (autouse fixture)
from .test_store import finding, record


def _history(store: Store) -> None:
    """Ten entries: a run finding three, three changes, a second run."""
    a, b, c = finding("A"), finding("B"), finding("C")
    record(store, [a, b, c])
    store.apply([Change(a.finding_id, "ack", "seen")], "ann")
    store.apply([Change(b.finding_id, "comment", "asked AR")], "bob")
    store.apply([Change(c.finding_id, "resolve", "fixed", resolution="fixed_in_source")], "bob")
    record(store, [a, b])


def test_the_log_holds_runs_and_changes_and_verifies(store: Store) -> None:
    _history(store)
    entries = store.audit_entries()
    assert [e.kind for e in entries] == ["run", "transition", "transition", "transition", "transition",
                                         "comment", "transition", "run"]
    run = json.loads(entries[0].payload)
    assert run["inputs"] == [{"file": "x.csv", "sha256": "0" * 64}] and run["config_hash"] == "c" * 64
    assert run["rule_versions"] == {"chk": "v1"} and run["tieout_version"] == "test"
    assert run["counts"]["findings"] == 3 and run["counts"]["lifecycle_new"] == 3 and run["timings"] == {"total": 0.5}
    assert entries[0].prev_hash == GENESIS
    assert all(e.prev_hash == p.hash for p, e in itertools.pairwise(entries))
    result = store.verify_audit()
    assert result.ok and result.entries == 8 and result.head == entries[-1].hash


def _tamper(store: Store, statement: object) -> None:
    with store.engine.begin() as conn:
        conn.execute(statement)  # type: ignore[call-overload]


def test_an_edited_entry_is_named(store: Store) -> None:
    _history(store)
    _tamper(store, update(AuditRow).where(AuditRow.seq == 4).values(actor="mallory"))
    result = store.verify_audit()
    assert (result.ok, result.first_bad, result.entries) == (False, 4, 3)
    assert result.message() == "audit chain broken at entry 4: its content does not match its hash (edited)"


def test_an_edited_payload_with_a_recomputed_hash_is_caught_by_the_next_entry(store: Store) -> None:
    _history(store)
    e = store.audit_entries()[5]
    payload = e.payload.replace("asked AR", "nothing to see")
    forged = entry_hash(e.seq, e.at, e.kind, e.subject, e.actor, payload, e.prev_hash)
    _tamper(store, update(AuditRow).where(AuditRow.seq == 6).values(payload=payload, hash=forged))
    result = store.verify_audit()
    assert result.first_bad == 7 and "previous-hash does not match" in result.problem


def test_a_deleted_entry_is_named(store: Store) -> None:
    _history(store)
    _tamper(store, delete(AuditRow).where(AuditRow.seq == 5))
    result = store.verify_audit()
    assert (result.ok, result.first_bad) == (False, 5)
    assert result.problem == "entry 5 is missing (deleted): entry 6 follows entry 4"


def test_reordered_entries_are_named(store: Store) -> None:
    _history(store)
    # swap entries 3 and 4 by renumbering them (through a free number, the primary key is unique)
    _tamper(store, update(AuditRow).where(AuditRow.seq == 3).values(seq=1000))
    _tamper(store, update(AuditRow).where(AuditRow.seq == 4).values(seq=3))
    _tamper(store, update(AuditRow).where(AuditRow.seq == 1000).values(seq=4))
    result = store.verify_audit()
    assert (result.ok, result.first_bad) == (False, 3)


def test_a_cut_off_end_needs_the_anchor(store: Store) -> None:
    _history(store)
    anchor = (8, store.audit_entries()[-1].hash)
    _tamper(store, delete(AuditRow).where(AuditRow.seq >= 7))
    assert store.verify_audit().ok  # a chain alone cannot see its end removed ...
    result = store.verify_audit(anchor)  # ... the anchor from an earlier verify can
    assert (result.ok, result.first_bad) == (False, 8)
    assert "the log was cut off after entry 6" in result.problem


def test_verify_and_export_commands(tmp_path: Path) -> None:
    config = tmp_path / "tieout.yaml"
    config.write_text("store: sqlite:///s.db\n")
    s = Store(f"sqlite:///{tmp_path / 's.db'}")
    try:
        _history(s)
        ok = cli("audit", "verify", "-c", config)
        assert ok.code == 0 and ok.out.startswith("audit chain verified: 8 entries")
        anchor = ok.out.split("anchor: ")[1].strip()
        assert cli("audit", "verify", "--anchor", anchor, "-c", config).code == 0
        assert cli("audit", "verify", "--anchor", "nonsense", "-c", config).code == 2
        for fmt in ("csv", "json"):
            out = tmp_path / f"audit.{fmt}"
            r = cli("audit", "export", "--format", fmt, "-o", out, "-c", config)
            assert r.code == 0 and "wrote 8 audit entries" in r.out
        rows = json.loads((tmp_path / "audit.json").read_text())
        with (tmp_path / "audit.csv").open(newline="", encoding="utf-8") as fh:
            flat = list(csv.DictReader(fh))
        assert [r["hash"] for r in rows] == [r["hash"] for r in flat] == [e.hash for e in s.audit_entries()]
        # an auditor re-verifies the export without tieout's database
        assert all(entry_hash(int(r["seq"]), r["at"], r["kind"], r["subject"], r["actor"], r["payload"],
                              r["prev_hash"]) == r["hash"] for r in flat)
        _tamper(s, update(AuditRow).where(AuditRow.seq == 2).values(at="2020-01-01T00:00:00+00:00"))
        bad = cli("audit", "verify", "-c", config)
        assert bad.code == 1
        assert bad.err.splitlines()[0] == ("audit chain broken at entry 2: its content does not match its hash "
                                           "(edited)")
    finally:
        s.close()


def test_verify_chain_on_nothing_is_ok() -> None:
    result = verify_chain([])
    assert result.ok and result.entries == 0 and result.head == GENESIS


@pytest.mark.parametrize("bad", ["seq", "prev"])
def test_verify_chain_unit_cases(bad: str) -> None:
    from tieout.audit import AuditEntry

    e1 = AuditEntry(1, "t", "run", "1", "x", "{}", GENESIS, entry_hash(1, "t", "run", "1", "x", "{}", GENESIS))
    e2 = AuditEntry(2, "t", "run", "2", "x", "{}", e1.hash, entry_hash(2, "t", "run", "2", "x", "{}", e1.hash))
    assert verify_chain([e1, e2]).ok
    broken = [e1, e1] if bad == "seq" else [e1, AuditEntry(2, "t", "run", "2", "x", "{}", GENESIS, e2.hash)]
    assert verify_chain(broken).first_bad == 2

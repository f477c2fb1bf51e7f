"""The tamper-evident audit log (DESIGN §1 step 8): how an entry is hashed and chained to the one
before it, how a chain is verified, and how it is exported for an auditor. The store appends and
reads the rows; this room only computes and checks hashes, it never writes to the database.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

GENESIS = "0" * 64  # the `prev_hash` of the first entry


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: str  # ISO-8601 UTC, stored as text so the hashed bytes are exactly what is read back
    kind: str  # run | transition | comment | notification | import
    subject: str  # run id or finding id
    actor: str
    payload: str  # canonical JSON text
    prev_hash: str
    hash: str

    def data(self) -> dict[str, Any]:
        d = asdict(self)
        d["payload"] = json.loads(self.payload)
        return d


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def entry_hash(seq: int, at: str, kind: str, subject: str, actor: str, payload: str, prev_hash: str) -> str:
    """SHA-256 over every field of the entry and the previous entry's hash, unit-separated."""
    text = "\x1f".join((str(seq), at, kind, subject, actor, payload, prev_hash))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Verification:
    ok: bool
    entries: int
    head: str  # hash of the last good entry (GENESIS when empty)
    first_bad: int | None = None  # seq of the first entry that fails
    problem: str = ""

    def message(self) -> str:
        if self.ok:
            return f"audit chain verified: {self.entries} entries, head {self.head}"
        return f"audit chain broken at entry {self.first_bad}: {self.problem}"


def verify_chain(entries: Iterable[AuditEntry], anchor: tuple[int, str] | None = None) -> Verification:
    """Walk the entries in `seq` order: numbering without gaps from 1, each `prev_hash` equal to the
    hash of the entry before, each `hash` recomputed from the entry's content. `anchor` (seq, hash),
    taken from an earlier verification, also catches an end of the log cut off."""
    prev = GENESIS
    count = 0
    anchored = anchor is None
    for e in entries:
        expected_seq = count + 1
        if e.seq != expected_seq:
            what = (f"entry {expected_seq} is missing (deleted): entry {e.seq} follows entry {count}"
                    if e.seq > expected_seq else f"entry number {e.seq} repeats or is out of order")
            return Verification(False, count, prev, expected_seq, what)
        if e.prev_hash != prev:
            return Verification(False, count, prev, e.seq, "its previous-hash does not match the entry before it "
                                "(an entry was deleted, inserted or reordered)")
        if entry_hash(e.seq, e.at, e.kind, e.subject, e.actor, e.payload, e.prev_hash) != e.hash:
            return Verification(False, count, prev, e.seq, "its content does not match its hash (edited)")
        prev = e.hash
        count += 1
        if anchor is not None and e.seq == anchor[0]:
            if e.hash != anchor[1]:
                return Verification(False, count - 1, e.prev_hash, e.seq, "its hash differs from the anchor")
            anchored = True
    if not anchored and anchor is not None:
        return Verification(False, count, prev, anchor[0], f"the anchor entry {anchor[0]} is missing (the log was "
                            f"cut off after entry {count})")
    return Verification(True, count, prev)


EXPORT_COLUMNS = ("seq", "at", "kind", "subject", "actor", "payload", "prev_hash", "hash")


def export_entries(entries: Sequence[AuditEntry], path: Path, fmt: str) -> int:
    """Write the log to CSV (payload as JSON text) or JSON (payload as an object); returns the count.
    The export keeps every hash, so an auditor can re-verify it with `entry_hash`."""
    if fmt == "json":
        path.write_text(json.dumps([e.data() for e in entries], indent=2, ensure_ascii=False) + "\n",
                        encoding="utf-8")
    elif fmt == "csv":
        with path.open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(EXPORT_COLUMNS)
            for e in entries:
                w.writerow([getattr(e, c) for c in EXPORT_COLUMNS])
    else:
        raise ValueError(f"unknown audit export format '{fmt}' (csv or json)")
    return len(entries)

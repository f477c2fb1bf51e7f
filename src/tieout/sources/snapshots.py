"""Where connector pulls land: pages streamed to Parquet as they arrive, merged into the state of
the source, and published as one immutable snapshot per pull with its SHA-256. The source's
`cursor.json` (its cursor store) moves only after a complete pull, in one atomic rename.

Layout under a connector source's `path`:
    cursor.json                         last complete pull: cursor, snapshot, checksum, counts
    snapshots/<pull_id>.parquet         what a run reads (immutable; pin one to re-run exactly)
    snapshots/<pull_id>.json            its checksum, row count, cursor and parts
    state/<pull_id>-<part>.parquet      merged state of each part, the base of the next pull

A record the system reports deleted (`PageSink.delete`: its merge key) leaves the new state and
snapshot; earlier snapshots keep it, so a run pinned to one re-runs exactly as it did.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

log = logging.getLogger("tieout.sources")
CURSOR_FILE = "cursor.json"
ROWS_PER_GROUP = 10_000  # rows buffered per part before they go to disk: bounds memory per part


def text_value(value: Any) -> str | None:
    """A value as the text normalization parses: ISO dates, plain decimals, JSON for nested data."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, default=str)
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Problem:
    """A record a connector could read only in part: quarantined later, named here."""

    record: str
    field: str
    reason: str


class _PartWriter:
    def __init__(self, path: Path, columns: Sequence[str]):
        self.path = path
        self.columns = list(dict.fromkeys(columns))
        self.schema = pa.schema([(c, pa.string()) for c in self.columns])
        self.writer = pq.ParquetWriter(path, self.schema)
        self.buffer: list[dict[str, str | None]] = []
        self.rows = 0

    def add(self, rows: Sequence[Mapping[str, Any]]) -> None:
        for r in rows:
            self.buffer.append({c: text_value(r.get(c)) for c in self.columns})
        self.rows += len(rows)
        if len(self.buffer) >= ROWS_PER_GROUP:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            self.writer.write_table(pa.Table.from_pylist(self.buffer, schema=self.schema))
            self.buffer = []

    def close(self) -> None:
        self.flush()
        self.writer.close()


@dataclass
class PageSink:
    """Receives a pull's pages part by part and streams them to Parquet in a scratch directory."""

    directory: Path
    problems: list[Problem] = field(default_factory=list)
    _parts: dict[str, _PartWriter] = field(default_factory=dict)
    _deleted: dict[str, _PartWriter] = field(default_factory=dict)

    def columns(self, part: str, names: Sequence[str]) -> None:
        """Declare a part's columns (all stored as text) before its first page."""
        if part not in self._parts:
            self._parts[part] = _PartWriter(self.directory / f"{part}.parquet", names)

    def write(self, part: str, rows: Sequence[Mapping[str, Any]]) -> None:
        self._parts[part].add(rows)

    def delete(self, part: str, key: Mapping[str, Any]) -> None:
        """Record that the system deleted the record of `part` with this merge key (column -> value): it
        leaves the merged state and the new snapshot, even if this pull also read a changed version of it."""
        if part not in self._deleted:
            self._deleted[part] = _PartWriter(self.directory / f"{part}.deleted.parquet", sorted(key))
        self._deleted[part].add([key])

    def deletions(self, part: str) -> int:
        return self._deleted[part].rows if part in self._deleted else 0

    def reset(self, part: str) -> None:
        """Forget what a part received (a retried read starts over)."""
        for writers in (self._parts, self._deleted):
            w = writers.pop(part, None)
            if w is not None:
                w.writer.close()
                w.path.unlink(missing_ok=True)

    def problem(self, record: str, field_name: str, reason: str) -> None:
        self.problems.append(Problem(record, field_name, reason))

    def rows(self, part: str) -> int:
        return self._parts[part].rows if part in self._parts else 0

    def close(self) -> dict[str, Path]:
        """Finish writing; the delta file of each part (its deleted keys: `deleted_keys`)."""
        for w in (*self._parts.values(), *self._deleted.values()):
            w.close()
        return {name: w.path for name, w in self._parts.items()}

    def deleted_keys(self) -> dict[str, Path]:
        """Per part, the Parquet file of the merge keys the system reported deleted (after `close`)."""
        return {name: w.path for name, w in self._deleted.items()}

    def close_quietly(self) -> None:
        """Release open files after a failed pull (their content is discarded)."""
        for w in (*self._parts.values(), *self._deleted.values()):
            try:
                w.writer.close()
            except Exception:  # already closed, or the disk failed: the scratch directory goes anyway
                log.debug("closing %s failed", w.path)


@dataclass(frozen=True)
class PullRecord:
    """What `cursor.json` and `snapshots/<id>.json` hold about one complete pull."""

    pull_id: str
    connector: str
    stream: str
    mode: str  # "full" or "incremental"
    snapshot: str  # relative to the source directory
    sha256: str
    records: int  # rows in the snapshot (the whole state)
    pulled: int  # rows this pull fetched
    cursor: dict[str, Any]
    parts: dict[str, str]
    problems: int
    pulled_at: str
    problem_details: list[list[str]] = field(default_factory=list)  # [record, field, reason], first 1000
    deleted: int = 0  # records the system reported deleted in this pull (dropped from the state)

    def as_json(self) -> str:
        return json.dumps(self.__dict__, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PullRecord:
        return cls(**json.loads(text))


def new_pull_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def last_pull(directory: Path) -> PullRecord | None:
    """The last complete pull of a source (its cursor store), or None before the first."""
    path = directory / CURSOR_FILE
    if not path.exists():
        return None
    return PullRecord.from_json(path.read_text(encoding="utf-8"))


def pull_record(directory: Path, pull_id: str) -> PullRecord | None:
    path = directory / "snapshots" / f"{pull_id}.json"
    return PullRecord.from_json(path.read_text(encoding="utf-8")) if path.exists() else None


def _sql_path(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def merge_part(con: Any, previous: Path | None, delta: Path, key: Sequence[str], target: Path,
               deleted: Path | None = None) -> None:
    """state = (delta ∪ previous rows whose key the delta does not carry) minus the deleted keys:
    changed records replace, deleted ones leave."""
    if deleted is not None and not key:
        raise ValueError("deletions need a merge key")
    on = " AND ".join(f'd."{k}" IS NOT DISTINCT FROM p."{k}"' for k in key)
    gone = " AND ".join(f'x."{k}" IS NOT DISTINCT FROM p."{k}"' for k in key)
    kept = (f" WHERE NOT EXISTS (SELECT 1 FROM read_parquet({_sql_path(deleted)}) x WHERE {gone})"
            if deleted is not None else "")
    union = "" if previous is None or not key else (
        f" UNION ALL BY NAME SELECT p.* FROM read_parquet({_sql_path(previous)}) p WHERE NOT EXISTS "
        f"(SELECT 1 FROM read_parquet({_sql_path(delta)}) d WHERE {on})")
    con.execute(f"COPY (SELECT p.* FROM (SELECT * FROM read_parquet({_sql_path(delta)}){union}) p{kept}) "
                f"TO {_sql_path(target)} (FORMAT parquet)")


def publish(directory: Path, scratch: Path, record: PullRecord, files: Mapping[str, Path]) -> PullRecord:
    """Move a complete pull's files into place, then advance the cursor with one atomic rename."""
    (directory / "snapshots").mkdir(parents=True, exist_ok=True)
    (directory / "state").mkdir(parents=True, exist_ok=True)
    for rel, src in files.items():
        shutil.move(str(src), directory / rel)
    sidecar = directory / "snapshots" / f"{record.pull_id}.json"
    sidecar.write_text(record.as_json(), encoding="utf-8")
    tmp = directory / f".{CURSOR_FILE}.tmp"
    tmp.write_text(record.as_json(), encoding="utf-8")
    os.replace(tmp, directory / CURSOR_FILE)
    shutil.rmtree(scratch, ignore_errors=True)
    return record

"""The findings store: runs, findings and their lifecycle events, metrics, quarantined rows, the
hash-chained audit log and the notification outbox, in SQLAlchemy (SQLite file by default; any
SQLAlchemy URL, e.g. PostgreSQL, for teams).

The schema is owned by the Alembic migrations in `tieout/migrations` (docs/workflow.md says how to
add one); a store is upgraded to the newest revision when opened. A run is written in ONE
transaction, so a run killed at any point leaves either all of it or nothing.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    create_engine,
    event,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from tieout.audit import GENESIS, AuditEntry, Verification, canonical_json, entry_hash, verify_chain
from tieout.errors import StoreError
from tieout.findings import Finding, evidence_json
from tieout.lifecycle import ACTIVE, Assessment, Change, LifecycleError, validate_change

OPEN_STATUSES = ACTIVE

# Constraint names that are the same on every database, so a migration can name what it alters.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class RunRow(Base):
    __tablename__ = "runs"
    run_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    status: Mapped[str] = mapped_column(String(16))  # succeeded | failed
    as_of: Mapped[str | None] = mapped_column(String(10), nullable=True)
    config_hash: Mapped[str] = mapped_column(String(64))
    tieout_version: Mapped[str] = mapped_column(String(32))
    inputs: Mapped[str] = mapped_column(Text, default="[]")  # JSON: files and checksums
    rule_versions: Mapped[str] = mapped_column(Text, default="{}")  # JSON: check -> version hash
    counts: Mapped[str] = mapped_column(Text, default="{}")  # JSON: rows read/accepted/quarantined, findings
    timings: Mapped[str] = mapped_column(Text, default="{}")  # JSON: seconds per step
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


class FindingRow(Base):
    __tablename__ = "findings"
    finding_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    check: Mapped[str] = mapped_column(String(64))
    category: Mapped[str] = mapped_column(String(64), index=True)
    severity: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), index=True)
    owner: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    team: Mapped[str | None] = mapped_column(String(128), nullable=True)
    priority: Mapped[str] = mapped_column(String(16), default="low")
    priority_reason: Mapped[str] = mapped_column(Text, default="")
    resolution: Mapped[str | None] = mapped_column(String(32), nullable=True)
    waived_until: Mapped[date | None] = mapped_column(Date, nullable=True)
    customer_id: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    currency: Mapped[str] = mapped_column(String(3))
    amount_at_risk: Mapped[int] = mapped_column(BigInteger)
    expected: Mapped[str | None] = mapped_column(Text, nullable=True)
    actual: Mapped[str | None] = mapped_column(Text, nullable=True)
    explanation: Mapped[str] = mapped_column(Text)
    period: Mapped[str | None] = mapped_column(String(16), nullable=True)
    subject: Mapped[str] = mapped_column(Text)
    evidence: Mapped[str] = mapped_column(Text)
    first_seen_run: Mapped[int] = mapped_column(ForeignKey("runs.run_id"))
    last_seen_run: Mapped[int] = mapped_column(ForeignKey("runs.run_id"))
    first_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status_changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class FindingEventRow(Base):
    __tablename__ = "finding_events"
    event_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    finding_id: Mapped[str] = mapped_column(ForeignKey("findings.finding_id"), index=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.run_id"), nullable=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(32))  # found | reopened | closed | escalated | assign | ack ...
    from_status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    to_status: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text, default="")


class MetricRow(Base):
    __tablename__ = "metrics"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.run_id"), index=True)
    period: Mapped[str] = mapped_column(String(16))
    currency: Mapped[str] = mapped_column(String(3))
    name: Mapped[str] = mapped_column(String(64))
    value: Mapped[str] = mapped_column(String(64))  # exact decimal or integer text
    unit: Mapped[str] = mapped_column(String(16))  # minor | percent | count


class QuarantineRow(Base):
    __tablename__ = "quarantine"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.run_id"), index=True)
    table_name: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(128))
    file: Mapped[str] = mapped_column(Text)
    line: Mapped[int] = mapped_column(BigInteger)
    column_name: Mapped[str | None] = mapped_column(String(128), nullable=True)
    value: Mapped[str | None] = mapped_column(Text, nullable=True)
    reason: Mapped[str] = mapped_column(Text)


class AuditRow(Base):
    """Append-only; each entry carries the hash of the one before (see `audit`)."""

    __tablename__ = "audit_log"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(128))
    payload: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class OutboxRow(Base):
    """A notice to send. `dedupe_key` (finding, state, channel) is unique: a notice is queued once."""

    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.run_id"), nullable=True)
    finding_id: Mapped[str] = mapped_column(ForeignKey("findings.finding_id"), index=True)
    state: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(64))
    owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    mode: Mapped[str] = mapped_column(String(16))  # digest | immediate
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16), index=True)  # pending | sent | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)


Index("ix_findings_amount", FindingRow.amount_at_risk)


# Entity resolution (tieout.links): the latest run's links and the review queue of candidates.
class EntityLinkRow(Base):
    __tablename__ = "entity_links"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.run_id"), index=True)
    system: Mapped[str] = mapped_column(String(64))
    account_id: Mapped[str] = mapped_column(String(256))
    customer_id: Mapped[str] = mapped_column(String(256))
    method: Mapped[str] = mapped_column(String(32))
    score: Mapped[float] = mapped_column(Float)


class LinkCandidateRow(Base):
    __tablename__ = "entity_link_candidates"
    candidate_id: Mapped[str] = mapped_column(String(16), primary_key=True)  # stable: system, account, customer
    system: Mapped[str] = mapped_column(String(64))
    account_id: Mapped[str] = mapped_column(String(256))
    account_name: Mapped[str] = mapped_column(Text)
    customer_id: Mapped[str] = mapped_column(String(256))
    customer_name: Mapped[str] = mapped_column(Text)
    score: Mapped[float] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), index=True)  # pending | confirmed | rejected
    last_seen_run: Mapped[int | None] = mapped_column(ForeignKey("runs.run_id"), nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    note: Mapped[str] = mapped_column(Text, default="")


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime) -> datetime:
    """SQLite hands timestamps back naive; every stored timestamp is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# --- schema: Alembic ------------------------------------------------------------------------------


def alembic_config() -> Any:
    """The Alembic configuration of the migrations shipped inside the package (no alembic.ini)."""
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    return cfg


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(conn: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Upgrade the store's schema; returns (revision before, revision after)."""
    from alembic import command

    cfg = alembic_config()
    with engine.begin() as conn:
        _lock_store(conn)
        before = current_revision(conn)
        if before is None and inspect(conn).has_table("findings"):
            raise StoreError(f"{engine.url.render_as_string(hide_password=True)}: this store was created by a tieout "
                             "without migrations; start a new store (its findings can be exported first with an "
                             "older tieout)")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
        return before, current_revision(conn)


def _lock_store(conn: Connection) -> None:
    """Serialize writers for the rest of the transaction. SQLite: every transaction is BEGIN IMMEDIATE
    already (see `_sqlite_engine`); PostgreSQL: a transaction-scoped advisory lock."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(7316001)"))


def _sqlite_engine(url: str) -> Engine:
    engine = create_engine(url, connect_args={"timeout": 60})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        dbapi_conn.execute("PRAGMA foreign_keys=ON")

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # Take the write lock at the start, so read-then-append (the audit chain) cannot interleave.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


# --- records crossing the boundary ---------------------------------------------------------------


@dataclass
class RunRecord:
    """Everything a successful run writes, in one transaction."""

    started_at: datetime
    config_hash: str
    tieout_version: str
    inputs: list[dict[str, Any]]
    rule_versions: dict[str, str]
    as_of: str
    findings: Sequence[Finding]
    checks_run: Sequence[str]
    quarantine: list[dict[str, Any]]
    metrics: list[dict[str, str]]
    counts: dict[str, Any]
    timings: dict[str, float]
    actor: str = "tieout"
    triage: Callable[[Finding, int], Assessment] | None = None  # (finding, age in days) -> assessment
    notices: Callable[[FindingRow, str], list[tuple[str, str]]] | None = None  # (row, state) -> [(channel, mode)]
    # Further writes of the run (e.g. its entity links), made in the same transaction: (session, run_id).
    also: Sequence[Callable[[Session, int], None]] = ()


@dataclass
class RecordedRun:
    run_id: int
    lifecycle: dict[str, int]
    notices_queued: int = 0
    transitions: list[tuple[str, str]] = field(default_factory=list)  # (finding_id, state)
    events: list[dict[str, Any]] = field(default_factory=list)


class Store:
    """Operations on the findings store. Each public method is one transaction."""

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        self.engine: Engine = _sqlite_engine(url) if url.startswith("sqlite") else create_engine(url)
        if migrate:
            self.ensure_schema()

    def close(self) -> None:
        self.engine.dispose()

    def ensure_schema(self) -> None:
        """Upgrade to the newest revision when behind (a fresh store is created this way)."""
        with self.engine.connect() as conn:
            at = current_revision(conn)
            conn.rollback()
        if at != head_revision():
            upgrade(self.engine)

    # --- runs ------------------------------------------------------------------------------------
    @contextmanager
    def run_lock(self) -> Iterator[None]:
        """Hold the store's run lock for a whole run; a second run is refused with a clear message.
        The operating system (SQLite file lock) or the server (PostgreSQL session advisory lock)
        releases it when the process dies, so a killed run never blocks the next one."""
        busy = (f"another tieout run is in progress on this store ({self.engine.url.render_as_string(True)}); "
                "try again when it has finished")
        database = self.engine.url.database
        if self.engine.dialect.name == "sqlite" and database and database != ":memory:":
            lock_path = Path(database + ".lock")
            with lock_path.open("a+") as fh:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise StoreError(busy) from None
                fh.seek(0)
                fh.truncate()
                fh.write(f"{os.getpid()}\n")
                fh.flush()
                try:
                    yield
                finally:
                    fcntl.flock(fh, fcntl.LOCK_UN)
        elif self.engine.dialect.name == "postgresql":
            with self.engine.connect() as conn:
                got = conn.execute(text("SELECT pg_try_advisory_lock(7316002)")).scalar()
                conn.commit()
                if not got:
                    raise StoreError(busy)
                try:
                    yield
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(7316002)"))
                    conn.commit()
        else:
            yield

    def record_run(self, rec: RunRecord) -> RecordedRun:
        """Write a successful run: its row, the findings' lifecycle, quarantine, metrics, queued
        notices and the audit entries, all in one transaction."""
        now = _now()
        with Session(self.engine) as s, s.begin():
            _lock_store(s.connection())
            run = RunRow(started_at=rec.started_at, finished_at=now, status="succeeded", as_of=rec.as_of,
                         config_hash=rec.config_hash, tieout_version=rec.tieout_version,
                         inputs=canonical_json(rec.inputs), rule_versions=canonical_json(rec.rule_versions))
            s.add(run)
            s.flush()
            out = _record_findings(s, run.run_id, now, rec)
            counts = {**rec.counts, **{f"lifecycle_{k}": v for k, v in out.lifecycle.items()}}
            run.counts = canonical_json(counts)
            run.timings = canonical_json({k: round(v, 3) for k, v in rec.timings.items()})
            if rec.quarantine:
                s.execute(insert(QuarantineRow), [dict(run_id=run.run_id, **r) for r in rec.quarantine])
            if rec.metrics:
                s.execute(insert(MetricRow), [dict(run_id=run.run_id, **r) for r in rec.metrics])
            for write in rec.also:
                write(s, run.run_id)
            if rec.notices is not None:
                out.notices_queued = _queue_notices(s, run.run_id, now, out.transitions, rec.notices,
                                                    f"run{run.run_id}")
            audit = [("run", str(run.run_id), rec.actor, {
                "status": "succeeded", "started_at": rec.started_at.isoformat(), "finished_at": now.isoformat(),
                "as_of": rec.as_of, "inputs": rec.inputs, "config_hash": rec.config_hash,
                "rule_versions": rec.rule_versions, "tieout_version": rec.tieout_version, "counts": counts,
                "timings": json.loads(run.timings), "notices_queued": out.notices_queued})]
            audit += [("transition", e["finding_id"], e["actor"], _event_payload(e)) for e in out.events]
            _append_audit(s, now, audit)
            return out

    def record_failed_run(self, started_at: datetime, config_hash: str, version: str, inputs: list[dict[str, Any]],
                          error: str, timings: dict[str, float], actor: str = "tieout") -> int:
        now = _now()
        with Session(self.engine) as s, s.begin():
            _lock_store(s.connection())
            run = RunRow(started_at=started_at, finished_at=now, status="failed", config_hash=config_hash,
                         tieout_version=version, inputs=canonical_json(inputs), error=error,
                         timings=canonical_json({k: round(v, 3) for k, v in timings.items()}))
            s.add(run)
            s.flush()
            _append_audit(s, now, [("run", str(run.run_id), actor, {
                "status": "failed", "started_at": started_at.isoformat(), "finished_at": now.isoformat(),
                "inputs": inputs, "config_hash": config_hash, "tieout_version": version, "error": error})])
            return run.run_id

    # --- people acting on findings ---------------------------------------------------------------
    def apply(self, changes: Sequence[Change], actor: str, source: str = "cli",
              notices: Callable[[FindingRow, str], list[tuple[str, str]]] | None = None) -> list[FindingEventRow]:
        """Apply lifecycle changes all-or-nothing: every change is validated first (unknown ids and
        illegal transitions are reported together) and nothing is written when one fails. With
        `notices` (the notify plan), an assignment queues a notice to the new owner in the same
        transaction."""
        now = _now()
        with Session(self.engine) as s, s.begin():
            _lock_store(s.connection())
            rows: dict[str, FindingRow] = {}
            problems: list[str] = []
            plan: list[tuple[Change, FindingRow, str]] = []
            for i, c in enumerate(changes):
                where = f"change {i + 1}: " if len(changes) > 1 else ""
                fid = _resolve_id(s, c.finding_id)
                if fid is None:
                    problems.append(f"{where}no finding with id '{c.finding_id}'")
                    continue
                row = rows.get(fid) or s.get(FindingRow, fid)
                assert row is not None
                rows[fid] = row
                c = Change(fid, c.action, c.note, c.owner, c.team, c.resolution, c.until)
                status = _planned_status(plan, row)
                try:
                    new_status = validate_change(c, status)
                except LifecycleError as exc:
                    problems.append(f"{where}{exc}")
                    continue
                plan.append((c, row, new_status))
            if problems:
                more = f" ({len(problems) - 1} more below)" if len(problems) > 1 else ""
                raise LifecycleError(f"{problems[0]}{more}; nothing was changed" +
                                     "".join(f"\n{p}" for p in problems[1:]))
            events: list[FindingEventRow] = []
            audit: list[tuple[str, str, str, dict[str, Any]]] = []
            for c, row, new_status in plan:
                ev = FindingEventRow(finding_id=row.finding_id, run_id=None, at=now, actor=actor, action=c.action,
                                     from_status=row.status, to_status=new_status, note=c.note)
                if c.action == "assign":
                    row.owner = c.owner
                    row.team = c.team or row.team
                if c.action == "resolve":
                    row.resolution = c.resolution
                if c.action == "waive":
                    row.waived_until = c.until
                if c.action == "reopen":
                    row.resolution = None
                    row.waived_until = None
                if new_status != row.status:
                    row.status = new_status
                    row.status_changed_at = now
                s.add(ev)
                events.append(ev)
                payload = {"finding_id": row.finding_id, "action": c.action, "from": ev.from_status,
                           "to": new_status, "note": c.note, "owner": c.owner, "team": c.team,
                           "resolution": c.resolution, "until": c.until.isoformat() if c.until else None,
                           "source": source}
                audit.append(("comment" if c.action == "comment" else "transition", row.finding_id, actor, payload))
            s.flush()
            if notices is not None:  # the new owner hears of it: one notice per assignment event
                for ev in events:
                    if ev.action == "assign":
                        _queue_notices(s, None, now, [(ev.finding_id, "assigned")], notices, f"event{ev.event_id}")
            _append_audit(s, now, audit)
            s.expunge_all()
            return events

    # --- audit -----------------------------------------------------------------------------------
    def audit_entries(self, since_seq: int = 0) -> list[AuditEntry]:
        with Session(self.engine) as s:
            return [AuditEntry(r.seq, r.at, r.kind, r.subject, r.actor, r.payload, r.prev_hash, r.hash)
                    for r in s.scalars(select(AuditRow).where(AuditRow.seq > since_seq).order_by(AuditRow.seq))]

    def verify_audit(self, anchor: tuple[int, str] | None = None) -> Verification:
        return verify_chain(self.audit_entries(), anchor)

    def record_notifications(self, outbox_ids: Sequence[int], ok: bool, error: str | None, channel: str,
                             payload: dict[str, Any]) -> None:
        """Mark outbox entries sent (or record a failed attempt) and append each to the audit log."""
        now = _now()
        with Session(self.engine) as s, s.begin():
            _lock_store(s.connection())
            audit: list[tuple[str, str, str, dict[str, Any]]] = []
            for oid in outbox_ids:
                row = s.get(OutboxRow, oid)
                if row is None:
                    raise StoreError(f"no outbox entry {oid}")
                row.attempts += 1
                row.status = "sent" if ok else "failed"
                row.sent_at = now if ok else None
                row.last_error = error
                audit.append(("notification", row.finding_id, "tieout", {
                    "outbox_id": oid, "dedupe_key": row.dedupe_key, "channel": channel, "ok": ok, "error": error,
                    **payload}))
            _append_audit(s, now, audit)

    def outbox(self, status: Sequence[str] = ("pending", "failed")) -> list[OutboxRow]:
        with Session(self.engine) as s:
            rows = list(s.scalars(select(OutboxRow).where(OutboxRow.status.in_(list(status)))
                                  .order_by(OutboxRow.id)))
            s.expunge_all()
            return rows

    # --- reading -----------------------------------------------------------------------------
    def findings(self, *, status: Sequence[str] | None = None, category: str | None = None,
                 customer: str | None = None, check: str | None = None, owner: str | None = None,
                 priority: Sequence[str] | None = None, older_than_days: int | None = None,
                 ids: Sequence[str] | None = None, limit: int | None = None) -> list[FindingRow]:
        q = select(FindingRow)
        if status:
            q = q.where(FindingRow.status.in_(list(status)))
        if category:
            q = q.where(FindingRow.category == category)
        if customer:
            q = q.where(FindingRow.customer_id == customer)
        if check:
            q = q.where(FindingRow.check == check)
        if owner:
            q = q.where(FindingRow.owner == owner)
        if priority:
            q = q.where(FindingRow.priority.in_(list(priority)))
        if older_than_days is not None:
            q = q.where(FindingRow.first_seen_at <= _now() - timedelta(days=older_than_days))
        if ids is not None:
            q = q.where(FindingRow.finding_id.in_(list(ids)))
        q = q.order_by(FindingRow.amount_at_risk.desc(), FindingRow.finding_id)
        if limit:
            q = q.limit(limit)
        with Session(self.engine) as s:
            rows = list(s.scalars(q))
            s.expunge_all()
            return rows

    def finding(self, finding_id: str) -> FindingRow:
        with Session(self.engine) as s:
            fid = _resolve_id(s, finding_id)
            row = s.get(FindingRow, fid) if fid else None
            if row is None:
                raise StoreError(f"no finding with id '{finding_id}' (see `tieout findings list`)")
            s.expunge(row)
            return row

    def events(self, finding_id: str) -> list[FindingEventRow]:
        with Session(self.engine) as s:
            rows = list(s.scalars(select(FindingEventRow).where(FindingEventRow.finding_id == finding_id)
                                  .order_by(FindingEventRow.event_id)))
            s.expunge_all()
            return rows

    def runs(self) -> list[RunRow]:
        with Session(self.engine) as s:
            rows = list(s.scalars(select(RunRow).order_by(RunRow.run_id)))
            s.expunge_all()
            return rows

    def last_run(self) -> RunRow | None:
        with Session(self.engine) as s:
            row = s.scalars(select(RunRow).order_by(RunRow.run_id.desc()).limit(1)).first()
            if row is not None:
                s.expunge(row)
            return row

    def metrics(self, run_id: int) -> list[MetricRow]:
        with Session(self.engine) as s:
            rows = list(s.scalars(select(MetricRow).where(MetricRow.run_id == run_id).order_by(MetricRow.id)))
            s.expunge_all()
            return rows

    def metric_history(self, since_period: str = "") -> dict[tuple[str, str, str], tuple[str, str, int]]:
        """(period, currency, name) -> (value, unit, run id), from the latest succeeded run that
        computed it, for periods at or after `since_period` ('YYYY-MM')."""
        q = (select(MetricRow, RunRow.run_id).join(RunRow, RunRow.run_id == MetricRow.run_id)
             .where(RunRow.status == "succeeded", MetricRow.period >= since_period).order_by(MetricRow.run_id))
        with Session(self.engine) as s:
            return {(m.period, m.currency, m.name): (m.value, m.unit, run_id) for m, run_id in s.execute(q)}

    def prevented_leakage(self, since_period: str = "") -> dict[tuple[str, str], int]:
        """(period, currency) -> money at risk of findings resolved (not as false positives) before
        the invoice they cite was sent: it was still a draft, or issued after the resolution."""
        with Session(self.engine) as s:
            resolved = {ev.finding_id: _aware(ev.at) for ev in s.scalars(
                select(FindingEventRow).where(FindingEventRow.action == "resolve").order_by(FindingEventRow.event_id))}
            rows = list(s.scalars(select(FindingRow).where(FindingRow.status == "resolved",
                                                           FindingRow.resolution != "false_positive")))
        out: dict[tuple[str, str], int] = {}
        for f in rows:
            at = resolved.get(f.finding_id)
            period = f.period or ""
            if at is None or period < since_period:
                continue
            invoices = [e["record"] for e in json.loads(f.evidence) if e.get("table") == "invoices"]
            if invoices and all(_unsent_at(inv, at) for inv in invoices):
                out[(period, f.currency)] = out.get((period, f.currency), 0) + f.amount_at_risk
        return out

    def quarantine(self, run_id: int, limit: int | None = None) -> list[QuarantineRow]:
        with Session(self.engine) as s:
            q = select(QuarantineRow).where(QuarantineRow.run_id == run_id).order_by(QuarantineRow.id)
            rows = list(s.scalars(q.limit(limit) if limit else q))
            s.expunge_all()
            return rows


def _unsent_at(invoice: dict[str, Any], at: datetime) -> bool:
    """Whether an invoice record (as cited in evidence) had not been sent to the customer at `at`."""
    if invoice.get("status") == "draft" or not invoice.get("issued_at"):
        return True
    try:
        issued = datetime.fromisoformat(str(invoice["issued_at"]))
    except ValueError:
        return False
    return _aware(issued) > at


# --- inside a transaction ------------------------------------------------------------------------


def insert_plain_rows(conn: Connection, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Append rows of plain values (text, numbers: nothing a column type converts) to `table` at the
    driver's own speed, in the caller's transaction: COPY on PostgreSQL (psycopg), one prepared
    INSERT executed for many rows (executemany) elsewhere. For the big tables of a run (entity links,
    audit entries), where SQLAlchemy's per-row parameter processing would cost more than the insert."""
    quote = conn.dialect.identifier_preparer.quote
    table, cols = quote(table), ", ".join(quote(c) for c in columns)
    if conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg":
        dbapi: Any = conn.connection.dbapi_connection
        with dbapi.cursor() as cur, cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    style = conn.dialect.paramstyle
    marks = ", ".join("?" if style == "qmark" else "%s" if style in ("format", "pyformat") else f":{i + 1}"
                      for i in range(len(columns)))
    batch: list[Sequence[Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == 50_000:
            conn.exec_driver_sql(f"INSERT INTO {table} ({cols}) VALUES ({marks})", batch)
            batch = []
    if batch:
        conn.exec_driver_sql(f"INSERT INTO {table} ({cols}) VALUES ({marks})", batch)


def _resolve_id(s: Session, finding_id: str) -> str | None:
    """The full id for `finding_id` or a unique prefix of it."""
    if s.get(FindingRow, finding_id) is not None:
        return finding_id
    matches = list(s.scalars(select(FindingRow.finding_id).where(FindingRow.finding_id.like(finding_id + "%"))
                             .limit(2)))
    return matches[0] if len(matches) == 1 and finding_id else None


def _planned_status(plan: list[tuple[Change, FindingRow, str]], row: FindingRow) -> str:
    """The status `row` will have after the changes planned so far (a bulk file may touch it twice)."""
    for _c, r, st in reversed(plan):
        if r is row:
            return st
    return row.status


def _event_payload(e: dict[str, Any]) -> dict[str, Any]:
    return {"finding_id": e["finding_id"], "action": e["action"], "from": e["from_status"], "to": e["to_status"],
            "note": e["note"], "run_id": e["run_id"]}


def _record_findings(s: Session, run_id: int, now: datetime, rec: RunRecord) -> RecordedRun:
    """Insert new findings, refresh known ones, reopen ended ones that reappear (a waiver only once
    it has expired), close active ones of the checks that ran which are no longer present, and
    apply priority, routing and escalation."""
    checks = set(rec.checks_run)
    stats = {"new": 0, "seen_again": 0, "reopened": 0, "no_longer_present": 0, "escalated": 0}
    existing = {r.finding_id: r for r in s.execute(
        select(FindingRow.finding_id, FindingRow.status, FindingRow.first_seen_at, FindingRow.owner,
               FindingRow.waived_until).where(FindingRow.check.in_(checks)))}
    out = RecordedRun(0, stats)
    events: list[dict[str, Any]] = []

    def add_event(fid: str, action: str, old: str | None, new: str, note: str) -> None:
        events.append(dict(finding_id=fid, run_id=run_id, at=now, actor=rec.actor, action=action,
                           from_status=old, to_status=new, note=note))
        out.transitions.append((fid, new if action in ("found", "reopened", "closed") else action))

    new_rows, seen = [], set()
    updates: list[dict[str, Any]] = []
    for f in rec.findings:
        seen.add(f.finding_id)
        old = existing.get(f.finding_id)
        age = (now - _aware(old.first_seen_at)).days if old is not None else 0
        a = rec.triage(f, age) if rec.triage else Assessment("low", "", f.owner, None)
        values: dict[str, Any] = dict(
            check=f.check, category=f.category, severity=f.severity, customer_id=f.customer_id, currency=f.currency,
            amount_at_risk=f.amount_at_risk, expected=f.expected, actual=f.actual, explanation=f.explanation,
            period=f.period, subject=f.subject, evidence=evidence_json(f.evidence), last_seen_run=run_id,
            priority=a.priority, priority_reason=a.priority_reason)
        if old is None:
            new_rows.append(dict(finding_id=f.finding_id, status="open", owner=a.owner, team=a.team,
                                 first_seen_run=run_id, first_seen_at=now, status_changed_at=now, **values))
            add_event(f.finding_id, "found", None, "open", f"priority {a.priority}"
                      + (f": {a.priority_reason}" if a.priority_reason else "")
                      + (f"; routed to {a.owner}" if a.owner else ""))
            stats["new"] += 1
            continue
        status = old.status
        expired = old.waived_until is not None and old.waived_until < now.date()
        if status in ACTIVE or (status == "waived" and not expired):
            stats["seen_again"] += 1
            if status == "open" and old.owner is None and a.owner:
                values.update(owner=a.owner, team=a.team)
        else:
            why = "waiver expired" if status == "waived" else f"found again after {status}"
            values.update(status="open", status_changed_at=now, owner=a.owner, team=a.team, resolution=None,
                          waived_until=None)
            add_event(f.finding_id, "reopened", status, "open", f"reopened: {why}")
            stats["reopened"] += 1
            status = "open"
        if a.escalate_to and status in ACTIVE and old.owner != a.escalate_to and values.get("owner") != a.escalate_to:
            values.update(owner=a.escalate_to)
            add_event(f.finding_id, "escalated", status, status,
                      f"escalated to {a.escalate_to}: SLA breached ({age} days, owner was {old.owner or 'nobody'})")
            stats["escalated"] += 1
        updates.append(dict(finding_id=f.finding_id, **values))
    if updates:  # bulk UPDATE by primary key: one executemany per set of columns, not a statement per finding
        s.execute(update(FindingRow), updates)
    if new_rows:
        s.execute(insert(FindingRow), new_rows)
    gone = sorted(fid for fid, r in existing.items() if r.status in ACTIVE and fid not in seen)
    for fid in gone:
        add_event(fid, "closed", existing[fid].status, "closed", "no longer present")
    for chunk in range(0, len(gone), 500):
        s.execute(update(FindingRow).where(FindingRow.finding_id.in_(gone[chunk:chunk + 500]))
                  .values(status="closed", status_changed_at=now))
    stats["no_longer_present"] = len(gone)
    if events:
        s.execute(insert(FindingEventRow), events)
    out.run_id = run_id
    out.events = events
    return out


def _queue_notices(s: Session, run_id: int | None, now: datetime, transitions: list[tuple[str, str]],
                   notices: Callable[[FindingRow, str], list[tuple[str, str]]], occasion: str) -> int:
    """Queue one outbox entry per (finding, state, channel, occasion) not queued before: the dedupe
    key. The occasion is the run (`run7`) or a person's change (`event42`)."""
    if not transitions:
        return 0
    ids = sorted({fid for fid, _ in transitions})
    rows: dict[str, FindingRow] = {}
    for chunk in range(0, len(ids), 500):
        rows.update({r.finding_id: r for r in s.scalars(select(FindingRow).where(
            FindingRow.finding_id.in_(ids[chunk:chunk + 500])))})
    wanted: dict[str, dict[str, Any]] = {}
    for fid, state in transitions:
        row = rows[fid]
        # A finding enters a state at most once per run; entering it again in a later run (reopened
        # a second time) is news again, so the run (or the change) is part of the key.
        for channel, mode in notices(row, state):
            wanted[f"{fid}:{state}:{channel}:{occasion}"] = dict(
                run_id=run_id, finding_id=fid, state=state, channel=channel, owner=row.owner, mode=mode,
                created_at=now, status="pending", attempts=0)
    if not wanted:
        return 0
    keys = list(wanted)
    known: set[str] = set()
    for chunk in range(0, len(keys), 500):
        known.update(s.scalars(select(OutboxRow.dedupe_key).where(OutboxRow.dedupe_key.in_(keys[chunk:chunk + 500]))))
    fresh = [dict(dedupe_key=k, **v) for k, v in wanted.items() if k not in known]
    if fresh:
        s.execute(insert(OutboxRow), fresh)
    return len(fresh)


def _append_audit(s: Session, now: datetime, entries: list[tuple[str, str, str, dict[str, Any]]]) -> None:
    """Append entries to the chain. The caller holds the store's write lock (`_lock_store`)."""
    if not entries:
        return
    head = s.execute(select(AuditRow.seq, AuditRow.hash).order_by(AuditRow.seq.desc()).limit(1)).first()
    seq, prev = (head[0], head[1]) if head else (0, GENESIS)
    at = now.isoformat()
    rows = []
    for kind, subject, actor, payload in entries:
        seq += 1
        body = canonical_json(payload)
        h = entry_hash(seq, at, kind, subject, actor, body, prev)
        rows.append((seq, at, kind, subject, actor, body, prev, h))
        prev = h
    insert_plain_rows(s.connection(), AuditRow.__tablename__,
                      ("seq", "at", "kind", "subject", "actor", "payload", "prev_hash", "hash"), rows)

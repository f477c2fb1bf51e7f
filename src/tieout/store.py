"""The findings store: runs, findings and their lifecycle events, metrics and quarantined rows,
in SQLAlchemy (SQLite file by default; any SQLAlchemy URL, e.g. PostgreSQL, for teams).

Schema is created on first use (`create_all`); migrations are tracked separately (see docs).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    create_engine,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from tieout.errors import StoreError
from tieout.findings import Finding, evidence_json

OPEN_STATUSES = ("open", "assigned", "acknowledged")


class Base(DeclarativeBase):
    pass


class RunRow(Base):
    __tablename__ = "runs"
    run_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    status: Mapped[str] = mapped_column(String(16))  # running | succeeded | failed
    as_of: Mapped[str | None] = mapped_column(String(10), nullable=True)
    config_hash: Mapped[str] = mapped_column(String(64))
    tieout_version: Mapped[str] = mapped_column(String(32))
    inputs: Mapped[str] = mapped_column(Text, default="[]")  # JSON: files and checksums
    counts: Mapped[str] = mapped_column(Text, default="{}")  # JSON: rows read/accepted/quarantined, findings
    timings: Mapped[str] = mapped_column(Text, default="{}")  # JSON: seconds per step


class FindingRow(Base):
    __tablename__ = "findings"
    finding_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    check: Mapped[str] = mapped_column(String(64))
    category: Mapped[str] = mapped_column(String(64), index=True)
    severity: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), index=True)
    owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
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


class FindingEventRow(Base):
    __tablename__ = "finding_events"
    event_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    finding_id: Mapped[str] = mapped_column(ForeignKey("findings.finding_id"), index=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.run_id"), nullable=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(128))
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


Index("ix_findings_amount", FindingRow.amount_at_risk)


def _now() -> datetime:
    return datetime.now(UTC)


class Store:
    """Operations on the findings store. Each public method is one transaction."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = create_engine(url)
        Base.metadata.create_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def start_run(self, config_hash: str, version: str, inputs: list[dict[str, Any]]) -> int:
        with Session(self.engine) as s, s.begin():
            row = RunRow(started_at=_now(), status="running", config_hash=config_hash, tieout_version=version,
                         inputs=json.dumps(inputs, sort_keys=True))
            s.add(row)
            s.flush()
            return row.run_id

    def finish_run(self, run_id: int, status: str, as_of: str | None, counts: dict[str, Any],
                   timings: dict[str, float]) -> None:
        with Session(self.engine) as s, s.begin():
            s.execute(update(RunRow).where(RunRow.run_id == run_id).values(
                finished_at=_now(), status=status, as_of=as_of, counts=json.dumps(counts, sort_keys=True),
                timings=json.dumps({k: round(v, 3) for k, v in timings.items()}, sort_keys=True)))

    def record_findings(self, run_id: int, findings: Sequence[Finding], checks_run: Iterable[str]) -> dict[str, int]:
        """Insert new findings, refresh known ones, reopen resolved ones that reappear, and close
        open ones of the checks that ran which are no longer present. Returns counts."""
        now = _now()
        checks = set(checks_run)
        stats = {"new": 0, "seen_again": 0, "reopened": 0, "no_longer_present": 0}
        with Session(self.engine) as s, s.begin():
            existing = {r.finding_id: r.status for r in s.execute(
                select(FindingRow.finding_id, FindingRow.status).where(FindingRow.check.in_(checks)))}
            new_rows, events, seen = [], [], set()
            for f in findings:
                seen.add(f.finding_id)
                values = dict(check=f.check, category=f.category, severity=f.severity, customer_id=f.customer_id,
                              currency=f.currency, amount_at_risk=f.amount_at_risk, expected=f.expected,
                              actual=f.actual, explanation=f.explanation, period=f.period, subject=f.subject,
                              evidence=evidence_json(f.evidence), last_seen_run=run_id)
                old = existing.get(f.finding_id)
                if old is None:
                    new_rows.append(dict(finding_id=f.finding_id, status="open", owner=f.owner,
                                         first_seen_run=run_id, **values))
                    events.append(dict(finding_id=f.finding_id, run_id=run_id, at=now, actor="tieout",
                                       from_status=None, to_status="open", note="found"))
                    stats["new"] += 1
                    continue
                if old in OPEN_STATUSES:
                    stats["seen_again"] += 1
                else:
                    values["status"] = "open"
                    events.append(dict(finding_id=f.finding_id, run_id=run_id, at=now, actor="tieout",
                                       from_status=old, to_status="open", note=f"reopened: found again after {old}"))
                    stats["reopened"] += 1
                s.execute(update(FindingRow).where(FindingRow.finding_id == f.finding_id).values(**values))
            if new_rows:
                s.execute(insert(FindingRow), new_rows)
            gone = [fid for fid, st in existing.items() if st in OPEN_STATUSES and fid not in seen]
            for fid in gone:
                events.append(dict(finding_id=fid, run_id=run_id, at=now, actor="tieout",
                                   from_status=existing[fid], to_status="closed", note="no longer present"))
            for chunk in range(0, len(gone), 500):
                s.execute(update(FindingRow).where(FindingRow.finding_id.in_(gone[chunk:chunk + 500]))
                          .values(status="closed"))
            stats["no_longer_present"] = len(gone)
            if events:
                s.execute(insert(FindingEventRow), events)
        return stats

    def record_quarantine(self, run_id: int, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        with Session(self.engine) as s, s.begin():
            s.execute(delete(QuarantineRow).where(QuarantineRow.run_id == run_id))
            s.execute(insert(QuarantineRow), [dict(run_id=run_id, **r) for r in rows])

    def record_metrics(self, run_id: int, rows: list[dict[str, str]]) -> None:
        if not rows:
            return
        with Session(self.engine) as s, s.begin():
            s.execute(insert(MetricRow), [dict(run_id=run_id, **r) for r in rows])

    # --- reading -----------------------------------------------------------------------------
    def findings(self, *, status: Sequence[str] | None = None, category: str | None = None,
                 customer: str | None = None, check: str | None = None, limit: int | None = None) -> list[FindingRow]:
        q = select(FindingRow)
        if status:
            q = q.where(FindingRow.status.in_(list(status)))
        if category:
            q = q.where(FindingRow.category == category)
        if customer:
            q = q.where(FindingRow.customer_id == customer)
        if check:
            q = q.where(FindingRow.check == check)
        q = q.order_by(FindingRow.amount_at_risk.desc(), FindingRow.finding_id)
        if limit:
            q = q.limit(limit)
        with Session(self.engine) as s:
            rows = list(s.scalars(q))
            s.expunge_all()
            return rows

    def finding(self, finding_id: str) -> FindingRow:
        with Session(self.engine) as s:
            row = s.get(FindingRow, finding_id)
            if row is None:
                matches = list(s.scalars(select(FindingRow).where(FindingRow.finding_id.like(finding_id + "%"))
                                         .limit(2)))
                if len(matches) == 1:
                    row = matches[0]
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

    def quarantine(self, run_id: int, limit: int | None = None) -> list[QuarantineRow]:
        with Session(self.engine) as s:
            q = select(QuarantineRow).where(QuarantineRow.run_id == run_id).order_by(QuarantineRow.id)
            rows = list(s.scalars(q.limit(limit) if limit else q))
            s.expunge_all()
            return rows

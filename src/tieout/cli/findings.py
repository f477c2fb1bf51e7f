"""`tieout findings ...`: browse the exception queue and act on findings (assign, ack, resolve,
waive, comment, reopen, bulk import). Renders what the store returns; the lifecycle rules live in
`tieout.lifecycle`, and every change is one all-or-nothing transaction in the store.
"""

from __future__ import annotations

import getpass
import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table
from rich.text import Text

from tieout.cli import (
    CONFIG_OPT,
    STATUS_HELP,
    _open_store,
    _out,
    _statuses,
    add_row,
    app,
    money,
    report_notices,
)
from tieout.reports.export import ExportFormat

if TYPE_CHECKING:
    from tieout.config import Config
    from tieout.lifecycle import Change
    from tieout.store import FindingEventRow, FindingRow, Store

findings_app = typer.Typer(help="Browse, act on and export findings in the store.", no_args_is_help=True)
app.add_typer(findings_app, name="findings")

ACTOR_OPT = typer.Option(None, "--actor", help="Who acts (default: $TIEOUT_ACTOR, else the login name).")
NOTE_OPT = typer.Option("", "--note", "-m", help="Why (recorded with the change and in the audit log).")
IDS_ARG = typer.Argument(..., help="Finding ids (or unique prefixes); all change or none.")


def actor_name(actor: str | None) -> str:
    if actor:
        return actor
    if os.environ.get("TIEOUT_ACTOR"):
        return os.environ["TIEOUT_ACTOR"]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@findings_app.command("list")
def findings_list(
    config: Path = CONFIG_OPT,
    status: list[str] = typer.Option(["open", "acknowledged", "assigned"], "--status", help=STATUS_HELP),
    category: str | None = typer.Option(None, "--category", help="Only this category."),
    customer: str | None = typer.Option(None, "--customer", help="Only this customer id."),
    check: str | None = typer.Option(None, "--check", help="Only findings of this check."),
    owner: str | None = typer.Option(None, "--owner", help="Only findings of this owner."),
    priority: list[str] = typer.Option([], "--priority", help="Only these priorities (repeatable)."),
    older_than: int | None = typer.Option(None, "--older-than", min=0, help="Only findings first seen at least "
                                          "this many days ago."),
    limit: int = typer.Option(50, "--limit", min=1, help="At most this many findings."),
) -> None:
    """Findings from the store (default: the active ones), largest money at risk first."""
    from tieout.categories import CATEGORIES
    from tieout.lifecycle import STATUSES

    if category is not None and category not in CATEGORIES:
        raise typer.BadParameter(f"unknown category '{category}' (see `tieout categories`)", param_hint="--category")
    unknown = [s for s in status if s != "all" and s not in STATUSES]
    if unknown:
        raise typer.BadParameter(f"unknown status '{unknown[0]}' (one of {', '.join(STATUSES)}, all)",
                                 param_hint="--status")
    with _open_store(config) as store:
        rows = store.findings(status=_statuses(status), category=category, customer=customer, check=check,
                              owner=owner, priority=priority or None, older_than_days=older_than, limit=limit)
    _out().print(_queue_table(f"{len(rows)} findings", rows))


def _queue_table(title: str, rows: Sequence[FindingRow]) -> Table:
    t = Table(title=title)
    t.add_column("id", no_wrap=True)
    for col in ("status", "priority", "owner", "category", "customer"):
        t.add_column(col)
    t.add_column("at risk", justify="right", no_wrap=True)
    t.add_column("age", justify="right", no_wrap=True)
    t.add_column("explanation", ratio=1)
    now = datetime.now(UTC)
    for r in rows:
        seen = r.first_seen_at if r.first_seen_at.tzinfo else r.first_seen_at.replace(tzinfo=UTC)
        add_row(t, r.finding_id, r.status, r.priority, Text(r.owner or ""), r.category, Text(r.customer_id or ""),
                money(r.amount_at_risk, r.currency), f"{(now - seen).days}d", Text(r.explanation))
    return t


def _kv_grid(pairs: Sequence[tuple[str, str | None]]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    for k, v in pairs:
        add_row(grid, k, Text("-" if v is None or v == "" else str(v)))
    return grid


def _evidence_table(table: str, record: dict[str, Any]) -> Table:
    """A cited record, in canonical column order, money shown in minor units and formatted."""
    from tieout.model import TABLES, Kind

    canonical = TABLES.get(table)
    order = list(canonical.column_names) if canonical else []
    names = [c for c in order if c in record] + sorted(c for c in record if c not in order)
    currency = str(record.get("currency") or "")
    t = Table()
    t.add_column("field")
    t.add_column("value", overflow="fold")
    for name in names:
        value = record[name]
        text = "" if value is None else str(value)
        is_money = canonical is not None and name in order and canonical.column(name).kind == Kind.MONEY
        if is_money and isinstance(value, int) and currency:
            text = f"{value}  ({money(value, currency)})"
        add_row(t, name, text)
    return t


def _event_line(ev: FindingEventRow) -> Text:
    note = f"  ({ev.note})" if ev.note else ""
    run = f" run {ev.run_id}" if ev.run_id is not None else ""
    change = f"{ev.from_status or '-'} -> {ev.to_status}" if ev.from_status != ev.to_status else ev.to_status
    return Text(f"{ev.at:%Y-%m-%d %H:%M:%S} {ev.actor}{run}: {ev.action}: {change}{note}")


@findings_app.command("show")
def findings_show(
    finding_id: str = typer.Argument(..., help="Finding id, or a unique prefix of it."),
    config: Path = CONFIG_OPT,
    timeline: bool = typer.Option(False, "--timeline", help="Also read the sources and show the customer's "
                                  "invoices, payments, gateway movements and ledger entries in time order."),
) -> None:
    """One finding: its fields, explanation, the evidence from each system, its history and the
    customer's other findings (and, with --timeline, their records across systems)."""
    from tieout.categories import CATEGORIES

    with _open_store(config) as store:
        f = store.finding(finding_id)
        events = store.events(f.finding_id)
        others = [o for o in store.findings(status=None, customer=f.customer_id) if o.finding_id != f.finding_id] \
            if f.customer_id else []
    out = _out()
    out.print(Text(f"Finding {f.finding_id}", style="bold"))
    category = CATEGORIES.get(f.category)
    out.print(_kv_grid([
        ("check", f.check), ("category", f.category), ("severity", f.severity), ("status", f.status),
        ("priority", f"{f.priority} ({f.priority_reason})" if f.priority_reason else f.priority),
        ("owner", f.owner), ("team", f.team), ("resolution", f.resolution),
        ("waived until", f.waived_until.isoformat() if f.waived_until else None),
        ("customer", f.customer_id), ("period", f.period), ("subject", f.subject),
        ("at risk", money(f.amount_at_risk, f.currency)), ("expected", f.expected), ("actual", f.actual),
        ("first seen", f"run {f.first_seen_run}"), ("last seen", f"run {f.last_seen_run}"),
    ]))
    out.print()
    out.print(Text(f.explanation))
    if category is not None:
        out.print(Text(f"{f.category}: {category.definition}", style="dim"))
    evidence = json.loads(f.evidence)
    out.print()
    out.print(Text(f"Evidence ({len(evidence)} record{'s' if len(evidence) != 1 else ''})", style="bold"))
    for e in evidence:
        out.print(Text(f"{e['table']} {e['key']} — {e['source'] or '?'} {e['source_ref'] or ''}".rstrip(),
                       style="bold"))
        out.print(_evidence_table(e["table"], e["record"]))
    out.print(Text("History", style="bold"))
    for ev in events:
        out.print(_event_line(ev))
    if f.customer_id:
        out.print(Text(f"Customer {f.customer_id}: {len(others)} other finding{'s' if len(others) != 1 else ''}",
                       style="bold"))
        for o in others:
            out.print(Text(f"{o.finding_id} {o.status:<12} {o.category} {money(o.amount_at_risk, o.currency)} "
                           f"period {o.period or '-'}"))
    if timeline and f.customer_id:
        out.print(_timeline_table(config, f.customer_id))


def _timeline_table(config: Path, customer_id: str) -> Table:
    from tieout.config import load_config
    from tieout.engines import create_engine
    from tieout.pipeline import ingest
    from tieout.timeline import customer_timeline

    cfg = load_config(config)
    engine = create_engine(cfg.engine)
    try:
        tables = ingest(cfg, engine, lambda _msg: None)[0]
        entries = customer_timeline(tables, customer_id)
    finally:
        engine.close()
    t = Table(title=f"Timeline of customer {customer_id} across systems ({len(entries)} records)")
    for col in ("when", "table", "key", "amount", "what", "source"):
        t.add_column(col, overflow="fold")
    for e in entries:
        amount = "" if e.amount is None else money(e.amount, e.currency) if e.currency else str(e.amount)
        add_row(t, e.at, e.table, Text(e.key), amount, Text(e.what), Text(f"{e.source or ''} {e.source_ref or ''}"))
    return t


@findings_app.command("export")
def findings_export(
    output: Path = typer.Option(..., "--output", "-o", help="File to write."),
    fmt: ExportFormat = typer.Option(ExportFormat.CSV, "--format", case_sensitive=False, help="File format."),
    config: Path = CONFIG_OPT,
    status: list[str] = typer.Option(["open"], "--status", help=STATUS_HELP),
) -> None:
    """Export findings, largest money at risk first, to CSV, JSON or XLSX (spreadsheet-safe)."""
    from tieout.reports.export import export_findings

    with _open_store(config) as store:
        rows = store.findings(status=_statuses(status))
    n = export_findings(rows, output, fmt)
    _out().print(f"wrote {n} findings to {output}")


# --- acting on findings --------------------------------------------------------------------------


def _apply(config: Path, changes: list[Change], actor: str | None, source: str = "cli") -> None:
    from tieout.config import load_config

    cfg = load_config(config)
    with _open_store(cfg) as store:
        events = _apply_and_notify(cfg, store, changes, actor, source)
    out = _out()
    for ev in events:
        out.print(_event_line(ev).append(f"  {ev.finding_id}"))


def _apply_and_notify(cfg: Config, store: Store, changes: list[Change], actor: str | None,
                      source: str) -> list[FindingEventRow]:
    """Apply the changes; an assignment is news for the new owner: queued with the change and sent
    now, as a run sends its notices."""
    from tieout.notify.outbox import dispatch, notice_plan

    notify = bool(cfg.notify.channels) and any(c.action == "assign" for c in changes)
    events = store.apply(changes, actor_name(actor), source, notice_plan(cfg.notify) if notify else None)
    if notify:
        report_notices(dispatch(cfg, store), _out())
    return events


def _changes(ids: list[str], action: str, note: str, **kw: Any) -> list[Change]:
    from tieout.lifecycle import Change

    return [Change(i, action, note, **kw) for i in ids]


@findings_app.command("assign")
def findings_assign(
    ids: list[str] = IDS_ARG,
    owner: str = typer.Option(..., "--owner", help="The new owner."),
    team: str | None = typer.Option(None, "--team", help="The owner's team."),
    note: str = NOTE_OPT,
    actor: str | None = ACTOR_OPT,
    config: Path = CONFIG_OPT,
) -> None:
    """Assign findings to an owner (open, acknowledged or assigned ones)."""
    _apply(config, _changes(ids, "assign", note, owner=owner, team=team), actor)


@findings_app.command("ack")
def findings_ack(ids: list[str] = IDS_ARG, note: str = NOTE_OPT, actor: str | None = ACTOR_OPT,
                 config: Path = CONFIG_OPT) -> None:
    """Acknowledge findings: someone has seen them and is looking."""
    _apply(config, _changes(ids, "ack", note), actor)


@findings_app.command("resolve")
def findings_resolve(
    ids: list[str] = IDS_ARG,
    resolution: str = typer.Option(..., "--resolution", help="fixed_in_source, credit_note, write_off or "
                                   "false_positive."),
    note: str = NOTE_OPT,
    actor: str | None = ACTOR_OPT,
    config: Path = CONFIG_OPT,
) -> None:
    """Resolve findings with a resolution kind and why."""
    _apply(config, _changes(ids, "resolve", note, resolution=resolution), actor)


@findings_app.command("waive")
def findings_waive(
    ids: list[str] = IDS_ARG,
    note: str = typer.Option(..., "--note", "-m", help="Why the finding is accepted as is (required)."),
    until: datetime | None = typer.Option(None, "--until", formats=["%Y-%m-%d"], help="Waiver expiry date "
                                          "(YYYY-MM-DD); found again after it, the finding reopens."),
    actor: str | None = ACTOR_OPT,
    config: Path = CONFIG_OPT,
) -> None:
    """Waive findings with a reason and an optional expiry."""
    _apply(config, _changes(ids, "waive", note, until=until.date() if until else None), actor)


@findings_app.command("comment")
def findings_comment(
    ids: list[str] = IDS_ARG,
    note: str = typer.Option(..., "--note", "-m", help="The comment."),
    actor: str | None = ACTOR_OPT,
    config: Path = CONFIG_OPT,
) -> None:
    """Add a comment to findings (their status does not change)."""
    _apply(config, _changes(ids, "comment", note), actor)


@findings_app.command("reopen")
def findings_reopen(ids: list[str] = IDS_ARG, note: str = NOTE_OPT, actor: str | None = ACTOR_OPT,
                    config: Path = CONFIG_OPT) -> None:
    """Reopen resolved, waived or closed findings."""
    _apply(config, _changes(ids, "reopen", note), actor)


@findings_app.command("import")
def findings_import(
    file: Path = typer.Argument(..., help="A CSV or XLSX from `findings export`, status/owner columns edited."),
    actor: str | None = ACTOR_OPT,
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate and show the changes; write nothing."),
    config: Path = CONFIG_OPT,
) -> None:
    """Apply the status and owner edits of an exported spreadsheet, all or nothing."""
    from tieout.config import load_config
    from tieout.lifecycle import bulk_changes, read_bulk_edits

    edits = read_bulk_edits(file)
    cfg = load_config(config)
    with _open_store(cfg) as store:
        ids = sorted({e.values.get("finding_id", "") for e in edits})
        current = {r.finding_id: (r.status, r.owner) for r in store.findings(ids=ids)}
        changes = bulk_changes(file, edits, current)
        out = _out()
        if not changes:
            out.print(f"{file}: no changes")
            return
        if dry_run:
            for c in changes:
                out.print(Text(f"{c.finding_id}: {c.action}" + (f" owner={c.owner}" if c.owner else "")
                               + (f" resolution={c.resolution}" if c.resolution else "")))
            out.print(f"{len(changes)} changes valid (dry run: nothing written)")
            return
        _apply_and_notify(cfg, store, changes, actor, f"import {file.name}")
    out.print(f"applied {len(changes)} changes from {file}")

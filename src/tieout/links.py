"""Entity links in a run: gathers each system's accounts from the canonical tables, resolves them
against the billing customers (`entities`), keeps the review queue and people's decisions in the
store, and hands the checks an `entity_links` table.

Its store tables live here, on the store's declarative base, created on first use:
`entity_links` (the links of the latest run) and `entity_link_candidates` (the review queue and decisions).
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

import ibis.expr.types as ir
import pyarrow as pa
from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from tieout.config import Config
from tieout.engines.base import Engine
from tieout.entities import Account, Candidate, Resolution, ResolutionParams, resolve
from tieout.errors import ConfigError, StoreError
from tieout.store import EntityLinkRow, LinkCandidateRow, Store

HUB = "billing"
DECISIONS = ("confirmed", "rejected")


def candidate_id(system: str, account_id: str, customer_id: str) -> str:
    text = "\x1f".join((system, account_id, customer_id))
    return "L" + hashlib.sha256(text.encode()).hexdigest()[:11]


# --- accounts of each system ----------------------------------------------------------------------


def _rows(t: ir.Table, *cols: str) -> list[dict[str, str | None]]:
    rows: list[dict[str, str | None]] = t.select(*cols).distinct().to_pyarrow().to_pylist()
    return rows


def system_accounts(tables: dict[str, ir.Table]) -> tuple[list[Account], list[Account]]:
    """(billing customers, every other system's accounts) from the canonical tables."""
    hub: list[Account] = []
    if "customers" in tables:
        for r in _rows(tables["customers"], "customer_id", "name", "crm_id", "gateway_customer_id"):
            refs = tuple((s, str(r[c])) for s, c in (("crm", "crm_id"), ("gateway", "gateway_customer_id")) if r[c])
            hub.append(Account(HUB, str(r["customer_id"]), r["name"], refs=refs))
    others: list[Account] = []
    if "crm_accounts" in tables:
        others += [Account("crm", str(r["account_id"]), r["name"], r["customer_id"])
                   for r in _rows(tables["crm_accounts"], "account_id", "name", "customer_id")]
    for system, table in (("operations", "operations_roster"), ("entitlements", "entitlements")):
        if table in tables:
            t = tables[table]
            t = t.filter(t.account_id.notnull())
            firsts = t.group_by("account_id").aggregate(account_name=t.account_name.max(),
                                                        customer_id=t.customer_id.max())
            others += [Account(system, str(r["account_id"]), r["account_name"], r["customer_id"])
                       for r in _rows(firsts, "account_id", "account_name", "customer_id")]
    if "gateway_transactions" in tables:
        g = tables["gateway_transactions"]
        others += [Account("gateway", str(r["customer_id"]), None)
                   for r in _rows(g.filter(g.customer_id.notnull()), "customer_id")]
    return hub, others


def read_aliases(cfg: Config) -> dict[str, str]:
    """The curated alias table: `entities.aliases` plus the rows of `entities.alias_file`."""
    out = dict(cfg.entities.aliases)
    if cfg.entities.alias_file is None:
        return out
    path = cfg.resolve(cfg.entities.alias_file)
    where = cfg.where(("entities", "alias_file"))
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or not {"alias", "name"} <= set(reader.fieldnames):
                raise ConfigError(f"{path.name}:1: alias file needs the columns alias,name "
                                  f"(found {', '.join(reader.fieldnames or [])}) (entities.alias_file, {where})")
            for r in reader:
                alias, name = (r["alias"] or "").strip(), (r["name"] or "").strip()
                if not alias or not name:
                    raise ConfigError(f"{path.name}:{reader.line_num}: alias and name must both be filled")
                out[alias] = name
    except FileNotFoundError:
        raise ConfigError(f"{where}: entities.alias_file: file not found: {path}") from None
    return out


# --- a run's links ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decisions:
    confirmed: list[tuple[str, str, str]]
    rejected: list[tuple[str, str, str]]


def decisions(store: Store) -> Decisions:
    with Session(store.engine) as s:
        rows = s.execute(select(LinkCandidateRow.system, LinkCandidateRow.account_id, LinkCandidateRow.customer_id,
                                LinkCandidateRow.status).where(LinkCandidateRow.status.in_(DECISIONS))).all()
    return Decisions([(r[0], r[1], r[2]) for r in rows if r[3] == "confirmed"],
                     [(r[0], r[1], r[2]) for r in rows if r[3] == "rejected"])


def resolve_tables(cfg: Config, tables: dict[str, ir.Table], d: Decisions) -> Resolution:
    hub, others = system_accounts(tables)
    e = cfg.entities
    params = ResolutionParams(auto_score=e.auto_score, review_score=e.review_score, margin=e.margin)
    return resolve(hub, others, aliases=read_aliases(cfg), confirmed=d.confirmed, rejected=d.rejected,
                   params=params)


def links_table(engine: Engine, res: Resolution) -> ir.Table:
    """The links as an engine table: system, account_id, customer_id, method, score."""
    cols: dict[str, list[object]] = {"system": [], "account_id": [], "customer_id": [], "method": [], "score": []}
    for lk in res.links:
        cols["system"].append(lk.system)
        cols["account_id"].append(lk.account_id)
        cols["customer_id"].append(lk.customer_id)
        cols["method"].append(str(lk.method))
        cols["score"].append(float(lk.score))
    schema = pa.schema([("system", pa.string()), ("account_id", pa.string()), ("customer_id", pa.string()),
                        ("method", pa.string()), ("score", pa.float64())])
    return engine.from_arrow("entity_links", pa.table(cols, schema=schema))


def write_resolution(s: Session, run_id: int, res: Resolution) -> None:
    """Store the run's links and refresh the review queue (decided candidates keep their decision), in
    the caller's transaction: a run writes them with everything else (RunRecord.also)."""
    s.execute(delete(EntityLinkRow))  # only the latest run's links are kept: they are rebuilt every run
    if res.links:
        s.execute(insert(EntityLinkRow), [dict(run_id=run_id, system=lk.system, account_id=lk.account_id,
                                               customer_id=lk.customer_id, method=str(lk.method),
                                               score=float(lk.score)) for lk in res.links])
    known = {r[0]: r[1] for r in s.execute(select(LinkCandidateRow.candidate_id, LinkCandidateRow.status))}
    fresh: dict[str, Candidate] = {candidate_id(c.system, c.account_id, c.customer_id): c for c in res.review}
    new_rows = [dict(candidate_id=cid, system=c.system, account_id=c.account_id, account_name=c.account_name,
                     customer_id=c.customer_id, customer_name=c.customer_name, score=c.score, reason=c.reason,
                     status="pending", last_seen_run=run_id, note="")
                for cid, c in fresh.items() if cid not in known]
    if new_rows:
        s.execute(insert(LinkCandidateRow), new_rows)
    for cid, c in fresh.items():
        if cid in known:
            s.execute(update(LinkCandidateRow).where(LinkCandidateRow.candidate_id == cid)
                      .values(score=c.score, reason=c.reason, last_seen_run=run_id))
    # A pending candidate the run no longer proposes (data changed) leaves the queue.
    stale = [cid for cid, st in known.items() if st == "pending" and cid not in fresh]
    for i in range(0, len(stale), 500):
        s.execute(delete(LinkCandidateRow).where(LinkCandidateRow.candidate_id.in_(stale[i:i + 500])))


def link_entities(cfg: Config, engine: Engine, tables: dict[str, ir.Table],
                  store: Store) -> tuple[dict[str, ir.Table], Resolution | None]:
    """The run's step between the quality gate and the checks: ({'entity_links': table}, the
    resolution to record with the run), empty when there are no billing customers to link to."""
    if "customers" not in tables:
        return {}, None
    res = resolve_tables(cfg, tables, decisions(store))
    return {"entity_links": links_table(engine, res)}, res


# --- review ---------------------------------------------------------------------------------------------


def candidates(store: Store, status: str | None = "pending") -> list[LinkCandidateRow]:
    q = select(LinkCandidateRow)
    if status is not None:
        q = q.where(LinkCandidateRow.status == status)
    q = q.order_by(LinkCandidateRow.system, LinkCandidateRow.account_id, LinkCandidateRow.score.desc())
    with Session(store.engine) as s:
        rows = list(s.scalars(q))
        s.expunge_all()
        return rows


def decide(store: Store, cand_id: str, decision: str, actor: str, note: str = "") -> LinkCandidateRow:
    """Confirm or reject a candidate (a unique id prefix is enough); remembered for next runs."""
    if decision not in DECISIONS:
        raise ValueError(f"decision must be one of {DECISIONS}")
    with Session(store.engine) as s, s.begin():
        rows = list(s.scalars(select(LinkCandidateRow).where(LinkCandidateRow.candidate_id.like(cand_id + "%"))
                              .limit(2)))
        if len(rows) != 1:
            what = "no" if not rows else "more than one"
            raise StoreError(f"{what} link candidate with id '{cand_id}' (see `tieout links review`)")
        row = rows[0]
        row.status = decision
        row.decided_by = actor
        row.decided_at = datetime.now(UTC)
        row.note = note
        s.flush()
        s.expunge(row)
        return row


def run_links(store: Store, run_id: int | None = None) -> list[EntityLinkRow]:
    """The links of a run (default: the latest run that recorded links)."""
    with Session(store.engine) as s:
        if run_id is None:
            run_id = s.scalars(select(EntityLinkRow.run_id).order_by(EntityLinkRow.run_id.desc()).limit(1)).first()
        if run_id is None:
            return []
        rows = list(s.scalars(select(EntityLinkRow).where(EntityLinkRow.run_id == run_id)
                              .order_by(EntityLinkRow.system, EntityLinkRow.account_id)))
        s.expunge_all()
        return rows


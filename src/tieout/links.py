"""Entity links in a run: gathers each system's accounts from the canonical tables, resolves them
against the billing customers, keeps the review queue and people's decisions in the store, and hands
the checks an `entity_links` table. Decisions and mapped ids are joins on the engine; only the
accounts left over go to the name stages in Python (`entities.link_by_name`).

Its store tables live here, on the store's declarative base, created on first use:
`entity_links` (the links of the latest run) and `entity_link_candidates` (the review queue and decisions).
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import ibis
import ibis.expr.types as ir
import pyarrow as pa
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from tieout.config import Config
from tieout.engines.base import Engine
from tieout.entities import Account, Candidate, Link, Method, Resolution, ResolutionParams, link_by_name
from tieout.errors import ConfigError, StoreError
from tieout.store import EntityLinkRow, LinkCandidateRow, Store, insert_plain_rows

HUB = "billing"
DECISIONS = ("confirmed", "rejected")
# The tables whose accounts are linked by name too (and so can put candidates in the review queue):
# table -> system. Gateway accounts (`gateway_transactions.customer_id`) link by id only.
NAMED_ACCOUNTS = {"crm_accounts": "crm", "operations_roster": "operations", "entitlements": "entitlements"}
LINKS_SCHEMA = pa.schema([("system", pa.string()), ("account_id", pa.string()), ("customer_id", pa.string()),
                          ("method", pa.string()), ("score", pa.float64())])


def candidate_id(system: str, account_id: str, customer_id: str) -> str:
    text = "\x1f".join((system, account_id, customer_id))
    return "L" + hashlib.sha256(text.encode()).hexdigest()[:11]


# --- accounts of each system ----------------------------------------------------------------------


def _rows(t: ir.Table, *cols: str) -> list[dict[str, str | None]]:
    rows: list[dict[str, str | None]] = t.select(*cols).distinct().to_pyarrow().to_pylist()
    return rows


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


def _links_arrow(links: list[Link]) -> pa.Table:
    return pa.table({"system": [lk.system for lk in links], "account_id": [lk.account_id for lk in links],
                     "customer_id": [lk.customer_id for lk in links], "method": [str(lk.method) for lk in links],
                     "score": [float(lk.score) for lk in links]}, schema=LINKS_SCHEMA)


# --- a run's links, on the engine -----------------------------------------------------------------


@dataclass(frozen=True)
class RunLinks:
    """What a run's entity resolution gives: the links as an engine table (None when the run had no
    need to resolve, see `link_entities`) and the candidates for the review queue."""

    table: ir.Table | None
    review: list[Candidate]


def _same_id(system: ir.StringValue, account_id: ir.StringValue) -> ir.StringValue:
    """`entities.same_id` on the engine: an 18-character Salesforce id compares by its first 15."""
    salesforce18 = (system == "crm") & account_id.re_search(r"^[\p{L}\p{N}]{18}$")
    return ibis.ifelse(salesforce18, account_id.substr(0, 15), account_id)


def account_table(tables: dict[str, ir.Table]) -> ir.Table | None:
    """Every other system's accounts as one engine table (system, account_id, name, mapped_id)."""
    parts: list[ir.Table] = []
    if "crm_accounts" in tables:
        t = tables["crm_accounts"]
        parts.append(t.select(system=ibis.literal("crm"), account_id=t.account_id.cast("string"),
                              name=t.name.cast("string"), mapped_id=t.customer_id.cast("string")))
    for system, table in (("operations", "operations_roster"), ("entitlements", "entitlements")):
        if table in tables:
            t = tables[table]
            t = t.filter(t.account_id.notnull())
            t = t.group_by("account_id").aggregate(name=t.account_name.max(), mapped_id=t.customer_id.max())
            parts.append(t.select(system=ibis.literal(system), account_id=t.account_id.cast("string"),
                                  name=t.name.cast("string"), mapped_id=t.mapped_id.cast("string")))
    if "gateway_transactions" in tables:
        g = tables["gateway_transactions"]
        g = g.filter(g.customer_id.notnull())
        none = ibis.null("string")
        parts.append(g.select(system=ibis.literal("gateway"), account_id=g.customer_id.cast("string"), name=none,
                              mapped_id=none))
    # distinct on its own: ibis.union of a single table is that table, duplicates and all
    return ibis.union(*parts).distinct() if parts else None


def _hub_refs(customers: ir.Table) -> ir.Table:
    """(r_system, r_key) -> r_customer: the other systems' ids billing records, in their `same_id`
    form. Two billing customers recording one id: the smallest customer id takes it."""
    parts = []
    for system, col in (("crm", "crm_id"), ("gateway", "gateway_customer_id")):
        ref = customers[col].cast("string")
        c = customers.filter(ref.notnull() & (ref != ""))
        ref = c[col].cast("string")
        parts.append(c.select(r_system=ibis.literal(system), r_key=_same_id(ibis.literal(system), ref),
                              r_customer=c.customer_id.cast("string")))
    refs = ibis.union(*parts)
    return refs.group_by("r_system", "r_key").aggregate(r_customer=refs.r_customer.min())


def _decision_table(engine: Engine, name: str, rows: list[tuple[str, str, str]], prefix: str) -> ir.Table:
    cols = (f"{prefix}_system", f"{prefix}_account", f"{prefix}_customer")
    schema = pa.schema([(c, pa.string()) for c in cols])
    return engine.from_arrow(name, pa.table({c: [r[i] for r in rows] for i, c in enumerate(cols)}, schema=schema))


def decided_accounts(engine: Engine, tables: dict[str, ir.Table], d: Decisions) -> ir.Table | None:
    """Each account with the customer and method of the first two stages, as engine joins: a
    person's confirmation (`confirmed`), then a mapped id (`mapped_id`) unless that pair was rejected;
    NULL method for the rest. Columns: system, account_id, name, customer_id, method."""
    accounts = account_table(tables)
    if accounts is None:
        return None
    customers = tables["customers"]
    hub_ids = customers.select(h_id=customers.customer_id.cast("string")).distinct()
    refs = _hub_refs(customers)
    a = accounts.mutate(key=_same_id(accounts.system, accounts.account_id))
    j = a.left_join(hub_ids, a.mapped_id == hub_ids.h_id)
    j = j.left_join(refs, (j.system == refs.r_system) & (j.key == refs.r_key))
    confirmed = _confirmed(customers, d.confirmed)
    if confirmed:
        conf = _decision_table(engine, "confirmed_links", confirmed, "d")
        j = j.left_join(conf, (j.system == conf.d_system) & (j.account_id == conf.d_account))
    id_customer = ibis.coalesce(j.h_id, j.r_customer)
    if d.rejected:  # a handful of pairs: compared as one key each
        pair = j.system.concat("\x1f", j.account_id, "\x1f", id_customer)
        keys = sorted({"\x1f".join(r) for r in d.rejected})
        id_customer = ibis.ifelse(pair.isin(keys), ibis.null("string"), id_customer)
    d_customer = j.d_customer if confirmed else ibis.null("string")
    a = j.select("system", "account_id", "name", id_customer=id_customer, d_customer=d_customer)
    method = ibis.cases((a.d_customer.notnull(), str(Method.CONFIRMED)),
                        (a.id_customer.notnull(), str(Method.MAPPED_ID)))
    return a.select("system", "account_id", "name", customer_id=ibis.coalesce(a.d_customer, a.id_customer),
                    method=method)


def _confirmed(customers: ir.Table, confirmed: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """The confirmed pairs whose customer billing still has, one per account (as `resolve` keeps them)."""
    if not confirmed:
        return []
    ids = customers.customer_id.cast("string")
    wanted = sorted({c for _, _, c in confirmed})
    known = set(customers.filter(ids.isin(wanted)).select(c=ids).distinct().to_pyarrow().column("c").to_pylist())
    yes = {(s, a): c for s, a, c in confirmed if c in known}
    return [(s, a, c) for (s, a), c in yes.items()]


def resolution_params(cfg: Config) -> ResolutionParams:
    e = cfg.entities
    return ResolutionParams(auto_score=e.auto_score, review_score=e.review_score, margin=e.margin)


def has_pending_candidates(store: Store) -> bool:
    with Session(store.engine) as s:
        return bool(s.scalar(select(func.count()).select_from(LinkCandidateRow)
                             .where(LinkCandidateRow.status == "pending")))


def link_entities(cfg: Config, engine: Engine, tables: dict[str, ir.Table], store: Store, *,
                  read: bool = True) -> tuple[dict[str, ir.Table], RunLinks | None]:
    """The run's step between the quality gate and the checks: ({'entity_links': table}, the links
    to record with the run); ({}, None) when there are no billing customers to link to.

    `read` says whether an enabled check or rule reads `entity_links`. When none does, the tables
    hold no account that links by name (only gateway ids) and the review queue has nothing pending,
    nothing could change for anyone: the run skips resolving (RunLinks with no table; the run then
    records no links)."""
    if "customers" not in tables:
        return {}, None
    if not read and not any(t in tables for t in NAMED_ACCOUNTS) and not has_pending_candidates(store):
        return {}, RunLinks(None, [])
    found = resolve_on_engine(engine, tables, decisions(store), aliases=read_aliases(cfg),
                              params=resolution_params(cfg))
    return {"entity_links": found.table} if found.table is not None else {}, found


def resolve_on_engine(engine: Engine, tables: dict[str, ir.Table], d: Decisions, *,
                      aliases: Mapping[str, str] | None = None, params: ResolutionParams | None = None) -> RunLinks:
    """The links `entities.resolve` makes of every system's accounts, with the decisions and mapped ids
    joined on the engine and only the accounts left over (those with a name) resolved by name in Python."""
    decided = decided_accounts(engine, tables, d)
    if decided is None:
        return RunLinks(engine.from_arrow("entity_links", LINKS_SCHEMA.empty_table()), [])
    decided = engine.materialize("entity_accounts", decided, scratch=True)
    by_id = decided.filter(decided.method.notnull()).select(
        "system", "account_id", "customer_id", "method", score=ibis.literal(100.0, "float64"))
    pending = [Account(r["system"], r["account_id"], r["name"]) for r in decided.filter(
        decided.method.isnull() & decided.name.notnull() & (decided.name != "")).select(
        "system", "account_id", "name").to_pyarrow().to_pylist()]
    review: list[Candidate] = []
    links = by_id
    if pending:
        res = _link_names(tables["customers"], by_id, pending, d, aliases, params)
        review = res.review
        if res.links:
            links = ibis.union(by_id.cast(by_id.schema()), engine.from_arrow("name_links", _links_arrow(res.links))
                               .cast(by_id.schema()))
    return RunLinks(engine.materialize("entity_links", links), review)


def _link_names(customers: ir.Table, by_id: ir.Table, pending: list[Account], d: Decisions,
                aliases: Mapping[str, str] | None, params: ResolutionParams | None) -> Resolution:
    """The name stages for the accounts no decision or id linked: the only part in Python, on the
    billing customers' names and those accounts (never the gateway's: they have no name)."""
    hub = [Account(HUB, str(r["customer_id"]), r["name"]) for r in _rows(customers, "customer_id", "name")]
    systems = sorted({a.system for a in pending})
    taken = by_id.filter(by_id.system.isin(systems)).select("system", "customer_id").distinct()
    claimed = [(r["system"], r["customer_id"]) for r in taken.to_pyarrow().to_pylist()]
    return link_by_name(hub, pending, aliases=aliases, rejected=d.rejected, claimed=claimed, params=params)


# --- a run's links in the store --------------------------------------------------------------------


def _insert_links(s: Session, run_id: int, batches: Iterable[pa.RecordBatch]) -> None:
    """Insert links batch by batch at the driver's speed: Python rows are one batch at a time."""
    conn = s.connection()
    cols = ("system", "account_id", "customer_id", "method", "score")
    for b in batches:
        c = b.to_pydict()
        rows = zip(*(c[k] for k in cols), strict=True)
        insert_plain_rows(conn, EntityLinkRow.__tablename__, ("run_id", *cols), ((run_id, *r) for r in rows))


def _refresh_review(s: Session, run_id: int, review: list[Candidate]) -> None:
    """Refresh the review queue: new candidates are pending, known ones keep their decision (their
    score and reason follow the data), pending ones the run no longer proposes (data changed) leave."""
    known = {r[0]: r[1] for r in s.execute(select(LinkCandidateRow.candidate_id, LinkCandidateRow.status))}
    fresh: dict[str, Candidate] = {candidate_id(c.system, c.account_id, c.customer_id): c for c in review}
    new_rows = [dict(candidate_id=cid, system=c.system, account_id=c.account_id, account_name=c.account_name,
                     customer_id=c.customer_id, customer_name=c.customer_name, score=c.score, reason=c.reason,
                     status="pending", last_seen_run=run_id, note="")
                for cid, c in fresh.items() if cid not in known]
    if new_rows:
        s.execute(insert(LinkCandidateRow), new_rows)
    again = [dict(candidate_id=cid, score=c.score, reason=c.reason, last_seen_run=run_id)
             for cid, c in fresh.items() if cid in known]
    if again:
        s.execute(update(LinkCandidateRow), again)  # bulk UPDATE by primary key (executemany)
    stale = [cid for cid, st in known.items() if st == "pending" and cid not in fresh]
    for i in range(0, len(stale), 500):
        s.execute(delete(LinkCandidateRow).where(LinkCandidateRow.candidate_id.in_(stale[i:i + 500])))


def write_run_links(s: Session, run_id: int, links: RunLinks) -> None:
    """Store the run's links and refresh the review queue, in the caller's transaction (a run writes
    them with everything else: RunRecord.also). Only the latest run's links are kept. A run that
    skipped resolving records no links and leaves the queue (nothing in it is pending) as it is."""
    s.execute(delete(EntityLinkRow))
    if links.table is None:
        return
    # Arrow in full (compact), Python rows one batch at a time (ibis' to_pyarrow_batches fails on DuckDB 2).
    _insert_links(s, run_id, links.table.to_pyarrow().to_batches(max_chunksize=50_000))
    _refresh_review(s, run_id, links.review)


def write_resolution(s: Session, run_id: int, res: Resolution) -> None:
    """`write_run_links` for a resolution made in Python (`resolve`)."""
    s.execute(delete(EntityLinkRow))
    _insert_links(s, run_id, _links_arrow(res.links).to_batches())
    _refresh_review(s, run_id, res.review)


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


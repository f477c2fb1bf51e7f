"""Entity resolution (tieout.entities): name cleaning golden cases, every linking stage, the review
queue, decisions, and the promise that distinct companies with similar names are never merged."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

import ibis.expr.types as ir
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tieout import entities
from tieout import links as links_module
from tieout.config import load_config
from tieout.engines.base import Engine
from tieout.entities import Account, Method, Resolution, clean_name, resolve, same_words
from tieout.links import (
    Decisions,
    RunLinks,
    candidates,
    link_entities,
    resolve_on_engine,
    run_links,
    write_run_links,
)
from tieout.store import RunRecord, Store


@pytest.mark.parametrize(("raw", "cleaned"), [
    ("ACME Corp.", "acme"),
    ("Acme Corporation, Inc.", "acme"),
    ("The Acme Company", "acme"),
    ("  acme   corp ", "acme"),
    ("Acme Labs", "acme laboratories"),
    ("Société Générale S.A.", "societe generale"),
    ("Müller & Söhne GmbH", "muller and sohne"),
    ("Globex Intl Ltd", "globex international"),
    ("Smith+Jones L.L.C.", "smith and jones"),
    ("Inc", "inc"),  # a name that is only a legal form keeps it
    ("", ""),
    (None, ""),
])
def test_clean_name_golden_cases(raw: str | None, cleaned: str) -> None:
    assert clean_name(raw) == cleaned


def test_same_words_rejects_an_extra_or_different_word() -> None:
    assert same_words("acme", "acme")
    assert same_words("globex healthcare", "globex helathcare")  # a typo
    assert same_words("data bridge", "databridge")  # a split word
    assert not same_words("acme", "acme laboratories")
    assert not same_words("pine apex", "alpine apex")  # close letters, another word


HUB = [
    Account("billing", "C1", "Acme Corp"),
    Account("billing", "C2", "Acme Labs"),
    Account("billing", "C3", "Globex International Ltd"),
    Account("billing", "C4", "Initech Healthcare Partners LLC", refs=(("crm", "X9"),)),
    Account("billing", "C5", "Vandelay Industries Inc."),
    Account("billing", "C6", "Umbrella Pharmaceuticals GmbH"),
    Account("billing", "C7", "Umbrella Pharmaceuticals AG"),
]


def _links(others: list[Account], **kw: object) -> dict[str, tuple[str, Method]]:
    res = resolve(HUB, others, **kw)  # type: ignore[arg-type]
    return {lk.account_id: (lk.customer_id, lk.method) for lk in res.links}


def test_each_stage_links_with_its_method() -> None:
    others = [
        Account("crm", "A", "ACME Corporation, Inc."),
        Account("crm", "X9", "whatever the CRM calls it"),
        Account("crm", "B", "Globex Intl."),
        Account("crm", "D", "Vandelay Industires"),  # a typo
        Account("crm", "F", "anything", mapped_id="C2"),
    ]
    assert _links(others) == {"A": ("C1", Method.EXACT_NAME), "X9": ("C4", Method.MAPPED_ID),
                              "B": ("C3", Method.EXACT_NAME), "D": ("C5", Method.FUZZY),
                              "F": ("C2", Method.MAPPED_ID)}


def test_salesforce_15_and_18_character_ids_are_one_record() -> None:
    hub = [Account("billing", "C1", "Acme Corp", refs=(("crm", "0015g00000AbCdE"),))]
    res = resolve(hub, [Account("crm", "0015g00000AbCdEAAQ", "something else")])
    assert [(lk.customer_id, lk.method) for lk in res.links] == [("C1", Method.MAPPED_ID)]


def test_a_legacy_name_links_only_through_the_alias_table() -> None:
    legacy = [Account("crm", "E", "Kramerica, Inc.")]
    assert _links(legacy) == {}
    assert _links(legacy, aliases={"Kramerica": "Vandelay Industries Inc"}) == {"E": ("C5", Method.ALIAS)}


def test_every_link_carries_its_score() -> None:
    res = resolve(HUB, [Account("crm", "D", "Vandelay Industires"), Account("crm", "A", "Acme Corp")])
    scores = {lk.account_id: lk.score for lk in res.links}
    assert scores["A"] == 100.0
    assert 90.0 <= scores["D"] < 100.0


def test_similar_names_of_distinct_companies_are_never_merged() -> None:
    others = [Account("crm", "1", "ACME Labs, Inc."), Account("crm", "2", "Acme Corporation"),
              Account("crm", "3", "Acme Research"), Account("crm", "4", "Acme Lab")]
    res = resolve(HUB, others)
    links = {lk.account_id: lk.customer_id for lk in res.links}
    assert links == {"1": "C2", "2": "C1"}
    assert "3" not in links and "4" not in links  # a word differs: review or nothing, never a merge
    assert {c.account_id for c in res.review} <= {"3", "4"}


def test_two_billing_customers_with_one_cleaned_name_go_to_review() -> None:
    res = resolve(HUB, [Account("crm", "U", "UMBRELLA PHARMACEUTICALS")])
    assert res.links == []
    assert {c.customer_id for c in res.review} == {"C6", "C7"}
    assert all(c.account_id == "U" for c in res.review)


def test_two_accounts_claiming_one_customer_by_name_go_to_review() -> None:
    res = resolve(HUB, [Account("crm", "P", "Globex International"), Account("crm", "Q", "Globex Intl")])
    assert res.links == []
    assert {(c.account_id, c.customer_id) for c in res.review} == {("P", "C3"), ("Q", "C3")}


def test_decisions_override_names_and_rejections_are_never_proposed_again() -> None:
    ambiguous = Account("crm", "R", "Acme Lab")
    first = resolve(HUB, [ambiguous])
    assert first.review and first.links == []
    proposed = first.review[0]
    confirmed = resolve(HUB, [ambiguous], confirmed=[("crm", "R", proposed.customer_id)])
    assert [(lk.customer_id, lk.method) for lk in confirmed.links] == [(proposed.customer_id, Method.CONFIRMED)]
    rejected = resolve(HUB, [ambiguous], rejected=[(c.system, c.account_id, c.customer_id) for c in first.review])
    assert rejected.links == []
    assert all(c.customer_id != proposed.customer_id for c in rejected.review)
    # a rejected mapped id is not followed either
    res = resolve(HUB, [Account("crm", "M", "Zzz", mapped_id="C1")], rejected=[("crm", "M", "C1")])
    assert res.links == []


def test_accounts_without_a_name_stay_unresolved() -> None:
    res = resolve(HUB, [Account("crm", "N", ""), Account("crm", "O", None), Account("crm", "P", " . ")])
    assert res.links == [] and res.review == []
    assert {a.account_id for a in res.unresolved} == {"N", "O", "P"}


@settings(max_examples=25, deadline=None)
@given(st.randoms(use_true_random=False))
def test_links_do_not_depend_on_input_order(rnd: random.Random) -> None:
    others = [Account("crm", str(i), n) for i, n in enumerate(
        ("ACME corp", "acme labs inc", "Globex Intl", "Vandelay Industires", "Umbrella Pharmaceuticals",
         "Initech Healthcare Partners", "Acme Research", "Globex International"))]
    base = resolve(HUB, others)
    shuffled = list(others)
    rnd.shuffle(shuffled)
    hub = list(HUB)
    rnd.shuffle(hub)
    again = resolve(hub, shuffled)
    assert sorted(base.links, key=str) == sorted(again.links, key=str)
    assert sorted(base.review, key=str) == sorted(again.review, key=str)


# --- a run resolves on the engine: decisions and mapped ids are joins, names only for the rest ---------

NAMES = ("Acme Corp", "ACME Corporation", "Acme Labs", "Globex Intl", "Globex International Ltd", "Initech",
         "Vandelay Industries", "Vandelay Industires", "Umbrella GmbH", "Umbrella AG", "", None)


def _arrow(rows: list[dict[str, str | None]], cols: tuple[str, ...]) -> pa.Table:
    return pa.table({c: [r[c] for r in rows] for c in cols}, schema=pa.schema([(c, pa.string()) for c in cols]))


@st.composite
def _workspaces(draw: st.DrawFn) -> tuple[dict[str, pa.Table], Decisions]:
    """Billing customers and CRM / operations / gateway accounts with names from a look-alike pool,
    mapped ids (some unknown to billing), billing-side refs (some 18-character Salesforce ids), and
    decisions on some pairs."""
    n = draw(st.integers(1, 8))
    cids = [f"C{i}" for i in range(n)]
    sf = [f"0015g00000Ab{i:03d}" for i in range(12)]
    customers, refs_crm, refs_gw = [], set(), set()
    for c in cids:  # each id recorded by at most one customer: `resolve` keeps the last of duplicates
        crm = draw(st.sampled_from([None, *sf]))
        gw = draw(st.sampled_from([None, "cus_1", "cus_2", "cus_3"]))
        crm = None if crm in refs_crm else crm
        gw = None if gw in refs_gw else gw
        refs_crm.add(crm)
        refs_gw.add(gw)
        customers.append({"customer_id": c, "name": draw(st.sampled_from(NAMES)), "crm_id": crm,
                          "gateway_customer_id": gw})
    mapped = st.sampled_from([None, None, "C9", *cids])
    crm_ids = draw(st.lists(st.sampled_from([*sf, *(s + "AAQ" for s in sf), "X1", "X2"]), max_size=8, unique=True))
    crm_rows = [{"account_id": a, "name": draw(st.sampled_from(NAMES)), "customer_id": draw(mapped)} for a in crm_ids]
    ops_ids = draw(st.lists(st.sampled_from(["O1", "O2", "O3", "O4"]), max_size=4, unique=True))
    ops_rows = [{"account_id": a, "account_name": draw(st.sampled_from(NAMES)), "customer_id": draw(mapped)}
                for a in ops_ids]
    gw_rows = [{"customer_id": draw(st.sampled_from([None, "cus_1", "cus_2", "cus_3", "cus_9"]))}
               for _ in range(draw(st.integers(0, 6)))]
    accounts = [("crm", a) for a in crm_ids] + [("operations", a) for a in ops_ids]
    pairs = [(s, a, c) for s, a in accounts for c in [*cids, "C9"]]
    picked = draw(st.lists(st.sampled_from(pairs), max_size=4, unique=True)) if pairs else []
    status = [draw(st.sampled_from(("confirmed", "rejected"))) for _ in picked]
    d = Decisions([p for p, s in zip(picked, status, strict=True) if s == "confirmed"],
                  [p for p, s in zip(picked, status, strict=True) if s == "rejected"])
    return {"customers": _arrow(customers, ("customer_id", "name", "crm_id", "gateway_customer_id")),
            "crm_accounts": _arrow(crm_rows, ("account_id", "name", "customer_id")),
            "operations_roster": _arrow(ops_rows, ("account_id", "account_name", "customer_id")),
            "gateway_transactions": _arrow(gw_rows, ("customer_id",))}, d


def system_accounts(tables: dict[str, ir.Table]) -> tuple[list[Account], list[Account]]:
    """(billing customers, every other system's accounts) from the canonical tables, as Python objects:
    what `entities.resolve` takes, the reference the engine path (`links.resolve_on_engine`) is tested against."""
    hub: list[Account] = []
    if "customers" in tables:
        for r in links_module._rows(tables["customers"], "customer_id", "name", "crm_id", "gateway_customer_id"):
            refs = tuple((s, str(r[c])) for s, c in (("crm", "crm_id"), ("gateway", "gateway_customer_id")) if r[c])
            hub.append(Account(links_module.HUB, str(r["customer_id"]), r["name"], refs=refs))
    others: list[Account] = []
    if "crm_accounts" in tables:
        others += [Account("crm", str(r["account_id"]), r["name"], r["customer_id"])
                   for r in links_module._rows(tables["crm_accounts"], "account_id", "name", "customer_id")]
    for system, table in (("operations", "operations_roster"), ("entitlements", "entitlements")):
        if table in tables:
            t = tables[table]
            t = t.filter(t.account_id.notnull())
            firsts = t.group_by("account_id").aggregate(account_name=t.account_name.max(),
                                                        customer_id=t.customer_id.max())
            others += [Account(system, str(r["account_id"]), r["account_name"], r["customer_id"])
                       for r in links_module._rows(firsts, "account_id", "account_name", "customer_id")]
    if "gateway_transactions" in tables:
        g = tables["gateway_transactions"]
        others += [Account("gateway", str(r["customer_id"]), None)
                   for r in links_module._rows(g.filter(g.customer_id.notnull()), "customer_id")]
    return hub, others


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_workspaces())
def test_the_engine_path_links_exactly_as_resolve_does(engine: Engine,
                                                       case: tuple[dict[str, pa.Table], Decisions]) -> None:
    arrow, d = case
    tables = {name: engine.from_arrow(name, t) for name, t in arrow.items()}
    hub, others = system_accounts(tables)
    ref = resolve(hub, others, confirmed=d.confirmed, rejected=d.rejected)
    got = resolve_on_engine(engine, tables, d)
    assert got.table is not None
    links = {(r["system"], r["account_id"], r["customer_id"], r["method"], r["score"])
             for r in got.table.to_pyarrow().to_pylist()}
    assert links == {(lk.system, lk.account_id, lk.customer_id, str(lk.method), lk.score) for lk in ref.links}
    assert sorted(got.review, key=str) == sorted(ref.review, key=str)


def test_gateway_accounts_never_reach_python(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Accounts linked by id are joins: the name stages see only the accounts left with a name."""
    seen: list[list[Account]] = []
    real = entities.link_by_name

    def spy(hub: list[Account], pending: list[Account], **kw: object) -> Resolution:
        seen.append(list(pending))
        return real(hub, pending, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(links_module, "link_by_name", spy)
    customers = [{"customer_id": f"C{i}", "name": f"Customer {i}", "crm_id": None, "gateway_customer_id": f"cus_{i}"}
                 for i in range(50)]
    tables = {"customers": engine.from_arrow("customers", _arrow(customers, ("customer_id", "name", "crm_id",
                                                                            "gateway_customer_id"))),
              "gateway_transactions": engine.from_arrow("gateway_transactions", _arrow(
                  [{"customer_id": f"cus_{i}"} for i in range(60)], ("customer_id",))),
              "crm_accounts": engine.from_arrow("crm_accounts", _arrow(
                  [{"account_id": "A1", "name": "Customer 7 Inc", "customer_id": None},
                   {"account_id": "A2", "name": "whatever", "customer_id": "C3"}],
                  ("account_id", "name", "customer_id")))}
    got = resolve_on_engine(engine, tables, Decisions([], []))
    assert [[a.account_id for a in p] for p in seen] == [["A1"]]
    assert got.table is not None
    rows = {(r["system"], r["account_id"]): (r["customer_id"], r["method"]) for r in got.table.to_pyarrow().to_pylist()}
    assert len([k for k in rows if k[0] == "gateway"]) == 50  # cus_50..59: no billing customer records them
    assert rows[("crm", "A1")] == ("C7", "exact_name") and rows[("crm", "A2")] == ("C3", "mapped_id")


def _gateway_only(engine: Engine, **extra: pa.Table) -> dict[str, ir.Table]:
    customers = [{"customer_id": "C1", "name": "Initech Healthcare Partners LLC", "crm_id": None,
                  "gateway_customer_id": "cus_1"}]
    arrow = {"customers": _arrow(customers, ("customer_id", "name", "crm_id", "gateway_customer_id")),
             "gateway_transactions": _arrow([{"customer_id": "cus_1"}] * 3, ("customer_id",)), **extra}
    return {name: engine.from_arrow(name, t) for name, t in arrow.items()}


def _record(store: Store, links: RunLinks) -> None:
    store.record_run(RunRecord(
        started_at=datetime.now(UTC), config_hash="x", tieout_version="test", inputs=[], rule_versions={},
        as_of="2026-09-30", findings=[], checks_run=[], quarantine=[], metrics=[], counts={}, timings={},
        also=[lambda s, run_id: write_run_links(s, run_id, links)]))


def test_a_run_resolves_only_when_the_links_are_read_or_the_review_queue_can_change(
        engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "tieout.yaml").write_text("store: sqlite:///store.db\n")
    cfg = load_config(tmp_path / "tieout.yaml")
    store = Store(cfg.store_url())
    crm = _arrow([{"account_id": "A", "name": "Initech Healthcare Partners Group", "customer_id": None}],
                 ("account_id", "name", "customer_id"))  # an extra word: a candidate for review
    try:
        # a check reads the links: resolved, gateway ids only or not
        tables, links = link_entities(cfg, engine, _gateway_only(engine), store, read=True)
        assert links is not None and links.table is not None and "entity_links" in tables
        _record(store, links)
        assert [(r.account_id, r.customer_id, r.method) for r in run_links(store)] == [("cus_1", "C1", "mapped_id")]
        # a system linked by name: resolved though nothing reads the links (the review queue follows the data)
        _, links = link_entities(cfg, engine, _gateway_only(engine, crm_accounts=crm), store, read=False)
        assert links is not None and links.table is not None
        assert [(c.account_id, c.customer_id) for c in links.review] == [("A", "C1")]
        _record(store, links)
        assert [c.account_id for c in candidates(store)] == ["A"]
        # gateway ids only, nothing reads the links, but a candidate is pending: resolved, and it leaves the queue
        tables, links = link_entities(cfg, engine, _gateway_only(engine), store, read=False)
        assert links is not None and links.table is not None
        _record(store, links)
        assert candidates(store) == []
        # now nothing could use or change a resolution: skipped, and the run records no links
        tables, skipped = link_entities(cfg, engine, _gateway_only(engine), store, read=False)
        assert tables == {} and skipped is not None and skipped.table is None
        _record(store, skipped)
        assert run_links(store) == []
    finally:
        store.close()

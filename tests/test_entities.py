"""Entity resolution (tieout.entities): name cleaning golden cases, every linking stage, the review
queue, decisions, and the promise that distinct companies with similar names are never merged."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tieout.entities import Account, Method, clean_name, resolve, same_words


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

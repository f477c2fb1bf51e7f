"""Entity resolution: which account in the CRM, operations or entitlement system is which billing
customer. Stages, first that decides wins: a person's decision, a mapped id, the cleaned name, a
curated alias, then fuzzy similarity (rapidfuzz) inside blocks. Every link carries its method and
score; what is not certain goes to a review queue instead of being merged.

Pure logic on small records (accounts, not transactions): no engine, no store, no I/O.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from rapidfuzz import fuzz, process

# Legal forms and filler words dropped from the end (and "the" from the start) of a name. Dotted
# forms ("S.A.", "B.V.") are compared with their dots removed.
LEGAL_SUFFIXES = frozenset({
    "inc", "incorporated", "llc", "llp", "lp", "ltd", "limited", "corp", "corporation", "co", "company",
    "gmbh", "ag", "kg", "sa", "sas", "sarl", "srl", "spa", "bv", "nv", "plc", "pty", "oy", "ab", "as", "kk",
    "pte", "pvt", "sl", "se",
})
_WORD_SWAPS = {"&": " and ", "+": " and ", "@": " at "}
_ABBREVIATIONS = {"intl": "international", "int'l": "international", "svcs": "services", "svc": "service",
                  "mfg": "manufacturing", "tech": "technologies", "technology": "technologies", "grp": "group",
                  "assoc": "associates", "bros": "brothers", "ctr": "center", "centre": "center", "hosp": "hospital",
                  "med": "medical", "st": "saint", "mt": "mount", "labs": "laboratories", "lab": "laboratory"}
_PUNCT = re.compile(r"[^\w\s]")
_SPACE = re.compile(r"\s+")


def clean_name(name: str | None) -> str:
    """Canonical form of a company name: accents folded, case folded, punctuation and legal
    suffixes dropped, common abbreviations spelled out, whitespace collapsed. '' for no name."""
    if not name:
        return ""
    text = name
    if not text.isascii():
        text = unicodedata.normalize("NFKD", text)
        text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = text.casefold()
    for sym, word in _WORD_SWAPS.items():
        text = text.replace(sym, word)
    text = text.replace(".", "").replace("'", "")
    text = _PUNCT.sub(" ", text)
    tokens = [_ABBREVIATIONS.get(t, t) for t in _SPACE.split(text.strip()) if t]
    if tokens and tokens[0] == "the" and len(tokens) > 1:
        tokens = tokens[1:]
    while len(tokens) > 1 and tokens[-1] in LEGAL_SUFFIXES:
        tokens.pop()
    return " ".join(tokens)


class Method(StrEnum):
    """How a link was made, in the order the stages run."""

    CONFIRMED = "confirmed"  # a person confirmed it in `tieout links review`
    MAPPED_ID = "mapped_id"  # the system records the billing id, or billing records the system's id
    EXACT_NAME = "exact_name"  # same cleaned name, unique on both sides
    ALIAS = "alias"  # a curated alias (legacy name) maps to the billing name
    FUZZY = "fuzzy"  # similar enough, clearly the best, no extra word


@dataclass(frozen=True)
class Account:
    """One account of one system. For the hub (billing), `refs` are the ids it records for other
    systems' accounts; for the others, `mapped_id` is the hub id the system records, if any."""

    system: str
    account_id: str
    name: str | None
    mapped_id: str | None = None
    refs: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Link:
    system: str
    account_id: str
    customer_id: str
    method: Method
    score: float  # 0-100; 100 for ids, decisions, exact names and aliases


@dataclass(frozen=True)
class Candidate:
    """A pair that may be the same customer but is not certain enough to merge automatically."""

    system: str
    account_id: str
    account_name: str
    customer_id: str
    customer_name: str
    score: float
    reason: str


@dataclass(frozen=True)
class ResolutionParams:
    auto_score: float = 90.0  # fuzzy: at or above this (and unambiguous, no extra word) links automatically
    review_score: float = 75.0  # fuzzy: at or above this goes to review
    margin: float = 4.0  # the best must beat the runner-up by this much to link automatically
    max_block: int = 400  # a blocking key shared by more hub accounts than this is too common to use


@dataclass
class Resolution:
    links: list[Link] = field(default_factory=list)
    review: list[Candidate] = field(default_factory=list)
    unresolved: list[Account] = field(default_factory=list)

    def by_account(self) -> dict[tuple[str, str], Link]:
        return {(lk.system, lk.account_id): lk for lk in self.links}


Decision = tuple[str, str, str]  # (system, account_id, customer_id)


@dataclass
class _Hub:
    """The billing customers, indexed for every stage."""

    names: dict[str, str]  # customer_id -> display name
    cleaned: dict[str, str]  # customer_id -> cleaned name
    sorted_words: dict[str, str]  # customer_id -> cleaned name, words sorted (order-free comparison)
    by_clean: dict[str, list[str]]  # cleaned name -> customer_ids
    refs: dict[tuple[str, str], str]  # (system, account id) -> customer_id
    blocks: dict[str, list[str]]  # blocking key -> customer_ids


def _tokens(cleaned: str) -> list[str]:
    return cleaned.split()


def _block_keys(cleaned: str) -> set[str]:
    """Blocking keys that survive one typo per word, word order and a split or joined word: for
    every pair of words, their 3-letter prefixes and suffixes combined; each whole word; prefix and
    suffix of a one-word name; the first and last letters of the name without spaces."""
    toks = sorted(set(_tokens(cleaned)))
    ends = [(t[:3], t[-3:]) for t in toks]
    keys: set[str] = set()
    if len(toks) == 1:
        keys.update(("p:" + ends[0][0], "s:" + ends[0][1]))
    keys.update("w:" + t for t in toks)  # whole words: useful while rare (common ones exceed max_block)
    for i in range(len(toks)):
        for j in range(i + 1, len(toks)):
            for a in ends[i]:
                for b in ends[j]:
                    keys.add(f"{a}|{b}")
    joined = cleaned.replace(" ", "")
    if len(joined) >= 5:
        keys.add("j:" + joined[:5])
        keys.add("k:" + joined[-5:])
    return keys


def same_id(system: str, account_id: str) -> str:
    """The form under which two spellings of one id compare equal: Salesforce (CRM) record ids come
    as 15 case-sensitive characters or 18 with a checksum suffix, the same record either way."""
    if system == "crm" and len(account_id) == 18 and account_id.isalnum():
        return account_id[:15]
    return account_id


def _index_hub(hub: Sequence[Account], *, refs: bool = True) -> _Hub:
    names: dict[str, str] = {}
    cleaned: dict[str, str] = {}
    by_clean: dict[str, list[str]] = defaultdict(list)
    ids: dict[tuple[str, str], str] = {}
    for a in hub:
        names[a.account_id] = a.name or ""
        c = clean_name(a.name)
        cleaned[a.account_id] = c
        if c:
            by_clean[c].append(a.account_id)
        for system, ref in a.refs if refs else ():
            if ref:
                ids[(system, same_id(system, ref))] = a.account_id
    blocks: dict[str, list[str]] = defaultdict(list)
    for cid, c in cleaned.items():
        if c:
            for k in _block_keys(c):
                blocks[k].append(cid)
    sorted_words = {cid: " ".join(sorted(c.split())) for cid, c in cleaned.items()}
    return _Hub(names, cleaned, sorted_words, dict(by_clean), ids, dict(blocks))


def same_words(a: str, b: str, typo_score: float = 80.0) -> bool:
    """True when every word of each cleaned name has a counterpart in the other (equal or a typo
    of it): 'acme' vs 'acme laboratories' is False — an extra word names a different company."""
    ta, tb = _tokens(a), _tokens(b)
    if len(ta) != len(tb):
        # a word split or joined ('data bridge' / 'databridge') is still the same words
        return fuzz.ratio(a.replace(" ", ""), b.replace(" ", "")) >= 92
    unmatched = list(tb)
    for t in ta:
        if t in unmatched:
            unmatched.remove(t)
            continue
        best = max(unmatched, key=lambda u: fuzz.ratio(t, u), default=None)
        if best is None:
            return False
        score = fuzz.ratio(t, best)
        # a typo keeps the first letter ('pine' vs 'alpine' is another word, however close)
        if score < typo_score or (t[0] != best[0] and score < 90):
            return False
        unmatched.remove(best)
    return True


def name_score(a: str, b: str) -> float:
    """Similarity of two cleaned names, 0-100: the better of character and word-order-free ratios."""
    return max(fuzz.ratio(a, b), fuzz.token_sort_ratio(a, b))


def resolve(
    hub: Sequence[Account],
    others: Iterable[Account],
    *,
    aliases: Mapping[str, str] | None = None,
    confirmed: Iterable[Decision] = (),
    rejected: Iterable[Decision] = (),
    params: ResolutionParams | None = None,
) -> Resolution:
    """Link each account of `others` to at most one hub customer.

    `aliases` maps a legacy or alternative name to the current billing name (both are cleaned).
    `confirmed` / `rejected` are decisions from review: a confirmed pair is linked whatever the
    names say, a rejected pair is never linked or proposed again.
    """
    h = _index_hub(hub)
    yes = {(s, a): c for s, a, c in confirmed if c in h.names}
    no = set(rejected)
    out = Resolution()
    pending: list[Account] = []
    for acc in others:
        key = (acc.system, acc.account_id)
        if key in yes:
            out.links.append(Link(acc.system, acc.account_id, yes[key], Method.CONFIRMED, 100.0))
            continue
        cid = acc.mapped_id if acc.mapped_id in h.names else h.refs.get((acc.system, same_id(*key)))
        if cid is not None and (acc.system, acc.account_id, cid) not in no:
            out.links.append(Link(acc.system, acc.account_id, cid, Method.MAPPED_ID, 100.0))
            continue
        pending.append(acc)
    by_name = _link_by_name(h, pending, aliases=aliases, rejected=no,
                            claimed={(lk.system, lk.customer_id) for lk in out.links}, params=params)
    out.links += by_name.links
    out.review, out.unresolved = by_name.review, by_name.unresolved
    return out


def link_by_name(
    hub: Sequence[Account],
    pending: Iterable[Account],
    *,
    aliases: Mapping[str, str] | None = None,
    rejected: Iterable[Decision] = (),
    claimed: Iterable[tuple[str, str]] = (),
    params: ResolutionParams | None = None,
) -> Resolution:
    """The name stages of `resolve` alone (exact name, alias, fuzzy), for accounts that no decision
    or mapped id linked: a run decides those on the engine (`tieout.links`) and hands over only the
    rest. `claimed` is (system, customer_id) of every link already made, which names may not take."""
    return _link_by_name(_index_hub(hub, refs=False), pending, aliases=aliases, rejected=set(rejected),
                         claimed=set(claimed), params=params)


def _link_by_name(h: _Hub, pending: Iterable[Account], *, aliases: Mapping[str, str] | None,
                  rejected: set[Decision], claimed: set[tuple[str, str]],
                  params: ResolutionParams | None) -> Resolution:
    p = params or ResolutionParams()
    alias_map = {clean_name(k): clean_name(v) for k, v in (aliases or {}).items() if clean_name(k)}
    out = Resolution()
    named: list[tuple[Account, str]] = []
    for acc in pending:
        cleaned = clean_name(acc.name)
        if cleaned:
            named.append((acc, cleaned))
        else:
            out.unresolved.append(acc)
    # Names may link an account only to a hub customer no id or decision already claims for that system.
    proposals: list[tuple[Account, str, Method, float]] = []
    for acc, cleaned in named:
        decided = _by_name(acc, cleaned, h, alias_map, rejected, claimed, p, out)
        if decided is not None:
            proposals.append((acc, decided[0], decided[1], decided[2]))
    # Two accounts of one system on the same customer by name alone: neither is certain.
    per_target = Counter((a.system, cid) for a, cid, _, _ in proposals)
    for acc, cid, method, score in proposals:
        if per_target[(acc.system, cid)] > 1:
            out.review.append(Candidate(acc.system, acc.account_id, acc.name or "", cid, h.names[cid], score,
                                        "another account of the same system has the same name"))
        else:
            out.links.append(Link(acc.system, acc.account_id, cid, method, score))
    return out


def _by_name(acc: Account, cleaned: str, h: _Hub, alias_map: Mapping[str, str], no: set[Decision],
             claimed: set[tuple[str, str]], p: ResolutionParams, out: Resolution
             ) -> tuple[str, Method, float] | None:
    """(customer, method, score) when the name decides; otherwise records a review candidate or
    the account as unresolved and returns None."""
    def allowed(cid: str) -> bool:
        return (acc.system, acc.account_id, cid) not in no and (acc.system, cid) not in claimed

    for method, target in ((Method.EXACT_NAME, cleaned), (Method.ALIAS, alias_map.get(cleaned))):
        if not target:
            continue
        hits = [c for c in h.by_clean.get(target, []) if allowed(c)]
        if len(hits) == 1:
            return hits[0], method, 100.0
        if len(hits) > 1:
            for c in hits:
                out.review.append(Candidate(acc.system, acc.account_id, acc.name or "", c, h.names[c], 100.0,
                                            f"{len(hits)} billing customers have this name"))
            return None
    seen: set[str] = set()
    for k in _block_keys(cleaned):
        members = h.blocks.get(k, ())
        if len(members) <= p.max_block:
            seen.update(members)
    if not seen:
        out.unresolved.append(acc)
        return None
    # Coarse pass in C over the block (word-order-free ratio), exact score on the few best.
    query = " ".join(sorted(cleaned.split()))
    choices = {c: h.sorted_words[c] for c in sorted(seen)}  # sorted: ties break the same way every run
    coarse = process.extract(query, choices, scorer=fuzz.ratio, limit=8, score_cutoff=p.review_score - 10)
    scored = sorted(((name_score(cleaned, h.cleaned[str(c)]), str(c)) for _, _, c in coarse if allowed(str(c))),
                    reverse=True)
    best = [(h.cleaned[c], sc, c) for sc, c in scored if sc >= p.review_score][:3]
    if not best:
        out.unresolved.append(acc)
        return None
    _, top, top_id = best[0]
    runner = best[1][1] if len(best) > 1 else 0.0
    if top >= p.auto_score and top - runner >= p.margin and same_words(cleaned, h.cleaned[top_id]):
        return str(top_id), Method.FUZZY, round(float(top), 1)
    for _, score, cid in best:
        if score >= top - p.margin:
            reason = ("similar name but a word differs" if not same_words(cleaned, h.cleaned[cid])
                      else "similar name, not similar enough" if score < p.auto_score
                      else "several billing customers are about as similar")
            out.review.append(Candidate(acc.system, acc.account_id, acc.name or "", str(cid), h.names[str(cid)],
                                        round(float(score), 1), reason))
    return None

"""Entity-resolution benchmark: N CRM accounts against N billing customers with realistic name
noise (case, punctuation, legal suffixes, accents, 'The', abbreviations, typos, word
order), 5% CRM accounts with no billing counterpart and many distinct look-alike companies.

Reports wall time, peak memory (max RSS) and precision/recall of the automatic links against the
generator's truth. Run: `.venv/bin/python bench/entity_bench.py --n 100000`.

`--engine` resolves as a run does (`tieout.links.resolve_on_engine`: decisions and mapped ids joined
on DuckDB, only the accounts left with a name resolved in Python); `--gateway G` adds G gateway
accounts (billing records the first n of them), which a run links on the engine by id alone:
`--engine --n 20000 --gateway 3000000` shows Python memory does not follow them.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import time

from tieout.demo.crm import clerk_variant
from tieout.entities import Account, Resolution, resolve

WORDS_A = ("Acme", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Wonka", "Soylent", "Hooli", "Vandelay",
           "Cyberdyne", "Tyrell", "Aperture", "Massive", "Dynamic", "Oscorp", "Pied", "Piper", "Gringotts",
           "Monarch", "Virtucon", "Zorg", "Nakatomi", "Gekko", "Krusty", "Duff", "Lacuna", "Bluth", "Dunder",
           "Mifflin", "Sterling", "Cooper", "Prestige", "Worldwide", "Vance", "Rekall", "Nordic", "Atlas",
           "Zenith", "Apex", "Summit", "Beacon", "Cedar", "Harbor", "Maple", "Pioneer", "Quantum", "Redwood",
           "Silver", "Granite", "Falcon", "Orion", "Polar", "Crescent", "Horizon", "Meridian", "Evergreen",
           "Northwind", "Contoso", "Fabrikam", "Tailspin", "Litware", "Proseware", "Adatum", "Woodgrove",
           "Lucerne", "Alpine", "Ridge", "Coastal", "Prairie", "Valley", "Riverside", "Lakeside", "Highland",
           "Sunrise", "Bright", "Clear", "Blue", "Green", "Red", "Golden", "Iron", "Stone", "Oak", "Pine",
           "Willow", "Birch", "Aspen", "Elm", "Hawk", "Eagle", "Wolf", "Bear", "Fox", "Lynx", "Otter", "Heron",
           "Crane", "Müller", "Zürich", "Société", "Señor", "Björk", "Åkesson", "Café", "Crème", "Dubois",
           "Lefèvre", "Nuñez", "Peña")
WORDS_B = ("Health", "Medical", "Dental", "Clinic", "Care", "Labs", "Analytics", "Systems", "Solutions",
           "Software", "Logistics", "Foods", "Energy", "Capital", "Partners", "Consulting", "Media",
           "Networks", "Robotics", "Therapeutics", "Pharma", "Bio", "Finance", "Insurance", "Realty", "Motors",
           "Airlines", "Foods", "Brewing", "Textiles", "Studios", "Games", "Security", "Cloud", "Data",
           "Digital", "Mobile", "Retail", "Supply", "Freight", "Marine", "Mining", "Steel", "Chemicals",
           "Holdings", "Ventures", "Group", "Associates", "Brothers", "Services", "International",
           "Technologies", "Manufacturing", "Center", "Hospital", "Pediatrics", "Orthopedics", "Imaging",
           "Wellness", "Nutrition", "Fitness", "Education", "Learning", "Academy", "Institute", "Foundation",
           "Trust", "Homes", "Builders", "Design")
SUFFIXES = ("Inc", "Inc.", "Incorporated", "LLC", "L.L.C.", "Ltd", "Ltd.", "Limited", "Corp", "Corp.",
            "Corporation", "GmbH", "S.A.", "SA", "AG", "B.V.", "PLC", "Co.", "Company", "")
ABBREV = {"International": "Intl", "Services": "Svcs", "Technologies": "Tech", "Manufacturing": "Mfg",
          "Group": "Grp", "Associates": "Assoc", "Brothers": "Bros", "Center": "Ctr", "Labs": "Lab"}
PLAIN = str.maketrans("üéèñöåÅ", "ueenoaA")


def company_names(n: int, rng: random.Random) -> list[tuple[str, str]]:
    """n distinct (core name, legal suffix) pairs; cores often share words (look-alikes)."""
    seen: set[str] = set()
    out: list[tuple[str, str]] = []
    while len(out) < n:
        k = rng.choice((2, 2, 3, 3, 3, 4))
        words = [rng.choice(WORDS_A)] + [rng.choice(WORDS_A if rng.random() < 0.3 else WORDS_B)
                                         for _ in range(k - 1)]
        core = " ".join(words)
        if core.lower() in seen:
            continue
        seen.add(core.lower())
        out.append((core, rng.choice(SUFFIXES)))
    return out


def _typo(word: str, rng: random.Random) -> str:
    if len(word) < 5:
        return word
    i = rng.randrange(1, len(word) - 1)
    op = rng.random()
    if op < 0.33:
        return word[:i] + word[i + 1:]  # deletion
    if op < 0.66:
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]  # transposition
    return word[:i] + rng.choice("aeioulnrst") + word[i + 1:]  # substitution


def noisy(core: str, suffix: str, rng: random.Random) -> str:
    """The same company as another system's clerk typed it."""
    words = core.split()
    if rng.random() < 0.3:
        words = [ABBREV.get(w, w) for w in words]
    if rng.random() < 0.15:
        j = rng.randrange(len(words))
        words[j] = _typo(words[j], rng)
    if rng.random() < 0.2:
        words = [w.translate(PLAIN) for w in words]
    if len(words) > 2 and rng.random() < 0.05:
        words[0], words[1] = words[1], words[0]
    return clerk_variant(" ".join(words) + " " + (suffix or "Inc"), rng)


def generate(n: int, seed: int) -> tuple[list[Account], list[Account], dict[str, str]]:
    """(billing, crm, truth: crm id -> billing id). 5% of CRM accounts have no billing customer."""
    rng = random.Random(seed)
    names = company_names(n + n // 20, rng)
    billing = [Account("billing", f"C{i:07d}", f"{core} {suf}".strip()) for i, (core, suf) in enumerate(names[:n])]
    crm: list[Account] = []
    truth: dict[str, str] = {}
    for i, (core, suf) in enumerate(names[:n]):
        aid = f"001{i:012d}"
        mapped = f"C{i:07d}" if rng.random() < 0.3 else None  # 30% carry the billing id
        crm.append(Account("crm", aid, noisy(core, suf, rng), mapped_id=mapped))
        truth[aid] = f"C{i:07d}"
    for j, (core, suf) in enumerate(names[n:]):
        crm.append(Account("crm", f"002{j:012d}", noisy(core, suf, rng)))  # prospects: no billing customer
    rng.shuffle(crm)
    return billing, crm, truth


def _on_engine(billing: list[Account], crm: list[Account], gateway: int) -> Resolution:
    """Resolve through the run's engine path; the links come back to Python only to be scored here
    (crm ones: the gateway's are counted on the engine)."""
    import pyarrow as pa

    from tieout.engines import create_engine
    from tieout.entities import Link, Method
    from tieout.links import Decisions, resolve_on_engine

    def table(cols: dict[str, list[str | None]]) -> pa.Table:
        return pa.table(cols, schema=pa.schema([(c, pa.string()) for c in cols]))

    engine = create_engine("duckdb")
    try:
        tables = {
            "customers": engine.from_arrow("customers", table({
                "customer_id": [a.account_id for a in billing], "name": [a.name for a in billing],
                "crm_id": [None] * len(billing),
                "gateway_customer_id": [f"cus_{i}" if i < gateway else None for i in range(len(billing))]})),
            "crm_accounts": engine.from_arrow("crm_accounts", table({
                "account_id": [a.account_id for a in crm], "name": [a.name for a in crm],
                "customer_id": [a.mapped_id for a in crm]})),
            "gateway_transactions": engine.from_arrow("gateway_transactions", table({
                "customer_id": [f"cus_{i}" for i in range(gateway)]})),
        }
        got = resolve_on_engine(engine, tables, Decisions([], []))
        assert got.table is not None
        t = got.table
        n_gateway = t.filter(t.system == "gateway").count().to_pyarrow().as_py()
        crm_links = t.filter(t.system == "crm").to_pyarrow().to_pylist()
    finally:
        engine.close()
    print(f"  gateway accounts linked on the engine: {n_gateway:,} of {gateway:,}")
    return Resolution(links=[Link(r["system"], r["account_id"], r["customer_id"], Method(r["method"]), r["score"])
                             for r in crm_links], review=got.review)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--engine", action="store_true", help="resolve as a run does: ids on DuckDB, names in Python")
    ap.add_argument("--gateway", type=int, default=0, help="with --engine: this many gateway accounts too")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    billing, crm, truth = generate(args.n, args.seed)
    t_gen = time.perf_counter() - t0
    t1, c1 = time.perf_counter(), time.process_time()
    res = _on_engine(billing, crm, args.gateway) if args.engine else resolve(billing, crm)
    wall, cpu = time.perf_counter() - t1, time.process_time() - c1
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    links = {k: lk for k, lk in res.by_account().items() if k[0] == "crm"}
    got = {a: lk.customer_id for (_, a), lk in links.items()}
    tp = sum(1 for a, c in got.items() if truth.get(a) == c)
    precision = tp / len(got) if got else 1.0
    recall = tp / len(truth)
    by_method: dict[str, int] = {}
    for lk in res.links:
        by_method[lk.method] = by_method.get(lk.method, 0) + 1
    wrong = [(a, c, truth.get(a)) for a, c in got.items() if truth.get(a) != c][:5]
    print(f"entity resolution {len(crm):,} CRM accounts vs {len(billing):,} billing customers (seed {args.seed})")
    print(f"  generate {t_gen:.1f} s; resolve wall {wall:.1f} s (CPU {cpu:.1f} s); peak RSS {peak_mb:.0f} MB")
    print(f"  links {len(got):,} {by_method}; review {len(res.review):,}; unresolved {len(res.unresolved):,}"
          + (" (not gathered on the engine path)" if args.engine else ""))
    print(f"  precision {100 * precision:.2f}%  recall {100 * recall:.2f}%  (truth {len(truth):,} pairs)")
    names = {a.account_id: a.name for a in billing}
    crm_names = {a.account_id: a.name for a in crm}
    for a, c, t in wrong:
        print(f"  wrong: {crm_names[a]!r} -> {names[c]!r} (truth {names.get(t or '')!r})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

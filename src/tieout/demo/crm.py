"""The demo's CRM, operations, entitlement and usage systems, derived from the billing books so the
clean part agrees everywhere: the same customers under other names (case, punctuation, legal
suffixes, accents, typos, legacy names), with injected defects of every `crm_operations` category
and look-alikes that must raise nothing (similar names of distinct companies above all).

Called once from `generate_workspace` before the files are written; writes its own files.
"""

from __future__ import annotations

import csv
import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tieout.entities import Account, resolve

if TYPE_CHECKING:
    from tieout.demo import Manifest

CHECK = "crm_operations"
AS_OF = date(2026, 9, 30)
PERIOD_START = date(2026, 9, 1)
SEAT_SKUS = ("PRO", "TEAM")
API_PRICE = {"USD": 2, "EUR": 2, "JPY": 3}  # per API call, minor units
API_LIMIT = 10_000
DEFECTS = ("missing_from_crm", "missing_from_billing", "missing_from_operations", "status_mismatch",
           "seat_count_mismatch", "overbilled", "underbilled", "go_live_mismatch", "product_mismatch",
           "unbilled_usage", "entitlement_exceeded_unbilled", "usage_without_entitlement")

FIRST = ("Acme", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Wonka", "Soylent", "Hooli", "Vandelay",
         "Cyberdyne", "Tyrell", "Aperture", "Oscorp", "Gringotts", "Monarch", "Virtucon", "Nakatomi",
         "Gekko", "Lacuna", "Bluth", "Sterling", "Prestige", "Rekall", "Nordic", "Atlas", "Zenith", "Apex",
         "Summit", "Beacon", "Cedar", "Harbor", "Maple", "Pioneer", "Quantum", "Redwood", "Granite",
         "Falcon", "Orion", "Polar", "Crescent", "Horizon", "Meridian", "Evergreen", "Northwind", "Contoso",
         "Fabrikam", "Tailspin", "Litware", "Proseware", "Adatum", "Woodgrove", "Lucerne", "Alpine",
         "Coastal", "Prairie", "Riverside", "Lakeside", "Highland", "Sunrise", "Müller", "Zürich", "Société",
         "Björk", "Åkesson", "Dubois", "Lefèvre", "Nuñez", "Peña", "Crème")
SECOND = ("Health", "Medical", "Dental", "Clinic", "Care", "Analytics", "Systems", "Solutions", "Software",
          "Logistics", "Foods", "Energy", "Capital", "Partners", "Consulting", "Media", "Networks",
          "Robotics", "Therapeutics", "Pharma", "Finance", "Insurance", "Realty", "Motors", "Studios",
          "Security", "Cloud", "Digital", "Retail", "Freight", "Marine", "Steel", "Chemicals", "Holdings",
          "Ventures", "Pediatrics", "Orthopedics", "Imaging", "Wellness", "Nutrition", "Education",
          "Institute", "Foundation", "Builders", "Design")
SUFFIXES = ("Inc.", "Inc", "LLC", "Ltd", "Corp.", "Corporation", "GmbH", "S.A.", "AG", "B.V.", "PLC", "Co.")
NEW_WORDS = ("Quillfeather", "Brambleworth", "Zephyrine", "Vortexa", "Lumenhall", "Corvalis", "Thistledown",
             "Marrowgate", "Obsidia", "Pellucid", "Sablewick", "Tindervale", "Umberline", "Wrenfield",
             "Yarrowby", "Kestrelmoor")


@dataclass
class _Cust:
    cid: str
    name: str
    currency: str
    start: date
    seats: int | None  # per-seat quantity live on the last day; None for flat plans
    flat_units: int  # providers served on a flat plan
    products: list[str]
    monthly: int
    end: date | None  # service end when nothing is live on the last day
    seat_price: int
    crm_id: str = ""
    ops_id: str = ""
    ent_id: str = ""
    crm_name: str = ""
    ops_name: str = ""
    ent_name: str = ""
    api: bool = False
    defect: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def live(self) -> bool:
        return self.end is None


def clerk_variant(name: str, rng: random.Random) -> str:
    """The same name as another clerk typed it; cleaning alone makes it equal."""
    core, _, _suffix = name.rpartition(" ")
    words = core.split()
    r = rng.random()
    text = " ".join(words)
    if r < 0.25:
        text = text.upper()
    elif r < 0.45:
        text = text.lower()
    if rng.random() < 0.3:
        text = text.replace("é", "e").replace("ü", "u").replace("ñ", "n").replace("ö", "o").replace("Å", "A")
    suffix = rng.choice((*SUFFIXES, "", "", "Incorporated", "Limited"))
    if suffix:
        text += ("," if rng.random() < 0.3 else "") + " " + suffix
    if rng.random() < 0.1:
        text = "The " + text
    if rng.random() < 0.1:
        text = " " + text.replace(" ", "  ") + "  "
    return text


def _typo_variant(name: str, rng: random.Random) -> str | None:
    """One typo inside the longest word (kept first letter), or None when no word is long enough."""
    core = name.rpartition(" ")[0]
    words = core.split()
    k = max(range(len(words)), key=lambda i: len(words[i]))
    w = words[k]
    if len(w) < 7:
        return None
    i = rng.randrange(2, len(w) - 2)
    words[k] = w[:i] + w[i + 1] + w[i] + w[i + 2:]
    return " ".join(words) + " " + rng.choice(SUFFIXES)


def _books_state(b: Any) -> dict[str, dict[str, Any]]:
    """Per billing customer: currency, first start, live per-seat quantity and products on AS_OF."""
    subs_by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for s in b.subs:
        subs_by[s["customer_id"]].append(s)
    out = {}
    for cid, subs in subs_by.items():
        live = [s for s in subs if s["start_date"] <= AS_OF and (s["end_date"] is None or s["end_date"] > AS_OF)]
        seats = sum(s["quantity"] for s in live if s["sku"] in SEAT_SKUS)
        out[cid] = {
            "currency": subs[0]["currency"], "start": min(s["start_date"] for s in subs), "live": live,
            "seats": seats if any(s["sku"] in SEAT_SKUS for s in live) else None,
            "products": sorted({s["sku"] for s in live}),
            "monthly": sum(s["unit_amount"] * s["quantity"] for s in live),
            "seat_price": max((s["unit_amount"] for s in live if s["sku"] in SEAT_SKUS), default=0),
            "end": None if live else max(s["end_date"] for s in subs if s["end_date"] is not None),
            "n_subs": len(subs),
        }
    return out


def _touched(b: Any, m: Manifest) -> set[str]:
    """Customers carrying a defect injected by the other systems' generators."""
    owner: dict[str, str] = {}
    for s in b.subs:
        owner[s["subscription_id"]] = s["customer_id"]
    for i in b.invoices:
        owner[i["invoice_id"]] = i["customer_id"]
    for p in b.payments:
        owner[p["payment_id"]] = p["customer_id"]
    by_cus = {c["gateway_customer_id"]: c["customer_id"] for c in b.customers}
    for t in b.balance:
        owner[t["id"]] = by_cus.get(t["customer"], "")
    out = set()
    for _, _, subject in m.expected:
        for token in subject.replace("|", " ").replace("/", " ").replace("@", " ").split():
            if token in owner:
                out.add(owner[token])
    return out


def add_crm_and_operations(data: Path, b: Any, m: Manifest, rng: random.Random) -> None:
    """Give billing customers real names, derive the CRM, operations roster, entitlements, usage and
    product catalog from the books, inject this family's defects and write the files into `data`."""
    state = _books_state(b)
    touched = _touched(b, m)
    names = _company_names(len(b.customers), rng)
    custs: list[_Cust] = []
    for c, name in zip(b.customers, names, strict=True):
        st = state[c["customer_id"]]
        c["name"] = name
        if rng.random() < 0.6:
            c["crm_id"] = ""  # billing does not always know the CRM id: names must do the linking
        seats = st["seats"]
        custs.append(_Cust(c["customer_id"], name, st["currency"], st["start"], seats,
                           0 if seats is not None else rng.randint(3, 25), st["products"], st["monthly"], st["end"],
                           st["seat_price"]))
    crm_ids = {c["customer_id"]: c["crm_id"] for c in b.customers}
    _look_alike_pairs(custs, b, m, rng)
    for i, c in enumerate(custs):
        c.crm_id = crm_ids[c.cid] or f"0015g{i + 1:010d}AAA"
        c.ops_id = f"OPS-{i + 1:05d}"
        c.ent_id = f"E{i + 1:06d}"
        c.api = rng.random() < 0.4
    pool = [c for c in custs if c.cid not in touched and c.live and c.seats and c.seats >= 4 and c.start.year == 2025
            and state[c.cid]["n_subs"] == 1]
    churned = [c for c in custs if c.cid not in touched and not c.live and c.end and c.end >= date(2026, 8, 1)]
    rng.shuffle(pool)
    per_kind = max(1, len(custs) // 400)
    for kind in DEFECTS:
        for _ in range(per_kind):
            src = churned if kind == "unbilled_usage" else pool
            if src:
                victim = src.pop()
                victim.defect = kind
                if kind == "missing_from_operations":
                    victim.api = False  # its usage would name an operations account nobody serves
    _names(custs, b, m, rng)
    rows = _systems(custs, b, m, rng)
    _verify_links(b, custs, rows)
    _write(data, rows, m)
    write_aliases(data, b)


def _company_names(n: int, rng: random.Random) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < n:
        core = f"{rng.choice(FIRST)} {rng.choice(SECOND)}"
        if rng.random() < 0.3:
            core += " " + rng.choice(SECOND)
        if core.lower() in seen:
            continue
        seen.add(core.lower())
        out.append(f"{core} {rng.choice(SUFFIXES)}")
    return out


def _look_alike_pairs(custs: list[_Cust], b: Any, m: Manifest, rng: random.Random) -> None:
    """Distinct customers whose names differ by one word ('Acme Corp' / 'Acme Labs'): each must link
    to its own CRM account, never to the other."""
    pairs = min(len(NEW_WORDS) // 2, max(2, len(custs) // 200), len(custs) // 2)
    picks = rng.sample(range(len(custs)), 2 * pairs)
    words = rng.sample(NEW_WORDS[: len(NEW_WORDS) // 2], pairs)  # the other half is for legacy names
    for k in range(pairs):
        a, c = custs[picks[2 * k]], custs[picks[2 * k + 1]]
        root = words[k] + " " + rng.choice(("Corp", "Group", "Partners"))
        a.name = root.replace(" Corp", "") + " Corp" if root.endswith("Corp") else root + " Inc."
        c.name = root.split()[0] + " Labs Inc."
        for cust in (a, c):
            next(x for x in b.customers if x["customer_id"] == cust.cid)["name"] = cust.name
        m.lookalikes["similar names of distinct customers, not merged"] += 2


def _names(custs: list[_Cust], b: Any, m: Manifest, rng: random.Random) -> None:
    """Each system's spelling of each customer, checked against the resolver so the demo knows the
    outcome: a spelling that would not link automatically is replaced by a plain variant."""
    legacy: dict[str, str] = {}
    for c in custs:
        c.crm_name = clerk_variant(c.name, rng)
        c.ops_name = clerk_variant(c.name, rng)
        c.ent_name = clerk_variant(c.name, rng)
        r = rng.random()
        if r < 0.06:
            typo = _typo_variant(c.name, rng)
            if typo:
                c.crm_name = typo
                c.extra["typo"] = True
        elif r < 0.08 and c.defect is None:
            old = f"{rng.choice(NEW_WORDS[len(NEW_WORDS) // 2:])} {rng.choice(SECOND)} {c.cid[-3:]}"
            legacy[old] = c.name
            c.crm_name = old + " " + rng.choice(SUFFIXES)
            c.extra["legacy"] = True
    b.aliases = legacy
    hub = [Account("billing", x["customer_id"], x["name"], refs=(("crm", x["crm_id"]),) if x["crm_id"] else ())
           for x in b.customers]
    for system, attr in (("crm", "crm_name"), ("operations", "ops_name"), ("entitlements", "ent_name")):
        idattr = {"crm": "crm_id", "operations": "ops_id", "entitlements": "ent_id"}[system]
        others = [Account(system, getattr(c, idattr), getattr(c, attr)) for c in custs]
        for _ in range(3):
            res = resolve(hub, others, aliases=legacy).by_account()
            bad = [c for c in custs if (lk := res.get((system, getattr(c, idattr)))) is None or lk.customer_id != c.cid]
            if not bad:
                break
            for c in bad:
                c.extra.pop("typo", None)
                setattr(c, attr, c.name.upper())
            others = [Account(system, getattr(c, idattr), getattr(c, attr)) for c in custs]
    m.lookalikes["CRM name differs only in case, punctuation, accents or legal suffix"] += sum(
        1 for c in custs if c.crm_name != c.name and "typo" not in c.extra and "legacy" not in c.extra)
    m.lookalikes["CRM name with a typo, linked by fuzzy match"] += sum(1 for c in custs if "typo" in c.extra)
    m.lookalikes["CRM account under a legacy name, linked by the alias table"] += sum(
        1 for c in custs if "legacy" in c.extra)


def _systems(custs: list[_Cust], b: Any, m: Manifest, rng: random.Random) -> dict[str, list[list[Any]]]:
    rows: dict[str, list[list[Any]]] = defaultdict(list)
    mapped_crm = {c["customer_id"] for c in b.customers if c["crm_id"]}
    for i, c in enumerate(custs):
        d = c.defect
        seats = c.seats
        crm_seats = seats
        ops_n = seats if seats is not None else c.flat_units
        go_live = c.start
        crm_status = "live" if c.live else "churned"
        crm_products = list(c.products) if c.live else _last_products(b, c.cid)
        ent_products = list(crm_products)
        subject = c.cid
        if d == "seat_count_mismatch" and seats:
            crm_seats = seats + 3
        elif d == "overbilled" and seats:
            ops_n = seats - 2
        elif d == "underbilled" and seats:
            ops_n = crm_seats = seats + 4
        elif d == "go_live_mismatch":
            go_live = c.start + timedelta(days=45)
        elif d == "status_mismatch":
            crm_status = "churned"
        elif d == "missing_from_operations":
            ops_n = 0
        elif d == "product_mismatch":
            extra = "TEAM" if "TEAM" not in c.products else "PRO"
            (crm_products if i % 2 == 0 else ent_products).append(extra)
            subject = f"{c.cid}|{extra}"
        if d is not None and d not in ("missing_from_billing", "unbilled_usage", "entitlement_exceeded_unbilled",
                                       "usage_without_entitlement"):
            m.expect(CHECK, d, subject)
        if d == "missing_from_billing":
            # The CRM account is live but billing never created the customer (its own books are dropped
            # from the CRM comparison: the customer keeps being billed under the look-alike rules).
            pass
        # CRM
        if d != "missing_from_crm":
            if rng.random() < 0.2 and c.cid not in mapped_crm:
                mapped = c.cid  # the CRM records the billing account number
            else:
                mapped = ""
            if abs((go_live - c.start).days) == 0 and d is None and rng.random() < 0.1:
                go_live = c.start + timedelta(days=rng.randint(1, 5))
                m.lookalikes["go-live a few days from the billing start (within tolerance)"] += 1
            rows["crm_accounts"].append([c.crm_id, c.crm_name, mapped, rng.choice(("ana", "ben", "chloe")),
                                         crm_status.capitalize(), go_live.strftime("%m/%d/%Y"),
                                         "" if crm_seats is None else crm_seats])
            for sku in crm_products:
                rows["crm_products"].append([c.crm_id, sku, "active" if c.live or d == "status_mismatch"
                                             else "inactive"])
            if not c.live:
                m.lookalikes["churned customer, consistent in every system"] += 1
        # Operations roster: providers active on the last day equal the billed seats.
        if d != "missing_from_operations":
            _roster(rows, c, ops_n, rng, m)
        # Entitlements: the plan products (unlimited) and, for API customers, a monthly call allowance.
        end = c.end
        for k, sku in enumerate(ent_products):
            rows["entitlements"].append([f"{c.ent_id}-{k}", c.cid if i % 2 else "", c.ent_id, c.ent_name, sku, "",
                                         c.start.isoformat(), "" if end is None else end.isoformat()])
        api = c.api or d in ("entitlement_exceeded_unbilled", "unbilled_usage", "usage_without_entitlement")
        if api:
            if d != "usage_without_entitlement":
                rows["entitlements"].append([f"{c.ent_id}-API", c.cid if i % 2 else "", c.ent_id, c.ent_name, "API",
                                             API_LIMIT, c.start.isoformat(), "" if end is None else end.isoformat()])
            _usage(rows, b, c, d, rng, m)
    _missing_from_billing(rows, custs, m, rng)
    return rows


def _last_products(b: Any, cid: str) -> list[str]:
    return sorted({s["sku"] for s in b.subs if s["customer_id"] == cid})


def _roster(rows: dict[str, list[list[Any]]], c: _Cust, n: int, rng: random.Random, m: Manifest) -> None:
    horizon = max((AS_OF - c.start).days, 1)
    for k in range(n):
        on = c.start if k == 0 else c.start + timedelta(days=rng.randint(0, min(horizon, 90)))
        off = c.end
        rows["operations_roster"].append([c.ops_id, c.ops_name, c.cid if c.cid.endswith("3") else "",
                                          f"{c.ops_id}-P{k + 1:03d}", "active" if off is None else "inactive",
                                          on.isoformat(), "" if off is None else off.isoformat()])
    if c.live and n and rng.random() < 0.1:
        # A provider left and was replaced: still n active on the last day.
        left = c.start + timedelta(days=rng.randint(1, max(1, min(horizon - 1, 60))))
        rows["operations_roster"].append([c.ops_id, c.ops_name, "", f"{c.ops_id}-X001", "inactive",
                                          c.start.isoformat(), left.isoformat()])
        m.lookalikes["provider replaced (one deactivated, one added)"] += 1


def _usage(rows: dict[str, list[list[Any]]], b: Any, c: _Cust, d: str | None, rng: random.Random,
           m: Manifest) -> None:
    """API calls per month from July; events carry the operations account id (or the billing id)."""
    months = (date(2026, 7, 1), date(2026, 8, 1), date(2026, 9, 1))
    for month in months:
        if not c.live and c.end is not None and month >= c.end and d != "unbilled_usage":
            continue
        total = rng.randint(2000, API_LIMIT - 1000)
        if month == PERIOD_START and d == "entitlement_exceeded_unbilled":
            total = API_LIMIT + 3500
        overage_billed = month == PERIOD_START and d is None and c.live and rng.random() < 0.15
        if overage_billed:
            total = API_LIMIT + rng.randint(100, 4000)
        parts = 4
        sizes = [total // parts] * (parts - 1) + [total - (total // parts) * (parts - 1)]
        for k, q in enumerate(sizes):
            at = datetime(month.year, month.month, 3 + 6 * k, 10 + k, 0)
            if at.date() < c.start:
                at = datetime.combine(c.start, datetime.min.time()).replace(hour=12 + k)  # no usage before go-live
            ev = [f"EV-{c.ops_id}-{month:%Y%m}-{k}", c.cid if c.cid.endswith("7") else "", c.ops_id, "", "API", q,
                  at.strftime("%Y-%m-%dT%H:%M:%SZ")]
            rows["usage_events"].append(ev)
            if k == 0 and month == PERIOD_START and rng.random() < 0.05:
                rows["usage_events"].append(list(ev))  # a retried event: same idempotency key, counted once
                m.lookalikes["usage event retried with the same idempotency key"] += 1
        if overage_billed:
            _bill_overage(b, c, total - API_LIMIT)
            m.lookalikes["usage above the entitlement, overage billed"] += 1
    if d in ("entitlement_exceeded_unbilled", "unbilled_usage", "usage_without_entitlement"):
        m.expect(CHECK, d, f"{c.cid}|API")


def _bill_overage(b: Any, c: _Cust, units: int) -> None:
    price = API_PRICE[c.currency]
    inv_id = b.next_id("INV-OVG-", 4)
    amount = units * price
    issued = datetime(2026, 9, 30, 22, 0, tzinfo=b.invoices[0]["issued_at"].tzinfo)
    b.invoices.append({"invoice_id": inv_id, "customer_id": c.cid, "subscription_id": None, "status": "open",
                       "issued_at": issued, "period_start": PERIOD_START, "period_end": date(2026, 10, 1),
                       "currency": c.currency, "subtotal": amount, "discount": 0, "tax": 0, "total": amount,
                       "amount_paid": 0})
    b.lines.append({"invoice_id": inv_id, "line_id": "1", "sku": "API", "quantity": units, "unit_amount": price,
                    "amount": amount, "discount": 0, "currency": c.currency, "period_start": PERIOD_START,
                    "period_end": date(2026, 10, 1), "proration": False})


def _missing_from_billing(rows: dict[str, list[list[Any]]], custs: list[_Cust], m: Manifest,
                          rng: random.Random) -> None:
    """Live CRM accounts that billing never created, and prospects with look-alike names (no finding)."""
    n = sum(1 for c in custs if c.defect == "missing_from_billing")
    for k in range(n):
        aid = f"0015h{k + 1:010d}AAA"
        name = f"{NEW_WORDS[k % len(NEW_WORDS)]}{NEW_WORDS[(k + 5) % len(NEW_WORDS)].lower()} Orbital Ltd"
        rows["crm_accounts"].append([aid, name, "", "dana", "Live", "07/15/2026", 12])
        rows["crm_products"].append([aid, "PRO", "active"])
        m.expect(CHECK, "missing_from_billing", f"crm:{aid}")
    for k, c in enumerate(rng.sample(custs, min(len(custs), max(2, len(custs) // 100)))):
        aid = f"0015p{k + 1:010d}AAA"
        first = c.name.split()[0]
        rows["crm_accounts"].append([aid, f"{first} Research Institute", "", "eve", "Prospect", "", ""])
        m.lookalikes["CRM prospect with a similar name, not linked"] += 1


HEADERS = {
    "crm_accounts.csv": ["Id", "Name", "Billing_Account_Number__c", "Owner", "Status__c", "Go_Live_Date__c",
                         "Provider_Count__c"],
    "crm_products.csv": ["Account__c", "Product_Code__c", "Status__c"],
    "operations_roster.csv": ["account_id", "account_name", "customer_id", "provider_id", "status",
                              "activated_on", "deactivated_on"],
    "entitlements.csv": ["entitlement_id", "customer_id", "account_id", "account_name", "sku", "quantity",
                         "start_date", "end_date"],
    "usage_events.csv": ["event_id", "customer_id", "account_id", "subscription_id", "sku", "quantity",
                         "occurred_at"],
}
_TABLE_OF = {"crm_accounts.csv": "crm_accounts", "crm_products.csv": "crm_products",
             "operations_roster.csv": "operations_roster", "entitlements.csv": "entitlements",
             "usage_events.csv": "usage_events"}


def _write(data: Path, rows: dict[str, list[list[Any]]], m: Manifest) -> None:
    for file, header in HEADERS.items():
        body = rows[_TABLE_OF[file]]
        with (data / file).open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh, quoting=csv.QUOTE_ALL if file.startswith("crm_") else csv.QUOTE_MINIMAL)
            w.writerow(header)
            w.writerows(body)
        m.rows[file] = len(body)
    products = [["PRO", "Pro", "seat", "per_seat"], ["TEAM", "Team", "seat", "per_seat"],
                ["ENT", "Enterprise", "account", "flat"], ["API", "API calls", "call", "per_unit"]]
    prices = {"PRO": {"USD": "49.00", "EUR": "45.00", "JPY": "5000"},
              "TEAM": {"USD": "19.00", "EUR": "18.00", "JPY": "2000"},
              "ENT": {"USD": "1500.00", "EUR": "1400.00", "JPY": "160000"},
              "API": {"USD": "0.02", "EUR": "0.02", "JPY": "3"}}
    catalog = [[sku, cur, name, unit, model, prices[sku][cur]] for sku, name, unit, model in products
               for cur in ("USD", "EUR", "JPY")]
    with (data / "products.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["sku", "currency", "name", "unit", "pricing_model", "unit_amount"])
        w.writerows(catalog)
    m.rows["products.csv"] = len(catalog)


def write_aliases(data: Path, b: Any) -> None:
    """The curated alias table (legacy CRM names -> current billing names), `entities.alias_file`."""
    aliases: dict[str, str] = getattr(b, "aliases", {})
    with (data / "aliases.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["alias", "name"])
        w.writerows(sorted(aliases.items()))


def _verify_links(b: Any, custs: list[_Cust], rows: dict[str, list[list[Any]]]) -> None:
    """Resolve the accounts as a run will and fail loudly if a clean account would not link to its
    own customer: the manifest would otherwise promise a clean part that is not."""
    hub = [Account("billing", x["customer_id"], x["name"], refs=(("crm", x["crm_id"]),) if x["crm_id"] else ())
           for x in b.customers]
    others = [Account("crm", r[0], r[1], r[2] or None) for r in rows["crm_accounts"]]
    for system, table in (("operations", "operations_roster"), ("entitlements", "entitlements")):
        first: dict[str, list[Any]] = {}
        for r in rows[table]:
            acc = r[0] if system == "operations" else r[2]
            name = r[1] if system == "operations" else r[3]
            cid = r[2] if system == "operations" else r[1]
            prev = first.get(acc)
            first[acc] = [name, max(cid, prev[1]) if prev else cid]
        others += [Account(system, a, v[0], v[1] or None) for a, v in first.items()]
    res = resolve(hub, others, aliases=getattr(b, "aliases", {})).by_account()
    for c in custs:
        for system, aid in (("crm", c.crm_id), ("operations", c.ops_id), ("entitlements", c.ent_id)):
            present = any(a.account_id == aid and a.system == system for a in others)
            if not present:
                continue
            lk = res.get((system, aid))
            if lk is None or lk.customer_id != c.cid:
                raise RuntimeError(f"demo: {system} account {aid} would link to "
                                   f"{lk.customer_id if lk else 'nothing'}, not {c.cid}")


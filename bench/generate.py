"""Generate a benchmark workspace at a given scale, fast.

`tieout.demo.generate_workspace` is a pure-Python simulation (about 4,000 customers a second), too
slow for tens of millions of rows. So we simulate a *base* of N customers once (cached under
bench/data/_base-<N>-<seed>/) and replicate its rows K times with DuckDB SQL, renaming every id
with a replica suffix (`x<r>`; replica 0 keeps the original ids) so keys stay unique and every
cross-reference (customer, gateway customer, subscription, invoice, payment, charge/refund/dispute
ids, invoice refs, gateway_ref, charge_id) stays consistent inside its replica.

The merchant is one Stripe account, so replicas share the gateway's payouts: each daily payout
settles the transactions of every replica, its amount is K times the base payout, and the ledger's
payout deposits and monthly fee lines are scaled the same way (one line each, not K). Wire
deposits in the ledger are per customer and are replicated with the ids. The two manual journals
are kept once. So the per-customer defect rate is exactly the base's (every injected customer-level
defect appears K times, with suffixed subjects), and the account-level ledger defects (dropped
payouts, under-booked fees, the unsupported journal) appear once, as in the base.

    python bench/generate.py --rows 1M            # -> bench/data/1M/
    python bench/generate.py --rows 3M --base-customers 20000
    python bench/generate.py --rows 10M --mix target   # -> bench/data/10M-TARGET/ (also: --rows 10M-target)

`--rows` is the target number of gateway transactions (Stripe balance rows + failed payments).
Writes `bench/data/<scale>/{tieout.yaml,data/*.csv,manifest.json,bench_meta.json}`.

Mixes (`--mix`, see MIXES): `demo` replicates the demo as it is, about one invoice per gateway
transaction. `target` is the design's mix, about five gateway transactions per invoice (10M
transactions : ~2M invoices): its base is simulated with `generate_workspace(instalments=6)`, where
every clean card invoice large enough to split is paid on a payment plan of 2 to 10 card charges,
each a billing payment against the invoice (the sums tie out: nothing to find). The injected defects
and their per-customer rate are the demo's in both mixes; the target workspace's directory carries
the mix (`10M-TARGET`), so `run.py --scales 10M-TARGET` generates and benchmarks it.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import shutil
import sys
import time
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import duckdb

from tieout.demo import _qb_amount, generate_workspace  # the demo's own QuickBooks amount format

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
GATEWAY_FILES = ("stripe_balance_itemized.csv", "stripe_payments_failed.csv")


# mix -> `generate_workspace(instalments=...)` of its base (mean card payments per clean card invoice)
MIXES = {"demo": 1, "target": 6}


def split_label(text: str) -> tuple[str, str | None]:
    """`10M-target` -> ("10M", "target"); `10M` -> ("10M", None)."""
    head, _, mix = text.strip().partition("-")
    if mix and mix.lower() not in MIXES:
        raise SystemExit(f"generate.py: unknown mix {mix!r} in {text!r}; known: {', '.join(MIXES)}")
    return head, (mix.lower() or None)


def parse_scale(text: str) -> int:
    t = split_label(text)[0].upper().replace("_", "")
    mult = 1
    if t.endswith("M"):
        mult, t = 1_000_000, t[:-1]
    elif t.endswith("K"):
        mult, t = 1_000, t[:-1]
    return int(Decimal(t) * mult)


def base_workspace(customers: int, seed: int, mix: str = "demo") -> Path:
    instalments = MIXES[mix]
    path = DATA / (f"_base-{customers}-{seed}" + ("" if mix == "demo" else f"-{mix}"))
    if (path / "manifest.json").exists():
        return path
    if path.exists():
        shutil.rmtree(path)
    generate_workspace(path, customers=customers, seed=seed, instalments=instalments)
    return path


def _q(col: str) -> str:
    return '"' + col.replace('"', '""') + '"'


def _sfx(col: str) -> str:
    return f"CASE WHEN {_q(col)} IS NULL THEN NULL ELSE {_q(col)} || s END AS {_q(col)}"


# Columns renamed with the replica suffix, per file. Everything else is copied as is.
ID_COLUMNS = {
    "customers.csv": ["customer_id", "gateway_customer_id", "crm_id", "email"],
    "subscriptions.csv": ["subscription_id", "customer_id"],
    "invoices.csv": ["Invoice.InvoiceNumber", "Account.AccountNumber", "Subscription.Name"],
    "invoice_lines.csv": ["invoice_id"],
    "payments.csv": ["payment_id", "invoice_id", "customer_id", "gateway_ref"],
    # automatic_payout_id is NOT renamed: payouts belong to the one Stripe account, shared by replicas.
    "stripe_balance_itemized.csv": ["balance_transaction_id", "source_id", "customer_id", "charge_id",
                                    "invoice_id", "payment_metadata[invoice_number]"],
    "stripe_payments_failed.csv": ["id", "Customer ID", "Invoice ID", "invoice_number (metadata)"],
}


def replicate_csvs(con: duckdb.DuckDBPyConnection, src: Path, dst: Path, k: int) -> dict[str, int]:
    rows: dict[str, int] = {}
    con.execute(f"CREATE OR REPLACE TEMP TABLE reps AS SELECT r, CASE WHEN r = 0 THEN '' ELSE 'x' || r END AS s "
                f"FROM range({k}) t(r)")
    for name, ids in ID_COLUMNS.items():
        path = src / "data" / name
        cols = [d[0] for d in con.execute(
            f"SELECT * FROM read_csv('{path}', header=true, all_varchar=true) LIMIT 0").description]
        sel = ", ".join(_sfx(c) if c in ids else _q(c) for c in cols)
        out = dst / "data" / name
        con.execute(
            f"COPY (SELECT {sel} FROM read_csv('{path}', header=true, all_varchar=true), reps) "
            f"TO '{out}' (HEADER, DELIMITER ',')"
        )
        rows[name] = con.execute(f"SELECT count(*) FROM read_csv('{path}', header=true, all_varchar=true)"
                                 ).fetchone()[0] * k
    # Payouts: same ids, K times the amount (exact decimal arithmetic; JPY has no decimals).
    path = src / "data" / "stripe_payouts.csv"
    out = dst / "data" / "stripe_payouts.csv"
    con.execute(
        f"""COPY (SELECT id, CASE WHEN lower(Currency) = 'jpy'
                        THEN CAST(CAST(Amount AS BIGINT) * {k} AS VARCHAR)
                        ELSE CAST(CAST(CAST(Amount AS DECIMAL(18, 2)) * {k} AS DECIMAL(18, 2)) AS VARCHAR) END
                   AS "Amount", Currency, "Arrival Date (UTC)", Status
              FROM read_csv('{path}', header=true, all_varchar=true))
            TO '{out}' (HEADER, DELIMITER ',')"""
    )
    rows["stripe_payouts.csv"] = con.execute(f"SELECT count(*) FROM read_csv('{path}', header=true)").fetchone()[0]
    return rows


_JPY_ACCOUNTS = ("JPY",)


def _gl_minor(text: str, account: str) -> tuple[int, str]:
    cur = "JPY" if account.endswith(_JPY_ACCOUNTS) else "USD"
    s = text.replace("$", "").replace(",", "").strip()
    neg = s.startswith("(") or s.startswith("-")
    s = s.strip("()-")
    v = int(Decimal(s) * (1 if cur == "JPY" else 100))
    return (-v if neg else v), cur


_ID_TOKEN = re.compile(r"\b(INV-\d+|PAY-\d+|C\d{5,})\b")


def replicate_gl(src: Path, dst: Path, k: int) -> int:
    """Rewrite the QuickBooks GL: wire deposits per replica (ids suffixed), payout deposits and fee
    lines once with K times the amount, manual journals once; balances and totals recomputed."""
    with (src / "data" / "quickbooks_gl.csv").open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh))
    preamble = rows[:5]
    sections: dict[str, list[dict[str, object]]] = defaultdict(list)
    account: str | None = None
    for row in rows[5:]:
        if not any(c.strip() for c in row):
            continue
        if row[0].strip():
            if row[0].startswith("Total for ") or row[0] == "TOTAL":
                continue
            account = row[0]
            continue
        if row[1] == "Beginning Balance":
            continue
        assert account is not None
        minor, cur = _gl_minor(row[7], account)
        sections[account].append({"date": row[1], "type": row[2], "num": row[3], "name": row[4], "memo": row[5],
                                  "amount": minor, "cur": cur})
    out_lines: list[list[str]] = list(preamble)
    n = 0
    grand = 0
    for acct in sorted(sections):
        entries = []
        for e in sections[acct]:
            if e["type"] == "Deposit" and str(e["num"]).startswith("PAY-"):  # a customer's wire: replicate
                for r in range(k):
                    s = "" if r == 0 else f"x{r}"
                    entries.append({**e, "num": f"{e['num']}{s}", "name": f"{e['name']}{s}",
                                    "memo": _ID_TOKEN.sub(lambda m, s=s: m.group(1) + s, str(e["memo"]))})
            elif e["type"] == "Journal Entry":
                entries.append(e)
            else:  # payout deposit or monthly fee line of the shared Stripe account
                entries.append({**e, "amount": int(e["amount"]) * k})  # type: ignore[call-overload]
        entries.sort(key=lambda e: (e["date"][6:] + e["date"][:5], e["memo"]))  # type: ignore[index]
        out_lines.append([acct] + [""] * 8)
        out_lines.append(["", "Beginning Balance", "", "", "", "", "", "", "0.00"])
        bal = 0
        for i, e in enumerate(entries):
            amt = int(e["amount"])  # type: ignore[call-overload]
            bal += amt
            out_lines.append(["", e["date"], e["type"], e["num"], e["name"], e["memo"], "-Split-",  # type: ignore[list-item]
                              _qb_amount(amt, i, str(e["cur"])), _qb_amount(bal, 0, str(e["cur"]))])
            n += 1
        grand += bal
        out_lines.append([f"Total for {acct}", "", "", "", "", "", "", "$" + _qb_amount(bal, 1, str(entries[0]["cur"])),
                          ""])
    out_lines.append(["TOTAL", "", "", "", "", "", "", "$" + _qb_amount(grand, 1), ""])
    with (dst / "data" / "quickbooks_gl.csv").open("w", newline="", encoding="utf-8-sig") as fh:
        csv.writer(fh, lineterminator="\r\n").writerows(out_lines)
    return n


def _suffix_subject(subject: str, s: str) -> str:
    if not s:
        return subject
    parts = re.split(r"([/|@])", subject)
    out = []
    for p in parts:
        if p in ("/", "|", "@") or re.fullmatch(r"\d{4}-\d{2}-\d{2}|\d+", p):
            out.append(p)
        else:
            out.append(p + s)
    return "".join(out)


# Copied as they are: the catalog's SKUs and prices belong to the merchant, shared by every replica.
SHARED_FILES = ("products.csv",)
# Checks whose sources a replicated workspace leaves out (see `restrict_to_replicated`).
LEFT_OUT_CHECKS = ("crm_operations",)


def restrict_to_replicated(src: Path, dst: Path) -> list[str]:
    """Keep the base's tieout.yaml sources whose files the replicas have; returns the names left out.

    The CRM, operations roster, entitlements and usage files are not replicated: they link to customers
    by company name, and the demo's name vocabulary gives blocks past `entities.max_block` from about
    60 replicas. So `crm_operations` does not run on these workspaces, and its expected findings
    are left out of the manifest (`replicate_manifest`).
    """
    import yaml

    for name in SHARED_FILES:
        if (src / "data" / name).exists():
            shutil.copy(src / "data" / name, dst / "data" / name)
    cfg = yaml.safe_load((src / "tieout.yaml").read_text())
    kept = [s for s in cfg["sources"] if (dst / s["path"]).exists()]
    dropped = [s["name"] for s in cfg["sources"] if s not in kept]
    cfg["sources"] = kept
    alias = (cfg.get("entities") or {}).get("alias_file")
    if alias and not (dst / alias).exists():
        del cfg["entities"]["alias_file"]
        if not cfg["entities"]:
            del cfg["entities"]
    (dst / "tieout.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return dropped


def replicate_manifest(src: Path, dst: Path, k: int, rows: dict[str, int]) -> dict[str, object]:
    base = json.loads((src / "manifest.json").read_text())
    expected = []
    for check, cat, subject in base["expected"]:
        if check in LEFT_OUT_CHECKS:
            continue
        if check == "gl_cash":  # account-level: once
            expected.append([check, cat, subject])
            continue
        for r in range(k):
            subj = _suffix_subject(subject, "" if r == 0 else f"x{r}")
            if cat == "overlapping_subscriptions":  # the check names the pair in sorted order
                subj = "|".join(sorted(subj.split("|")))
            expected.append([check, cat, subj])
    lookalikes = {name: n * k for name, n in base["lookalikes"].items()}
    manifest = {"expected": sorted(expected), "lookalikes": lookalikes, "rows": rows}
    (dst / "manifest.json").write_text(json.dumps(manifest, indent=0))
    return manifest


def generate(rows_target: int, *, base_customers: int = 20000, seed: int = 7, out: Path | None = None,
             label: str | None = None, mix: str = "demo") -> Path:
    t0 = time.perf_counter()
    base = base_workspace(base_customers, seed, mix)
    t_base = time.perf_counter() - t0
    base_rows = json.loads((base / "manifest.json").read_text())["rows"]
    base_gw = sum(base_rows[f] for f in GATEWAY_FILES)
    k = max(1, round(rows_target / base_gw))
    label = label or _label(rows_target) + ("" if mix == "demo" else f"-{mix.upper()}")
    dst = out or DATA / label
    if dst.exists():
        shutil.rmtree(dst)
    (dst / "data").mkdir(parents=True)
    shutil.copy(base / "tieout.yaml", dst / "tieout.yaml")
    con = duckdb.connect()
    t1 = time.perf_counter()
    rows = replicate_csvs(con, base, dst, k)
    t_csv = time.perf_counter() - t1
    t2 = time.perf_counter()
    rows["quickbooks_gl.csv"] = replicate_gl(base, dst, k)
    t_gl = time.perf_counter() - t2
    dropped = restrict_to_replicated(base, dst)
    manifest = replicate_manifest(base, dst, k, rows)
    meta = {
        "scale": label, "mix": mix, "rows_target": rows_target, "base_customers": base_customers, "seed": seed,
        "replicas": k, "customers": base_customers * k,
        "gateway_transactions": sum(rows[f] for f in GATEWAY_FILES),
        "billing_payments": rows["payments.csv"], "invoices": rows["invoices.csv"], "rows": rows,
        "expected_findings": len(manifest["expected"]),  # type: ignore[arg-type]
        "sources_left_out": dropped,
        "bytes": sum(p.stat().st_size for p in (dst / "data").iterdir()),
        "seconds": {"base": round(t_base, 2), "replicate_csv": round(t_csv, 2), "gl": round(t_gl, 2),
                    "total": round(time.perf_counter() - t0, 2)},
    }
    (dst / "bench_meta.json").write_text(json.dumps(meta, indent=1))
    return dst


def _label(n: int) -> str:
    if n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n % 1_000 == 0:
        return f"{n // 1_000}K"
    return str(n)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default="1M", help="target gateway transactions: 1M, 3M, 10M, 250K, ... "
                    "(a -<mix> tail, e.g. 10M-target, picks the mix)")
    ap.add_argument("--mix", choices=sorted(MIXES), default=None,
                    help="demo (default): ~1 invoice per gateway transaction; target: ~5 transactions per invoice")
    ap.add_argument("--base-customers", type=int, default=20000, help="customers simulated by the demo (base)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", type=Path, default=None, help="default: bench/data/<rows>/")
    a = ap.parse_args(argv)
    n = parse_scale(a.rows)
    head, tail = split_label(a.rows)
    if a.mix and tail and a.mix != tail:
        ap.error(f"--mix {a.mix} contradicts --rows {a.rows}")
    mix = a.mix or tail or "demo"
    label = head.upper() + ("" if mix == "demo" else f"-{mix.upper()}")
    dst = generate(n, base_customers=a.base_customers, seed=a.seed, out=a.out, label=label, mix=mix)
    meta = json.loads((dst / "bench_meta.json").read_text())
    print(f"{dst} ({mix} mix): {meta['replicas']} replicas of {meta['base_customers']:,} customers; "
          f"{meta['gateway_transactions']:,} gateway txns, {meta['billing_payments']:,} payments, "
          f"{meta['invoices']:,} invoices, {meta['bytes'] / 1e6:,.0f} MB; {meta['expected_findings']:,} expected "
          f"findings; {meta['seconds']['total']:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

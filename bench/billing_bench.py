"""Benchmark the expected-invoice engine: N subscriptions and M usage events → the expected lines of
the invoice run of 2026-10-01 (recurring lines in advance, September usage rated over graduated and
volume tiers), tieout (Ibis on DuckDB) against the same rating in plain pandas.

    python bench/billing_bench.py                          # 1M subscriptions, 10M usage events
    python bench/billing_bench.py --subs 100K --events 1M

Data is generated with DuckDB SQL into bench/data/billing-<subs>-<events>/ (Parquet). Each
implementation runs in its own subprocess; measured: wall seconds of the work (data already on
disk, imports excluded), the CPU seconds the process used for it (user + system, all threads: on a
shared machine the steadier figure), and peak RSS (VmHWM); the load averages are printed before and
after. Both must give the same number of lines and the same
total in minor units, which is checked. Nothing asserts on time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).parent
CATALOG = {
    "products": [
        {"sku": "PRO", "currency": "USD", "model": "per_unit", "amount": "49.00"},
        {"sku": "TEAM", "currency": "USD", "model": "flat", "amount": "190.00"},
        {"sku": "API", "currency": "USD", "model": "graduated", "usage": True,
         "tiers": [{"up_to": 100, "unit_amount": "0.02"}, {"up_to": 1000, "unit_amount": "0.015"},
                   {"unit_amount": "0.01", "flat_amount": "1.00"}]},
        {"sku": "STORAGE", "currency": "USD", "model": "volume", "usage": True,
         "tiers": [{"up_to": 200, "unit_amount": "0.5"}, {"up_to": 2000, "unit_amount": "0.4"},
                   {"unit_amount": "0.25"}]},
    ]
}


def _count(text: str) -> int:
    t = text.upper()
    mult = 1_000_000 if t.endswith("M") else 1_000 if t.endswith("K") else 1
    return int(float(t.rstrip("MK")) * mult)


def generate(path: Path, subs: int, events: int) -> None:
    import duckdb

    path.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute(f"""
        COPY (SELECT 'S' || i AS subscription_id, 'C' || i AS customer_id,
                     ['PRO', 'TEAM', 'API', 'STORAGE'][i % 4 + 1] AS sku, 1 + i % 37 AS quantity,
                     [4900, 19000, 0, 0][i % 4 + 1]::BIGINT AS unit_amount, 'USD' AS currency, 'month' AS interval,
                     DATE '2025-01-01' + (i % 500)::INT AS start_date, NULL::DATE AS end_date, 'active' AS status,
                     NULL::DECIMAL(38, 9) AS discount_percent, NULL::DATE AS discount_end, NULL::VARCHAR AS contract_id,
                     1::BIGINT AS billing_anchor, NULL::DATE AS trial_end, NULL::VARCHAR AS coupon,
                     NULL::VARCHAR AS po_number, 'bench' AS source, 'subs:' || i AS source_ref
              FROM range({subs}) t(i)) TO '{path / "subscriptions.parquet"}' (FORMAT parquet)""")
    usage_subs = subs // 2
    con.execute(f"""
        COPY (SELECT 'e' || j AS event_id, 'C' || s AS customer_id, 'S' || s AS subscription_id,
                     ['API', 'STORAGE'][s % 4 - 1] AS sku, 1 + (j * 7919) % 50 AS quantity,
                     TIMESTAMPTZ '2026-09-01 00:00:00+00' + to_seconds((j * 104729) % 2678400) AS occurred_at,
                     'bench' AS source, 'usage:' || j AS source_ref
              FROM (SELECT j, 4 * ((j % {usage_subs}) // 2) + 2 + (j % {usage_subs}) % 2 AS s
                    FROM range({events}) t(j)))
        TO '{path / "usage_events.parquet"}' (FORMAT parquet)""")
    con.close()


def _cpu_seconds() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run_tieout(path: Path) -> dict[str, object]:
    from tieout.billing.catalog import BillingConfig
    from tieout.billing.expected import BillingTables, expected_lines
    from tieout.engines import create_engine

    cfg = BillingConfig.model_validate(CATALOG)
    engine = create_engine("duckdb")
    t0 = time.perf_counter()
    subs = engine.con.read_parquet(str(path / "subscriptions.parquet"))
    events = engine.con.read_parquet(str(path / "usage_events.parquet"))
    lines = expected_lines(engine, cfg, BillingTables(subs, usage_events=events), [date(2026, 10, 1)])
    summary = lines.aggregate(lines=lines.count(), total=lines.amount.sum()).to_pyarrow().to_pylist()[0]
    return {"seconds": time.perf_counter() - t0, **summary}


def run_pandas(path: Path) -> dict[str, object]:
    import numpy as np
    import pandas as pd

    t0 = time.perf_counter()
    subs = pd.read_parquet(path / "subscriptions.parquet",
                           columns=["subscription_id", "sku", "quantity", "unit_amount", "start_date", "end_date"])
    ev = pd.read_parquet(path / "usage_events.parquet", columns=["subscription_id", "sku", "quantity", "occurred_at"])
    inv_date = pd.Timestamp("2026-10-01")
    active = subs[(pd.to_datetime(subs.start_date) <= inv_date)
                  & (subs.end_date.isna() | (pd.to_datetime(subs.end_date) > inv_date))]
    rec = active[active.sku.isin(["PRO", "TEAM"])]
    rec_amount = np.where(rec.sku == "PRO", rec.quantity * rec.unit_amount, rec.unit_amount)
    start, end = pd.Timestamp("2026-09-01", tz="UTC"), pd.Timestamp("2026-10-01", tz="UTC")
    ev = ev[(ev.occurred_at >= start) & (ev.occurred_at < end)]
    used = ev.groupby("subscription_id", sort=False)["quantity"].sum().rename("used")
    u = active[active.sku.isin(["API", "STORAGE"])].join(used, on="subscription_id", how="inner")
    q = u.used.to_numpy(dtype=np.int64)
    # Prices in tenths of a cent (0.015 USD = 15), so the rating is exact in integers.
    grad = (np.clip(q, 0, 100) * 20 + (np.clip(q, 100, 1000) - 100) * 15
            + (np.clip(q, 1000, None) - 1000) * 10 + np.where(q > 1000, 1000, 0))
    vol = np.where(q <= 200, q * 500, np.where(q <= 2000, q * 400, q * 250))
    tenths = np.where(u.sku == "API", grad, vol)
    usage_amount = (tenths + 5) // 10
    usage_amount = usage_amount[usage_amount != 0]
    total = int(rec_amount.sum()) + int(usage_amount.sum())
    return {"seconds": time.perf_counter() - t0, "lines": int(len(rec_amount) + len(usage_amount)), "total": total}


def _load() -> None:
    """The machine's load averages (1, 5, 15 min): on a shared machine, wall time depends on them."""
    one, five, fifteen = os.getloadavg()
    sys.stdout.write(f"load average {one:.2f} {five:.2f} {fifteen:.2f}\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subs", default="1M")
    ap.add_argument("--events", default="10M")
    ap.add_argument("--worker", choices=["tieout", "pandas"])
    ap.add_argument("--path")
    a = ap.parse_args()
    if a.worker:
        fn = run_tieout if a.worker == "tieout" else run_pandas
        cpu0 = _cpu_seconds()
        result = fn(Path(a.path))
        result["cpu_seconds"] = _cpu_seconds() - cpu0
        result["peak_rss_mb"] = _peak_rss_mb()
        sys.stdout.write(json.dumps(result, default=str) + "\n")
        return
    subs, events = _count(a.subs), _count(a.events)
    path = ROOT / "data" / f"billing-{a.subs}-{a.events}"
    if not (path / "usage_events.parquet").exists():
        t = time.perf_counter()
        generate(path, subs, events)
        sys.stdout.write(f"generated {path} in {time.perf_counter() - t:.1f} s\n")
    results = {}
    _load()
    for impl in ("tieout", "pandas"):
        proc = subprocess.run([sys.executable, __file__, "--worker", impl, "--path", str(path)], capture_output=True,
                              text=True, check=True)
        results[impl] = json.loads(proc.stdout.strip().splitlines()[-1])
        r = results[impl]
        sys.stdout.write(f"{impl:7s} {r['seconds']:8.2f} s  cpu {r['cpu_seconds']:7.2f} s  "
                         f"peak {r['peak_rss_mb']:8.0f} MB  lines {r['lines']:,}  "
                         f"total {r['total']:,}\n")
    same = (results["tieout"]["lines"], results["tieout"]["total"]) == (results["pandas"]["lines"],
                                                                          results["pandas"]["total"])
    _load()
    ratio = float(results["tieout"]["seconds"]) / float(results["pandas"]["seconds"])
    sys.stdout.write(f"same lines and total: {same}; tieout/pandas time ratio {ratio:.2f}\n")


if __name__ == "__main__":
    main()

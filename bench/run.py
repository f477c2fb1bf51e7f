"""Benchmark tieout end to end against pandas, Polars and a bare-DuckDB floor.

    python bench/run.py                         # 1M only
    python bench/run.py --scales 1M,3M,10M
    python bench/run.py --scales 3M --impls tieout,floor --timeout 600

For each scale, the workspace bench/data/<scale>/ is generated if missing (bench/generate.py), then
each implementation runs in its own fresh Python subprocess (`run.py --worker IMPL WORKSPACE`):

* tieout     load_config + pipeline.run: all three checks, full ingest (normalize + quality gate on
             every file), findings written to a fresh SQLite store (private to the run). What a user runs.
* tieout_gb  the same with only the sources gateway_billing reads and only that check enabled: the
             like-for-like comparison with the baselines.
* pandas, polars, floor   bench/pandas_baseline.py (the gateway_billing core only; see there).

Measured per run: wall seconds (parent clock, process start to exit, so interpreter start-up and
imports are included), the worker's own work seconds, and peak RSS (the worker's
own VmHWM high-water mark from /proc/self/status, which includes DuckDB's native memory and, unlike
ru_maxrss, is not inherited from the forking parent; a psutil poll of the process tree every 50 ms
is recorded as a cross-check). Prints a table and writes
bench/results/<timestamp>.json. Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
RESULTS = HERE / "results"
IMPLS = ("tieout", "tieout_gb", "pandas", "polars", "floor")
MEMORY_LIMIT_ENV = "TIEOUT_BENCH_DUCKDB_MEMORY_LIMIT"
GB_SOURCES = {"customers", "invoices", "payments", "stripe_balance", "stripe_failed_payments"}


# ---------------------------------------------------------------------------------------------- worker
def _gb_config(ws: Path) -> Path:
    import yaml

    cfg = yaml.safe_load((ws / "tieout.yaml").read_text())
    cfg["sources"] = [s for s in cfg["sources"] if s["name"] in GB_SOURCES]
    cfg["store"] = "sqlite:///tieout_gb.db"
    cfg.pop("entities", None)  # entity resolution (CRM aliases) is no part of gateway_billing
    cfg["checks"] = {"gateway_billing": cfg["checks"]["gateway_billing"],
                     "billing_subscriptions": {"enabled": False}, "gl_cash": {"enabled": False}}
    path = ws / "tieout_gb.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _cpu_seconds() -> float:
    """CPU seconds of this process, all threads (DuckDB's included): less sensitive than wall time
    to other work on a shared machine."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _instrument_engine() -> dict[str, list[float]]:
    """Time every table the DuckDB engine creates (read, materialize), by name stem, without
    touching tieout: wraps the engine class's methods in this process only."""
    import re

    from tieout.engines.duckdb import DuckDBEngine

    spent: dict[str, list[float]] = {}

    def wrap(method_name: str, stem_of: object) -> None:
        orig = getattr(DuckDBEngine, method_name)

        def timed(self: object, *args: object, **kwargs: object) -> object:
            t, c = time.perf_counter(), _cpu_seconds()
            try:
                return orig(self, *args, **kwargs)
            finally:
                stem = stem_of(args)  # type: ignore[operator]
                acc = spent.setdefault(stem, [0.0, 0, 0.0])
                acc[0] += time.perf_counter() - t
                acc[1] += 1
                acc[2] += _cpu_seconds() - c

        setattr(DuckDBEngine, method_name, timed)

    wrap("read_csv_text", lambda a: "read_csv")
    # the pipeline's own steps, where `pipeline.ingest` looks them up (module attributes)
    import tieout.pipeline

    for step in (*INGEST_PHASES.values(), METRICS_STEP):
        fn_name = step.removeprefix("pipeline:")
        orig_fn = getattr(tieout.pipeline, fn_name)

        def timed_fn(*args: object, _orig: object = orig_fn, _name: str = fn_name, **kwargs: object) -> object:
            t, c = time.perf_counter(), _cpu_seconds()
            try:
                return _orig(*args, **kwargs)  # type: ignore[operator]
            finally:
                acc = spent.setdefault(f"pipeline:{_name}", [0.0, 0, 0.0])
                acc[0] += time.perf_counter() - t
                acc[1] += 1
                acc[2] += _cpu_seconds() - c

        setattr(tieout.pipeline, fn_name, timed_fn)
    wrap("from_arrow", lambda a: f"from_arrow:{a[0]}")
    wrap("materialize", lambda a: "materialize:" + re.sub(r"_(customers|subscriptions|invoices|invoice_lines|"
                                                           r"payments|gateway_transactions|payouts|gl_entries)$",
                                                           r" (\1)", str(a[0])))
    return spent


MATCH_STEPS = ("exact", "candidates", "mutual", "remaining", "pairs")
# The phases the pipeline's own steps make (timed by `_instrument_engine`): label -> step, in run order.
INGEST_PHASES = {
    "read (file checks, views)": "pipeline:read_file",
    "parse+normalize (two queries per file)": "pipeline:normalize",
    "gate (duplicates, quarantine, counts)": "pipeline:gate",
    "entity links": "pipeline:link_entities",
}
METRICS_STEP = "pipeline:compute_metrics"


def cpu_phases(spent: dict[str, list[float]]) -> dict[str, float]:
    """CPU seconds (all threads) of the phases the engine wrappers time; see `phases`."""
    def s(key: str) -> float:
        v = spent.get(key, [])
        return v[2] if len(v) > 2 else 0.0

    out = {**{label: s(step) for label, step in INGEST_PHASES.items()}, "metrics": s(METRICS_STEP)}
    return {k: round(v, 2) for k, v in out.items()}


def phases(timings: dict[str, float], spent: dict[str, list[float]]) -> dict[str, float]:
    """Seconds per phase of one run. Reading a CSV is lazy: `normalize` reads the file's mapped columns
    into a scratch table (`texts`), then parses them into the stored table the gate and checks read."""
    def s(key: str) -> float:
        return spent.get(key, [0.0])[0]

    def stems(prefix: str) -> float:
        return sum(v[0] for k, v in spent.items() if k.startswith(prefix))

    match = sum(stems(f"materialize:{m}") for m in MATCH_STEPS)
    checks = sum(v for k, v in timings.items() if k.startswith("check:"))
    out = {
        **{label: s(step) for label, step in INGEST_PHASES.items()},
        "match (pairs)": match,
        "checks (less match)": checks - match,
        "metrics": s(METRICS_STEP),
        "store": timings.get("store", 0.0),
    }
    out["other"] = timings.get("total", 0.0) + timings.get("store", 0.0) - sum(out.values())
    return {k: round(v, 2) for k, v in out.items()}


def worker_tieout(ws: Path, only_gateway: bool) -> dict[str, object]:
    spent = _instrument_engine()
    from tieout.config import load_config
    from tieout.engines.duckdb import default_memory_limit
    from tieout.pipeline import run

    cfg_path = _gb_config(ws) if only_gateway else ws / "tieout.yaml"
    t0, c0 = time.perf_counter(), _cpu_seconds()
    cfg = load_config(cfg_path)
    # A private store: helpers sharing bench/data run concurrently; the workspace's own store
    # (and its run lock) would make their runs collide.
    store_dir = tempfile.mkdtemp(prefix="tieout-bench-store-")
    cfg.store = f"sqlite:///{store_dir}/tieout.db"
    if os.environ.get(MEMORY_LIMIT_ENV):  # `run.py --memory-limit`: DuckDB spills past it
        cfg.duckdb.memory_limit = os.environ[MEMORY_LIMIT_ENV]
    result = run(cfg)
    secs = time.perf_counter() - t0
    cpu_secs = _cpu_seconds() - c0
    shutil.rmtree(store_dir, ignore_errors=True)
    got = {(f.check, f.category, f.subject) for f in result.findings}
    manifest = json.loads((ws / "manifest.json").read_text())
    expected = {tuple(e) for e in manifest["expected"]
                if not only_gateway or e[0] == "gateway_billing"}
    by_cat = Counter(f"{f.check}.{f.category}" for f in result.findings)
    return {
        "findings": len(result.findings),
        "by_category": dict(sorted(by_cat.items())),
        "expected": len(expected), "missing": len(expected - got), "extra": len(got - expected),
        "rows_read": result.rows_read,
        "timings": {k: round(v, 3) for k, v in result.timings.items()},
        "phases": phases(result.timings, spent),
        "cpu_phases": cpu_phases(spent),
        "cpu_seconds": round(cpu_secs, 2),
        "engine_steps": {k: {"seconds": round(v[0], 2), "calls": int(v[1])}
                         for k, v in sorted(spent.items(), key=lambda kv: -kv[1][0])},
        "work_seconds": round(secs, 3),
        "duckdb_memory_limit": cfg.duckdb.memory_limit or f"{default_memory_limit()} (default)",
    }


def worker_baseline(ws: Path, impl: str) -> dict[str, object]:
    sys.path.insert(0, str(HERE))
    import pandas_baseline

    t0 = time.perf_counter()
    by_cat = pandas_baseline.IMPLS[impl](ws)
    secs = time.perf_counter() - t0
    out: dict[str, object] = {"by_category": by_cat, "work_seconds": round(secs, 3)}
    if impl == "floor":
        out["findings"] = by_cat["unpaired_charges"]
    else:
        out["findings"] = sum(by_cat.values())
        manifest = json.loads((ws / "manifest.json").read_text())
        exp = Counter(c for k, c, _ in manifest["expected"] if k == "gateway_billing")
        out["expected"] = sum(exp.values())
        out["category_counts_match_manifest"] = dict(exp) == {k: v for k, v in by_cat.items() if v}
    return out


def _peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM belongs to the address space created at exec, so unlike
    getrusage().ru_maxrss (which Linux carries over from the forking parent) it is this run's own."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


def worker(impl: str, ws: Path, out: Path) -> int:
    if impl in ("tieout", "tieout_gb"):
        res = worker_tieout(ws, only_gateway=impl == "tieout_gb")
    else:
        res = worker_baseline(ws, impl)
    res["peak_rss_mb"] = _peak_rss_mb()
    out.write_text(json.dumps(res))
    return 0


# ---------------------------------------------------------------------------------------------- parent
def _tree_rss(proc: object) -> int:
    import psutil

    assert isinstance(proc, psutil.Process)
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def run_one(impl: str, ws: Path, timeout: float, log_dir: Path, memory_limit: str | None = None) -> dict[str, object]:
    import psutil

    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        out = Path(fh.name)
    log = (log_dir / f"{ws.name}-{impl}.log").open("w")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker", impl, str(ws), str(out)],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1",
                                 **({MEMORY_LIMIT_ENV: memory_limit} if memory_limit else {})})
    ps = psutil.Process(proc.pid)
    polled = 0
    status = "ok"
    while proc.poll() is None:
        with contextlib.suppress(psutil.Error):
            polled = max(polled, _tree_rss(ps))
        if time.perf_counter() - t0 > timeout:
            os.killpg(proc.pid, signal.SIGKILL)  # our own child's process group
            proc.wait()
            status = f"timeout after {timeout:.0f} s"
            break
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    log.close()
    res: dict[str, object] = {"impl": impl, "status": status, "wall_seconds": round(wall, 2),
                              "polled_peak_rss_mb": round(polled / 2**20, 1),
                              "load_average_after": [round(x, 2) for x in os.getloadavg()]}
    if status == "ok" and proc.returncode != 0:
        res["status"] = f"failed (exit {proc.returncode}); see {log.name}"
    elif status == "ok":
        res.update(json.loads(out.read_text()))
    out.unlink(missing_ok=True)
    return res


def ensure_workspace(scale: str, base_customers: int) -> tuple[Path, dict[str, object]]:
    ws = DATA / scale
    if not (ws / "bench_meta.json").exists():
        print(f"generating {ws} ...", file=sys.stderr, flush=True)
        # In a subprocess: keeps this parent small (children inherit nothing big at fork).
        subprocess.run([sys.executable, str(HERE / "generate.py"), "--rows", scale,
                        "--base-customers", str(base_customers)], check=True)
    return ws, json.loads((ws / "bench_meta.json").read_text())


def _fmt_table(rows: list[dict[str, object]]) -> str:
    head = f"{'scale':>5} {'impl':<14} {'wall s':>8} {'work s':>8} {'peak RSS MB':>11} " \
           f"{'x tieout':>8} {'x tieout_gb':>11} {'findings':>9}  status"
    lines = [head, "-" * len(head)]
    def num(r: dict[str, object], key: str, fmt: str) -> str:
        v = r.get(key)
        width = fmt.rstrip("dfs").split(".")[0]
        return format(v, fmt) if isinstance(v, (int, float)) else format("-", ">" + width)

    for r in rows:
        lines.append(f"{r['scale']:>5} {r['impl']:<14} {num(r, 'wall_seconds', '8.1f')} "
                     f"{num(r, 'work_seconds', '8.1f')} "
                     f"{num(r, 'peak_rss_mb', '11.0f')} {num(r, 'x_tieout', '8.2f')} {num(r, 'x_tieout_gb', '11.2f')} "
                     f"{num(r, 'findings', '9d')}  {r['status']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--worker"]:
        return worker(argv[1], Path(argv[2]), Path(argv[3]))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scales", default="1M", help="comma-separated: 1M,3M,10M")
    ap.add_argument("--impls", default=",".join(IMPLS), help=f"comma-separated subset of {','.join(IMPLS)}")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per run before it is killed")
    ap.add_argument("--base-customers", type=int, default=20000)
    ap.add_argument("--memory-limit", default=None,
                    help="DuckDB memory_limit for the tieout runs (e.g. 2GB): they must spill, not fail")
    a = ap.parse_args(argv)
    impls = [i.strip() for i in a.impls.split(",") if i.strip()]
    unknown = set(impls) - set(IMPLS)
    if unknown:
        ap.error(f"unknown impls: {', '.join(sorted(unknown))}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    log_dir = RESULTS / f"{stamp}-logs"
    log_dir.mkdir()
    import duckdb
    import ibis
    import pandas
    import polars
    import psutil

    report: dict[str, object] = {
        "timestamp": stamp,
        "machine": {"cpus": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
                    "platform": platform.platform(), "python": platform.python_version()},
        "versions": {"ibis": ibis.__version__, "duckdb": duckdb.__version__, "pandas": pandas.__version__,
                     "polars": polars.__version__},
        "scales": {}, "runs": [], "load_average_start": os.getloadavg(),
    }
    rows: list[dict[str, object]] = []
    for scale in [s.strip().upper() for s in a.scales.split(",") if s.strip()]:
        ws, meta = ensure_workspace(scale, a.base_customers)
        report["scales"][scale] = meta  # type: ignore[index]
        print(f"{scale}: {meta['gateway_transactions']:,} gateway txns, {meta['billing_payments']:,} payments, "
              f"{meta['invoices']:,} invoices ({meta['replicas']} x {meta['base_customers']:,} customers)",
              file=sys.stderr, flush=True)
        scale_rows = []
        for impl in impls:
            print(f"  {impl} ...", end="", file=sys.stderr, flush=True)
            limited = a.memory_limit if impl.startswith("tieout") else None
            r = run_one(impl, ws, a.timeout, log_dir, limited)
            r["scale"] = scale
            if limited:
                r["impl"] = f"{impl}@{limited}"
            print(f" {r['wall_seconds']} s, {r.get('peak_rss_mb', '-')} MB, {r['status']}", file=sys.stderr, flush=True)
            scale_rows.append(r)
        ref = {str(x["impl"]).split("@")[0]: x for x in scale_rows if x["status"] == "ok"}
        for r in scale_rows:
            for key in ("tieout", "tieout_gb"):
                if key in ref and r["status"] == "ok":
                    r[f"x_{key}"] = round(float(r["wall_seconds"]) / float(ref[key]["wall_seconds"]), 2)  # type: ignore[arg-type]
        rows.extend(scale_rows)
        report["runs"] = rows
        report["load_average_end"] = os.getloadavg()
        (RESULTS / f"{stamp}.json").write_text(json.dumps(report, indent=1))  # after every scale
    print(_fmt_table(rows))
    for r in rows:
        if isinstance(r.get("phases"), dict):
            print(f"\n{r['scale']} {r['impl']} phases (s): "
                  + ", ".join(f"{k} {v}" for k, v in r["phases"].items()))  # type: ignore[union-attr]
        if isinstance(r.get("cpu_phases"), dict):
            print(f"{r['scale']} {r['impl']} CPU s (all threads; {r.get('cpu_seconds')} in all): "
                  + ", ".join(f"{k} {v}" for k, v in r["cpu_phases"].items()))  # type: ignore[union-attr]
    print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"\nx tieout = wall / tieout wall (>1: slower than tieout). Results: {RESULTS / (stamp + '.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

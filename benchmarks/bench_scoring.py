"""Whole-process timing of ``clv-forecast score`` on simulated RFM tables (Parquet in, Parquet out).

    python benchmarks/bench_scoring.py --data-dir /tmp/clv-score-bench                 # 1M and 10M
    python benchmarks/bench_scoring.py --data-dir /tmp/clv-score-bench --sizes 1000000 --runs 3
    python benchmarks/bench_scoring.py --data-dir /tmp/clv-score-bench --no-lifetimes
    python benchmarks/bench_scoring.py --data-dir /tmp/clv-score-bench --sizes 10000000 --distinct --no-lifetimes
    python benchmarks/bench_scoring.py --data-dir /tmp/clv-score-bench --sizes 10000000 --models --no-lifetimes
    python benchmarks/bench_scoring.py --data-dir /tmp/clv-score-bench --sizes 10000000 --interval 0 0.9 --no-lifetimes
    python benchmarks/bench_scoring.py --data-dir /tmp/clv-score-bench --sizes 10000000 --no-lifetimes \
        --extra "--windows 0-1Y,1-2Y,2-3Y,3-5Y,0-5Y --horizon 5Y" --extra "--periods M --windows 0-1Y,1-2Y,2-3Y,3-5Y,0-5Y --horizon 5Y"

Data: N customers drawn from the BG/NBD + Gamma-Gamma generative process with the parameters of a
model fitted on the bundled CDNOW sample (T a whole number of days from 182 to 546, in weeks, and
recency whole days too, as ``summarize(merge="D")`` writes them: the (frequency, T) pairs repeat, so
the BG/NBD dedupe applies as on real tables; with continuous T every row is distinct and scoring
costs about 2.5 s per million rows; each customer's purchase
rate, dropout probability and mean spend drawn from the fitted priors; the purchase times then
simulated in closed form: frequency ~ Poisson(lambda * lifetime), recency the last purchase time).
The table is written once as Parquet; the model as JSON.

Each command runs ``--runs`` times after one warm-up run (not counted; also warms the page cache);
the median wall time is the figure, min and max the spread. Wall time is a monotonic clock around
``Popen`` ... ``os.wait4``; peak memory is the child's ``ru_maxrss`` (Linux, KiB). The yardstick is
lifetimes 0.11.3's ``GammaGammaFitter.customer_lifetime_value`` on the same table at 1M (parameters
set, not fitted; pandas reads the Parquet file), when lifetimes is installed.

Targets (issue): 10M customers scored end to end from Parquet in <= 20 s, peak <= 2 GiB.

Measured 2026-11-27 (2 CPUs, 23 GiB; ``--runs 3``, batch 1M rows, lifetimes 0.11.3 once):

| command | median s | min-max s | peak MiB |
|---|---|---|---|
| clv-forecast score, 1,000,000 | 0.91 | 0.89-1.11 | 439 |
| lifetimes customer_lifetime_value, 1,000,000 | 9.60 | 9.60-9.60 | 468 |
| clv-forecast score, 10,000,000 | 4.33 | 4.30-4.36 | 828 |
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

LIFETIMES_SCRIPT = r"""
import sys, json
import pandas as pd
from lifetimes import BetaGeoFitter, GammaGammaFitter
params = json.load(open(sys.argv[2]))
df = pd.read_parquet(sys.argv[1])
bgf, ggf = BetaGeoFitter(), GammaGammaFitter()
bgf.predict = bgf.conditional_expected_number_of_purchases_up_to_time  # set by fit() in lifetimes
role = lambda key, old: (params.get(key) or params[old])["params"]  # format 3 keys by role; 1 and 2 by kind
bgf.params_ = pd.Series(role("purchases", "bgnbd"))
ggf.params_ = pd.Series(role("spend", "gamma_gamma"))
clv = ggf.customer_lifetime_value(bgf, df["frequency"], df["recency"], df["T"], df["monetary_value"],
                                  time=12, discount_rate=0.0, freq="W")
clv.to_frame("clv").to_parquet(sys.argv[3])
"""


def simulate_rfm(n: int, params: dict, seed: int = 0, chunk: int = 2_000_000, distinct: bool = False):
    """Yield pyarrow tables of an RFM table of ``n`` customers drawn from the models' process
    (``distinct``: T continuous, so that every (frequency, T) pair is distinct: the worst case)."""
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    purchases = (params.get("purchases") or params["bgnbd"])["params"]  # model file format 3 / 1 and 2
    spend = (params.get("spend") or params["gamma_gamma"])["params"]
    r, alpha, a, b = (purchases[k] for k in ("r", "alpha", "a", "b"))
    p, q, v = (spend[k] for k in ("p", "q", "v"))
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        big_t = (rng.uniform(182, 547, m) if distinct  # every (x, T) pair distinct: no dedupe
                 else rng.integers(182, 547, m)) / 7.0  # whole days in weeks, as summarize(merge="D") gives
        lam = rng.gamma(r, 1 / alpha, m)
        drop = rng.beta(a, b, m)
        # purchases form a Poisson process; after each, the customer drops out with probability drop
        gaps_to_death = rng.geometric(drop, m)  # purchases (incl. the first at 0) made while alive
        death_time = rng.gamma(np.maximum(gaps_to_death, 1), 1 / lam)  # time of the dropout purchase
        alive_for = np.minimum(death_time, big_t)
        x = np.minimum(rng.poisson(lam * alive_for), np.maximum(gaps_to_death - 1, 0)).astype(np.float64)
        recency = np.where(x > 0, np.floor(alive_for * 7 * rng.beta(np.maximum(x, 1), 1.0)) / 7.0, 0.0)
        nu = rng.gamma(q, 1 / v, m)
        spend = np.where(x > 0, rng.gamma(p * np.maximum(x, 1), 1 / (nu * np.maximum(x, 1))), 0.0)
        yield pa.table({"customer_id": np.arange(start, start + m, dtype=np.int64), "frequency": x,
                        "recency": recency, "T": big_t, "monetary_value": spend})


def ensure_data(data_dir: Path, n: int, distinct: bool = False) -> tuple[Path, Path]:
    import json

    import pyarrow.parquet as pq

    data_dir.mkdir(parents=True, exist_ok=True)
    model_path = data_dir / "model.json"
    if not model_path.exists():
        from clv_forecast.datasets import load_cdnow_sample
        from clv_forecast.model import ClvModel
        from clv_forecast.rfm import summarize

        rfm = summarize(load_cdnow_sample(), customer_col="customer_id", date_col="date", amount_col="amount",
                        time_unit="W")
        ClvModel().fit(rfm).save(model_path)
    table_path = data_dir / f"rfm_{n}{'_distinct' if distinct else ''}.parquet"
    if not table_path.exists():
        params = json.loads(model_path.read_text())
        writer = None
        for table in simulate_rfm(n, params, distinct=distinct):
            writer = writer or pq.ParquetWriter(str(table_path) + ".part", table.schema)
            writer.write_table(table)
        writer.close()
        os.replace(str(table_path) + ".part", table_path)
    return model_path, table_path


def model_files(data_dir: Path, kinds: list[str]) -> dict[str, Path]:
    """One model file per purchase model (with Gamma-Gamma), each fitted on the bundled CDNOW sample (weeks; a
    whole-period model on the log merged by week)."""
    from clv_forecast import estimators
    from clv_forecast.datasets import load_cdnow_sample
    from clv_forecast.model import ClvModel
    from clv_forecast.rfm import summarize

    out = {}
    for kind in kinds:
        path = data_dir / f"model_{kind}.json"
        if not path.exists():
            weeks = estimators.get(kind, "purchases").whole_periods
            rfm = summarize(load_cdnow_sample(), customer_col="customer_id", date_col="date", amount_col="amount",
                            time_unit="W", merge="W" if weeks else "D")
            ClvModel(purchases=kind, on_boundary="refuse").fit(rfm).save(path)
        out[kind] = path
    return out


def whole_weeks(table_path: Path) -> Path:
    """The table in whole weeks (what a whole-period model such as BG/BB reads): recency and T floored to weeks,
    frequency at most recency."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = table_path.with_name(table_path.stem + "_weeks.parquet")
    if path.exists():
        return path
    source = pq.ParquetFile(table_path)
    writer = None
    for batch in source.iter_batches(batch_size=2_000_000):
        t = batch.to_pandas()
        t["T"] = np.floor(t["T"])
        t["recency"] = np.minimum(np.floor(t["recency"]), t["T"])
        t["frequency"] = np.minimum(t["frequency"], t["recency"])
        t.loc[t["frequency"] == 0, ["recency", "monetary_value"]] = 0.0
        table = pa.Table.from_pandas(t, preserve_index=False)
        writer = writer or pq.ParquetWriter(str(path) + ".part", table.schema)
        writer.write_table(table)
    writer.close()
    os.replace(str(path) + ".part", path)
    return path


def run(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one process."""
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.monotonic() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode}): {process.stderr.read().decode()[-2000:]}")
    process.stderr.close()
    return seconds, usage.ru_maxrss / 1024


def measure(command: list[str], runs: int) -> dict:
    run(command)  # warm-up
    results = [run(command) for _ in range(runs)]
    walls = [w for w, _ in results]
    return {"median": statistics.median(walls), "min": min(walls), "max": max(walls),
            "peak_mib": max(m for _, m in results)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch-rows", type=int, default=1_000_000)
    parser.add_argument("--no-lifetimes", action="store_true")
    parser.add_argument("--lifetimes-sizes", type=int, nargs="*", default=[1_000_000],
                        help="sizes at which lifetimes is run too (default 1M; 10M takes it minutes)")
    parser.add_argument("--distinct", action="store_true",
                        help="worst case: continuous T, every (frequency, T) pair distinct (target <= 20 s at 10M)")
    parser.add_argument("--models", nargs="*", default=None,
                        help="score with a model file per purchase model (each fitted on CDNOW): the kinds, or none "
                             "for every discovered one; without the option, the BG/NBD model file only")
    parser.add_argument("--interval", type=float, nargs="*", default=None,
                        help="also score with these interval levels (0: none), e.g. --interval 0 0.9: the plain "
                             "scoring and the 90 %% interval on every forecast in the same run")
    parser.add_argument("--interval-method", default="delta")
    parser.add_argument("--extra", action="append", default=None,
                        help="a variant of the score command: these extra options (one string, e.g. \"--periods M "
                             "--windows 0-1Y,1-3Y,3-5Y --horizon 5Y\"), measured after the plain command in the same "
                             "run; repeatable")
    args = parser.parse_args()
    exe = str(Path(sys.executable).with_name("clv-forecast"))
    rows = []
    kinds = None
    if args.models is not None:
        from clv_forecast import estimators

        kinds = args.models or list(estimators.available("purchases"))
    for n in args.sizes:
        model_path, table_path = ensure_data(args.data_dir, n, args.distinct)
        out = args.data_dir / f"scores_{n}.parquet"
        label = "clv-forecast score, every (x, T) distinct" if args.distinct else "clv-forecast score"
        runs = [(label, model_path, table_path)]
        if kinds is not None:
            from clv_forecast import estimators

            runs = []
            for kind, path in model_files(args.data_dir, kinds).items():
                weeks = estimators.get(kind, "purchases").whole_periods
                runs.append((f"{label} ({kind}{', whole weeks' if weeks else ''})", path,
                             whole_weeks(table_path) if weeks else table_path))
        levels = args.interval if args.interval is not None else [0.0]
        for name, model, table in runs:
            for level in levels:
                command = [exe, "score", "--model", str(model), "--input", str(table), "--output", str(out),
                           "--no-tracking", "--batch-rows", str(args.batch_rows), "--max-reject-share", "0"]
                shown = name
                if level:
                    command += ["--interval", str(level), "--interval-method", args.interval_method]
                    shown = f"{name} --interval {level:g} ({args.interval_method})"
                result = measure(command, args.runs)
                rows.append((f"{shown}, {n:,}", result))
                print(rows[-1], flush=True)
                for extra in ([] if level else args.extra or []):
                    result = measure(command + extra.split(), args.runs)
                    rows.append((f"{name} {extra}, {n:,}", result))
                    print(rows[-1], flush=True)
        if n in args.lifetimes_sizes and not args.no_lifetimes:
            try:
                import lifetimes  # noqa: F401
            except ImportError:
                print("lifetimes not installed: no yardstick", flush=True)
                continue
            ref_out = args.data_dir / f"lifetimes_{n}.parquet"
            lt = measure([sys.executable, "-c", LIFETIMES_SCRIPT, str(table_path), str(model_path), str(ref_out)],
                         max(1, args.runs - 2))
            rows.append((f"lifetimes customer_lifetime_value, {n:,}", lt))
            print(rows[-1], flush=True)
    print("\n| command | median s | min-max s | rows/s | peak MiB |\n|---|---|---|---|---|")
    for name, r in rows:
        n = int(name.rsplit(", ", 1)[1].replace(",", ""))
        print(f"| {name} | {r['median']:.2f} | {r['min']:.2f}-{r['max']:.2f} | {n / r['median']:,.0f} | "
              f"{r['peak_mib']:.0f} |")
    ours = {name.rsplit(", ", 1)[1]: r for name, r in rows  # lifetimes' yardstick is BG/NBD's CLV
            if name.startswith("clv-forecast") and ("(" not in name or "(bgnbd" in name)}
    for name, r in rows:
        size = name.rsplit(", ", 1)[1]
        if name.startswith("lifetimes") and size in ours:
            print(f"throughput against lifetimes at {size} rows: {r['median'] / ours[size]['median']:.1f}x")


if __name__ == "__main__":
    main()

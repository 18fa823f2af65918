"""Intervals on every forecast at 1M customers, in process: the delta method against parameter draws and against
the plain CLV, with lifetimes' CLV (which has no interval) as the yardstick in the same run.

    python benchmarks/bench_intervals.py --data-dir /tmp/clv-score-bench                   # whole-day T and continuous T
    python benchmarks/bench_intervals.py --data-dir /tmp/clv-score-bench --draws 200 --runs 3
    python benchmarks/bench_intervals.py --data-dir /tmp/clv-score-bench --no-draws --no-lifetimes

Data: the simulated RFM tables of ``bench_scoring.py`` (BG/NBD + Gamma-Gamma with the parameters fitted on the
bundled CDNOW sample): T in whole days (the (x, T) pairs repeat, as ``summarize(merge="D")`` writes them) and T
continuous (every pair distinct: the worst case). The table is read once; each figure is the median of ``--runs``
calls of ``ClvModel.clv`` on the whole 1M-row frame after one warm-up call (12 months, 10 %/year, monthly steps):
without an interval, with a 90 % interval on all four forecasts by the delta method (the default), and by
``--draws`` parameter draws (one run: it is the slow method). lifetimes 0.11.3's
``GammaGammaFitter.customer_lifetime_value`` (parameters set, not fitted) on the same frame, once.

Target (issue 20): every forecast with a 90 % delta-method interval at 1M customers <= 3 s on this machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_scoring import ensure_data  # noqa: E402  (the same simulated tables)


def timed(fn, runs: int) -> tuple[float, float, float]:
    fn()  # warm-up
    walls = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - started)
    return statistics.median(walls), min(walls), max(walls)


def lifetimes_clv(frame, model_path: Path):
    import warnings

    import pandas as pd
    from lifetimes import BetaGeoFitter, GammaGammaFitter

    params = json.loads(model_path.read_text())
    bgf, ggf = BetaGeoFitter(), GammaGammaFitter()
    bgf.predict = bgf.conditional_expected_number_of_purchases_up_to_time
    bgf.params_ = pd.Series((params.get("purchases") or params["bgnbd"])["params"])
    ggf.params_ = pd.Series((params.get("spend") or params["gamma_gamma"])["params"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ggf.customer_lifetime_value(bgf, frame["frequency"], frame["recency"], frame["T"],
                                           frame["monetary_value"], time=12, discount_rate=0.01, freq="W")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--draws", type=int, default=200, help="parameter draws of the draws method")
    parser.add_argument("--no-draws", action="store_true")
    parser.add_argument("--no-lifetimes", action="store_true")
    parser.add_argument("--only", choices=["whole-days", "continuous"], default=None)
    args = parser.parse_args()

    import pandas as pd

    from clv_forecast.model import ClvModel

    settings = dict(horizon="12M", discount_rate="10%/Y", step="1M")
    rows = []
    for distinct in (False, True):
        label = "continuous T (every pair distinct)" if distinct else "whole-day T"
        if args.only and args.only != ("continuous" if distinct else "whole-days"):
            continue
        model_path, table_path = ensure_data(args.data_dir, args.size, distinct)
        model = ClvModel.load(model_path)
        frame = pd.read_parquet(table_path).set_index("customer_id")
        frame.attrs["time_unit"] = "W"
        n = len(frame)
        plain = timed(lambda: model.clv(frame, **settings), args.runs)
        rows.append((label, "CLV, no interval", plain))
        print(rows[-1], flush=True)
        out = model.clv(frame, interval=0.9, **settings)
        delta = timed(lambda: model.clv(frame, interval=0.9, **settings), args.runs)
        rows.append((label, "every forecast, 90 % delta", delta))
        print(rows[-1], flush=True)
        band = out.attrs["portfolio"]["clv"]
        print(f"  {n:,} customers: total CLV {band['total']:,.0f}, 90 % band {band['lower']:,.0f} to "
              f"{band['upper']:,.0f}", flush=True)
        if not args.no_draws:
            started = time.perf_counter()
            model.clv(frame, interval=0.9, interval_method="draws", n_draws=args.draws, **settings)
            wall = time.perf_counter() - started
            rows.append((label, f"every forecast, 90 % from {args.draws} draws", (wall, wall, wall)))
            print(rows[-1], flush=True)
        if not args.no_lifetimes:
            try:
                import lifetimes  # noqa: F401
            except ImportError:
                print("lifetimes not installed: no yardstick", flush=True)
            else:
                started = time.perf_counter()
                lifetimes_clv(frame, model_path)
                wall = time.perf_counter() - started
                rows.append((label, "lifetimes customer_lifetime_value (no interval)", (wall, wall, wall)))
                print(rows[-1], flush=True)
    print(f"\n| data ({args.size:,} customers) | what | median s | min-max s |\n|---|---|---|---|")
    for label, what, (med, lo, hi) in rows:
        print(f"| {label} | {what} | {med:.2f} | {lo:.2f}-{hi:.2f} |")


if __name__ == "__main__":
    main()

"""Speed and memory of clv-forecast against lifetimes 0.11.3 on the same simulated transaction logs.

For each size (customers) one log is simulated (~3 transactions per customer, CDNOW-like
parameters, weekly unit, 12-week cohort, 78 weeks observed, calibration end after 39 weeks) and
every step of a CLV pass is timed for both libraries on that same data, in the same process:

1. RFM summary with monetary value (merge by day, times in weeks)
2. calibration/holdout split
3. BG/NBD fit (lifetimes on all rows; clv-forecast on compressed unique rows, compress included)
4. Gamma-Gamma fit
5. expected purchases in the next 39 weeks + P(alive) for every customer
6. 12-month CLV (lifetimes ``time=12, discount_rate=0.01, freq="W"``)

The outputs are checked to be the same numbers (summaries exactly, fitted parameters to 1e-3).
Peak memory of each library's whole pass is measured in a separate process per library and size
(the script re-invokes itself with ``--worker LIB SIZE``).

    python benchmarks/bench_lifetimes.py                          # 10k, 100k, 1M, both libraries
    python benchmarks/bench_lifetimes.py --sizes 10000 100000
    python benchmarks/bench_lifetimes.py --ours-only --sizes 10000000
    python benchmarks/bench_lifetimes.py --profile 1000000        # cProfile of our pass
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import time
import warnings

import numpy as np
import pandas as pd

SIM = dict(r=0.24, alpha=4.4, a=0.79, b=2.4, p=6.25, q=3.74, v=15.44, time_unit="W",
           start="2020-01-01", cohort_length="12W", end="2021-06-30")  # end = start + 78 weeks
CAL_END = "2020-09-30"  # start + 39 weeks; the whole day belongs to the calibration period
# lifetimes compares timestamps with "<=": give it the last instant of the day (data are in seconds)
CAL_END_LIFETIMES = "2020-09-30 23:59:59"
HORIZON_WEEKS = 39
SEED = 20240611
STEPS = ["summary", "split", "fit BG/NBD", "fit Gamma-Gamma", "predict", "CLV 12 months"]
LIBS = ["clv-forecast", "lifetimes"]


# ------------------------------------------------------------------------------ data


def make_data(n: int) -> pd.DataFrame:
    from clv_forecast.simulate import simulate

    return simulate(n, seed=SEED + n, **SIM)


# ------------------------------------------------------------------------------ the two passes


class Ours:
    name = "clv-forecast"

    def __init__(self) -> None:
        from clv_forecast import rfm, value
        from clv_forecast.btyd import BetaGeoModel, GammaGammaModel
        from clv_forecast.units import Rate

        self.rfm, self.value, self.BG, self.GG, self.Rate = rfm, value, BetaGeoModel, GammaGammaModel, Rate

    def summary(self, tx):
        return self.rfm.summarize(tx, customer_col="customer_id", date_col="timestamp", amount_col="amount",
                                  time_unit="W", merge="D")

    def split(self, tx):
        return self.rfm.summarize(tx, customer_col="customer_id", date_col="timestamp", amount_col="amount",
                                  time_unit="W", merge="D", calibration_end=CAL_END)

    def fit_bg(self, s):
        return self.BG().fit(self.rfm.compress(s[["frequency", "recency", "T"]]))

    def fit_gg(self, s):
        return self.GG().fit(s)

    def predict(self, bg, s):
        return bg.predict(s, HORIZON_WEEKS)

    def clv(self, bg, gg, s):
        return self.value.customer_lifetime_value(bg, gg, s, horizon="52.14W", step="4.345W",
                                                  discount_rate=self.Rate(0.01, "4.345W"))["clv"]

    @staticmethod
    def params(model) -> dict:
        return {k: float(v) for k, v in model.params_.items()}


class Lifetimes:
    name = "lifetimes"

    def __init__(self) -> None:
        # never `import lifetimes.datasets` (pkg_resources); the fitters and utils are enough
        from lifetimes.fitters.beta_geo_fitter import BetaGeoFitter
        from lifetimes.fitters.gamma_gamma_fitter import GammaGammaFitter
        from lifetimes.utils import calibration_and_holdout_data, summary_data_from_transaction_data

        self.BG, self.GG = BetaGeoFitter, GammaGammaFitter
        self.sdftd, self.cahd = summary_data_from_transaction_data, calibration_and_holdout_data

    def summary(self, tx):
        # freq="D" merges by day; freq_multiplier=7 divides the day counts by 7 (weeks), like ours
        return self.sdftd(tx, "customer_id", "timestamp", monetary_value_col="amount", freq="D",
                          freq_multiplier=7)

    def split(self, tx):
        return self.cahd(tx, "customer_id", "timestamp", calibration_period_end=CAL_END_LIFETIMES, freq="D",
                         freq_multiplier=7, monetary_value_col="amount")

    def fit_bg(self, s):
        return self.BG().fit(s["frequency"], s["recency"], s["T"])

    def fit_gg(self, s):
        rep = s[s["frequency"] > 0]
        return self.GG().fit(rep["frequency"], rep["monetary_value"])

    def predict(self, bg, s):
        f, r, t = s["frequency"], s["recency"], s["T"]
        return pd.DataFrame({
            "expected_purchases": bg.conditional_expected_number_of_purchases_up_to_time(HORIZON_WEEKS, f, r, t),
            "p_alive": bg.conditional_probability_alive(f, r, t),
        }, index=s.index)

    def clv(self, bg, gg, s):
        return gg.customer_lifetime_value(bg, s["frequency"], s["recency"], s["T"], s["monetary_value"],
                                          time=12, discount_rate=0.01, freq="W")

    @staticmethod
    def params(model) -> dict:
        return {k: float(v) for k, v in model.params_.items()}


def make_lib(name: str):
    return Ours() if name == "clv-forecast" else Lifetimes()


def run_pass(lib, tx, repeats: int = 1, times: dict | None = None) -> dict:
    """One whole pass; each step is run ``repeats`` times and the best time kept in ``times``."""
    times = {} if times is None else times

    def timed(step, fn, *args):
        best, out = float("inf"), None
        for _ in range(repeats):
            out = None
            gc.collect()
            t0 = time.perf_counter()
            out = fn(*args)
            best = min(best, time.perf_counter() - t0)
        times[step] = best
        return out

    s = timed("summary", lib.summary, tx)
    split = timed("split", lib.split, tx)
    bg = timed("fit BG/NBD", lib.fit_bg, s)
    gg = timed("fit Gamma-Gamma", lib.fit_gg, s)
    pred = timed("predict", lib.predict, bg, s)
    clv = timed("CLV 12 months", lib.clv, bg, gg, s)
    return {"summary": s, "split": split, "bg": bg, "gg": gg, "predict": pred, "clv": clv, "times": times}


# ------------------------------------------------------------------------------ checks


def _maxrel(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    den = np.maximum(np.abs(a), np.abs(b))
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.where(den > 0, np.abs(a - b) / den, 0.0)
    return float(rel.max()) if rel.size else 0.0


def check_same(ours: dict, theirs: dict, strict: bool) -> list[str]:
    """Compare the two passes' outputs; assert the summaries are equal when ``strict``."""
    lines = []
    so, st = ours["summary"], theirs["summary"].reindex(ours["summary"].index)
    exact = {c: bool(np.array_equal(so[c].to_numpy(float), st[c].to_numpy(float))) for c in ("frequency", "recency", "T")}
    mv = _maxrel(so["monetary_value"], st["monetary_value"])
    same_ids = len(so) == len(theirs["summary"]) and not st["frequency"].isna().any()
    lines.append(f"summary: same customers {same_ids}; exact frequency/recency/T {exact}; "
                 f"monetary_value max rel diff {mv:.1e}")
    if strict:
        assert same_ids and all(exact.values()) and mv < 1e-12, lines[-1]

    co, ct = ours["split"], theirs["split"].reindex(ours["split"].index)
    pairs = {"frequency": "frequency_cal", "recency": "recency_cal", "T": "T_cal",
             "monetary_value": "monetary_value_cal", "frequency_holdout": "frequency_holdout",
             "duration_holdout": "duration_holdout"}
    diffs = {c: _maxrel(co[c], ct[t]) for c, t in pairs.items()}
    same_ids = len(co) == len(theirs["split"]) and not ct["frequency_cal"].isna().any()
    # lifetimes' monetary_value_holdout is the mean of the raw holdout rows (not merged by day, unlike
    # its calibration monetary value and ours): the two differ for customers with >1 purchase on a day
    mh = co["monetary_value_holdout"].to_numpy() - ct["monetary_value_holdout"].to_numpy()
    n_mh = int((np.abs(mh) > 1e-9 * np.maximum(1.0, np.abs(co["monetary_value_holdout"].to_numpy()))).sum())
    lines.append(f"split: same customers {same_ids}; max rel diff per column "
                 + ", ".join(f"{c} {d:.1e}" for c, d in diffs.items())
                 + f"; monetary_value_holdout differs for {n_mh} customers (lifetimes does not merge the holdout by day)")
    if strict:
        assert same_ids and max(diffs.values()) < 1e-12, lines[-1]

    ok = True
    for key in ("bg", "gg"):
        po, pt = Ours.params(ours[key]), Lifetimes.params(theirs[key])
        rel = max(abs(po[k] - pt[k]) / abs(pt[k]) for k in pt)
        ok &= rel < 1e-3
        lines.append(f"{key} params: ours " + ", ".join(f"{k}={v:.6g}" for k, v in po.items())
                     + f"; max rel diff vs lifetimes {rel:.1e} ({'OK' if rel < 1e-3 else 'MISMATCH'} at 1e-3)")
    pe = _maxrel(ours["predict"]["expected_purchases"], theirs["predict"]["expected_purchases"].reindex(so.index))
    pa = _maxrel(ours["predict"]["p_alive"], theirs["predict"]["p_alive"].reindex(so.index))
    cl = _maxrel(ours["clv"], theirs["clv"].reindex(so.index))
    lines.append(f"outputs max rel diff: expected purchases {pe:.1e}, p_alive {pa:.1e}, CLV {cl:.1e}")
    lines.append("params agree" if ok else "WARNING: fitted parameters differ by more than 1e-3")
    return lines


# ------------------------------------------------------------------------------ memory worker


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset the kernel's RSS high-water mark (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def worker(lib_name: str, n: int) -> dict:
    """Whole pass in this process: data generated first, then peak RSS of the pass alone."""
    lib = make_lib(lib_name)
    tx = make_data(n)
    gc.collect()
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    baseline = _status_kib("VmRSS")
    reset = _reset_peak()
    t0 = time.perf_counter()
    warnings.simplefilter("ignore")
    res = run_pass(lib, tx)
    wall = time.perf_counter() - t0
    peak = _status_kib("VmHWM") if reset else None
    maxrss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"lib": lib_name, "n": n, "n_transactions": len(tx), "wall_s": wall, "times": res["times"],
            "baseline_rss_kib": baseline, "peak_rss_kib": peak if peak is not None else maxrss_after,
            "peak_is_pass_only": reset, "ru_maxrss_before_kib": maxrss_before, "ru_maxrss_after_kib": maxrss_after}


def run_worker(lib_name: str, n: int) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", lib_name, str(n)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------ reporting


def fmt_n(n: int) -> str:
    for div, suffix in ((1_000_000, "M"), (1_000, "k")):
        if n % div == 0:
            return f"{n // div}{suffix}"
    return str(n)


def mib(kib) -> str:
    return f"{kib / 1024:,.0f}"


def environment() -> str:
    import platform

    import polars
    import scipy

    import clv_forecast

    try:
        from importlib.metadata import version
        lt = version("lifetimes")
    except Exception:  # noqa: BLE001 - informational only
        lt = "?"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"python {platform.python_version()}, clv-forecast {clv_forecast.__version__}, lifetimes {lt}, "
            f"numpy {np.__version__}, pandas {pd.__version__}, polars {polars.__version__}, scipy {scipy.__version__}; "
            f"{os.cpu_count()} CPUs, load average {load}")


def main_compare(sizes: list[int], repeats: int) -> None:
    ours_lib, their_lib = Ours(), Lifetimes()
    print(environment(), flush=True)
    warnings.simplefilter("ignore")
    rows, mem = [], []
    for n in sizes:
        tx = make_data(n)
        print(f"\n## {fmt_n(n)} customers: {len(tx):,} transactions", flush=True)
        res = {}
        for lib in (ours_lib, their_lib):
            reps = 1 if (lib is their_lib and n >= 1_000_000) else repeats
            res[lib.name] = run_pass(lib, tx, repeats=reps)
            print(f"{lib.name}: " + ", ".join(f"{k} {v:.3f}s" for k, v in res[lib.name]["times"].items()),
                  flush=True)
        for line in check_same(res["clv-forecast"], res["lifetimes"], strict=(n == min(sizes))):
            print("  " + line, flush=True)
        to, tl = res["clv-forecast"]["times"], res["lifetimes"]["times"]
        for step in STEPS:
            rows.append((step, n, to[step], tl[step]))
        rows.append(("whole pass (sum of steps)", n, sum(to.values()), sum(tl.values())))
        del res, tx
        gc.collect()
        for lib_name in LIBS:
            mem.append(run_worker(lib_name, n))
            print(f"  memory worker {lib_name} {fmt_n(n)}: peak {mib(mem[-1]['peak_rss_kib'])} MiB", flush=True)

    print("\n| step | size | clv-forecast s | lifetimes s | ratio |")
    print("|---|---|---|---|---|")
    for step in STEPS + ["whole pass (sum of steps)"]:
        for s, n, a, b in rows:
            if s == step:
                print(f"| {step} | {fmt_n(n)} | {a:.3f} | {b:.3f} | {b / a:.1f}x |")
    print("\nPeak memory of the whole pass, one process per library and size (RSS in MiB; "
          "'baseline' = after imports and data generation, 'peak' = high-water mark during the pass):\n")
    print("| size | library | pass wall s | baseline MiB | peak MiB | peak - baseline MiB |")
    print("|---|---|---|---|---|---|")
    for m in mem:
        print(f"| {fmt_n(m['n'])} | {m['lib']} | {m['wall_s']:.2f} | {mib(m['baseline_rss_kib'])} | "
              f"{mib(m['peak_rss_kib'])} | {mib(m['peak_rss_kib'] - m['baseline_rss_kib'])} |")


def main_ours_only(sizes: list[int]) -> None:
    print(environment() + "\n", flush=True)
    print("| size | transactions | summary s | split s | fit s (compress + BG/NBD + GG) | predict s | CLV s | "
          "total s | baseline MiB | peak MiB | peak - baseline MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for n in sizes:
        m = run_worker("clv-forecast", n)
        t = m["times"]
        print(f"| {fmt_n(n)} | {m['n_transactions']:,} | {t['summary']:.2f} | {t['split']:.2f} | "
              f"{t['fit BG/NBD'] + t['fit Gamma-Gamma']:.2f} | {t['predict']:.2f} | {t['CLV 12 months']:.2f} | "
              f"{sum(t.values()):.2f} | {mib(m['baseline_rss_kib'])} | {mib(m['peak_rss_kib'])} | "
              f"{mib(m['peak_rss_kib'] - m['baseline_rss_kib'])} |", flush=True)


def main_profile(n: int, top: int) -> None:
    import cProfile
    import pstats

    lib = Ours()
    tx = make_data(n)
    warnings.simplefilter("ignore")
    run_pass(lib, tx.head(10_000))  # warm-up: imports and first-call costs out of the profile
    times = {}
    prof = cProfile.Profile()
    prof.enable()
    run_pass(lib, tx, times=times)
    prof.disable()
    print(f"{fmt_n(n)} customers, {len(tx):,} transactions; step times under the profiler: "
          + ", ".join(f"{k} {v:.3f}s" for k, v in times.items()))
    stats = pstats.Stats(prof).strip_dirs()
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000],
                    help="numbers of customers (default: 10000 100000 1000000)")
    ap.add_argument("--repeats", type=int, default=3,
                    help="repeats per timed step, best kept (lifetimes at >= 1M customers: always 1)")
    ap.add_argument("--ours-only", action="store_true",
                    help="only clv-forecast, end to end in a fresh process per size (seconds and peak RSS)")
    ap.add_argument("--profile", type=int, metavar="N", help="cProfile our pass on N customers")
    ap.add_argument("--top", type=int, default=25, help="rows of the profile to print")
    ap.add_argument("--worker", nargs=2, metavar=("LIB", "SIZE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], int(args.worker[1]))))
    elif args.profile:
        main_profile(args.profile, args.top)
    elif args.ours_only:
        main_ours_only(args.sizes)
    else:
        main_compare(args.sizes, args.repeats)


if __name__ == "__main__":
    main()

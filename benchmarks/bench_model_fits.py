"""Fit time of every discovered purchase model at 1M simulated customers, in process, and lifetimes' fitters on the
same data.

One transaction log is simulated (``clv_forecast.simulate.simulate`` with the CDNOW-like parameters of
``bench_lifetimes.py``: ~3 transactions per customer, weekly unit, 12-week cohort, calibration end after 39
weeks) and summarised once (merge by day, weeks). Then, for each model of ``estimators.available("purchases")``,
the timed step is what ``fit`` does with a summary: compress it to unique (frequency, recency, T) rows with
their counts (``clv_forecast.rfm.compress``) and fit on them. Each model is timed ``--runs`` times (median);
the table gives the unique rows, the seconds and the log-likelihood.

lifetimes 0.11.3 (``ParetoNBDFitter``, ``BetaGeoFitter``) is timed on the same summary, every row (its way of
use). Its Pareto/NBD fit evaluates scipy's hyp2f1 per customer and row in a Nelder-Mead search: at 1M customers
it takes far longer than any other step, so by default it runs on the first ``--lifetimes-pareto-customers``
(100k) customers of the same summary, and the table says so.

    python benchmarks/bench_model_fits.py                       # 1M customers, every model, lifetimes too
    python benchmarks/bench_model_fits.py --customers 100000 --runs 3
    python benchmarks/bench_model_fits.py --no-lifetimes
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np

SIM = dict(r=0.24, alpha=4.4, a=0.79, b=2.4, time_unit="W", start="2020-01-01", cohort_length="12W",
           end="2021-06-30")
CAL_END = "2020-09-30"
SEED = 20240611


def summary(n: int, merge: str = "D"):
    from clv_forecast import rfm
    from clv_forecast.simulate import simulate

    tx = simulate(n, seed=SEED + n, **SIM)
    return rfm.summarize(tx, customer_col="customer_id", date_col="timestamp", time_unit="W", merge=merge,
                         calibration_end=CAL_END)


def fit_ours(kind: str, table):
    from clv_forecast import estimators, rfm

    start = time.perf_counter()
    rows = rfm.compress(table)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = estimators.get(kind, "purchases")().fit(rows)
    return time.perf_counter() - start, len(rows), model


def fit_lifetimes(name: str, table):
    import lifetimes

    fitter = getattr(lifetimes, name)()
    start = time.perf_counter()
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        fitter.fit(table["frequency"].to_numpy(), table["recency"].to_numpy(), table["T"].to_numpy())
    return time.perf_counter() - start, fitter


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-lifetimes", action="store_true")
    parser.add_argument("--lifetimes-pareto-customers", type=int, default=100_000,
                        help="customers for lifetimes' ParetoNBDFitter (0: all of them)")
    args = parser.parse_args(argv)

    from clv_forecast import estimators
    from clv_forecast.estimators.purchases import pareto_nbd

    started = time.perf_counter()
    table = summary(args.customers)
    print(f"simulated and summarised {len(table):,} customers in {time.perf_counter() - started:.1f} s")
    weeks = None  # the same log merged by week: the whole periods a discrete-time model (BG/BB) reads
    rows = []
    for kind in estimators.available("purchases"):
        data = table
        if estimators.get(kind, "purchases").whole_periods:
            weeks = summary(args.customers, merge="W") if weeks is None else weeks
            data = weeks
        fit_ours(kind, data)  # warm-up (imports, first BLAS call)
        times = []
        for _ in range(args.runs):
            seconds, unique, model = fit_ours(kind, data)
            times.append(seconds)
        params = ", ".join(f"{k} {v:.4g}" for k, v in model.params_.items())
        label = f"{model.name} (clv-forecast" + (", merged by week)" if data is weeks else ")")
        rows.append((label, f"{len(data):,}", f"{unique:,}", statistics.median(times),
                     model.log_likelihood_, params))
    if not args.no_lifetimes:
        seconds, fitter = fit_lifetimes("BetaGeoFitter", table)
        ll = float(np.sum(_bg_loglik(fitter, table)))
        rows.append(("BG/NBD (lifetimes, all rows)", f"{len(table):,}", "-", seconds, ll, _params(fitter)))
        n = args.lifetimes_pareto_customers or len(table)
        part = table.iloc[:n]
        seconds, fitter = fit_lifetimes("ParetoNBDFitter", part)
        params = tuple(fitter.params_[k] for k in ("r", "alpha", "s", "beta"))
        cols = [part[c].to_numpy(dtype=float) for c in ("frequency", "recency", "T")]
        ll = float(np.sum(pareto_nbd.loglik(*params, *cols)))
        note = "all rows" if n == len(table) else f"first {n:,} customers only"
        rows.append((f"Pareto/NBD (lifetimes, {note})", f"{len(part):,}", "-", seconds, ll, _params(fitter)))
        _, _, ours = fit_ours("pareto_nbd", part)
        rows.append((f"Pareto/NBD (clv-forecast, same {len(part):,})", f"{len(part):,}", "-", float("nan"),
                     ours.log_likelihood_, ", ".join(f"{k} {v:.4g}" for k, v in ours.params_.items())))
    print(f"\n| model | customers | unique rows | seconds (median of {args.runs}) | log-likelihood | parameters |")
    print("|---|---|---|---|---|---|")
    for name, customers, unique, seconds, ll, params in rows:
        shown = "-" if seconds != seconds else f"{seconds:.3f}"
        print(f"| {name} | {customers} | {unique} | {shown} | {ll:.3f} | {params} |")


def _params(fitter) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in fitter.params_.items())


def _bg_loglik(fitter, table):
    from clv_forecast.estimators.purchases import bgnbd

    params = [fitter.params_[k] for k in ("r", "alpha", "a", "b")]
    return bgnbd.loglik(*params, *(table[c].to_numpy(dtype=float) for c in ("frequency", "recency", "T")))


if __name__ == "__main__":
    main()

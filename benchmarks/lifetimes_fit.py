"""lifetimes 0.11.3 doing the work of ``clv-forecast fit ... --json``, as one process (the yardstick of
``bench_process.py``).

    python benchmarks/lifetimes_fit.py tx.csv              # columns customer_id, date, amount
    python benchmarks/lifetimes_fit.py tx.csv 2020-09-30   # with the calibration/holdout split

Reads the CSV with pandas (``parse_dates``: the fastest of pandas' ways measured on these files),
builds the summary with monetary value, merging purchases by day and measuring time in weeks like
``clv-forecast fit`` (``freq="D"`` with ``freq_multiplier=7``), fits BG/NBD on every customer and
Gamma-Gamma on the repeat buyers, and prints the fitted parameters as one JSON line
``{"bgnbd": {...}, "gamma_gamma": {...}}``.

Needs ``lifetimes==0.11.3`` (the ``dev`` extra); it imports the fitters and utilities only, never
``lifetimes.datasets`` (which needs ``pkg_resources``, gone from setuptools >= 82).
"""

from __future__ import annotations

import json
import sys
import warnings


def main(path: str, calibration_end: str | None = None) -> None:
    import pandas as pd
    from lifetimes.fitters.beta_geo_fitter import BetaGeoFitter
    from lifetimes.fitters.gamma_gamma_fitter import GammaGammaFitter
    from lifetimes.utils import calibration_and_holdout_data, summary_data_from_transaction_data

    warnings.simplefilter("ignore")
    tx = pd.read_csv(path, parse_dates=["date"])
    if calibration_end is None:
        summary = summary_data_from_transaction_data(tx, "customer_id", "date", monetary_value_col="amount",
                                                     freq="D", freq_multiplier=7)
    else:  # the calibration/holdout split (``clv-forecast fit --calibration-end``), the whole end day included
        summary = calibration_and_holdout_data(tx, "customer_id", "date", f"{calibration_end} 23:59:59",
                                               monetary_value_col="amount", freq="D", freq_multiplier=7)
        summary = summary.rename(columns=lambda c: c[:-4] if c.endswith("_cal") else c)
    bg = BetaGeoFitter().fit(summary["frequency"], summary["recency"], summary["T"])
    repeat = summary[summary["frequency"] > 0]
    gg = GammaGammaFitter().fit(repeat["frequency"], repeat["monetary_value"])
    print(json.dumps({"bgnbd": {k: float(v) for k, v in bg.params_.items()},
                      "gamma_gamma": {k: float(v) for k, v in gg.params_.items()},
                      "n_customers": len(summary)}))


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        raise SystemExit("usage: python benchmarks/lifetimes_fit.py TRANSACTIONS.csv [CALIBRATION_END]")
    main(*sys.argv[1:])

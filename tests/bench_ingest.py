"""Timing of read + summarize from a CSV (not a test; run by hand).

    python tests/bench_ingest.py --make 1000000 /tmp/bench_1m.csv   # simulate and write an ISO-dated CSV
    python tests/bench_ingest.py /tmp/bench_1m.csv                   # best of 3 of summarize(path, ...)
"""

from __future__ import annotations

import argparse
import resource
import time


SIM = dict(r=0.24, alpha=4.4, a=0.79, b=2.4, p=6.25, q=3.74, v=15.44, time_unit="W",
           start="2020-01-01", cohort_length="12W", end="2021-06-30")
SEED = 20240611


def make(n: int, path: str) -> None:
    import polars as pl

    from clv_forecast.simulate import simulate

    frame = pl.from_pandas(simulate(n, seed=SEED + n, **SIM))
    frame = frame.rename({"timestamp": "date"}).with_columns(pl.col("date").dt.strftime("%Y-%m-%d %H:%M:%S"))
    frame.write_csv(path)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path")
    parser.add_argument("--make", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--options", default="", help="extra keyword arguments as k=v,k=v")
    args = parser.parse_args()
    if args.make:
        make(args.make, args.path)
        return
    from clv_forecast.rfm import summarize

    extra: dict = dict(kv.split("=", 1) for kv in args.options.split(",") if kv)
    if "include_first_transaction" in extra:
        extra["include_first_transaction"] = extra["include_first_transaction"] not in ("0", "false", "False")
    times = []
    rfm = None
    for _ in range(args.repeat):
        rfm = None  # the previous summary is not part of the next run's peak memory
        t0 = time.perf_counter()
        rfm = summarize(args.path, amount_col="amount", calibration_end="2020-09-30", **extra)
        times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{args.path}: best {min(times):.3f} s of {[round(t, 3) for t in times]}, {len(rfm)} customers, "
          f"peak RSS {peak:.0f} MiB")


if __name__ == "__main__":
    main()

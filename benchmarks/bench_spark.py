"""Whole-process throughput of ``clv-forecast score --engine spark`` (Spark local mode) beside the local engine.

    python benchmarks/bench_spark.py --data-dir /tmp/clv-score-bench                    # 1M rows
    python benchmarks/bench_spark.py --data-dir /tmp/clv-score-bench --sizes 1000000 10000000 --runs 3

Data: the simulated RFM tables of ``bench_scoring.py`` (same generator, same files when the data
directory is shared): N customers, Parquet, one file. Each command reads the file, scores every row and
writes the scores as Parquet, as a user runs it (interpreter, imports, for Spark the JVM start and the
Python workers, the id window, the reject count and the atomic publish included):

* ``clv-forecast score --model M --input rfm_N.parquet --output local_N.parquet --max-reject-share 0 --no-tracking``
* ``clv-forecast score --engine spark --spark-master local[2] --spark-conf spark.driver.memory=2g
  --model M --input rfm_N.parquet --output spark_N --max-reject-share 0 --no-tracking``

One warm-up run each (not counted), then ``--runs`` runs, alternated (local, spark, local, ...); the
median wall time is the figure and rows/s = N / median. Wall time is a monotonic clock around
``Popen`` ... ``os.wait4``. Peak memory is not shown: the JVM is a grandchild process that the
kernel's accounting of the child does not cover. The load average at the start and at the end is
printed: on a shared 2-core machine other processes move these figures a lot.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scoring import ensure_data  # noqa: E402 - the same simulated tables


def wall(command: list[str]) -> float:
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, _ = os.wait4(process.pid, 0)
    seconds = time.monotonic() - started
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{' '.join(command)} failed ({code}): {process.stderr.read().decode()[-2000:]}")
    process.stderr.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--spark-master", default="local[2]")
    parser.add_argument("--driver-memory", default="2g")
    args = parser.parse_args()
    exe = str(Path(sys.executable).with_name("clv-forecast"))
    load_start = os.getloadavg()
    rows = []
    for n in args.sizes:
        model_path, table_path = ensure_data(args.data_dir, n)
        local_out, spark_out = args.data_dir / f"local_{n}.parquet", args.data_dir / f"spark_{n}"
        commands = {
            "local": [exe, "score", "--model", str(model_path), "--input", str(table_path), "--output",
                      str(local_out), "--max-reject-share", "0", "--no-tracking"],
            f"spark {args.spark_master}": [exe, "score", "--engine", "spark", "--spark-master", args.spark_master,
                                           "--spark-conf", f"spark.driver.memory={args.driver_memory}",
                                           "--model", str(model_path), "--input", str(table_path),
                                           "--output", str(spark_out), "--max-reject-share", "0", "--no-tracking"],
        }
        times = {name: [] for name in commands}
        for name, command in commands.items():
            wall(command)  # warm-up
        for _ in range(args.runs):
            for name, command in commands.items():
                times[name].append(wall(command))
        for name, walls in times.items():
            median = statistics.median(walls)
            rows.append((f"{n:,}", name, median, min(walls), max(walls), n / median))
            print(rows[-1], flush=True)
        for path in (local_out, spark_out, spark_out.with_name(spark_out.name + ".rejects"),
                     local_out.with_name(local_out.name + ".rejects.csv")):
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    print()
    print("| rows | engine | median s | min-max s | rows/s |")
    print("|---|---|---|---|---|")
    for size, name, median, low, high, rate in rows:
        print(f"| {size} | {name} | {median:.2f} | {low:.2f}-{high:.2f} | {rate:,.0f} |")
    print(f"\n{os.cpu_count()} CPUs; load average {', '.join(f'{x:.2f}' for x in load_start)} at the start, "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())} at the end; {args.runs} runs")


if __name__ == "__main__":
    main()

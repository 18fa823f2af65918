"""Whole-process timing of ``clv-forecast fit --engine spark`` (Spark local mode) beside the local engine.

    python benchmarks/bench_spark_fit.py --data-dir /work/bench-data                 # 1M customers (3.1M rows)
    python benchmarks/bench_spark_fit.py --data-dir /work/bench-data --sizes 1000000 10000000 --runs 1
    python benchmarks/bench_spark_fit.py --data-dir DIR --master "local[2]" --no-lifetimes

The same job three ways, on the same transaction log written once as Parquet (microsecond timestamps)
from the CSV that ``bench_process.py`` simulates (``tx_<N>_v2_seed<seed>.csv``, generated if missing):
a summary with a calibration split, the BG/NBD + Gamma-Gamma fit, the 12-month CLV of every customer
written to disk:

* ``clv-forecast fit --engine spark --spark-master local[2] ... --predictions DIR`` (Parquet directory);
* ``clv-forecast fit ... --predictions FILE.parquet`` (the local engine);
* lifetimes 0.11.3 (``benchmarks/lifetimes_fit.py`` on the CSV, fit only: it has no Parquet reader
  for this and no batch CLV writer), when installed and ``--no-lifetimes`` is not given.

Every command runs ``--runs`` times after one warm-up run (not counted); the median wall time is the
figure. Wall time is a monotonic clock around the process; memory is the largest sum of the resident
sets of the command's whole process tree (the Python driver and Spark's JVM), sampled every 50 ms
from ``/proc``. Rows per second = input rows / median wall time. Spark in local mode on a 2-core
machine pays for its JVM start (several seconds) and for its shuffles; the figure to read is its
throughput on a machine it has to itself, not a race with the single-machine engine it exists to
go beyond.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            ppid, pages = int(fields[1]), int(fields[21])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
        rss[int(entry)] = pages * os.sysconf("SC_PAGE_SIZE")
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        total += rss.get(p, 0)
        stack.extend(children.get(p, []))
    return total


def run_once(cmd: list[str], cwd: Path) -> tuple[float, int, int]:
    """Wall seconds, peak tree RSS (bytes) and the exit code of one run."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "CLV_FORECAST_TRACKING": "off"})
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _tree_rss(proc.pid))
        time.sleep(0.05)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr.read().decode(errors="replace")[-2000:])
    return wall, peak, proc.returncode


def measure(name: str, cmd: list[str], cwd: Path, runs: int) -> dict:
    run_once(cmd, cwd)  # warm-up: page cache, JIT of the JVM's classes on disk, bytecode caches
    walls, peaks = [], []
    for _ in range(runs):
        wall, peak, code = run_once(cmd, cwd)
        if code != 0:
            raise SystemExit(f"{name}: exit code {code}")
        walls.append(wall)
        peaks.append(peak)
    return {"name": name, "median": statistics.median(walls), "min": min(walls), "max": max(walls),
            "peak": max(peaks)}


def parquet_log(data_dir: Path, n: int) -> tuple[Path, Path, int]:
    """The simulated CSV of ``bench_process.py`` and its Parquet copy (written once), and its row count."""
    import polars as pl

    from bench_process import ensure_data  # the same simulated logs as the process benchmark

    csv = ensure_data(data_dir, n, sys.executable)
    parquet = csv.with_suffix(".parquet")
    if not parquet.exists():
        frame = pl.read_csv(csv, try_parse_dates=True).with_columns(pl.col("date").cast(pl.Datetime("us")))
        frame.write_parquet(parquet)
    rows = pl.scan_parquet(parquet).select(pl.len()).collect().item()
    return csv, parquet, rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--calibration-end", default="2020-09-30")
    parser.add_argument("--no-lifetimes", action="store_true")
    args = parser.parse_args(argv)
    args.data_dir.mkdir(parents=True, exist_ok=True)
    work = args.data_dir / "spark-bench-out"
    work.mkdir(exist_ok=True)
    exe = str(Path(sys.executable).with_name("clv-forecast"))
    results = []
    for n in args.sizes:
        csv, parquet, rows = parquet_log(args.data_dir, n)
        common = ["fit", "-t", str(parquet), "--amount-col", "amount", "--calibration-end", args.calibration_end,
                  "--no-tracking", "--json"]
        spark = [exe, *common, "--engine", "spark", "--spark-master", args.master,
                 "--predictions", str(work / f"spark_{n}")]
        local = [exe, *common, "--predictions", str(work / f"local_{n}.parquet")]
        for name, cmd in ((f"fit --engine spark ({args.master}), {n:,} customers", spark),
                          (f"fit (local engine), {n:,} customers", local)):
            result = measure(name, cmd, work, args.runs)
            result["rows"] = rows
            results.append(result)
        if not args.no_lifetimes:
            try:
                import lifetimes  # noqa: F401
            except ImportError:
                print("lifetimes not installed: its row is skipped")
            else:
                cmd = [sys.executable, str(HERE / "lifetimes_fit.py"), str(csv), args.calibration_end]
                result = measure(f"lifetimes 0.11.3 fit (CSV, no CLV written), {n:,} customers", cmd, work,
                                 max(1, min(args.runs, 2)))
                result["rows"] = rows
                results.append(result)
    load = os.getloadavg()
    print(f"\n{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPUs, "
          f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}, {args.runs} runs\n")
    print("| command | median s | min-max s | input rows/s | peak MiB (process tree) |")
    print("|---|---|---|---|---|")
    for r in results:
        print(f"| {r['name']} | {r['median']:.2f} | {r['min']:.2f}-{r['max']:.2f} | "
              f"{r['rows'] / r['median']:,.0f} | {r['peak'] / 2**20:,.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

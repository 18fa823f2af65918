"""Whole-process benchmark of clv-forecast against its targets (and against lifetimes).

Every figure is a whole process, started from outside, as a user runs it: interpreter start-up,
imports, reading the CSV, the summary, both fits and printing the result. Nothing is timed inside
a process.

What is measured (each command: one warm-up run that is not counted, then ``--runs`` counted runs;
the median is quoted, min and max show the spread):

* ``python -c "import clv_forecast"``                                    target <= 0.5 s
* ``clv-forecast --help``                                                 target <= 0.3 s
* ``clv-forecast fit --transactions tx_1M.csv ... --json``                target <= 2.0 s
* the same at 10M customers (30M rows, ~1.1 GB CSV)                      target <= 20 s, peak <= 4 GiB
* ``--pipeline``: ``clv-forecast fit --transactions tx_10M.csv ... --predictions P.parquet`` (the fitted
  model plus the 12-month CLV of every customer written to Parquet, one whole process)
                                                                           target <= 30 s, peak <= 4 GiB
  (the Parquet file is checked: one row per customer, a finite ``clv`` on every row)
* ``python benchmarks/lifetimes_fit.py tx_N.csv`` (lifetimes 0.11.3 doing the same work from the
  same CSV: read, summary with monetary value, BG/NBD fit, Gamma-Gamma fit), run in turn with
  ``clv-forecast fit`` (A B A B ...) so that the ratio lifetimes / clv-forecast is taken pair by
  pair                                                                     target >= 25x

Wall time is a monotonic clock around ``subprocess.Popen`` ... ``os.wait4``; user/sys seconds and
the peak resident memory (``ru_maxrss``) are the kernel's accounting of the finished child
(Linux). The fitted parameters of both libraries are compared (relative difference printed) so
that the ratio is known to be about the same work.

The transaction logs are simulated once with ``clv_forecast.simulate.simulate`` (the CDNOW-like
parameters of ``bench_lifetimes.py``, observed to 2021-12-31) and cached as CSV in ``--data-dir``
(``customer_id,date,amount``; ISO timestamps ``YYYY-MM-DD HH:MM:SS``; amounts in cents).

    python benchmarks/bench_process.py --data-dir /tmp/clv-bench             # 1M and 10M, lifetimes at 1M
    python benchmarks/bench_process.py --sizes 1000000 --runs 3              # quick
    python benchmarks/bench_process.py --no-lifetimes                        # targets without lifetimes
    python benchmarks/bench_process.py --markdown results.md                 # also write the table
    python benchmarks/bench_process.py --generate-only --sizes 1000000 10000000
    python benchmarks/bench_process.py --data-dir /tmp/clv-bench --pipeline --sizes 10000000 --big-runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
# the CDNOW-like parameters of bench_lifetimes.py, observed for 104 weeks (to 2021-12-31) instead of 78:
# ~3.1 transactions per customer, so 10M customers are the ~30M-row, ~1.1 GB log the targets are stated for
SIM = dict(r=0.24, alpha=4.4, a=0.79, b=2.4, p=6.25, q=3.74, v=15.44, time_unit="W",
           start="2020-01-01", cohort_length="12W", end="2021-12-31")
SEED = 20240611
DATA_VERSION = 2  # bump when the file layout changes (the cache key)

TARGETS = {
    "import": 0.5,
    "help": 0.3,
    "fit@1000000": 2.0,
    "fit@10000000": 20.0,
}
PEAK_TARGETS_MIB = {"fit@10000000": 4 * 1024, "pipeline@10000000": 4 * 1024}
#: fit + the per-customer table (12-month CLV of every customer) written to Parquet, one whole process
PIPELINE_TARGETS = {10_000_000: 30.0}
RATIO_TARGET = 25.0


# ------------------------------------------------------------------------------ data


def fmt_n(n: int) -> str:
    for div, suffix in ((1_000_000, "M"), (1_000, "k")):
        if n % div == 0:
            return f"{n // div}{suffix}"
    return str(n)


def csv_path(data_dir: Path, n: int) -> Path:
    return data_dir / f"tx_{fmt_n(n)}_v{DATA_VERSION}_seed{SEED + n}.csv"


def ensure_data(data_dir: Path, n: int, python: str) -> Path:
    """The CSV for ``n`` customers, simulated first if it is not cached.

    Simulated in a child process: this process must stay small, because a child's peak memory
    (``ru_maxrss``) can never read below the RSS of the process that started it.
    """
    path = csv_path(data_dir, n)
    if not path.exists():
        subprocess.run([python, str(Path(__file__).resolve()), "--simulate", str(n), "--data-dir", str(data_dir)],
                       check=True)
    return path


def _split_pair(clv: list[str], py: str, csv: Path, n: int, args) -> list[Row]:
    """The same pairing with a calibration/holdout split: ``fit --calibration-end`` (split summary with
    holdout columns, both fits, the holdout check) against lifetimes' ``calibration_and_holdout_data``
    and both fits."""
    end = args.split_at
    fit = Series(f"clv-forecast fit {fmt_n(n)} split", fit_argv(clv, csv, end))
    lt = Series(f"lifetimes {fmt_n(n)} split", [py, str(HERE / "lifetimes_fit.py"), str(csv), end])
    print(f"fit {fmt_n(n)} with a split at {end}, with lifetimes, in turn ...", file=sys.stderr, flush=True)
    measure([fit, lt], args.big_runs, keep_stdout=True)
    try:
        rel = _max_rel(_params_ours(fit.first_stdout), json.loads(lt.first_stdout.strip().splitlines()[-1]))
        note = f"parameters: max relative difference to lifetimes {rel:.1e}"
    except Exception as exc:  # noqa: BLE001 - informational
        note = f"parameters not compared ({type(exc).__name__})"
    ratios = [b.wall / a.wall for a, b in zip(fit.runs, lt.runs)]
    ratio = Series(f"ratio {fmt_n(n)} split", [], [Run(r, 0, 0, 0, 0) for r in ratios])
    return [
        Row(f"`clv-forecast fit --calibration-end {end}` {fmt_n(n)} customers", "", fit, None),
        Row(f"lifetimes, same work (calibration_and_holdout_data + fits), {fmt_n(n)}", "", lt, None, note=note),
        Row(f"lifetimes / clv-forecast wall, paired, with the split, {fmt_n(n)}", f">= {RATIO_TARGET:g}x", ratio,
            statistics.median(ratios) >= RATIO_TARGET, note="ratio"),
    ]


def simulate_csv(data_dir: Path, n: int) -> None:
    """Simulate ``n`` customers and write the CSV (atomically: a killed run leaves no half file)."""
    import polars as pl

    from clv_forecast.simulate import simulate

    path = csv_path(data_dir, n)
    data_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    tx = simulate(n, seed=SEED + n, **SIM)
    frame = pl.from_pandas(tx).rename({"timestamp": "date"})
    del tx
    tmp = path.with_suffix(".csv.partial")
    frame.write_csv(tmp, datetime_format="%Y-%m-%d %H:%M:%S", float_precision=2)
    os.replace(tmp, path)
    print(f"data: {fmt_n(n)} customers, {frame.height:,} rows, {path.stat().st_size / 1e6:,.0f} MB -> {path} "
          f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ measuring processes


@dataclass
class Run:
    wall: float
    user: float
    sys: float
    peak_kib: int
    rc: int
    stdout: str = ""


@dataclass
class Series:
    label: str
    argv: list[str]
    runs: list[Run] = field(default_factory=list)

    def values(self, attr: str) -> list[float]:
        return [getattr(r, attr) for r in self.runs]

    def med(self, attr: str = "wall") -> float:
        return statistics.median(self.values(attr))

    def bad_exits(self) -> list[int]:
        return [r.rc for r in self.runs if r.rc != 0]


def run_once(argv: list[str], keep_stdout: bool = False) -> Run:
    """One whole process: wall clock around start and reaping, the kernel's rusage of the child."""
    out = subprocess.PIPE if keep_stdout else subprocess.DEVNULL
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.DEVNULL)
    stdout = proc.stdout.read().decode() if keep_stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: keep Popen from waiting again
    if keep_stdout:
        proc.stdout.close()
    return Run(wall, usage.ru_utime, usage.ru_stime, usage.ru_maxrss, proc.returncode, stdout)


def measure(series: list[Series], runs: int, warmup: int = 1, keep_stdout: bool = False) -> None:
    """Warm-up runs (not counted), then ``runs`` rounds running the commands in turn (A B A B ...)."""
    for _ in range(warmup):
        for s in series:
            r = run_once(s.argv, keep_stdout)
            if r.rc != 0:
                raise SystemExit(f"{s.label}: exit code {r.rc} in the warm-up run: {' '.join(s.argv)}")
            if keep_stdout and r.stdout:
                s.first_stdout = r.stdout  # type: ignore[attr-defined]
    for i in range(runs):
        for s in series:
            s.runs.append(run_once(s.argv))
            print(f"  {s.label}: run {i + 1}/{runs} {s.runs[-1].wall:.3f} s, "
                  f"peak {s.runs[-1].peak_kib / 1024:,.0f} MiB", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ the benchmark


def clv_command(python: str) -> list[str]:
    """The console script installed next to the interpreter (as a user runs it), else ``-m``."""
    script = Path(python).parent / "clv-forecast"
    if script.exists():
        return [str(script)]
    found = shutil.which("clv-forecast")
    return [found] if found else [python, "-m", "clv_forecast.cli"]


def fit_argv(clv: list[str], csv: Path, calibration_end: str | None = None) -> list[str]:
    split = [] if calibration_end is None else ["--calibration-end", calibration_end]
    return [*clv, "fit", "--transactions", str(csv), "--customer-col", "customer_id", "--date-col", "date",
            "--amount-col", "amount", *split, "--json", "--no-tracking"]


def pipeline_argv(clv: list[str], csv: Path, predictions: Path) -> list[str]:
    return [*clv, "fit", "--transactions", str(csv), "--customer-col", "customer_id", "--date-col", "date",
            "--amount-col", "amount", "--predictions", str(predictions), "--no-tracking"]


def check_predictions(path: Path, n: int) -> str:
    """The per-customer table holds every customer once, each with a finite 12-month CLV."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=["customer_id", "clv"])
    finite = pc.sum(pc.is_finite(table["clv"])).as_py()
    distinct = pc.count_distinct(table["customer_id"]).as_py()
    ok = table.num_rows == n and finite == n and distinct == n
    return (f"per-customer table {path.name}: {table.num_rows:,} rows, {distinct:,} distinct customers, "
            f"{finite:,} finite CLVs: {'OK' if ok else 'WRONG'}")


def _pipeline(clv: list[str], csvs: dict, args) -> list[Row]:
    rows = []
    for n, csv in csvs.items():
        out = Path(tempfile.mkdtemp(prefix="clv-pipeline-")) / f"customers_{fmt_n(n)}.parquet"
        series = Series(f"clv-forecast fit + predictions {fmt_n(n)}", pipeline_argv(clv, csv, out))
        print(f"pipeline {fmt_n(n)} ...", file=sys.stderr, flush=True)
        measure([series], args.big_runs if n >= 5_000_000 else args.runs)
        goal, peak_goal = PIPELINE_TARGETS.get(n), PEAK_TARGETS_MIB.get(f"pipeline@{n}")
        note = check_predictions(out, n)
        shutil.rmtree(out.parent, ignore_errors=True)
        rows.append(Row(
            f"`clv-forecast fit --predictions customers.parquet` {fmt_n(n)} customers (model + CLV of every "
            f"customer on disk)", f"<= {goal:g} s" if goal else "", series,
            (series.med() <= goal and note.endswith("OK")) if goal else None,
            f"<= {peak_goal / 1024:g} GiB" if peak_goal else "",
            (max(series.values("peak_kib")) / 1024 <= peak_goal) if peak_goal else None, note=note))
    return rows


def _params_ours(text: str) -> dict:
    d = json.loads(text.strip().splitlines()[-1])
    return {"bgnbd": {k: d["bgnbd"][k] for k in ("r", "alpha", "a", "b")},
            "gamma_gamma": {k: d["gamma_gamma"][k] for k in ("p", "q", "v")}}


def _max_rel(a: dict, b: dict) -> float:
    return max(abs(a[m][k] - b[m][k]) / abs(b[m][k]) for m in a for k in a[m])


@dataclass
class Row:
    target: str
    goal: str
    series: Series
    attr_ok: bool | None
    peak_goal: str = ""
    peak_ok: bool | None = None
    note: str = ""


def stats_cells(values: list[float], digits: int = 3) -> tuple[str, str, str]:
    return (f"{statistics.median(values):.{digits}f}", f"{min(values):.{digits}f}", f"{max(values):.{digits}f}")


def verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("PASS" if ok else "FAIL")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=None,
                    help="folder for the simulated CSVs, reused between runs (default: a new temporary folder)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000], help="customers (default 1M 10M)")
    ap.add_argument("--runs", type=int, default=5, help="counted runs of each short command (default 5)")
    ap.add_argument("--big-runs", type=int, default=3,
                    help="counted runs of `fit` at >= 5M customers and of every lifetimes pair (default 3)")
    ap.add_argument("--no-lifetimes-at", type=int, nargs="*", default=[10_000_000],
                    help="sizes at which lifetimes is not run (default 10000000: it takes minutes); "
                         "give the option with no size to run it everywhere")
    ap.add_argument("--no-lifetimes", action="store_true", help="never run lifetimes")
    ap.add_argument("--split-at", default="2020-09-30",
                    help="calibration end of the second pairing with lifetimes (fit with a calibration/holdout "
                         "split against lifetimes' calibration_and_holdout_data); 'none' skips it")
    ap.add_argument("--python", default=sys.executable, help="interpreter with clv-forecast installed")
    ap.add_argument("--markdown", type=Path, default=None, help="also write the table (Markdown) to this file")
    ap.add_argument("--generate-only", action="store_true", help="only simulate and cache the CSVs")
    ap.add_argument("--pipeline", action="store_true",
                    help="only the pipeline target: fit + the per-customer CLV table written to Parquet "
                         "(whole process, <= 30 s and <= 4 GiB at 10M customers)")
    ap.add_argument("--simulate", type=int, help=argparse.SUPPRESS)  # the child that writes one CSV
    args = ap.parse_args()
    if args.simulate:
        simulate_csv(args.data_dir, args.simulate)
        return

    load_start = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="clv-bench-"))
    csvs = {n: ensure_data(data_dir, n, args.python) for n in args.sizes}
    if args.generate_only:
        return

    py = args.python
    clv = clv_command(py)
    rows: list[Row] = []
    if args.pipeline:
        rows += _pipeline(clv, csvs, args)
        print_table(rows, py, load_start, args)
        return

    print("import / --help ...", file=sys.stderr, flush=True)
    imp = Series("python -c 'import clv_forecast'", [py, "-c", "import clv_forecast"])
    hlp = Series("clv-forecast --help", [*clv, "--help"])
    measure([imp, hlp], args.runs)
    rows.append(Row("`import clv_forecast`", f"<= {TARGETS['import']} s", imp, imp.med() <= TARGETS["import"]))
    rows.append(Row("`clv-forecast --help`", f"<= {TARGETS['help']} s", hlp, hlp.med() <= TARGETS["help"]))

    for n, csv in csvs.items():
        big = n >= 5_000_000
        fit = Series(f"clv-forecast fit {fmt_n(n)}", fit_argv(clv, csv))
        key = f"fit@{n}"
        with_lt = not args.no_lifetimes and n not in (args.no_lifetimes_at or [])
        if with_lt:
            lt = Series(f"lifetimes {fmt_n(n)}", [py, str(HERE / "lifetimes_fit.py"), str(csv)])
            print(f"fit {fmt_n(n)} with lifetimes, in turn ...", file=sys.stderr, flush=True)
            measure([fit, lt], args.big_runs, keep_stdout=True)
        else:
            print(f"fit {fmt_n(n)} ...", file=sys.stderr, flush=True)
            measure([fit], args.big_runs if big else args.runs, keep_stdout=True)
        goal = TARGETS.get(key)
        peak_goal = PEAK_TARGETS_MIB.get(key)
        rows.append(Row(
            f"`clv-forecast fit` {fmt_n(n)} customers ({csv.stat().st_size / 1e6:,.0f} MB CSV)",
            f"<= {goal} s" if goal else "", fit, (fit.med() <= goal) if goal else None,
            f"<= {peak_goal / 1024:g} GiB" if peak_goal else "", (max(fit.values('peak_kib')) / 1024 <= peak_goal)
            if peak_goal else None))
        if with_lt:
            ratios = [b.wall / a.wall for a, b in zip(fit.runs, lt.runs)]
            try:
                rel = _max_rel(_params_ours(fit.first_stdout), json.loads(lt.first_stdout.strip().splitlines()[-1]))
                note = f"parameters: max relative difference to lifetimes {rel:.1e}"
            except Exception as exc:  # noqa: BLE001 - informational
                note = f"parameters not compared ({type(exc).__name__})"
            rows.append(Row(f"lifetimes, same work, {fmt_n(n)} customers", "", lt, None, note=note))
            ratio = Series(f"ratio {fmt_n(n)}", [], [Run(r, 0, 0, 0, 0) for r in ratios])
            rows.append(Row(f"lifetimes / clv-forecast wall, paired, {fmt_n(n)}", f">= {RATIO_TARGET:g}x", ratio,
                            statistics.median(ratios) >= RATIO_TARGET, note="ratio"))
            if args.split_at.lower() != "none":
                rows += _split_pair(clv, py, csv, n, args)

    print_table(rows, py, load_start, args)


def print_table(rows: list[Row], py: str, load_start: str, args) -> None:
    header = ("| target | goal | median | min | max | peak MiB (max) | peak goal | time | peak | runs |\n"
              "|---|---|---|---|---|---|---|---|---|---|")
    lines = [header]
    for row in rows:
        s = row.series
        if row.note == "ratio":
            med, lo, hi = (f"{v}x" for v in stats_cells(s.values("wall"), 1))
            peak = ""
        else:
            med, lo, hi = (f"{v} s" for v in stats_cells(s.values("wall")))
            peak = f"{max(s.values('peak_kib')) / 1024:,.0f}"
        bad = s.bad_exits()
        lines.append(f"| {row.target}{' (EXIT ' + str(bad) + ')' if bad else ''} | {row.goal} | {med} | {lo} | {hi} "
                     f"| {peak} | {row.peak_goal} | {verdict(row.attr_ok)} | {verdict(row.peak_ok)} | {len(s.runs)} |")
    notes = [f"- {r.target}: {r.note}" for r in rows if r.note and r.note != "ratio"]
    env = environment(py) + f"; load average {load_start} at the start"
    text = "\n".join(lines) + "\n\n" + "\n".join(notes + [f"- {env}"]) + "\n"
    print(text)
    if args.markdown:
        args.markdown.write_text(f"Whole-process figures (`python benchmarks/bench_process.py`), "
                                 f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n\n" + text)


def environment(python: str) -> str:
    code = ("import platform, importlib.metadata as m\n"
            "v = lambda d: (m.version(d) if d else '?')\n"
            "out = []\n"
            "for d in ('clv-forecast', 'numpy', 'pandas', 'polars', 'scipy', 'lifetimes'):\n"
            "    try: out.append(f'{d} {m.version(d)}')\n"
            "    except Exception: out.append(f'{d} absent')\n"
            "print(f'python {platform.python_version()}, ' + ', '.join(out))")
    try:
        versions = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        versions = "versions unknown"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{versions}; {os.cpu_count()} CPUs, load average {load} at the end; {platform.machine()}"


if __name__ == "__main__":
    main()

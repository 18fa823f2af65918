"""What MLflow tracking adds to a run: whole processes, and the pieces inside one process.

Whole processes (each: one warm-up run not counted, then ``--runs`` counted runs, A B C A B C ...
in turn; the median is quoted, min and max show the spread):

* A: ``python -c`` running the pipeline on the bundled CDNOW sample as ``clv-forecast fit`` does
  (summary, fit, holdout check, predictions and CLV; no report, no files);
* B: the same plus ``clv_forecast.tracking.log_run(result, command="fit", tracking_uri=STORE)`` into
  an existing local sqlite store (created and migrated once before timing, as after a user's first
  run);
* C: B ending with ``gc.freeze()``: the interpreter's last garbage collection at exit then skips the
  ~1 million objects MLflow's modules leave (about 0.6 s); something the CLI can do just before it exits.
  The target is B - A (or C - A) <= 1.5 s.

Each process's CPU time (user + system, ``getrusage`` of the finished child) is shown beside its wall time: on a
shared machine, where the wall times swing with the other jobs, the CPU seconds added are the steadier figure.

(Importing mlflow in a background thread while the pipeline works was tried and was slower: the
pipeline is CPU-bound Python on 2 cores and the two threads contend for the GIL.)

Inside one process (``--runs`` processes, medians), with ``time.perf_counter``: ``import mlflow``;
the first ``log_run`` of the process on the existing store (store opening, experiment look-up, the
run, params, metrics, artifacts and the model); of that, the model logging alone
(``mlflow.pyfunc.log_model``: JSON file, signature, input example, its validation); and a second
``log_run`` in the same process (what a run costs once everything is loaded).

    python benchmarks/bench_tracking.py                 # 5 runs each
    python benchmarks/bench_tracking.py --runs 9 --register-as cdnow   # also registering the model
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PIPELINE = """
from clv_forecast.experiment import cdnow_spec, run
spec = cdnow_spec()
spec["output"].update(model=None, report=None)
result = run(spec, save=False)
"""

TRACK = """
from clv_forecast import tracking
tracking.log_run(result, command="fit", tracking_uri={uri!r}, register_as={register!r})
"""

PIECES = """
import json, time
t0 = time.perf_counter()
{pipeline}
t1 = time.perf_counter()
import mlflow
t2 = time.perf_counter()
from clv_forecast import tracking
model_seconds = []
_log_model = tracking._log_model
def timed(*args, **kwargs):
    start = time.perf_counter()
    try:
        return _log_model(*args, **kwargs)
    finally:
        model_seconds.append(time.perf_counter() - start)
tracking._log_model = timed
tracking.log_run(result, command="fit", tracking_uri={uri!r}, register_as={register!r})
t3 = time.perf_counter()
tracking.log_run(result, command="fit", tracking_uri={uri!r}, register_as={register!r})
t4 = time.perf_counter()
print(json.dumps({{"pipeline": t1 - t0, "import_mlflow": t2 - t1, "first_log_run": t3 - t2,
                  "model_logging": model_seconds[0], "second_log_run": t4 - t3}}))
"""


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _wall(code: str, cwd) -> tuple[float, float]:
    """Wall and CPU seconds of one ``python -c code`` process."""
    cpu, start = _cpu(), time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   cwd=cwd)
    return time.perf_counter() - start, _cpu() - cpu


def _fmt(values) -> str:
    return f"{statistics.median(values):.3f} s (min {min(values):.3f}, max {max(values):.3f})"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--register-as", default=None, help="also register the model under this name")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="clv-bench-tracking-") as tmp:
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        # the existing store: created and migrated once, outside the timings; every process runs in the
        # temporary folder, where the sqlite store keeps its artifacts (./mlruns)
        subprocess.run([sys.executable, "-c", f"from mlflow.tracking import MlflowClient; "
                        f"MlflowClient({uri!r}).search_experiments()"], check=True, stderr=subprocess.DEVNULL)
        plain = PIPELINE
        tracked = PIPELINE + TRACK.format(uri=uri, register=args.register_as)
        frozen = tracked + "import gc\ngc.freeze()\n"
        _wall(plain, tmp), _wall(tracked, tmp), _wall(frozen, tmp)  # warm-up (page cache, .pyc files)
        a, b, c = [], [], []  # (wall, cpu) pairs
        for _ in range(args.runs):
            a.append(_wall(plain, tmp))
            b.append(_wall(tracked, tmp))
            c.append(_wall(frozen, tmp))
        pieces = []
        for _ in range(args.runs):
            code = PIECES.format(pipeline=PIPELINE, uri=uri, register=args.register_as)
            out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=tmp)
            pieces.append(json.loads(out.stdout.strip().splitlines()[-1]))
    for i, what in ((0, "wall"), (1, "CPU")):
        print(f"{what}:")
        print(f"A  whole process, CDNOW fit pipeline:                   {_fmt([r[i] for r in a])}")
        print(f"B  the same + log_run to an existing sqlite store:      {_fmt([r[i] for r in b])}")
        print(f"C  B ending with gc.freeze():                            {_fmt([r[i] for r in c])}")
        for name, runs in (("B", b), ("C", c)):
            added = _fmt([y[i] - x[i] for x, y in zip(a, runs)])
            print(f"added by tracking, {name} - A (pair by pair):  {added}   target <= 1.5 s")
    print("inside one process (medians of the runs):")
    for key in ("pipeline", "import_mlflow", "first_log_run", "model_logging", "second_log_run"):
        print(f"  {key:<16} {_fmt([p[key] for p in pieces])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Reference values of ``ln 2F1(1, q; A+1; w)`` in 40-digit arithmetic (mpmath) on the grid of
tests/test_pareto_nbd.py's kernel test, written to tests/data/log_h_mpmath.csv.

Why stored: mpmath's ``hyp2f1`` at ``q = 10000.5`` with ``w`` near 0.9 takes seconds per point (its series
converges slowly there); these 18 points cost 25 of the test's 26 CPU seconds. How they are kept honest: the table
holds the grid's exact inputs (``repr`` of each float) and the test asserts that they are the grid it builds; the test
recomputes every other point with mpmath at each run and asserts that the stored value is that one; and
``--check`` recomputes the whole table (``python tests/make_log_h_reference.py --check`` exits 1 on any difference).

Usage::

    python tests/make_log_h_reference.py [--check]
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import mpmath as mp

TABLE = Path(__file__).parent / "data" / "log_h_mpmath.csv"
#: the grid: q and A - q from 1e-4 to 1e4 (A - q near 0 and near integers), w on both sides of the series' limit
GRID = [(q, q + d, w)
        for q in (1e-4, 0.3, 1.0, 7.5, 100.0, 1e4 + 0.5)
        for d in (-0.9999, -0.5, 1e-4, 0.5, 1.0, 1.0001, 2.0, 10.0, 1e4)
        for w in (0.0, 0.3, 0.49, 0.51, 0.89, 0.91, 0.999, 1 - 1e-6, 1 - 1e-12)
        if q + d > 0]


def is_slow(q: float, A: float, w: float) -> bool:
    """The points where mpmath takes more than ~0.1 s: large q with w near 0.9 (only these are not recomputed by
    the test)."""
    return q > 1e3 and 0.8 < w < 0.95


def log_h(q: float, A: float, w: float) -> float:
    """``ln 2F1(1, q; A+1; w)`` in 40-digit arithmetic, rounded to a float."""
    with mp.workdps(40):
        return float(mp.log(mp.hyp2f1(1, mp.mpf(q), mp.mpf(A) + 1, mp.mpf(w))))


def read_table(path: Path = TABLE) -> list[tuple[float, float, float, float]]:
    """Rows ``(q, A, w, ln h)`` of the stored table, floats read back exactly."""
    with open(path, newline="") as fh:
        return [tuple(float(v) for v in (row["q"], row["A"], row["w"], row["log_h"])) for row in csv.DictReader(fh)]


def write_table(path: Path = TABLE) -> None:
    with open(path, "w", newline="") as fh:
        out = csv.writer(fh, lineterminator="\n")
        out.writerow(("q", "A", "w", "log_h"))
        for q, A, w in GRID:
            out.writerow((repr(q), repr(A), repr(w), repr(log_h(q, A, w))))


def check_table(path: Path = TABLE) -> list[str]:
    """Differences between the stored table and a fresh computation of every point (empty: none)."""
    rows = read_table(path)
    problems = [] if [r[:3] for r in rows] == GRID else ["the table's inputs are not the grid"]
    for q, A, w, stored in rows:
        fresh = log_h(q, A, w)
        if abs(fresh - stored) > 1e-15 * max(1.0, abs(fresh)):
            problems.append(f"q={q!r} A={A!r} w={w!r}: stored {stored!r}, computed {fresh!r}")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="recompute every point and compare with the table")
    args = parser.parse_args(argv)
    if args.check:
        problems = check_table()
        print("\n".join(problems) or f"{TABLE.name}: all {len(GRID)} points equal a fresh computation")
        return 1 if problems else 0
    write_table()
    print(f"wrote {TABLE} ({len(GRID)} points)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

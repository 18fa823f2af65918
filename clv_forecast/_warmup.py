"""Process set-up for the CLI: one BLAS thread, and the fit's modules imported while polars reads.

``limit_blas_threads()`` (call it first, before anything imports numpy): numpy's OpenBLAS starts
one thread per core and splits every large ``np.dot`` of two vectors (the likelihood sums) between
them. On a 2-core machine those threads compete with polars' thread pool and with whatever else
runs, and a likelihood evaluation that takes 0.011 s on one thread took 0.03-0.2 s; the sums are
memory-bound, so one thread loses nothing. It only sets ``OPENBLAS_NUM_THREADS`` (and the MKL /
OpenMP equivalents) when the user has not set them, and only while numpy is not yet imported
(afterwards it cannot take effect and does nothing). Results can differ from a multi-threaded
run in the last digits (the summation order of the dot products): with one thread they no longer
depend on the machine's core count.

``start()``: importing the fit's modules in a background thread while the main thread reads the
transactions.

A ``clv-forecast fit`` process spends a few tenths of a second importing scipy (``special``,
``optimize``) and the model modules, and about as long reading and parsing the CSV in polars,
which releases the GIL while it works. Importing the former in a daemon thread during the latter
hides most of the import time. Usage (the CLI's ``fit`` and ``run``)::

    from .rfm import summarize          # numpy, pandas, polars: the main thread needs them first
    from . import _warmup
    _warmup.start()                     # scipy and the model modules, in the background
    rfm = summarize(path, ...)          # polars reads and parses without the GIL
    from .model import ClvModel         # already imported (or being imported: waits for it)

Safe by construction: the thread only imports modules (no other side effect, nothing computed
that the results depend on), it is a daemon (it never keeps the process alive), every exception
in it is swallowed (an import that fails there fails again, with its real error, where the main
thread imports the module), and ``start()`` is idempotent. The main thread never needs to join
it: importing a module that the thread is still importing waits on Python's per-module import
lock. A process that ends while the thread is still importing (a user error found at once) waits
for that import to finish at exit (at most ``_EXIT_WAIT`` seconds) rather than have the
interpreter stop the thread in the middle of an extension module's initialisation. Set
``CLV_FORECAST_NO_WARMUP=1`` to switch it off.

Start it after the main thread has imported numpy, pandas and polars, as above: the two threads
then import disjoint sets of modules, so there is no contention on import locks.
"""

from __future__ import annotations

import os
import threading

__all__ = ["MODULES", "limit_blas_threads", "start"]

_BLAS_VARIABLES = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS")


def limit_blas_threads(n: int = 1) -> bool:
    """Ask numpy's BLAS for ``n`` threads unless the user chose; False when numpy is already imported."""
    import sys

    if "numpy" in sys.modules:
        return False
    for name in _BLAS_VARIABLES:
        os.environ.setdefault(name, str(n))
    return True

#: What a fit needs beyond numpy, pandas and polars, in import order.
MODULES = ("scipy.special", "scipy.optimize", "clv_forecast.estimators.purchases.bgnbd",
           "clv_forecast.estimators.spend.gamma_gamma", "clv_forecast.model")

_EXIT_WAIT = 10.0
_lock = threading.Lock()
_thread: threading.Thread | None = None


def _join_at_exit() -> None:
    thread = _thread
    if thread is not None and thread.is_alive():
        thread.join(_EXIT_WAIT)


def _import_all(modules: tuple[str, ...]) -> None:
    from importlib import import_module

    for name in modules:
        try:
            import_module(name)
        except BaseException:  # noqa: BLE001 - a warm-up never fails; the main thread reports real errors
            pass


def start(modules: tuple[str, ...] = MODULES) -> threading.Thread | None:
    """Start importing ``modules`` in a daemon thread (once per process); return the thread.

    Returns None when switched off (``CLV_FORECAST_NO_WARMUP`` set to anything but ``""``/``0``)
    or when a thread cannot be started; callers need not look at the result.
    """
    global _thread
    if os.environ.get("CLV_FORECAST_NO_WARMUP", "") not in ("", "0"):
        return None
    with _lock:
        if _thread is None:
            thread = threading.Thread(target=_import_all, args=(tuple(modules),), name="clv-forecast-warmup",
                                      daemon=True)
            try:
                thread.start()
            except RuntimeError:  # e.g. no more threads can be created: just do without
                return None
            _thread = thread
            import atexit

            atexit.register(_join_at_exit)
        return _thread

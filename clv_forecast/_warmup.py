"""Import the fit's modules in a background thread while the main thread reads the transactions.

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
lock. Set ``CLV_FORECAST_NO_WARMUP=1`` to switch it off.

Start it after the main thread has imported numpy, pandas and polars, as above: the two threads
then import disjoint sets of modules, so there is no contention on import locks.
"""

from __future__ import annotations

import os
import threading

__all__ = ["MODULES", "start"]

#: What a fit needs beyond numpy, pandas and polars, in import order.
MODULES = ("scipy.special", "scipy.optimize", "clv_forecast.btyd", "clv_forecast.model")

_lock = threading.Lock()
_thread: threading.Thread | None = None


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
        return _thread

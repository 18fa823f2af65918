"""Helpers shared by test modules (imported as ``helpers``: the tests folder is on ``sys.path``)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from pathlib import Path

import numpy as np
import pandas as pd


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nobody listens on (the kernel's pick)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def silent_port():
    """A TCP port of 127.0.0.1 that accepts connections (the kernel's backlog) and never answers, while open."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


def simulated_rfm_table(n: int, seed: int = 1) -> pd.DataFrame:
    """``n`` valid RFM rows with continuous T (20-78 weeks): every (frequency, T) pair distinct."""
    rng = np.random.default_rng(seed)
    big_t = rng.uniform(20, 78, n)
    x = rng.poisson(1.5, n).astype(float)
    recency = np.where(x > 0, rng.uniform(0, 1, n) * big_t, 0.0)
    spend = np.where(x > 0, rng.gamma(3, 10, n), 0.0)
    return pd.DataFrame({"customer_id": np.arange(n), "frequency": x, "recency": recency, "T": big_t,
                         "monetary_value": spend})


def kill_when_writing(process, folder: Path, prefix: str, *, timeout: float, settle: float = 0.0,
                      group: bool = False) -> None:
    """SIGKILL ``process`` (with ``group``, its whole process group) once an entry named ``prefix...``
    appears in ``folder``, i.e. while it writes its output under a temporary name; ``settle`` seconds
    later, so that it is well into writing. Fails if the run ends first or takes longer than ``timeout``."""

    def kill() -> None:
        if group:
            os.killpg(process.pid, signal.SIGKILL)
        else:
            os.kill(process.pid, signal.SIGKILL)

    try:
        deadline = time.monotonic() + timeout
        while not any(p.name.startswith(prefix) for p in folder.iterdir()):
            assert process.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(settle)
        assert process.poll() is None, "the run ended before it could be killed"
        kill()
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            kill()
            process.wait()


def wait_until_up(url: str, process, log: Path, *, timeout: float, what: str, pause: float = 0.2) -> None:
    """Wait until ``url`` answers 200 (a server started as ``process``, writing to ``log``); a RuntimeError with
    the log's end when the process exits or ``timeout`` seconds pass first."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start: " + log.read_text(errors="replace")[-3000:])
        time.sleep(pause)


# the lines of Spark's own log (log4j's default layout): `score --engine spark` prints none of them
SPARK_LOG_LINE = r"^\d\d/\d\d/\d\d \d\d:\d\d:\d\d (INFO|WARN)"


def user_environment() -> dict:
    """A user's shell: the virtual environment not activated (its bin off the PATH, no VIRTUAL_ENV) and no
    PYSPARK_PYTHON: the Python workers must still find clv_forecast."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYSPARK_PYTHON", "VIRTUAL_ENV")}
    env["PATH"] = "/usr/bin:/bin"
    return env

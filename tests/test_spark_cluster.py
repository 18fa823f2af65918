"""``--engine spark`` as its users run it: on a standalone cluster and through a Spark Connect server.

Both run on 127.0.0.1. The standalone master and one worker are started here from pyspark's own scripts
(``spark-class ...Master`` / ``...Worker``), once for this module's standalone tests (their own xdist group), in
their own process groups, killed at the end and checked gone. The Spark Connect server is the one in the driver of
the tests' Spark session (the ``spark_connect`` fixture of tests/conftest.py: Spark's ``SparkConnectPlugin``, the
server ``spark-submit --class ...SparkConnectServer`` starts, without a JVM of its own; what the client does is the
same whatever runs its jobs). ``score`` and ``fit`` run through the command line, one process each (a process that
has opened a Connect session is in Connect mode for good), and their results are checked against the local engine
on the same inputs: scores to 1e-9 relative, parameters to 1e-8, the rows' accounting, the rejected rows and the
band of the totals.

The servers need what the ``spark`` fixture needs (pyspark, Java): the module is marked ``spark``, so it follows that
policy (tests/external_tools.py). The standalone JVMs (the daemons, the drivers, the executors) get the tests' JVM
options (``SPARK_SUBMIT_OPTS``, set by tests/conftest.py): short-lived, they spend less CPU without the C2 compiler.
"""

import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clv_forecast.datasets import CDNOW_CALIBRATION_END, load_cdnow_sample
from clv_forecast.model import ClvModel
from clv_forecast.rfm import summarize
from helpers import SPARK_LOG_LINE, free_port  # noqa: E402 (tests folder)

pytestmark = [pytest.mark.spark, pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")]
# the standalone cluster's tests: their own xdist group (the daemons are theirs, so they need not wait behind the
# tests of the local session, whose group the Connect tests join through the spark_connect fixture)
STANDALONE = pytest.mark.xdist_group("spark_cluster")

START_TIMEOUT = 180  # seconds for a server to come up on a busy 2-core machine
RUN_TIMEOUT = 600  # seconds for one command


def _spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


def _jvm_options() -> str:
    """The tests' JVM options (tests/conftest.py puts them in ``SPARK_SUBMIT_OPTS``, the drivers' and the Connect
    server's), given to the standalone daemons and executors too."""
    return os.environ.get("SPARK_SUBMIT_OPTS", "")


def _write_spark_defaults(work: Path) -> None:
    """``work/conf/spark-defaults.conf`` (``SPARK_CONF_DIR`` of :func:`_environment`): the tests' JVM options for
    the executors of every application a command starts on the cluster (``score`` and ``fit`` as a user types
    them: ``fit`` has no ``--spark-conf``)."""
    (work / "conf").mkdir(exist_ok=True)
    (work / "conf" / "spark-defaults.conf").write_text(f"spark.executor.extraJavaOptions {_jvm_options()}\n")


def _environment(work: Path) -> dict:
    """The servers' and the commands' environment: this interpreter for the Python workers, 127.0.0.1, scratch
    space under ``work``, the tests' JVM options for the master and the worker (``SPARK_DAEMON_JAVA_OPTS``) and,
    through ``work/conf``, for the executors (:func:`_write_spark_defaults`)."""
    return {**os.environ, "SPARK_HOME": str(_spark_home()), "PYSPARK_PYTHON": sys.executable,
            "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_LOCAL_DIRS": str(work), "SPARK_WORKER_DIR": str(work / "worker"),
            "SPARK_LOG_DIR": str(work), "CLV_FORECAST_TRACKING": "off", "SPARK_DAEMON_JAVA_OPTS": _jvm_options(),
            "SPARK_CONF_DIR": str(work / "conf")}


class _Server:
    """A server process in its own process group, its output in a log file."""

    def __init__(self, name: str, command: list, env: dict, log: Path):
        self.name, self.log = name, log
        with open(log, "wb") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env,
                                            start_new_session=True)

    def wait_for(self, pattern: str, timeout: float = START_TIMEOUT) -> None:
        """Wait until the log has a line matching ``pattern``; fail with the log's end if it does not come."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(pattern, self.log.read_text(errors="replace")):
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.5)
        tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])
        self.stop()
        pytest.fail(f"{self.name} did not start within {timeout} s (exit {self.process.poll()}):\n{tail}",
                    pytrace=False)

    def stop(self) -> None:
        """SIGTERM to the whole group (the JVM and what it started: executors, Python workers), SIGKILL if it
        lingers."""
        for sig, grace in ((signal.SIGTERM, 30), (signal.SIGKILL, 30)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(timeout=grace)
                _wait_group_gone(self.process.pid, grace)
                return
            except subprocess.TimeoutExpired:
                continue


def _wait_group_gone(pgid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    raise subprocess.TimeoutExpired(f"process group {pgid}", timeout)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A standalone master and one worker (2 cores, 2 GB) on 127.0.0.1: ``{"master": "spark://...", "work":
    scratch folder}``. Stopped (process groups killed) at the end, and checked gone."""
    work = tmp_path_factory.mktemp("cluster")
    _write_spark_defaults(work)
    env = _environment(work)
    bin_dir = _spark_home() / "bin"
    port = free_port()
    master_url = f"spark://127.0.0.1:{port}"
    commands = {
        "the standalone master": [str(bin_dir / "spark-class"), "org.apache.spark.deploy.master.Master", "--host",
                                  "127.0.0.1", "--port", str(port), "--webui-port", str(free_port())],
        "the standalone worker": [str(bin_dir / "spark-class"), "org.apache.spark.deploy.worker.Worker", "--host",
                                  "127.0.0.1", "--webui-port", str(free_port()), "--cores", "2", "--memory", "2g",
                                  "--work-dir", str(work / "worker"), master_url],  # (retries until the master is up)
    }
    servers = []
    try:
        for name, command in commands.items():
            servers.append(_Server(name, command, env, work / f"{len(servers)}.log"))
        servers[0].wait_for(r"Registering worker 127\.0\.0\.1")
        yield {"master": master_url, "work": work}
    finally:
        for server in reversed(servers):
            server.stop()
    left = [s.name for s in servers if _group_alive(s.process.pid)]
    assert not left, f"still running after the tests: {left}"


def _cli(*args, cwd: Path, env: dict):
    """``clv-forecast ARGS`` in a new process (and process group: killed whole on a timeout)."""
    process = subprocess.Popen([sys.executable, "-m", "clv_forecast.cli", *map(str, args)], cwd=cwd, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = process.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    return process.returncode, out, err


def _cli_in_process(*args, cwd: Path):
    """``clv-forecast ARGS`` in this process (tracking off, in ``cwd``): ``(exit code, stdout, stderr)``. For the
    local engine's reference runs, which need no process of their own."""
    from clv_forecast.cli import main

    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        patch.setenv("CLV_FORECAST_TRACKING", "off")
        patch.chdir(cwd)
        rc = main([*map(str, args)])
    return rc, out.getvalue(), err.getvalue()


def _standalone(cluster) -> tuple[list, dict]:
    """The option that puts a command on the standalone cluster, and the command's environment."""
    return ["--spark-master", cluster["master"]], _environment(cluster["work"])


def _connect(spark_connect) -> tuple[list, dict]:
    """The option that runs a command through the Spark Connect server, and the command's environment."""
    return ["--spark-remote", spark_connect], {**os.environ, "CLV_FORECAST_TRACKING": "off"}


# -- the inputs: small, with rejects, several partitions ------------------------------------------------------


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """CDNOW as a Parquet log (with two returns), the CDNOW calibration table with bad rows as a Parquet file,
    and the model fitted on it."""
    folder = tmp_path_factory.mktemp("inputs")
    log = load_cdnow_sample()[["customer_id", "date", "amount"]].astype({"date": "datetime64[us]"})
    returns = log.iloc[[5, 40]].assign(amount=lambda d: -d["amount"])  # returns of two purchases, same day
    log = pd.concat([log, returns], ignore_index=True)
    log.to_parquet(folder / "log.parquet", index=False)
    rfm = summarize(load_cdnow_sample(), amount_col="amount", calibration_end=CDNOW_CALIBRATION_END)
    model = ClvModel().fit(rfm)
    model.save(folder / "model.json")
    table = rfm.reset_index()[["customer_id", "frequency", "recency", "T", "monetary_value"]]
    table = table.astype({"customer_id": "Int64", "frequency": float})
    table.loc[3, "recency"] = -1.0
    table.loc[10, "frequency"] = 1.5
    table.loc[20, "monetary_value"] = np.nan
    table.loc[30, "customer_id"] = pd.NA
    late = table.index[table["recency"] > 1][0]
    table.loc[late, "T"] = 0.5 * table.loc[late, "recency"]  # recency greater than T
    table.to_parquet(folder / "rfm.parquet", index=False, row_group_size=500)  # several splits
    return folder


def _normalised(stdout: str) -> list[str]:
    """The score lines a person compares: without the elapsed time and the output paths."""
    lines = [re.sub(r" in \d+(\.\d+)? s$", "", line) for line in stdout.splitlines()]
    return [line for line in lines if not line.startswith("scores written to")]


@pytest.fixture(scope="module")
def local_score(inputs, tmp_path_factory):
    """``score`` with the local engine on the same table: its printed lines, scores and rejects."""
    folder = tmp_path_factory.mktemp("local_score")
    rc, out, err = _cli_in_process("score", "--model", inputs / "model.json", "--input", inputs / "rfm.parquet",
                                   "--output", folder / "scores.parquet", "--interval", "0.9", cwd=folder)
    assert rc == 0, err
    return {"lines": _normalised(out), "scores": pd.read_parquet(folder / "scores.parquet"),
            "rejects": pd.read_csv(folder / "scores.parquet.rejects.csv")}


def _check_score(engine_args, env, inputs, local_score, tmp_path):
    """Scores to 1e-9 relative, the same printed accounting (rows read, scored, rejected by reason) and band of the
    totals, the same rejected rows."""
    rc, out, err = _cli("score", "--engine", "spark", *engine_args,
                        "--spark-conf", "spark.sql.files.maxPartitionBytes=20k",  # several partitions: band rows
                        "--model", inputs / "model.json", "--input", inputs / "rfm.parquet", "--output", "scores",
                        "--interval", "0.9", cwd=tmp_path, env=env)
    assert rc == 0, err[-3000:]
    assert "Traceback" not in err and not re.search(SPARK_LOG_LINE, err, re.M), err[-3000:]
    assert sorted(_normalised(out)) == sorted(local_score["lines"])  # (reasons of equal counts: in any order)
    assert "rejected 5" in out and "90% band of the totals" in out
    expected = local_score["scores"].set_index("customer_id").sort_index()
    got = pd.read_parquet(tmp_path / "scores").set_index("customer_id").sort_index()
    assert list(got.columns) == list(expected.columns) and got.index.equals(expected.index)
    for column in expected.columns:
        np.testing.assert_allclose(got[column].to_numpy(float), expected[column].to_numpy(float), rtol=1e-9,
                                   atol=0, err_msg=column)
    rejects = pd.read_parquet(tmp_path / "scores.rejects")
    local = local_score["rejects"]
    assert sorted(zip(rejects["row"], rejects["reason"])) == sorted(zip(local["row"], local["reason"]))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left


@pytest.fixture(scope="module")
def local_fit(inputs, tmp_path_factory):
    """``fit --json`` with the local engine on the same log, with its per-customer table."""
    folder = tmp_path_factory.mktemp("local_fit")
    rc, out, err = _cli_in_process("fit", "-t", inputs / "log.parquet", "--amount-col", "amount",
                                   "--calibration-end", "1997-09-30", "--interval", "0.9", "--predictions",
                                   folder / "p.parquet", "--json", cwd=folder)
    assert rc == 0, err
    return json.loads(out), pd.read_parquet(folder / "p.parquet")


def _check_fit(engine_args, env, inputs, local_fit, tmp_path):
    """Parameters to 1e-8, every count of the accounting, the holdout check, the per-customer table and the band
    of the totals to 1e-9."""
    expected, table = local_fit
    rc, out, err = _cli("fit", "--engine", "spark", *engine_args, "-t", inputs / "log.parquet",
                        "--amount-col", "amount", "--calibration-end", "1997-09-30", "--interval", "0.9",
                        "--predictions", "predictions", "--json", cwd=tmp_path, env=env)
    assert rc == 0, err[-3000:]
    got = json.loads(out)
    for model in ("bgnbd", "gamma_gamma"):
        for name, value in expected[model].items():
            if isinstance(value, float):
                assert got[model][name] == pytest.approx(value, rel=1e-8), (model, name)
    assert got["accounting"] == expected["accounting"]
    assert got["accounting"]["n_return_rows"] == 2 and got["n_customers"] == expected["n_customers"]
    assert set(got["metrics"]) == {*expected["metrics"], "n_predictions"}  # (the Spark table's rows, counted)
    assert got["metrics"]["n_predictions"] == expected["n_customers"]
    for name, value in expected["metrics"].items():
        assert got["metrics"][name] == (pytest.approx(value, rel=1e-9) if isinstance(value, float) else value), name
    assert "clv_total_lower" in got["metrics"]  # the band of the totals, from the partitions' states
    predictions = pd.read_parquet(tmp_path / "predictions").set_index("customer_id").sort_index()
    table = table.set_index("customer_id").sort_index()
    assert list(predictions.columns) == list(table.columns) and predictions.index.equals(table.index)
    for column in table.columns:
        np.testing.assert_allclose(predictions[column].to_numpy(float), table[column].to_numpy(float), rtol=1e-9,
                                   err_msg=column)


# -- the commands on the cluster and through Spark Connect, against the local engine ---------------------------

CHECKS = {"score": _check_score, "fit": _check_fit}


@STANDALONE
@pytest.mark.parametrize("command", CHECKS)
def test_the_standalone_cluster_equals_the_local_engine(cluster, inputs, command, request, tmp_path):
    CHECKS[command](*_standalone(cluster), inputs, request.getfixturevalue(f"local_{command}"), tmp_path)


@pytest.mark.parametrize("command", CHECKS)
def test_spark_connect_equals_the_local_engine(spark_connect, inputs, command, request, tmp_path):
    CHECKS[command](*_connect(spark_connect), inputs, request.getfixturevalue(f"local_{command}"), tmp_path)


# -- the options' errors: one line, no hang --------------------------------------------------------------------


@STANDALONE  # (with the module's inputs)
def test_spark_remote_with_spark_master_is_one_line(inputs, tmp_path, capsys):
    """Refused before any session starts (the module's ``spark`` marker: the requirements and skip policy of the
    Spark tests)."""
    from clv_forecast.cli import main

    for command in (["score", "--model", inputs / "model.json", "--input", inputs / "rfm.parquet", "--output",
                     tmp_path / "o"],
                    ["fit", "-t", inputs / "log.parquet", "--amount-col", "amount"]):
        rc = main([*map(str, command), "--engine", "spark", "--spark-master", "local[1]", "--spark-remote",
                   "sc://127.0.0.1:1"])
        err = capsys.readouterr().err
        assert rc == 2, err
        assert err == ("clv-forecast: error: give --spark-remote (a Spark Connect server, sc://host:port) "
                       "or --spark-master (a master URL), not both\n"), err


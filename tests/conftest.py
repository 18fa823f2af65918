import os
import shutil
import sys
from pathlib import Path

# The suite runs on two xdist workers, one per core (pyproject's addopts): one BLAS thread per process, or the
# workers' BLAS threads compete for the same two cores. Set before numpy is first imported (below); the CLI
# processes the tests start inherit it.
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import pytest  # noqa: E402

from clv_forecast.datasets import CDNOW_CALIBRATION_END, load_cdnow_sample  # noqa: E402
from clv_forecast.rfm import summarize  # noqa: E402
from external_tools import pytest_runtest_setup, require  # noqa: E402, F401 (the skip-or-fail hook, registered here)
from helpers import free_port  # noqa: E402 (tests folder)

# A test using one of these fixtures gets the marker (and so the policy of tests/external_tools.py for
# `spark`); `spark_connect` is the Spark Connect server of the `spark` fixture's JVM, `server` test_tracking.py's
# real MLflow server.
FIXTURE_MARKERS = {"spark": "spark", "spark_connect": "spark", "server": "mlflow_server", "served": "mlflow_server"}
# Tests using these fixtures share the process the fixture starts (the session's Spark session, a module's MLflow
# server): one xdist group per fixture's marker, so that one worker starts it once. A test that starts its own JVM
# or server (marked, without the fixture) is balanced like any other test.
# the per-test limit of Spark tests, seconds (the others: `timeout` in pyproject.toml)
SPARK_TIMEOUT = 900
# The tests' JVMs live seconds: the C2 compiler and the parallel collector mostly burn CPU there (a session's
# start and a trivial job: 20.4 CPU-s, 11.8 with these), and so does verifying the bytecode of Spark's own jars
# as their ~15,000 classes load (14.9-17.1 CPU-s without, 13.7-15.5 with the check off, three runs each).
# spark-submit puts SPARK_SUBMIT_OPTS on the java command of every driver (the spark fixture's, the CLI runs' in
# subprocesses, a Spark Connect server) and prints nothing, unlike JAVA_TOOL_OPTIONS (a "Picked up" line on
# stderr). A developer's own SPARK_SUBMIT_OPTS is kept.
TEST_JVM_OPTIONS = ("-XX:TieredStopAtLevel=1 -XX:+UseSerialGC "
                    "-XX:+UnlockDiagnosticVMOptions -XX:-BytecodeVerificationRemote")
os.environ.setdefault("SPARK_SUBMIT_OPTS", TEST_JVM_OPTIONS)


def _uses_fixture(item: pytest.Item, name: str) -> bool:
    """True when the test requests the fixture ``name`` (not a parametrize argument of that name)."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    return name in getattr(item, "fixturenames", ()) and name not in params


@pytest.hookimpl(wrapper=True)  # before xdist reads the groups, and after it has written them into the ids
def pytest_collection_modifyitems(config, items):
    """Marks the tests by the fixtures they use, puts the users of each FIXTURE_MARKERS fixture on one xdist worker
    and gives the Spark tests the longer limit SPARK_TIMEOUT."""
    _mark(items)
    result = yield
    carry_xdist_groups(config, items)
    return result


def fixture_group(item: pytest.Item) -> str | None:
    """The xdist group a test joins by the shared fixture it uses (FIXTURE_MARKERS), or None."""
    return next((m for f, m in FIXTURE_MARKERS.items() if _uses_fixture(item, f)), None)


def xdist_group_name(item: pytest.Item) -> str | None:
    """The test's xdist group as xdist names it: its ``xdist_group`` markers' names, sorted and joined by ``_``."""
    names = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                    for m in item.iter_markers("xdist_group")})
    return "_".join(names) or None


def _mark(items) -> None:
    for item in items:
        for fixture, marker in FIXTURE_MARKERS.items():
            if _uses_fixture(item, fixture) and item.get_closest_marker(marker) is None:
                item.add_marker(marker)
        group = fixture_group(item)
        if group is not None and item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(group))
        if item.get_closest_marker("spark") is not None and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(SPARK_TIMEOUT))  # a JVM start on a busy machine: 90-300 s seen


def carry_xdist_groups(config, items) -> None:
    """On a ``--dist loadgroup`` worker, the group name as the suffix of each grouped test's id (``...@spark``):
    how the controller's scheduler reads the groups. pytest-xdist (3.8) writes the suffix into ``item._nodeid``,
    which pytest 9.2 no longer reads (its ids are structured): there, every group was silently split over the
    workers, and each worker started its own Spark session, cluster and MLflow server (pytest-dev/pytest-xdist
    issue 1386). Done here the same way as xdist does it, only where its suffix is missing: a no-op once xdist
    writes the id pytest reads. tests/test_xdist_groups.py checks that the ids carry the groups."""
    if not getattr(config.option, "loadgroup", False):
        return
    for item in items:
        group = xdist_group_name(item)
        if group is None or item.nodeid.endswith(f"@{group}"):
            continue
        grouped = f"{item.nodeid}@{group}"
        if hasattr(item, "_id"):  # pytest >= 9.2: the structured id, parsed back from the string form
            from _pytest.nodeid import NodeId

            item._id = NodeId.parse(grouped)
        else:
            item._nodeid = grouped


@pytest.fixture(scope="session")
def cdnow_rfm():
    """The CDNOW calibration summary built from the raw sample (weekly units, same-day merge)."""
    return summarize(load_cdnow_sample(), customer_col="customer_id", date_col="date", amount_col="amount",
                     time_unit="W", merge="D", calibration_end=CDNOW_CALIBRATION_END)


@pytest.fixture(scope="session")
def cdnow_csv(tmp_path_factory):
    """The raw CDNOW sample as a CSV with ISO dates (customer_id, date, amount, ...), as a user exports it."""
    path = tmp_path_factory.mktemp("data") / "cdnow.csv"
    df = load_cdnow_sample()
    df.assign(date=df["date"].dt.strftime("%Y-%m-%d")).to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def cdnow_with_late_customer(tmp_path_factory):
    """The CDNOW CSV plus customer 99999, whose two purchases (1998-01-05, 1998-02-01) come after the
    1997-09-30 calibration end."""
    import pandas as pd

    df = load_cdnow_sample()[["customer_id", "date", "amount"]]
    late = pd.DataFrame({"customer_id": [99999, 99999], "date": pd.to_datetime(["1998-01-05", "1998-02-01"]),
                         "amount": [10.0, 11.0]})
    path = tmp_path_factory.mktemp("data") / "tx.csv"
    pd.concat([df, late]).assign(date=lambda d: d["date"].dt.strftime("%Y-%m-%d")).to_csv(path, index=False)
    return path


@pytest.fixture(autouse=True)
def _no_tracking_unless_a_test_asks(monkeypatch):
    """CLI runs in tests do not create MLflow stores in the working directory; the tracking tests turn it on."""
    monkeypatch.setenv("CLV_FORECAST_TRACKING", "off")


@pytest.fixture(scope="session")
def spark():
    """One local Spark session for the whole run (skipped or, with CI=true, failed without pyspark/Java).

    Its driver also serves Spark Connect on a free port of 127.0.0.1 (Spark's ``SparkConnectPlugin``, the server
    that ``spark-submit --class ...SparkConnectServer`` starts, here in this JVM): :func:`spark_connect`. A client
    sees the same server either way, and the JVM a server of its own would start is saved."""
    require("spark")
    import pyspark
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # Python workers run this interpreter
    builder = (SparkSession.builder.master("local[2]").appName("clv-forecast-tests")
               .config("spark.ui.enabled", "false")
               .config("spark.sql.shuffle.partitions", "2")
               .config("spark.driver.bindAddress", "127.0.0.1")
               .config("spark.driver.host", "127.0.0.1")  # large task results are fetched from here
               .config("spark.sql.session.timeZone", "UTC"))
    if any((Path(pyspark.__file__).parent / "jars").glob("spark-connect_*.jar")):  # (bundled since Spark 4.0)
        builder = (builder.config("spark.plugins", "org.apache.spark.sql.connect.SparkConnectPlugin")
                   .config("spark.connect.grpc.binding.address", "127.0.0.1")
                   .config("spark.connect.grpc.binding.port", str(free_port())))
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def spark_connect(spark) -> str:
    """The URL (``sc://127.0.0.1:PORT``) of the Spark Connect server in the ``spark`` fixture's driver (failed
    when this pyspark has no Spark Connect server: its jar is bundled since Spark 4.0)."""
    port = spark.conf.get("spark.connect.grpc.binding.port", None)
    if port is None:
        pytest.fail("this pyspark bundles no Spark Connect server (jars/spark-connect_*.jar, Spark 4.0 and later): "
                    "install pyspark 4 to run the Spark Connect tests", pytrace=False)
    return f"sc://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory) -> Path:
    """One sqlite MLflow store, created (and migrated) once per session; copy it, never write to it."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow_template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def local_store(tmp_path, migrated_db, monkeypatch) -> str:
    # a sqlite store keeps artifacts in ./mlruns of the working directory: there, not in the checkout
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "mlflow.db"
    shutil.copyfile(migrated_db, path)
    return f"sqlite:///{path}"

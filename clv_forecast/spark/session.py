"""Spark sessions and Parquet datasets for :mod:`clv_forecast.spark`: the session the commands start,
reading a Parquet file or directory (pandas' nanosecond timestamps included), and Parquet directories
published atomically (written under a temporary name beside the target, renamed at the end).

pyspark is imported only inside the functions.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from .._io import remove_leftovers, temporary_path
from ..errors import ClvInputError


def _require_pyspark():
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise ImportError("clv_forecast.spark needs pyspark: pip install 'clv-forecast[spark]'") from None


def _is_uri(path) -> bool:
    return "://" in str(path)


def spark_path(path) -> str:
    """The text Spark is given for ``path``: a URI as it is, a local path as an absolute ``file:`` URI (the same
    file for a Spark Connect server on this machine or one sharing the mount, whose working directory is not
    this process's)."""
    return str(path) if _is_uri(path) else Path(path).absolute().as_uri()


def check_replaceable(path: Path, what: str, argument: str) -> None:
    """An existing target may be replaced only when it is an empty directory or a finished Spark output
    (a ``_SUCCESS`` marker): never a file or a folder of other things."""
    if not path.exists():
        return
    if path.is_dir() and ((path / "_SUCCESS").exists() or not any(path.iterdir())):
        return
    kind = "a file" if not path.is_dir() else "a folder that is not an earlier Spark output (no _SUCCESS)"
    raise ClvInputError(f"{path} exists and is {kind}; give a new directory for {what}",
                        argument=argument, value=str(path))


def _temporary(target: Path) -> Path:
    """The temporary directory of ``target``, named with its owner (:func:`clv_forecast._io.temporary_path`);
    the leftovers of killed runs writing ``target`` are removed first (:func:`clv_forecast._io.remove_leftovers`)."""
    remove_leftovers(target)
    return temporary_path(target)


def _publish(tmp: Path, target: Path) -> None:
    """Rename the finished ``tmp`` directory to ``target``; an earlier output there is moved aside first
    and deleted after (a kill between the two renames leaves nothing under ``target``)."""
    old = None
    if target.exists():
        old = temporary_path(target, ".old")
        os.rename(target, old)
    os.rename(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _spark_error(exc) -> str:
    """The first line of a Spark/py4j error, for a one-line message."""
    text = str(getattr(exc, "desc", None) or exc)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:300]


_LOG4J2 = """\
rootLogger.level = error
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = spark: %p %c{1}: %m%n%ex
"""


def _local_cores(master: str) -> int:
    """Cores of a ``local``, ``local[N]``, ``local[*]`` or ``local[N,F]`` master."""
    inside = master[len("local["):-1].split(",")[0] if master.startswith("local[") else "1"
    return (os.cpu_count() or 1) if inside.strip() == "*" else max(1, int(inside) if inside.strip().isdigit() else 1)


#: adaptive execution may coalesce the shuffle partitions of a cached (persisted) plan: Spark keeps every one of
#: them by default, and each is a Python task of fixed cost (CDNOW's 2,357 rows scored through a Spark Connect
#: server with its 200 default partitions: 155 s; coalesced: 12 s). A SQL setting: classic and Connect sessions.
COALESCE_CACHED = "spark.sql.optimizer.canChangeCachedPlanOutputPartitioning"

#: seconds to wait for a Spark Connect server to answer before giving up (one line, no hang)
CONNECT_TIMEOUT = 20.0


def _user_settings(conf) -> dict[str, str]:
    """``KEY=VALUE`` texts (``--spark-conf``) as a dict; anything else is a one-line error."""
    user: dict[str, str] = {}
    for item in conf:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise ClvInputError("must be KEY=VALUE, e.g. spark.driver.memory=2g", argument="spark_conf", value=item)
        user[key.strip()] = value.strip()
    return user


def spark_session(master: str | None = None, conf=(), app_name: str = "clv-forecast score", *,
                  remote: str | None = None, connect_timeout: float = CONNECT_TIMEOUT):
    """A Spark session for the command line.

    ``remote``: the URL of a Spark Connect server (``sc://host:port``, with its ``;token=...`` parameters):
    a Connect session (:func:`connect_session`). Otherwise a classic session on ``master`` (default
    ``local[*]``): the time zone UTC, no UI and no progress bars, shuffle partitions coalesced to 64 MB on a
    cluster (AQE, ``parallelismFirst`` off, cached plans too: :data:`COALESCE_CACHED`) and two per core in
    local mode, Spark's log at ERROR (its own start-up lines aside), the Python workers on this interpreter
    (``$PYSPARK_PYTHON`` otherwise unset means ``python3`` on the PATH). ``conf``: ``KEY=VALUE`` texts,
    applied last (they override these settings). Giving both ``master`` and ``remote`` is an error."""
    if remote is not None and master is not None:
        raise ClvInputError("give {{spark_remote}} (a Spark Connect server, sc://host:port) or {{spark_master}} "
                            "(a master URL), not both")
    _require_pyspark()
    user = _user_settings(conf)
    if remote is not None:
        return connect_session(remote, user, timeout=connect_timeout)
    master = "local[*]" if master is None else str(master)
    settings = {"spark.sql.session.timeZone": "UTC", "spark.ui.enabled": "false",
                "spark.ui.showConsoleProgress": "false", COALESCE_CACHED: "true",
                # after the id window's shuffle: partitions of the advisory size (64 MB), not one per core
                # at any size (each Python task has a fixed cost: 2,357 rows took 30 s in 200 tasks, 0.7 s in 2)
                "spark.sql.adaptive.coalescePartitions.parallelismFirst": "false"}
    if "spark.driver.extraJavaOptions" not in user:
        config = Path(tempfile.gettempdir()) / f"clv-forecast-log4j2-{os.getuid()}.properties"
        if not config.exists() or config.read_text() != _LOG4J2:
            tmp = config.with_name(config.name + f".{os.getpid()}")
            tmp.write_text(_LOG4J2)
            os.replace(tmp, config)
        settings["spark.driver.extraJavaOptions"] = f"-Dlog4j2.configurationFile={config.as_uri()}"
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # no "resolves to a loopback address" warning
        settings.setdefault("spark.driver.host", "127.0.0.1")  # large task results are fetched from here
        # one machine: two shuffle partitions per core, kept apart (coalescing them to 64 MB left one core
        # working: a 3.1M-row summary took 78 s instead of 21 s on 2 cores)
        cores = _local_cores(master)
        settings["spark.sql.shuffle.partitions"] = str(max(2, 2 * cores))
        settings["spark.sql.adaptive.coalescePartitions.parallelismFirst"] = "true"
    settings.update(user)  # the user's settings win
    quiet_pyspark_warnings()
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master(master).appName(app_name)
    for key, value in settings.items():
        builder = builder.config(key, value)
    try:
        session = builder.getOrCreate()
    except Exception as exc:  # noqa: BLE001 - no Java, a bad master URL...: one line
        raise ClvInputError(f"cannot start Spark ({_spark_error(exc)})", argument="spark_master",
                            value=master) from None
    session.sparkContext.setLogLevel("ERROR")
    return session


def connect_session(url: str, settings: dict | None = None, *, timeout: float = CONNECT_TIMEOUT):
    """A session on the Spark Connect server at ``url`` (``SparkSession.builder.remote(url)``), once the server has
    answered within ``timeout`` seconds (:func:`_wait_for_server`: a server that is down, unreachable or not a
    Connect server is a one-line error naming the URL, not a wait of minutes). The session's SQL settings: the time
    zone UTC, shuffle partitions coalesced to 64 MB (cached plans too: :data:`COALESCE_CACHED`), then ``settings``
    (``--spark-conf``; the cluster's own settings, such as memory, are the server's). The session is released on the
    server when this process exits (its cached tables are dropped there)."""
    import atexit

    quiet_pyspark_warnings()  # (before pyspark's Connect client is imported: it warns on import)
    _wait_for_server(url, timeout)
    from pyspark.sql import SparkSession

    try:
        session = SparkSession.builder.remote(url).create()
    except Exception as exc:  # noqa: BLE001 - a malformed URL, a session refused: one line
        raise ClvInputError(f"cannot open a Spark Connect session ({_spark_error(exc)})", argument="spark_remote",
                            value=url) from None
    atexit.register(_release, session)
    wanted = {"spark.sql.session.timeZone": "UTC", COALESCE_CACHED: "true",
              "spark.sql.adaptive.coalescePartitions.parallelismFirst": "false", **(settings or {})}
    for key, value in wanted.items():
        try:
            session.conf.set(key, value)
        except Exception as exc:  # noqa: BLE001 - a setting a session may not change (a cluster's): one line
            raise ClvInputError(f"{key}: not a setting of a Spark Connect session; set it on the server "
                                f"({_spark_error(exc)})", argument="spark_conf", value=f"{key}={value}") from None
    return session


def _release(session) -> None:
    """Stop a Connect session (its state on the server is released); nothing to do if it is stopped already."""
    try:
        session.stop()
    except Exception:  # noqa: BLE001 - at exit, a server already gone: nothing to release
        pass


def _wait_for_server(url: str, timeout: float) -> None:
    """Open a gRPC channel to ``url`` and wait for it to be ready: a refused or failed connection (down, not a
    Connect server, TLS mismatch) is reported as soon as gRPC reports it, silence after ``timeout`` seconds."""
    import threading

    try:
        import grpc

        try:  # pyspark 4
            from pyspark.sql.connect.client import DefaultChannelBuilder as ChannelBuilder
        except ImportError:  # pyspark 3.5
            from pyspark.sql.connect.client import ChannelBuilder
    except ImportError as exc:
        raise ClvInputError(f"the Spark Connect client is not installed ({_spark_error(exc)}): pip install "
                            "'clv-forecast[spark]'", argument="spark_remote", value=url) from None
    if not str(url).startswith("sc://"):
        raise ClvInputError("a Spark Connect URL starts with sc:// (e.g. sc://localhost:15002)",
                            argument="spark_remote", value=url)
    try:
        channel = ChannelBuilder(str(url)).toChannel()
    except Exception as exc:  # noqa: BLE001 - pyspark's URL checks: one line
        raise ClvInputError(f"not a Spark Connect URL ({_spark_error(exc)})", argument="spark_remote",
                            value=url) from None
    states: list = []
    settled = threading.Event()

    def seen(state) -> None:
        states.append(state)
        if state in (grpc.ChannelConnectivity.READY, grpc.ChannelConnectivity.TRANSIENT_FAILURE,
                     grpc.ChannelConnectivity.SHUTDOWN):
            settled.set()

    channel.subscribe(seen, try_to_connect=True)
    try:
        settled.wait(timeout)
    finally:
        channel.unsubscribe(seen)
        channel.close()
    if not states or states[-1] != grpc.ChannelConnectivity.READY:
        reason = ("no answer within {:g} s".format(timeout) if not settled.is_set()
                  else "connection refused or not a Spark Connect server")
        raise ClvInputError(f"cannot reach the Spark Connect server: {reason}; check that it runs (e.g. "
                            "start-connect-server.sh) and the host, port and sc:// parameters",
                            argument="spark_remote", value=url)


def is_connect(session) -> bool:
    """Whether ``session`` is a Spark Connect session (no JVM here: no ``sparkContext``, no RDDs)."""
    return type(session).__module__.startswith("pyspark.sql.connect")


def coalesce_cached(session):
    """Let ``session`` coalesce the shuffle partitions of the plans it caches (:data:`COALESCE_CACHED`; a session
    given by the caller may not have it); returns the function that restores the session's own setting."""
    previous = session.conf.get(COALESCE_CACHED)
    if previous == "true":
        return lambda: None
    session.conf.set(COALESCE_CACHED, "true")
    return lambda: session.conf.set(COALESCE_CACHED, previous)


def quiet_pyspark_warnings() -> None:
    """pyspark's own warnings about pandas 3 (its version check, its use of a deprecated keyword) are
    not the user's concern: filtered, here and in the pipeline's warning capture."""
    import warnings

    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
    warnings.filterwarnings("ignore", message="The copy keyword is deprecated")


def check_parquet_path(path, *, argument: str = "transactions") -> None:
    """One-line errors for a local input the Spark engine cannot read (before a session is started)."""
    text = str(path)
    local = Path(text)
    if _is_uri(text):
        return
    if not local.exists():
        raise ClvInputError(f"{text}: input not found", argument=argument, value=text)
    if local.is_file() and local.suffix.lower() not in (".parquet", ".pq"):
        raise ClvInputError(f"{text}: the Spark engine reads Parquet (a .parquet file or a directory of them); "
                            "convert the file, or use the local engine", argument=argument, value=text)


def read_parquet(session, path, *, argument: str = "transactions"):
    """A Parquet file or a directory of Parquet files as a Spark DataFrame (one-line errors)."""
    check_parquet_path(path, argument=argument)
    text = str(path)
    local = Path(text)
    nanos = _nanosecond_columns(local) if "://" not in text else []
    if nanos:
        # Spark cannot read TIMESTAMP(NANOS) (pandas' default): read those as integers and convert
        session.conf.set("spark.sql.legacy.parquet.nanosAsLong", "true")
    try:
        sdf = session.read.parquet(spark_path(text))
    except Exception as exc:  # noqa: BLE001 - Spark's analysis errors: one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ClvInputError(f"{text}: not readable as Parquet by Spark: {first[:200]}", argument=argument,
                            value=text) from None
    if nanos:
        from pyspark.sql import functions as F

        tz = session.conf.get("spark.sql.session.timeZone")
        # wall-clock nanoseconds -> microseconds (sub-microsecond digits dropped) -> a timestamp that reads
        # back, in the session's zone, as the same wall-clock time
        sdf = sdf.withColumns({c: F.to_utc_timestamp(F.timestamp_micros(F.expr(f"`{c}` div 1000")), tz)
                               for c in nanos if c in sdf.columns})
    return sdf


def _nanosecond_columns(path) -> list[str]:
    """Names of the TIMESTAMP(NANOS) columns of a Parquet file or of the first file of a directory."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = [path] if path.is_file() else sorted(p for p in path.rglob("*.parquet") if not p.name.startswith((".", "_")))
    if not files:
        return []
    try:
        schema = pq.read_schema(files[0])
    except Exception:  # noqa: BLE001 - Spark gives the error for an unreadable file
        return []
    return [f.name for f in schema if pa.types.is_timestamp(f.type) and f.type.unit == "ns"]


def write_parquet_dir(sdf, path, *, argument: str = "predictions", what: str = "the per-customer table"):
    """Write a Spark DataFrame as a Parquet directory, published atomically (:func:`_temporary`,
    :func:`_publish`: a failed or killed job leaves nothing under the target's name). An existing target
    is replaced only if it is an earlier Spark output or empty (:func:`check_replaceable`)."""
    target = Path(path)
    if target.suffix.lower() in (".csv", ".gz", ".txt", ".json"):
        raise ClvInputError(f"{target}: the Spark engine writes a directory of Parquet files; give a directory "
                            "name (e.g. 'predictions' or 'predictions.parquet')", argument=argument, value=str(path))
    check_replaceable(target, what, argument)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(target)
    try:
        sdf.write.parquet(spark_path(tmp))
        _publish(tmp, target)
    except BaseException:
        cancel_jobs(sdf.sparkSession)  # interrupted (Ctrl-C, SIGTERM): stop the writers before removing
        raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def cancel_jobs(session) -> None:
    """Cancel the session's running jobs (a run interrupted while Spark writes): their tasks stop writing
    into the temporary directory about to be removed. A task that still writes after it is removed
    leaves a directory the next run writing the same target removes (:func:`clv_forecast._io.remove_leftovers`).
    ``interruptAll`` (Spark Connect, and classic sessions from Spark 4), else the context's ``cancelAllJobs``
    (classic Spark 3.5)."""
    try:
        session.interruptAll()
        return
    except Exception:  # noqa: BLE001 - classic Spark 3.5 (Connect only there), or a session already stopped
        if is_connect(session):
            return
    try:
        session.sparkContext.cancelAllJobs()
    except Exception:  # noqa: BLE001 - a session already stopped: nothing to cancel
        pass

"""Hostile users, part "paths, signals and servers" (issue 17): no output may replace an input, SIGTERM
cleans up like Ctrl-C, a server is never waited on for minutes, unknown tracking schemes, NUL bytes in
paths, truncated gzip input, a full disk. Each case: exit code, one line naming what it is about, and
nothing lost or written."""

from __future__ import annotations

import errno
import hashlib
import http.server
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from helpers import free_port, silent_port, simulated_rfm_table  # noqa: E402 (tests folder)

from clv_forecast import _io  # noqa: E402
from clv_forecast._paths import check_paths  # noqa: E402
from clv_forecast.cli import main  # noqa: E402
from clv_forecast.errors import ClvInputError  # noqa: E402

AMOUNT = ["--amount-col", "amount"]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _error(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("clv-forecast: error: ")
    return lines[0]


@pytest.fixture
def log(cdnow_csv, tmp_path) -> Path:
    path = tmp_path / "log.csv"
    shutil.copyfile(cdnow_csv, path)
    return path


@pytest.fixture(scope="module")
def model_file(tmp_path_factory, cdnow_rfm) -> Path:
    from clv_forecast.model import ClvModel

    return ClvModel().fit(cdnow_rfm).save(tmp_path_factory.mktemp("model") / "model.json")


@pytest.fixture
def rfm_csv(cdnow_rfm, tmp_path) -> Path:
    path = tmp_path / "rfm.csv"
    cdnow_rfm.reset_index()[["customer_id", "frequency", "recency", "T", "monetary_value"]].to_csv(path, index=False)
    return path


# -- 1. no output may replace an input ------------------------------------------------------------


@pytest.mark.parametrize("args, names", [
    (["--predictions", "{log}"], ("--predictions", "--transactions")),
    (["--output", "{log}"], ("--output", "--transactions")),
    (["--output", "./log.csv"], ("--output", "--transactions")),
    (["--output", "{hard}"], ("--output", "--transactions")),
    (["--output", "{link}"], ("--output", "--transactions")),
    (["--output", "m.json", "--predictions", "m.json"], ("--output", "--predictions")),
    (["--predictions", "{folder}"], ("--predictions", "--transactions")),
])
def test_fit_never_writes_over_its_log(log, tmp_path, monkeypatch, capsys, args, names):
    monkeypatch.chdir(tmp_path)
    os.link(log, tmp_path / "hard.csv")
    (tmp_path / "link.csv").symlink_to(log)
    before, listing = _digest(log), _files(tmp_path)
    args = [a.format(log=log, hard=tmp_path / "hard.csv", link=tmp_path / "link.csv", folder=tmp_path) for a in args]
    assert main(["fit", "-t", str(log), *AMOUNT, *args]) == 2
    line = _error(capsys)
    assert all(name in line for name in names), line
    assert "same file" in line or "folder holding" in line
    assert _digest(log) == before and _files(tmp_path) == listing


def test_compare_output_folder_may_not_be_or_hold_the_log(log, tmp_path, capsys):
    before = _digest(log)
    for target in (log, tmp_path):
        assert main(["compare", "-t", str(log), *AMOUNT, "--calibration-end", "1997-09-30",
                     "--output", str(target)]) == 2
        line = _error(capsys)
        assert "--output" in line and "--transactions" in line
    assert _digest(log) == before and _files(tmp_path) == ["log.csv"]


def _spec(folder: Path, name: str, output: str) -> Path:
    path = folder / name
    path.write_text(f'[data]\nsource = "log.csv"\namount_col = "amount"\n[output]\n{output}\n', encoding="utf-8")
    return path


@pytest.mark.parametrize("output, keys", [
    ('predictions = "log.csv"', ("[output] predictions", "[data] source")),
    ('model = "spec.toml"', ("[output] model", "the experiment file")),
    ('report = "sub/../log.csv"', ("[output] report", "[data] source")),
])
def test_experiment_outputs_never_replace_its_inputs(log, tmp_path, capsys, output, keys):
    spec = _spec(tmp_path, "spec.toml", output)
    before = {p: _digest(p) for p in (log, spec)}
    for command in (["run", "--experiment", str(spec)], ["run", "--experiment", str(spec), "--json"]):
        assert main(command) == 2
        line = _error(capsys)
        assert line.startswith(f"clv-forecast: error: {spec}: ") and all(k in line for k in keys), line
    assert {p: _digest(p) for p in before} == before and _files(tmp_path) == ["log.csv", "spec.toml"]


def test_report_command_output_may_not_be_an_input(log, tmp_path, capsys):
    spec = _spec(tmp_path, "spec.html", 'model = "m.json"')  # (an odd name, but an input all the same)
    before = _digest(spec)
    assert main(["report", "--experiment", str(spec), "--output", str(spec)]) == 2
    assert "the experiment file" in _error(capsys)
    assert _digest(spec) == before and _files(tmp_path) == ["log.csv", "spec.html"]


def test_pipeline_api_checks_too(log, tmp_path):
    from clv_forecast.experiment import run, spec_from_options

    spec = spec_from_options(transactions=str(log), amount_col="amount", model=str(log))
    with pytest.raises(ClvInputError, match="model and source are the same file"):
        run(spec)


@pytest.mark.parametrize("mode", ["input", "transactions"])
@pytest.mark.parametrize("extra, names", [
    (["--output", "s.csv", "--rejects", "s.csv"], ("--output", "--rejects")),
    (["--output", "s.csv", "--rejects", "{source}"], ("--rejects", "{option}")),
    (["--output", "s.csv", "--rejects", "{model}"], ("--rejects", "--model")),
    (["--output", "{model}"], ("--output", "--model")),
    (["--output", "{source}"], ("--output", "{option}")),
])
def test_score_files_never_collide(rfm_csv, log, model_file, tmp_path, monkeypatch, capsys, mode, extra, names):
    monkeypatch.chdir(tmp_path)
    source = rfm_csv if mode == "input" else log
    option = f"--{mode}"
    args = ["score", "--model", str(model_file), option, str(source)] + ([] if mode == "input" else AMOUNT)
    before, listing, model_before = _digest(source), _files(tmp_path), _digest(model_file)
    extra = [a.format(source=source, model=model_file) for a in extra]
    assert main(args + extra) == 2
    line = _error(capsys)
    assert all(n.format(option=option) in line for n in names) and "same file" in line, line
    assert _digest(source) == before and _digest(model_file) == model_before and _files(tmp_path) == listing


def test_score_default_rejects_file_counts_too(rfm_csv, model_file, tmp_path, capsys):
    target = tmp_path / "s.csv"
    source = tmp_path / "s.csv.rejects.csv"  # the default rejects file of --output s.csv
    shutil.copyfile(rfm_csv, source)
    before = _digest(source)
    assert main(["score", "--model", str(model_file), "--input", str(source), "--output", str(target)]) == 2
    line = _error(capsys)
    assert "the rejects file and --input are the same file" in line
    assert _digest(source) == before and not target.exists()


def test_spark_engine_checks_before_spark_starts(tmp_path, model_file, capsys):
    data = tmp_path / "orders"
    data.mkdir()
    simulated_rfm_table(50).to_parquet(data / "part-0.parquet")
    listing = _files(data)
    start = time.monotonic()
    cases = [
        (["score", "--engine", "spark", "--model", str(model_file), "--input", str(data), "--output", str(data)],
         ("--output and --input are the same file",)),
        (["score", "--engine", "spark", "--model", str(model_file), "--input", str(data), "--output",
          str(data / "scores")], ("--output is inside the --input directory",)),
        (["score", "--engine", "spark", "--model", str(model_file), "--transactions", str(data), "--output",
          str(tmp_path / "s"), "--rejects", str(tmp_path / "s" / "r")], ("--output is a folder holding --rejects",)),
        (["fit", "--engine", "spark", "-t", str(data), "--predictions", str(data / "p")],
         ("--predictions is inside the --transactions directory",)),
    ]
    for args, texts in cases:
        assert main(args) == 2
        line = _error(capsys)
        assert all(t in line for t in texts), line
    assert time.monotonic() - start < 10  # no Spark session was started
    assert _files(data) == listing and _files(tmp_path) == ["orders"]


def test_check_paths_rules(tmp_path):
    (tmp_path / "a.csv").write_text("x")
    check_paths({"{{source}}": tmp_path / "a.csv"}, {"{{model}}": tmp_path / "m.json"})  # fine
    check_paths({"in": "s3a://bucket/x", "{{model}}": "runs:/abc/model"}, {"out": "s3a://bucket/x"})  # URIs skipped
    check_paths({"one": tmp_path / "a.csv", "two": tmp_path / "a.csv"}, {})  # reading a file twice loses nothing
    not_yet = tmp_path / "new" / "x.csv"
    with pytest.raises(ClvInputError, match="^out and other are the same file"):
        check_paths({}, {"out": not_yet, "other": tmp_path / "new" / "." / "x.csv"})
    with pytest.raises(ClvInputError, match="NUL byte"):
        check_paths({"in": "a\x00b"}, {})
    with pytest.raises(ClvInputError, match="^spec.toml: out is a folder holding in"):
        check_paths({"in": tmp_path / "a.csv"}, {"out": tmp_path}, where="spec.toml")
    long = tmp_path / ("d" * 300) / "x.csv"
    with pytest.raises(ClvInputError) as caught:
        check_paths({"in": long}, {"out": long})
    assert len(str(caught.value)) < 200


# -- 2. SIGTERM cleans up like Ctrl-C; a killed run's leftovers ----------------------------------


def _score_process(model_file: Path, source: Path, out: Path) -> subprocess.Popen:
    code = "from clv_forecast.cli import console_main; console_main()"
    env = dict(os.environ, CLV_FORECAST_TRACKING="off")
    return subprocess.Popen([sys.executable, "-c", code, "score", "--model", str(model_file), "--input", str(source),
                             "--output", str(out), "--batch-rows", "2000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _when_writing(process, folder: Path, prefix: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not any(p.name.startswith(prefix) for p in folder.iterdir()):
        assert process.poll() is None, "the run ended before it could be signalled"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(0.2)
    assert process.poll() is None, "the run ended before it could be signalled"


@pytest.fixture(scope="module")
def big_table(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("big") / "big.parquet"
    simulated_rfm_table(200_000).to_parquet(path)
    return path


def test_sigterm_unwinds_like_ctrl_c(model_file, big_table, tmp_path):
    out = tmp_path / "out.parquet"
    process = _score_process(model_file, big_table, out)
    try:
        _when_writing(process, tmp_path, ".out.parquet.")
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 143
    assert err.strip() == "clv-forecast: terminated"
    assert _files(tmp_path) == []  # no output, no rejects, no temporary file


def test_leftovers_of_a_killed_run_are_removed_by_the_next_write(model_file, big_table, tmp_path):
    out = tmp_path / "out.parquet"
    process = _score_process(model_file, big_table, out)
    try:
        _when_writing(process, tmp_path, ".out.parquet.")
    finally:
        process.kill()
        process.wait()
    left = [p for p in _files(tmp_path) if p.endswith(".tmp")]
    assert len(left) == 2 and not out.exists()  # the scores' and the rejects' temporary files
    assert all(f"-{process.pid}." in name for name in left)  # named with their owner
    small = tmp_path / "small.parquet"
    simulated_rfm_table(100).to_parquet(small)
    rerun = _score_process(model_file, small, out)
    _, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err
    assert err.count("removed 1 temporary file left by an earlier run killed while writing") == 2
    assert _files(tmp_path) == ["out.parquet", "out.parquet.rejects.csv", "small.parquet"]


def test_remove_leftovers_keeps_live_and_foreign_ones(tmp_path):
    target = tmp_path / "model.json"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    host = _io._host()
    names = {
        "dead": f".model.json.{host}-{dead_pid}.0a1b2c.tmp",
        "dead_dir": f".model.json.{host}-{dead_pid}.0a1b2d.old",
        "alive": f".model.json.{host}-{os.getppid()}.0a1b2c.tmp",
        "other_host": f".model.json.elsewhere-{dead_pid}.0a1b2c.tmp",
        "other_target": f".model.json.bak.{host}-{dead_pid}.0a1b2c.tmp",
        "old_style": ".model.json.k3j4h5.tmp",
    }
    for key, name in names.items():
        (tmp_path / name).mkdir() if key == "dead_dir" else (tmp_path / name).write_text("x")
    with pytest.warns(UserWarning, match="removed 2 temporary files"):
        assert _io.remove_leftovers(target) == 2
    assert _files(tmp_path) == sorted(v for k, v in names.items() if not k.startswith("dead"))
    _io.atomic_write_text(target, "{}")
    assert target.read_text() == "{}"


def test_interrupts_and_only_interrupts_exit_130(monkeypatch, capsys, log):
    import clv_forecast.experiment as experiment

    def fail(error):
        def run(*args, **kwargs):
            raise error
        return run

    monkeypatch.setattr(experiment, "run", fail(KeyboardInterrupt()))
    assert main(["fit", "-t", str(log), *AMOUNT]) == 130
    assert capsys.readouterr().err.strip() == "clv-forecast: aborted"
    monkeypatch.setattr(experiment, "run", fail(EOFError("stream ended")))  # click turns it into Abort
    assert main(["fit", "-t", str(log), *AMOUNT]) == 2
    assert "ended unexpectedly (stream ended)" in _error(capsys)


# -- 3. a server is never waited on for minutes ---------------------------------------------------


@pytest.fixture
def silent_server():
    """A socket that accepts connections (the kernel's backlog) and never answers."""
    with silent_port() as port:
        yield f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("server", ["closed", "silent"])
def test_model_from_a_dead_server_fails_in_seconds_untracked(server, silent_server, rfm_csv, tmp_path, monkeypatch,
                                                              capsys):
    uri = f"http://127.0.0.1:{free_port()}" if server == "closed" else silent_server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    out = tmp_path / "s.csv"
    start = time.monotonic()
    assert main(["score", "--model", "runs:/0123456789abcdef/model", "--input", str(rfm_csv), "--output", str(out),
                 "--no-tracking"]) == 2
    assert time.monotonic() - start < 10
    line = _error(capsys)
    assert "--model runs:/0123456789abcdef/model: cannot download the model" in line and uri in line
    assert not out.exists()


def test_mlflow_client_retries_are_bounded_when_the_model_is_downloaded(monkeypatch, rfm_csv, tmp_path, capsys):
    """A server that answers its health check: MLflow's own client is then used with our bounded retries
    and timeout (a server that hangs after accepting fails in seconds, not minutes)."""
    import mlflow.artifacts

    from clv_forecast import tracking

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"OK")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    seen = {}

    def download(**kwargs):
        seen.update({key: os.environ.get(key) for key in tracking._FAST_FAIL_ENV})
        raise RuntimeError("no such run")

    for key in tracking._FAST_FAIL_ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", download)
    try:
        assert main(["score", "--model", "runs:/abc/model", "--input", str(rfm_csv), "--output",
                     str(tmp_path / "s.csv"), "--no-tracking"]) == 2
    finally:
        server.shutdown()
    assert "cannot download the model (no such run)" in _error(capsys)
    assert seen == tracking._FAST_FAIL_ENV
    assert int(seen["MLFLOW_HTTP_REQUEST_TIMEOUT"]) * (1 + int(seen["MLFLOW_HTTP_REQUEST_MAX_RETRIES"])) <= 15


# -- 4. unknown tracking schemes ------------------------------------------------------------------


def test_unknown_tracking_scheme_is_refused_before_any_work(log, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("CLV_FORECAST_TRACKING", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    model = tmp_path / "m.json"
    assert main(["fit", "-t", str(log), *AMOUNT, "--output", str(model), "--tracking-uri", "ftp://x/y"]) == 2
    line = _error(capsys)
    assert "--tracking-uri ftp://x/y: MLflow cannot track to 'ftp' URIs" in line
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "ftp://x/y")
    assert main(["fit", "-t", str(log), *AMOUNT, "--output", str(model)]) == 2
    assert "$MLFLOW_TRACKING_URI=ftp://x/y: MLflow cannot track to 'ftp'" in _error(capsys)
    assert _files(tmp_path) == ["log.csv"]


def test_tracking_schemes_mlflow_knows_are_accepted():
    from clv_forecast.tracking import check_tracking_scheme

    for uri in ("mlruns", "/abs/mlruns", "file:///x", "sqlite:///a.db", "postgresql+psycopg2://u@h/db",
                "mysql://h/db", "mssql://h/db", "http://h:5000", "https://h", "databricks", "databricks-uc", "uc"):
        check_tracking_scheme(uri)
    for uri in ("ftp://x/y", "s3://bucket/x", "gopher://h"):
        with pytest.raises(ClvInputError, match="MLflow cannot track to"):
            check_tracking_scheme(uri)


# -- 5. NUL bytes in paths and names --------------------------------------------------------------


@pytest.mark.parametrize("line, key", [
    ('name = "a\\u0000b"', "name"),
    ('[output]\nmodel = "m\\u0000.json"', "[output] model"),
    ('[output]\npredictions = "p\\u0000.csv"', "[output] predictions"),
    ('[output]\nreport = "r\\u0000.html"', "[output] report"),
])
def test_nul_in_an_experiment_is_one_line_naming_the_key(log, tmp_path, capsys, line, key):
    spec = tmp_path / "spec.toml"
    data = '[data]\nsource = "log.csv"\namount_col = "amount"\n'
    spec.write_text(f"{line}\n{data}" if line.startswith("name") else f"{data}{line}\n", encoding="utf-8")
    assert main(["run", "--experiment", str(spec)]) == 2
    text = _error(capsys)
    assert f"{spec}: {key} = " in text and "NUL byte" in text and "\\x00" in text
    assert _files(tmp_path) == ["log.csv", "spec.toml"]


def test_nul_in_a_path_option_is_one_line_naming_the_option(log, model_file, rfm_csv, tmp_path, capsys):
    cases = [
        (["fit", "-t", str(log) + "\x00x", *AMOUNT], "-t: the value contains a NUL byte: "),
        (["fit", "-t", str(log), *AMOUNT, "--predictions", "p\x00.csv"], "--predictions: the value contains a NUL"),
        (["score", "--model=m\x00.json", "--input", str(rfm_csv), "--output", "s.csv"], "--model: the value"),
        (["run", "--experiment", "spec\x00.toml"], "--experiment: the value contains a NUL byte"),
    ]
    for args, text in cases:
        assert main(args) == 2
        assert text in _error(capsys)
    assert sorted(_files(tmp_path)) == ["log.csv", "rfm.csv"]


def test_nul_in_paths_given_to_the_python_api(log, model_file, rfm_csv, tmp_path):
    from clv_forecast.experiment import load_spec, run, spec_from_options
    from clv_forecast.scoring import score_file

    with pytest.raises(ClvInputError, match="^predictions: the path contains a NUL byte"):
        run(spec_from_options(transactions=str(log), amount_col="amount", predictions="p\x00.csv"))
    with pytest.raises(ClvInputError, match="^model: the path contains a NUL byte"):
        score_file("m\x00.json", rfm_csv, tmp_path / "s.csv")
    with pytest.raises(ClvInputError, match="path contains a NUL byte"):
        load_spec("spec\x00.toml")
    assert sorted(_files(tmp_path)) == ["log.csv", "rfm.csv"]


# -- 6. a truncated or corrupt .csv.gz ------------------------------------------------------------


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
@pytest.mark.parametrize("options", [[], ["--date-format", "%Y-%m-%d"], ["--encoding", "latin-1"]])
def test_broken_gzip_is_named_exit_2(cdnow_csv, model_file, tmp_path, capsys, damage, options):
    import gzip

    raw = gzip.compress(cdnow_csv.read_bytes())
    if damage == "truncated":
        raw = raw[: len(raw) // 2]
    else:
        middle = len(raw) // 2
        raw = raw[:middle] + bytes(64) + raw[middle + 64:]
    path = tmp_path / "log.csv.gz"
    path.write_bytes(raw)
    for args in (["fit", "-t", str(path), *AMOUNT, *options, "--output", str(tmp_path / "m.json")],
                 ["score", "--model", str(model_file), "-t", str(path), *AMOUNT, *options,
                  "--output", str(tmp_path / "s.csv")]):
        assert main(args) == 2
        line = _error(capsys)
        assert f"{path}: truncated or corrupt gzip file" in line, line
    assert _files(tmp_path) == ["log.csv.gz"]


# -- 7. a full disk names the file ----------------------------------------------------------------


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_disk_full_names_the_file_fit(log, tmp_path, monkeypatch, capsys):
    import pandas as pd

    def half_then_full(self, path, *args, **kwargs):
        Path(path).write_text("customer_id,frequency\n1,")  # part of the file, then the disk is full
        _enospc()

    monkeypatch.setattr(pd.DataFrame, "to_csv", half_then_full)
    target = tmp_path / "out" / "customers.csv"
    assert main(["fit", "-t", str(log), *AMOUNT, "--predictions", str(target)]) == 2
    line = _error(capsys)
    assert f"{target}: cannot write the file: No space left on device (ENOSPC)" in line
    assert _files(tmp_path / "out") == []  # nothing half-written, no temporary file


def test_disk_full_names_the_files_score(rfm_csv, model_file, tmp_path, monkeypatch, capsys):
    import clv_forecast.scoring as scoring

    class Full:
        def __init__(self, *args, **kwargs):
            pass

        write_table = close = staticmethod(_enospc)

    real = scoring._writer
    monkeypatch.setattr(scoring, "_writer", lambda path, kind, *args: Full() if kind == "csv" else real(path, kind,
                                                                                                           *args))
    out = tmp_path / "out" / "s.csv"
    assert main(["score", "--model", str(model_file), "--input", str(rfm_csv), "--output", str(out)]) == 2
    line = _error(capsys)
    assert str(out) in line and "No space left on device" in line
    assert _files(tmp_path / "out") == []


def test_read_only_folder_names_the_file(log, tmp_path, monkeypatch, capsys):
    import clv_forecast._io as io_module

    real_replace = os.replace

    def read_only(src, dst):
        if str(dst).endswith("m.json"):
            raise OSError(errno.EROFS, "Read-only file system")
        return real_replace(src, dst)

    monkeypatch.setattr(io_module.os, "replace", read_only)
    target = tmp_path / "m.json"
    assert main(["fit", "-t", str(log), *AMOUNT, "--output", str(target)]) == 2
    assert f"{target}: cannot write the file: Read-only file system (EROFS)" in _error(capsys)
    assert _files(tmp_path) == ["log.csv"]


@pytest.mark.skipif(os.geteuid() != 0 or not sys.platform.startswith("linux"), reason="mounting a tmpfs needs root")
def test_a_really_full_disk(log, tmp_path, capsys):
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        for name in ("p.csv", "p.parquet"):
            assert main(["fit", "-t", str(log), *AMOUNT, "--predictions", str(mount / name)]) == 2
            assert f"{mount / name}: cannot write the file: No space left on device" in _error(capsys)
        assert _files(mount) == []
    finally:
        subprocess.run(["umount", str(mount)], check=False)

"""The plain install (``pip install .``) has mlflow-skinny, not the full MLflow server stack, and no pyspark.

The default path of a user, a tracked run to MLflow's default local store and the logged model loaded back and
used, must work without the packages only the ``[server]`` extra (the full ``mlflow``) or ``[spark]`` bring, and
no module of this package may ask for them. The test environment has them all (``[dev]``), so each check runs in
a fresh interpreter in which they are made absent, as on a plain install: an import of one fails there, and the
importing module is noted (MLflow's own optional look-ups, e.g. ``mlflow.types.schema`` trying pyspark, are fine).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import clv_forecast

#: Top-level modules that only the full ``mlflow`` (the ``[server]`` extra) brings: its tracking server and UI
#: (Flask, Gunicorn, GraphQL), its job queue, Docker image builds and the scikit-learn flavour.
SERVER_STACK = ("flask", "flask_cors", "werkzeug", "gunicorn", "graphene", "graphql", "huey", "docker", "aiohttp",
                "sklearn", "skops")
#: MLflow's own modules that import that stack.
SERVER_MLFLOW = ("mlflow.server",)
#: Not in a plain install either: the ``[spark]`` extra.
SPARK = ("pyspark", "py4j")

PACKAGE = Path(clv_forecast.__file__).parent

#: Run first in each probe: the packages above become absent; ``_ABSENT.asked`` lists the modules that tried them.
ABSENT = f"""
import sys

class _Absent:
    names = {SERVER_STACK + SPARK!r}
    asked = []

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] not in self.names:
            return None
        frame = sys._getframe(1)
        while frame is not None and frame.f_globals.get("__name__", "").startswith(("importlib", "_frozen")):
            frame = frame.f_back
        self.asked.append((frame.f_globals.get("__name__") if frame is not None else "?", name))
        raise ModuleNotFoundError(f"No module named {{name!r}} (absent in this probe)", name=name)

_ABSENT = _Absent()
sys.meta_path.insert(0, _ABSENT)
for _name in list(sys.modules):
    if _name.split(".")[0] in _Absent.names:
        del sys.modules[_name]
"""
#: Run last: prints, as JSON, the modules of this package that asked for an absent package, and what.
ASKED_BY_US = ("import json\n"
               "print(json.dumps(sorted({a for a in _ABSENT.asked if a[0].startswith('clv_forecast')})))\n")


def _probe(code: str, cwd: Path) -> list[str]:
    """Run ``code`` in a fresh interpreter without the absent packages, no tracking settings, in ``cwd``;
    its output lines, the last one the JSON list of what this package's modules asked for."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_") and k != "CLV_FORECAST_TRACKING"}
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", ABSENT + code + "\n" + ASKED_BY_US],
                         capture_output=True, text=True, cwd=cwd, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip().splitlines()


def test_the_probe_makes_the_packages_absent_and_names_who_asked(tmp_path):
    """The check itself: pyspark is installed here, yet fails to import in the probe, and the asking module
    (here code run as a module of this package) is named."""
    code = ("try:\n    exec('import pyspark.sql', {'__name__': 'clv_forecast.example'})\n"
            "except ModuleNotFoundError as exc:\n    print('absent', exc.name)\n")
    lines = _probe(code, tmp_path)
    assert lines[0] == "absent pyspark" and json.loads(lines[-1]) == [["clv_forecast.example", "pyspark"]]


def test_every_module_of_the_package_imports_without_the_server_stack_or_spark(tmp_path):
    code = ("import importlib, pkgutil\nimport clv_forecast\n"
            "for info in pkgutil.walk_packages(clv_forecast.__path__, 'clv_forecast.'):\n"
            "    importlib.import_module(info.name)\n")
    assert json.loads(_probe(code, tmp_path)[-1]) == []


def test_no_source_file_imports_the_server_stack():
    """Imports inside functions too (the run-time paths no other test may take): none names the stack."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            for name in names:
                if any(name == bad or name.startswith(bad + ".") for bad in SERVER_STACK + SERVER_MLFLOW):
                    found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {name}")
    assert found == []


def test_a_tracked_fit_and_its_model_need_neither_the_server_stack_nor_spark(tmp_path, cdnow_csv):
    """``fit`` tracked to MLflow's default store (no URI given: ``mlflow.db`` in the working directory, as
    ``clv-forecast run`` does), then the logged model loaded with ``mlflow.pyfunc.load_model``: it predicts what
    the saved model file predicts (the signature's columns are doubles: ``frequency`` given as such)."""
    code = f"""
import contextlib, io, json
from clv_forecast.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    rc = main(["fit", "--transactions", {str(cdnow_csv)!r}, "--amount-col", "amount",
               "--calibration-end", "1997-09-30", "--output", "model.json", "--json"])
assert rc == 0, rc
tracked = json.loads(out.getvalue())["mlflow"]
import mlflow, mlflow.pyfunc, numpy as np, pandas as pd
from mlflow.tracking import MlflowClient
from clv_forecast.model import ClvModel
run = MlflowClient().get_run(tracked["run_id"])
rfm = pd.DataFrame({{"frequency": [2.0, 0.0, 7.0], "recency": [5.0, 0.0, 30.0], "T": [10.0, 12.0, 38.0],
                    "monetary_value": [20.0, 0.0, 55.0]}})
got = mlflow.pyfunc.load_model(f"runs:/{{tracked['run_id']}}/model").predict(rfm, params={{"horizon": "12M"}})
rfm.attrs["time_unit"] = "W"
want = ClvModel.load("model.json").predict(rfm, horizon="12M")
print(json.dumps({{"uri": mlflow.get_tracking_uri(), "status": run.info.status,
                  "version": run.data.params["version.mlflow"], "mlflow": mlflow.__version__,
                  "diff": max(float(np.max(np.abs(got[c].to_numpy() - want[c].to_numpy())))
                              for c in ("expected_purchases", "p_alive")),
                  "p_alive": [float(v) for v in got["p_alive"]]}}))
"""
    *_, result, asked = _probe(code, tmp_path)
    result = json.loads(result)
    assert (tmp_path / "mlflow.db").is_file() and result["uri"] == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert result["status"] == "FINISHED" and result["version"] == result["mlflow"]
    assert result["diff"] <= 1e-12 and all(0 < p <= 1 for p in result["p_alive"])
    assert json.loads(asked) == []


def test_mlflows_version_is_recorded_when_only_mlflow_skinny_provides_it(monkeypatch):
    """The plain install has the distribution ``mlflow-skinny`` and no ``mlflow``: runs still record its version."""
    import importlib.metadata as metadata

    from clv_forecast import tracking

    real = metadata.version

    def skinny_only(name):
        if name == "mlflow":
            raise metadata.PackageNotFoundError(name)
        return "9.8.7" if name == "mlflow-skinny" else real(name)

    monkeypatch.setattr(metadata, "version", skinny_only)
    versions = tracking._versions()
    assert versions["mlflow"] == "9.8.7"
    assert "mlflow==9.8.7" in tracking._requirements()

    def neither(name):
        if name in ("mlflow", "mlflow-skinny"):
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(metadata, "version", neither)
    assert tracking._versions()["mlflow"] == "not installed"
    assert not any(r.startswith("mlflow") for r in tracking._requirements())


@pytest.mark.parametrize("extra, wanted", [("server", "mlflow"), ("spark", "pyspark")])
def test_the_heavy_packages_are_extras_not_dependencies(extra, wanted):
    """pyproject.toml: the plain dependencies name mlflow-skinny, the extras the rest, and [dev] has them all."""
    import re
    import tomllib

    project = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text(encoding="utf-8"))["project"]

    def names(requirements):
        return {re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0].lower() for r in requirements}

    extras = project["optional-dependencies"]
    assert "mlflow-skinny" in names(project["dependencies"]) and wanted not in names(project["dependencies"])
    assert wanted in names(extras[extra])
    assert extra in re.search(r"clv-forecast\[([^\]]*)\]", " ".join(extras["dev"])).group(1).split(",")


def test_the_readme_commands_and_ci_install_the_same_way():
    """The README's first command installs no extra and runs the main job; its second installs ``[dev]`` and runs
    the test command; ``.ci/run`` installs ``[dev]`` from the project's files and runs that same command."""
    import re

    readme = (PACKAGE.parent / "README.md").read_text(encoding="utf-8")
    first, second = re.search(r"```bash\n(.*?)\n```", readme, re.S).group(1).splitlines()
    assert re.search(r"pip install -e \. && clv-forecast run$", first) and "[" not in first
    assert second.endswith('pip install -e ".[dev]" && python -m pytest -q')
    ci = (PACKAGE.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(r'^python -m pip install --quiet -e "\.\[dev\]"', ci, re.M)
    assert re.search(r"^[^#]*python -m pytest -q\b", ci, re.M)

"""Structural import checks: what ``import clv_forecast`` and the CLI module load (not timings).

Each check runs in a fresh interpreter, so that modules imported by other tests do not count.
"""

from __future__ import annotations

import json
import subprocess
import sys

from pathlib import Path

import pytest

HEAVY = ("numpy", "pandas", "polars", "scipy", "rich", "pyarrow")


def _loaded_after(code: str) -> list[str]:
    probe = (code + "\nimport json, sys\n"
             f"print(json.dumps(sorted(m for m in {list(HEAVY)!r} if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("code", [
    "import clv_forecast",
    "from clv_forecast.errors import ClvInputError",
    "import clv_forecast.cli",
    "from clv_forecast.cli import app, main",
    "import clv_forecast.datasets",
    "import clv_forecast.units",
])
def test_no_heavy_module_is_imported(code):
    assert _loaded_after(code) == []


def test_help_imports_nothing_heavy():
    code = ("import sys\nfrom clv_forecast.cli import main\n"
            "sys.stdout = open('/dev/null', 'w')\nrc = main(['--help'])\nsys.stdout = sys.__stdout__\n"
            "assert rc == 0, rc")
    assert _loaded_after(code) == []


def test_public_names_resolve_lazily():
    import clv_forecast

    for name in clv_forecast.__all__:
        assert getattr(clv_forecast, name) is not None, name
    assert set(clv_forecast.__all__) <= set(dir(clv_forecast))
    from clv_forecast.rfm import summarize
    from clv_forecast.units import TimeUnit

    assert clv_forecast.summarize is summarize and clv_forecast.TimeUnit is TimeUnit
    with pytest.raises(AttributeError):
        clv_forecast.no_such_name  # noqa: B018


def test_simulate_stays_the_function_after_its_module_is_imported():
    code = ("import clv_forecast\nfrom clv_forecast.simulate import simulate_customers\n"
            "import clv_forecast.simulate\n"
            "from clv_forecast import simulate\n"
            "assert callable(simulate) and simulate.__name__ == 'simulate', simulate\n"
            "assert clv_forecast.simulate is simulate")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_version_comes_from_the_package_metadata():
    from importlib.metadata import version

    import clv_forecast

    assert clv_forecast.__version__ == version("clv-forecast")


# ---- model modules: no heavy scipy submodule that a prediction does not need


MODEL = Path(__file__).parent / "data" / "cdnow_model_v1.json"

SCRIPT = f"""
import sys
import pandas as pd
from clv_forecast.model import ClvModel
model = ClvModel.load({str(MODEL)!r})
rfm = pd.DataFrame({{"frequency": [2, 0], "recency": [5.0, 0.0], "T": [10.0, 12.0], "monetary_value": [20.0, 0.0]}})
rfm.attrs["time_unit"] = "W"
model.predict(rfm)
model.clv(rfm, horizon="12M", interval=0.9, n_draws=20)
model.purchases_.prob_purchases([0, 1, 2], "39W")
print(sorted(m for m in ("scipy.stats", "scipy.optimize") if m in sys.modules))
from clv_forecast.btyd import BetaGeoModel
BetaGeoModel().fit(rfm.assign(frequency=[2, 1], recency=[5.0, 3.0]), time_unit="W")
print(sorted(m for m in ("scipy.stats", "scipy.optimize") if m in sys.modules))
"""


def test_loading_and_predicting_import_neither_scipy_stats_nor_optimize():
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", SCRIPT], capture_output=True, text=True, check=True)
    after_predict, after_fit = out.stdout.strip().splitlines()
    assert after_predict == "[]"
    assert after_fit == "['scipy.optimize']"  # fitting imports the optimiser, and nothing else heavy

"""The model modules import no heavy scipy submodule a prediction does not need (checked in a fresh
interpreter: scipy.stats alone costs over a second to import)."""

import subprocess
import sys
from pathlib import Path

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

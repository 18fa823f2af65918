import pytest

from clv_forecast.datasets import CDNOW_CALIBRATION_END, load_cdnow_sample
from clv_forecast.rfm import summarize


@pytest.fixture(scope="session")
def cdnow_rfm():
    """The CDNOW calibration summary built from the raw sample (weekly units, same-day merge)."""
    return summarize(load_cdnow_sample(), customer_col="customer_id", date_col="date", amount_col="amount",
                     time_unit="W", merge="D", calibration_end=CDNOW_CALIBRATION_END)

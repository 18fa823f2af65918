"""The pyfunc of a purchase (+ spend) model: :class:`clv_forecast.tracking.ClvPyfunc` reading ``clv_model.json``."""

import mlflow.models

from clv_forecast.tracking import ClvPyfunc

mlflow.models.set_model(ClvPyfunc())

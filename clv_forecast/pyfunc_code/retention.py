"""The pyfunc of a retention (sBG) model: :class:`clv_forecast.tracking.RetentionPyfunc` reading its model file."""

import mlflow.models

from clv_forecast.tracking import RetentionPyfunc

mlflow.models.set_model(RetentionPyfunc())

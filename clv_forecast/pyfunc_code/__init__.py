"""The MLflow models of clv-forecast, as code (MLflow's models-from-code).

Each module here is the ``python_model`` file of one logged pyfunc: MLflow copies it into the logged model and
runs it when the model is loaded; it builds the stateless wrapper (:mod:`clv_forecast.tracking`) and hands it to
``mlflow.models.set_model``. The fitted model itself is the JSON model file logged beside it as an artifact, so
nothing is pickled. Not imported by the package: only MLflow runs these files.
"""

"""Retention models for contractual settings (role ``retention``): one module per model, its name the model's
``kind``. The inputs they read (cohort tables, per-customer renewals) are :mod:`._data`'s; :func:`cohorts_from_log`
builds the cohorts of a transaction log."""

from ._data import cohorts_from_log

__all__ = ["cohorts_from_log"]

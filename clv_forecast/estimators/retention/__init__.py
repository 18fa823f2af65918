"""Retention models for contractual settings (role ``retention``): one module per model, its name the model's
``kind``. The inputs they read (cohort tables, per-customer renewals) are :mod:`._data`'s."""

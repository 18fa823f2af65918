"""The engine interface: what the one pipeline (:func:`clv_forecast.experiment.run`) and the scoring
command ask of an engine, and nothing else.

The pipeline is written once over it: open the source -> :meth:`Engine.summarize` -> :meth:`Engine.fit`
(on :meth:`Engine.statistics`, the compressed sufficient statistics, unless the engine fits on the rows)
-> the reliability check -> :meth:`Engine.holdout` -> :meth:`Engine.predict` and
:meth:`Engine.value_coverage` -> the model saved, :meth:`Engine.write_predictions`. What is shared by
every engine stays outside it: the summary's plan, assemble and accounting (:mod:`clv_forecast.rfm`), the
batch verdicts and number parsing of scoring (:mod:`clv_forecast._score_batch`), the per-customer
predictions (:func:`clv_forecast.engines.tables.clv_table`), the holdout metrics.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = ["Engine", "Holdout", "compressed_statistics", "DEFAULT_INPUTS"]

#: the columns the default models read (BG/NBD, Gamma-Gamma): the statistics' grouping without ``inputs``
DEFAULT_INPUTS = {"purchases": ("frequency", "recency", "T"), "spend": ("frequency", "monetary_value")}


def compressed_statistics(count, *, inputs: dict | None, split: bool, has_amount: bool, attrs: dict) -> dict:
    """The layout of :meth:`Engine.statistics`, written once: ``count(columns, repeat_buyers)`` is the
    engine's kernel, the unique rows of ``columns`` (of every customer, or of the repeat buyers only) with
    their ``count``, sorted, as a pandas frame on the driver. ``inputs``: role -> columns (default
    :data:`DEFAULT_INPUTS`); ``split``: the summary has a holdout; ``attrs``: its accounting, set on
    every frame. The spend statistics hold the repeat buyers only: every spend model fits on them
    (``SpendModel._fit_rows``; a test holds every discovered spend model to it)."""
    import numpy as np

    inputs = {**DEFAULT_INPUTS, **(inputs or {})}
    keys = list(inputs["purchases"])
    out = {}
    if split:
        out["holdout"] = count(keys + ["frequency_holdout"], False)
        purchases = out["holdout"].groupby(keys, sort=True, as_index=False)["count"].sum()
        out["purchases"] = purchases.astype({"count": np.int64})
    else:
        out["purchases"] = count(keys, False)
    out["spend"] = count(list(inputs["spend"]), True) if has_amount else None
    for frame in out.values():
        if frame is not None:
            frame.attrs = dict(attrs)
    return out


class Holdout:
    """The holdout check's inputs: ``table`` (``predicted``, ``actual`` and, for compressed rows, ``count``),
    the ``weights`` (customers per row) and the holdout's ``duration`` in the model's time unit."""

    def __init__(self, table, weights, duration: float) -> None:
        self.table, self.weights, self.duration = table, weights, float(duration)


class Engine:
    """One engine. Subclasses set :attr:`name` and implement the methods below; the pipeline calls them in
    the order of the module docstring."""

    #: the engine's name: ``--engine`` and a spec's ``[data] engine`` value
    name: ClassVar[str] = ""
    #: the tables are pandas frames on this machine: the per-customer table is part of the run's result
    #: (computed even when not written) and the report's analysis is possible
    in_memory: ClassVar[bool] = True
    #: the options of ``score`` that only this engine takes (``clv-forecast score`` refuses them with another)
    score_options: ClassVar[tuple[str, ...]] = ()
    #: :meth:`score` reports its progress to a ``progress(done, total)`` callback (a progress bar on a terminal)
    score_progress: ClassVar[bool] = False

    def check(self, spec: dict, *, save: bool, analyse: bool | None) -> None:
        """Refuse, before any work, what this engine cannot do with ``spec`` (one line naming the option)."""

    def open(self, source, data: dict, timings: dict) -> Any:
        """What :meth:`summarize` reads: ``source`` (the transaction log's path, or the bundled sample's
        frame) opened with the spec's [data] settings (``data``); ``timings`` may record the start-up."""
        raise NotImplementedError

    def summarize(self, source, options: dict, *, calibration_end) -> Any:
        """The RFM summary of the opened source with the summary settings ``options`` (the keyword
        arguments of :func:`clv_forecast.rfm.summarize`), to ``calibration_end`` (None: no split); its
        ``attrs`` hold the row accounting."""
        raise NotImplementedError

    def statistics(self, summary, inputs: dict | None = None) -> dict:
        """The compressed sufficient statistics on the driver (pandas frames with ``count``): per role the
        unique rows of the columns its model reads (``inputs``: role -> columns, :meth:`ClvModel.inputs`;
        ``"spend"`` the repeat buyers' rows, None without amounts) and, with a calibration split,
        ``"holdout"`` (the purchase inputs and ``frequency_holdout``)."""
        raise NotImplementedError

    def cached_statistics(self, summary, inputs: dict | None = None) -> dict:
        """:meth:`statistics`, computed once per summary and inputs (the fit and the holdout check share them)."""
        key = (id(summary), tuple(sorted((inputs or {}).items())))
        cache = self.__dict__.setdefault("_statistics", {})
        if cache.get("key") != key:
            cache.clear()
            cache.update(key=key, value=self.statistics(summary, inputs))
        return cache["value"]

    def fit(self, model, summary):
        """``model`` fitted on the summary: by default on its :meth:`statistics` (the same likelihoods as on
        every customer, :meth:`ClvModel.fit_statistics`)."""
        stats = self.cached_statistics(summary, model.inputs())
        split = "holdout" in stats  # (ranks the candidates of purchases="auto" by their holdout error)
        return model.fit_statistics(stats["purchases"], stats.get("spend"), time_unit=self.time_unit(summary),
                                    training=dict(summary.attrs), holdout=stats["holdout"] if split else None,
                                    holdout_duration=self.holdout_duration(summary) if split else None)

    def time_unit(self, summary) -> str:
        """The summary's time unit."""
        return str(summary.attrs["time_unit"])

    def holdout(self, model, summary) -> Holdout | None:
        """The holdout check's predictions against the actual holdout purchases (None without a split): by
        default from the ``"holdout"`` statistics."""
        import pandas as pd

        stats = self.cached_statistics(summary, model.inputs())
        if "holdout" not in stats:
            return None
        h = stats["holdout"]
        duration = self.holdout_duration(summary)
        predicted = model.purchases_.conditional_expected_purchases(duration, h)
        table = pd.DataFrame({"predicted": predicted, "actual": h["frequency_holdout"].to_numpy(),
                              "count": h["count"].to_numpy()})
        return Holdout(table, table["count"], duration)

    def holdout_duration(self, summary) -> float:
        """The holdout period's length in the time unit."""
        raise NotImplementedError

    def predict(self, model, summary, value: dict) -> Any:
        """The per-customer table: the summary's columns, then the predictions and CLV of
        :func:`clv_forecast.engines.tables.clv_table` with the spec's [value] settings."""
        raise NotImplementedError

    def value_coverage(self, table) -> dict:
        """:func:`clv_forecast.engines.tables.value_coverage` of a per-customer table ({} without CLV)."""
        raise NotImplementedError

    def check_predictions_path(self, path) -> None:
        """Refuse, before any work, a per-customer table path this engine cannot write (one line): by
        default a CSV or Parquet file in a writable place."""
        from pathlib import Path

        from .._paths import check_writable
        from ..errors import ClvInputError

        path = Path(path)
        if not path.name.lower().endswith((".csv", ".csv.gz", ".txt", ".parquet", ".pq")):
            raise ClvInputError(f"{path}: unknown type for the per-customer table; use .csv, .csv.gz or .parquet",
                                argument="predictions")
        check_writable(path, "the per-customer table", "customers.parquet")

    def write_predictions(self, table, path, spec: dict, model) -> tuple[Any, int]:
        """Write the per-customer table (atomically); returns the path written and how many CSV cells the
        spreadsheet formula guard changed."""
        raise NotImplementedError

    def score(self, model, input_path, output_path, **options):
        """Score an RFM table (or, with ``transactions`` and its reading options ``read``, a log) into
        ``output_path``: a :class:`~clv_forecast.scoring.ScoreReport`. ``options``: the value settings and
        batch verdict settings every engine takes (horizon, discount_rate, step, margin, interval,
        rejects_path, max_reject_share, allow_unreliable; ``id_col`` and ``time_unit`` of an RFM table), and
        this engine's :attr:`score_options`."""
        raise NotImplementedError

    def score_retention(self, model, input_path, output_path, **options):
        """Score a table of customers (an id, ``renewals``, optionally ``churned``) with a retention model into
        ``output_path``: a :class:`~clv_forecast.estimators.retention._scoring.RetentionScoreReport`.
        ``options``: discount_rate, margin, id_col, rejects_path, max_reject_share, allow_unreliable, model_file
        and this engine's :attr:`score_options`. By default refused (one line): an engine says it can."""
        from ..errors import ClvInputError

        raise ClvInputError(f"the {self.name} engine cannot score a retention model; use {{{{engine='local'}}}}")

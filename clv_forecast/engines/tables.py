"""The per-customer table's columns, written once for every engine: the predictions and CLV of a model on
an RFM table (:func:`clv_table`, applied to the whole table on one machine and to each partition on
Spark), what its CLV total covers (:func:`value_coverage`) and its Parquet metadata
(:func:`table_metadata`). No engine and no pipeline is imported here."""

from __future__ import annotations

__all__ = ["SCORE_COLUMNS", "clv_table", "value_coverage", "table_metadata"]

#: the per-customer prediction columns whose non-finite values are counted (:func:`value_coverage`)
SCORE_COLUMNS = ("expected_purchases", "p_alive", "expected_spend", "clv",
                 *(f"{q}_{side}" for q in ("expected_purchases", "p_alive", "expected_spend", "clv")
                   for side in ("lower", "upper")))  # (clv_forecast.uncertainty.INTERVAL_COLUMNS)


def clv_table(model, rfm, value: dict, portfolio=None):
    """Per-customer predictions over the horizon and the discounted CLV (with its interval if asked; ``portfolio``:
    a :class:`clv_forecast.uncertainty.Portfolio` to add the customers to)."""
    kwargs = dict(horizon=value["horizon"], discount_rate=value["discount_rate"], step=value["step"],
                  margin=float(value["margin"]))
    if model.spend_ is None:
        return model.predict(rfm, horizon=value["horizon"])
    return model.clv(rfm, interval=value["interval"] or None, interval_method=value.get("interval_method") or "delta",
                     portfolio=portfolio, **kwargs)


def band_metrics(portfolio: dict | None) -> dict:
    """The run metrics of the band of the totals (:meth:`clv_forecast.uncertainty.Portfolio.band`; {} without one):
    ``clv_total_lower/_upper``, ``expected_purchases_total[_lower/_upper]``, ``band_level``, ``band_method``."""
    band = {}
    if portfolio:  # the band of the totals from the parameters' uncertainty (clv_forecast.uncertainty)
        for q, key in (("clv", "clv_total"), ("expected_purchases", "expected_purchases_total")):
            band[f"{key}_lower"], band[f"{key}_upper"] = portfolio[q]["lower"], portfolio[q]["upper"]
        band["expected_purchases_total"] = portfolio["expected_purchases"]["total"]
        band["band_level"] = portfolio["level"]
        band["band_method"] = portfolio.get("method", "delta")
    return band


def value_coverage(table) -> dict:
    """How many customers a CLV total covers and why the others have no value; no NaN or infinity in the
    per-customer table goes uncounted: ``clv_missing_other`` counts the CLVs missing for another reason
    than the spend model's two, ``scores_nonfinite`` the customers with a finite CLV but another
    prediction column (an interval bound, say) that is not finite."""
    import numpy as np

    clv = table["clv"].to_numpy(dtype=float)
    finite = np.isfinite(clv)
    spend = table["expected_spend"].to_numpy(dtype=float) if "expected_spend" in table else clv
    nan_spend, inf_spend = np.isnan(spend), np.isinf(spend)
    others = np.zeros(len(clv), dtype=bool)
    for name in SCORE_COLUMNS:
        if name in table and name != "clv":
            others |= ~np.isfinite(table[name].to_numpy(dtype=float))
    band = band_metrics(getattr(table, "attrs", {}).get("portfolio"))
    return {
        **band,
        "clv_total": float(clv[finite].sum()),
        "clv_customers": int(finite.sum()),
        "clv_missing": int((~finite).sum()),
        "clv_missing_nonpositive_spend": int(nan_spend.sum()),
        "clv_missing_infinite_spend": int(inf_spend.sum()),
        "clv_missing_other": int((~finite & ~nan_spend & ~inf_spend).sum()),
        "scores_nonfinite": int((finite & others).sum()),
    }


def table_metadata(spec: dict, time_unit) -> dict[bytes, bytes]:
    """The Parquet key-value metadata of a run's per-customer table: ``clv_forecast.horizon``,
    ``.discount_rate``, ``.step``, ``.margin``, ``.interval`` (the CLV settings, defaults filled in) and
    ``.time_unit`` (of recency, T and the model)."""
    from ..units import parquet_metadata, value_settings_of

    return parquet_metadata(value_settings_of(spec.get("value")), time_unit=time_unit)

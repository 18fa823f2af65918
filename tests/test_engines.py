"""The engine interface (clv_forecast.engines) and the one batch rule set of scoring.

The verdicts, number parsing and scores of a batch are one function (clv_forecast._score_batch) that the
local streaming scorer and the Spark scorer both call.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# -- the one batch rule set -------------------------------------------------------------------------


def test_one_batch_rule_set_for_arrow_and_pandas_columns():
    """The verdicts and number parsing of a batch are one function: an Arrow batch (the local scorer) and
    the same rows as pandas columns (Spark's mapInPandas) get the same reasons, in the same precedence."""
    import pyarrow as pa

    from clv_forecast._score_batch import batch_verdicts

    text = {"frequency": ["1", " 2 ", "x", "nan", None, "3", "1"],
            "recency": ["1", "2", "1", "1", "1", "4", "oops"],
            "T": ["2", "3", "3", "3", "3", "2", "3"],
            "monetary_value": ["5", "5", "5", "5", "5", "5", "5"]}
    present = np.array([True, True, True, True, True, True, False])
    duplicate = np.array([False, True, False, False, False, False, True])
    arrow = {k: pa.array(v, pa.string()) for k, v in text.items()}
    frames = {k: pd.Series(v, dtype=object) for k, v in text.items()}
    va, ra = batch_verdicts(arrow, 7, present=present, duplicate=duplicate)
    vb, rb = batch_verdicts(frames, 7, present=present, duplicate=duplicate)
    assert list(ra) == list(rb)
    assert ra[0] == "" and ra[1] == "duplicate id" and ra[2] == "frequency not numeric"
    assert ra[5] != "" and "not numeric" not in ra[5]  # an RFM rule (recency > T)
    assert ra[6] == "missing id"  # missing beats duplicate and not numeric
    for name in va:
        np.testing.assert_array_equal(va[name], vb[name])

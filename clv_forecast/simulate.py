r"""Simulate transaction logs from the BG/NBD + Gamma-Gamma model (vectorised).

Generative model
----------------
Time is measured in ``time_unit`` (default weeks) from ``start``. For customer
:math:`i = 0, \dots, n-1`:

.. math::

    b_i &\sim \mathrm{Uniform}[0, C)                     && \text{birth = first purchase; } C = \text{cohort\_length} \\
    \lambda_i &\sim \mathrm{Gamma}(r, \text{rate } \alpha)  && \text{purchase rate per time unit} \\
    p_i &\sim \mathrm{Beta}(a, b)                           && \text{dropout probability} \\
    \text{repeat purchases} &\sim \text{Poisson process}(\lambda_i) \text{ on } (b_i, \tau_i] \\
    P(\text{drop out right after each repeat purchase}) &= p_i  && \text{no dropout at birth} \\
    \nu_i &\sim \mathrm{Gamma}(q, \text{rate } v) \\
    z_{ij} &\sim \mathrm{Gamma}(p, \text{rate } \nu_i)        && \text{value of every transaction, first included}

observed up to :math:`E` = ``end``. The customer's window is :math:`T_i = E - b_i`. BG/NBD is
Fader, Hardie & Lee (2005), "Counting Your Customers the Easy Way: An Alternative to the
Pareto/NBD Model", *Marketing Science* 24(2); the spend model is Fader, Hardie & Lee (2005),
"RFM and CLV: Using Iso-Value Curves for Customer Base Analysis", *JMR* 42(4), after Colombo &
Jiang (1999), "A stochastic RFM model", *J. Interactive Marketing* 13(3). Hence

.. math::

    E[X(t)] = \frac{a+b-1}{a-1}\Bigl[1 - \bigl(\tfrac{\alpha}{\alpha+t}\bigr)^r
              {}_2F_1\bigl(r, b; a+b-1; \tfrac{t}{\alpha+t}\bigr)\Bigr], \qquad
    P(X(t)=0) = \bigl(\tfrac{\alpha}{\alpha+t}\bigr)^r, \qquad
    E[z] = \frac{p\,v}{q-1}.

Construction (no per-customer loop)
-----------------------------------
:math:`K_i \sim \mathrm{Geometric}(p_i)` on :math:`\{1, 2, \dots\}` is the number of repeat
purchases up to and including the one after which the customer drops out;
:math:`N_i \sim \mathrm{Poisson}(\lambda_i T_i)` is the number of arrivals of the uninterrupted
process in :math:`(0, T_i)`. The customer makes :math:`m_i = \min(K_i, N_i)` repeat purchases and
is alive at ``end`` iff :math:`K_i > N_i`. Given :math:`N_i` the arrivals are sorted uniforms on
:math:`(0, T_i)`, i.e. normalised exponential spacings, so the first :math:`m_i` of them are

.. math::

    t_{ik} = T_i \frac{E_1 + \dots + E_k}{E_1 + \dots + E_{m_i} + G_i}, \quad
    E_j \sim \mathrm{Exp}(1), \quad G_i \sim \mathrm{Gamma}(N_i + 1 - m_i, 1).

Memory and time are proportional to the number of transactions.
"""

from __future__ import annotations

import datetime as _dt
import math
import numbers

import numpy as np
import pandas as pd

from .errors import ClvInputError
from .units import Duration, TimeUnit

__all__ = ["simulate", "simulate_customers"]

#: Above this mean count, ``N ~ Poisson(mu)`` is drawn as a rounded normal (numpy's Poisson
#: sampler rejects means near 2**63; the normal error is far below Monte-Carlo noise there).
_POISSON_NORMAL_ABOVE = 1e12
#: Refuse to build logs larger than this many rows (they could not be held in memory anyway,
#: and it keeps every count exactly representable as int64 / float64).
_MAX_ROWS = 2**40


# ----------------------------------------------------------------------------- validation


def _positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ClvInputError(f"simulate: {name}={value!r} must be a positive finite number")
    x = float(value)
    if not (math.isfinite(x) and x > 0):
        raise ClvInputError(f"simulate: {name}={value!r} must be a positive finite number")
    return x


def _n_customers(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 1:
        raise ClvInputError(f"simulate: n_customers={value!r} must be an integer >= 1")
    return int(value)


def _timestamp(name: str, value: object) -> pd.Timestamp:
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError) as exc:
        raise ClvInputError(f"simulate: {name}={value!r} is not a date or timestamp ({exc})") from None
    if ts is pd.NaT or pd.isna(ts):
        raise ClvInputError(f"simulate: {name}={value!r} is not a date or timestamp")
    if ts.tzinfo is not None:
        raise ClvInputError(f"simulate: {name}={value!r} must be time-zone naive")
    return ts


def _duration_days(name: str, value: object) -> float:
    if isinstance(value, (_dt.timedelta, np.timedelta64)) and not isinstance(value, bool):
        days = pd.Timedelta(value).total_seconds() / 86400.0
        if not days >= 0:
            raise ClvInputError(f"simulate: {name}={value!r} must not be negative")
        return days
    try:
        return Duration.parse(value).days  # type: ignore[arg-type]
    except ClvInputError as exc:
        raise ClvInputError(f"simulate: {name}: {exc}") from None


def _resolution_ns(value: object) -> int:
    try:
        ns = round(TimeUnit.parse(value).days * 86_400e9)
    except ClvInputError as exc:
        raise ClvInputError(
            f"simulate: timestamp_resolution={value!r} not understood ({exc}); use e.g. 's', 'ms', 'us', 'ns', 'min', 'D'"
        ) from None
    if ns <= 0:
        raise ClvInputError(f"simulate: timestamp_resolution={value!r} must be at least one nanosecond")
    return int(ns)


class _Setup:
    """Validated arguments, with times in model units measured from ``start``."""

    def __init__(self, n_customers, r, alpha, a, b, p, q, v, time_unit, start, cohort_length, end,
                 seed, timestamp_resolution):
        self.n = _n_customers(n_customers)
        self.r = _positive("r", r)
        self.alpha = _positive("alpha", alpha)
        self.a = _positive("a", a)
        self.b = _positive("b", b)
        spend = {"p": p, "q": q, "v": v}
        given = [k for k, x in spend.items() if x is not None]
        if given and len(given) < 3:
            missing = ", ".join(k for k in spend if k not in given)
            raise ClvInputError(f"simulate: spend needs all of p, q, v; missing {missing}")
        self.spend = bool(given)
        if self.spend:
            self.p, self.q, self.v = (_positive(k, x) for k, x in spend.items())
        try:
            self.unit = TimeUnit.parse(time_unit)
        except ClvInputError as exc:
            raise ClvInputError(f"simulate: {exc}") from None
        self.start = _timestamp("start", start)
        self.end = _timestamp("end", end)
        cohort_days = _duration_days("cohort_length", cohort_length)
        cohort_end = self.start + pd.Timedelta(days=cohort_days)
        if not self.end > cohort_end:
            raise ClvInputError(
                f"simulate: end={self.end} must be after start + cohort_length = {cohort_end}"
            )
        unit_days = self.unit.days
        self.cohort = cohort_days / unit_days  # in model units
        self.horizon = (self.end - self.start).total_seconds() / 86400.0 / unit_days
        res_ns = _resolution_ns(timestamp_resolution)
        # Store microseconds unless the resolution needs nanoseconds.
        self.store = "us" if res_ns % 1000 == 0 else "ns"
        store_ns = 1000 if self.store == "us" else 1
        self.step = res_ns // store_ns  # resolution in storage ticks
        try:
            self.start_ticks = int(np.int64(self.start.as_unit(self.store).to_datetime64().astype(np.int64)))
            self.end_ticks = int(np.int64(self.end.as_unit(self.store).to_datetime64().astype(np.int64)))
        except (OverflowError, ValueError) as exc:
            raise ClvInputError(f"simulate: start/end out of range for datetime64[{self.store}] ({exc})") from None
        self.ticks_per_unit = unit_days * 86400e9 / store_ns
        # Independent streams: purchases, purchase times, spend. Adding spend parameters does not
        # change the timestamps drawn for the same seed, and simulate_customers matches simulate.
        try:
            root = np.random.default_rng(seed)
        except (TypeError, ValueError) as exc:
            raise ClvInputError(f"simulate: seed={seed!r} is not a valid seed ({exc})") from None
        self.rng_purchase, self.rng_times, self.rng_spend = root.spawn(3)

    def to_ticks(self, x: np.ndarray) -> np.ndarray:
        """Model-unit offsets from ``start`` -> int64 storage ticks rounded to the resolution."""
        step = self.step
        base, rem = divmod(self.start_ticks, step)
        k = np.rint((x * self.ticks_per_unit + rem) / step)
        lo = -(-self.start_ticks // step) - base  # first resolution point >= start
        hi = self.end_ticks // step - base  # last resolution point <= end
        np.clip(k, lo, hi, out=k)
        out = k.astype(np.int64)
        out += base
        if step != 1:
            out *= step
        return out


# ----------------------------------------------------------------------------- latent draws


def _latent(s: _Setup) -> dict[str, np.ndarray]:
    """Per-customer draws: birth, lambda, p_i, K_i, N_i, repeat count m_i, alive flag."""
    g, n = s.rng_purchase, s.n
    birth = g.random(n) * s.cohort
    lam = g.gamma(s.r, 1.0 / s.alpha, n)
    drop = g.beta(s.a, s.b, n)
    window = s.horizon - birth  # T_i > 0 because end > start + cohort_length
    # K ~ Geometric(p) on {1, 2, ...} by inversion, as float: p -> 0 gives K -> inf, no overflow.
    u = 1.0 - g.random(n)  # (0, 1]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        k = np.ceil(np.log(u) / np.log1p(-drop))
    k[~(k >= 1.0)] = 1.0  # u == 1, or p == 1 (log1p(-1) = -inf)
    mu = lam * window
    if not np.all(np.isfinite(mu)):
        raise ClvInputError("simulate: lambda * T overflowed; alpha is too small for r")
    big = mu > _POISSON_NORMAL_ABOVE
    n_arr = g.poisson(np.where(big, 0.0, mu)).astype(np.float64)
    if big.any():
        mb = mu[big]
        n_arr[big] = np.maximum(np.rint(mb + np.sqrt(mb) * g.standard_normal(mb.size)), 0.0)
    m = np.minimum(k, n_arr)
    total = float(m.sum()) + n
    if total > _MAX_ROWS:
        raise ClvInputError(
            f"simulate: the parameters would generate about {total:.3g} transactions (limit {_MAX_ROWS:.3g}); "
            "lower lambda (r / alpha) or raise dropout"
        )
    return {
        "birth": birth,
        "lambda": lam,
        "dropout": drop,
        "T": window,
        "N": n_arr,
        "m": m.astype(np.int64),
        "alive": k > n_arr,
    }


# ----------------------------------------------------------------------------- public API


def simulate(
    n_customers: int,
    *,
    r: float,
    alpha: float,
    a: float,
    b: float,
    p: float | None = None,
    q: float | None = None,
    v: float | None = None,
    time_unit: str | TimeUnit = "W",
    start: object = "2020-01-01",
    cohort_length: str | Duration = "12W",
    end: object = "2021-12-31",
    seed: object = None,
    timestamp_resolution: str = "s",
) -> pd.DataFrame:
    """Draw a transaction log from BG/NBD (+ Gamma-Gamma spend when ``p, q, v`` are given).

    ``r, alpha`` (lambda ~ Gamma(r, rate alpha), per ``time_unit``) and ``a, b`` (p ~ Beta(a, b))
    are the BG/NBD parameters; ``p, q, v`` the Gamma-Gamma ones. Customers are born uniformly in
    ``[start, start + cohort_length)`` (``cohort_length`` with a unit, e.g. ``"12W"``, ``"90D"``,
    ``"0D"`` for one common birth time) and observed until ``end``; see the module docstring for
    the model. ``seed`` is anything :func:`numpy.random.default_rng` accepts.

    Returns a DataFrame sorted by customer then time with ``customer_id`` (int64, 0..n-1),
    ``timestamp`` (``datetime64[us]``, or ``[ns]`` for sub-microsecond resolutions; rounded to
    ``timestamp_resolution`` and clipped to ``[start, end]``) and, with spend, ``amount``
    (float64). Each customer's first row is the birth purchase.
    """
    s = _Setup(n_customers, r, alpha, a, b, p, q, v, time_unit, start, cohort_length, end,
               seed, timestamp_resolution)
    lat = _latent(s)
    n, m = s.n, lat["m"]
    rows = m + 1
    n_rows = int(rows.sum())
    n_rep = n_rows - n
    ids = np.arange(n, dtype=np.int64)
    customer_id = np.repeat(ids, rows)
    first_row = np.cumsum(rows) - rows  # row of each customer's birth purchase

    # Offsets from start (model units): birth for every row, plus repeat times on repeat rows.
    x = np.repeat(lat["birth"], rows)
    if n_rep:
        has = m > 0
        g = s.rng_times
        # Remaining spacing mass G_i ~ Gamma(N_i + 1 - m_i) for customers with repeats.
        rest = g.standard_gamma(lat["N"][has] - m[has] + 1.0)
        e = g.standard_exponential(n_rep)
        cs = np.cumsum(e)
        m_has = m[has]
        last = np.cumsum(m_has) - 1  # index in cs of each customer's last repeat
        before = np.zeros(m_has.size)
        before[1:] = cs[last[:-1]]
        scale = lat["T"][has] / (cs[last] - before + rest)
        # per-customer cumulative sums: cs - before (monotone within a customer), times scale
        cs -= np.repeat(before, m_has)
        cs *= np.repeat(scale, m_has)
        is_rep = np.ones(n_rows, dtype=bool)
        is_rep[first_row] = False
        x[is_rep] += cs
        del cs, e, is_rep
    ticks = s.to_ticks(x)
    del x
    data = {
        "customer_id": customer_id,
        "timestamp": ticks.view(f"datetime64[{s.store}]"),
    }
    if s.spend:
        nu = _draw_nu(s)
        amount = s.rng_spend.standard_gamma(s.p, n_rows)
        amount /= np.repeat(nu, rows)
        data["amount"] = amount
    return pd.DataFrame(data, copy=False)


def _draw_nu(s: _Setup) -> np.ndarray:
    return s.rng_spend.gamma(s.q, 1.0 / s.v, s.n)


def simulate_customers(
    n_customers: int,
    *,
    r: float,
    alpha: float,
    a: float,
    b: float,
    p: float | None = None,
    q: float | None = None,
    v: float | None = None,
    time_unit: str | TimeUnit = "W",
    start: object = "2020-01-01",
    cohort_length: str | Duration = "12W",
    end: object = "2021-12-31",
    seed: object = None,
    timestamp_resolution: str = "s",
) -> pd.DataFrame:
    """The latent per-customer draws behind :func:`simulate` with the same arguments and seed.

    Columns: ``customer_id``; ``birth`` (timestamp of the first purchase, rounded exactly as in
    :func:`simulate`); ``lambda`` (purchase rate per ``time_unit``); ``dropout`` (p_i);
    ``nu`` (only with spend); ``T`` (time from birth to ``end`` in ``time_unit``);
    ``n_repeat`` (repeat purchases in the log); ``alive`` (not dropped out by ``end``).
    """
    s = _Setup(n_customers, r, alpha, a, b, p, q, v, time_unit, start, cohort_length, end,
               seed, timestamp_resolution)
    lat = _latent(s)
    data = {
        "customer_id": np.arange(s.n, dtype=np.int64),
        "birth": s.to_ticks(lat["birth"]).view(f"datetime64[{s.store}]"),
        "lambda": lat["lambda"],
        "dropout": lat["dropout"],
    }
    if s.spend:
        data["nu"] = _draw_nu(s)
    data.update({"T": lat["T"], "n_repeat": lat["m"], "alive": lat["alive"]})
    return pd.DataFrame(data, copy=False)

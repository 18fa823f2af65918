"""Explicit time units, durations and rates.

A fitted model measures time in one unit (for CDNOW: weeks, ``"W"``). Horizons and discount
rates always carry their own unit and are converted to the model's, so a weekly model and a
monthly discount rate cannot be mixed silently (the trap in ``lifetimes``' ``freq`` argument).

Units are fixed lengths in days: ``D`` = 1, ``W`` = 7, ``M`` = 365.25 / 12 = 30.4375,
``Y`` = 365.25, ``h`` = 1 / 24, ``min``, ``s``, ``ms``, ``us``, ``ns``, and any positive multiple
of them (``"2W"``, ``"7D"``, ``"4.345W"``, ``"15min"``). The same grammar serves model time units,
merge resolutions, horizons and the simulator's timestamp resolution.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from .errors import ClvInputError, show_value

#: The one set of CLV value settings every door defaults to: the Python API (``ClvModel.clv``,
#: ``customer_lifetime_value``, ``compare``), the scorers (``score_file``, ``score_transactions``, Spark),
#: every command (``fit``, ``run``, ``compare``, ``score``, ``report``), experiment files and the MLflow
#: pyfunc. A total CLV depends on them: they are printed beside it and recorded in every output's metadata.
DEFAULT_HORIZON = "12M"
DEFAULT_DISCOUNT_RATE = "10%/Y"
DEFAULT_STEP = "1M"
DEFAULT_MARGIN = 1.0
VALUE_DEFAULTS = {"horizon": DEFAULT_HORIZON, "discount_rate": DEFAULT_DISCOUNT_RATE, "step": DEFAULT_STEP,
                  "margin": DEFAULT_MARGIN}


def value_settings(horizon=None, discount_rate=None, step=None, margin=None, interval=None,
                   interval_method=None, period=None, windows=None) -> dict:
    """The CLV settings of a run as plain text, defaults filled in (None: the default): what is printed
    beside a total CLV and recorded as metadata (Parquet key-value metadata ``clv_forecast.<key>``,
    MLflow params, the report)."""
    given = {"horizon": horizon, "discount_rate": discount_rate, "step": step, "margin": margin}
    out = {key: str(VALUE_DEFAULTS[key] if value is None else value) for key, value in given.items()}
    out["margin"] = f"{float(VALUE_DEFAULTS['margin'] if margin is None else margin):g}"
    out["interval"] = "none" if interval is None else f"{float(interval):g}"
    if interval is not None:  # (clv_forecast.uncertainty.INTERVAL_METHODS)
        out["interval_method"] = str(interval_method or "delta")
    if period is not None:  # value by period and window (clv_forecast.periods): only when asked
        out["periods"] = str(period)
    if windows is not None:
        out["windows"] = windows if isinstance(windows, str) else ",".join(f"{a}-{b}" for a, b in windows)
    return out


def value_settings_of(value) -> dict:
    """:func:`value_settings` of a mapping with those keys (a spec's ``[value]``, a scorer's CLV arguments;
    missing keys and None: the defaults)."""
    value = value or {}
    return value_settings(value.get("horizon"), value.get("discount_rate"), value.get("step"), value.get("margin"),
                          value.get("interval"), value.get("interval_method"), value.get("period", value.get("periods")),
                          value.get("windows"))


def value_settings_text(settings: dict) -> str:
    """``12M, 10%/Y, step 1M, margin 1``: the settings of :func:`value_settings` in one phrase."""
    return (f"{settings['horizon']}, {settings['discount_rate']}, step {settings['step']}, "
            f"margin {settings['margin']}")


def parquet_metadata(settings: dict, **more) -> dict[bytes, bytes]:
    """Parquet key-value metadata of an output: ``clv_forecast.<key>`` for each setting (and ``more``)."""
    items = {**settings, **more}
    return {f"clv_forecast.{k}".encode(): str(v).encode() for k, v in items.items()}


BASE_DAYS: dict[str, float] = {
    "ns": 1 / 86_400e9, "us": 1 / 86_400e6, "ms": 1 / 86_400e3, "s": 1 / 86_400, "min": 1 / 1_440,
    "h": 1 / 24, "D": 1.0, "W": 7.0, "M": 365.25 / 12, "Y": 365.25,
}
_ALIASES = {
    "sec": "s", "second": "s", "seconds": "s", "S": "s", "minute": "min", "minutes": "min", "T": "min",
    "hour": "h", "hours": "h", "H": "h",
    "d": "D", "day": "D", "days": "D",
    "w": "W", "week": "W", "weeks": "W",
    "m": "M", "month": "M", "months": "M", "MS": "M", "ME": "M",
    "y": "Y", "year": "Y", "years": "Y", "A": "Y",
}
#: a time unit (a model's unit, a merge resolution, an input's unit) is at least a nanosecond and at most a
#: thousand years: beyond, conversions such as ``1e308Y`` to weeks overflow and no data is measured so
MIN_UNIT_DAYS, MAX_UNIT_DAYS = BASE_DAYS["ns"], 1000 * BASE_DAYS["Y"]
_PATTERN = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)?\s*([A-Za-z]+)\s*$")


def _base(name: str, text: str) -> str:
    base = _ALIASES.get(name, name)
    if base not in BASE_DAYS:
        raise ClvInputError(
            f"time unit {show_value(text)}: unknown unit {show_value(name)}; use D, W, M, Y, h, min, s (ms, us, ns), "
            "optionally with a multiple such as 2W"
        )
    return base


@dataclass(frozen=True)
class TimeUnit:
    """A unit of time: ``n`` times a base unit (``D``, ``W``, ``M``, ``Y``, ``h``)."""

    n: float = 1.0
    base: str = "W"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.n) and self.n > 0):
            raise ClvInputError(f"time unit {self.n}{self.base[:20]}: the multiple must be a positive number")
        _base(self.base, f"{self.n}{self.base}")
        if not (MIN_UNIT_DAYS * (1 - 1e-12) <= self.days <= MAX_UNIT_DAYS * (1 + 1e-12)):
            raise ClvInputError(f"time unit {self.n:g}{self.base}: must be from 1ns to 1000Y")

    @classmethod
    def parse(cls, value: "str | TimeUnit") -> "TimeUnit":
        if isinstance(value, TimeUnit):
            return value
        match = _PATTERN.match(str(value))
        if match is None:
            raise ClvInputError(
                f"time unit {show_value(value)}: not understood; use D, W, M, Y or h, optionally with a multiple "
                "such as 2W"
            )
        n = float(match.group(1)) if match.group(1) else 1.0
        return cls(n, _base(match.group(2), str(value)))

    @property
    def days(self) -> float:
        """Length of one unit in days."""
        return self.n * BASE_DAYS[self.base]

    def __str__(self) -> str:
        if self.n == 1:
            return self.base
        return f"{self.n:g}{self.base}"


@dataclass(frozen=True)
class Duration:
    """A length of time with its unit, e.g. ``Duration.parse("12M")``."""

    value: float
    unit: TimeUnit

    @classmethod
    def parse(cls, value: "str | Duration") -> "Duration":
        if isinstance(value, Duration):
            return value
        if isinstance(value, (int, float)):
            raise ClvInputError(
                f"duration {value!r}: a bare number has no unit; write it with one, e.g. '{value}W' or '{value}M'"
            )
        match = _PATTERN.match(str(value))
        if match is None:
            raise ClvInputError(f"duration {show_value(value)}: not understood; write a number and a unit, e.g. 12M "
                                "or 39W")
        number = float(match.group(1)) if match.group(1) else 1.0
        if not (math.isfinite(number) and number >= 0):
            raise ClvInputError(f"duration {show_value(value)}: must be a non-negative number of units")
        return cls(number, TimeUnit(1.0, _base(match.group(2), str(value))))

    @property
    def days(self) -> float:
        return self.value * self.unit.days

    def to(self, unit: "str | TimeUnit") -> float:
        """This duration as a number of ``unit``; exact when the units are the same."""
        unit = TimeUnit.parse(unit)
        if unit.base == self.unit.base:
            return self.value * self.unit.n / unit.n
        return self.days / unit.days

    def __str__(self) -> str:
        return f"{self.value:g}{self.unit}"

    def readable(self) -> str:
        """This duration as a person reads it: ``13.1 weeks (92 days)``, ``12 months (365 days)``, ``30 days``,
        ``36 hours (1.5 days)``; the number in its own unit at three significant digits, and its length in days
        beside any unit other than a day (for lengths of at least a day)."""
        text = _counted(self.value * self.unit.n, _UNIT_WORDS[self.unit.base])
        if self.unit.base != "D" and self.days >= 1:
            text += f" ({_counted(self.days, 'day')})"
        return text


#: the name of one base unit, for :meth:`Duration.readable`
_UNIT_WORDS = {"ns": "nanosecond", "us": "microsecond", "ms": "millisecond", "s": "second", "min": "minute",
               "h": "hour", "D": "day", "W": "week", "M": "month", "Y": "year"}


def _readable_number(value: float) -> str:
    """A count of units at about three significant digits, with thousands separators and no exponent for
    ordinary sizes: ``13.1``, ``92``, ``4.35``, ``1,461``."""
    if abs(value - round(value)) <= 1e-9 * max(1.0, abs(value)) or abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def _counted(value: float, word: str) -> str:
    number = _readable_number(value)
    return f"{number} {word}{'' if number == '1' else 's'}"


def readable_duration(value, unit=None) -> str:
    """:meth:`Duration.readable` of a duration given as text (``"13.1428571428571W"``), a :class:`Duration`,
    or a number of ``unit`` (``39.0, "W"``): what the report and ``compare`` print."""
    if unit is not None and not isinstance(value, (str, Duration)):
        parsed = TimeUnit.parse(unit)
        return Duration(float(value) * parsed.n, TimeUnit(1.0, parsed.base)).readable()
    return Duration.parse(value).readable()


@dataclass(frozen=True)
class Rate:
    """A discount (or interest) rate per period, e.g. ``Rate.parse("10%/Y")`` or ``Rate(0.01, "M")``."""

    value: float
    per: "TimeUnit | str" = "Y"

    def __post_init__(self) -> None:
        object.__setattr__(self, "per", TimeUnit.parse(self.per))
        if not (math.isfinite(self.value) and self.value > -1):
            raise ClvInputError(f"discount rate {self.value}: must be a finite number greater than -1")

    @classmethod
    def parse(cls, value: "str | Rate") -> "Rate":
        if isinstance(value, Rate):
            return value
        if isinstance(value, (int, float)):
            raise ClvInputError(
                f"discount rate {value!r}: a bare number has no period; write e.g. '10%/Y' or Rate({value}, 'M')"
            )
        text = str(value).replace(" ", "")
        if "/" not in text:
            raise ClvInputError(f"discount rate {show_value(value)}: give its period, e.g. '10%/Y' or '0.01/M'")
        number, per = text.split("/", 1)
        try:
            rate = float(number[:-1]) / 100 if number.endswith("%") else float(number)
        except ValueError:
            raise ClvInputError(f"discount rate {show_value(value)}: {show_value(number)} is not a number") from None
        return cls(rate, TimeUnit.parse(per))

    def over(self, period: "str | TimeUnit") -> float:
        """The equivalent compound rate over ``period``: ``(1 + r) ** (period / per) - 1``."""
        period = TimeUnit.parse(period)
        if period == self.per:
            return self.value
        if period.base == self.per.base:
            ratio = period.n / self.per.n
        else:
            ratio = period.days / self.per.days
        return (1.0 + self.value) ** ratio - 1.0

    def __str__(self) -> str:
        return f"{self.value:g}/{self.per}"

    def readable(self) -> str:
        """This rate as a person reads it: ``10 % per year``, ``1 % per 2 weeks``."""
        per = self.per
        unit = _UNIT_WORDS[per.base] if per.n == 1 else _counted(per.n, _UNIT_WORDS[per.base])
        return f"{100 * self.value:g} % per {unit}"

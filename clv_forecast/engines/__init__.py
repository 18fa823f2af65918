"""The engines the pipeline and the scorer run on, discovered, not listed by hand.

An engine is a subclass of :class:`~clv_forecast.engines.base.Engine` with a ``name`` (the value of
``--engine`` and of a spec's ``[data] engine``), defined in a module of this package (found by
:func:`available`) or registered with :func:`register` (a plug-in, a test's engine). The one pipeline
(:func:`clv_forecast.experiment.run`) and the scoring command call only the interface, so a third
engine (Dask, Ray...) is one module here.

* :mod:`.local`: one machine (pyarrow, polars, pandas);
* :mod:`.spark`: Apache Spark (pyspark imported only when it runs).
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import Engine

__all__ = ["Engine", "available", "get", "register", "unregister"]

_REGISTERED: dict[str, type[Engine]] = {}
_DISCOVERED = False


def _discover() -> None:
    """Import the engine modules of this package once (they register their classes)."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_") and info.name != "base":
            importlib.import_module(f"{__name__}.{info.name}")
    _DISCOVERED = True


def register(cls: type[Engine]) -> type[Engine]:
    """Make an engine class available under its ``name`` (usable as a decorator); returns it."""
    if not (isinstance(cls, type) and issubclass(cls, Engine)) or not isinstance(getattr(cls, "name", None), str) \
            or not cls.name:
        raise TypeError(f"{cls!r}: an engine is a subclass of clv_forecast.engines.Engine with a name")
    _REGISTERED[cls.name] = cls
    return cls


def unregister(name: str) -> None:
    """Forget a registered engine (a test's)."""
    _REGISTERED.pop(name, None)


def available() -> list[str]:
    """The engines' names: the built-in ones first (local, spark), then the registered ones."""
    _discover()
    builtin = [n for n in ("local", "spark") if n in _REGISTERED]
    return builtin + sorted(n for n in _REGISTERED if n not in builtin)


def get(name) -> Engine:
    """An engine: itself when given one, else a new instance of the engine named ``name``
    (:class:`~clv_forecast.errors.ClvInputError` naming the known ones for an unknown name)."""
    if isinstance(name, Engine):
        return name
    _discover()
    cls = _REGISTERED.get(name)
    if cls is None:
        from ..errors import ClvInputError

        raise ClvInputError(f"unknown engine (engines: {', '.join(available())})", argument="engine", value=name)
    return cls()

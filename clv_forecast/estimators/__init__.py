"""The model classes, discovered by module name: purchase models in ``purchases/``, spend models in ``spend/``,
contractual retention models in ``retention/``.

(Fitted model *files* live in the top-level ``models/`` folder; see ``models/README.md``.)

* :func:`available` lists the kinds of a role from the modules of its subpackage, importing none of them
  (``clv-forecast --help`` stays light);
* :func:`get` imports ``clv_forecast.estimators.<role>.<kind>`` and returns its model class (the class whose
  ``kind`` is the module's name);
* :func:`register` adds a class defined elsewhere (a test's twin model, later a plug-in).

A model is one module plus its tests: see ``CONTRIBUTING.md``.
"""

from __future__ import annotations

import pkgutil
from importlib import import_module
from pathlib import Path

ROLES = ("purchases", "spend", "retention")

#: classes added with :func:`register`, by (role, kind)
_REGISTERED: dict[tuple[str, str], type] = {}


def _check_role(role: str) -> None:
    if role not in ROLES:
        from ..errors import ClvInputError

        raise ClvInputError(f"unknown model role {role!r} (roles are {', '.join(ROLES)})")


def available(role: str) -> list[str]:
    """The kinds of ``role`` ("purchases", "spend" or "retention"): the modules of ``estimators/<role>/`` (names without
    a leading ``_``) and the registered classes, in alphabetical order. Imports no model."""
    _check_role(role)
    folder = Path(__file__).parent / role
    kinds = {m.name for m in pkgutil.iter_modules([str(folder)]) if not m.name.startswith("_")}
    kinds |= {kind for (r, kind) in _REGISTERED if r == role}
    return sorted(kinds)


def get(kind: str, role: str) -> type:
    """The model class of ``kind`` in ``role``; an unknown kind is one line naming the known ones."""
    _check_role(role)
    if (role, kind) in _REGISTERED:
        return _REGISTERED[role, kind]
    if not isinstance(kind, str) or kind.startswith("_") or kind not in available(role):
        from ..errors import ClvInputError

        raise ClvInputError(f"unknown {role} model (known: {', '.join(available(role))})", argument=role, value=kind)
    module = import_module(f"{__name__}.{role}.{kind}")
    for value in vars(module).values():
        if isinstance(value, type) and getattr(value, "kind", None) == kind and getattr(value, "role", None) == role \
                and value.__module__ == module.__name__:
            return value
    raise TypeError(f"{module.__name__} defines no model class with kind = {kind!r}")  # a programming error


def register(cls: type) -> type:
    """Add a model class defined outside ``estimators/`` (usable as a decorator); returns ``cls``.

    It must carry ``kind`` and ``role``; a kind that a module of the package already has is refused."""
    kind, role = getattr(cls, "kind", None), getattr(cls, "role", None)
    _check_role(role)
    if not (isinstance(kind, str) and kind.isidentifier() and not kind.startswith("_")):
        raise ValueError(f"{cls.__name__}: kind must be a name such as 'bgnbd', got {kind!r}")
    folder = Path(__file__).parent / role
    if kind in {m.name for m in pkgutil.iter_modules([str(folder)])}:
        raise ValueError(f"{cls.__name__}: kind {kind!r} is a built-in {role} model")
    _REGISTERED[role, kind] = cls
    return cls


def unregister(kind: str, role: str) -> None:
    """Remove a class added with :func:`register` (a test fixture's clean-up)."""
    _REGISTERED.pop((role, kind), None)


def registered() -> dict:
    """The classes added with :func:`register`, by (role, kind): what a Spark task takes along (pickled with
    its closure) so that executors, which import only the package's own modules, know them too."""
    return dict(_REGISTERED)


def restore(classes: dict) -> None:
    """Register again the classes of :func:`registered` (on a Spark executor)."""
    _REGISTERED.update(classes)

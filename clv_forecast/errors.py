"""Exceptions and warnings raised by clv-forecast.

Every user-facing problem is a :class:`ClvInputError` whose message is one line naming the
source (file or ``DataFrame``), the column, the first offending rows and the reason. The CLI
turns it into that line on stderr and exit code 2.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

_NO_VALUE = object()

# An argument named inside a message: ``{{date_format}}`` or, as a fix, ``{{missing_customer='drop'}}``.
_MENTION = re.compile(r"\{\{(\w+)(?:=(.*?))?\}\}")


def render_text(text: str, names: Mapping[str, str] | None = None, style: str = "python") -> str:
    """Resolve the argument mentions of a message for a front end.

    ``style="python"`` writes ``missing_customer='drop'``; ``"option"`` writes the front end's
    option from ``names`` (``--missing-customer drop``; a flag alone for ``True``); ``"spec"`` a
    key of a file (``[data] missing_customer = 'drop'``). Arguments missing from ``names`` keep
    their Python spelling.
    """

    def mention(match: re.Match) -> str:
        argument, value = match.group(1), match.group(2)
        if style == "python" or not names or argument not in names:
            return argument if value is None else f"{argument}={value}"
        name = names[argument]
        if value is None:
            return name
        if style == "option":
            return name if value == "True" else f"{name} {value.strip(chr(39) + chr(34))}"
        return f"{name} = {value.lower() if value in ('True', 'False') else value}"

    return _MENTION.sub(mention, text)


class ClvInputError(ValueError):
    """Bad user input: file, column, value or option. The message is a single line.

    When the problem is one argument's value, the error carries the argument's Python name
    (``argument``), the value and the bare ``reason``; ``str(exc)`` reads ``time_unit='X': reason``
    and a front end renders its own name for the argument with :meth:`render` (the CLI shows
    ``--time-unit X: reason``), never by rewriting the message text.
    """

    def __init__(self, message: str, *, argument: str | None = None, value=_NO_VALUE) -> None:
        self.template = " ".join(str(message).split())
        self.reason = render_text(self.template)
        self.argument = argument
        self.value = value
        super().__init__(self.render())

    def render(self, name: str | None = None, *, style: str = "python",
               names: Mapping[str, str] | None = None) -> str:
        """The message with the argument called ``name`` (default: its Python name) and the arguments
        mentioned in the reason (fixes such as ``give date_format``) named from ``names``.

        ``style="python"``: ``time_unit='X': reason``; ``"option"`` (a command-line option):
        ``--time-unit X: reason``; ``"spec"`` (a key of a file): ``[summary] time_unit = 'X': reason``.
        """
        reason = render_text(self.template, names, style)
        if self.argument is None:
            return reason
        name = name or (names or {}).get(self.argument) or self.argument
        if self.value is _NO_VALUE:
            return f"{name}: {reason}"
        if style == "option":
            return f"{name} {self.value}: {reason}"
        if style == "spec":
            return f"{name} = {self.value!r}: {reason}"
        return f"{name}={self.value!r}: {reason}"

    @property
    def mentions(self) -> list[str]:
        """The arguments this error names: its own and those in its reason."""
        found = [m.group(1) for m in _MENTION.finditer(self.template)]
        return ([self.argument] if self.argument else []) + found


class NotFittedError(RuntimeError):
    """A model was used before ``fit`` (or ``load``) gave it parameters."""


class ConvergenceWarning(UserWarning):
    """The optimiser stopped without meeting its convergence criterion."""


class IdentificationError(ValueError):
    """The data cannot identify the model's parameters (for example, no repeat buyers).

    Raised by a pipeline run (:func:`clv_forecast.experiment.run`), it carries the run so far in
    :attr:`result` (a :class:`~clv_forecast.experiment.RunResult` with the summary and its row
    accounting, and the model with the values the fit reached, or None when no fit was made): a
    refused fit still reports what it found."""

    result = None


class UnreliableFitError(IdentificationError):
    """A fit that did not converge or does not identify its parameters was used where a reliable one
    is required (saving it, for example); the message says why. Its message may mention arguments
    (:attr:`template`, see :func:`render_text`)."""

    def __init__(self, message: str) -> None:
        self.template = " ".join(str(message).split())
        super().__init__(render_text(self.template))


class DataWarning(UserWarning):
    """Rows were left out of a fit, or the data breaks a model assumption; the message says which.

    Its message may mention arguments (``{{strict=True}}``): ``str()`` gives the Python spelling,
    :attr:`template` lets a front end name its own options (see :func:`render_text`).
    """

    def __init__(self, message: str) -> None:
        self.template = str(message)
        super().__init__(render_text(self.template))


def format_rows(rows: Sequence[int], limit: int = 5) -> str:
    """Describe offending 1-based row numbers compactly: ``rows 3, 7, 9 (and 12 more)``."""
    rows = list(rows)
    if not rows:
        return "no rows"
    shown = ", ".join(str(int(r)) for r in rows[:limit])
    word = "row" if len(rows) == 1 else "rows"
    more = f" (and {len(rows) - limit} more)" if len(rows) > limit else ""
    return f"{word} {shown}{more}"


def show_value(value) -> str:
    """A value as shown in an error message: ``repr``, shortened; ``missing`` for None."""
    if value is None:
        return "missing"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def row_error(source: str, column: str, rows: Sequence[int], values: Sequence, reason: str,
              limit: int = 5) -> ClvInputError:
    """The one layout of a bad-value error: ``source: column 'c', rows 3, 7 (values: ...): reason``.

    ``rows`` are 1-based (all of them: the message counts the rest), ``values`` those of the first rows.
    """
    shown = ", ".join(show_value(v) for v in list(values)[:limit])
    return ClvInputError(f"{source}: column {column!r}, {format_rows(rows, limit)} (values: {shown}): {reason}")

"""No output may replace an input: the one check of a command's files, made before any work.

Every command and experiment names the files it touches by role: the *inputs* it reads (the
transaction log or RFM table, the model file ``score`` reads, the experiment file) and the *outputs*
it writes (model, per-customer table, report, scores, rejects, a results folder, a Spark output
directory). :func:`check_paths` refuses, in one line naming both roles, any two of them (at least one
an output) that are the same file, and any output that is a folder holding another of them or lies
inside an input directory (a Spark input, or a folder an output would replace). Files that exist are
compared with :func:`os.path.samefile` (hard links, symlinks, ``./x`` and ``x``), others by their
resolved paths. A path with a NUL byte is refused here too, naming its role.

Roles are labels: an argument mention (``{{predictions}}``, rendered by each front end with its own
name: ``--predictions``, ``[output] predictions``) or plain text (``the experiment file``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from .errors import ClvInputError

__all__ = ["check_paths", "shown_path"]


def shown_path(path, limit: int = 80) -> str:
    """A path as echoed in a message: its text, shortened in the middle past ``limit`` characters."""
    text = str(path).replace("\x00", "\\0")
    if len(text) <= limit:
        return text
    half = (limit - 3) // 2
    return text[:half] + "..." + text[-half:]


def _is_remote(text: str) -> bool:
    """A URI Spark or MLflow reads (``s3a://...``, ``runs:/...``): not a local file to compare."""
    return "://" in text or text.startswith(("runs:/", "models:/"))


def check_paths(inputs: Mapping[str, object], outputs: Mapping[str, object], *, where: str | None = None) -> None:
    """Refuse before any work a set of files in which an output would replace or hide another file.

    ``inputs`` and ``outputs``: role label -> path (``None`` and URIs are skipped). Pairs of two
    inputs are not compared (reading one file twice loses nothing). ``where`` (an experiment file)
    prefixes the message. Raises :class:`ClvInputError` with one line naming both roles.
    """
    prefix = f"{where}: " if where else ""
    entries = []
    for is_output, roles in ((False, inputs), (True, outputs)):
        for label, path in roles.items():
            if path is None:
                continue
            text = os.fspath(path) if isinstance(path, os.PathLike) else str(path)
            if "\x00" in text:
                raise ClvInputError(f"{prefix}{label}: the path contains a NUL byte: {shown_path(text)}")
            if not text.strip() or _is_remote(text):
                continue
            local = Path(text).expanduser()
            entries.append((label, local, Path(os.path.abspath(local)).resolve(), is_output))
    for i, first in enumerate(entries):
        for second in entries[i + 1:]:
            if not (first[3] or second[3]):
                continue
            # the output named first: "--predictions and --transactions are the same file"
            a, b = (second, first) if second[3] and not first[3] else (first, second)
            problem = _collision(a, b)
            if problem:
                raise ClvInputError(prefix + problem)


def _same(a: Path, ra: Path, b: Path, rb: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return ra == rb


def _collision(a, b) -> str | None:
    """What is wrong with output ``a`` beside ``b`` (an input or another output), or None."""
    (label_a, a_path, ra, _), (label_b, b_path, rb, b_output) = a, b
    if _same(a_path, ra, b_path, rb):
        return f"{label_a} and {label_b} are the same file: {shown_path(a_path)}"
    if ra in rb.parents:
        return f"{label_a} is a folder holding {label_b}: {shown_path(a_path)} holds {shown_path(b_path)}"
    if rb in ra.parents:
        where = "directory" if b_output or b_path.is_dir() else "path"
        return f"{label_a} is inside the {label_b} {where}: {shown_path(a_path)} is in {shown_path(b_path)}"
    return None


def check_writable(path: Path, what: str = "the model", example: str = "model.json") -> None:
    """Refuse an output path that cannot be written, before any work is done (one-line error naming
    ``what`` the file is and an ``example`` file name)."""
    path = Path(path)
    if path.is_dir():
        raise ClvInputError(f"{path}: is a directory; give a file path for {what}, e.g. {path / example}")
    parent = path.parent
    existing = next((p for p in (parent, *parent.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise ClvInputError(f"{path}: cannot write {what}: {existing} is a file, not a directory")
    if existing is not None and not os.access(existing, os.W_OK):
        raise ClvInputError(f"{path}: cannot write {what}: {existing} is not writable")

"""Atomic file output: a temporary file in the target's folder, renamed over the target at the end.

A crash, an error, Ctrl-C or SIGTERM (the console script turns it into the same unwinding) never
leaves a half-written file under the final name, and the temporary file is removed. The file gets
the permissions a plain ``open(path, "w")`` would give (``0o666`` minus the user's umask), not the
``0o600`` of a temporary file, so a job running as another user can read a saved model.

Temporary names carry their owner: ``.NAME.HOST-PID.XXXXXXXX.tmp`` (:func:`temporary_path`). A run
killed outright (SIGKILL, a power cut) cannot remove its own; the next write to the same target
removes those whose process is gone on this host (:func:`remove_leftovers`) and warns once with
their number. Leftovers of a live process, or of another host sharing the folder, are left alone.

An OS error while writing (disk full, quota, read-only file system, permission) is one
:class:`~clv_forecast.errors.ClvInputError` naming the file being written and the reason.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import socket
import warnings
from collections.abc import Callable
from pathlib import Path

from .errors import ClvInputError

__all__ = ["atomic_write", "atomic_write_text", "temporary_path", "remove_leftovers", "write_error"]

# errors of the place written to (not of the data): reported as "cannot write FILE: reason"
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG, errno.EIO,
                 errno.ENAMETOOLONG, errno.ENOTDIR, errno.EISDIR, errno.EXDEV}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname())[:40] or "host"


def _owner() -> str:
    return f"{_host()}-{os.getpid()}"


def temporary_path(target, suffix: str = ".tmp") -> Path:
    """A fresh name beside ``target`` for its temporary file or directory: ``.NAME.HOST-PID.RANDOM`` +
    ``suffix`` (not created)."""
    target = Path(target)
    return target.parent / f".{target.name}.{_owner()}.{os.urandom(6).hex()}{suffix}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: a process of another user has that pid
        return True
    return True


def remove_leftovers(target) -> int:
    """Remove the temporary files and directories that runs killed while writing ``target`` left beside
    it (named by :func:`temporary_path` on this host, their process gone); warn once with their number.
    Returns how many were removed."""
    target = Path(target)
    pattern = re.compile(re.escape(f".{target.name}.{_host()}-") + r"(\d+)\.[0-9a-f]+\.[A-Za-z0-9_.-]+$")
    removed = 0
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return 0
    for entry in entries:
        match = pattern.match(entry.name)
        if match is None or int(match.group(1)) == os.getpid() or _alive(int(match.group(1))):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed += 1
        except OSError:
            continue
    if removed:
        warnings.warn(f"{target.parent}: removed {removed} temporary {'file' if removed == 1 else 'files'} "
                      f"left by an earlier run killed while writing {target.name}", UserWarning, stacklevel=2)
    return removed


def write_error(paths, exc: OSError, what: str = "file") -> ClvInputError | None:
    """The one-line error for an OS error met while writing ``paths`` (one path, or the files one step
    writes together): disk full, quota, read-only, permission...; None when the error is not about the
    place written to."""
    if exc.errno not in _WRITE_ERRNOS:
        return None
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    names = " and ".join(str(p) for p in paths)
    code = errno.errorcode.get(exc.errno, str(exc.errno))
    under = "this name" if len(paths) == 1 else "these names"
    return ClvInputError(f"{names}: cannot write the {what}{'s' if len(paths) > 1 else ''}: {os.strerror(exc.errno)} "
                         f"({code}); nothing was written under {under}")


def atomic_write(path, write: Callable[[Path], None], *, also=()) -> Path:
    """Call ``write(tmp_path)`` to produce the file, then rename it to ``path`` (parents created).

    ``also``: other files the same ``write`` call writes (to their own temporary files), named with
    ``path`` when an OS error cannot be told apart (a full disk while both are written)."""
    path = Path(path)
    tmp_path = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_leftovers(path)
        tmp_path = temporary_path(path)
        os.close(os.open(tmp_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        write(tmp_path)
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    except BaseException as exc:
        if tmp_path is not None:
            try:
                tmp_path.unlink(missing_ok=True)
            except OSError:
                pass
        if isinstance(exc, OSError):
            error = write_error([*also, path], exc)
            if error is not None:
                raise error from None
        raise
    return path


def atomic_write_text(path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding=encoding))


def read_model_json(path):
    """The JSON document of a model file, or one :class:`ClvInputError` line naming the file: not found,
    nested too deep, or not readable JSON (a bad byte, a 100,000-digit integer)."""
    import json

    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ClvInputError(f"{path}: model file not found") from None
    except RecursionError:
        raise ClvInputError(f"{path}: cannot read model file (JSON nested too deep)") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # ValueError: bad JSON, a 100,000-digit integer
        raise ClvInputError(f"{path}: cannot read model file ({' '.join(str(exc).split())[:120]})") from None

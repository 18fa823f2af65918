"""Tests that need a program outside Python: the policy when it is missing.

A test marked ``spark`` needs pyspark and a Java runtime, one marked ``browser`` needs Chromium. Where the
program is missing the test is skipped with a reason that says what to install; with ``CI=true`` (``.ci/run``
sets it) it fails instead, so that nothing is skipped silently in CI. Tests that use the ``spark`` fixture
get the marker from ``tests/conftest.py``; a test that starts Spark or Chromium another way (a CLI run in a
subprocess) carries the marker itself.

The hooks below are imported by ``tests/conftest.py``; ``pytest -p external_tools`` loads them alone (the
policy's own tests do that).
"""

from __future__ import annotations

import importlib.util
import os
import shutil

import pytest

# marker -> (what it needs, how to enable it)
HOW_TO_ENABLE = {
    "spark": "pip install -e '.[dev]' (pyspark) and a Java runtime 17 or later (apt-get install default-jre-headless)",
    "browser": "install Chromium (apt-get install chromium)",
}


def in_ci() -> bool:
    """True when the environment variable CI says so (``true``, ``1`` or ``yes``, any case)."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def chromium_path() -> str | None:
    """The Chromium executable on the PATH, or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _spark_missing() -> str | None:
    if importlib.util.find_spec("pyspark") is None:
        return "pyspark is not installed"
    if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        return "no Java runtime (java not on PATH, JAVA_HOME unset)"
    return None


def _browser_missing() -> str | None:
    return None if chromium_path() else "Chromium is not on the PATH (chromium, chromium-browser)"


_CHECKS = {"spark": _spark_missing, "browser": _browser_missing}


def missing(marker: str) -> str | None:
    """Why the tests marked ``marker`` cannot run here (with how to enable them), or None when they can."""
    what = _CHECKS[marker]()
    return None if what is None else f"{what}: the '{marker}' tests need it; to run them: {HOW_TO_ENABLE[marker]}"


def require(marker: str) -> None:
    """Skip the running test when what ``marker`` needs is missing; fail it instead when CI=true."""
    reason = missing(marker)
    if reason is None:
        return
    if in_ci():
        pytest.fail(f"CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before a test's fixtures are set up (no Spark session is started for a test that is skipped)."""
    for marker in _CHECKS:
        if item.get_closest_marker(marker) is not None:
            require(marker)

"""The policy for tests that need Java or Chromium (tests/external_tools.py): skipped with how to enable them
where the program is missing, failed with CI=true. Checked on a small test file run by pytest in a
subprocess whose PATH holds neither java nor chromium, with this folder's conftest (so a test that only
uses the ``spark`` fixture is covered too)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from external_tools import in_ci, missing, require

TESTS = Path(__file__).parent

INNER = '''
import pytest

@pytest.mark.spark
def test_marked_spark():
    raise AssertionError("ran without Java")

def test_spark_fixture(spark):
    raise AssertionError("a Spark session without Java")

@pytest.mark.browser
def test_marked_browser():
    raise AssertionError("ran without Chromium")

def test_plain():
    pass
'''


def _run_without_tools(tmp_path: Path, ci: str | None) -> tuple[int, dict[str, tuple[str, str]]]:
    """pytest on INNER with an empty PATH and no JAVA_HOME, CI set to ``ci`` (None: unset): its exit code and
    each test's (outcome, message) from its JUnit XML ("passed" has no message)."""
    (tmp_path / "test_inner.py").write_text(INNER)
    shutil.copyfile(TESTS / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # not the project's options (no workers, no timeout)
    (tmp_path / "empty").mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("JAVA_HOME", "CI", "PYTEST_ADDOPTS")}
    # no plugin autoloading: the policy is this folder's conftest alone, and the installed plugins (hypothesis,
    # xdist, timeout) cost more than half of the inner run's CPU
    env.update(PATH=str(tmp_path / "empty"), PYTHONPATH=str(TESTS), COLUMNS="1000", PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    if ci is not None:
        env["CI"] = ci
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                           "-W", "ignore::pytest.PytestUnknownMarkWarning", "--junitxml=out.xml", "test_inner.py"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert (tmp_path / "out.xml").exists(), done.stdout + done.stderr
    outcomes = {}
    for case in ET.parse(tmp_path / "out.xml").iter("testcase"):
        children = [c for c in case if c.tag in ("skipped", "error", "failure")]
        outcomes[case.get("name")] = (children[0].tag, children[0].get("message", "")) if children else ("passed", "")
    return done.returncode, outcomes


def test_without_java_and_chromium_the_tests_are_skipped_with_how_to_enable_them(tmp_path):
    rc, outcomes = _run_without_tools(tmp_path, ci=None)
    assert rc == 0, outcomes
    assert outcomes["test_plain"] == ("passed", "")
    for name in ("test_marked_spark", "test_spark_fixture"):
        kind, message = outcomes[name]
        assert kind == "skipped" and "no Java runtime" in message, outcomes
        assert "apt-get install default-jre-headless" in message, message
    kind, message = outcomes["test_marked_browser"]
    assert kind == "skipped" and "Chromium is not on the PATH" in message and "apt-get install chromium" in message


def test_with_ci_true_the_same_tests_fail(tmp_path):
    rc, outcomes = _run_without_tools(tmp_path, ci="true")
    assert rc == 1, outcomes
    assert outcomes["test_plain"] == ("passed", "")
    for name, what in [("test_marked_spark", "no Java runtime"), ("test_spark_fixture", "no Java runtime"),
                       ("test_marked_browser", "Chromium is not on the PATH")]:
        kind, message = outcomes[name]  # failed in set-up: an error, before any fixture starts Spark
        assert kind == "error" and f"CI=true: {what}" in message, outcomes


@pytest.mark.parametrize("value, expected", [("true", True), ("TRUE", True), ("1", True), ("yes", True),
                                             ("", False), ("false", False), ("0", False), (None, False)])
def test_what_counts_as_ci(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    assert in_ci() is expected


def test_require_skips_or_fails_by_ci_and_passes_when_present(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="default-jre-headless"):
        require("spark")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true: Chromium is not on the PATH"):
        require("browser")
    (tmp_path / "chromium").write_text("#!/bin/sh\n")
    (tmp_path / "chromium").chmod(0o755)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    assert missing("browser") is None and missing("spark") is None
    require("browser")  # present: nothing raised

"""The suite's xdist groups (tests/conftest.py): the tests sharing a process that a fixture starts (the Spark
session and its Spark Connect server, an MLflow server) or a module's own servers (the standalone cluster) run on
one worker, so that it is started once. The controller's scheduler reads a test's group from the suffix of its id
(``...@spark``): checked here on the ids this worker collected, as the scheduler receives them. Without
``--dist loadgroup`` (``-n 0``) no id carries a suffix."""

from __future__ import annotations

import pytest

from conftest import FIXTURE_MARKERS, fixture_group, xdist_group_name


@pytest.mark.xdist_group("self_check")
def test_a_grouped_test_carries_its_group_in_its_id(request):
    loadgroup = getattr(request.config.option, "loadgroup", False)
    assert request.node.nodeid.endswith("@self_check") == loadgroup, request.node.nodeid


def test_the_users_of_a_shared_fixture_and_the_cluster_module_carry_their_group(request):
    loadgroup = getattr(request.config.option, "loadgroup", False)
    items = request.session.items
    seen = set()
    for item in items:
        group = xdist_group_name(item)
        by_fixture = fixture_group(item)
        if by_fixture is not None:
            assert group == by_fixture, item.nodeid
            seen.add(group)
        elif item.nodeid.startswith("tests/test_spark_cluster.py::"):  # (the standalone cluster's tests)
            assert group == "spark_cluster", item.nodeid
            seen.add(group)
        if group is not None:  # the suffix with --dist loadgroup, none without
            assert item.nodeid.endswith(f"@{group}") == loadgroup, item.nodeid
    # every group whose tests were selected was checked (in the whole suite: all three)
    present = {m for item in items for f, m in FIXTURE_MARKERS.items() if f in getattr(item, "fixturenames", ())}
    standalone = [i for i in items if i.nodeid.startswith("tests/test_spark_cluster.py::") and fixture_group(i) is None]
    present |= {"spark_cluster"} if standalone else set()
    assert seen == present, (seen, present)

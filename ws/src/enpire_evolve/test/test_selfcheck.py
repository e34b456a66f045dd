"""An agent tree's own tests run confined: hostile tests cannot run programs, reach the
network, or touch the ledger, data_dir or other trees; honest tests still pass."""

from __future__ import annotations

import textwrap

import pytest

from enpire_evolve.selfcheck import run_selfcheck
from enpire_policy import isolation
from enpire_policy.containment import ROUTES, Targets

BEST = isolation.probe().best


@pytest.fixture
def targets(tmp_path):
    t = Targets.create(tmp_path / "targets")
    yield t
    t.close()


def tree_with_test(root, body: str):
    tree = root / "trees" / "agent0"
    (tree / "tests").mkdir(parents=True)
    (tree / "tests" / "test_x.py").write_text(textwrap.dedent(body))
    return tree


def test_honest_tests_pass_and_failures_are_reported(tmp_path):
    tree = tree_with_test(
        tmp_path,
        """
        def test_ok(tmp_path):
            (tmp_path / "f").write_text("scratch is writable")
            assert (tmp_path / "f").read_text()
    """,
    )
    ok, out = run_selfcheck(tree, 60)
    assert ok, out
    (tree / "tests" / "test_x.py").write_text("def test_bad():\n    assert 1 == 2\n")
    ok, out = run_selfcheck(tree, 60)
    assert not ok and "assert 1 == 2" in out


@pytest.mark.skipif(BEST == "rlimits", reason="no OS isolation layer on this machine")
@pytest.mark.parametrize(
    "name",
    [
        "os_system",
        "ctypes_open",
        "sqlite_write",
        "socket_connect",
        "write_other_tree",
        "read_ledger",
        "fork_exec",
    ],
)
def test_hostile_tests_are_refused(name, tmp_path, targets):
    src = ROUTES[name].source(targets)
    tree = tree_with_test(tmp_path, src + "\n\ndef test_attack():\n    P().act({})\n")
    ok, out = run_selfcheck(tree, 60, hidden=[str(targets.data_dir)])
    assert targets.escaped() == "", targets.escaped()
    assert not ok, out  # the attack raised: the test failed, naming why
    assert "PermissionError" in out or "not permitted" in out, out
    assert not (tree / "tests" / "planted.txt").exists()


@pytest.mark.skipif(BEST == "rlimits", reason="no OS isolation layer on this machine")
def test_the_tests_run_under_the_os_layers(tmp_path, targets):
    """Not only the audit hook: the kernel filters are on in the tests' process, and at
    `namespace` the ledger does not even exist there (stat is not something the hook sees)."""
    tree = tree_with_test(
        tmp_path,
        f"""
        import os

        def test_confined():
            status = open("/proc/self/status").read()
            assert "Seccomp:\\t2" in status, status
            if {BEST!r} == "namespace":
                assert not os.path.exists({str(targets.ledger)!r})
        """,
    )
    ok, out = run_selfcheck(tree, 60, hidden=[str(targets.data_dir)])
    assert ok, out

"""The launcher restarts a node that dies, with a doubling delay, and ends the launch only when
a node keeps dying past its limit, naming it."""

from __future__ import annotations

import io
import threading

from enpire_bringup.fleet import NodeSpec
from enpire_bringup.launcher import Launcher


def test_a_node_that_keeps_dying_is_restarted_then_ends_the_launch():
    # `python -m enpire_env.no_such_node` exits at once with status 1
    dying = NodeSpec("enpire_env", "no_such_node", "dying", respawn_delay=0.2, max_respawns=2)
    out = io.StringIO()
    launcher = Launcher([dying], out=out)
    launcher.start()
    rc = launcher.wait(threading.Event())
    log = out.getvalue()
    assert rc == 1 and launcher.failed[0] == "/dying", log
    assert launcher.restarts["/dying"] == 2
    assert "restarting in 0.2 s (1/2)" in log and "restarting in 0.4 s (2/2)" in log
    assert "2 restarts did not help" in log


def test_respawn_off_ends_the_launch_at_the_first_death():
    dying = NodeSpec("enpire_env", "no_such_node", "dying", respawn=False)
    out = io.StringIO()
    launcher = Launcher([dying], out=out)
    launcher.start()
    assert launcher.wait(threading.Event()) == 1
    assert launcher.restarts["/dying"] == 0 and "restarting" not in out.getvalue()


def test_nodes_run_with_one_blas_thread_unless_the_user_says_otherwise():
    """A node process gets NODE_ENV's variables (OPENBLAS_NUM_THREADS=1), a user's value wins;
    the launch file passes the same to launch_ros."""
    spec = NodeSpec("enpire_env", "no_such_node", "n")
    assert Launcher([spec], env={"PATH": "/usr/bin"}).env["OPENBLAS_NUM_THREADS"] == "1"
    mine = {"PATH": "/usr/bin", "OPENBLAS_NUM_THREADS": "4"}
    assert Launcher([spec], env=mine).env["OPENBLAS_NUM_THREADS"] == "4"

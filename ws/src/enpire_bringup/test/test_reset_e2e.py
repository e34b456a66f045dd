"""End to end, as a user would: `enpire launch` in one process, `enpire reset` in another."""

import subprocess
import sys

from enpire_env.testing import NodeProcess

ENPIRE = [sys.executable, "-m", "enpire_bringup.enpire"]


def test_reset_goal_between_two_processes(ros_domain, tmp_path):
    # a data dir of its own: in the default one (~/.enpire/data) the rollout node finds earlier
    # runs' candidates and confirms them on idle robots, whose resets then make this goal busy
    launch = subprocess.Popen(
        [*ENPIRE, "launch", "--robots", "2", "--time-scale", "5", "--data-dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        out = subprocess.run(
            [*ENPIRE, "reset", "--robot", "robot_1", "--seed", "11", "--timeout", "120"],
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        assert "approach" in out.stdout and "verify" in out.stdout  # feedback
        assert "robot_1: ok  seed=11" in out.stdout  # result
        bad = subprocess.run(
            [*ENPIRE, "reset", "--robot", "robot_7", "--timeout", "120"],
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert bad.returncode == 1
        assert "error_code=101" in bad.stdout and "unknown robot 'robot_7'" in bad.stdout
        assert launch.poll() is None, "the node must survive a bad goal"
    finally:
        launch.send_signal(2)
        try:
            launch.wait(20)
        except subprocess.TimeoutExpired:
            launch.kill()


def test_nodes_on_other_domains_are_invisible(ros_domain, monkeypatch):
    with NodeProcess("enpire_env.env_node") as node:
        assert node.wait_for_output("reset server ready")
        monkeypatch.setenv("ROS_DOMAIN_ID", str((ros_domain % 96) + 1 + 100))
        out = subprocess.run(
            [*ENPIRE, "reset", "--timeout", "3"], capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 2
        assert "no Reset action server" in out.stderr

"""run_node, the nodes' main(): how a node's process ends."""

import subprocess
import sys

import pytest

# a node whose executor fails to build its wait set, after (or without) a shutdown of its
# context, as rclpy's executor does when a signal shuts the context down at that moment
SCRIPT = """
import sys
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from enpire_env import node_utils

def spin(self):
    if sys.argv[1] == "shutdown":
        rclpy.shutdown()
    raise _rclpy.RCLError("failed to initialize wait set: the given context is not valid")

SingleThreadedExecutor.spin = spin
node_utils.run_node(lambda: rclpy.create_node("run_node_probe"), 1)
print("ended")
"""


@pytest.mark.parametrize("shutdown", [True, False])
def test_a_context_shut_down_under_the_executor_ends_the_node_quietly(ros_domain, shutdown):
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, "shutdown" if shutdown else "error"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if shutdown:  # the end of a node stopped by Ctrl-C / SIGTERM: no traceback
        assert out.returncode == 0 and "ended" in out.stdout, out.stderr
        assert "Traceback" not in out.stderr
    else:  # the same error with the context alive is a real one
        assert out.returncode != 0 and "RCLError" in out.stderr

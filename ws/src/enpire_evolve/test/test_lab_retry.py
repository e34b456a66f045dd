"""The evolve node's lab copes with a rollout node that dies mid-goal: it notices within
seconds, waits for the restarted node and sends the goal again, and the agent gets a full
result (the seeds run again)."""

from __future__ import annotations

import signal
import threading
import time

import pytest
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node

from enpire_env.testing import one_cell, rollout_node, running
from enpire_evolve.evolve_node import RosLab
from enpire_rollout.ledger import Ledger

pytestmark = pytest.mark.xdist_group("lab_retry_graph")


def _rollout_node(data):
    return rollout_node(data, 8.0, "reset_mode:=teleport", "max_steps:=60")


@pytest.fixture(scope="module")
def fleet(ros_domain_module, ros_context_module, tmp_path_factory):
    data = tmp_path_factory.mktemp("lab-retry")
    procs = {**one_cell(8.0), "rollout": _rollout_node(data)}
    with running(procs):
        yield procs, data


def test_a_goal_whose_server_died_is_sent_again_once_it_is_back(fleet, ros_context_module):
    procs, data = fleet
    node = Node("lab_retry_test", context=ros_context_module)
    executor = MultiThreadedExecutor(context=ros_context_module)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    lab = RosLab(node, "/rollout", "/train", timeout=600)
    assert lab.rollout_client.wait_for_server(timeout_sec=30)  # (no train node here)
    box = {}
    t = threading.Thread(
        target=lambda: box.setdefault("r", lab.rollout({"name": "heuristic"}, 4, 10, "agent_0"))
    )
    t.start()
    led = Ledger(data / "ledger.sqlite")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not led.query(
        "SELECT 1 FROM episodes WHERE agent_id = 'agent_0'"
    ):
        time.sleep(0.2)
    procs["rollout"].proc.kill()
    assert procs["rollout"].proc.wait() == -signal.SIGKILL
    time.sleep(2.0)  # as a launcher's respawn delay
    procs["rollout"] = _rollout_node(data)
    assert procs["rollout"].wait_for_output("ready", timeout=60)
    t.join(timeout=400)
    executor.shutdown()
    node.destroy_node()
    r = box["r"]
    assert r.error_code == 0, r.error_msg
    assert r.num_episodes == 4
    assert not led.query("SELECT id FROM goals WHERE status = 'running'")
    assert led.query("SELECT id FROM goals WHERE status = 'aborted'")  # the first attempt

"""Faults over a real ROS graph: a cell dies mid-rollout, the rollout node is killed."""

from __future__ import annotations

import signal
import threading
import time

import pytest
from action_msgs.msg import GoalStatus

from enpire_env.goal_liveness import ServerGoneError
from enpire_env.testing import NodeProcess, call_action, running
from enpire_msgs.action import Rollout
from enpire_msgs.msg import PolicyRef
from enpire_policy.lerobot_dataset import read_episodes
from enpire_rollout.ledger import Ledger

pytestmark = pytest.mark.xdist_group("rollout_faults_graph")
ROBOTS = ["robot_0", "robot_1"]
TIME_SCALE = 4.0


def _cell(robot, seed=0):
    return NodeProcess("enpire_env.sim_cell_node", [
        "-r", f"__ns:=/{robot}", "-p", f"time_scale:={TIME_SCALE}", "-p", f"seed:={seed}",
        "-p", "camera_hz:=2.0", "-p", "camera_size:=64",
    ])  # fmt: skip


def _rollout_node(data):
    return NodeProcess("enpire_rollout.rollout_node", [
        "-p", "robots:=[robot_0, robot_1]", "-p", f"data_dir:={data}",
        "-p", f"time_scale:={TIME_SCALE}", "-p", "cell_timeout:=2.0", "-p", "video_size:=0",
        "-p", "mcap_image_every:=0",
    ])  # fmt: skip


@pytest.fixture(scope="module")
def fleet(ros_domain_module, ros_context_module, tmp_path_factory):
    data = tmp_path_factory.mktemp("faults-data")
    procs = {r: _cell(r, i) for i, r in enumerate(ROBOTS)}
    procs["env"] = NodeProcess("enpire_env.env_node", ["-p", "robots:=[robot_0, robot_1]",
                                                        "-p", "cell_timeout:=2.0"])  # fmt: skip
    procs["rollout"] = _rollout_node(data)
    with running(procs):
        yield procs, data


def goal(n, seed, robots=()):
    return Rollout.Goal(policy=PolicyRef(name="heuristic"), task="pusht", num_episodes=n,
                        seed=seed, agent_id="a", robot_ids=list(robots))  # fmt: skip


def _wait_running(led: Ledger, robot: str, timeout=60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = led.query("SELECT * FROM robot_intervals WHERE robot_id = ? AND state = 'episode'"
                         " AND t_end IS NULL", (robot,))  # fmt: skip
        if rows:
            return
        time.sleep(0.1)
    raise TimeoutError(f"{robot} never started an episode")


def test_a_dead_cell_does_not_stop_the_goal_and_rejoins(fleet, ros_context_module):
    procs, data = fleet
    led = Ledger(data / "ledger.sqlite")
    box = {}
    t = threading.Thread(target=lambda: box.setdefault("c", call_action(
        ros_context_module, Rollout, "/rollout", [goal(4, 100)], timeout=400)[0]))  # fmt: skip
    t.start()
    _wait_running(led, "robot_1")
    procs["robot_1"].stop()  # the cell dies mid-episode
    t.join()
    c = box["c"]
    assert c.status == GoalStatus.STATUS_SUCCEEDED, c.result.error_msg
    assert c.result.num_episodes == 4
    rows = led.episodes()
    assert any(r["robot_id"] == "robot_1" and r["status"] == "interrupted" for r in rows)
    done = [r for r in rows if r["id"] in set(c.result.episode_ids)]
    assert sorted(r["seed"] for r in done) == [100, 101, 102, 103]  # the lost seed re-ran
    # the cell comes back and rejoins the rotation
    procs["robot_1"] = _cell("robot_1", 5)
    assert procs["robot_1"].wait_for_output("ready", timeout=60)
    (c2,) = call_action(ros_context_module, Rollout, "/rollout", [goal(1, 200, ["robot_1"])],
                        timeout=300)  # fmt: skip
    assert c2.status == GoalStatus.STATUS_SUCCEEDED, c2.result.error_msg
    assert led.episodes(goal_id=None)[-1]["robot_id"] == "robot_1"


def test_killing_the_rollout_node_loses_no_finished_episode(fleet, ros_context_module):
    procs, data = fleet
    led = Ledger(data / "ledger.sqlite")
    before = {r["id"]: r for r in led.episodes()}
    box = {}

    def client():
        try:
            box["c"] = call_action(ros_context_module, Rollout, "/rollout", [goal(20, 300)],
                                   timeout=300)  # fmt: skip
        except ServerGoneError as e:  # the client notices the dead server by itself
            box["error"], box["t"] = e, time.monotonic()

    t = threading.Thread(target=client)
    t.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(led.episodes()) < len(before) + 2:
        time.sleep(0.2)
    finished = {r["id"]: r for r in led.episodes()}
    assert len(finished) >= len(before) + 2
    procs["rollout"].proc.kill()  # SIGKILL mid-rollout
    t_kill = time.monotonic()
    assert procs["rollout"].proc.wait() == -signal.SIGKILL  # the kill did happen
    t.join(timeout=60)
    assert "c" not in box, "a result came from a killed server"
    assert "error" in box, "the client did not notice the dead server"
    assert box["t"] - t_kill <= 10.5, box["t"] - t_kill
    assert "stopped answering" in str(box["error"])
    procs["rollout"] = _rollout_node(data)
    assert procs["rollout"].wait_for_output("ready", timeout=60)
    led2 = Ledger(data / "ledger.sqlite")
    after = {r["id"]: r for r in led2.episodes()}
    assert set(finished) <= set(after)  # every finished row survived
    for r in finished.values():
        if r["dataset"]:
            idx = {e["episode_index"] for e in read_episodes(r["dataset"])}
            assert r["dataset_index"] in idx
    assert not led2.query("SELECT * FROM robot_intervals WHERE t_end IS NULL")
    # the goal that was running when the node died is closed, with the reason
    assert not led2.query("SELECT * FROM goals WHERE status = 'running'")
    aborted = led2.query("SELECT result FROM goals WHERE status = 'aborted'")
    assert aborted and "stopped while the goal ran" in aborted[-1]["result"]
    # the same kind of client copes with the restarted server (a request the dead one
    # swallowed is sent again): no retry loop here
    (c,) = call_action(ros_context_module, Rollout, "/rollout", [goal(1, 400)], timeout=150)
    assert c.status == GoalStatus.STATUS_SUCCEEDED, c.result.error_msg  # serves again

"""The Rollout action over a real ROS graph: sim cells, safety filters, the EN node and the
rollout node as processes; clients in the test."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from action_msgs.msg import GoalStatus

from enpire_env.testing import NodeProcess, call_action, running
from enpire_msgs.action import Rollout
from enpire_msgs.msg import PolicyRef
from enpire_policy.lerobot_dataset import read_episode_frames, read_episodes, read_frames
from enpire_rollout.ledger import Ledger
from enpire_rollout.mcap_log import read_messages
from enpire_rollout.rollout_core import RolloutErrorCode

pytestmark = pytest.mark.xdist_group("rollout_graph")
ROBOTS = ["robot_0", "robot_1", "robot_2", "robot_3"]
TIME_SCALE = 4.0


def _cell(robot, seed):
    return NodeProcess(
        "enpire_env.sim_cell_node",
        [
            "-r",
            f"__ns:=/{robot}",
            "-p",
            f"time_scale:={TIME_SCALE}",
            "-p",
            f"seed:={seed}",
            "-p",
            "camera_hz:=10.0",
            "-p",
            "camera_size:=96",
        ],
    )


@pytest.fixture(scope="module")
def fleet(ros_domain_module, ros_context_module, tmp_path_factory):
    data = tmp_path_factory.mktemp("rollout-data")
    robots_param = "robots:=[" + ", ".join(ROBOTS) + "]"
    procs = {r: _cell(r, i) for i, r in enumerate(ROBOTS)}
    procs["env"] = NodeProcess(
        "enpire_env.env_node", ["-p", robots_param, "-p", "cell_timeout:=2.0"]
    )
    procs["rollout"] = NodeProcess(
        "enpire_rollout.rollout_node",
        [
            "-p",
            robots_param,
            "-p",
            f"data_dir:={data}",
            "-p",
            f"time_scale:={TIME_SCALE}",
            "-p",
            "cell_timeout:=2.0",
            "-p",
            "video_size:=48",
        ],
    )
    procs["train"] = NodeProcess(
        "enpire_policy.train_node", ["-p", f"artifacts_dir:={data / 'artifacts'}"]
    )
    with running(procs):
        yield procs, data


def goal(n, agent, seed, **kw):
    g = Rollout.Goal(
        policy=PolicyRef(name=kw.pop("name", "heuristic")),
        task="pusht",
        num_episodes=n,
        seed=seed,
        agent_id=agent,
    )
    for k, v in kw.items():
        setattr(g, k, v)
    return g


def test_two_clients_share_four_cells_and_everything_is_recorded(fleet, ros_context_module):
    _procs, data = fleet
    results = {}

    def client(agent, seed):
        (c,) = call_action(
            ros_context_module, Rollout, "/rollout", [goal(3, agent, seed)], timeout=400
        )
        results[agent] = c

    threads = [threading.Thread(target=client, args=(a, s)) for a, s in (("a0", 10), ("a1", 20))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    led = Ledger(data / "ledger.sqlite")
    robots_used = set()
    for agent, c in results.items():
        r = c.result
        assert c.status == GoalStatus.STATUS_SUCCEEDED, r.error_msg
        assert r.num_episodes == 3 and len(r.episode_ids) == 3
        assert r.ci_low <= r.success_rate <= r.ci_high
        assert c.feedback and c.feedback[-1].episodes_total == 3
        rows = [led.episodes()[i] for i in range(len(led.episodes()))]
        mine = [x for x in rows if x["id"] in set(r.episode_ids)]
        assert len(mine) == 3 and all(x["agent_id"] == agent for x in mine)
        assert sorted(x["seed"] for x in mine) == [10, 11, 12] if agent == "a0" else [20, 21, 22]
        robots_used |= {x["robot_id"] for x in mine}
        print("episodes", agent, [(x["status"], x["steps"], x["robot_id"]) for x in mine])
        for e in r.episodes:  # every field of the episode results is filled
            assert e.recording_path == next(x["mcap"] for x in mine if x["id"] == e.episode_id)
            assert e.task == "pusht" and e.wall_seconds > 0 and e.robot_id
        for x in mine:
            msgs = read_messages(x["mcap"])
            topics = {t for t, _, _ in msgs}
            assert f"/{x['robot_id']}/joint_states" in topics
            assert f"/{x['robot_id']}/policy/joint_trajectory" in topics
            # each command logged at the cell time of the state it answers (its own stamp is
            # 0, "start now"), so the log plays in order
            states = {ns for t, _, ns in msgs if t.endswith("/joint_states")}
            commands = [ns for t, _, ns in msgs if t.endswith("/policy/joint_trajectory")]
            assert commands and set(commands) <= states and min(commands) > 0
            eps = {e["episode_index"]: e for e in read_episodes(x["dataset"])}
            ep = eps[x["dataset_index"]]
            assert ep["length"] == len(read_episode_frames(x["dataset"], x["dataset_index"]))
            frames = read_frames(x["dataset"], [x["dataset_index"]])
            assert frames["observation.state"].shape[1] == 5
            assert bool(ep["success"]) == bool(x["success"])
        assert r.num_successes >= 2, [
            (x["status"], x["steps"], x["robot_id"], x["error"][:80]) for x in mine
        ]
    assert len(robots_used) >= 3  # the work spread over the fleet
    intervals = led.intervals(0)
    assert {iv["state"] for iv in intervals} >= {"reset", "episode"}


def test_bad_goals_are_rejected_with_codes(fleet, ros_context_module):
    goals = [
        goal(1, "a", 0, name="no_such_policy"),
        goal(1, "a", 0, task="stack"),
        goal(1, "a", 0, robot_ids=["robot_9"]),
        goal(0, "a", 0),
        goal(1, "a", 0, time_budget=0.01),
        goal(1, "a", 0, policy=PolicyRef(repo_path="/nonexistent")),
    ]
    calls = call_action(ros_context_module, Rollout, "/rollout", goals, timeout=60)
    assert [c.result.error_code for c in calls] == [
        RolloutErrorCode.UNKNOWN_POLICY,
        RolloutErrorCode.UNKNOWN_TASK,
        RolloutErrorCode.UNKNOWN_ROBOT,
        RolloutErrorCode.INVALID_EPISODE_COUNT,
        RolloutErrorCode.BUDGET_INFEASIBLE,
        RolloutErrorCode.UNKNOWN_POLICY,
    ], [c.result.error_msg for c in calls]
    assert all(c.status == GoalStatus.STATUS_ABORTED and c.result.error_msg for c in calls)
    assert np.all([c.accepted for c in calls])


def test_one_reset_client_serves_the_fleet(fleet, ros_context_module):
    """The rollout node takes EN's reset feedback and status once, not once per robot (each
    client of an action takes every goal's messages: four clients woke four times)."""
    import time

    from rclpy.node import Node

    node = Node("test_reset_clients", context=ros_context_module)
    try:
        counts = {}
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            counts = {
                t: sum(
                    1
                    for e in node.get_subscriptions_info_by_topic(f"/reset/_action/{t}")
                    if e.node_name == "rollout_node"
                )
                for t in ("feedback", "status")
            }
            if all(counts.values()):
                break
            time.sleep(0.2)
        assert counts == {"feedback": 1, "status": 1}, counts
    finally:
        node.destroy_node()


def test_fleet_metrics_agree_with_the_ledger(fleet, ros_context_module):
    """/fleet/metrics (1 Hz while subscribed): every robot, the episodes the ledger holds, MRU
    the mean of the robots' utilisation."""
    import time

    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

    from enpire_msgs.msg import FleetMetrics

    _procs, data = fleet
    node = Node("test_fleet_metrics", context=ros_context_module)
    executor = SingleThreadedExecutor(context=ros_context_module)
    executor.add_node(node)
    got: list = []
    node.create_subscription(FleetMetrics, "/fleet/metrics", got.append, 10)
    try:
        deadline = time.monotonic() + 15.0
        while len(got) < 2 and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.2)
    finally:
        executor.shutdown()
        node.destroy_node()
    assert len(got) >= 2, "no /fleet/metrics"
    m = got[-1]
    done = [e for e in Ledger(data / "ledger.sqlite").episodes() if e["status"] != "interrupted"]
    assert list(m.robot_ids) == ROBOTS and m.num_robots == len(ROBOTS)
    assert m.episodes_total == len(done)
    assert len(m.robot_utilisation) == len(ROBOTS)
    assert 0.0 <= m.mru <= 1.0 and 0.0 <= m.mru_window <= 1.0
    assert m.mru == pytest.approx(sum(m.robot_utilisation) / len(ROBOTS))
    if done:  # the first test's episodes kept robots busy
        assert m.mru > 0.0


def test_parameter_search_evaluates_candidates_through_rollout_goals(fleet, ros_context_module):
    import json

    from enpire_msgs.action import Train
    from enpire_policy.artifacts import load_manifest

    _procs, data = fleet
    hp = {"evaluator": "rollout", "iterations": 1, "population": 2, "episodes": 2}
    g = Train.Goal(
        recipe="heuristic_search",
        task="pusht",
        hyperparameters=json.dumps(hp),
        policy=PolicyRef(name="heuristic", agent_id="searcher"),
    )
    (c,) = call_action(ros_context_module, Train, "/train", [g], timeout=400)
    assert c.status == GoalStatus.STATUS_SUCCEEDED, c.result.error_msg
    m = load_manifest(c.result.artifact_path)
    assert 0.0 <= m["metrics"]["best_success_rate"] <= 1.0
    led = Ledger(data / "ledger.sqlite")
    rows = [r for r in led.episodes() if r["agent_id"] == "searcher"]
    assert len(rows) == 4  # 2 candidates x 2 episodes, run on the fleet
    assert all("candidates" in json.loads(r["policy"])["artifact"] for r in rows)


def test_an_mcp_client_runs_a_rollout_on_the_fleet(fleet, tmp_path):
    """`enpire mcp --lab ros`: an agent's tool calls become Rollout goals on this fleet, and
    its submitted experiments are taken from the ledger's queue by the rollout node."""
    import subprocess

    import anyio

    from enpire_env.testing import mcp_session, tool_json

    _procs, data = fleet
    repo = tmp_path / "agent"
    (repo / "tests").mkdir(parents=True)
    (repo / "policy.py").write_text(
        "from enpire_policy.heuristic import HeuristicPushT\n\n\n"
        "def make_policy():\n    return HeuristicPushT()\n"
    )
    (repo / "tests" / "test_policy.py").write_text("def test_ok():\n    pass\n")

    def git(*a):
        subprocess.run(
            ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *a],
            check=True,
            capture_output=True,
        )

    git("init", "-q", "-b", "main")
    git("add", "-A")
    git("commit", "-qm", "start")
    base = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    (repo / "tests" / "test_policy.py").write_text("")
    git("commit", "-qam", "drop the checks")

    async def main():
        args = (
            "--lab",
            "ros",
            "--agent",
            "mcp-a",
            "--data-dir",
            str(data),
            "--repo",
            str(repo),
            "--base",
            base,
        )
        async with mcp_session(*args) as s:
            out = tool_json(
                await s.call_tool(
                    "rollout", {"episodes": 2, "seed": 40, "policy": {"name": "heuristic"}}
                )
            )
            score = tool_json(await s.call_tool("score", {"window": 10}))
            refused = await s.call_tool("submit_experiment", {"commit": "HEAD", "episodes": 2})
            sub = tool_json(
                await s.call_tool(
                    "submit_experiment",
                    {"commit": base, "episodes": 2, "seed": 60, "module": "policy.py"},
                )
            )
            done = tool_json(await s.call_tool("wait_experiment", {"experiment_id": sub["id"]}))
            return out, score, refused, done

    out, score, refused, done = anyio.run(main)
    assert refused.is_error and "tests/test_policy.py" in refused.content[0].text
    assert done["status"] == "done" and done["episodes_done"] == 2, done
    assert out["episodes"] == 2 and out["error_code"] == 0, out
    led = Ledger(data / "ledger.sqlite")
    eps = led.query("SELECT seed, mcap FROM episodes WHERE agent_id = 'mcp-a'")
    assert sorted(e["seed"] for e in eps) == [40, 41, 60, 61]
    assert all(e["mcap"].endswith(".mcap") for e in eps)
    assert score["episodes"] == 2 and score["successes"] == round(2 * out["success_rate"])
    rows = led.query("SELECT tool, outcome FROM tool_calls WHERE agent_id = 'mcp-a' ORDER BY id")
    assert [r["tool"] for r in rows] == [
        "rollout",
        "score",
        "submit_experiment",
        "submit_experiment",
        "wait_experiment",
    ]
    assert rows[2]["outcome"].startswith("ToolError") and rows[3]["outcome"] == "ok"

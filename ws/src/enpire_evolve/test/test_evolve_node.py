"""The evolve node over a real ROS graph: sim cells, safety filters, EN, PI (train_node) and R
(rollout_node) as processes; offline agents reach them through Train and Rollout goals. The
evolve node is SIGKILLed mid-run and restarted: it resumes from the ledger and git."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from enpire_env.testing import NodeProcess, TopicProbe, running
from enpire_evolve.status_msg import from_msg
from enpire_msgs.msg import EvolveStatus
from enpire_rollout.ledger import Ledger

pytestmark = pytest.mark.xdist_group("evolve_graph")
ROBOTS = ["robot_0", "robot_1"]
TIME_SCALE = 5.0


def _evolve(data: Path, max_experiments: int) -> NodeProcess:
    return NodeProcess("enpire_evolve.evolve_node", [
        "-p", f"data_dir:={data}", "-p", "run_id:=night", "-p", "agents:=2",
        "-p", "screen_episodes:=2", "-p", "confirm_episodes:=4", "-p", "confirm_chunk:=2",
        "-p", f"max_experiments:={max_experiments}", "-p", "train_every:=2",
        "-p", "train_budget:=40.0", "-p", "wall_budget:=400.0",
    ])  # fmt: skip


def test_evolve_node_runs_agents_on_the_fleet_resumes_after_a_kill_and_reports(
    ros_domain, ros_context, tmp_path
):
    data = tmp_path / "data"
    robots_param = "robots:=[" + ", ".join(ROBOTS) + "]"
    procs = {
        r: NodeProcess(
            "enpire_env.sim_cell_node",
            [
                "-r",
                f"__ns:=/{r}",
                "-p",
                f"time_scale:={TIME_SCALE}",
                "-p",
                f"seed:={i}",
                "-p",
                "camera_hz:=5.0",
                "-p",
                "camera_size:=96",
            ],
        )
        for i, r in enumerate(ROBOTS)
    }
    procs["env"] = NodeProcess("enpire_env.env_node", ["-p", robots_param])
    procs["rollout"] = NodeProcess("enpire_rollout.rollout_node", [
        "-p", robots_param, "-p", f"data_dir:={data}", "-p", f"time_scale:={TIME_SCALE}",
        "-p", "video_size:=48", "-p", "confirm_episodes:=4", "-p", "confirm_chunk:=2",
    ])  # fmt: skip
    procs["train"] = NodeProcess("enpire_policy.train_node",
                                 ["-p", f"artifacts_dir:={data / 'artifacts'}"])  # fmt: skip
    procs["evolve"] = _evolve(data, max_experiments=2)
    with running(procs, timeout=90):
        ledger = Ledger(data / "ledger.sqlite")
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:  # the first finished experiment
            if ledger.query("SELECT id FROM agent_steps WHERE outcome IN ('kept', 'discarded',"
                            " 'tests_failed')"):  # fmt: skip
                break
            time.sleep(0.5)
        else:
            pytest.fail("no experiment finished:\n" + procs["evolve"].output[-3000:])
        os.killpg(procs["evolve"].proc.pid, signal.SIGKILL)
        procs["evolve"].proc.wait()
        before = ledger.agent_steps("night")
        procs["evolve2"] = _evolve(data, max_experiments=2)
        probe = TopicProbe(ros_context)
        from rclpy.qos import DurabilityPolicy, QoSProfile

        qos = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        probe.node.create_subscription(
            EvolveStatus, "/evolve/status", lambda m: probe._latest.__setitem__("s", m), qos
        )
        assert procs["evolve2"].wait_for_output("done:", timeout=420), procs["evolve2"].output
        status = None
        t_end = time.monotonic() + 20
        while time.monotonic() < t_end:
            m = probe.latest("s")
            if m is not None and m.state == "done":
                status = from_msg(m)
                break
            time.sleep(0.2)
        probe.close()
    after = ledger.agent_steps("night")
    assert after[: len(before)] == before  # nothing finished was lost
    assert [r["outcome"] for r in after].count("baseline") == 2  # not redone on restart
    # each agent does its 2 experiments, unless the fleet confirms a candidate first (its
    # idle robots confirm the best one on fresh seeds): then the run ends at its goal
    goal = ((status or {}).get("outcome") or {}).get("reason") == "goal"
    if goal:
        assert [r for r in after if r["outcome"] == "confirmed"], after
    for agent in ("agent_0", "agent_1"):
        exps = [r for r in after if r["agent_id"] == agent
                and r["outcome"] in ("kept", "discarded", "tests_failed")]  # fmt: skip
        assert len(exps) <= 2 if goal else len(exps) == 2, after
    # every screening episode is in the ledger with its recording
    ids = [i for r in after for i in json.loads(r["details"] or "{}").get("episode_ids", [])]
    assert ids
    eps = ledger.query(f"SELECT * FROM episodes WHERE id IN ({','.join('?' * len(ids))})",
                       tuple(ids))  # fmt: skip
    assert len(eps) == len(set(ids)) and all(Path(e["mcap"]).is_file() for e in eps)
    assert status is not None and status["state"] == "done", status
    html = Path(status["report"]["html"])
    assert html.is_file() and "data:image/png;base64," in html.read_text()
    md = Path(status["report"]["markdown"]).read_text()
    assert "morning report" in md and "| agent_0 | baseline |" in md

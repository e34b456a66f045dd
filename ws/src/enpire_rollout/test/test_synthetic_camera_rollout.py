"""A fleet rollout with the cell seen through its synthetic camera over a real ROS graph: EN
resets from the calibrated camera's frames, the policy's block pose comes from the cell's
camera perception through the same calibration, R records the episodes."""

from __future__ import annotations

import pytest
from action_msgs.msg import GoalStatus

from enpire_env.perception import calibrate_synthetic
from enpire_env.testing import NodeProcess, call_action, rollout_node, running
from enpire_msgs.action import Rollout
from enpire_msgs.msg import PolicyRef
from enpire_rollout.ledger import Ledger


@pytest.fixture(scope="module")
def calibration_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("calibration")
    calibrate_synthetic(out, ["robot_0"])  # the cells' default camera
    return out


def test_rollout_through_the_synthetic_camera(ros_domain, ros_context, calibration_dir,
                                              tmp_path):  # fmt: skip
    data = tmp_path / "data"
    procs = {
        "cell": NodeProcess(
            "enpire_env.sim_cell_node",
            [
                "-r",
                "__ns:=/robot_0",
                "-p",
                "time_scale:=1.0",
                "-p",
                "seed:=3",
                "-p",
                "camera_hz:=5.0",
                "-p",
                "camera_model:=synthetic",
                "-p",
                "perception:=camera",
                "-p",
                f"calibration_dir:={calibration_dir}",
            ],
        ),  # fmt: skip
        "env": NodeProcess(
            "enpire_env.env_node",
            [
                "-p",
                "robots:=[robot_0]",
                "-p",
                f"calibration_dir:={calibration_dir}",
            ],
        ),  # fmt: skip
        "rollout": rollout_node(data, 1.0),
    }
    with running(procs):
        goal = Rollout.Goal(policy=PolicyRef(name="heuristic"), task="pusht", num_episodes=2,
                            seed=40, agent_id="camera")  # fmt: skip
        (c,) = call_action(ros_context, Rollout, "/rollout", [goal], timeout=400)
        r = c.result
        assert c.status == GoalStatus.STATUS_SUCCEEDED, r.error_msg
        assert r.num_episodes == 2 and len(r.episode_ids) == 2
        rows = [x for x in Ledger(data / "ledger.sqlite").episodes() if x["agent_id"] == "camera"]
        print([(x["status"], x["steps"], x["success"], x["error"][:80]) for x in rows])
        assert len(rows) == 2 and not any(x["error"] for x in rows)
        assert r.num_successes >= 1  # the heuristic pushes from the camera's block poses

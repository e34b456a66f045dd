"""A sim cell that publishes its synthetic (tilted, distorted, noisy) camera, read by EN
through the cell's calibration, over a real ROS graph: a pick-and-place reset verified from
those frames, and the cell's camera perception from the same calibration."""

import numpy as np
import pytest
from action_msgs.msg import GoalStatus

from enpire_env.calibration import CameraCalibration, calibration_path
from enpire_env.capture import capture
from enpire_env.perception import calibrate_synthetic
from enpire_env.testing import NodeProcess, TopicProbe, call_action
from enpire_msgs.action import Reset
from enpire_msgs.msg import BlockPose, SimGroundTruth


@pytest.fixture(scope="module")
def calibration_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("calibration")
    calibrate_synthetic(out, ["robot_0"])  # the cells' default camera
    return out


def test_reset_and_perception_through_the_synthetic_camera(ros_domain, ros_context,
                                                           calibration_dir):  # fmt: skip
    cell = NodeProcess("enpire_env.sim_cell_node", [
        "-r", "__ns:=/robot_0", "-p", "time_scale:=10.0", "-p", "seed:=2",
        "-p", "camera_hz:=2.0", "-p", "camera_model:=synthetic", "-p", "perception:=camera",
        "-p", f"calibration_dir:={calibration_dir}",
    ])  # fmt: skip
    env = NodeProcess("enpire_env.env_node", [
        "-p", "robots:=[robot_0]", "-p", f"calibration_dir:={calibration_dir}",
    ])  # fmt: skip
    probe = TopicProbe(ros_context)
    try:
        for p in (cell, env):
            assert p.wait_for_output("ready", timeout=60), p.output
        assert "robot_0: camera read as calibrated camera 640x480" in env.output
        (call,) = call_action(ros_context, Reset, "/reset",
                              [Reset.Goal(robot_id="robot_0", task="pusht", seed=5)],
                              timeout=120)  # fmt: skip
        assert call.status == GoalStatus.STATUS_SUCCEEDED, call.result.error_msg
        r = call.result
        assert r.success, r.error_msg
        probe.watch("/robot_0/sim/ground_truth", SimGroundTruth, qos=1)
        probe.watch("/robot_0/perception/block_pose", BlockPose, qos=1)
        truth = probe.wait_for("/robot_0/sim/ground_truth", timeout=30)
        assert np.hypot(*(np.array(r.verified_state[:2]) - truth.block_pose[:2])) < 3.0
        seen = probe.wait_for("/robot_0/perception/block_pose", lambda m: m.visible, timeout=30)
        assert seen.source == "camera"
        truth = probe.latest("/robot_0/sim/ground_truth")
        assert np.hypot(seen.x - truth.block_pose[0], seen.y - truth.block_pose[1]) < 3.0
        # a real cell's calibration frames come from its camera topic the same way
        frames = list(capture("ros:/robot_0/camera/image_raw", count=2, interval=0.1))
        assert [f.shape for f in frames] == [(480, 640, 3)] * 2
        calib = CameraCalibration.load(calibration_path(calibration_dir, "robot_0"))
        assert calib.validate(frames[-1])["rms_px"] < 1.5
    finally:
        probe.close()
        for p in (env, cell):
            p.stop()
        print("\n".join(f"--- {p.module}\n{p.output[-3000:]}" for p in (env, cell)))

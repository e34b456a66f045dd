"""The robot port contract, as Gymnasium's ``check_env`` is for environments: the same cases
against both adapters the rollout service drives, the in-process simulated cell (SimRobot)
and the ROS robot (RobotLink: a sim cell node with its safety filter, and EN, in their own
processes, over DDS), the latter reading the cell's one-message cell_state ("ros") and, as for
a cell of standard topics only, joint_states and perception/block_pose ("ros_topics")."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from enpire_env.tasks import PUSHT
from enpire_env.testing import running, sim_cell
from enpire_policy.episode import TipControl, run_on_port
from enpire_policy.interface import Action
from enpire_rollout.rollout_service import FleetRobot, SimRobot

pytestmark = pytest.mark.xdist_group("robot_port_contract")
OBS_KEYS = {"tip", "tip_height", "joints", "step", "dt", "goal_pose", "block_pose"}


@pytest.fixture(scope="module")
def ros_links(ros_domain_module, ros_context_module):
    """Two ROS robots of one fleet (one EN for both): robot_0's cell offers cell_state,
    robot_1's only the standard topics."""
    import rclpy
    from rclpy.executors import MultiThreadedExecutor

    from enpire_env.kinematics import So101Kinematics
    from enpire_env.node_utils import StreamNode
    from enpire_env.sim_cell import CellConfig
    from enpire_env.testing import NodeProcess
    from enpire_rollout.robot_link import RobotLink

    procs = {
        "cell_0": sim_cell(4.0, "robot_0"),
        "cell_1": sim_cell(4.0, "robot_1", "cell_state:=false"),
        "env": NodeProcess("enpire_env.env_node", ["-p", "robots:=[robot_0, robot_1]"]),
    }
    with running(procs):
        node = rclpy.create_node("port_contract", context=ros_context_module)
        executor = MultiThreadedExecutor(4, context=ros_context_module)
        executor.add_node(node)
        threading.Thread(target=executor.spin, daemon=True).start()
        streams = StreamNode(node)
        links = {
            r: RobotLink(
                node,
                r,
                None,
                So101Kinematics(),
                CellConfig(),
                True,
                streams,
                0.1,
                5.0,
                "teleport",
                60.0,
            )  # fmt: skip
            for r in ("robot_0", "robot_1")
        }
        deadline = time.monotonic() + 10  # the cells' publishers are known before the tests
        while time.monotonic() < deadline and not all(
            node.count_publishers(f"/{r}/joint_states") for r in links
        ):
            time.sleep(0.1)
        assert node.count_publishers("/robot_0/cell_state") == 1
        assert node.count_publishers("/robot_1/cell_state") == 0
        yield links
        for link in links.values():
            link.close()
        streams.close()
        executor.shutdown()
        node.destroy_node()


@pytest.fixture(params=["sim", "ros", "ros_topics"])
def robot(request) -> FleetRobot:
    if request.param == "sim":
        robot = SimRobot("robot_0")
    else:
        links = request.getfixturevalue("ros_links")
        robot = links["robot_0" if request.param == "ros" else "robot_1"]
    assert isinstance(robot, FleetRobot)
    robot.open()
    assert robot.wait_alive(5.0)
    yield robot
    robot.close()


def test_reset_puts_the_seeds_start_state_in_place(robot):
    r = robot.reset(7)
    assert r.ok, r.error
    robot.start()
    obs = robot.observe(0)
    assert set(obs) >= OBS_KEYS
    assert len(obs["tip"]) == 2 and len(obs["joints"]) == 6 and len(obs["goal_pose"]) == 3
    assert obs["block_pose"] is not None
    assert np.allclose(obs["block_pose"][:2], PUSHT.sample_start_state(7)[:2], atol=5.0)
    assert 0.0 <= robot.coverage(obs) <= 1.0


def test_a_commanded_advance_is_one_control_period_of_cell_time(robot):
    t0 = robot.start()
    robot.command(robot.joints())
    t1 = robot.advance()
    robot.command(robot.joints())
    t2 = robot.advance()
    # a ROS cell keeps its own real-time clock: a test process starved of CPU (the full suite
    # on 2 cores) may see a later tick than the next one; the clock must still move on, by
    # periods, without jumps
    most = 3 * robot.dt if isinstance(robot, SimRobot) else 10 * robot.dt
    assert 0.5 * robot.dt <= t1 - t0 <= most
    assert 0.5 * robot.dt <= t2 - t1 <= most


def test_commands_move_the_tip_towards_the_target(robot):
    assert robot.reset(3).ok
    ctrl = TipControl(robot.kin, robot.cell_cfg)
    robot.start()
    start = np.array(robot.observe(0)["tip"])
    target = start + np.array([0.0, -60.0])
    for _ in range(25):
        robot.command(ctrl.joints(Action(tip=tuple(target), lift=True), robot.joints()))
        robot.advance()
    end = np.array(robot.observe(25)["tip"])
    assert np.linalg.norm(end - target) < 0.5 * np.linalg.norm(start - target)
    robot.hold()


def test_camera_frames_come_at_the_asked_size(robot):
    robot.start()
    img = robot.image(48)
    assert img is not None and img.shape == (48, 48, 3) and img.dtype == np.uint8


def test_in_process_video_is_the_camera_frame_shrunk_as_from_a_ros_cell():
    """A SimRobot records what RobotLink records of a sim cell's camera frame (camera_size 256,
    shrunk to the video's side): datasets from a local lab and a fleet hold the same pixels,
    those a camera policy sees when it shrinks its camera frame."""
    import cv2

    robot = SimRobot("local")
    assert robot.reset(3).ok
    frame = robot.cell.render(256)
    want = cv2.resize(frame, (96, 96), interpolation=cv2.INTER_AREA)
    assert np.array_equal(robot.image(96), want)


def test_a_cell_offering_cell_state_video_sends_each_frame_with_its_step(ros_links):
    """Recording video from a cell that offers cell_state/video, the link reads that one
    topic (not camera/image_raw beside cell_state): each step's frame comes in the message of
    the step, before its joint states."""
    link = ros_links["robot_0"]
    seen: list = []
    link.listeners.append(lambda topic, msg: seen.append((topic, msg.header.stamp)))
    try:
        link.open()
        assert link.wait_alive(5.0)
        node = link.node
        assert node.count_subscribers("/robot_0/cell_state/video") == 1
        assert node.count_subscribers("/robot_0/camera/image_raw") == 0
        link.start()
        for _ in range(12):
            link.command(link.joints())
            link.advance()
    finally:
        link.listeners.clear()
        link.close()
    frame, frames = None, 0  # the cell's camera_hz is a fifth of its control rate
    for topic, stamp in seen:
        if topic == "camera/image_raw":
            frame = stamp
        elif topic == "joint_states":
            assert frame in (None, stamp), seen
            frames += frame is not None
            frame = None
    assert frames >= 2


class _Broken:
    def act(self, obs):
        return {"tip": [1 / 0, 0]}


class _Still:
    def act(self, obs):
        return {"tip": obs["tip"], "lift": True}


def test_a_policy_error_ends_the_episode_with_its_traceback(robot):
    out = run_on_port(robot, _Broken(), 0, max_steps=20)
    assert out.outcome == "policy_error" and not out.success
    assert "ZeroDivisionError" in out.error and "Traceback" in out.error


def test_episodes_count_steps_on_the_cell_clock_and_stop_when_asked(robot):
    out = run_on_port(robot, _Still(), 0, max_steps=6, record=True, video_size=32)
    assert out.outcome == "failure" and out.steps == 6
    assert len(out.states) == len(out.actions) == len(out.rewards) == len(out.frames)
    assert out.robot_seconds == pytest.approx(6 * robot.dt, abs=2.5 * robot.dt)
    stop = threading.Event()
    stop.set()
    assert run_on_port(robot, _Still(), 0, max_steps=6, stop=stop).outcome == "canceled"

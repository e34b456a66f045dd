"""The SO-101 Feetech bus driver against fake servos on a pseudo-terminal that speak the
protocol byte by byte (feetech-servo-sdk on one side, the fake bus on the other)."""

import json
import math

import numpy as np
import pytest

from enpire_env.feetech import (
    ADDR_GOAL,
    ADDR_PRESENT,
    ADDR_TORQUE,
    BusError,
    So101Arm,
    load_calibration,
)
from enpire_env.feetech_fake import FakeServoBus
from enpire_env.kinematics import JOINT_NAMES

# the fake servos answer from a thread of this (busy) test process: give them time
MARGIN = 250.0


@pytest.fixture()
def bus():
    with FakeServoBus(ids=range(1, 7), limits={6: (2000, 3500)}) as b:
        yield b


def test_connect_turns_torque_on_and_observes_the_joints(bus):
    bus.set_present(2, 2048 + 512)  # shoulder_lift a quarter of pi forward
    arm = So101Arm(bus.port, timeout_margin_ms=MARGIN)
    arm.connect()
    try:
        assert all(bus.register(i, ADDR_TORQUE) == 1 for i in range(1, 7))
        q = arm.observe()
        assert q.shape == (6,)
        assert q[1] == pytest.approx(math.pi / 4, abs=2e-3) and q[0] == pytest.approx(0.0)
    finally:
        arm.disconnect()
    assert all(bus.register(i, ADDR_TORQUE) == 0 for i in range(1, 7))  # limp after


def test_act_writes_goals_clipped_to_the_servo_limits(bus):
    arm = So101Arm(bus.port, timeout_margin_ms=MARGIN)
    arm.connect()
    try:
        target = np.array([0.3, -0.2, 0.1, 0.0, 1.0, 2.5])  # the gripper beyond its limit
        sent = arm.act(target)
        assert sent[:5] == pytest.approx(target[:5], abs=2e-3)
        assert bus.register(6, ADDR_GOAL) == 3500  # the servo's max angle limit
        assert sent[5] == pytest.approx((3500 - 2048) * 2 * math.pi / 4096)
        assert arm.observe() == pytest.approx(sent, abs=2e-3)  # the ideal servo got there
        with pytest.raises(ValueError):
            arm.act([0.0, math.nan, 0, 0, 0, 0])
        with pytest.raises(ValueError):
            arm.act([0.0] * 5)
    finally:
        arm.disconnect()


def test_a_servo_that_stops_answering_is_named(bus):
    arm = So101Arm(bus.port, timeout_margin_ms=MARGIN)
    arm.connect()
    try:
        bus.silence(3)
        with pytest.raises(BusError, match=r"elbow_flex \(id 3\) did not answer"):
            arm.observe()
        bus.silence(3, False)
        assert arm.observe().shape == (6,)  # back on the bus: reads work again
    finally:
        arm.disconnect()


def test_a_missing_servo_fails_connect(bus):
    bus.silence(5)
    with pytest.raises(BusError, match=r"wrist_roll \(id 5\) did not answer a ping"):
        So101Arm(bus.port, timeout_margin_ms=MARGIN).connect()


def test_a_port_that_does_not_exist():
    with pytest.raises(BusError, match="cannot open"):
        So101Arm("/dev/enpire-no-such-port").connect()


def test_calibration_loading_maps_ids_directions_and_ranges(tmp_path):
    cal = {
        name: {
            "id": 11 + i,
            "drive_mode": int(name == "elbow_flex"),
            "homing_offset": 0,
            "range_min": 1000,
            "range_max": 3000,
        }
        for i, name in enumerate(JOINT_NAMES)
    }
    path = tmp_path / "so101_follower.json"
    path.write_text(json.dumps(cal))
    loaded = load_calibration(path)
    assert [c.id for c in loaded.values()] == list(range(11, 17))
    with FakeServoBus(ids=range(11, 17)) as fake:
        arm = So101Arm(fake.port, calibration=path, timeout_margin_ms=MARGIN)
        arm.connect()
        try:
            arm.act([0.0, 0.0, 0.5, 0.0, 0.0, 0.0])
            # drive mode 1: positive angles are fewer ticks
            assert fake.register(13, ADDR_GOAL) == round(2048 - 0.5 * 4096 / (2 * math.pi))
            lo, hi = arm.limits()
            assert lo[0] == pytest.approx((1000 - 2048) * 2 * math.pi / 4096)
            assert hi[0] == pytest.approx((3000 - 2048) * 2 * math.pi / 4096)
            fake.set_present(13, 1500)
            assert arm.observe()[2] > 0
        finally:
            arm.disconnect()
    del cal["gripper"]
    path.write_text(json.dumps(cal))
    with pytest.raises(ValueError, match="gripper"):
        load_calibration(path)
    assert ADDR_PRESENT[0] == 56


@pytest.mark.xdist_group("so101_driver")
def test_driver_node_serves_the_controller_topics_over_a_fake_bus(ros_domain, ros_context, bus):
    import time

    from sensor_msgs.msg import JointState
    from std_msgs.msg import String

    from enpire_env.ros_conversions import make_trajectory
    from enpire_env.testing import NodeProcess, TopicProbe

    node = NodeProcess("enpire_env.so101_driver_node", [
        "-r", "__ns:=/arm_a", "-p", f"port:={bus.port}", "-p", f"timeout_margin_ms:={MARGIN}",
    ])  # fmt: skip
    probe = TopicProbe(ros_context)
    try:
        assert node.wait_for_output("ready", timeout=60), node.output
        probe.watch("/arm_a/joint_states", JointState, qos=1)
        probe.watch("/arm_a/driver/status", String, qos=1)
        js = probe.wait_for("/arm_a/joint_states")
        assert list(js.name) == list(JOINT_NAMES)
        target = [0.3, -0.2, 0.1, 0.2, 0.0, 0.5]
        probe.publish("/arm_a/arm_controller/joint_trajectory",
                      make_trajectory(JOINT_NAMES, [(0.5, target)]))  # fmt: skip
        js = probe.wait_for(
            "/arm_a/joint_states", lambda m: np.allclose(m.position, target, atol=3e-3), timeout=10
        )
        assert bus.register(1, ADDR_GOAL) == round(2048 + 0.3 * 4096 / (2 * math.pi))
        # a servo that stops answering: reported, joint states stop, and back when it answers
        bus.silence(4)
        probe.wait_for("/arm_a/driver/status", lambda m: "wrist_flex (id 4)" in m.data)
        t0 = probe.wait_for("/arm_a/joint_states").header.stamp.sec
        time.sleep(0.3)  # a message in flight may still land
        stale = probe.latest("/arm_a/joint_states")
        time.sleep(0.5)
        assert probe.latest("/arm_a/joint_states") is stale  # no joint states from a dead bus
        bus.silence(4, False)
        fresh = probe.wait_for("/arm_a/joint_states", lambda m: m is not stale, timeout=10)
        assert fresh.header.stamp.sec >= t0
        probe.wait_for("/arm_a/driver/status", lambda m: m.data == "ok")
        assert node.proc.poll() is None
    finally:
        probe.close()
        node.stop()
    assert bus.register(1, ADDR_TORQUE) == 0  # the node let go of the arm on shutdown

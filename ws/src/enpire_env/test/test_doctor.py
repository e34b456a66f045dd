"""`enpire doctor` against fake Feetech servos on a pseudo-terminal, a camera that is a video
file of synthetic frames, and the params file's safety limits."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from enpire_env import doctor
from enpire_env.calibration import calibration_path
from enpire_env.camera_sim import CameraConfig, SyntheticCamera
from enpire_env.feetech import ADDR_STATUS, ADDR_TEMPERATURE, ADDR_VOLTAGE
from enpire_env.feetech_fake import FakeServoBus
from enpire_env.kinematics import JOINT_NAMES
from enpire_env.perception import calibrate_from_frames, synthetic_calibration_frames
from enpire_env.sim_cell import PushTCell

MARGIN = 250.0  # the fake servos answer from a thread of this busy process


def _levels(findings, check_prefix):
    return [f.level for f in findings if f.check.startswith(check_prefix)]


@pytest.fixture()
def bus():
    with FakeServoBus(ids=range(1, 7)) as b:
        yield b


def test_a_healthy_arm_passes(bus):
    out = doctor.check_arm(bus.port, None, timeout_margin_ms=MARGIN)
    servos = [f for f in out if f.check.startswith("servo ")]
    assert len(servos) == 6 and all(f.level == doctor.OK for f in servos), out
    assert "12.1 V" in servos[0].message
    assert not any(f.level == doctor.FAULT for f in out)
    # reading never turned torque on
    assert all(bus.register(i, (40, 1)) == 0 for i in range(1, 7))


def test_faults_of_servos_are_named_with_a_fix(bus):
    bus.silence(3)  # elbow_flex does not answer
    bus.set_register(2, ADDR_TEMPERATURE, 71)
    bus.set_register(5, ADDR_VOLTAGE, 31)  # 3.1 V
    bus.set_register(6, ADDR_STATUS, 0b100100)  # overheating + overload
    bus.set_register(1, ADDR_TEMPERATURE, 55)
    out = doctor.check_arm(bus.port, None, timeout_margin_ms=MARGIN)
    by = {f.check: f for f in out if f.level != doctor.OK}
    assert by["servo elbow_flex (id 3)"].level == doctor.FAULT
    assert "lerobot-setup-motors" in by["servo elbow_flex (id 3)"].fix
    hot = [f for f in out if f.check == "servo shoulder_lift (id 2)"]
    assert hot[0].level == doctor.FAULT and "71 deg C" in hot[0].message
    assert [f.level for f in out if f.check == "servo shoulder_pan (id 1)"] == [doctor.WARN]
    low = [f for f in out if f.check == "servo wrist_roll (id 5)"]
    assert low[0].level == doctor.FAULT and "3.1 V" in low[0].message
    flags = [f for f in out if f.check == "servo gripper (id 6)"]
    assert "overheating" in flags[0].message and "overload" in flags[0].message
    assert any(f.check == "servo bus" and "differ" in f.message for f in out)


def test_a_narrow_calibration_range_is_a_warning(bus, tmp_path):
    cal = {n: {"id": i + 1, "drive_mode": 0, "homing_offset": 0, "range_min": 0,
               "range_max": 4095} for i, n in enumerate(JOINT_NAMES)}  # fmt: skip
    cal["wrist_roll"].update(range_min=1900, range_max=2200)  # roll barely moved at calibration
    path = tmp_path / "so101.json"
    path.write_text(json.dumps(cal))
    out = doctor.check_arm(bus.port, str(path), timeout_margin_ms=MARGIN)
    warn = [f for f in out if f.check == "calibration range wrist_roll"]
    assert warn and warn[0].level == doctor.WARN and "lerobot-calibrate" in warn[0].fix
    assert not any(f.check.startswith("calibration range shoulder") for f in out)


def test_a_bus_that_cannot_be_opened_is_a_fault(tmp_path):
    out = doctor.check_arm(str(tmp_path / "ttyACM9"), None)
    assert _levels(out, "servo bus") == [doctor.FAULT]


@pytest.fixture(scope="module")
def camera_setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cam")
    cam = SyntheticCamera(CameraConfig())
    cell = PushTCell()
    fr = synthetic_calibration_frames(cam, cell, n_board=8, n_mat=2)
    calib = calibrate_from_frames(fr["board"], fr["empty"], fr["block"], "robot_0")
    calib.save(calibration_path(tmp / "cal", "robot_0"))

    def video(name, camera):
        path = tmp / name
        w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (640, 480))
        for _ in range(12):
            w.write(cv2.cvtColor(camera.view(cell), cv2.COLOR_RGB2BGR))
        w.release()
        return path

    return tmp, video("still.avi", cam), video("moved.avi", SyntheticCamera(CameraConfig(
        tilt_deg=23.0)))  # fmt: skip


def test_the_camera_is_opened_timed_and_checked_against_its_calibration(camera_setup):
    from enpire_env.calibration import CameraCalibration

    tmp, still, moved = camera_setup
    calib = CameraCalibration.load(calibration_path(tmp / "cal", "robot_0"))
    out = doctor.check_camera(str(still), frames=10, min_fps=1.0, calibration=calib)
    assert [f.level for f in out] == [doctor.OK, doctor.OK], out
    assert "640x480" in out[0].message
    out = doctor.check_camera(str(moved), frames=10, min_fps=1.0, calibration=calib)
    assert out[1].level == doctor.FAULT and "moved" in out[1].fix
    out = doctor.check_camera(str(still), frames=10, min_fps=1.0, calibration=None)
    assert out[1].level == doctor.WARN and "enpire calibrate camera" in out[1].fix
    assert doctor.check_camera(str(tmp / "video9"), frames=3)[0].level == doctor.FAULT


def test_safety_limits_against_the_mat():
    ok = doctor.check_safety({"workspace_min": [0.05, -0.16, -0.002],
                              "workspace_max": [0.36, 0.16, 0.30]}, {})  # fmt: skip
    assert [f.level for f in ok] == [doctor.OK]
    narrow = doctor.check_safety({"workspace_min": [0.15, -0.16, -0.002]}, {})
    assert narrow[0].level == doctor.FAULT and "mat corners" in narrow[0].message
    bad = doctor.check_safety({"speed_scale": 2.0}, {})
    assert bad[0].level == doctor.FAULT


def test_enpire_doctor_exits_non_zero_on_a_fault(bus, camera_setup):
    tmp, still, _moved = camera_setup
    cmd = [sys.executable, "-m", "enpire_bringup.enpire", "doctor", "--port", bus.port,
           "--camera", str(still), "--frames", "5", "--min-fps", "1",
           "--calibration-dir", str(tmp / "cal"), "--timeout-margin-ms", str(MARGIN)]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 fault(s)" in r.stdout and "[ OK ] camera calibration" in r.stdout
    bus.set_register(4, ADDR_TEMPERATURE, 80)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "[FAIL] servo wrist_flex (id 4): 80 deg C" in r.stdout
    assert np.any(["fix:" in line for line in r.stdout.splitlines()])

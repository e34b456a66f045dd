"""``enpire doctor``: check a hardware cell before a night of experiments (ROS-free).

Reads, never moves: the servo bus is opened without torque; every servo of the arm is pinged
and its model, supply voltage, temperature, error flags and position are read; the arm's
calibration ranges are compared with the URDF's joint limits; the camera is opened and its
frame rate measured, and its frame checked against the stored camera calibration; the safety
filter's limits are checked against the mat. Each finding says what to fix.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

OK, WARN, FAULT = "ok", "warn", "fault"
STATUS_BITS = {
    0: "input voltage",
    1: "angle sensor",
    2: "overheating",
    3: "overcurrent",
    5: "overload",
}
VOLTS = (4.5, 14.0)  # outside: the servo's supply is wrong (7.4 V and 12 V STS3215 both fit)
TEMP_WARN, TEMP_FAULT = 50, 65  # deg C (the STS3215 cuts out at 70 by default)
MIN_RANGE_SHARE = 0.8  # a calibrated range covering less of the URDF's joint range is suspect


@dataclass
class Finding:
    level: str  # ok | warn | fault
    check: str
    message: str
    fix: str = ""

    def line(self) -> str:
        tag = {OK: "[ OK ]", WARN: "[WARN]", FAULT: "[FAIL]"}[self.level]
        return f"{tag} {self.check}: {self.message}" + (
            f"\n       fix: {self.fix}" if self.fix else ""
        )


def check_arm(
    port: str,
    calibration=None,
    baudrate: int = 1_000_000,
    supply_volts: float = 0.0,
    kin=None,
    timeout_margin_ms: float = 0.0,
) -> list[Finding]:
    """Servo ids, model, voltage, temperature, error flags, positions and calibration ranges
    of the arm on ``port`` (LeRobot calibration JSON in ``calibration``, or ids 1-6)."""
    from enpire_env.feetech import (
        ADDR_MAX_LIMIT,
        ADDR_MIN_LIMIT,
        ADDR_MODEL,
        ADDR_PRESENT,
        ADDR_STATUS,
        ADDR_TEMPERATURE,
        ADDR_VOLTAGE,
        MODEL_STS3215,
        BusError,
        So101Arm,
    )

    out: list[Finding] = []
    if not calibration:
        out.append(
            Finding(
                WARN,
                "arm calibration",
                "none given: ids 1-6 at full range assumed",
                "run `lerobot-calibrate` for the arm and pass its JSON with --arm-calibration",
            )
        )
    try:
        arm = So101Arm(port, calibration or None, baudrate, timeout_margin_ms=timeout_margin_ms)
    except (OSError, ValueError) as e:
        return out + [
            Finding(FAULT, "arm calibration", f"cannot be read: {e}", "re-run `lerobot-calibrate`")
        ]
    try:
        arm.open()
    except BusError as e:
        return out + [
            Finding(
                FAULT,
                "servo bus",
                str(e),
                "check the USB cable and the port name (ls /dev/ttyACM*), and "
                "that no other process (the driver node) holds it",
            )
        ]
    volts: dict[str, float] = {}
    try:
        for name, cal in arm.cal.items():
            check = f"servo {name} (id {cal.id})"
            try:
                arm.ping(name)
                model = arm.read_register(name, ADDR_MODEL)
                v = arm.read_register(name, ADDR_VOLTAGE) / 10.0
                temp = arm.read_register(name, ADDR_TEMPERATURE)
                status = arm.read_register(name, ADDR_STATUS)
                pos = arm.read_register(name, ADDR_PRESENT)
                lo = arm.read_register(name, ADDR_MIN_LIMIT)
                hi = arm.read_register(name, ADDR_MAX_LIMIT)
            except BusError as e:
                out.append(
                    Finding(
                        FAULT,
                        check,
                        f"does not answer ({e})",
                        "check its 3-pin cable and power; if it was replaced, set "
                        f"its id to {cal.id} with `lerobot-setup-motors`",
                    )
                )
                continue
            volts[name] = v
            problems: list[Finding] = []
            if model != MODEL_STS3215:
                problems.append(
                    Finding(
                        WARN,
                        check,
                        f"model number {model}, not an STS3215 ({MODEL_STS3215})",
                        "is the right servo on this id?",
                    )
                )
            if not VOLTS[0] <= v <= VOLTS[1]:
                problems.append(
                    Finding(
                        FAULT,
                        check,
                        f"supply {v:.1f} V (expected {VOLTS[0]}-{VOLTS[1]} V)",
                        "check the power supply and its plug on the bus board",
                    )
                )
            elif supply_volts and abs(v - supply_volts) > 0.15 * supply_volts:
                problems.append(
                    Finding(
                        WARN,
                        check,
                        f"supply {v:.1f} V, the supply is {supply_volts:g} V",
                        "a 7.4 V servo on a 12 V "
                        "supply (or the reverse) will fail: check the "
                        "servo's variant",
                    )
                )
            if temp >= TEMP_FAULT:
                problems.append(
                    Finding(
                        FAULT,
                        check,
                        f"{temp} deg C",
                        "let it cool with torque off; look for a joint pushing against a stop",
                    )
                )
            elif temp >= TEMP_WARN:
                problems.append(
                    Finding(
                        WARN,
                        check,
                        f"{temp} deg C (warm)",
                        "lower the duty: longer resets, fewer robots per supply",
                    )
                )
            if status:
                flags = [t for b, t in STATUS_BITS.items() if status >> b & 1] or [f"{status:#x}"]
                problems.append(
                    Finding(
                        FAULT,
                        check,
                        "error flags: " + ", ".join(flags),
                        "power-cycle the arm; if it stays, the servo is damaged",
                    )
                )
            if not cal.range_min <= pos <= cal.range_max:
                problems.append(
                    Finding(
                        WARN,
                        check,
                        f"at {pos} ticks, outside its calibrated "
                        f"range [{cal.range_min}, {cal.range_max}]",
                        "move the joint by hand into range, or re-calibrate",
                    )
                )
            if lo > cal.range_min or hi < cal.range_max:
                problems.append(
                    Finding(
                        WARN,
                        check,
                        f"servo angle limits [{lo}, {hi}] are "
                        f"narrower than the calibration [{cal.range_min}, "
                        f"{cal.range_max}]",
                        "write the limits again with `lerobot-calibrate`",
                    )
                )
            out += problems or [Finding(OK, check, f"{v:.1f} V, {temp} deg C, at {pos}")]
        if len(volts) > 1 and max(volts.values()) - min(volts.values()) > 1.0:
            out.append(
                Finding(
                    WARN,
                    "servo bus",
                    "supply voltages differ along the chain: "
                    + ", ".join(f"{n} {v:.1f} V" for n, v in volts.items()),
                    "a loose or thin power lead between servos",
                )
            )
        out += check_ranges(arm, kin)
    finally:
        arm.disconnect()
    return out


def check_ranges(arm, kin=None) -> list[Finding]:
    """The calibrated range of every joint against the URDF limits the planners use."""
    from enpire_env.kinematics import JOINT_NAMES, So101Kinematics

    kin = kin or So101Kinematics()
    lo, hi = arm.limits()
    out = []
    for i, name in enumerate(JOINT_NAMES):
        lim = kin.limits.get(name)
        if lim is None:
            continue
        want = lim.upper - lim.lower
        got = max(0.0, min(hi[i], lim.upper) - max(lo[i], lim.lower))
        if want > 0 and got < MIN_RANGE_SHARE * want:
            out.append(
                Finding(
                    WARN,
                    f"calibration range {name}",
                    f"[{lo[i]:.2f}, {hi[i]:.2f}] rad covers {got / want:.0%} of the URDF's "
                    f"[{lim.lower:.2f}, {lim.upper:.2f}]",
                    f"re-run `lerobot-calibrate` moving {name} through its whole range",
                )
            )
    return out or [Finding(OK, "calibration ranges", "cover the URDF's joint limits")]


def check_camera(
    device: str, frames: int = 30, min_fps: float = 10.0, calibration=None
) -> list[Finding]:
    """Open the camera (a V4L2 device, its index, or a video file), measure its frame rate
    and check a frame against the cell's camera calibration."""
    import cv2

    src = int(device) if str(device).isdigit() else str(device)
    cap = cv2.VideoCapture(src)
    if not cap.isOpened():
        return [
            Finding(
                FAULT,
                "camera",
                f"cannot open {device}",
                "is it plugged in (v4l2-ctl --list-devices), and not held by the camera node?",
            )
        ]
    got, t0, t_first, last = 0, time.monotonic(), None, None
    try:
        while got < frames and time.monotonic() - t0 < 10.0:
            ok, img = cap.read()
            if not ok:
                break
            got += 1
            last = img
            if t_first is None:
                t_first = time.monotonic()
    finally:
        cap.release()
    if last is None:
        return [
            Finding(
                FAULT,
                "camera",
                f"{device} opened but gave no frame",
                "check the pixel format (YUYV / MJPG) and the USB bandwidth",
            )
        ]
    fps = (got - 1) / max(time.monotonic() - t_first, 1e-6) if got > 1 else 0.0
    h, w = last.shape[:2]
    out = [
        Finding(
            OK if fps >= min_fps else WARN,
            "camera",
            f"{w}x{h}, {fps:.1f} frames/s over {got} frames",
            ""
            if fps >= min_fps
            else f"below {min_fps:g} frames/s: lower the resolution or use MJPG",
        )
    ]
    rgb = cv2.cvtColor(last, cv2.COLOR_BGR2RGB)
    out.append(check_camera_calibration(rgb, calibration))
    return out


def check_camera_calibration(frame: np.ndarray, calibration) -> Finding:
    from enpire_env.calibration import CalibrationError

    if calibration is None:
        return Finding(
            WARN,
            "camera calibration",
            "none stored for this robot",
            "run `enpire calibrate camera` (EN cannot read a real camera without)",
        )
    if (frame.shape[1], frame.shape[0]) != tuple(calibration.image_size):
        return Finding(
            FAULT,
            "camera calibration",
            f"made for {calibration.image_size[0]}x{calibration.image_size[1]}, the "
            f"camera gives {frame.shape[1]}x{frame.shape[0]}",
            "set the camera node's image_size back, or re-calibrate",
        )
    try:
        v = calibration.validate(frame)
    except CalibrationError as e:
        return Finding(WARN, "camera calibration", str(e), "clear the mat's corners")
    if v["rms_workspace_px"] > 2.0:
        return Finding(
            FAULT,
            "camera calibration",
            f"the mat markers are {v['rms_px']:.1f} px (~{v['rms_workspace_px']:.1f} "
            "workspace px) from where the calibration expects them",
            "the camera or the mat moved: run `enpire calibrate camera` again",
        )
    return Finding(
        OK,
        "camera calibration",
        f"markers {v['markers']} within {v['rms_px']:.2f} px of the calibration",
    )


def check_safety(params: dict | None = None, cell_params: dict | None = None) -> list[Finding]:
    """The safety filter's limits: valid, and the mat's workspace inside its tip box."""
    from enpire_env.safety import SafetyConfig
    from enpire_env.sim_cell import CellConfig

    params, cell_params = params or {}, cell_params or {}
    try:
        cfg = SafetyConfig(
            **{k: (tuple(v) if isinstance(v, list) else v) for k, v in params.items()}
        )
        cell = CellConfig(
            **{
                k: v
                for k, v in cell_params.items()
                if k in ("workspace_center_x", "workspace_size")
            }
        )
    except (TypeError, ValueError) as e:
        return [
            Finding(
                FAULT,
                "safety limits",
                f"invalid: {e}",
                "fix the safety_filter block of the params file",
            )
        ]
    half = cell.workspace_size / 2
    corners = [(cell.workspace_center_x + dx, dy) for dx in (-half, half) for dy in (-half, half)]
    lo, hi = np.array(cfg.workspace_min), np.array(cfg.workspace_max)
    outside = [c for c in corners if not (lo[0] <= c[0] <= hi[0] and lo[1] <= c[1] <= hi[1])]
    out = []
    if outside:
        out.append(
            Finding(
                FAULT,
                "safety limits",
                "the tip box "
                f"{cfg.workspace_min}-{cfg.workspace_max} leaves out mat corners "
                f"{[tuple(round(v, 3) for v in c) for c in outside]}",
                "widen workspace_min/max or move the mat: resets there would be refused",
            )
        )
    if lo[2] > 0.0:
        out.append(
            Finding(
                FAULT,
                "safety limits",
                f"the tip may not go below {lo[2]} m: the gripper cannot reach the table",
                "set workspace_min z <= 0",
            )
        )
    reach = max(math.hypot(c[0], c[1]) for c in corners)
    if reach > 0.40:
        out.append(
            Finding(
                WARN,
                "safety limits",
                f"the far mat corner is {reach:.2f} m from the base: near the SO-101's reach",
                "move the mat closer",
            )
        )
    return out or [
        Finding(
            OK,
            "safety limits",
            f"tip box {cfg.workspace_min}-"
            f"{cfg.workspace_max} m holds the mat, speed {cfg.speed_scale:g} of "
            "the URDF limits",
        )
    ]


def run(
    port: str = "",
    arm_calibration: str = "",
    camera: str = "",
    calibration_dir: str = "",
    robot_id: str = "robot_0",
    params_file: str = "",
    supply_volts: float = 0.0,
    frames: int = 30,
    min_fps: float = 10.0,
    timeout_margin_ms: float = 0.0,
) -> list[Finding]:
    """Every check that has what it needs; a skipped one says why."""
    import yaml

    from enpire_env.calibration import CalibrationError, CameraCalibration, calibration_path

    params = {}
    if params_file:
        params = yaml.safe_load(Path(params_file).read_text()) or {}
    out: list[Finding] = []
    if port:
        out += check_arm(
            port,
            arm_calibration or None,
            supply_volts=supply_volts,
            timeout_margin_ms=timeout_margin_ms,
        )
    else:
        out.append(Finding(WARN, "servo bus", "skipped: no --port given"))
    calib = None
    if calibration_dir:
        path = calibration_path(calibration_dir, robot_id)
        if path.exists():
            try:
                calib = CameraCalibration.load(path)
            except CalibrationError as e:
                out.append(
                    Finding(
                        FAULT, "camera calibration", str(e), "run `enpire calibrate camera` again"
                    )
                )
    if camera:
        out += check_camera(camera, frames, min_fps, calib)
    else:
        out.append(Finding(WARN, "camera", "skipped: no --camera given"))
    sf = (params.get("safety_filter") or {}).get("ros__parameters", {})
    env = (params.get("env_node") or {}).get("ros__parameters", {})
    out += check_safety(sf, env)
    return out

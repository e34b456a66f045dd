"""The SO-101's Feetech STS3215 servo bus, ROS-free (LeRobot's ``Robot`` shape):

    arm = So101Arm(port="/dev/ttyACM0", calibration="so101_follower.json")
    arm.connect()                  # ping every servo, read limits, torque on
    q = arm.observe()              # six joint positions [rad], SO-101 order
    arm.act(q_target)              # goal positions, clipped to the calibrated range
    arm.disconnect()               # torque off, port closed

It talks through ``feetech-servo-sdk`` (``scservo_sdk``, the SDK LeRobot's Feetech bus uses).
Positions: 4096 ticks per turn, 2048 = joint zero (after the arm's calibration), so
``rad = sign * (ticks - 2048) * 2 pi / 4096`` with ``sign = -1`` for a servo in drive mode 1.
Calibration files are LeRobot's JSON (``{joint: {id, drive_mode, homing_offset, range_min,
range_max}}``). A servo that does not answer raises :class:`BusError` naming it.
"""

from __future__ import annotations

import abc
import json
import math
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from enpire_env.kinematics import JOINT_NAMES

TICKS_PER_TURN = 4096
CENTRE = 2048
# STS3215 control table (address, bytes)
ADDR_MIN_LIMIT = (9, 2)
ADDR_MAX_LIMIT = (11, 2)
ADDR_TORQUE = (40, 1)
ADDR_ACCELERATION = (41, 1)
ADDR_GOAL = (42, 2)
ADDR_PRESENT = (56, 2)
ADDR_SPEED = (58, 2)
ADDR_MODEL = (3, 2)
ADDR_VOLTAGE = (62, 1)  # 0.1 V
ADDR_TEMPERATURE = (63, 1)  # deg C
ADDR_STATUS = (65, 1)  # error bits: voltage, sensor, temperature, current, angle, overload
MODEL_STS3215 = 777


class BusError(RuntimeError):
    """The servo bus failed: port, a servo that does not answer, a servo error flag."""


@dataclass
class JointCalibration:
    id: int
    drive_mode: int = 0
    homing_offset: int = 0
    range_min: int = 0
    range_max: int = TICKS_PER_TURN - 1

    def __post_init__(self) -> None:
        if not 0 < self.id < 253:
            raise ValueError(f"servo id must be 1..252, got {self.id}")
        if not 0 <= self.range_min < self.range_max < TICKS_PER_TURN:
            raise ValueError(f"bad range [{self.range_min}, {self.range_max}] for id {self.id}")
        if self.drive_mode not in (0, 1):
            raise ValueError(f"drive_mode must be 0 or 1, got {self.drive_mode}")

    @property
    def sign(self) -> int:
        return -1 if self.drive_mode else 1

    def to_rad(self, ticks: int) -> float:
        return self.sign * (ticks - CENTRE) * 2 * math.pi / TICKS_PER_TURN

    def to_ticks(self, rad: float) -> int:
        t = CENTRE + self.sign * rad * TICKS_PER_TURN / (2 * math.pi)
        return int(round(min(max(t, self.range_min), self.range_max)))


def default_calibration() -> dict[str, JointCalibration]:
    """Ids 1-6 in joint order, full range: for a bench test before calibrating."""
    return {name: JointCalibration(i + 1) for i, name in enumerate(JOINT_NAMES)}


def load_calibration(path: str | Path) -> dict[str, JointCalibration]:
    """A LeRobot calibration JSON of an SO-101 (every joint of the arm must be there)."""
    data = json.loads(Path(path).read_text())
    missing = [n for n in JOINT_NAMES if n not in data]
    if missing:
        raise ValueError(f"{path}: calibration lacks {missing}")
    out = {}
    for name in JOINT_NAMES:
        entry = data[name]
        fields = {k: int(entry[k]) for k in ("id", "drive_mode", "homing_offset", "range_min",
                                              "range_max") if k in entry}  # fmt: skip
        out[name] = JointCalibration(**fields)
    ids = [c.id for c in out.values()]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path}: servo ids repeat: {ids}")
    return out


class Robot(abc.ABC):
    """LeRobot's robot shape: connect / observe / act / disconnect."""

    @abc.abstractmethod
    def connect(self) -> None: ...

    @abc.abstractmethod
    def observe(self) -> np.ndarray: ...

    @abc.abstractmethod
    def act(self, q: np.ndarray) -> np.ndarray: ...

    @abc.abstractmethod
    def disconnect(self) -> None: ...


class So101Arm(Robot):
    def __init__(self, port: str, calibration: str | Path | dict | None = None,
                 baudrate: int = 1_000_000, acceleration: int = 254,
                 timeout_margin_ms: float = 0.0):  # fmt: skip
        if isinstance(calibration, dict):
            self.cal = calibration
        elif calibration:
            self.cal = load_calibration(calibration)
        else:
            self.cal = default_calibration()
        self.port_name, self.baudrate, self.acceleration = port, baudrate, acceleration
        # added to the SDK's status-packet timeout (~34 ms): for slow adapters or a loaded host
        self.timeout_margin_ms = float(timeout_margin_ms)
        self.port = self.packet = None
        self._lock = threading.Lock()  # one transaction on the bus at a time
        self.connected = False

    # --- bus transactions -----------------------------------------------------------------
    def _check(self, name: str, result: int, error: int, what: str) -> None:
        import scservo_sdk as scs

        if result != scs.COMM_SUCCESS:
            raise BusError(f"{name} (id {self.cal[name].id}) did not answer {what}: "
                           f"{self.packet.getTxRxResult(result)}")  # fmt: skip
        if error:
            raise BusError(f"{name} (id {self.cal[name].id}) reports "
                           f"{self.packet.getRxPacketError(error)} on {what}")  # fmt: skip

    RETRIES = 3  # a lost or corrupt status packet is retried before the servo counts as gone

    def _transact(self, name: str, what: str, fn):
        import scservo_sdk as scs

        for attempt in range(self.RETRIES):
            with self._lock:
                out = fn()
            res, err = out[-2], out[-1]
            if res == scs.COMM_SUCCESS or attempt == self.RETRIES - 1:
                self._check(name, res, err, what)
                return out

    def _read(self, name: str, addr: tuple[int, int]) -> int:
        sid, p = self.cal[name].id, self.packet
        read = p.read1ByteTxRx if addr[1] == 1 else p.read2ByteTxRx
        out = self._transact(name, f"a read of address {addr[0]}",
                             lambda: read(self.port, sid, addr[0]))  # fmt: skip
        return int(out[0])

    def _write(self, name: str, addr: tuple[int, int], value: int) -> None:
        sid, p = self.cal[name].id, self.packet
        write = p.write1ByteTxRx if addr[1] == 1 else p.write2ByteTxRx
        self._transact(name, f"a write of address {addr[0]}",
                       lambda: write(self.port, sid, addr[0], int(value)))  # fmt: skip

    # --- Robot ---------------------------------------------------------------------------
    def connect(self) -> None:
        self.open()
        for name, c in self.cal.items():
            self._transact(name, "a ping", lambda c=c: self.packet.ping(self.port, c.id))
            # the servo's own limits narrow the calibrated range
            lo, hi = self._read(name, ADDR_MIN_LIMIT), self._read(name, ADDR_MAX_LIMIT)
            if 0 <= lo < hi < TICKS_PER_TURN:
                c.range_min, c.range_max = max(c.range_min, lo), min(c.range_max, hi)
        for name in self.cal:
            self._write(name, ADDR_ACCELERATION, self.acceleration)
            self._write(name, ADDR_TORQUE, 1)
        self.connected = True

    def open(self) -> None:
        """Open the port only: no torque, nothing written (``enpire doctor`` reads from here)."""
        import scservo_sdk as scs

        margin = self.timeout_margin_ms

        class _Port(scs.PortHandler):
            def setPacketTimeout(self, packet_length):  # noqa: N802 - the SDK's name
                super().setPacketTimeout(packet_length)
                self.packet_timeout += margin

        self.port = _Port(self.port_name)
        self.packet = scs.PacketHandler(0)  # STS: protocol 0, little-endian words
        try:
            opened = self.port.openPort() and self.port.setBaudRate(self.baudrate)
        except Exception as e:  # noqa: BLE001 - pyserial's errors vary by platform
            raise BusError(f"cannot open {self.port_name}: {e}") from None
        if not opened:
            raise BusError(f"cannot open {self.port_name} at {self.baudrate} baud")

    def ping(self, name: str) -> None:
        c = self.cal[name]
        self._transact(name, "a ping", lambda: self.packet.ping(self.port, c.id))

    def read_register(self, name: str, addr: tuple[int, int]) -> int:
        """One control-table register of a joint's servo (``ADDR_*``)."""
        return self._read(name, addr)

    def observe(self) -> np.ndarray:
        return np.array([self.cal[n].to_rad(self._read(n, ADDR_PRESENT)) for n in JOINT_NAMES])

    def act(self, q) -> np.ndarray:
        """Goal positions for the six joints; returns what was commanded (clipped) in rad."""
        q = np.asarray(q, dtype=float).reshape(-1)
        if q.shape != (len(JOINT_NAMES),) or not np.all(np.isfinite(q)):
            raise ValueError(f"act() needs {len(JOINT_NAMES)} finite positions, got {q}")
        sent = []
        for name, v in zip(JOINT_NAMES, q, strict=True):
            ticks = self.cal[name].to_ticks(float(v))
            self._write(name, ADDR_GOAL, ticks)
            sent.append(self.cal[name].to_rad(ticks))
        return np.array(sent)

    def limits(self) -> tuple[np.ndarray, np.ndarray]:
        lo = [self.cal[n].to_rad(self.cal[n].range_min if self.cal[n].sign > 0
                                 else self.cal[n].range_max) for n in JOINT_NAMES]  # fmt: skip
        hi = [self.cal[n].to_rad(self.cal[n].range_max if self.cal[n].sign > 0
                                 else self.cal[n].range_min) for n in JOINT_NAMES]  # fmt: skip
        return np.array(lo), np.array(hi)

    def disconnect(self) -> None:
        if self.port is None:
            return
        if self.connected:
            for name in self.cal:
                try:
                    self._write(name, ADDR_TORQUE, 0)
                except BusError:
                    pass  # a dead servo: the others still go limp
        self.port.closePort()
        self.port, self.connected = None, False

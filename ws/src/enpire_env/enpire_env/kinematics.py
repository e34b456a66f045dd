"""SO-101 kinematics from the URDF in enpire_bringup/urdf (the single source of kinematics).

Both directions are closed-form on the geometry read from the URDF: every joint offset of the
SO-101 lies in the arm's vertical plane, so the pan angle fixes that plane and lift / elbow /
wrist-flex form a planar 3-link chain (the constructor checks that the URDF is so). They run in
microseconds, which every control step of the cell, the safety filter and the rollout node
needs (ikpy's numeric IK takes ~0.25 s, its generic FK ~20 us); tests check both against
``ikpy``'s FK on the URDF chain base_link -> tool_tip (:meth:`So101Kinematics.reference_fk`).
"""

from __future__ import annotations

import functools
import math
import os
import tempfile
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

JOINT_NAMES = (
    "shoulder_pan",
    "shoulder_lift",
    "elbow_flex",
    "wrist_flex",
    "wrist_roll",
    "gripper",
)
ARM_JOINTS = JOINT_NAMES[:5]
GRIPPER_INDEX = JOINT_NAMES.index("gripper")
_CHAIN = (
    "base_link", "shoulder_pan", "shoulder_link", "shoulder_lift", "upper_arm_link",
    "elbow_flex", "lower_arm_link", "wrist_flex", "wrist_link", "wrist_roll", "gripper_link",
    "tool_tip_joint", "tool_tip",
)  # fmt: skip


class UnreachableError(ValueError):
    """No joint configuration within limits puts the tool tip there."""


@dataclass(frozen=True)
class JointLimit:
    lower: float
    upper: float
    velocity: float


def bringup_path(relative: str, env_var: str) -> Path:
    """A file or folder of enpire_bringup (``env_var`` overrides it), installed or in the
    source tree."""
    env = os.environ.get(env_var)
    if env:
        return Path(env)
    try:
        from ament_index_python.packages import get_package_share_directory

        p = Path(get_package_share_directory("enpire_bringup")) / relative
        if p.exists():
            return p
    except Exception:  # noqa: BLE001 - no ament index / not installed: try the source tree
        pass
    p = Path(__file__).resolve().parents[2] / "enpire_bringup" / relative
    if p.exists():
        return p
    raise FileNotFoundError(f"enpire_bringup/{relative} not found (is enpire_bringup built?)")


def default_xacro_path() -> Path:
    """enpire_bringup's so101.urdf.xacro, installed or in the source tree."""
    return bringup_path("urdf/so101.urdf.xacro", "ENPIRE_SO101_XACRO")


@functools.cache
def default_urdf() -> str:
    import xacro

    return xacro.process_file(str(default_xacro_path())).toxml()


def _check_planar(joints: dict) -> None:
    """The closed forms' assumptions about the URDF: no joint origin turns its frame, pan turns
    about z, lift / elbow / wrist-flex about y, roll about x, and the arm's offsets from the
    shoulder on lie in its vertical plane (y = 0; roll's and the tip's along the roll axis)."""
    axes = {
        "shoulder_pan": "0 0 1",
        "shoulder_lift": "0 1 0",
        "elbow_flex": "0 1 0",
        "wrist_flex": "0 1 0",
        "wrist_roll": "1 0 0",
    }
    for name in (*axes, "tool_tip_joint"):
        o = joints[name].find("origin")
        rpy = [float(v) for v in (o.get("rpy") or "0 0 0").split()]
        xyz = [float(v) for v in o.get("xyz").split()]
        axis = joints[name].find("axis")
        bad = any(rpy) or (name != "shoulder_pan" and xyz[1] != 0.0)
        bad |= name in ("wrist_roll", "tool_tip_joint") and xyz[2] != 0.0
        if name in axes:
            bad |= [float(v) for v in axis.get("xyz").split()] != [
                float(v) for v in axes[name].split()
            ]
        if bad:
            raise ValueError(f"URDF joint {name}: not the SO-101's planar arm geometry")


class So101Kinematics:
    def __init__(self, urdf: str | None = None):
        root = ET.fromstring(urdf or default_urdf())
        for r2c in root.findall("ros2_control"):  # hardware interfaces: not kinematics
            root.remove(r2c)
        self.urdf = ET.tostring(root, encoding="unicode")
        joints = {j.get("name"): j for j in root.findall("joint")}
        self.limits: dict[str, JointLimit] = {}
        for name in JOINT_NAMES:
            lim = joints[name].find("limit")
            self.limits[name] = JointLimit(
                float(lim.get("lower")), float(lim.get("upper")), float(lim.get("velocity"))
            )

        def origin(name: str) -> np.ndarray:
            o = joints[name].find("origin")
            return np.array([float(v) for v in o.get("xyz").split()])

        _check_planar(joints)
        # planar geometry in the arm plane (x forward after pan, z up)
        pan, lift = origin("shoulder_pan"), origin("shoulder_lift")
        elbow, wrist = origin("elbow_flex"), origin("wrist_flex")
        roll, tip = origin("wrist_roll"), origin("tool_tip_joint")
        self._pan = tuple(float(v) for v in pan)
        self._shoulder = np.array([lift[0], pan[2] + lift[2]])
        self._upper = np.array([elbow[0], elbow[2]])
        self._fore = np.array([wrist[0], wrist[2]])
        self._tool = float(roll[0] + tip[0])  # wrist_flex to the tip, along the roll axis
        self._chain_xz = [(float(v[0]), float(v[2])) for v in (lift, elbow, wrist)]
        self._last_fk: tuple[bytes, np.ndarray] | None = None

    @functools.cached_property
    def _ikpy_chain(self):
        import ikpy.chain

        with tempfile.NamedTemporaryFile("w", suffix=".urdf", delete=False) as f:
            f.write(self.urdf)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return ikpy.chain.Chain.from_urdf_file(
                    f.name,
                    base_elements=list(_CHAIN),
                    active_links_mask=[False, True, True, True, True, True, False],
                )
        finally:
            os.unlink(f.name)

    def reference_fk(self, q) -> np.ndarray:
        """4x4 pose of tool_tip by ``ikpy`` on the URDF chain (what the tests hold :meth:`fk`
        and :meth:`ik` to)."""
        full = np.zeros(len(self._ikpy_chain.links))
        full[1:6] = np.asarray(q, dtype=float)[:5]
        return self._ikpy_chain.forward_kinematics(full)

    # --- limits ---------------------------------------------------------------------------
    def lower(self) -> np.ndarray:
        return np.array([self.limits[n].lower for n in JOINT_NAMES])

    def upper(self) -> np.ndarray:
        return np.array([self.limits[n].upper for n in JOINT_NAMES])

    def max_velocity(self) -> np.ndarray:
        return np.array([self.limits[n].velocity for n in JOINT_NAMES])

    def within_limits(self, q, tol: float = 1e-9) -> bool:
        return all(
            self.limits[n].lower - tol <= v <= self.limits[n].upper + tol
            for n, v in zip(JOINT_NAMES, np.asarray(q, dtype=float).tolist(), strict=False)
        )

    # --- forward kinematics ---------------------------------------------------------------
    def fk(self, q) -> np.ndarray:
        """4x4 pose of tool_tip in base_link for joint positions (first five used)."""
        arm = np.asarray(q, dtype=float)[:5]
        key = arm.tobytes()
        last = self._last_fk  # one pose remembered: a control step asks for it several times
        if last is not None and last[0] == key:
            return last[1].copy()
        pan, t1, t2, t3, roll = (float(v) for v in arm)
        # the tool's tip in the arm plane: the tool along the roll axis, turned by wrist_flex,
        # elbow_flex and shoulder_lift in turn (a joint turning by +t about y turns the plane's
        # (x, z) by -t), each after its own joint offset
        x, z = self._tool, 0.0
        for (ox, oz), t in zip(reversed(self._chain_xz), (t3, t2, t1), strict=True):
            c, s = math.cos(t), math.sin(t)
            x, z = ox + c * x + s * z, oz - s * x + c * z
        cp, sp = math.cos(pan), math.sin(pan)
        a = t1 + t2 + t3
        ca, sa, cr, sr = math.cos(a), math.sin(a), math.cos(roll), math.sin(roll)
        px, py, pz = self._pan
        pose = np.array(  # Rz(pan) Ry(lift + elbow + wrist) Rx(roll), and the tip
            [
                [cp * ca, cp * sa * sr - sp * cr, cp * sa * cr + sp * sr, px + cp * x],
                [sp * ca, sp * sa * sr + cp * cr, sp * sa * cr - cp * sr, py + sp * x],
                [-sa, ca * sr, ca * cr, pz + z],
                [0.0, 0.0, 0.0, 1.0],
            ]
        )
        self._last_fk = (key, pose)
        return pose.copy()

    def tip_position(self, q) -> np.ndarray:
        return self.fk(q)[:3, 3]

    @staticmethod
    def yaw_of(pose: np.ndarray) -> float:
        """Direction of the jaws' opening axis (gripper y) projected on the table [rad]."""
        return math.atan2(pose[1, 1], pose[0, 1])

    # --- inverse kinematics ---------------------------------------------------------------
    def ik(
        self,
        position,
        yaw: float | None = None,
        pitch: float = -math.pi / 2,
        seed=None,
        max_tilt: float = 0.0,
    ) -> np.ndarray:
        """Joint positions (6, gripper from ``seed``) putting tool_tip at ``position``.

        The tool points along ``pitch`` in the arm plane (-pi/2: straight down). If that is out
        of reach, pitches up to ``max_tilt`` rad closer to horizontal are tried. ``yaw`` sets the
        jaw axis on the table when the tool points down; None keeps wrist_roll from ``seed``.
        """
        seed = np.zeros(6) if seed is None else np.asarray(seed, dtype=float)
        p = np.asarray(position, dtype=float)
        pan = math.atan2(p[1], p[0])
        r = math.hypot(p[0], p[1])
        last_err = "no candidate pitch"
        for tilt in self._tilts(max_tilt):
            try:
                q = self._planar_ik(r, p[2], pitch + tilt)
            except UnreachableError as e:
                last_err = str(e)
                continue
            roll = seed[4] if yaw is None else self._roll_for_yaw(pan, yaw)
            sol = np.array([pan, *q, roll, seed[5]])
            if self.within_limits(sol):
                return sol
            bad = [n for n, v, lo, hi in zip(JOINT_NAMES, sol, self.lower(), self.upper(),
                                              strict=True) if not lo <= v <= hi]  # fmt: skip
            last_err = f"joint limits exceeded: {', '.join(bad)}"
        raise UnreachableError(f"tool tip {np.round(p, 4).tolist()} unreachable ({last_err})")

    @staticmethod
    def _tilts(max_tilt: float):
        """The pitches ik tries, from the asked one to ``max_tilt`` closer to horizontal."""
        yield 0.0
        if max_tilt > 0:
            yield from np.linspace(0.05, max_tilt, max(int(max_tilt / 0.05), 1)).tolist()

    def _planar_ik(self, r: float, z: float, psi: float) -> tuple[float, float, float]:
        d0 = r - self._tool * math.cos(psi) - float(self._shoulder[0])
        d1 = z - self._tool * math.sin(psi) - float(self._shoulder[1])
        dist = math.hypot(d0, d1)
        l1, l2 = math.hypot(*self._upper), math.hypot(*self._fore)
        c = (dist**2 - l1**2 - l2**2) / (2 * l1 * l2)
        if not -1.0 <= c <= 1.0:
            raise UnreachableError(f"wrist at distance {dist:.3f} m from the shoulder")
        delta = -math.acos(c)  # elbow up
        a1 = math.atan2(d1, d0) - math.atan2(l2 * math.sin(delta), l1 + l2 * math.cos(delta))
        a2 = a1 + delta
        b1 = math.atan2(self._upper[1], self._upper[0])
        b2 = math.atan2(self._fore[1], self._fore[0])
        # a joint turning by +t about y turns the arm plane's vectors by -t
        t1 = b1 - a1
        t2 = b2 - a2 - t1
        t3 = -psi - t1 - t2
        return t1, t2, t3

    def _roll_for_yaw(self, pan: float, yaw: float) -> float:
        # tool pointing down: wrist_roll turns the jaw axis about -z, from pan + pi/2
        lo, hi = self.limits["wrist_roll"].lower, self.limits["wrist_roll"].upper
        roll = math.remainder(pan + math.pi / 2 - yaw, 2 * math.pi)
        # the jaws are symmetric: yaw and yaw + pi grasp alike; pick the one within limits
        for cand in (roll, roll - math.pi, roll + math.pi):
            if lo <= cand <= hi:
                return cand
        return roll

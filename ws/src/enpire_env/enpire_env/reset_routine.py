"""Code-as-policy resets: pick the T up and place it at the requested start pose, then verify
from the camera. ROS-free: the routine talks to a :class:`CellPort`, which the EN node
implements over ROS topics and tests implement directly on the simulator core.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from enpire_env.kinematics import GRIPPER_INDEX, So101Kinematics, UnreachableError
from enpire_env.perception import TopDownPerception
from enpire_env.pusht_geometry import coverage, inside_walls, is_success, tee_world_point
from enpire_env.reset_core import ResetErrorCode, ResetOutcome, ResetPlan
from enpire_env.sim_cell import CellConfig, PushTCell, park_pose

FeedbackFn = Callable[[str, float, int], None]
CancelFn = Callable[[], bool]


class CellPort(abc.ABC):
    """What a reset routine needs from a robot cell, real or simulated."""

    # how this cell's camera frames are read (a calibrated camera: perception.CameraPerception)
    perception = TopDownPerception()

    @abc.abstractmethod
    def joint_positions(self) -> np.ndarray: ...

    @abc.abstractmethod
    def follow(
        self, points: list[tuple[float, np.ndarray]], timeout: float, canceled: CancelFn
    ) -> bool:
        """Send a joint trajectory and wait (cell time) until it is reached or ``canceled()``;
        False on timeout."""

    @abc.abstractmethod
    def camera_image(self) -> np.ndarray:
        """A camera frame taken after the last motion finished (read by ``perception``)."""

    @abc.abstractmethod
    def cell_time(self) -> float: ...

    @abc.abstractmethod
    def stop(self) -> None:
        """Hold the arm where it is (cancel)."""

    def teleport(self, block_pose) -> None:
        raise NotImplementedError("teleport resets exist only in simulation")


class DirectCellPort(CellPort):
    """A CellPort on an in-process PushTCell, stepped synchronously (tests, benchmarks)."""

    def __init__(self, cell: PushTCell, camera_size: int = 256, camera=None, perception=None):
        """``camera``: a :class:`enpire_env.camera_sim.SyntheticCamera` to see the cell
        through (with ``perception`` its calibration), else the renderer's top-down view."""
        self.cell = cell
        self.camera_size = camera_size
        self.camera = camera
        if perception is not None:
            self.perception = perception

    def joint_positions(self) -> np.ndarray:
        return self.cell.q.copy()

    def follow(self, points, timeout: float, canceled: CancelFn) -> bool:
        self.cell.command(points)
        t_end = self.cell.t + timeout
        while self.cell.t < t_end:
            if canceled():
                return True
            self.cell.step()
            if self.cell.t - self.cell._traj_t0 >= points[-1][0] and self.cell.trajectory_done():
                return True
        return False

    def camera_image(self) -> np.ndarray:
        if self.camera is not None:
            return self.camera.view(self.cell)
        return self.cell.render(self.camera_size)

    def cell_time(self) -> float:
        return self.cell.t

    def stop(self) -> None:
        self.cell.hold()

    def teleport(self, block_pose) -> None:
        self.cell.teleport(block_pose)


@dataclass
class PickPlaceConfig:
    hover_height: float = 0.05  # m: tip height when moving over the table
    grasp_height: float = 0.004  # m: tip height when closing the gripper
    place_height: float = 0.008  # m: tip height when opening the gripper
    speed_scale: float = 0.6  # fraction of the joints' velocity limits
    cartesian_step: float = 0.01  # m between IK samples on straight moves
    max_tilt: float = 0.7  # rad: tool may tilt this far from vertical where needed
    tolerance_px: float = 6.0  # verified start pose vs requested, position
    tolerance_rad: float = 0.08  # and angle
    grasp_points: tuple[tuple[float, float], ...] = ((0.0, 75.0), (0.0, 15.0), (-40.0, 15.0),
                                                     (40.0, 15.0), (0.0, 105.0))  # fmt: skip
    motion_timeout: float = 20.0  # s of cell time per motion

    def __post_init__(self) -> None:
        if not 0 < self.speed_scale <= 1:
            raise ValueError("speed_scale must be in (0, 1]")
        if self.tolerance_px <= 0 or self.tolerance_rad <= 0:
            raise ValueError("tolerances must be positive")


class PlanningError(Exception):
    """A motion planner found no path."""


class LinePlanner(abc.ABC):
    """Plans the reset's moves: straight tool-tip lines at a fixed jaw roll and gripper value.

    ``ik`` (:class:`IkLinePlanner`) samples the line with the closed-form IK; ``moveit``
    (:mod:`enpire_env.moveit_backend`) asks MoveIt's planners. Either way the result is a list of
    joint waypoints the routine times and sends through the cell's joint-command interface.
    """

    name = "planner"

    @abc.abstractmethod
    def line(self, q_from: np.ndarray, xyz_to, roll: float, gripper: float) -> list[np.ndarray]:
        """Waypoints (6 joints each, not including ``q_from``) from ``q_from`` to the tip at
        ``xyz_to`` with wrist roll ``roll`` and the gripper at ``gripper``; raises
        UnreachableError or PlanningError."""


class IkLinePlanner(LinePlanner):
    """IK samples every ``step`` metres along the straight tip path (the default backend)."""

    name = "ik"

    def __init__(self, kin: So101Kinematics, step: float = 0.01, max_tilt: float = 0.7):
        self.kin, self.step, self.max_tilt = kin, step, max_tilt

    def line(self, q_from, xyz_to, roll, gripper):
        start = self.kin.tip_position(q_from)
        end = np.asarray(xyz_to, dtype=float)
        n = max(1, int(np.ceil(np.linalg.norm(end - start) / self.step)))
        out, seed = [], np.asarray(q_from, dtype=float).copy()
        r0 = seed[4]
        for i in range(1, n + 1):
            a = i / n
            q = self.kin.ik(start + a * (end - start), seed=seed, max_tilt=self.max_tilt)
            q[4] = r0 + a * (roll - r0)
            q[GRIPPER_INDEX] = gripper
            out.append(q)
            seed = q
        return out


class AttemptFailedError(Exception):
    def __init__(self, code: ResetErrorCode, msg: str):
        super().__init__(msg)
        self.code, self.msg = code, msg


class CanceledError(Exception):
    pass


class PickPlaceReset:
    PHASES = ("locate", "approach", "grasp", "lift", "place", "release", "retreat", "verify")

    def __init__(
        self,
        kin: So101Kinematics,
        cell_cfg: CellConfig | None = None,
        cfg: PickPlaceConfig | None = None,
        planner: LinePlanner | None = None,
    ):
        self.kin = kin
        self.cell_cfg = cell_cfg or CellConfig()
        self.cfg = cfg or PickPlaceConfig()
        self.planner = planner or IkLinePlanner(kin, self.cfg.cartesian_step, self.cfg.max_tilt)

    # --- public -------------------------------------------------------------------------
    def run(
        self, plan: ResetPlan, port: CellPort, feedback: FeedbackFn, canceled: CancelFn
    ) -> ResetOutcome:
        t0 = port.cell_time()
        # a start state overlapping a wall cannot be set up: aim for the nearest one inside
        target = inside_walls(plan.start_state)
        last = ResetOutcome(False, ResetErrorCode.UNKNOWN, "no attempt made")
        for attempt in range(1, plan.max_attempts + 1):
            try:
                if plan.mode == "teleport":
                    feedback("place", 0.5, attempt)
                    port.teleport(target)
                else:
                    self._pick_and_place(target, port, feedback, canceled, attempt)
                feedback("verify", 0.95, attempt)
                est = self._verify(target, port)
                feedback("done", 1.0, attempt)
                return ResetOutcome(
                    True,
                    verified_state=est.tolist(),
                    attempts=attempt,
                    robot_seconds=port.cell_time() - t0,
                )
            except CanceledError:
                port.stop()
                return ResetOutcome(
                    False, ResetErrorCode.CANCELED, "reset canceled", attempts=attempt,
                    robot_seconds=port.cell_time() - t0,
                )  # fmt: skip
            except AttemptFailedError as e:
                last = ResetOutcome(
                    False, e.code, f"attempt {attempt}/{plan.max_attempts}: {e.msg}",
                    attempts=attempt, robot_seconds=port.cell_time() - t0,
                )  # fmt: skip
                if e.code == ResetErrorCode.INVALID_GOAL:
                    break
        return last

    # --- steps --------------------------------------------------------------------------
    def _locate(self, port: CellPort) -> np.ndarray:
        est = port.perception.estimate(port.camera_image())
        if est is None:
            raise AttemptFailedError(ResetErrorCode.VERIFICATION_FAILED, "block not in view")
        return est.pose

    def _verify(self, target: np.ndarray, port: CellPort) -> np.ndarray:
        pose = self._locate(port)
        err = pose[:2] - target[:2]
        dth = math.remainder(pose[2] - target[2], 2 * math.pi)
        if np.hypot(*err) > self.cfg.tolerance_px or abs(dth) > self.cfg.tolerance_rad:
            raise AttemptFailedError(
                ResetErrorCode.VERIFICATION_FAILED,
                f"block seen at ({pose[0]:.1f}, {pose[1]:.1f}, {pose[2]:.3f}), requested "
                f"({target[0]:.1f}, {target[1]:.1f}, {target[2]:.3f})",
            )
        if is_success(coverage(pose)):
            raise AttemptFailedError(
                ResetErrorCode.VERIFICATION_FAILED, "the start pose already solves the task"
            )
        return pose

    def _table(self, px) -> tuple[float, float]:
        return self.cell_cfg.px_to_table(float(px[0]), float(px[1]))

    def _grasp_plan(self, now: np.ndarray, target: np.ndarray, seed: np.ndarray):
        """Grasp point, joint solutions at grasp and place, and the rolls to use."""
        lo, hi = self.kin.limits["wrist_roll"].lower, self.kin.limits["wrist_roll"].upper
        d_yaw = -math.remainder(target[2] - now[2], 2 * math.pi)  # image angles are mirrored
        errors = []
        for local in self.cfg.grasp_points:
            g = self._table(tee_world_point(now, local))
            p = self._table(tee_world_point(target, local))
            try:
                qg = self.kin.ik(
                    (*g, self.cfg.grasp_height), seed=seed, max_tilt=self.cfg.max_tilt
                )
                qp = self.kin.ik((*p, self.cfg.place_height), seed=qg, max_tilt=self.cfg.max_tilt)
            except UnreachableError as e:
                errors.append(str(e))
                continue
            # the yaw turns with the roll: choose a grasp roll so that the place roll fits too
            for roll_g in np.linspace(lo + 0.05, hi - 0.05, 23):
                qg[4] = roll_g
                yaw_g = self._yaw(qg)
                roll_p = self._roll_for(qp, yaw_g + d_yaw)
                if roll_p is not None:
                    qp[4] = roll_p
                    return g, p, qg, qp
            errors.append("no wrist roll fits both grasp and place")
        raise AttemptFailedError(
            ResetErrorCode.GRASP_FAILED, "block out of reach: " + "; ".join(errors[:2])
        )

    def _yaw(self, q) -> float:
        return self.kin.yaw_of(self.kin.fk(q))

    def _roll_for(self, q: np.ndarray, yaw: float) -> float | None:
        """The wrist roll that gives jaw yaw ``yaw`` at arm pose ``q`` (Newton on the FK)."""
        lo, hi = self.kin.limits["wrist_roll"].lower, self.kin.limits["wrist_roll"].upper
        q = q.copy()
        for _ in range(8):
            err = math.remainder(yaw - self._yaw(q), 2 * math.pi)
            if abs(err) < 1e-4:
                break
            q[4] -= err  # yaw decreases as roll increases when the tool points down
        if abs(math.remainder(yaw - self._yaw(q), 2 * math.pi)) > 1e-3:
            return None
        for cand in (q[4], q[4] - 2 * math.pi, q[4] + 2 * math.pi):
            if lo <= cand <= hi:
                return float(cand)
        return None

    def _line(self, q_from: np.ndarray, xyz_to, roll: float, gripper: float) -> list:
        """Joint waypoints moving the tip in a straight line to ``xyz_to`` (see LinePlanner)."""
        try:
            return self.planner.line(q_from, xyz_to, roll, gripper)
        except (UnreachableError, PlanningError) as e:
            raise AttemptFailedError(
                ResetErrorCode.PLANNING_FAILED, f"{self.planner.name} planner: {e}"
            ) from None

    def _timed(self, q_now: np.ndarray, qs: list[np.ndarray]) -> list[tuple[float, np.ndarray]]:
        vmax = self.kin.max_velocity() * self.cfg.speed_scale
        t, prev, points = 0.0, q_now, []
        for q in qs:
            t += max(float(np.max(np.abs(q - prev) / vmax)), 0.02)
            points.append((t, q))
            prev = q
        return points

    def _move(self, port, qs, canceled) -> np.ndarray:
        """Follow joint waypoints; returns the last one, the arm's new commanded pose.

        Plans start from the commanded pose, never from a measured one: joint states arrive a
        little late, and an old measurement used as a target would pull the arm back.
        """
        if canceled():
            raise CanceledError
        points = self._timed(port.joint_positions(), qs)
        if not port.follow(points, points[-1][0] + self.cfg.motion_timeout, canceled):
            raise AttemptFailedError(ResetErrorCode.TIMEOUT, "the arm did not reach its waypoint")
        if canceled():
            raise CanceledError
        return qs[-1]

    def _set_gripper(self, port, cmd: np.ndarray, value: float, canceled) -> np.ndarray:
        """Open or close the gripper where the arm is commanded to be."""
        q = cmd.copy()
        q[GRIPPER_INDEX] = value
        return self._move(port, [q], canceled)

    def _gripper_at_rest(self, port, cmd, canceled) -> float:
        """Gripper position once it stops moving (closed, or resting on the block)."""
        last = port.joint_positions()[GRIPPER_INDEX]
        for _ in range(50):
            self._move(port, [cmd], canceled)
            now = port.joint_positions()[GRIPPER_INDEX]
            if abs(now - last) < 1e-3:
                return now
            last = now
        return last

    def _pick_and_place(self, target, port, feedback, canceled, attempt) -> None:
        c = self.cfg
        o, cl = self.cell_cfg.gripper_open, self.cell_cfg.gripper_closed
        n = len(self.PHASES)

        feedback("locate", 0 / n, attempt)
        now = self._locate(port)
        cmd = port.joint_positions()
        g, p, qg, qp = self._grasp_plan(now, target, cmd)

        feedback("approach", 1 / n, attempt)
        cmd = self._move(port, self._line(cmd, (*g, c.hover_height), qg[4], o), canceled)
        cmd = self._move(port, self._line(cmd, (*g, c.grasp_height), qg[4], o), canceled)

        feedback("grasp", 2 / n, attempt)
        cmd = self._set_gripper(port, cmd, cl, canceled)
        if self._gripper_at_rest(port, cmd, canceled) < self.cell_cfg.gripper_closed_below:
            self._move(port, self._line(cmd, (*g, c.hover_height), qg[4], o), canceled)
            raise AttemptFailedError(ResetErrorCode.GRASP_FAILED, "the gripper closed on nothing")

        # keep commanding "closed" while carrying: the jaws rest on the block
        feedback("lift", 3 / n, attempt)
        cmd = self._move(port, self._line(cmd, (*g, c.hover_height), qg[4], cl), canceled)

        feedback("place", 4 / n, attempt)
        cmd = self._move(port, self._line(cmd, (*p, c.hover_height), qp[4], cl), canceled)
        cmd = self._move(port, self._line(cmd, (*p, c.place_height), qp[4], cl), canceled)

        feedback("release", 5 / n, attempt)
        cmd = self._set_gripper(port, cmd, o, canceled)
        cmd = self._move(port, self._line(cmd, (*p, c.hover_height), qp[4], o), canceled)

        feedback("retreat", 6 / n, attempt)
        park = park_pose(self.kin, self.cell_cfg)
        self._move(port, self._line(cmd, self.cell_cfg.park_tip, park[4], o), canceled)

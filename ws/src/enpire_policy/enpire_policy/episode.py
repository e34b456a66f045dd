"""The one episode runner, behind a robot port: in this process on a simulated cell (benchmarks,
tests, PI's training episodes, local labs) and on the fleet over ROS (the rollout node).

An episode follows the rollout contract: after the reset the policy acts at 10 Hz through IK on
the SO-101 URDF, and the episode ends on success (gym-pusht's coverage rule, as the cell's
verifier sees it) or after ``max_steps`` control periods of cell time.
"""

from __future__ import annotations

import math
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from enpire_env.kinematics import GRIPPER_INDEX, So101Kinematics, UnreachableError
from enpire_env.pusht_geometry import GOAL_POSE, WORKSPACE_PX, is_success, reward_from_coverage
from enpire_env.ros_conversions import video_frame
from enpire_env.sim_cell import CellConfig, PushTCell
from enpire_env.tasks import PUSHT
from enpire_policy.interface import Action, ActionError
from enpire_policy.sandbox import PolicyError


@dataclass
class TipControl:
    """Turns actions into joint targets: tip targets by IK at push or lift height."""

    kin: So101Kinematics
    cell_cfg: CellConfig = field(default_factory=CellConfig)
    push_height: float = 0.006  # m: below the cell's contact height
    lift_height: float = 0.035  # m: clear of the block
    max_tilt: float = 0.8
    unreachable: int = 0

    def joints(self, action: Action, q_now: np.ndarray) -> np.ndarray:
        if action.joints is not None:
            return np.asarray(action.joints, dtype=float)
        u, v = (float(np.clip(c, 0.0, WORKSPACE_PX)) for c in action.tip)
        x, y = self.cell_cfg.px_to_table(u, v)
        z = self.lift_height if action.lift else self.push_height
        try:
            q = self.kin.ik((x, y, z), yaw=None, seed=q_now, max_tilt=self.max_tilt)
        except UnreachableError:
            self.unreachable += 1
            return q_now.copy()
        q[GRIPPER_INDEX] = q_now[GRIPPER_INDEX]
        return q


class CellLostError(RuntimeError):
    """The cell stopped publishing (dead, disconnected or paused) or restarted mid-episode."""


@runtime_checkable
class RobotPort(Protocol):
    """One robot as the episode runner drives it: simulated in this process
    (:class:`SimRobotPort`) or over ROS topics (``enpire_rollout.robot_link.RobotLink``).
    Both pass the same contract test (``enpire_rollout/test/test_robot_port_contract.py``).

    Times are the cell's own clock (robot time); ``advance`` returns when the next control
    period's state is in (raising :class:`CellLostError` when it does not come)."""

    dt: float  # control period [cell s]
    kin: So101Kinematics
    cell_cfg: CellConfig

    def start(self) -> float:
        """Wait for the cell's state; return its clock at the episode's first step."""

    def observe(self, step: int) -> dict:
        """The policy's observation of the latest state (see enpire_policy.interface)."""

    def coverage(self, obs: dict) -> float | None:
        """Coverage of the goal region by the block as the cell's verifier sees it now."""

    def joints(self) -> np.ndarray:
        """Joint positions of the latest state."""

    def command(self, q: np.ndarray) -> None:
        """Joint targets for the next control period."""

    def advance(self) -> float:
        """Wait for the next control period; return the cell clock."""

    def image(self, size: int) -> np.ndarray | None:
        """The latest camera frame, size x size RGB (None: no camera)."""

    def hold(self) -> None:
        """Stop the arm where it is."""


@dataclass
class EpisodeOutcome:
    """What one episode did. ``outcome``: success | failure | policy_error | interrupted |
    canceled (EpisodeResult's OUTCOME_* names); ``error`` carries the policy's traceback."""

    seed: int
    success: bool = False
    steps: int = 0
    coverage: float = 0.0
    final_pose: list[float] = field(default_factory=list)
    robot_seconds: float = 0.0
    wall_seconds: float = 0.0
    error: str = ""
    unreachable: int = 0
    outcome: str = "failure"
    final_reward: float = 0.0
    max_reward: float = 0.0
    states: list = field(default_factory=list, repr=False)  # recorded: tip u, v, block x, y, th
    actions: list = field(default_factory=list, repr=False)  # recorded: tip u, v, lift
    rewards: list = field(default_factory=list, repr=False)  # after each action
    frames: list = field(default_factory=list, repr=False)  # recorded camera frames

    def policy_failed(self, e: PolicyError) -> EpisodeOutcome:
        """End as a policy error, its message followed by the policy's traceback."""
        self.outcome, self.error = "policy_error", str(e)
        if e.traceback:
            self.error += "\n" + e.traceback
        return self

    def to_episode_data(self, info: dict | None = None):
        from enpire_policy.lerobot_dataset import EpisodeData

        return EpisodeData(
            np.nan_to_num(np.array(self.states, float)),
            np.array(self.actions, float),
            np.array(self.rewards, float),
            self.success,
            frames=np.stack(self.frames) if self.frames else None,
            info={"seed": self.seed, "steps": self.steps, **(info or {})},
        )


def observation(
    cell: PushTCell, step: int, observe: str, image_size: int = 256, camera=None, perception=None
) -> dict:
    """The policy's observation of a cell; ``camera`` (a synthetic camera) and ``perception``
    (its calibration) replace the renderer's top-down frame for ``observe="camera"``."""
    tip, _yaw = cell.tip()
    u, v = cell.cfg.table_to_px(tip[0], tip[1])
    obs = {
        "tip": [u, v],
        "tip_height": float(tip[2]),
        "joints": cell.q.tolist(),
        "step": step,
        "dt": cell.dt,
        "goal_pose": list(GOAL_POSE),
    }
    if observe == "state":
        obs["block_pose"] = cell.block_pose().tolist()
    elif observe == "camera":
        if camera is None:
            from enpire_env.verify import estimate_block_pose

            img = cell.render(image_size)
            est = estimate_block_pose(img)
        else:
            img = camera.view(cell)
            est = perception.estimate(img)
        obs["block_pose"] = None if est is None else est.pose.tolist()
        obs["image"] = img
    else:
        raise ValueError(f"observe must be 'state' or 'camera', got {observe!r}")
    return obs


class SimRobotPort:
    """A simulated cell in this process as a RobotPort: no ROS, no clock to wait for.
    ``observe="state"`` gives the policy the simulator's block pose (gym-pusht's state
    observation); ``"camera"`` the camera verifier's estimate from a rendered frame. Success
    is judged on the simulator's true coverage either way."""

    def __init__(
        self, cell: PushTCell, observe: str = "state", image_size: int = 256, camera=None,
        perception=None,
    ):  # fmt: skip
        if observe not in ("state", "camera"):
            raise ValueError(f"observe must be 'state' or 'camera', got {observe!r}")
        self.cell, self.observe_mode, self.image_size = cell, observe, image_size
        if (camera is None) != (perception is None):
            raise ValueError("a synthetic camera needs its perception (calibration), and back")
        self.camera, self.perception = camera, perception
        self.dt, self.kin, self.cell_cfg = cell.dt, cell.kin, cell.cfg

    def start(self) -> float:
        return self.cell.t

    def observe(self, step: int) -> dict:
        return observation(self.cell, step, self.observe_mode, self.image_size, self.camera,
                           self.perception)  # fmt: skip

    def coverage(self, obs: dict) -> float | None:
        return float(self.cell.coverage)

    def joints(self) -> np.ndarray:
        return self.cell.q.copy()

    def command(self, q: np.ndarray) -> None:
        self.cell.command([(self.dt, np.asarray(q, float).tolist())])

    def advance(self) -> float:
        self.cell.step()
        return self.cell.t

    def image(self, size: int) -> np.ndarray | None:
        # the camera's frame shrunk to the video's side, as a ROS cell's frames are recorded
        return video_frame(self.cell.render(self.image_size), size)

    def hold(self) -> None:
        self.cell.hold()


def _needs_image(policy) -> bool:
    meta = getattr(policy, "metadata", None)
    try:
        return bool(meta and (meta() or {}).get("needs_image"))
    except Exception:  # noqa: BLE001 - a broken metadata() shows up in act() anyway
        return False


def run_on_port(
    port: RobotPort,
    policy,
    seed: int,
    max_steps: int = PUSHT.max_steps,
    stop: threading.Event | None = None,
    record: bool = False,
    video_size: int = 0,
) -> EpisodeOutcome:
    """The one episode loop, for every robot: observe, verify, act, advance, until success,
    ``max_steps`` control periods of cell time, a policy error, a lost cell or ``stop``.
    ``policy`` (reset already called) is any object with ``act``; policy errors end the
    episode with their traceback in ``error``, as do lost cells (``interrupted``)."""
    ctrl = TipControl(port.kin, port.cell_cfg)
    out = EpisodeOutcome(seed)
    w0 = time.perf_counter()
    needs_image = _needs_image(policy)
    t0 = t = 0.0
    step = 0
    try:
        t0 = t = port.start()
        while True:
            obs = port.observe(step)
            cov = port.coverage(obs)
            if cov is not None:
                out.coverage = cov
                out.final_reward = reward_from_coverage(cov)
                out.max_reward = max(out.max_reward, out.final_reward)
            if record and out.actions:
                out.rewards.append(out.final_reward)  # the reward the last action earned
            if obs.get("block_pose") is not None:
                out.final_pose = list(obs["block_pose"])
            if cov is not None and is_success(cov):
                out.success = True
                break
            if step >= max_steps or (stop is not None and stop.is_set()):
                break
            if needs_image and "image" not in obs:
                obs["image"] = port.image(256)
            try:
                action = Action.parse(policy.act(obs))
            except PolicyError:
                raise
            except Exception as e:  # an in-process policy's bug
                raise PolicyError(
                    "action" if isinstance(e, ActionError) else "exception",
                    f"{type(e).__name__}: {e}",
                    tb=traceback.format_exc(),
                ) from None
            port.command(ctrl.joints(action, port.joints()))
            if record:
                _record(out, obs, action, port, video_size)
            last, t = t, port.advance()
            # a restarted cell's clock starts again from 0 (messages may also come a tick out
            # of order: that is not a restart)
            if t < last - 1.0:
                raise CellLostError("the cell restarted mid-episode (its clock went back)")
            # a loaded host may skip control periods: count them on the cell's clock
            step = max(step + 1, int(round((t - t0) / port.dt)))
        out.outcome = "success" if out.success else "failure"
        if stop is not None and stop.is_set() and not out.success:
            out.outcome = "canceled"
    except PolicyError as e:
        out.policy_failed(e)
    except CellLostError as e:
        out.outcome, out.error = "interrupted", str(e)
    if record and len(out.rewards) < len(out.actions):
        out.rewards.append(out.final_reward)
    out.steps = min(step, max_steps)
    out.robot_seconds = t - t0
    out.wall_seconds = time.perf_counter() - w0
    out.unreachable = ctrl.unreachable
    return out


def _record(out: EpisodeOutcome, obs: dict, action: Action, port, video_size: int) -> None:
    pose = obs["block_pose"] if obs.get("block_pose") is not None else [float("nan")] * 3
    out.states.append([*obs["tip"], *pose])
    tip = action.tip if action.tip is not None else obs["tip"]
    out.actions.append([tip[0], tip[1], float(action.lift)])
    if video_size:
        img = port.image(video_size)
        out.frames.append(np.zeros((video_size, video_size, 3), np.uint8) if img is None else img)


def run_episode(
    policy,
    seed: int,
    cell: PushTCell | None = None,
    max_steps: int = PUSHT.max_steps,
    observe: str = "state",
    record: bool = False,
    record_image_size: int = 0,
) -> EpisodeOutcome:
    """One seeded episode of ``policy`` (an object with reset/act) in a simulated cell: the
    block where gym-pusht's ``reset(seed)`` puts it, the arm parked."""
    cell = cell or PushTCell()
    cell.teleport(PUSHT.sample_start_state(seed))
    policy.reset(seed)
    port = SimRobotPort(cell, observe)
    return run_on_port(port, policy, seed, max_steps, None, record, record_image_size)


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a success rate."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)

"""Run a policy in the simulated cell without ROS: for benchmarks, tests and local evaluation.

Episodes here follow the rollout contract: the block starts where gym-pusht's ``reset(seed)``
puts it, the arm starts parked, the policy acts at 10 Hz through IK on the SO-101 URDF, and the
episode ends on success (gym-pusht's coverage rule) or after ``max_steps``. ``observe="state"``
gives the policy the simulator's block pose (gym-pusht's state observation); ``"camera"``
gives it the camera verifier's estimate from a rendered frame, as on a real cell.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from enpire_env.kinematics import GRIPPER_INDEX, So101Kinematics, UnreachableError
from enpire_env.pusht_geometry import GOAL_POSE, WORKSPACE_PX, is_success, reward_from_coverage
from enpire_env.sim_cell import CellConfig, PushTCell
from enpire_env.tasks import PUSHT
from enpire_policy.interface import Action


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


@dataclass
class EpisodeOutcome:
    seed: int
    success: bool
    steps: int
    coverage: float
    final_pose: list[float]
    robot_seconds: float
    wall_seconds: float
    error: str = ""
    unreachable: int = 0
    states: list = field(default_factory=list, repr=False)  # recorded: tip u, v, block x, y, th
    actions: list = field(default_factory=list, repr=False)  # recorded: tip u, v, lift
    rewards: list = field(default_factory=list, repr=False)
    frames: list = field(default_factory=list, repr=False)  # recorded camera frames

    def to_episode_data(self, info: dict | None = None):
        from enpire_policy.lerobot_dataset import EpisodeData

        return EpisodeData(
            np.array(self.states),
            np.array(self.actions),
            np.array(self.rewards),
            self.success,
            frames=np.stack(self.frames) if self.frames else None,
            info={"seed": self.seed, "steps": self.steps, **(info or {})},
        )


def observation(cell: PushTCell, step: int, observe: str, image_size: int = 256) -> dict:
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
        from enpire_env.verify import estimate_block_pose

        img = cell.render(image_size)
        est = estimate_block_pose(img)
        obs["block_pose"] = None if est is None else est.pose.tolist()
        obs["image"] = img
    else:
        raise ValueError(f"observe must be 'state' or 'camera', got {observe!r}")
    return obs


def run_episode(
    policy,
    seed: int,
    cell: PushTCell | None = None,
    max_steps: int = PUSHT.max_steps,
    observe: str = "state",
    record: bool = False,
    record_image_size: int = 0,
) -> EpisodeOutcome:
    """One seeded episode of ``policy`` (an object with reset/act) in a simulated cell."""
    cell = cell or PushTCell()
    ctrl = TipControl(cell.kin, cell.cfg)
    cell.teleport(PUSHT.sample_start_state(seed))
    policy.reset(seed)
    t0, w0 = cell.t, time.perf_counter()
    out = EpisodeOutcome(seed, False, 0, cell.coverage, [], 0.0, 0.0)
    for step in range(max_steps):
        obs = observation(cell, step, observe)
        frame = cell.render(record_image_size) if record and record_image_size else None
        block = cell.block_pose().tolist() if record else None  # recorded: the true pose
        try:
            action = Action.parse(policy.act(obs))
        except Exception as e:  # a policy bug ends its episode, not the caller
            out.error = f"{type(e).__name__}: {e}"
            break
        q = ctrl.joints(action, cell.q)
        cell.command([(cell.dt, q.tolist())])
        cell.step()
        out.steps = step + 1
        if record:
            out.states.append(obs["tip"] + block)
            tip = action.tip if action.tip is not None else obs["tip"]
            out.actions.append([tip[0], tip[1], float(action.lift)])
            out.rewards.append(reward_from_coverage(cell.coverage))
            if frame is not None:
                out.frames.append(frame)
        if is_success(cell.coverage):
            out.success = True
            break
    out.coverage = float(cell.coverage)
    out.final_pose = cell.block_pose().tolist()
    out.robot_seconds = cell.t - t0
    out.wall_seconds = time.perf_counter() - w0
    out.unreachable = ctrl.unreachable
    return out


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a success rate."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)

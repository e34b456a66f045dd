"""Perception of a cell's camera: the block pose and the verdict from a frame.

Two kinds of camera:

- ``TopDownPerception``: gym-pusht's own renderer seen straight from above (the default sim
  cell); pixels are classified by the renderer's exact palette (:mod:`enpire_env.verify`).
- ``CameraPerception``: any camera with a :class:`~enpire_env.calibration.CameraCalibration`
  (a real cell, or the sim cell's synthetic camera). Each frame is rectified to a top-down
  image of the workspace; its illumination (exposure, white balance, a lighting gradient) is
  divided out using the table itself; a :class:`ColourModel` learned from two calibration
  frames (the mat without the block, then with it) tells block, goal, table and anything
  else (the arm, shadows, walls) apart; the same pose fit then runs on the block's soft
  coverage per pixel.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from enpire_env import verify
from enpire_env.calibration import CalibrationError, CameraCalibration, calibration_path
from enpire_env.pusht_geometry import (
    GOAL_POSE,
    WORKSPACE_PX,
    tee_local_polygons,
    tee_polygons,
    tee_world_point,
)

CLIPPED = 252  # a channel this bright may have been cut off by the sensor
WALL_BAND_PX = 14.0  # workspace px along the border where gym-pusht's walls are
_ILLUM_GRID = 64  # the illumination is fitted on a grid this coarse
_T_AREA = sum(float(cv2.contourArea(p.astype(np.float32))) for p in tee_local_polygons())


def _poly_terms(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bivariate cubic terms of coordinates in [-1, 1]."""
    return np.stack([np.ones_like(x), x, y, x * x, x * y, y * y,
                     x**3, x * x * y, x * y * y, y**3], -1)  # fmt: skip


def illumination(img: np.ndarray, table: np.ndarray | None = None, tol: float = 0.05):
    """The light falling on the table, per pixel and channel (float32, same shape as ``img``),
    fitted as a smooth surface through the pixels that look like the table: the brightest
    large area (``table``: its normalised colour, (1, 1, 1) by definition)."""
    n = img.shape[0]
    small = cv2.resize(img, (_ILLUM_GRID, _ILLUM_GRID), interpolation=cv2.INTER_AREA)
    small = small.astype(np.float32)
    g = np.linspace(-1, 1, _ILLUM_GRID, dtype=np.float32)
    gx, gy = np.meshgrid(g, g)
    terms = _poly_terms(gx.ravel(), gy.ravel())
    border = int(round(WALL_BAND_PX / WORKSPACE_PX * _ILLUM_GRID)) + 1
    inner = np.zeros((_ILLUM_GRID, _ILLUM_GRID), bool)
    inner[border:-border, border:-border] = True
    # first guess: the local maximum (the table is the brightest thing around)
    k = np.ones((9, 9), np.uint8)
    guess = cv2.GaussianBlur(cv2.dilate(small, k), (0, 0), 6)
    coef = None
    for _ in range(3):
        ratio = small / np.maximum(guess, 1.0)
        ref = np.ones(3, np.float32) if table is None else table
        mask = (np.abs(ratio - ref).max(-1) < tol) & inner
        if mask.sum() < 50:
            break
        coef = np.linalg.lstsq(terms[mask.ravel()], small.reshape(-1, 3)[mask.ravel()],
                               rcond=None)[0]  # fmt: skip
        guess = (terms @ coef).reshape(_ILLUM_GRID, _ILLUM_GRID, 3)
    if coef is None:
        return cv2.resize(guess, (n, n), interpolation=cv2.INTER_LINEAR)
    f = np.linspace(-1, 1, n, dtype=np.float32)
    fx, fy = np.meshgrid(f, f)
    full = _poly_terms(fx.ravel(), fy.ravel()) @ coef
    return np.maximum(full.reshape(n, n, 3), 1.0).astype(np.float32)


def normalise(img: np.ndarray) -> np.ndarray:
    """The frame divided by its illumination: the table becomes (1, 1, 1) whatever the
    exposure, white balance or light gradient."""
    return img.astype(np.float32) / illumination(img)


def _region_masks(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(goal region, wall band) masks of an n px rectified workspace image."""
    k = n / WORKSPACE_PX
    goal = (goal_cover(n) > 0.5).astype(np.uint8)
    band = int(round(WALL_BAND_PX * k))
    wall = np.ones((n, n), np.uint8)
    wall[band:-band, band:-band] = 0
    return goal, wall


@functools.cache
def goal_cover(n: int) -> np.ndarray:
    """The share of each pixel of an n px rectified workspace image that the printed goal
    covers (float32, to 1/64 of a pixel)."""
    s = 8
    fine = np.zeros((n * s, n * s), np.uint8)
    k = n * s / WORKSPACE_PX
    for p in tee_polygons(GOAL_POSE):  # fine pixel j's centre is at workspace (j + 0.5) / k
        cv2.fillPoly(fine, [np.round((p * k - 0.5) * 16).astype(np.int32)], 1, shift=4)
    return cv2.resize(fine.astype(np.float32), (n, n), interpolation=cv2.INTER_AREA)


@dataclass
class ColourModel:
    """Colours of the block and the goal region relative to the table (normalised: the
    table is (1, 1, 1)), and the frame's noise, as learned from calibration frames."""

    block: tuple[float, float, float]
    goal: tuple[float, float, float]
    noise: float  # std of a normalised table pixel
    table: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        self.block, self.goal, self.table = (
            tuple(float(v) for v in c) for c in (self.block, self.goal, self.table)
        )

    @property
    def outlier(self) -> float:
        """A pixel this far (normalised) from every block/background mix is something else."""
        return max(5.0 * self.noise, 0.08)

    def unmix(self, norm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(block fraction, residual) of each pixel, mixing the block with the table or the
        goal behind it, whichever explains it better."""
        backgrounds = (np.array(self.table, np.float32), np.array(self.goal, np.float32))
        return verify.unmix(norm, np.array(self.block, np.float32), backgrounds, 1.5)

    def segment(self, img: np.ndarray) -> verify.Segmentation:
        """The verifier's segmentation of a rectified frame."""
        norm = img.astype(np.float32) / illumination(img, np.array(self.table, np.float32),
                                                     tol=max(3 * self.noise, 0.03))  # fmt: skip
        goal, wall = _region_masks(img.shape[0])
        # this frame's noise, from the table (light and gain change it; calibration's is a floor)
        tbl = norm[(np.abs(norm - np.array(self.table, np.float32)).max(-1) < 0.15) & (wall == 0)]
        model = self
        if len(tbl) > 100:
            mad = np.median(np.abs(tbl - np.median(tbl, axis=0)), axis=0)
            noise = max(float(np.median(1.4826 * mad)), self.noise)
            model = ColourModel(self.block, self.goal, noise, self.table)
        for _ in range(2):  # the learned colours, then the colours of this frame
            alpha, resid = model.unmix(norm)
            other = (resid > model.outlier).astype(np.uint8)
            # an isolated noisy pixel is not an occluder
            other = cv2.morphologyEx(other, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))
            block = ((alpha > 0.5) & (other == 0) & (wall == 0)).astype(np.uint8)
            block = cv2.morphologyEx(block, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))
            model = model._adapted(norm, block, goal & (1 - block) & (1 - other))
        care = (other == 0).astype(np.uint8)
        soft_care = (cv2.dilate(other, np.ones((5, 5), np.uint8)) == 0) & (wall == 0)
        # a clipped channel says only "at least this bright": no coverage can be read there
        soft_care &= ~(img >= CLIPPED).any(-1)
        block_c, goal_c, table_c = (
            np.array(c, np.float32) for c in (model.block, model.goal, model.table)
        )
        colours = verify.MatColours(norm, block_c, goal_c, table_c, goal_cover(img.shape[0]))
        return verify.Segmentation(block, care, soft_care, lambda roi: alpha[roi], colours=colours)

    def _adapted(self, norm: np.ndarray, block: np.ndarray, goal: np.ndarray) -> ColourModel:
        """This model with the block's and goal's colours as this frame shows them (an
        exposure that clips the table, a camera's gamma), when enough of each is in view
        and the colour stays near the learned one."""
        k = np.ones((5, 5), np.uint8)
        out = {}
        for name, mask in (("block", block), ("goal", goal)):
            inner = cv2.erode(mask.astype(np.uint8), k).astype(bool)
            learned = np.array(getattr(self, name))
            if inner.sum() >= 40:
                seen = np.median(norm[inner], axis=0)
                if np.linalg.norm(seen - learned) < 0.25:
                    out[name] = tuple(seen)
        if not out:
            return self
        return ColourModel(out.get("block", self.block), out.get("goal", self.goal),
                           self.noise, self.table)  # fmt: skip

    def to_dict(self) -> dict:
        return {"block": list(self.block), "goal": list(self.goal), "table": list(self.table),
                "noise": self.noise}  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict) -> ColourModel:
        return cls(tuple(d["block"]), tuple(d["goal"]), float(d["noise"]),
                   tuple(d.get("table", (1.0, 1.0, 1.0))))  # fmt: skip


def learn_colours(empty: np.ndarray, with_block: np.ndarray) -> ColourModel:
    """The colour model from two rectified frames: the mat without the block, and the same
    scene with the block placed anywhere on it (nothing else moved)."""
    if empty.shape != with_block.shape:
        raise CalibrationError("the two colour frames differ in size")
    n = empty.shape[0]
    goal, wall = _region_masks(n)
    e, b = normalise(empty), normalise(with_block)
    er = cv2.erode(goal, np.ones((5, 5), np.uint8)).astype(bool)
    table_px = (cv2.dilate(goal, np.ones((7, 7), np.uint8)) == 0) & (wall == 0)
    t_vals = e[table_px]
    med = np.median(t_vals, axis=0)
    noise = float(np.median(1.4826 * np.median(np.abs(t_vals - med), axis=0)))
    noise = max(noise, 0.004)
    if not er.any():
        raise CalibrationError("the goal region is not in the rectified frame")
    goal_c = np.median(e[er], axis=0)
    changed = (np.abs(b - e).max(-1) > max(6 * noise, 0.06)).astype(np.uint8)
    changed[wall.astype(bool)] = 0
    changed = cv2.morphologyEx(changed, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    count, labels, stats, _c = cv2.connectedComponentsWithStats(changed)
    area = _T_AREA * (n / WORKSPACE_PX) ** 2
    best = None
    for i in range(1, count):
        a = stats[i, cv2.CC_STAT_AREA]
        if 0.6 * area < a < 1.5 * area and (best is None or abs(a - area) < best[0]):
            best = (abs(a - area), i)
    if best is None:
        raise CalibrationError(
            "no block-sized change between the two frames: take the first frame without the "
            "block and the second with it, nothing else moved"
        )
    blk = cv2.erode((labels == best[1]).astype(np.uint8), np.ones((5, 5), np.uint8))
    block_c = np.median(b[blk.astype(bool)], axis=0)
    return ColourModel(tuple(block_c), tuple(goal_c), noise, tuple(med))


# --- one interface for both kinds of camera ------------------------------------------------
class TopDownPerception:
    """gym-pusht's renderer from straight above (the sim cell's default camera)."""

    name = "renderer top-down (palette)"

    def estimate(self, frame: np.ndarray) -> verify.PoseEstimate | None:
        return verify.estimate_block_pose(frame)

    def evaluate(self, frame: np.ndarray) -> verify.Verdict:
        return verify.evaluate(frame)


class CameraPerception:
    """A calibrated camera: rectify, normalise the light, classify by the learned colours."""

    def __init__(self, calib: CameraCalibration, size: int = 256):
        if calib.colours is None:
            raise CalibrationError(
                f"the calibration of {calib.robot_id} has no colour model: run "
                "`enpire calibrate camera` with the --empty and --block frames"
            )
        self.calib, self.size = calib, size
        self.name = f"calibrated camera {calib.image_size[0]}x{calib.image_size[1]}"

    def rectify(self, frame: np.ndarray) -> np.ndarray:
        return self.calib.rectify(frame, self.size)

    def estimate(self, frame: np.ndarray) -> verify.PoseEstimate | None:
        return verify.estimate_block_pose(self.rectify(frame), model=self.calib.colours)

    def evaluate(self, frame: np.ndarray) -> verify.Verdict:
        return verify.evaluate(self.rectify(frame), model=self.calib.colours)


def load_perception(calibration_dir: str | Path | None, robot_id: str):
    """The perception of a robot's camera: its calibration from ``calibration_dir`` when one
    is stored there, else the renderer's top-down view."""
    if calibration_dir:
        path = calibration_path(calibration_dir, robot_id)
        if path.exists():
            return CameraPerception(CameraCalibration.load(path))
    return TopDownPerception()


def calibrate_from_frames(
    board_frames: list[np.ndarray],
    empty_frames: list[np.ndarray],
    block_frames: list[np.ndarray],
    robot_id: str = "robot_0",
) -> CameraCalibration:
    """A cell's whole calibration: intrinsics from the board frames (none: a homography from
    the mat markers only), the table from the mat without the block (frames averaged: less
    noise), and the colour model from those and the frames with the block on the mat."""
    from enpire_env.calibration import calibrate_intrinsics, calibrate_table

    if not empty_frames or not block_frames:
        raise CalibrationError("need frames of the mat without the block and with it")
    empty = _mean_frame(empty_frames)
    intr = calibrate_intrinsics(board_frames, empty) if board_frames else None
    calib = calibrate_table(empty, intr, robot_id)
    calib.correction = goal_correction(calib, empty)
    calib.colours = learn_colours(calib.rectify(empty), calib.rectify(_mean_frame(block_frames)))
    return calib


def goal_correction(calib: CameraCalibration, empty: np.ndarray) -> tuple[float, float, float]:
    """(dx, dy, dtheta): how far the printed goal, found to a few hundredths of a pixel in the
    rectified frame of the empty mat, sits from where it is printed. The table pose comes from
    markers at the mat's corners; what its small errors (and the intrinsics') leave at the
    centre, where the verifier decides, is measured here on the goal's own edges and taken
    out by rectify(). (0, 0, 0) when the goal cannot be fitted."""
    from dataclasses import replace

    flat = replace(calib, correction=(0.0, 0.0, 0.0))
    rect = normalise(flat.rectify(empty))
    n = rect.shape[0]
    goal, wall = _region_masks(n)
    inner = cv2.erode(goal, np.ones((5, 5), np.uint8)).astype(bool)
    table = (cv2.dilate(goal, np.ones((9, 9), np.uint8)) == 0) & (wall == 0)
    if inner.sum() < 50 or table.sum() < 50:
        return (0.0, 0.0, 0.0)
    goal_c, table_c = np.median(rect[inner], axis=0), np.median(rect[table], axis=0)
    alpha, _resid = verify.unmix(rect, goal_c, [table_c])
    mask = (alpha > 0.5).astype(np.uint8)
    # the goal is fitted as the block is (the same colour fit: whatever bias that fit has,
    # block and goal share it, and coverage compares the two)
    nothing = np.zeros((n, n), np.float32)
    colours = verify.MatColours(rect, goal_c, table_c, table_c, nothing)
    seg = verify.Segmentation(
        mask, np.ones_like(mask), wall == 0, lambda roi: alpha[roi], colours=colours
    )
    start = np.array([*tee_world_point(GOAL_POSE, verify.LOCAL_CENTROID), GOAL_POSE[2]])
    fit, mismatch = verify._refine_colour(start, seg)
    if mismatch > 0.2 or np.hypot(*(fit[:2] - start[:2])) > 5:
        return (0.0, 0.0, 0.0)  # not the printed goal: leave the table pose as it is
    seen = verify._pose_from_centroid(*fit)
    turn = math.remainder(seen[2] - GOAL_POSE[2], 2 * math.pi)
    return (float(seen[0] - GOAL_POSE[0]), float(seen[1] - GOAL_POSE[1]), float(turn))


def _mean_frame(frames: list[np.ndarray]) -> np.ndarray:
    shapes = {f.shape for f in frames}
    if len(shapes) != 1:
        raise CalibrationError(f"frames differ in size: {sorted(shapes)}")
    return np.clip(np.mean(np.stack(frames).astype(np.float32), 0) + 0.5, 0, 255).astype(np.uint8)


def synthetic_calibration_frames(camera, cell, n_board: int = 12, n_mat: int = 4) -> dict:
    """The frames a person would take to calibrate ``cell`` seen through ``camera`` (a
    :class:`~enpire_env.camera_sim.SyntheticCamera`): the board at varied poses, the mat
    without the block, and with the block put down somewhere. The cell's block is put back."""
    from enpire_env.camera_sim import board_poses

    keep = cell.block_pose().copy()
    boards = [camera.board_frame(r, t) for r, t in board_poses(n_board, seed=camera.cfg.seed)]
    cell.teleport(np.array([-1000.0, -1000.0, 0.0]))  # off the mat
    empty = [camera.view(cell) for _ in range(n_mat)]
    cell.teleport(np.array([150.0, 380.0, 0.7]))
    block = [camera.view(cell) for _ in range(n_mat)]
    cell.teleport(keep)
    return {"board": boards, "empty": empty, "block": block}


def calibrate_synthetic(calibration_dir, robot_ids=("robot_0",), camera=None) -> list[Path]:
    """Calibrate the sim cells' synthetic camera (``camera``, default: the cells' default
    camera) as a person would, and store it for each robot: what `enpire calibrate camera
    --sim` and `enpire launch --camera synthetic` do. Returns the files written."""
    from enpire_env.camera_sim import CameraConfig, SyntheticCamera
    from enpire_env.sim_cell import PushTCell

    frames = synthetic_calibration_frames(camera or SyntheticCamera(CameraConfig()), PushTCell())
    calib = calibrate_from_frames(frames["board"], frames["empty"], frames["block"])
    out = []
    for r in robot_ids:
        one = CameraCalibration.from_dict({**calib.to_dict(), "robot_id": r})
        out.append(one.save(calibration_path(calibration_dir, r)))
    return out

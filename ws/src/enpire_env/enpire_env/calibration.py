"""Camera calibration of a cell: intrinsics from a ChArUco board, the table from the ArUco
markers printed at the mat's corners, and the map from camera pixels to workspace px.

    intr = calibrate_intrinsics(board_frames)           # K, distortion, RMS error
    calib = calibrate_table(mat_frame, intr, robot_id)  # table pose, reprojection error
    calib.colours = learn_colours(calib.rectify(empty), calib.rectify(with_block))
    calib.save(path); CameraCalibration.load(path).rectify(frame)  # top-down workspace image

Without board frames the table is found by a homography from the markers alone (no lens
distortion model). ``validate`` measures a new frame against a stored calibration.
Everything here is ROS-free; ``enpire calibrate camera`` is the command line over it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from enpire_env.camera_sim import (
    MAT_MARKER_IDS,
    aruco_dictionary,
    charuco_board,
    mat_marker_corners,
)
from enpire_env.pusht_geometry import GOAL_POSE, WORKSPACE_PX

MIN_BOARD_VIEWS = 4
MIN_BOARD_CORNERS = 8


class CalibrationError(Exception):
    """A calibration that cannot be made from these frames (says what is missing)."""


@dataclass
class Intrinsics:
    camera_matrix: np.ndarray
    dist_coeffs: np.ndarray
    image_size: tuple[int, int]  # (width, height)
    rms_px: float  # RMS reprojection error of the board corners
    views: int


def _detector_params(refine=cv2.aruco.CORNER_REFINE_SUBPIX):
    p = cv2.aruco.DetectorParameters()
    p.cornerRefinementMethod = refine
    p.cornerRefinementWinSize = 3
    return p


def detect_board(img: np.ndarray):
    """(charuco corners (N, 1, 2), ids (N, 1)) seen in a frame, or None."""
    det = cv2.aruco.CharucoDetector(charuco_board())
    det.setDetectorParameters(_detector_params())
    corners, ids, _mc, _mi = det.detectBoard(_grey(img))
    if ids is None or len(ids) < MIN_BOARD_CORNERS:
        return None
    return corners, ids


def calibrate_intrinsics(frames: list[np.ndarray], mat: np.ndarray | None = None) -> Intrinsics:
    """Camera matrix and distortion (k1, k2, p1, p2, k3) from views of the ChArUco board, and
    of the mat (``mat``: a frame of it with its four corner markers in view): one more view
    of a known plane, whose corners lie at the edges of the view where the lens distorts most
    and where a handheld board seldom goes (measured on the synthetic camera at 10 deg: the
    markers' reprojection 0.25 -> 0.06 px, the pose error near the goal 0.08 -> 0.02 px)."""
    if not frames:
        raise CalibrationError("no board frames given")
    size = (frames[0].shape[1], frames[0].shape[0])
    board, obj, img = charuco_board(), [], []
    for f in frames:
        if (f.shape[1], f.shape[0]) != size:
            raise CalibrationError(f"frames differ in size: {size} vs {f.shape[1::-1]}")
        seen = detect_board(f)
        if seen is None:
            continue
        o, i = board.matchImagePoints(*seen)
        obj.append(o.astype(np.float32))
        img.append(i.astype(np.float32))
    if len(obj) < MIN_BOARD_VIEWS:
        raise CalibrationError(
            f"the board was found in {len(obj)} of {len(frames)} frames; need "
            f">= {MIN_BOARD_VIEWS} views with >= {MIN_BOARD_CORNERS} corners each"
        )
    seen = detect_mat_markers(mat) if mat is not None else {}
    if len(seen) == len(MAT_MARKER_IDS) and (mat.shape[1], mat.shape[0]) == size:
        ws, px = _correspondences(seen)
        # a view's units are its own (its pose absorbs them): workspace px as they are
        obj.append(np.concatenate([ws, np.zeros((len(ws), 1))], -1).astype(np.float32)[:, None])
        img.append(px.astype(np.float32)[:, None])
    rms, k, d, _r, _t = cv2.calibrateCamera(obj, img, size, None, None, flags=cv2.CALIB_FIX_K3)
    return Intrinsics(k, d.ravel()[:5], size, float(rms), len(obj))


def detect_mat_markers(img: np.ndarray) -> dict[int, np.ndarray]:
    """The mat's corner markers seen in a frame: id -> (4, 2) corners in pixels."""
    # a marker's outer corners are L-corners, where corner-subpixel search (made for the
    # board's X-corners) is biased by blur; fitting lines to the contour is not
    det = cv2.aruco.ArucoDetector(
        aruco_dictionary(), _detector_params(cv2.aruco.CORNER_REFINE_CONTOUR)
    )
    grey = _grey(img)
    corners, ids, _rej = det.detectMarkers(grey)
    if ids is None:
        return {}
    return {
        int(i): refine_marker_corners(grey, c.reshape(4, 2).astype(np.float64))
        for i, c in zip(ids.ravel(), corners, strict=True)
        if int(i) in MAT_MARKER_IDS
    }


def refine_marker_corners(grey: np.ndarray, corners: np.ndarray, samples: int = 15):
    """A marker's outer corners (4, 2) to a few hundredths of a pixel: each side's edge found
    to sub-pixel precision at ``samples`` points along its middle 70 % (where its dark border
    meets the white mat, half-way between the two levels), a line fitted through them, and
    the corners where neighbouring lines meet. ArUco's own refinements sit 0.5-0.8 px off on a
    blurred L-corner (measured on the synthetic camera); these ~0.05 px. A side whose edge
    cannot be traced keeps the detector's corners."""
    g = grey.astype(np.float32)
    along = np.linspace(0.15, 0.85, samples)
    lines = []
    for k in range(4):
        a, b = corners[k], corners[(k + 1) % 4]
        length = float(np.linalg.norm(b - a))
        if length < 12:
            return corners
        # across the edge: into the marker no further than most of its black border (a sixth
        # of its side: 4 x 4 bits and a one-bit border), whose inner bits may be white
        half = min(4.0, 0.6 * length / 6)
        reach = np.arange(-half, half + 1e-9, 0.25)
        normal = np.array([a[1] - b[1], b[0] - a[0]]) / length
        pts = a + along[:, None, None] * (b - a) + reach[None, :, None] * normal
        mx, my = pts[..., 0].astype(np.float32), pts[..., 1].astype(np.float32)
        prof = cv2.remap(g, mx, my, cv2.INTER_LINEAR)
        edge = []
        for i, pr in enumerate(prof):
            lo, hi = float(pr.min()), float(pr.max())
            mid = (lo + hi) / 2
            cross = np.nonzero((pr[1:] > mid) != (pr[:-1] > mid))[0]
            if hi - lo < 20 or len(cross) != 1:
                continue  # no clean step here (a bit cell, glare)
            j = int(cross[0])
            s = reach[j] + (mid - pr[j]) / (pr[j + 1] - pr[j]) * (reach[j + 1] - reach[j])
            edge.append(pts[i, 0] + (s - reach[0]) * normal)
        if len(edge) < samples // 2:
            return corners
        e = np.array(edge)
        centre = e.mean(axis=0)
        lines.append((centre, np.linalg.svd(e - centre)[2][0]))
    out = []
    for k in range(4):  # corner k: where side k-1 meets side k
        (p, u), (q, v) = lines[k - 1], lines[k]
        t = np.linalg.solve(np.array([u, -v]).T, q - p)
        out.append(p + t[0] * u)
    return np.array(out)


def _grey(img: np.ndarray) -> np.ndarray:
    return img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)


def _correspondences(seen: dict[int, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    known = mat_marker_corners()
    ids = sorted(seen)
    return (
        np.concatenate([known[i] for i in ids]),
        np.concatenate([seen[i] for i in ids]),
    )


@dataclass
class CameraCalibration:
    """How a cell's camera sees its table, and the colours it sees there."""

    robot_id: str
    image_size: tuple[int, int]  # (width, height)
    camera_matrix: np.ndarray | None = None  # None: homography only
    dist_coeffs: np.ndarray | None = None
    rvec: np.ndarray | None = None  # table -> camera
    tvec: np.ndarray | None = None
    homography: np.ndarray | None = None  # workspace px -> (undistorted) pixels
    intrinsics_rms_px: float = float("nan")
    reprojection_px: float = float("nan")  # of the mat markers' corners
    colours: object | None = None  # enpire_env.perception.ColourModel
    # (dx, dy, dtheta): where the printed goal shows up in the rectified mat against where it
    # is printed (perception.goal_correction); rectify() takes it out
    correction: tuple[float, float, float] = (0.0, 0.0, 0.0)
    created: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        self._maps: dict[int, tuple] = {}

    # --- geometry -----------------------------------------------------------------------
    def project(self, pts_ws: np.ndarray) -> np.ndarray:
        """Pixels of table points (N, 2) in workspace px."""
        pts = np.asarray(pts_ws, dtype=np.float64).reshape(-1, 2)
        if self.camera_matrix is not None:
            obj = np.concatenate([pts, np.zeros((len(pts), 1))], -1)
            img, _ = cv2.projectPoints(obj, self.rvec, self.tvec, self.camera_matrix,
                                       self.dist_coeffs)  # fmt: skip
            return img.reshape(-1, 2)
        return cv2.perspectiveTransform(pts[None], self.homography)[0]

    def rectify(self, frame: np.ndarray, size: int = 256) -> np.ndarray:
        """The workspace as a square top-down image of ``size`` px (as the renderer's)."""
        if (frame.shape[1], frame.shape[0]) != tuple(self.image_size):
            raise ValueError(
                f"frame is {frame.shape[1]}x{frame.shape[0]}, the calibration is for "
                f"{self.image_size[0]}x{self.image_size[1]}"
            )
        if size not in self._maps:
            fine = 2 * size  # sample at twice the output, then average (no aliasing)
            k = WORKSPACE_PX / fine
            c = (np.arange(fine) + 0.5) * k
            xx, yy = np.meshgrid(c, c)
            ws = self.corrected(np.stack([xx.ravel(), yy.ravel()], -1))
            px = self.project(ws).reshape(fine, fine, 2)
            self._maps[size] = (px[..., 0].astype(np.float32), px[..., 1].astype(np.float32))
        mx, my = self._maps[size]
        fine = cv2.remap(frame, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return cv2.resize(fine, (size, size), interpolation=cv2.INTER_AREA)

    def corrected(self, pts_ws: np.ndarray) -> np.ndarray:
        """Where table points (N, 2) are by the table pose, given ``correction``: a turn by
        dtheta about the goal's position and a shift by (dx, dy), as goal_correction measured
        them."""
        dx, dy, dth = self.correction
        if not (dx or dy or dth):
            return pts_ws
        c, s = math.cos(dth), math.sin(dth)
        centre = np.array(GOAL_POSE[:2])
        rel = np.asarray(pts_ws, dtype=np.float64) - centre
        return centre + (dx, dy) + rel @ np.array([[c, s], [-s, c]])

    def workspace_px_per_pixel(self) -> float:
        """How many workspace px one camera pixel spans at the workspace's centre."""
        c = WORKSPACE_PX / 2
        p = self.project(np.array([[c - 10, c], [c + 10, c], [c, c - 10], [c, c + 10]]))
        return 20.0 / math.sqrt(np.linalg.norm(p[1] - p[0]) * np.linalg.norm(p[3] - p[2]))

    def tilt_deg(self) -> float:
        """The camera's tilt from looking straight down at the table (needs intrinsics)."""
        if self.rvec is None:
            return float("nan")
        rot = cv2.Rodrigues(self.rvec)[0]
        return math.degrees(math.acos(min(1.0, abs(rot[2, 2]))))

    # --- checks ---------------------------------------------------------------------------
    def validate(self, frame: np.ndarray) -> dict:
        """Where this frame's mat markers are against where the calibration puts them: the
        reprojection error in pixels and in workspace px (a camera that moved shows here)."""
        seen = detect_mat_markers(frame)
        if not seen:
            raise CalibrationError("no mat marker in view: is the camera pointed at the mat?")
        ws, px = _correspondences(seen)
        err = np.linalg.norm(self.project(ws) - px, axis=1)
        rms = float(np.sqrt(np.mean(err**2)))
        return {
            "markers": sorted(seen),
            "rms_px": rms,
            "max_px": float(err.max()),
            "rms_workspace_px": rms * self.workspace_px_per_pixel(),
        }

    # --- storage --------------------------------------------------------------------------
    def to_dict(self) -> dict:
        def arr(a):
            return None if a is None else np.asarray(a, dtype=float).tolist()

        return {
            "robot_id": self.robot_id,
            "image_size": list(self.image_size),
            "camera_matrix": arr(self.camera_matrix),
            "dist_coeffs": arr(None if self.dist_coeffs is None else self.dist_coeffs.ravel()),
            "rvec": arr(None if self.rvec is None else self.rvec.ravel()),
            "tvec": arr(None if self.tvec is None else self.tvec.ravel()),
            "homography": arr(self.homography),
            "intrinsics_rms_px": self.intrinsics_rms_px,
            "reprojection_px": self.reprojection_px,
            "colours": None if self.colours is None else self.colours.to_dict(),
            "correction": [float(v) for v in self.correction],
            "created": self.created,
        }

    @classmethod
    def from_dict(cls, d: dict) -> CameraCalibration:
        from enpire_env.perception import ColourModel

        def arr(key, shape=None):
            v = d.get(key)
            if v is None:
                return None
            a = np.array(v, dtype=np.float64)
            return a.reshape(shape) if shape else a

        try:
            out = cls(
                robot_id=str(d["robot_id"]),
                image_size=tuple(int(v) for v in d["image_size"]),
                camera_matrix=arr("camera_matrix", (3, 3)),
                dist_coeffs=arr("dist_coeffs"),
                rvec=arr("rvec", (3, 1)),
                tvec=arr("tvec", (3, 1)),
                homography=arr("homography", (3, 3)),
                intrinsics_rms_px=float(d.get("intrinsics_rms_px", float("nan"))),
                reprojection_px=float(d.get("reprojection_px", float("nan"))),
                colours=ColourModel.from_dict(d["colours"]) if d.get("colours") else None,
                created=float(d.get("created", 0.0)),
                correction=tuple(float(v) for v in d.get("correction", (0.0, 0.0, 0.0))),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise CalibrationError(f"not a camera calibration: {e}") from None
        if out.camera_matrix is None and out.homography is None:
            raise CalibrationError("a calibration needs camera_matrix + rvec/tvec or homography")
        return out

    def save(self, path: str | Path) -> Path:
        import yaml

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> CameraCalibration:
        import yaml

        try:
            d = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as e:
            raise CalibrationError(f"cannot read {path}: {e}") from None
        if not isinstance(d, dict):
            raise CalibrationError(f"{path} is not a camera calibration")
        return cls.from_dict(d)


def calibration_path(calibration_dir: str | Path, robot_id: str) -> Path:
    return Path(calibration_dir).expanduser() / f"{robot_id}.yaml"


def calibrate_table(
    frame: np.ndarray, intrinsics: Intrinsics | None, robot_id: str = "robot_0"
) -> CameraCalibration:
    """The table's pose from the mat's corner markers (all four must be in view)."""
    seen = detect_mat_markers(frame)
    missing = [i for i in MAT_MARKER_IDS if i not in seen]
    if missing:
        raise CalibrationError(
            f"mat markers {missing} not found (seen: {sorted(seen)}); all four corners of the "
            "mat must be in view and unoccluded"
        )
    ws, px = _correspondences(seen)
    size = (frame.shape[1], frame.shape[0])
    if intrinsics is not None:
        if tuple(intrinsics.image_size) != size:
            raise CalibrationError(
                f"intrinsics are for {intrinsics.image_size}, the frame is {size}"
            )
        obj = np.concatenate([ws, np.zeros((len(ws), 1))], -1)
        ok, rvec, tvec = cv2.solvePnP(obj, px, intrinsics.camera_matrix, intrinsics.dist_coeffs,
                                      flags=cv2.SOLVEPNP_IPPE)  # fmt: skip
        if not ok:
            raise CalibrationError("solvePnP found no table pose from the mat markers")
        rvec, tvec = cv2.solvePnPRefineLM(
            obj, px, intrinsics.camera_matrix, intrinsics.dist_coeffs, rvec, tvec
        )
        und = cv2.undistortPoints(px[:, None], intrinsics.camera_matrix,
                                  intrinsics.dist_coeffs, P=intrinsics.camera_matrix)  # fmt: skip
        h, _ = cv2.findHomography(ws, und.reshape(-1, 2))
        calib = CameraCalibration(
            robot_id, size, intrinsics.camera_matrix, np.asarray(intrinsics.dist_coeffs).ravel(),
            rvec, tvec, h, intrinsics.rms_px,
        )  # fmt: skip
    else:
        h, _ = cv2.findHomography(ws, px)
        calib = CameraCalibration(robot_id, size, homography=h)
    err = np.linalg.norm(calib.project(ws) - px, axis=1)
    calib.reprojection_px = float(np.sqrt(np.mean(err**2)))
    return calib

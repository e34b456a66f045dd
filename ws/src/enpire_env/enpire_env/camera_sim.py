"""A synthetic camera over the simulated table: what a real cell's camera would see.

The mat is a plane in workspace px (gym-pusht's 512 x 512 units, x right, y down) with a
margin around the workspace where four ArUco markers are printed at its corners (what
``enpire calibrate camera`` finds the table by); on it the printed goal, the walls, the block
and the pusher, each drawn where it is (``draw_scene``). The camera looks at the workspace's centre
from above, tilted by ``tilt_deg`` from vertical, through a pinhole with radial / tangential
lens distortion (OpenCV's model); the frame then gets a lighting gradient and vignetting,
a brightness factor, white-balance gains, optical blur and sensor noise. It also renders a
ChArUco board held at arbitrary poses in front of the camera (intrinsics calibration).

Nothing here is specific to ROS; the sim cell node publishes these frames when its
``camera_model`` parameter is ``synthetic``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from enpire_env.pusht_geometry import GOAL_POSE, WORKSPACE_PX, tee_polygons, tee_sdf_at

ARUCO_DICT = cv2.aruco.DICT_4X4_50
MAT_MARGIN = 80.0  # workspace px of mat around the workspace
MARKER_SIDE = 56.0  # workspace px
MARKER_INSET = 12.0  # from the workspace's corner, outward
MAT_MARKER_IDS = (0, 1, 2, 3)  # top-left, top-right, bottom-right, bottom-left
# the printed calibration board (ChArUco): squares x rows, square and marker side [m]
BOARD_SQUARES = (7, 5)
BOARD_SQUARE_M = 0.04
BOARD_MARKER_M = 0.03
BOARD_FIRST_ID = 10  # the board's markers do not clash with the mat's


def aruco_dictionary():
    return cv2.aruco.getPredefinedDictionary(ARUCO_DICT)


def charuco_board():
    ids = np.arange(BOARD_FIRST_ID, BOARD_FIRST_ID + BOARD_SQUARES[0] * BOARD_SQUARES[1] // 2)
    return cv2.aruco.CharucoBoard(
        BOARD_SQUARES, BOARD_SQUARE_M, BOARD_MARKER_M, aruco_dictionary(), ids
    )


def mat_marker_corners() -> dict[int, np.ndarray]:
    """Each mat marker's four corners (clockwise from its top-left) in workspace px."""
    w, m, s = WORKSPACE_PX, MARKER_INSET, MARKER_SIDE
    origins = {0: (-m - s, -m - s), 1: (w + m, -m - s), 2: (w + m, w + m), 3: (-m - s, w + m)}
    return {
        i: np.array([(x, y), (x + s, y), (x + s, y + s), (x, y + s)], dtype=np.float64)
        for i, (x, y) in origins.items()
    }


@functools.cache
def _marker_images() -> dict[int, np.ndarray]:
    px = int(MARKER_SIDE)
    return {i: cv2.aruco.generateImageMarker(aruco_dictionary(), i, px) for i in MAT_MARKER_IDS}


def mat_texture(scene: np.ndarray) -> np.ndarray:
    """The printed mat: a workspace image (square, any size, e.g. gym-pusht's 512 px canvas)
    inside a white margin with the corner markers, at one texel per workspace px."""
    m = int(MAT_MARGIN)
    side = int(WORKSPACE_PX) + 2 * m
    tex = np.full((side, side, 3), 255, np.uint8)
    if scene.shape[0] != int(WORKSPACE_PX):
        scene = cv2.resize(scene, (int(WORKSPACE_PX),) * 2, interpolation=cv2.INTER_LINEAR)
    tex[m : m + scene.shape[0], m : m + scene.shape[1]] = scene
    for i, c in mat_marker_corners().items():
        x, y = (int(round(v)) + m for v in c[0])
        img = _marker_images()[i]
        tex[y : y + img.shape[0], x : x + img.shape[1]] = img[..., None]
    return tex


# gym-pusht's colours: the T (its renderer fills it 1.2x lighter than LightSlateGray), the
# pusher RoyalBlue, the goal LightGreen, the walls LightGray (2 px either side of x, y = 5, 506)
_BLOCK = np.array((143, 163, 184), np.float32)
_PUSHER = np.array((65, 105, 225), np.float32)
_GOAL = (144, 238, 144)
_WALL = (211, 211, 211)
_WALL_HALF_PX = 2.0
_PUSHER_RADIUS = 15.0
_SUPERSAMPLE = 4  # per side, where a pixel is cut by an edge


@functools.cache
def _mat_layer() -> np.ndarray:
    """The printed goal and the walls on the white table, anti-aliased (float32 RGB)."""
    n, s = int(WORKSPACE_PX), 8
    img = np.full((n * s, n * s, 3), 255, np.uint8)
    for poly in tee_polygons(GOAL_POSE):  # pixel j's centre is at workspace (j + 0.5) / s
        pts = np.round((poly * s - 0.5) * 16).astype(np.int32)
        cv2.fillPoly(img, [pts], _GOAL, lineType=cv2.LINE_8, shift=4)
    for line in (5.0, 506.0):  # the four walls: segments along x, y = 5 and 506
        a, b = (int(round((line + d) * s)) for d in (-_WALL_HALF_PX, _WALL_HALF_PX))
        img[a:b, 3 * s : 508 * s] = _WALL
        img[3 * s : 508 * s, a:b] = _WALL
    return cv2.resize(img, (n, n), interpolation=cv2.INTER_AREA).astype(np.float32)


def _inside(sd_of, x0: int, y0: int, w: int, h: int) -> np.ndarray:
    """Share of each pixel of the box (x0, y0, w, h) where ``sd_of(x, y) < 0``: to 1/16 of
    a pixel along the edges (supersampled there), 0 or 1 elsewhere."""
    ys, xs = np.mgrid[y0 : y0 + h, x0 : x0 + w] + 0.5
    sd = sd_of(xs, ys)
    cov = (sd < 0).astype(np.float32)
    cut = np.abs(sd) < 0.75  # within a pixel's half-diagonal: only these can be cut
    if cut.any():
        off = (np.arange(_SUPERSAMPLE) + 0.5) / _SUPERSAMPLE - 0.5
        fx, fy = np.broadcast_arrays(
            xs[cut][:, None, None] + off[None, None, :],
            ys[cut][:, None, None] + off[None, :, None],
        )
        cov[cut] = (sd_of(fx, fy) < 0).mean(axis=(1, 2))
    return cov


def draw_scene(block_pose, pusher_xy=None) -> np.ndarray:
    """The workspace as a camera sees a real cell's mat (512 x 512 RGB, one px per workspace
    px): the printed goal and the walls, the T block of its real size in one colour and the
    pusher, each where it is to a sixteenth of a pixel, in gym-pusht's colours. gym-pusht's
    renderer rounds every vertex to a whole pixel and outlines the T 2 px fatter in a darker
    colour: no camera sees a real block that way."""
    img = _mat_layer().copy()
    n = img.shape[0]

    def tee(px, py):
        return tee_sdf_at(block_pose, px, py)

    def pusher(px, py):
        return np.hypot(px - pusher_xy[0], py - pusher_xy[1]) - _PUSHER_RADIUS

    layers = [(tee, block_pose[:2], 125.0, _BLOCK)]
    if pusher_xy is not None:
        layers.insert(0, (pusher, pusher_xy, _PUSHER_RADIUS, _PUSHER))
    for sd_of, (cx, cy), reach, colour in layers:
        x0, y0 = max(int(cx - reach) - 1, 0), max(int(cy - reach) - 1, 0)
        x1, y1 = min(int(cx + reach) + 2, n), min(int(cy + reach) + 2, n)
        if x1 <= x0 or y1 <= y0:
            continue
        roi = img[y0:y1, x0:x1]
        roi += _inside(sd_of, x0, y0, x1 - x0, y1 - y0)[..., None] * (colour - roi)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


@dataclass
class CameraConfig:
    """The camera of a cell: optics, placement and the frame's imperfections."""

    width: int = 640
    height: int = 480
    hfov_deg: float = 62.0
    k1: float = -0.12  # radial distortion (barrel when negative)
    k2: float = 0.03
    p1: float = 0.0005  # tangential
    p2: float = -0.0004
    tilt_deg: float = 20.0  # from looking straight down
    roll_deg: float = 2.0  # about the optical axis
    distance: float = 880.0  # from the workspace centre, in workspace px
    exposure: float = 0.7  # the white mat's level at the brightest spot (1 = full scale)
    brightness: float = 1.0  # a change of light or exposure from there
    white_balance: tuple[float, float, float] = (1.0, 1.0, 1.0)  # RGB gains
    gradient: float = 0.15  # light falls off by this fraction across the view
    vignette: float = 0.15  # and by this fraction at the corners
    blur_sigma: float = 0.7  # camera px
    noise_sigma: float = 2.0  # grey levels
    seed: int = 0
    supersample: int = 2

    def __post_init__(self) -> None:
        if not 0 <= self.tilt_deg < 60:
            raise ValueError(f"tilt_deg must be in [0, 60), got {self.tilt_deg}")
        if self.width < 64 or self.height < 64 or not 10 < self.hfov_deg < 150:
            raise ValueError("width/height must be >= 64 px and hfov_deg in (10, 150)")
        if self.brightness <= 0 or self.exposure <= 0 or min(self.white_balance) <= 0:
            raise ValueError("exposure, brightness and white_balance gains must be positive")
        if self.blur_sigma < 0 or self.noise_sigma < 0 or self.supersample < 1:
            raise ValueError("blur_sigma and noise_sigma must be >= 0, supersample >= 1")
        self.white_balance = tuple(float(g) for g in self.white_balance)

    @property
    def camera_matrix(self) -> np.ndarray:
        f = self.width / 2 / math.tan(math.radians(self.hfov_deg) / 2)
        return np.array([[f, 0, (self.width - 1) / 2], [0, f, (self.height - 1) / 2], [0, 0, 1]])

    @property
    def dist_coeffs(self) -> np.ndarray:
        return np.array([self.k1, self.k2, self.p1, self.p2, 0.0])

    def table_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """(R, t): a table point X (workspace px, z = 0) is R @ X + t in the camera frame."""
        t, r = math.radians(self.tilt_deg), math.radians(self.roll_deg)
        # camera axes in table coordinates: x right, y down the image, z along the view;
        # untilted it looks straight down (table z points into the table)
        tilt = np.array([[1, 0, 0], [0, math.cos(t), -math.sin(t)], [0, math.sin(t), math.cos(t)]])
        roll = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
        axes = tilt @ roll  # columns: the camera's axes in table coordinates
        centre = np.array([WORKSPACE_PX / 2, WORKSPACE_PX / 2, 0.0])
        eye = centre - self.distance * axes[:, 2]
        rot = axes.T
        return rot, -rot @ eye


@dataclass
class SyntheticCamera:
    """Frames of the mat (and of a calibration board) as ``cfg`` would see them."""

    cfg: CameraConfig = field(default_factory=CameraConfig)

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.cfg.seed)
        self._maps = None

    def with_conditions(self, **changes) -> SyntheticCamera:
        """The same camera (same optics and placement) under other light or noise."""
        cam = SyntheticCamera(replace(self.cfg, **changes))
        if all(k not in _GEOMETRY for k in changes):
            cam._maps = self._maps
        return cam

    # --- geometry ---------------------------------------------------------------------
    def _rays(self) -> np.ndarray:
        """Unit-less view rays (x/z, y/z) of every supersampled pixel, undistorted."""
        c, s = self.cfg, self.cfg.supersample
        u = (np.arange(c.width * s) + 0.5) / s - 0.5
        v = (np.arange(c.height * s) + 0.5) / s - 0.5
        uu, vv = np.meshgrid(u, v)
        pts = np.stack([uu.ravel(), vv.ravel()], -1).astype(np.float64)[:, None, :]
        crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 20, 1e-9)
        und = cv2.undistortPointsIter(pts, c.camera_matrix, c.dist_coeffs, None, None, crit)
        return und.reshape(c.height * s, c.width * s, 2)

    def _plane_maps(self, rot: np.ndarray, t: np.ndarray, to_texel) -> tuple:
        """remap() maps onto a plane with pose (rot, t): every pixel's plane point, as texels."""
        rays = self._rays()
        d = np.concatenate([rays, np.ones(rays.shape[:2] + (1,))], -1) @ rot  # in plane coords
        origin = -rot.T @ t
        lam = -origin[2] / d[..., 2]
        p = origin[None, None, :2] + lam[..., None] * d[..., :2]
        p[lam <= 0] = -1e6  # behind the camera
        x, y = to_texel(p[..., 0], p[..., 1])
        return x.astype(np.float32), y.astype(np.float32)

    def table_maps(self):
        if self._maps is None:
            rot, t = self.cfg.table_pose()
            off = MAT_MARGIN - 0.5  # texel i covers workspace [i - margin, i - margin + 1)
            self._maps = self._plane_maps(rot, t, lambda x, y: (x + off, y + off))
        return self._maps

    def project(self, pts_ws: np.ndarray) -> np.ndarray:
        """Pixel positions of table points (N, 2) in workspace px."""
        rot, t = self.cfg.table_pose()
        obj = np.concatenate([np.asarray(pts_ws, float), np.zeros((len(pts_ws), 1))], -1)
        img, _ = cv2.projectPoints(
            obj, cv2.Rodrigues(rot)[0], t, self.cfg.camera_matrix, self.cfg.dist_coeffs
        )
        return img.reshape(-1, 2)

    # --- frames -----------------------------------------------------------------------
    def frame(self, scene: np.ndarray) -> np.ndarray:
        """The camera's RGB frame of the mat with ``scene`` (a top-down workspace image)."""
        mx, my = self.table_maps()
        optical = cv2.remap(mat_texture(scene), mx, my, cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=(90, 90, 90))  # fmt: skip
        return self._expose(optical)

    def view(self, cell) -> np.ndarray:
        """The camera's frame of a simulated cell (a :class:`~enpire_env.sim_cell.PushTCell`):
        its block and pusher where they are (:func:`draw_scene`)."""
        return self.frame(scene_of(cell))

    def board_frame(self, rvec, tvec, background: int = 110) -> np.ndarray:
        """A frame of the ChArUco board at pose (rvec, tvec) [m] in the camera frame."""
        board = charuco_board()
        sq = BOARD_SQUARE_M
        tex_px = 60  # texels per square
        w, h = BOARD_SQUARES[0] * tex_px, BOARD_SQUARES[1] * tex_px
        tex = board.generateImage((w, h), marginSize=0)
        rot = cv2.Rodrigues(np.asarray(rvec, float))[0]
        k = tex_px / sq

        def to_texel(x, y):
            return x * k - 0.5, y * k - 0.5

        maps = self._plane_maps(rot, np.asarray(tvec, float), to_texel)
        optical = cv2.remap(cv2.cvtColor(tex, cv2.COLOR_GRAY2RGB), *maps, cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT,
                            borderValue=(background,) * 3)  # fmt: skip
        return self._expose(optical)

    def _expose(self, optical: np.ndarray) -> np.ndarray:
        c = self.cfg
        img = optical.astype(np.float32)
        if c.supersample > 1:
            img = cv2.resize(img, (c.width, c.height), interpolation=cv2.INTER_AREA)
        if c.blur_sigma > 0:
            img = cv2.GaussianBlur(img, (0, 0), c.blur_sigma)
        img *= _light(c.width, c.height, c.gradient, c.vignette)[..., None]
        img *= c.exposure * c.brightness * np.array(c.white_balance, np.float32)
        if c.noise_sigma > 0:
            img += self._rng.normal(0.0, c.noise_sigma, img.shape).astype(np.float32)
        return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def scene_of(cell) -> np.ndarray:
    """:func:`draw_scene` of a simulated cell's present state."""
    return draw_scene(cell.block_pose(), tuple(cell.env.agent.position))


_GEOMETRY = {"width", "height", "hfov_deg", "k1", "k2", "p1", "p2", "tilt_deg", "roll_deg",
             "distance", "supersample"}  # fmt: skip


@functools.cache
def _light(w: int, h: int, gradient: float, vignette: float) -> np.ndarray:
    """Illumination over the image: a linear fall-off across it and vignetting."""
    x = np.linspace(-1, 1, w)[None, :]
    y = np.linspace(-1, 1, h)[:, None]
    lin = 1.0 - gradient * (x * 0.8 + y * 0.6 + 1.4) / 2.8
    vig = 1.0 - vignette * (x**2 + y**2) / 2
    return (lin * vig).astype(np.float32)


def board_poses(n: int = 12, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Varied poses (rvec, tvec [m]) of a handheld board filling part of a ~62 deg view."""
    rng = np.random.default_rng(seed)
    bw, bh = BOARD_SQUARES[0] * BOARD_SQUARE_M, BOARD_SQUARES[1] * BOARD_SQUARE_M
    out = []
    for _ in range(n):
        ang = rng.uniform(-0.45, 0.45, 3) * (1, 1, 0.5)
        rot = cv2.Rodrigues(ang)[0]
        z = rng.uniform(0.42, 0.6)
        centre = np.array([rng.uniform(-0.08, 0.08), rng.uniform(-0.05, 0.05), z])
        tvec = centre - rot @ np.array([bw / 2, bh / 2, 0.0])
        out.append((ang, tvec))
    return out

"""Episodes in the LeRobotDataset v3 layout, written with pyarrow and PyAV (no lerobot import).

    root/
      meta/info.json                                  codebase_version "v3.0", fps, features
      meta/tasks.parquet                              task string -> task_index
      meta/stats.json                                 per-feature mean/std/min/max/count
      meta/episodes/chunk-000/file-NNN.parquet        one row per episode (offsets, length, ...)
      data/chunk-000/file-NNN.parquet                 frames: observation.state, action, ...
      videos/observation.image/chunk-000/file-NNN.mp4 camera frames (H.264)

Each episode is its own data/video/meta file, written to a temporary name and renamed, so an
episode on disk is complete and a crash loses at most the one being written. ``extra`` columns
(enpire's: reward, success, seed, policy reference) sit beside LeRobot's own.
"""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CHUNK = "chunk-000"
VIDEO_KEY = "observation.image"
_FILE_RE = re.compile(r"file-(\d+)\.parquet$")


@dataclass
class EpisodeData:
    states: np.ndarray  # (T, S) float
    actions: np.ndarray  # (T, A) float
    rewards: np.ndarray  # (T,)
    success: bool
    task: str = "pusht"
    frames: np.ndarray | None = None  # (T, H, W, 3) uint8
    info: dict | None = None  # seed, policy, robot, ... (stored as JSON)


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    write(tmp)
    os.replace(tmp, path)


class LeRobotDatasetWriter:
    def __init__(
        self,
        root: str | Path,
        fps: int = 10,
        state_names: list[str] | None = None,
        action_names: list[str] | None = None,
        image_size: int | None = None,
        robot_type: str = "so101",
    ):
        self.root = Path(root)
        self.fps = fps
        self.state_names = state_names or ["tip_u", "tip_v", "block_x", "block_y", "block_theta"]
        self.action_names = action_names or ["tip_u", "tip_v", "lift"]
        self.image_size = image_size
        self.robot_type = robot_type
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        for d in ("meta/episodes/" + CHUNK, "data/" + CHUNK):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        if image_size:
            (self.root / "videos" / VIDEO_KEY / CHUNK).mkdir(parents=True, exist_ok=True)
        self._episodes = self._scan()
        self._stats = {key: _Moments() for key in ("observation.state", "action")}
        if self._episodes:  # reopened: the statistics of what is on disk, once
            data = read_frames(self.root)
            for key, m in self._stats.items():
                m.add(data[key])
        self._write_info()

    def _scan(self) -> list[dict]:
        import pyarrow.parquet as pq

        rows = []
        for f in sorted((self.root / "meta/episodes" / CHUNK).glob("file-*.parquet")):
            rows.extend(pq.read_table(f).to_pylist())
        return sorted(rows, key=lambda r: r["episode_index"])

    @property
    def num_episodes(self) -> int:
        return len(self._episodes)

    @property
    def num_frames(self) -> int:
        return sum(r["length"] for r in self._episodes)

    def features(self) -> dict:
        f = {
            "observation.state": {
                "dtype": "float32",
                "shape": [len(self.state_names)],
                "names": self.state_names,
            },
            "action": {
                "dtype": "float32",
                "shape": [len(self.action_names)],
                "names": self.action_names,
            },
            "next.reward": {"dtype": "float32", "shape": [1], "names": None},
            "next.success": {"dtype": "bool", "shape": [1], "names": None},
            "next.done": {"dtype": "bool", "shape": [1], "names": None},
            "timestamp": {"dtype": "float32", "shape": [1], "names": None},
            "frame_index": {"dtype": "int64", "shape": [1], "names": None},
            "episode_index": {"dtype": "int64", "shape": [1], "names": None},
            "index": {"dtype": "int64", "shape": [1], "names": None},
            "task_index": {"dtype": "int64", "shape": [1], "names": None},
        }
        if self.image_size:
            s = self.image_size
            f[VIDEO_KEY] = {
                "dtype": "video",
                "shape": [s, s, 3],
                "names": ["height", "width", "channels"],
                "info": {
                    "video.height": s,
                    "video.width": s,
                    "video.codec": "h264",
                    "video.pix_fmt": "yuv420p",
                    "video.is_depth_map": False,
                    "video.fps": self.fps,
                    "video.channels": 3,
                    "has_audio": False,
                },
            }
        return f

    def _write_info(self) -> None:
        n = self.num_episodes
        info = {
            "codebase_version": "v3.0",
            "robot_type": self.robot_type,
            "total_episodes": n,
            "total_frames": self.num_frames,
            "total_tasks": len({t for r in self._episodes for t in r["tasks"]}) or 1,
            "chunks_size": 1000,
            "data_files_size_in_mb": 100,
            "video_files_size_in_mb": 500,
            "fps": self.fps,
            "splits": {"train": f"0:{n}"},
            "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
            "video_path": (
                "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
                if self.image_size
                else None
            ),
            "features": self.features(),
        }
        _atomic(self.root / "meta/info.json", lambda p: p.write_text(json.dumps(info, indent=2)))

    def add_episode(self, ep: EpisodeData) -> int:
        """Write one finished episode; returns its episode_index."""
        with self._write_lock:  # one episode at a time: indices and offsets stay consistent
            return self._add_episode(ep)

    def _add_episode(self, ep: EpisodeData) -> int:
        import pyarrow as pa
        import pyarrow.parquet as pq

        with self._lock:
            idx = self.num_episodes
            start = self.num_frames
            tasks = sorted({t for r in self._episodes for t in r["tasks"]} | {ep.task})
        n = len(ep.states)
        if n == 0 or len(ep.actions) != n or len(ep.rewards) != n:
            raise ValueError("an episode needs as many states, actions and rewards, at least 1")
        done = np.zeros(n, bool)
        done[-1] = True
        success = np.zeros(n, bool)
        success[-1] = ep.success
        ts = np.arange(n, dtype=np.float32) / self.fps
        table = pa.table(
            {
                "observation.state": pa.array(
                    np.asarray(ep.states, np.float32).tolist(), pa.list_(pa.float32())
                ),
                "action": pa.array(
                    np.asarray(ep.actions, np.float32).tolist(), pa.list_(pa.float32())
                ),
                "next.reward": pa.array(np.asarray(ep.rewards, np.float32)),
                "next.success": pa.array(success),
                "next.done": pa.array(done),
                "timestamp": pa.array(ts),
                "frame_index": pa.array(np.arange(n, dtype=np.int64)),
                "episode_index": pa.array(np.full(n, idx, np.int64)),
                "index": pa.array(np.arange(start, start + n, dtype=np.int64)),
                "task_index": pa.array(np.full(n, tasks.index(ep.task), np.int64)),
            }
        )
        name = f"file-{idx:03d}"
        _atomic(self.root / "data" / CHUNK / f"{name}.parquet", lambda p: pq.write_table(table, p))
        row = {
            "episode_index": idx,
            "tasks": [ep.task],
            "length": n,
            "success": bool(ep.success),
            "info": json.dumps(ep.info or {}),
            "data/chunk_index": 0,
            "data/file_index": idx,
            "dataset_from_index": start,
            "dataset_to_index": start + n,
            "meta/episodes/chunk_index": 0,
            "meta/episodes/file_index": idx,
        }
        if self.image_size:
            if ep.frames is None or len(ep.frames) != n:
                raise ValueError("this dataset records video: the episode needs one frame a step")
            mp4 = self.root / "videos" / VIDEO_KEY / CHUNK / f"{name}.mp4"
            _atomic(mp4, lambda p: write_video(p, ep.frames, self.fps))
            row.update(
                {
                    f"videos/{VIDEO_KEY}/chunk_index": 0,
                    f"videos/{VIDEO_KEY}/file_index": idx,
                    f"videos/{VIDEO_KEY}/from_timestamp": 0.0,
                    f"videos/{VIDEO_KEY}/to_timestamp": n / self.fps,
                }
            )
        meta = self.root / "meta/episodes" / CHUNK / f"{name}.parquet"
        _atomic(meta, lambda p: pq.write_table(pa.Table.from_pylist([row]), p))
        with self._lock:
            self._episodes.append(row)
            self._stats["observation.state"].add(np.asarray(ep.states, np.float32))
            self._stats["action"].add(np.asarray(ep.actions, np.float32))
            self._write_tasks(tasks)
            self._write_info()
            self._write_stats()
        return idx

    def _write_tasks(self, tasks: list[str]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        # LeRobot keeps tasks as a pandas DataFrame indexed by the task string (the index is
        # what it reads back as an item's "task"): store it as pandas would, without pandas
        pandas_meta = {
            "index_columns": ["__index_level_0__"],
            "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode",
                                "numpy_type": "object", "metadata": {"encoding": "UTF-8"}}],
            "columns": [
                {"name": "task_index", "field_name": "task_index", "pandas_type": "int64",
                 "numpy_type": "int64", "metadata": None},
                {"name": None, "field_name": "__index_level_0__", "pandas_type": "unicode",
                 "numpy_type": "object", "metadata": None},
            ],
            "creator": {"library": "pyarrow", "version": pa.__version__},
        }  # fmt: skip
        t = pa.table(
            {"task_index": pa.array(range(len(tasks)), pa.int64()), "__index_level_0__": tasks}
        ).replace_schema_metadata({"pandas": json.dumps(pandas_meta)})
        _atomic(self.root / "meta/tasks.parquet", lambda p: pq.write_table(t, p))

    def _write_stats(self) -> None:
        stats = {key: m.summary() for key, m in self._stats.items()}
        text = json.dumps(stats, indent=2)
        _atomic(self.root / "meta/stats.json", lambda p: p.write_text(text))


class _Moments:
    """Count, mean, spread, min and max of the rows of arrays added one batch at a time
    (Chan et al.'s pairwise update), so a dataset's statistics cost one episode per episode,
    not a re-read of every frame written so far."""

    def __init__(self) -> None:
        self.n, self.mean, self.m2, self.min, self.max = 0, None, None, None, None

    def add(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows, np.float64)
        if rows.ndim != 2 or not len(rows):
            return
        k, mean = len(rows), rows.mean(0)
        m2 = ((rows - mean) ** 2).sum(0)
        if self.n == 0:
            self.n, self.mean, self.m2 = k, mean, m2
            self.min, self.max = rows.min(0), rows.max(0)
            return
        n = self.n + k
        delta = mean - self.mean
        self.m2 = self.m2 + m2 + delta**2 * self.n * k / n
        self.mean = self.mean + delta * k / n
        self.n = n
        self.min, self.max = np.minimum(self.min, rows.min(0)), np.maximum(self.max, rows.max(0))

    def summary(self) -> dict:
        if self.n == 0:
            return {"mean": [], "std": [], "min": [], "max": [], "count": [0]}
        return {
            "mean": self.mean.tolist(),
            "std": np.sqrt(self.m2 / self.n).tolist(),
            "min": self.min.tolist(),
            "max": self.max.tolist(),
            "count": [self.n],
        }


def write_video(path: Path, frames: np.ndarray, fps: int) -> None:
    import av

    with av.open(str(path), mode="w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames.shape[1], frames.shape[2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast"}
        # one encoder thread: x264's frame threads cost ~0.1 ms of CPU more per frame at this
        # size (16 vs 9 ms for a 70-frame episode) and make the bytes depend on the core count
        stream.thread_count = 1
        for f in frames:
            for pkt in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), "rgb24")):
                out.mux(pkt)
        for pkt in stream.encode():
            out.mux(pkt)


def read_video(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as inp:
        return np.stack([f.to_ndarray(format="rgb24") for f in inp.decode(video=0)])


def read_episodes(root: str | Path) -> list[dict]:
    """Per-episode metadata rows of a dataset, by episode_index."""
    import pyarrow.parquet as pq

    files = sorted((Path(root) / "meta/episodes").glob("chunk-*/file-*.parquet"))
    rows = [r for f in files for r in pq.read_table(f).to_pylist()]
    return sorted(rows, key=lambda r: r["episode_index"])


def read_frames(root: str | Path, episodes: list[int] | None = None) -> dict[str, np.ndarray]:
    """All frames (or those of ``episodes``) as numpy arrays keyed by column."""
    import pyarrow.parquet as pq

    files = sorted((Path(root) / "data").glob("chunk-*/file-*.parquet"))
    if not files:
        return {"observation.state": np.zeros((0, 0)), "action": np.zeros((0, 0))}
    tables = [pq.read_table(f) for f in files]
    out: dict[str, list] = {}
    for t in tables:
        for name in t.column_names:
            out.setdefault(name, []).extend(t.column(name).to_pylist())
    arrays = {k: np.asarray(v) for k, v in out.items()}
    if episodes is not None:
        keep = np.isin(arrays["episode_index"], episodes)
        arrays = {k: v[keep] for k, v in arrays.items()}
    return arrays


def read_episode_frames(root: str | Path, episode_index: int) -> np.ndarray:
    path = Path(root) / "videos" / VIDEO_KEY / CHUNK / f"file-{episode_index:03d}.mp4"
    return read_video(path)

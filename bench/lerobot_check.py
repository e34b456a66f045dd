"""Load a dataset enpire's rollout node recorded with LeRobot's own ``LeRobotDataset``.

Runs in the optional lerobot environment (``bench/lerobot_compat.sh`` builds it and records the
dataset); imports nothing of enpire. Prints what LeRobot reads and checks it against the
parquet/mp4 files read directly (pyarrow, PyAV): every frame's state and action, episode
boundaries, timestamps, and the decoded camera frames. Exit code 1 on any mismatch.

    .venv-lerobot/bin/python bench/lerobot_check.py DATASET_ROOT
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq


def main(root: Path) -> int:
    import lerobot
    import torch
    import torchcodec
    from lerobot.datasets.lerobot_dataset import LeRobotDataset, LeRobotDatasetMetadata

    print(f"lerobot {lerobot.__version__}, torch {torch.__version__}, torchcodec "
          f"{torchcodec.__version__} (LeRobot's video decoder), av {av.__version__}")  # fmt: skip
    info = json.loads((root / "meta/info.json").read_text())
    print(f"dataset {root}: codebase_version {info['codebase_version']}, fps {info['fps']}, "
          f"robot_type {info.get('robot_type')}")  # fmt: skip
    meta = LeRobotDatasetMetadata("enpire/compat", root=root)
    print(f"LeRobotDatasetMetadata: {meta.total_episodes} episodes, {meta.total_frames} frames, "
          f"tasks {list(meta.tasks.index)}, video keys {meta.video_keys}")  # fmt: skip
    ds = LeRobotDataset("enpire/compat", root=root, video_backend="torchcodec")
    print(f"LeRobotDataset: {ds.num_episodes} episodes, {ds.num_frames} frames, "
          f"features {sorted(ds.features)}")  # fmt: skip

    frames = pq.read_table(sorted((root / "data").rglob("*.parquet"))).to_pandas()
    frames = frames.sort_values("index").reset_index(drop=True)
    problems = []
    if ds.num_frames != len(frames):
        problems.append(f"frame count: lerobot {ds.num_frames}, parquet {len(frames)}")
    worst = {"observation.state": 0.0, "action": 0.0, "timestamp": 0.0}
    for i in range(len(frames)):
        item = ds[i]
        row = frames.iloc[i]
        for key in worst:
            a = np.asarray(item[key].numpy(), dtype=float).ravel()
            b = np.asarray(row[key], dtype=float).ravel()
            worst[key] = max(worst[key], float(np.max(np.abs(a - b))) if a.size else 0.0)
        if int(item["episode_index"]) != int(row["episode_index"]):
            problems.append(f"frame {i}: episode {int(item['episode_index'])} != "
                            f"{int(row['episode_index'])}")  # fmt: skip
    print(f"all {len(frames)} items read; each decoded its camera frame at its timestamp within "
          f"LeRobot's tolerance ({ds.tolerance_s:.4f} s)")  # fmt: skip
    for key, err in worst.items():
        print(f"max |lerobot - parquet| over all frames, {key}: {err:.2e}")
        if err > 1e-5:
            problems.append(f"{key} differs by {err}")

    for key in meta.video_keys:
        ep = int(frames["episode_index"].iloc[-1])
        idx = int(frames.index[frames["episode_index"] == ep][-1])
        img = ds[idx][key]  # C, H, W float in [0, 1]
        ep_meta = ds.meta.episodes[ep]
        video = root / ds.meta.get_video_file_path(ep, key)
        with av.open(str(video)) as c:
            decoded = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        start = round(float(ep_meta[f"videos/{key}/from_timestamp"]) * info["fps"])
        ref = decoded[start + int(frames["frame_index"].iloc[idx])]
        diff = float(np.abs(img.permute(1, 2, 0).numpy() * 255 - ref).mean())
        print(f"{key}: episode {ep} last frame {tuple(img.shape)} from {video.name}, "
              f"mean |lerobot - PyAV| {diff:.2f} / 255")  # fmt: skip
        if diff > 2.0:
            problems.append(f"{key} frame differs by {diff:.1f}/255")

    tasks = {ds[i]["task"] for i in range(0, len(frames), 25)}
    print(f"item['task'] (the task string LeRobot's policies are conditioned on): {sorted(tasks)}")
    if not all(isinstance(t, str) and t for t in tasks):
        problems.append(f"task strings not read back: {tasks}")
    loader = torch.utils.data.DataLoader(ds, batch_size=16, shuffle=True)
    batch = next(iter(loader))
    print("a DataLoader batch (as LeRobot's training scripts draw them): "
          + ", ".join(f"{k} {tuple(v.shape)}" for k, v in batch.items()
                      if hasattr(v, "shape")))  # fmt: skip
    sub = LeRobotDataset("enpire/compat", root=root, episodes=[0], video_backend="torchcodec")
    print(f"episodes=[0] subset: {sub.num_frames} frames")
    if problems:
        print("MISMATCH:\n  " + "\n  ".join(problems))
        return 1
    print("OK: LeRobot reads enpire's recording exactly as written")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(Path(sys.argv[1])))

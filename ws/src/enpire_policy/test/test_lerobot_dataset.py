"""The LeRobotDataset v3 layout as LeRobot 0.4.4 reads it (bench/results/lerobot_compat.txt is
the check with lerobot itself, which does not install here): these tests pin what that check
depends on, so a change to the writer that LeRobot would not read fails here."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from enpire_policy.lerobot_dataset import (
    EpisodeData,
    LeRobotDatasetWriter,
    read_episode_frames,
    read_episodes,
    read_frames,
)


def _episode(n, task="pusht", seed=0):
    rng = np.random.default_rng(seed)
    return EpisodeData(
        states=rng.normal(size=(n, 5)), actions=rng.normal(size=(n, 3)), rewards=rng.random(n),
        success=bool(seed % 2), task=task,
        frames=rng.integers(0, 255, size=(n, 32, 32, 3), dtype=np.uint8),
        info={"seed": seed},
    )  # fmt: skip


@pytest.fixture
def root(tmp_path):
    w = LeRobotDatasetWriter(tmp_path / "ds", image_size=32)
    w.add_episode(_episode(7, seed=1))
    w.add_episode(_episode(4, task="pusht_hard", seed=2))
    return tmp_path / "ds"


def test_tasks_are_a_dataframe_indexed_by_the_task_string(root):
    t = pq.read_table(root / "meta/tasks.parquet")
    pandas_meta = json.loads(t.schema.metadata[b"pandas"])
    assert pandas_meta["index_columns"] == ["__index_level_0__"]
    assert t.column("__index_level_0__").to_pylist() == ["pusht", "pusht_hard"]
    assert t.column("task_index").to_pylist() == [0, 1]
    frames = read_frames(root)
    assert sorted(set(frames["task_index"].tolist())) == [0, 1]


def test_info_episodes_and_frames_agree(root):
    info = json.loads((root / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == 10
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (2, 11, 2)
    feats = info["features"]
    for key in ("observation.state", "action", "timestamp", "frame_index", "episode_index",
                "index", "task_index", "observation.image"):  # fmt: skip
        assert "dtype" in feats[key] and "shape" in feats[key], key
    assert feats["observation.image"]["dtype"] == "video"
    assert (
        info["data_path"].format(chunk_index=0, file_index=1) == "data/chunk-000/file-001.parquet"
    )
    eps = read_episodes(root)
    assert [(e["episode_index"], e["length"]) for e in eps] == [(0, 7), (1, 4)]
    assert [(e["dataset_from_index"], e["dataset_to_index"]) for e in eps] == [(0, 7), (7, 11)]
    for e in eps:
        video = root / info["video_path"].format(
            video_key="observation.image", chunk_index=e["videos/observation.image/chunk_index"],
            file_index=e["videos/observation.image/file_index"],
        )  # fmt: skip
        assert video.is_file()
        assert e["videos/observation.image/to_timestamp"] == pytest.approx(e["length"] / 10)
        assert len(read_episode_frames(root, e["episode_index"])) == e["length"]
    frames = read_frames(root)
    assert frames["index"].tolist() == list(range(11))
    assert frames["timestamp"][:7] == pytest.approx(np.arange(7) / 10)


def test_stats_cover_every_frame_written_also_after_reopening(root):
    w = LeRobotDatasetWriter(root, image_size=32)  # reopened: statistics of what is on disk
    w.add_episode(_episode(9, seed=3))
    stats = json.loads((root / "meta/stats.json").read_text())
    frames = read_frames(root)
    for key in ("observation.state", "action"):
        a = frames[key]
        assert stats[key]["count"] == [len(a)] == [20]
        assert stats[key]["mean"] == pytest.approx(a.mean(0).tolist(), abs=1e-6)
        assert stats[key]["std"] == pytest.approx(a.std(0).tolist(), abs=1e-6)
        assert stats[key]["min"] == pytest.approx(a.min(0).tolist())
        assert stats[key]["max"] == pytest.approx(a.max(0).tolist())

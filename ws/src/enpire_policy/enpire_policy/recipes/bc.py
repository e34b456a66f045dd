"""bc_mlp / bc_cnn: behaviour cloning on recorded successful episodes (LeRobotDataset v3).

bc_mlp maps the state (tip, block pose) to the next tip target and lift; bc_cnn maps the camera
frame (from the episode videos) plus the tip to the same. Trained with torch on CPU (CUDA when
present and asked for); saved as ``model.pt`` (state dict) with its config in the artifact.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from enpire_env.ros_conversions import video_frame
from enpire_policy.recipes.base import (
    TrainContext,
    TrainError,
    TrainErrorCode,
    TrainRequest,
    check_fields,
    parse_hyperparameters,
)

SCALE = 512.0  # workspace px -> unit
DELTA = 50.0  # px: scale of tip steps


@dataclass
class BCParams:
    epochs: int = 30
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    hidden: int = 256
    image_size: int = 96  # bc_cnn: frames are resized to this
    seed: int = 0

    def __post_init__(self) -> None:
        positive = ("epochs", "batch_size", "learning_rate", "hidden", "image_size")
        check_fields(self, positive=positive, non_negative=("weight_decay", "seed"))


def state_features(states: np.ndarray) -> np.ndarray:
    s = np.asarray(states, dtype=np.float32).reshape(-1, 5)
    th = s[:, 4]
    return np.stack(
        [s[:, 0] / SCALE, s[:, 1] / SCALE, s[:, 2] / SCALE, s[:, 3] / SCALE, np.cos(th),
         np.sin(th)], axis=1,
    ).astype(np.float32)  # fmt: skip


def action_targets(states: np.ndarray, actions: np.ndarray) -> np.ndarray:
    d = (actions[:, :2] - states[:, :2]) / DELTA
    return np.concatenate([d, actions[:, 2:3]], axis=1).astype(np.float32)


def make_net(kind: str, hidden: int, image_size: int):
    import torch
    from torch import nn

    if kind == "mlp":
        return nn.Sequential(
            nn.Linear(6, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, 3),
        )  # fmt: skip

    class Cnn(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Sequential(
                nn.Conv2d(3, 16, 5, stride=2), nn.ReLU(), nn.Conv2d(16, 32, 3, stride=2),
                nn.ReLU(), nn.Conv2d(32, 32, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
                nn.Flatten(),
            )  # fmt: skip
            self.head = nn.Sequential(nn.Linear(32 * 16 + 2, hidden), nn.ReLU(),
                                      nn.Linear(hidden, 3))  # fmt: skip

        def forward(self, img, tip):
            return self.head(torch.cat([self.conv(img), tip], dim=1))

    return Cnn()


def load_data(req: TrainRequest, with_images: bool, image_size: int):
    """Frames of the selected successful episodes: datasets, and/or 'dataset#index' ids."""
    from enpire_policy.lerobot_dataset import read_episode_frames, read_episodes, read_frames

    selection: dict[str, set[int] | None] = {d: None for d in req.datasets}
    for eid in req.episode_ids:
        root, _, idx = eid.rpartition("#")
        if not root or not idx.isdigit():
            raise TrainError(TrainErrorCode.EMPTY_DATA, f"episode id '{eid}' is not DATASET#N")
        sel = selection.setdefault(root, set())
        if sel is not None:
            sel.add(int(idx))
    states, actions, images = [], [], []
    for root, want in selection.items():
        if not (Path(root) / "meta/info.json").is_file():
            raise TrainError(TrainErrorCode.EMPTY_DATA, f"{root} is not a LeRobotDataset")
        eps = [e for e in read_episodes(root) if e.get("success", True)]
        eps = [e["episode_index"] for e in eps if want is None or e["episode_index"] in want]
        if not eps:
            continue
        fr = read_frames(root, eps)
        states.append(fr["observation.state"])
        actions.append(fr["action"])
        if with_images:
            for e in eps:
                images += [video_frame(f, image_size) for f in read_episode_frames(root, e)]
    if not states:
        raise TrainError(TrainErrorCode.EMPTY_DATA, "no successful episodes in the selection")
    s, a = np.concatenate(states), np.concatenate(actions)
    imgs = np.stack(images) if with_images else None
    if with_images and len(imgs) != len(s):
        raise TrainError(TrainErrorCode.EMPTY_DATA, "video frames do not match the data rows")
    return s, a, imgs


def _train(kind: str, req: TrainRequest, ctx: TrainContext) -> dict:
    import torch

    hp: BCParams = parse_hyperparameters(BCParams, req.hyperparameters)
    device = req.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") or (device == "cuda" and not torch.cuda.is_available()):
        raise TrainError(TrainErrorCode.INVALID_HYPERPARAMETERS, f"device '{device}' unavailable")
    ctx.progress(stage="load data", progress=0.0, iteration=0, total=hp.epochs)
    s, a, imgs = load_data(req, kind == "cnn", hp.image_size)
    torch.manual_seed(hp.seed)
    net = make_net(kind, hp.hidden, hp.image_size).to(device)
    x = torch.from_numpy(state_features(s)).to(device)
    y = torch.from_numpy(action_targets(s, a)).to(device)
    if kind == "cnn":
        img = torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous().to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=hp.learning_rate, weight_decay=hp.weight_decay)
    gen = torch.Generator().manual_seed(hp.seed)
    n = len(x)
    loss_v = math.nan
    for epoch in range(hp.epochs):
        perm = torch.randperm(n, generator=gen).to(device)
        total = 0.0
        for i in range(0, n, hp.batch_size):
            ctx.check()
            idx = perm[i : i + hp.batch_size]
            out = net(x[idx]) if kind == "mlp" else net(img[idx].float() / 255.0, x[idx, :2])
            loss = torch.nn.functional.mse_loss(out[:, :2], y[idx, :2])
            loss = loss + torch.nn.functional.binary_cross_entropy_with_logits(
                out[:, 2], y[idx, 2]
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        loss_v = total / n
        if not math.isfinite(loss_v):
            raise TrainError(TrainErrorCode.TRAINING_FAILED, f"loss diverged at epoch {epoch}")
        ctx.progress(stage="train", progress=(epoch + 1) / hp.epochs, iteration=epoch + 1,
                     total=hp.epochs, loss=loss_v)  # fmt: skip
    torch.save({k: v.cpu() for k, v in net.state_dict().items()}, ctx.artifact_dir / "model.pt")
    config = {"kind": kind, **asdict(hp)}
    (ctx.artifact_dir / "config.json").write_text(json.dumps(config, indent=2))
    return {
        "config": config,
        "metrics": {"final_loss": loss_v, "frames": int(n), "device": device},
        "load": {"module": "enpire_policy.recipes.bc", "factory": "load_bc_policy"},
    }


def run_mlp(req: TrainRequest, ctx: TrainContext) -> dict:
    return _train("mlp", req, ctx)


def run_cnn(req: TrainRequest, ctx: TrainContext) -> dict:
    return _train("cnn", req, ctx)


class BCPolicy:
    name = "bc"

    def __init__(self, artifact: str | Path):
        import torch

        self.path = Path(artifact)
        self.cfg = json.loads((self.path / "config.json").read_text())
        self.kind = self.cfg["kind"]
        self.net = make_net(self.kind, self.cfg["hidden"], self.cfg["image_size"])
        self.net.load_state_dict(torch.load(self.path / "model.pt", weights_only=True))
        self.net.eval()

    def reset(self, seed: int) -> None:
        pass

    def metadata(self) -> dict:
        return {"name": f"bc_{self.kind}", "needs_image": self.kind == "cnn",
                "artifact": str(self.path)}  # fmt: skip

    def act(self, obs: dict) -> dict:
        import torch

        tip = np.asarray(obs["tip"], dtype=np.float32)
        pose = obs.get("block_pose") or [256.0, 256.0, 0.0]
        x = torch.from_numpy(state_features(np.array([[*tip, *pose]])))
        with torch.no_grad():
            if self.kind == "mlp":
                out = self.net(x)[0].numpy()
            else:
                # the camera frame shrunk as recorded video is (the frames it learnt from)
                img = video_frame(np.asarray(obs["image"], np.uint8), self.cfg["image_size"])
                t = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255.0
                out = self.net(t, x[:, :2])[0].numpy()
        target = tip + out[:2] * DELTA
        return {"tip": target.tolist(), "lift": bool(out[2] > 0)}


def load_bc_policy(artifact: str | Path) -> BCPolicy:
    return BCPolicy(artifact)

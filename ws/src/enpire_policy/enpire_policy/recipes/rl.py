"""residual_rl: online RL of a residual on top of the heuristic, by evolution strategies.

The policy is the heuristic's tip target plus a small learned offset, linear in the state
features (tip, block pose): ``target += scale * tanh(W @ [features, 1])``. Each iteration
perturbs W antithetically, runs seeded episodes in the simulated cell for each perturbation,
and steps W along the return-weighted perturbations (OpenAI-ES). The return is final coverage
plus a success bonus minus a time penalty, so the signal is dense enough for a tiny budget.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from enpire_policy.heuristic import HeuristicPushT
from enpire_policy.recipes.base import (
    TrainContext,
    TrainRequest,
    check_fields,
    parse_hyperparameters,
)
from enpire_policy.recipes.bc import state_features

N_FEATURES = 7  # 6 state features + bias


@dataclass
class ResidualParams:
    iterations: int = 10
    pairs: int = 4  # antithetic perturbation pairs per iteration
    episodes: int = 4  # seeded episodes per perturbation
    sigma: float = 0.05
    learning_rate: float = 0.02
    scale: float = 8.0  # px: largest residual offset
    max_steps: int = 300
    seed_offset: int = 200_000
    seed: int = 0

    def __post_init__(self) -> None:
        check_fields(self, positive=("iterations", "pairs", "episodes", "sigma",
                                     "learning_rate", "max_steps"),
                     non_negative=("scale", "seed_offset", "seed"))  # fmt: skip


class ResidualPolicy:
    name = "residual"

    def __init__(self, weights: np.ndarray, scale: float, params: dict | None = None):
        self.base = HeuristicPushT(params)
        self.w = np.asarray(weights, dtype=float).reshape(2, N_FEATURES)
        self.scale = scale

    def reset(self, seed: int) -> None:
        self.base.reset(seed)

    def metadata(self) -> dict:
        return {"name": self.name, "needs_image": False, "scale": self.scale}

    def act(self, obs: dict) -> dict:
        a = self.base.act(obs)
        pose = obs.get("block_pose")
        if pose is None or a.get("lift"):
            return a  # only pushes get a residual
        f = np.append(state_features(np.array([[*obs["tip"], *pose]]))[0], 1.0)
        a["tip"] = (np.asarray(a["tip"]) + self.scale * np.tanh(self.w @ f)).tolist()
        return a


def _episode_return(policy, seeds, max_steps, cell, ctx) -> float:
    from enpire_policy.episode import run_episode

    total = 0.0
    for s in seeds:
        ctx.check()
        r = run_episode(policy, int(s), cell, max_steps=max_steps)
        total += r.coverage + float(r.success) - 0.5 * r.steps / max_steps
    return total / len(seeds)


def run(req: TrainRequest, ctx: TrainContext) -> dict:
    from enpire_env.sim_cell import PushTCell

    hp: ResidualParams = parse_hyperparameters(ResidualParams, req.hyperparameters)
    rng = np.random.default_rng(hp.seed)
    cell = PushTCell()
    w = np.zeros(2 * N_FEATURES)
    history = []
    for it in range(hp.iterations):
        seeds = list(range(hp.seed_offset + it * hp.episodes,
                           hp.seed_offset + (it + 1) * hp.episodes))  # fmt: skip
        eps = rng.normal(size=(hp.pairs, w.size))
        grads = np.zeros_like(w)
        rets = []
        for e in eps:
            up = _episode_return(ResidualPolicy(w + hp.sigma * e, hp.scale), seeds,
                                 hp.max_steps, cell, ctx)  # fmt: skip
            down = _episode_return(ResidualPolicy(w - hp.sigma * e, hp.scale), seeds,
                                   hp.max_steps, cell, ctx)  # fmt: skip
            grads += (up - down) * e
            rets += [up, down]
        w = w + hp.learning_rate / (2 * hp.pairs * hp.sigma) * grads
        history.append({"iteration": it + 1, "mean_return": float(np.mean(rets))})
        ctx.progress(stage="train", progress=(it + 1) / hp.iterations, iteration=it + 1,
                     total=hp.iterations, score=float(np.mean(rets)))  # fmt: skip
    held_out = list(range(hp.seed_offset - 20, hp.seed_offset - 20 + hp.episodes))
    final = _episode_return(ResidualPolicy(w, hp.scale), held_out, hp.max_steps, cell, ctx)
    (ctx.artifact_dir / "residual.json").write_text(
        json.dumps({"weights": w.tolist(), "scale": hp.scale}, indent=2)
    )
    return {
        "config": asdict(hp),
        "metrics": {"final_return": final, "history": history},
        "load": {"module": "enpire_policy.recipes.rl", "factory": "load_residual_policy"},
    }


def load_residual_policy(artifact: str | Path) -> ResidualPolicy:
    d = json.loads((Path(artifact) / "residual.json").read_text())
    return ResidualPolicy(np.array(d["weights"]), d["scale"])

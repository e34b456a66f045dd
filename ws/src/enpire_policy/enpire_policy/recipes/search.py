"""heuristic_search: cross-entropy search over a rule-based policy's parameters.

Candidates are evaluated on seeded episodes (the same seeds for every candidate, so they are
compared fairly); the score is the success rate minus a small time penalty. The policy is
built with ``make_policy(params={...})`` — the shipped heuristic, or agent code that accepts
the same keyword.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np

from enpire_policy.recipes.base import (
    TrainContext,
    TrainRequest,
    build_policy,
    check_fields,
    evaluate,
    parse_hyperparameters,
)

DEFAULT_SPACE = {  # parameter: (initial mean, initial std, low, high)
    "push_gain": (0.5, 0.15, 0.1, 1.0),
    "angle_weight": (60.0, 15.0, 10.0, 150.0),
    "max_push": (20.0, 5.0, 5.0, 40.0),
    "travel_cost": (0.05, 0.03, 0.0, 0.3),
}


@dataclass
class SearchParams:
    iterations: int = 5
    population: int = 8
    elite_fraction: float = 0.25
    episodes: int = 10  # seeded episodes per candidate
    seed_offset: int = 100_000  # evaluation seeds start here (away from benchmark seeds)
    max_steps: int = 300
    space: dict = field(default_factory=lambda: dict(DEFAULT_SPACE))
    seed: int = 0

    def __post_init__(self) -> None:
        check_fields(self, positive=("iterations", "population", "episodes", "max_steps"),
                     non_negative=("seed_offset", "seed"), unit=("elite_fraction",))  # fmt: skip
        for k, v in self.space.items():
            if len(v) != 4 or not v[2] <= v[0] <= v[3] or v[1] <= 0:
                raise ValueError(f"space[{k}] must be (mean, std>0, low<=mean, high>=mean)")


def run(req: TrainRequest, ctx: TrainContext) -> dict:
    hp: SearchParams = parse_hyperparameters(SearchParams, req.hyperparameters)
    rng = np.random.default_rng(hp.seed)
    names = sorted(hp.space)
    mean = np.array([hp.space[k][0] for k in names], float)
    std = np.array([hp.space[k][1] for k in names], float)
    lo = np.array([hp.space[k][2] for k in names], float)
    hi = np.array([hp.space[k][3] for k in names], float)
    seeds = list(range(hp.seed_offset, hp.seed_offset + hp.episodes))
    n_elite = max(1, int(round(hp.elite_fraction * hp.population)))
    best: tuple[float, dict, dict] = (-np.inf, {}, {})
    history = []
    for it in range(hp.iterations):
        cands = np.clip(rng.normal(mean, std, (hp.population, len(names))), lo, hi)
        cands[0] = mean  # the current mean is always evaluated
        scores = []
        for k, c in enumerate(cands):
            params = {n: float(v) for n, v in zip(names, c, strict=True)}
            policy = build_policy(req.policy, {"params": params})
            try:
                m = evaluate(policy, seeds, hp.max_steps, ctx)
            finally:
                if hasattr(policy, "close"):
                    policy.close()
            score = m["success_rate"] - 1e-4 * m["mean_steps"]
            scores.append(score)
            if score > best[0]:
                best = (score, params, m)
            ctx.progress(
                stage="evaluate",
                progress=(it * hp.population + k + 1) / (hp.iterations * hp.population),
                iteration=it + 1,
                total=hp.iterations,
                score=best[2]["success_rate"],
            )
        elite = cands[np.argsort(scores)[::-1][:n_elite]]
        mean, std = elite.mean(0), np.maximum(elite.std(0), 1e-3 * (hi - lo))
        history.append({"iteration": it + 1, "best_score": best[0], "mean": mean.tolist()})
    (ctx.artifact_dir / "params.json").write_text(json.dumps(best[1], indent=2))
    return {
        "config": asdict(hp),
        "metrics": {
            "best_success_rate": best[2]["success_rate"],
            "best_mean_steps": best[2]["mean_steps"],
            "evaluation_seeds": [seeds[0], seeds[-1]],
            "history": history,
        },
        "load": {"factory_kwargs": {"params": best[1]}},
    }

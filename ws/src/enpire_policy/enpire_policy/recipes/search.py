"""heuristic_search: cross-entropy search over a rule-based policy's parameters.

Candidates are evaluated on seeded episodes (the same seeds for every candidate, so they are
compared fairly); the score is the success rate minus a small time penalty. The policy is
built with ``make_policy(params={...})`` — the shipped heuristic, or agent code that accepts
the same keyword. A search the time budget stops after its first candidate ends with the
best candidate so far (``metrics.budget_exhausted``), not with an error.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np

from enpire_policy.recipes.base import (
    TrainContext,
    TrainError,
    TrainErrorCode,
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
    evaluator: str = "sim"  # "sim": in this process; "rollout": Rollout goals on the fleet
    rollout_server: str = "/rollout"

    def __post_init__(self) -> None:
        check_fields(self, positive=("iterations", "population", "episodes", "max_steps"),
                     non_negative=("seed_offset", "seed"), unit=("elite_fraction",))  # fmt: skip
        if self.evaluator not in ("sim", "rollout"):
            raise ValueError(f"evaluator must be 'sim' or 'rollout', got {self.evaluator!r}")
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
    stopped = False  # by the time budget, after at least one candidate
    fleet = RolloutEvaluator(hp, req, ctx) if hp.evaluator == "rollout" else None
    for it in range(hp.iterations):
        cands = np.clip(rng.normal(mean, std, (hp.population, len(names))), lo, hi)
        cands[0] = mean  # the current mean is always evaluated
        scores = []
        cand_params = [{n: float(v) for n, v in zip(names, c, strict=True)} for c in cands]
        if fleet is not None:  # every candidate at once: the fleet runs them in parallel
            fleet_metrics = fleet.evaluate(cand_params, seeds, it)
        for k, params in enumerate(cand_params):
            if fleet is not None:
                m = fleet_metrics[k]
            else:
                policy = build_policy(req.policy, {"params": params})
                try:
                    m = evaluate(policy, seeds, hp.max_steps, ctx)
                except TrainError as e:
                    if e.code != TrainErrorCode.BUDGET_EXHAUSTED or not best[1]:
                        raise
                    stopped = True  # anytime: the best candidate so far is the result
                    break
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
        if stopped:
            break
        elite = cands[np.argsort(scores)[::-1][:n_elite]]
        mean, std = elite.mean(0), np.maximum(elite.std(0), 1e-3 * (hi - lo))
        history.append({"iteration": it + 1, "best_score": best[0], "mean": mean.tolist()})
    if fleet is not None:
        fleet.close()
    (ctx.artifact_dir / "params.json").write_text(json.dumps(best[1], indent=2))
    return {
        "config": asdict(hp),
        "metrics": {
            "best_success_rate": best[2]["success_rate"],
            "best_mean_steps": best[2]["mean_steps"],
            "evaluation_seeds": [seeds[0], seeds[-1]],
            "history": history,
            "budget_exhausted": stopped,
        },
        "load": {"factory_kwargs": {"params": best[1]}},
    }


class RolloutEvaluator:
    """Scores candidates with Rollout goals on the fleet: each candidate becomes a small
    artifact (its parameters and the policy code reference) that the rollout node loads."""

    def __init__(self, hp: SearchParams, req: TrainRequest, ctx: TrainContext):
        import rclpy
        import rclpy.executors
        from rclpy.action import ActionClient

        from enpire_msgs.action import Rollout

        self.hp, self.req, self.ctx = hp, req, ctx
        self.rclpy_ctx = rclpy.Context()
        rclpy.init(context=self.rclpy_ctx)
        self.node = rclpy.create_node("heuristic_search_client", context=self.rclpy_ctx)
        self.client = ActionClient(self.node, Rollout, hp.rollout_server)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=self.rclpy_ctx)
        self.executor.add_node(self.node)
        if not self.client.wait_for_server(timeout_sec=30.0):
            raise TrainError(
                TrainErrorCode.POLICY_ERROR,
                f"no Rollout server at {hp.rollout_server} for the evaluation",
            )

    def evaluate(self, cands: list[dict], seeds: list[int], iteration: int) -> list[dict]:
        from enpire_msgs.action import Rollout
        from enpire_msgs.msg import PolicyRef
        from enpire_policy import artifacts

        handles = []
        for k, params in enumerate(cands):
            d = self.ctx.artifact_dir / "candidates" / f"{iteration:03d}-{k:03d}"
            d.mkdir(parents=True)
            artifacts.finish(
                d,
                {
                    "recipe": "heuristic_search/candidate",
                    "policy": self.req.policy,
                    "load": {"factory_kwargs": {"params": params}},
                },
            )
            goal = Rollout.Goal(
                policy=PolicyRef(name=f"candidate {iteration}/{k}", artifact=str(d)),
                task="pusht",
                num_episodes=len(seeds),
                seed=seeds[0],
                agent_id=self.req.policy.get("agent_id") or "heuristic_search",
            )
            handles.append(self.client.send_goal_async(goal))
        results = []
        for f in handles:
            h = self._wait(f)
            if h is None or not h.accepted:
                raise TrainError(TrainErrorCode.POLICY_ERROR, "a Rollout goal was not accepted")
            results.append(h.get_result_async())
        out = []
        for f in results:
            r = self._wait(f).result
            if r.error_code:
                raise TrainError(
                    TrainErrorCode.POLICY_ERROR,
                    f"candidate rollout failed ({r.error_code}): {r.error_msg}",
                )
            steps = [e.steps for e in r.episodes] or [0]
            out.append(
                {
                    "success_rate": r.success_rate,
                    "episodes": r.num_episodes,
                    "mean_steps": sum(steps) / len(steps),
                }
            )
        return out

    def _wait(self, future):
        while not future.done():
            self.ctx.check()
            self.executor.spin_until_future_complete(future, timeout_sec=0.5)
        return future.result()

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.rclpy_ctx.try_shutdown()

"""PI benchmarks: success of the shipped policies on gym-pusht's initial-state distribution.

    scripts/run python bench/pi_policies.py [--seeds 500] [--camera-seeds 40] [--bc-train 200]

Each episode runs in the in-process simulated cell (gym-pusht physics, SO-101 kinematics, IK,
10 Hz, 300 steps, success = coverage > 0.95) from the block pose of ``reset(seed=s)`` for
s = 0 .. N-1, the arm starting parked. Prints per policy the success rate, its 95% (Wilson)
interval, mean steps to success and robot time. Observation modes are printed: ``state`` is
gym-pusht's state observation (block pose from the simulator); ``camera`` is the camera
verifier's estimate from a rendered 256 px frame every step, as on a real cell.

``--bc-train N`` records N successful heuristic episodes (seeds from 50,000, away from the
evaluation seeds) as a LeRobotDataset, trains the bc_mlp recipe on them and evaluates the
artifact on the same seeds as the heuristic.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time

import numpy as np

from enpire_policy.episode import run_episode, wilson_interval


def _make(name: str, arg: str | None):
    if name == "bc":
        from enpire_policy.recipes.bc import load_bc_policy

        return load_bc_policy(arg)
    from enpire_policy.recipes.base import build_policy

    return build_policy({"name": name})  # the built-ins, as recipes build them


def _chunk(job):
    name, arg, seeds, observe = job
    from enpire_env.sim_cell import PushTCell

    cell, policy = PushTCell(), _make(name, arg)
    return [run_episode(policy, s, cell, observe=observe) for s in seeds]


def bench(name: str, n: int, observe: str, workers: int, arg: str | None = None) -> None:
    seeds = list(range(n))
    jobs = [(name, arg, seeds[i::workers], observe) for i in range(workers)]
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(workers) as pool:
        results = [r for chunk in pool.map(_chunk, jobs) for r in chunk]
    wall = time.perf_counter() - t0
    ok = [r for r in results if r.success]
    lo, hi = wilson_interval(len(ok), n)
    steps = np.mean([r.steps for r in ok]) if ok else float("nan")
    failed = sorted(r.seed for r in results if not r.success)
    print(
        f"{name:10s} observe={observe:6s} success {len(ok)}/{n} = {len(ok) / n:.1%} "
        f"(95% CI {lo:.1%}-{hi:.1%}), mean steps to success {steps:.1f} "
        f"({steps / 10:.1f} robot-s), wall {wall:.0f} s on {workers} processes"
    )
    if failed:
        print(f"           failed seeds: {failed[:20]}{' ...' if len(failed) > 20 else ''}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=500)
    ap.add_argument("--naive-seeds", type=int, default=200)
    ap.add_argument("--camera-seeds", type=int, default=40)
    ap.add_argument("--bc", help="a BC artifact directory to evaluate on the same seeds")
    ap.add_argument("--bc-train", type=int, default=0, help="record N episodes, train bc_mlp")
    ap.add_argument("--bc-epochs", type=int, default=60)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    bench("heuristic", a.seeds, "state", a.workers)
    if a.camera_seeds:
        bench("heuristic", a.camera_seeds, "camera", a.workers)
    if a.naive_seeds:
        bench("naive", a.naive_seeds, "state", a.workers)
    if a.bc_train:
        a.bc = train_bc(a.bc_train, a.bc_epochs)
    if a.bc:
        bench("bc", a.seeds, "state", a.workers, a.bc)


def train_bc(n: int, epochs: int) -> str:
    import tempfile

    from enpire_env.sim_cell import PushTCell
    from enpire_policy.heuristic import HeuristicPushT
    from enpire_policy.lerobot_dataset import LeRobotDatasetWriter
    from enpire_policy.recipes.base import TrainRequest
    from enpire_policy.train_core import run_training

    tmp = tempfile.mkdtemp(prefix="enpire-bc-bench-")
    writer = LeRobotDatasetWriter(f"{tmp}/demos")
    cell, policy, seed = PushTCell(), HeuristicPushT(), 50_000
    t0 = time.perf_counter()
    while writer.num_episodes < n:
        r = run_episode(policy, seed, cell, record=True)
        seed += 1
        if r.success:
            writer.add_episode(r.to_episode_data({"policy": "heuristic"}))
    print(f"bc: recorded {n} successful heuristic episodes ({writer.num_frames} frames) "
          f"in {time.perf_counter() - t0:.0f} s")  # fmt: skip
    t0 = time.perf_counter()
    req = TrainRequest("bc_mlp", datasets=[f"{tmp}/demos"], hyperparameters={"epochs": epochs})
    res = run_training(req, f"{tmp}/artifacts")
    if res.error_code:
        raise SystemExit(f"bc training failed: {res.error_msg}")
    print(f"bc: trained bc_mlp for {epochs} epochs in {time.perf_counter() - t0:.0f} s, "
          f"final loss {res.metrics['final_loss']:.4f}: {res.artifact_path}")  # fmt: skip
    return res.artifact_path


if __name__ == "__main__":
    main()

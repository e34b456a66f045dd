"""PI benchmarks: success of the shipped policies on gym-pusht's initial-state distribution.

    scripts/run python bench/pi_policies.py [--seeds 500] [--camera-seeds 40] [--bc ARTIFACT]

Each episode runs in the in-process simulated cell (gym-pusht physics, SO-101 kinematics, IK,
10 Hz, 300 steps, success = coverage > 0.95) from the block pose of ``reset(seed=s)`` for
s = 0 .. N-1, the arm starting parked. Prints per policy the success rate, its 95% (Wilson)
interval, mean steps to success and robot time. Observation modes are printed: ``state`` is
gym-pusht's state observation (block pose from the simulator); ``camera`` is the camera
verifier's estimate from a rendered 256 px frame every step, as on a real cell.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time

import numpy as np

from enpire_policy.episode import run_episode, wilson_interval


def _make(name: str, arg: str | None):
    if name == "heuristic":
        from enpire_policy.heuristic import HeuristicPushT

        return HeuristicPushT()
    if name == "naive":
        from enpire_policy.naive import NaivePolicy

        return NaivePolicy()
    if name == "bc":
        from enpire_policy.recipes.bc import load_bc_policy

        return load_bc_policy(arg)
    raise ValueError(name)


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
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    bench("heuristic", a.seeds, "state", a.workers)
    if a.camera_seeds:
        bench("heuristic", a.camera_seeds, "camera", a.workers)
    if a.naive_seeds:
        bench("naive", a.naive_seeds, "state", a.workers)
    if a.bc:
        bench("bc", a.seeds, "state", a.workers, a.bc)


if __name__ == "__main__":
    main()

"""EN benchmarks: reset success and robot time, camera-verifier agreement, sim throughput.

    scripts/run python bench/en_reset.py [--seeds 200] [--states 2000]

1. Resets: pick-and-place (mode printed) on the in-process simulated cell over N seeded
   start states of gym-pusht's distribution, each from where the previous reset left the
   block; prints success rate, attempts and median robot-seconds per reset (cell clock).
2. Verifier: success/failure of the camera estimate (verify.evaluate) against ground truth
   coverage on states near the goal (where the two can disagree), from the start
   distribution and along recorded episodes; prints agreement (target >= 99.5%), pose error,
   and the bound no verifier can beat on the renderer's images (vertices rounded to pixels).
3. Throughput: cell control steps per second on one core, with and without a 10 Hz camera
   (a 256 px frame every step), i.e. the highest time_scale one core sustains is that / 10.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np

from enpire_env.kinematics import So101Kinematics
from enpire_env.pusht_geometry import GOAL_POSE, coverage, is_success
from enpire_env.reset_core import ResetPlan
from enpire_env.reset_routine import DirectCellPort, PickPlaceReset
from enpire_env.sim_cell import PushTCell
from enpire_env.tasks import PUSHT
from enpire_env.verify import evaluate, renderer_bound


def bench_resets(n: int, mode: str) -> None:
    kin = So101Kinematics()
    cell = PushTCell(kin)
    port, routine = DirectCellPort(cell), PickPlaceReset(kin)
    ok, attempts, robot_s, errors = 0, [], [], {}
    t0 = time.perf_counter()
    for seed in range(n):
        target = PUSHT.sample_start_state(seed)
        out = routine.run(
            ResetPlan("robot_0", "pusht", seed, mode, target, 3), port, lambda *a: None,
            lambda: False,
        )  # fmt: skip
        attempts.append(out.attempts)
        robot_s.append(out.robot_seconds)
        if out.success:
            gt = cell.block_pose()
            if np.hypot(*(gt[:2] - target[:2])) <= routine.cfg.tolerance_px + 4:
                ok += 1
            else:
                key = "verified, but off in ground truth"
                errors[key] = errors.get(key, 0) + 1
        else:
            key = out.error_msg.split(": ", 1)[-1][:60]
            errors[key] = errors.get(key, 0) + 1
    wall = time.perf_counter() - t0
    print(f"Resets ({mode}, {n} seeds, max 3 attempts):")
    print(f"  success {ok}/{n} = {ok / n:.1%}   mean attempts {np.mean(attempts):.2f}")
    med, p90 = statistics.median(robot_s), np.percentile(robot_s, 90)
    print(f"  robot-seconds per reset: median {med:.1f}  p90 {p90:.1f}")
    print(f"  wall time in-process: {wall / n * 1000:.0f} ms per reset")
    for k, v in sorted(errors.items(), key=lambda kv: -kv[1]):
        print(f"  failure: {v} x {k}")


def _recorded_states(n: int) -> list:
    """Block poses along seeded episodes of the shipped heuristic (one per control step)."""
    from enpire_policy.episode import run_episode
    from enpire_policy.heuristic import HeuristicPushT

    cell, policy, states, seed = PushTCell(), HeuristicPushT(), [], 20_000
    while len(states) < n:
        r = run_episode(policy, seed, cell, record=True)
        states += [s[2:] for s in r.states[1:]] + [r.final_pose]
        seed += 1
    return states[:n]


def bench_verifier(n: int, bound_states: int = 300) -> None:
    cell = PushTCell()
    rng = np.random.default_rng(0)
    print(f"Camera verifier vs ground truth ({n} states per set):")
    sets = {
        "start distribution (gym-pusht reset states)": lambda i: PUSHT.sample_start_state(
            10_000 + i
        ),
        "near the goal (x, y ~ N(0, 3 px), theta ~ N(0, 0.04)): the hard case": lambda i: (
            np.array(GOAL_POSE) + rng.normal(0, [3.0, 3.0, 0.04])
        ),
    }
    recorded = _recorded_states(n)
    sets["recorded: every frame of heuristic-policy episodes (what rollouts verify)"] = lambda i: (
        recorded[i]
    )
    for name, draw in sets.items():
        agree, pos_err, ang_err, n_success, shown = 0, [], [], 0, []
        for i in range(n):
            cell.teleport(draw(i))
            gt = cell.block_pose()
            shown.append(gt)
            truth = is_success(coverage(gt))
            n_success += truth
            v = evaluate(cell.render(256))
            agree += v.success == truth
            if v.pose is not None:
                pos_err.append(np.hypot(*(v.pose[:2] - gt[:2])))
                ang_err.append(abs(math.remainder(v.pose[2] - gt[2], 2 * math.pi)))
        print(f"  {name}: {n_success} successes in truth")
        print(f"    success/failure agreement {agree}/{n} = {agree / n:.2%}   (target >= 99.5%)")
        m = min(n, bound_states)
        bound = renderer_bound(shown[:m], np.random.default_rng(1))
        print(f"    best any verifier can do from these images (Bayes bound, first {m} "
              f"states): {bound:.2%}")  # fmt: skip
        p50, p99 = np.median(pos_err), np.percentile(pos_err, 99)
        print(
            f"    pose error: median {p50:.2f} px, p99 {p99:.2f} px; "
            f"angle median {np.median(ang_err):.4f} rad"
        )


def bench_throughput(steps: int) -> None:
    cell = PushTCell()
    q = cell.q.copy()
    for camera in (False, True):
        t0 = time.perf_counter()
        for i in range(steps):
            if i % 10 == 0:  # a new joint target now and then, as a policy would send
                q2 = q.copy()
                q2[0] = 0.3 * math.sin(i / 50)
                cell.command([(0.1, q2)])
            cell.step()
            if camera:
                cell.render(256)
        rate = steps / (time.perf_counter() - t0)
        label = "with 256 px camera every step" if camera else "joint states only"
        print(f"Sim throughput ({label}): {rate:.0f} control steps/s on one core "
              f"-> max time_scale {rate / 10:.0f} at 10 Hz control")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=200)
    ap.add_argument("--states", type=int, default=2000)
    ap.add_argument("--bound-states", type=int, default=300, help="states for the Bayes bound")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--mode", default="pick_place", choices=["pick_place", "teleport"])
    args = ap.parse_args()
    bench_resets(args.seeds, args.mode)
    bench_verifier(args.states, args.bound_states)
    bench_throughput(args.steps)


if __name__ == "__main__":
    main()

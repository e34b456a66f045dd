"""R benchmarks: MRU and throughput of fleets of 1, 4 and 8 simulated cells under agents that
think between goals, and the overhead of a ROS rollout against the same policy in-process.

    scripts/run python bench/r_fleet.py [--cells 1 4 8] [--duration 120] [--think 30]
        [--agents 2] [--episodes 4] [--time-scale 5]

For each fleet size the script starts the nodes (cells, safety filters, EN, R) with
``enpire launch``'s plan, then runs ``--agents`` client threads; each sends a Rollout goal of
``--episodes`` episodes of the heuristic, waits for it, "thinks" for ``--think`` seconds
(scaled by the time scale, as robot time is), and repeats until ``--duration`` wall seconds have
passed. MRU (robot time spent on resets and episodes / wall time) and episodes per hour come
from the ledger over that window. The last part times episodes of the same seeds in one process
(gym-pusht through the sim cell and IK, no ROS) and over ROS on one cell.

On a 2-core machine every cell, filter and node shares two cores: the absolute rates are
bounded by CPU, so the printed ratios say how far the host, not the scheduler, limits scaling.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import rclpy
from rclpy.action import ActionClient

from enpire_bringup.fleet import FleetConfig, plan_nodes
from enpire_bringup.launcher import Launcher
from enpire_msgs.action import Rollout
from enpire_msgs.msg import PolicyRef
from enpire_rollout.ledger import Ledger
from enpire_rollout.metrics import fleet_usage


class _Quiet:
    def write(self, _s):
        pass

    def flush(self):
        pass


def _client_loop(ctx, agent: str, stop_at: float, episodes: int, think: float, seed0: int,
                 counts: dict) -> None:  # fmt: skip
    node = rclpy.create_node(f"bench_{agent}", context=ctx)
    ex = rclpy.executors.SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    client = ActionClient(node, Rollout, "/rollout")
    client.wait_for_server(timeout_sec=60)
    k = 0
    while time.monotonic() < stop_at:
        goal = Rollout.Goal(
            policy=PolicyRef(name="heuristic"), task="pusht", num_episodes=episodes,
            seed=seed0 + 1000 * k, agent_id=agent,
        )  # fmt: skip
        f = client.send_goal_async(goal)
        ex.spin_until_future_complete(f, timeout_sec=120)
        rf = f.result().get_result_async()
        ex.spin_until_future_complete(rf, timeout_sec=3600)
        counts[agent] = counts.get(agent, 0) + rf.result().result.num_episodes
        k += 1
        end = time.monotonic() + think
        while time.monotonic() < min(end, stop_at):
            time.sleep(0.1)
    ex.shutdown()
    node.destroy_node()


def run_fleet(cells: int, args) -> dict:
    data = Path(tempfile.mkdtemp(prefix=f"enpire-bench-{cells}-"))
    cfg = FleetConfig(robots=str(cells), time_scale=args.time_scale, data_dir=str(data))
    specs = [s for s in plan_nodes(cfg) if s.name != "train_node"]
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    with Launcher(specs, out=_Quiet()) as launcher:
        time.sleep(5 + cells)  # discovery and start-up
        t0 = time.time()
        stop_at = time.monotonic() + args.duration
        counts: dict = {}
        threads = [
            threading.Thread(target=_client_loop, args=(
                ctx, f"agent{i}", stop_at, args.episodes, args.think / args.time_scale,
                100 * i, counts))
            for i in range(args.agents)
        ]  # fmt: skip
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        t1 = time.time()
        dead = launcher.poll()
    ctx.try_shutdown()
    led = Ledger(data / "ledger.sqlite")
    u = fleet_usage(led, t0, t1, [f"robot_{i}" for i in range(cells)])
    eps = led.query(
        "SELECT COUNT(*) AS n, SUM(success) AS s FROM episodes WHERE wall_end >= ? "
        "AND wall_end <= ? AND status IN ('success', 'failure')", (t0, t1),
    )[0]  # fmt: skip
    return {"cells": cells, "mru": u.mru, "per_robot": u.per_robot, "episodes": eps["n"],
            "successes": eps["s"] or 0, "eph": eps["n"] / ((t1 - t0) / 3600), "wall": t1 - t0,
            "dead": dead}  # fmt: skip


def overhead(args) -> None:
    from enpire_env.sim_cell import PushTCell
    from enpire_policy.episode import run_episode
    from enpire_policy.heuristic import HeuristicPushT

    seeds = list(range(500, 500 + args.overhead_episodes))
    cell, pol = PushTCell(), HeuristicPushT()
    t = time.perf_counter()
    steps = sum(run_episode(pol, s, cell).steps for s in seeds)
    direct = (time.perf_counter() - t) / max(steps, 1)
    data = Path(tempfile.mkdtemp(prefix="enpire-bench-overhead-"))
    cfg = FleetConfig(robots="1", time_scale=1000.0, data_dir=str(data))
    specs = [s for s in plan_nodes(cfg) if s.name != "train_node"]
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    with Launcher(specs, out=_Quiet()):
        time.sleep(6)
        node = rclpy.create_node("bench_overhead", context=ctx)
        ex = rclpy.executors.SingleThreadedExecutor(context=ctx)
        ex.add_node(node)
        client = ActionClient(node, Rollout, "/rollout")
        client.wait_for_server(timeout_sec=60)
        goal = Rollout.Goal(policy=PolicyRef(name="heuristic"), task="pusht",
                            num_episodes=len(seeds), seed=seeds[0], agent_id="bench")  # fmt: skip
        f = client.send_goal_async(goal)
        ex.spin_until_future_complete(f, timeout_sec=60)
        rf = f.result().get_result_async()
        ex.spin_until_future_complete(rf, timeout_sec=3600)
        ex.shutdown()
        node.destroy_node()
    ctx.try_shutdown()
    led = Ledger(data / "ledger.sqlite")
    rows = led.episodes()
    ros_steps = sum(r["steps"] for r in rows)
    ros_wall = sum(r["wall_end"] - r["wall_start"] - 0 for r in rows)
    reset_wall = sum(
        iv["t_end"] - iv["t_start"] for iv in led.intervals(0) if iv["state"] == "reset"
    )
    per_step = (ros_wall - reset_wall) / max(ros_steps, 1)
    print(f"Overhead ({len(seeds)} heuristic episodes, same seeds): in-process "
          f"{direct * 1000:.2f} ms/step ({steps} steps); over ROS (sim cell, safety filter, "
          f"policy worker, recording; cell unthrottled) {per_step * 1000:.2f} ms/step "
          f"({ros_steps} steps) -> ratio {per_step / direct:.1f}x")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, nargs="+", default=[1, 4, 8])
    ap.add_argument("--duration", type=float, default=120.0, help="wall seconds per fleet size")
    ap.add_argument("--think", type=float, default=30.0, help="agent think time, robot seconds")
    ap.add_argument("--agents", type=int, default=2)
    ap.add_argument("--episodes", type=int, default=4, help="episodes per Rollout goal")
    ap.add_argument("--time-scale", type=float, default=5.0)
    ap.add_argument("--overhead-episodes", type=int, default=5)
    args = ap.parse_args()
    print(f"Fleet MRU: {args.agents} agents, goals of {args.episodes} heuristic episodes, "
          f"{args.think:g} robot-s of thinking between goals, time_scale {args.time_scale:g}, "
          f"{args.duration:g} wall s per fleet size")  # fmt: skip
    results = []
    for n in args.cells:
        r = run_fleet(n, args)
        results.append(r)
        util = " ".join(f"{v:.0%}" for v in r["per_robot"].values())
        print(f"  {n} cell(s): MRU {r['mru']:.1%}  (per robot: {util})  episodes "
              f"{r['episodes']} ({r['successes']} successes), {r['eph']:.0f} episodes/h"
              f"{'  NODE DIED: ' + str(r['dead']) if r['dead'] else ''}")  # fmt: skip
    base = next((r for r in results if r["cells"] == 1), None)
    if base and base["eph"]:
        for r in results:
            if r["cells"] > 1:
                print(f"  episodes/hour {r['cells']} cells vs 1: {r['eph'] / base['eph']:.2f}x "
                      f"(ideal {r['cells']}x)")  # fmt: skip
    overhead(args)


if __name__ == "__main__":
    main()

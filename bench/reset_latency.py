"""Reset action round-trip latency between two processes (goal sent -> result received).

Starts the EN node and a simulated cell in their own processes on a private ROS domain, then
sends goals one after another from this process and prints the median and p99 of:
  1. goals the node answers at once (a robot it does not serve: validated, aborted with
     UNKNOWN_ROBOT): the cost of the action machinery itself (DDS, rclpy, executors);
  2. teleport resets of the simulated cell (time_scale 50): machinery + cell + camera check.

    scripts/run python bench/reset_latency.py [--goals 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import rclpy
from rclpy.action import ActionClient
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node

from enpire_env.testing import NodeProcess, isolated_env
from enpire_msgs.action import Reset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--goals", type=int, default=200)
    ap.add_argument("--domain", type=int, default=97)
    args = ap.parse_args()

    env = isolated_env(args.domain)
    os.environ.update(env)
    cell = NodeProcess(
        "enpire_env.sim_cell_node",
        ["-r", "__ns:=/robot_0", "-p", "time_scale:=50.0", "-p", "camera_hz:=10.0"],
        env=env,
    )
    server = NodeProcess("enpire_env.env_node", ["-p", "robots:=[robot_0]"], env=env)
    try:
        for proc in (cell, server):
            if not proc.wait_for_output("ready", 30):
                raise SystemExit(f"{proc.module} did not start:\n{proc.output}")
        ctx = Context()
        rclpy.init(context=ctx, domain_id=args.domain)
        node = Node("reset_latency_bench", context=ctx)
        ex = SingleThreadedExecutor(context=ctx)
        ex.add_node(node)
        client = ActionClient(node, Reset, "/reset")
        assert client.wait_for_server(timeout_sec=30)

        def measure(goal, n, expect_success):
            samples = []
            for i in range(n + 5):
                t0 = time.perf_counter()
                f = client.send_goal_async(goal)
                ex.spin_until_future_complete(f, timeout_sec=30)
                rf = f.result().get_result_async()
                ex.spin_until_future_complete(rf, timeout_sec=30)
                dt = time.perf_counter() - t0
                assert rf.result().result.success == expect_success, rf.result().result
                if i >= 5:  # warm-up
                    samples.append(dt * 1000)
            samples.sort()
            p99 = samples[min(len(samples) - 1, int(round(0.99 * (len(samples) - 1))))]
            return statistics.median(samples), p99, samples[0], samples[-1]

        rmw = env["RMW_IMPLEMENTATION"]
        rows = [
            ("answered at once (UNKNOWN_ROBOT)", Reset.Goal(robot_id="nobody", task="pusht"),
             args.goals, False),
            ("teleport reset of a sim cell", Reset.Goal(robot_id="robot_0", task="pusht",
             seed=1, mode="teleport"), max(20, args.goals // 4), True),
        ]  # fmt: skip
        print(f"Reset action round trip, goal sent -> result received (two processes, {rmw}):")
        for label, goal, n, ok in rows:
            med, p99, lo, hi = measure(goal, n, ok)
            print(f"  {label:34s} n={n:4d}  median {med:7.2f} ms  p99 {p99:7.2f} ms  "
                  f"min {lo:6.2f}  max {hi:7.2f}")  # fmt: skip
        ex.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)
    finally:
        server.stop()
        cell.stop()


if __name__ == "__main__":
    main()

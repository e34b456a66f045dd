"""Reset action round-trip latency between two processes (goal sent -> result received).

Starts the EN node in its own process on a private ROS domain, then sends N goals one after
another from this process and prints the median and p99. The node's reset routine is set to
take no time, so the figure is the cost of the action machinery (DDS, rclpy, executors).

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
    server = NodeProcess("enpire_env.env_node", ["-p", "placeholder_phase_seconds:=0.0"], env=env)
    try:
        if not server.wait_for_output("reset server ready", 30):
            raise SystemExit(f"env_node did not start:\n{server.output}")
        ctx = Context()
        rclpy.init(context=ctx, domain_id=args.domain)
        node = Node("reset_latency_bench", context=ctx)
        ex = SingleThreadedExecutor(context=ctx)
        ex.add_node(node)
        client = ActionClient(node, Reset, "/reset")
        assert client.wait_for_server(timeout_sec=30)
        goal = Reset.Goal(robot_id="robot_0", task="pusht", seed=1)
        samples = []
        for i in range(args.goals + 5):
            t0 = time.perf_counter()
            f = client.send_goal_async(goal)
            ex.spin_until_future_complete(f, timeout_sec=10)
            rf = f.result().get_result_async()
            ex.spin_until_future_complete(rf, timeout_sec=10)
            dt = time.perf_counter() - t0
            assert rf.result().result.success
            if i >= 5:  # warm-up
                samples.append(dt * 1000)
        samples.sort()
        p99 = samples[min(len(samples) - 1, int(round(0.99 * (len(samples) - 1))))]
        print(
            f"Reset round trip over {len(samples)} goals "
            f"(two processes, {env['RMW_IMPLEMENTATION']}):"
        )
        print(
            f"  median {statistics.median(samples):.2f} ms   p99 {p99:.2f} ms   "
            f"min {samples[0]:.2f} ms   max {samples[-1]:.2f} ms"
        )
        ex.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)
    finally:
        server.stop()


if __name__ == "__main__":
    main()

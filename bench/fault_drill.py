"""Fault drill: `enpire launch --robots 2` at time_scale 8, each node SIGKILLed while it works
(a sim cell and env_node during a Rollout goal, the rollout node mid-goal, the train node
mid-training); prints per node: finished episodes lost, the goal's outcome, how long the
waiting client took to notice, and how long until the restarted node was serving again.

    scripts/run python bench/fault_drill.py [--out bench/results/fault_drill.txt]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="", help="also write the table here")
    ap.add_argument("--domain", type=int, default=77, help="ROS_DOMAIN_ID to run on")
    args = ap.parse_args()
    os.environ["ROS_DOMAIN_ID"] = str(args.domain)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    import rclpy

    from enpire_bringup.drill import (
        Fleet,
        drill_rollout_node,
        drill_rollout_work,
        drill_train_node,
        format_rows,
    )

    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    t0 = time.monotonic()
    rows = []
    with tempfile.TemporaryDirectory(prefix="enpire-drill-") as tmp, Fleet(tmp, 2, 8.0) as fleet:
        rows.append(drill_rollout_work(fleet, ctx, "/robot_1/sim_cell"))
        print(format_rows(rows[-1:]), flush=True)
        rows.append(drill_rollout_work(fleet, ctx, "/env_node", seed=200))
        print(format_rows(rows[-1:]), flush=True)
        rows.append(drill_rollout_node(fleet, ctx))
        print(format_rows(rows[-1:]), flush=True)
        rows.append(drill_train_node(fleet, ctx))
        print(format_rows(rows[-1:]), flush=True)
        restarts = fleet.output().count("restarting in")
    rclpy.try_shutdown(context=ctx)
    text = "\n".join(
        [
            f"fault drill: enpire launch --robots 2 --time-scale 8, {platform.machine()}, "
            f"{os.cpu_count()} cores, {time.monotonic() - t0:.0f} s; status 4 = SUCCEEDED",
            format_rows(rows),
            f"launcher restarts: {restarts}; the launch itself never stopped",
        ]
    )
    print("\n" + text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()

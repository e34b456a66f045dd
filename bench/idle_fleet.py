"""What an idle fleet costs: `enpire launch --robots N` with no goal, CPU time of every node
process (and its children) sampled from /proc over a window, as % of one core.

    scripts/run python bench/idle_fleet.py [--robots 1] [--time-scale 5] [--seconds 20]

The first measurement for issue 15 (an idle fleet should cost next to nothing: <= 2% of a
core per robot); it names the nodes that spend the time.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and its children still running (policy workers, ...)."""
    total = 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / TICK
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    try:
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            total += cpu_seconds(int(child))
    except FileNotFoundError:
        pass
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--robots", type=int, default=1)
    ap.add_argument("--time-scale", type=float, default=5.0)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--settle", type=float, default=10.0, help="s after all nodes are ready")
    ap.add_argument("--domain", type=int, default=78)
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    env = dict(os.environ, ROS_DOMAIN_ID=str(args.domain))
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="enpire-idle-") as tmp:
        proc = subprocess.Popen(
            [sys.executable, "-m", "enpire_bringup.enpire", "launch", "--robots",
             str(args.robots), "--time-scale", str(args.time_scale), "--data-dir", tmp],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
            start_new_session=True,
        )  # fmt: skip
        threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not (
                any("rollout server ready" in ln for ln in lines)
                and any("reset server ready" in ln for ln in lines)
            ):
                time.sleep(0.2)
            time.sleep(args.settle)
            nodes = {m.group(1): int(m.group(2)) for ln in list(lines)
                     if (m := re.search(r"started (\S+) \(pid (\d+)\)", ln))}  # fmt: skip
            before = {n: cpu_seconds(p) for n, p in nodes.items()}
            t0 = time.monotonic()
            time.sleep(args.seconds)
            wall = time.monotonic() - t0
            used = {n: cpu_seconds(p) - before[n] for n, p in nodes.items()}
        finally:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(timeout=60)
    total = sum(used.values())
    out = [f"idle fleet: enpire launch --robots {args.robots} --time-scale {args.time_scale:g}, "
           f"no goal, {wall:.0f} s window after {args.settle:g} s settling, {os.cpu_count()} "
           "cores"]  # fmt: skip
    for n, s in sorted(used.items(), key=lambda kv: -kv[1]):
        out.append(f"  {n:<28} {100 * s / wall:6.1f} % of a core")
    out.append(f"  {'total':<28} {100 * total / wall:6.1f} % of a core = "
               f"{100 * total / wall / args.robots:.1f} % per robot (target <= 2 %)")  # fmt: skip
    text = "\n".join(out)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()

"""E benchmark: the physical scaling law — time-to-goal of the whole agents' loop with 1, 2, 4
and 8 simulated cells (same seeds, same offline agents), and MRU while the agents think.

    scripts/run python bench/e_scaling.py [--cells 1 2 4 8] [--agents 2] [--budget 900]
        [--confirm-episodes 200] [--time-scale 5]

For each fleet size the script starts every node with ``enpire demo``'s plan (cells, safety
filters, EN, PI, R and the evolve node with offline agents from the naive baseline), follows
``/evolve/status`` until the run ends (goal confirmed or budget spent), and reads time-to-goal,
MRU and episodes from the ledger. It prints one row per fleet size and the ratio of
time-to-goal to the 1-cell run. ENPIRE reports ~2.5x for Push-T going from 1 to 8 robots.

On a 2-core machine every cell, filter and node shares two cores, so larger fleets are bounded
by CPU, not by the scheduler: read the ratios as what this host allows.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from enpire_bringup.enpire import watch_evolve
from enpire_bringup.fleet import FleetConfig, plan_nodes
from enpire_bringup.launcher import Launcher
from enpire_evolve.report import run_metrics
from enpire_rollout.ledger import Ledger


class _Quiet:
    """Node output to a log file in the run's data folder (kept with --keep)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(path, "a")  # noqa: SIM115 - closed by close()

    def write(self, s):
        self.file.write(s)

    def flush(self):
        self.file.flush()

    def close(self):
        self.file.close()


def run_one(cells: int, agents: int, budget: float, confirm: int, time_scale: float,
            data: Path) -> dict:  # fmt: skip
    cfg = FleetConfig(robots=cells, agents=agents, time_scale=time_scale, data_dir=str(data))
    specs = plan_nodes(cfg)
    run_id = f"scaling-{cells}"
    for s in specs:
        if s.name == "evolve_node":
            s.parameters.update(run_id=run_id, wall_budget=budget, confirm_episodes=confirm)
    t0 = time.monotonic()
    log = _Quiet(data / "logs" / f"{run_id}.log")
    try:
        with Launcher(specs, out=log) as launcher:
            status = watch_evolve(budget + 900, launcher.poll, quiet=True)
    finally:
        log.close()
    m = run_metrics(Ledger(data / "ledger.sqlite"), run_id)
    m["elapsed"] = time.monotonic() - t0
    m["status"] = status.get("outcome", {})
    return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cells", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--agents", type=int, default=2)
    ap.add_argument("--budget", type=float, default=900.0, help="wall s per fleet size")
    ap.add_argument("--confirm-episodes", type=int, default=200)
    ap.add_argument("--time-scale", type=float, default=5.0)
    ap.add_argument("--out", default="", help="also write the rows as JSON here")
    ap.add_argument("--keep", default="", help="keep each fleet's data and node logs here")
    args = ap.parse_args()
    rows = []
    for n in args.cells:
        if args.keep:
            d = Path(args.keep) / f"cells-{n}"
            m = run_one(n, args.agents, args.budget, args.confirm_episodes, args.time_scale, d)
        else:
            with tempfile.TemporaryDirectory(prefix=f"enpire-scaling-{n}-") as tmp:
                m = run_one(n, args.agents, args.budget, args.confirm_episodes,
                            args.time_scale, Path(tmp))  # fmt: skip
        rows.append({"cells": n, **{k: m[k] for k in (
            "goal_reached", "time_to_goal_s", "wall_seconds", "mru", "episodes",
            "episodes_per_hour", "experiments", "best_screening_rate", "reason")}})  # fmt: skip
        r = rows[-1]
        ttg = (
            f"{r['time_to_goal_s']:.0f} s" if r["goal_reached"] else f"> {r['wall_seconds']:.0f} s"
        )
        print(
            f"{n} cell(s): time-to-goal {ttg}, MRU {r['mru']:.1%}, {r['episodes']} episodes "
            f"({r['episodes_per_hour']:.0f}/h), {r['experiments']} experiments, best screening "
            f"{r['best_screening_rate']:.0%} ({r['reason']})",
            flush=True,
        )
    base = rows[0]
    print("\ncells  time-to-goal [s]  ratio to first  MRU")
    for r in rows:
        t = r["time_to_goal_s"]
        ratio = (base["time_to_goal_s"] / t) if t and base["time_to_goal_s"] else float("nan")
        print(f"{r['cells']:5d}  {t if t else float('nan'):16.0f}  {ratio:14.2f}x  {r['mru']:.1%}")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

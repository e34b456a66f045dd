"""MRU with coding agents that think: does the experiment queue keep the robots busy?

A fleet of simulated cells (in process, paced to their clock) serves the ledger's experiment
queue; fake CLI agents (``ws/src/enpire_evolve/test/fake_cli_agent.py``, real programs hosted by
``AgentHost`` through the ``command`` backend, talking to ``enpire mcp`` over stdio) think
``--think`` s of lab time per decision, then commit a change and submit it. Two ways of working:

- ``one-at-a-time``: think, submit, wait for the result, think again (ENPIRE's agents, and
  enpire's own agents before the queue); no work for idle robots;
- ``queue``: think, submit and go on thinking, up to K experiments in flight per agent; robots
  with nothing queued confirm the best candidate on fresh seeds.

Lab time runs ``--time-scale`` times faster than wall time (cells and thinking alike), so a run
of ``--duration`` lab seconds takes duration / time_scale wall seconds; MRU does not depend on
the scale as long as the machine keeps up (the cells' step rate is printed to check).
MRU = robot time in resets and episodes / (cells x window), from the ledger's intervals, over
the window from the first experiment submitted (the agents have started and thought once;
MRU(all) counts from the start, start-up included).

    scripts/run python bench/agents_mru.py                  # 4 cells, 2 and 4 agents, 60 s
    scripts/run python bench/agents_mru.py --out bench/results/agents_mru.txt
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

from enpire_evolve.agent_host import AgentHost, CliAgentConfig, HostConfig
from enpire_evolve.mcp_server import local_fleet
from enpire_rollout.experiments import ConfirmRule
from enpire_rollout.metrics import fleet_usage

ROOT = Path(__file__).resolve().parents[1]
FAKE = ROOT / "ws/src/enpire_evolve/test/fake_cli_agent.py"


def run_config(agents: int, mode: str, a: argparse.Namespace) -> dict:
    k = a.in_flight if mode == "queue" else 1
    wall = a.duration / a.time_scale
    think = a.think / a.time_scale
    with tempfile.TemporaryDirectory(prefix="agents-mru-") as tmp:
        tmp = Path(tmp)
        (tmp / "plan.json").write_text(json.dumps({"*": ["bench"]}))
        env = dict(
            os.environ,
            FAKE_AGENT_PLAN=str(tmp / "plan.json"),
            FAKE_AGENT_STATE=str(tmp / "state"),
            FAKE_AGENT_THINK=f"{think:g}",
            FAKE_AGENT_K=str(k),
            FAKE_AGENT_EPISODES=str(a.episodes),
        )
        cmd = [
            sys.executable,
            str(FAKE),
            "--flavor",
            "command",
            "--mcp-config",
            "{mcp_config}",
            "--worktree",
            "{worktree}",
        ]
        cli = CliAgentConfig(
            backend="command",
            command=cmd,
            events="none",
            max_in_flight=k,
            hang_timeout=wall + 60,
            writable=[str(tmp / "state")],  # the fake agents' notes (they run confined)
        )
        (tmp / "state").mkdir()
        cfg = HostConfig(run_id=f"mru-{agents}-{mode}", agents=agents, cli=cli, wall_budget=wall)
        host = AgentHost(cfg, tmp / "data", log=lambda _m: None, env=env)
        rule = ConfirmRule(goal_success=0.95, episodes=a.episodes, when_idle=mode == "queue")
        service, feeder = local_fleet(
            host.ledger, tmp / "data", a.cells, 300, a.time_scale, video_size=0, confirm=rule
        )
        t0 = time.time()
        try:
            th = threading.Thread(target=host.run, kwargs={"poll": 0.5}, daemon=True)
            th.start()
            th.join(wall + 120)
        finally:
            t1 = time.time()
            feeder.close()
            service.close()
        robots = list(service.fleet)
        if a.keep:
            import sqlite3

            with sqlite3.connect(tmp / "data" / "ledger.sqlite") as src:
                src.backup(sqlite3.connect(f"{a.keep}-{agents}-{mode}.sqlite"))
        first = host.ledger.query("SELECT MIN(submitted) AS t FROM experiments")[0]["t"]
        start = first or t1  # from the first experiment submitted (agents started, thought once)
        usage = fleet_usage(host.ledger, start, t1, robots)
        whole = fleet_usage(host.ledger, t0, t1, robots)
        exps = host.ledger.query(
            "SELECT kind, COUNT(*) AS n FROM experiments WHERE status = 'done' GROUP BY kind"
        )
        gaps = []
        for robot in robots:
            ivs = [iv for iv in host.ledger.intervals(start, t1) if iv["robot_id"] == robot]
            ivs.sort(key=lambda iv: iv["t_start"])
            gaps += [
                b["t_start"] - a["t_end"] for a, b in zip(ivs, ivs[1:], strict=False) if a["t_end"]
            ]
        steps = host.ledger.query(
            "SELECT COALESCE(SUM(steps), 0) AS s FROM episodes WHERE wall_start >= ?", (t0,)
        )[0]["s"]
        return {
            "agents": agents,
            "mode": mode,
            "k": k,
            "mru": usage.mru,
            "mru_whole": whole.mru,
            "episodes": whole.episodes,
            "experiments": {r["kind"]: r["n"] for r in exps},
            "steps_per_s": steps / max(t1 - t0, 1e-9),
            "wall": t1 - t0,
            "gap": sorted(gaps)[len(gaps) // 2] if gaps else 0.0,
        }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=4)
    ap.add_argument("--agents", default="2,4")
    ap.add_argument("--think", type=float, default=60.0, help="lab s per decision")
    ap.add_argument("--episodes", type=int, default=10, help="per experiment")
    ap.add_argument("--in-flight", type=int, default=2, help="K with the queue")
    ap.add_argument("--time-scale", type=float, default=10.0)
    ap.add_argument("--duration", type=float, default=1200.0, help="lab s per configuration")
    ap.add_argument("--modes", default="one-at-a-time,queue")
    ap.add_argument("--out", default="")
    ap.add_argument("--keep", default="", help="copy each run's ledger to KEEP-<agents>-<mode>")
    a = ap.parse_args()
    lines = [
        f"agents_mru: {a.cells} simulated cells (paced, time_scale {a.time_scale:g}), fake CLI "
        f"agents thinking {a.think:g} lab-s per decision, {a.episodes} episodes per experiment, "
        f"{a.duration:g} lab-s per configuration; {os.cpu_count()} CPUs",
        f"{'agents':>6} {'mode':>14} {'K':>2} {'MRU':>7} {'MRU(all)':>9} {'episodes':>8} "
        f"{'steps/s':>8}  experiments done",
    ]
    print("\n".join(lines), flush=True)
    results = []
    for agents in [int(x) for x in a.agents.split(",")]:
        for mode in a.modes.split(","):
            r = run_config(agents, mode, a)
            results.append(r)
            line = (
                f"{r['agents']:>6} {r['mode']:>14} {r['k']:>2} {r['mru']:>7.1%} "
                f"{r['mru_whole']:>9.1%} {r['episodes']:>8} {r['steps_per_s']:>8.0f}  "
                f"{json.dumps(r['experiments'])}  median gap {r['gap']:.2f} s"
            )
            print(line, flush=True)
            lines.append(line)
    target = all(r["mru"] >= 0.95 for r in results if r["mode"] == "queue")
    lines.append(
        "MRU = busy robot time / (cells x window), window = from the first submitted experiment; "
        f"MRU(all) from the start. Target >= 95% with the queue: {'met' if target else 'MISSED'}"
        f". Pacing: {a.cells} cells x 10 Hz x {a.time_scale:g} = "
        f"{a.cells * 10 * a.time_scale:g} steps/s at full use."
    )
    print(lines[-1])
    if a.out:
        Path(a.out).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Run the README's `make demo` N times, each from a fresh data directory, and record per run:
goal reached, minutes to the confirmed goal, MRU, experiments, episodes, and any episode that
started before its cell published (CellLostError in the node log before the run's end; its
shutdown, where cells stop before the rollout node, is not counted).

    python bench/demo_reliability.py --runs 10 [--out bench/results/demo_reliability.txt]

Target (issue 17): >= 9 of 10 runs reach the confirmed goal within 15 minutes, median MRU >= 90%.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def one_run(i: int, data: Path, demo_args: str) -> dict:
    t0 = time.monotonic()
    proc = subprocess.run(
        ["make", "demo", f"DEMO_ARGS=--data-dir {data} {demo_args}".strip()],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    wall = time.monotonic() - t0
    reports = sorted((data / "reports").glob("*.json"))
    m = json.loads(reports[-1].read_text()) if reports else {}
    logs = list((data / "logs").glob("demo-*.log"))
    text = logs[0].read_text(errors="replace") if logs else ""
    end = re.search(r"\]: done: ", text)  # the run's end: what follows is its shutdown
    running = text[: end.start()] if end else text
    return {
        "run": i,
        "rc": proc.returncode,
        "goal": bool(m.get("goal_reached")),
        "minutes_to_goal": (m["time_to_goal_s"] / 60) if m.get("time_to_goal_s") else None,
        "mru": m.get("mru"),
        "experiments": m.get("experiments"),
        "episodes": m.get("episodes"),
        "reason": m.get("reason", "no report"),
        "cell_lost": running.count("CellLostError"),
        "wall_minutes": wall / 60,
        "winner": (m.get("winner") or {}).get("commit", "")[:12],
        "tail": proc.stdout[-400:] if not m else "",
    }


def line(r: dict) -> str:
    goal = "yes" if r["goal"] else "no "
    mins = f"{r['minutes_to_goal']:5.1f}" if r["minutes_to_goal"] is not None else "    -"
    mru = f"{r['mru']:.1%}" if r["mru"] is not None else "-"
    out = (
        f"run {r['run']:2d}  goal {goal}  minutes to goal {mins}  MRU {mru:>6}  "
        f"experiments {r['experiments']}  episodes {r['episodes']}  "
        f"episodes before their cell published {r['cell_lost']}  "
        f"(make demo {r['wall_minutes']:.1f} min, {r['reason']}"
    )
    out += f", winner {r['winner']})" if r["winner"] else ")"
    return out + (f"\n        {r['tail']!r}" if r["tail"] else "")


def summary(rows: list[dict], limit_min: float) -> str:
    ok = [r for r in rows if r["goal"] and r["minutes_to_goal"] <= limit_min]
    mrus = [r["mru"] for r in rows if r["mru"] is not None]
    mins = [r["minutes_to_goal"] for r in ok]
    return (
        f"summary: {len(ok)}/{len(rows)} runs reached the confirmed goal within {limit_min:g} "
        f"min; minutes to goal median {statistics.median(mins):.1f}, max {max(mins):.1f}; "
        if mins
        else f"summary: 0/{len(rows)} runs reached the goal within {limit_min:g} min; "
    ) + (
        f"MRU median {statistics.median(mrus):.1%} (min {min(mrus):.1%}, max {max(mrus):.1%}); "
        f"episodes started before their cell published: {sum(r['cell_lost'] for r in rows)}"
        if mrus
        else "no MRU recorded"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--demo-args", default="", help="extra DEMO_ARGS for every run")
    ap.add_argument("--limit", type=float, default=15.0, help="minutes a goal counts within")
    ap.add_argument("--out", default=str(ROOT / "bench/results/demo_reliability.txt"))
    ap.add_argument("--keep", action="store_true", help="keep the runs' data directories")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="enpire-demo-reliability-"))
    head = (
        f"# bench/demo_reliability.py --runs {args.runs}: the README's `make demo` from a fresh "
        f"data dir each run, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores"
        + (f", DEMO_ARGS {args.demo_args!r}" if args.demo_args else "")
    )
    print(head, flush=True)
    rows = []
    for i in range(1, args.runs + 1):
        r = one_run(i, work / f"run{i}", args.demo_args)
        rows.append(r)
        print(line(r), flush=True)
    text = "\n".join([head, *map(line, rows), summary(rows, args.limit)]) + "\n"
    print(text.splitlines()[-1])
    Path(args.out).write_text(text)
    if not args.keep:
        subprocess.run(["rm", "-rf", str(work)], check=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Containment table: every hostile-policy route of enpire_policy.containment, run in the
policy sandbox at each isolation level this machine offers with the OS layers alone (the
Python audit hook off), and at the default (best level + audit hook).

    scripts/run python bench/containment.py [--out bench/results/containment.txt]

A cell reads "refused" (the policy failed with an error and nothing got out), "blocked"
(nothing got out, though the policy's call returned quietly, e.g. os.system -> 127), "ESCAPED:
what changed", or "not run" (a fork bomb where nothing would stop it: it would take the
machine down). The fault drill is bench/fault_drill.py.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import tempfile
import time
from pathlib import Path

from enpire_policy import isolation
from enpire_policy.containment import ROUTES, Targets
from enpire_policy.sandbox import PolicyError, PolicySource, SandboxedPolicy

OBS = {"tip": [100.0, 100.0], "block_pose": [200.0, 200.0, 0.5], "goal_pose": [256, 256, 0.78]}


def commit(root: Path, name: str, text: str) -> str:
    repo = root / f"hostile-{name}"
    repo.mkdir()
    (repo / "policy.py").write_text(text)
    for cmd in (
        ["init", "-q", "-b", "main"],
        ["add", "-A"],
        ["-c", "user.email=b@b", "-c", "user.name=b", "commit", "-q", "-m", name],
    ):
        subprocess.run(["git", "-C", str(repo), *cmd], check=True, capture_output=True)
    return str(repo)


def attempt(name: str, repo: str, root: Path, t: Targets, level: str, hook: bool) -> str:
    t.reset()
    pol = SandboxedPolicy(
        PolicySource(repo, "policy", "HEAD"),
        cache_dir=root / "cache",
        step_timeout=2.0,
        memory_mb=2048,
        cpu_seconds=30,
        isolation_level=level,
        hidden=[str(t.data_dir)],
        audit_hook=hook,
    )
    err = None
    try:
        pol.start()
        pol.reset(0)
        pol.act(OBS)
    except PolicyError as e:
        err = e
    finally:
        pol.close()
    escaped = t.escaped()
    if not escaped and err is None and name == "read_ledger":
        escaped = "read the file"
    if escaped:
        return f"ESCAPED: {escaped}"
    return f"refused ({err.kind})" if err else "blocked"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="", help="also write the table here")
    args = ap.parse_args()
    caps = isolation.probe()
    levels = list(isolation.LEVELS[: isolation.rank(caps.best) + 1])
    cols = [*levels, f"default ({caps.best}+hook)"]
    rows = []
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="enpire-containment-") as tmp:
        root = Path(tmp)
        t = Targets.create(root / "targets")
        try:
            for name, route in ROUTES.items():
                repo = commit(root, name, route.source(t))
                cells = []
                for level in levels:
                    if route.dangerous and isolation.rank(level) < isolation.rank("seccomp"):
                        cells.append("not run (nothing stops it)")
                        continue
                    cells.append(attempt(name, repo, root, t, level, hook=False))
                cells.append(attempt(name, repo, root, t, caps.best, hook=True))
                rows.append((route.what, cells))
                print(f"{name}: {' | '.join(cells)}", flush=True)
        finally:
            t.close()
    width = max(len(w) for w, _ in rows)
    cw = [max(len(c), *(len(r[1][i]) for r in rows)) for i, c in enumerate(cols)]
    lines = [
        f"containment: {len(ROUTES)} routes x {len(cols)} configurations, "
        f"{platform.machine()}, kernel {platform.release()}, {time.monotonic() - t0:.0f} s",
        caps.describe(),
        "OS layers alone (audit hook off) per level; last column: what runs by default",
        "",
        " | ".join([f"{'route':<{width}}", *(f"{c:<{w}}" for c, w in zip(cols, cw, strict=True))]),
        "-+-".join(["-" * width, *("-" * w for w in cw)]),
    ]
    for what, cells in rows:
        lines.append(
            " | ".join(
                [f"{what:<{width}}", *(f"{c:<{w}}" for c, w in zip(cells, cw, strict=True))]
            )
        )
    escaped = sum(c.startswith("ESCAPED") for _, cells in rows for c in cells[-2:])
    lines.append("")
    lines.append(f"escapes at the best level or by default: {escaped}")
    text = "\n".join(lines)
    print("\n" + text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()

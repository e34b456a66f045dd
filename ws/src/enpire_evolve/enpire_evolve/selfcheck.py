"""Run an agent tree's own tests in a limited subprocess.

    ok, output = run_selfcheck(tree_path, timeout=120)

The tests are agent-written code: they run with the tree as working directory, confined like
policy workers (:mod:`enpire_policy.isolation`: no programs, processes or network; the tree
read-only, writes only in a private scratch folder; nothing of data_dir, $HOME or other
agents' trees visible), with CPU-time and memory limits, a wall-clock timeout (the process
group is killed), and the policy sandbox's audit hook.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from enpire_policy import isolation
from enpire_policy.sandbox import _limits, scratch_dir  # the policy sandbox's own limits

SCRATCH_PREFIX = "enpire-selfcheck-"


def run_selfcheck(
    tree: str | Path, timeout: float = 120.0, memory_mb: int = 4096, hidden: list[str] = ()
) -> tuple[bool, str]:
    """Run the tree's tests; ``hidden``: paths they must not see (data_dir, other trees)."""
    tree = Path(tree).resolve()
    level = isolation.resolve_level(*isolation.configured())
    scratch_path = scratch_dir(SCRATCH_PREFIX)
    scratch = str(scratch_path.resolve())
    hide = [*hidden, os.path.expanduser("~"), str(tree.parent)]
    conf = isolation.Confinement.for_child(level, str(tree), hide, scratch)
    env = isolation.child_env(
        [str(tree), *sys.path[1:]], scratch, {"ENPIRE_CONFINE": conf.to_json()}
    )
    argv = [sys.executable, "-m", "enpire_evolve.selfcheck", str(tree), scratch]
    try:
        proc = subprocess.Popen(
            conf.command(argv, str(tree)),
            cwd=tree,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_limits(int(timeout) + 5, memory_mb),  # noqa: PLW1509
        )
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            return False, out.decode(errors="replace")[-4000:] + f"\n(timeout after {timeout} s)"
    finally:
        shutil.rmtree(scratch_path, ignore_errors=True)
    text = out.decode(errors="replace")[-4000:]
    return proc.returncode == 0, text


def main() -> int:
    import pytest

    from enpire_policy.sandbox_worker import guard

    tree, scratch = sys.argv[1], sys.argv[2]
    guard(os.environ.pop("ENPIRE_CONFINE"), scratch)
    return int(pytest.main(["-q", "-p", "no:cacheprovider", "-p", "no:xdist", "-x", tree]))


if __name__ == "__main__":
    sys.exit(main())

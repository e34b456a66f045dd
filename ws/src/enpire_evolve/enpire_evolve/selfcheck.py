"""Run an agent tree's own tests in a limited subprocess.

    ok, output = run_selfcheck(tree_path, timeout=120)

The tests are agent-written code: they run with the tree as working directory, CPU-time and
memory limits, a wall-clock timeout (the process group is killed), and the policy sandbox's
audit hook, which refuses writes outside the tree and a scratch folder — so a test cannot
touch the shared repository, the ledger or another agent's tree by mistake.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from enpire_policy.sandbox import _limits  # the policy sandbox's own limits


def run_selfcheck(tree: str | Path, timeout: float = 120.0, memory_mb: int = 4096
                  ) -> tuple[bool, str]:  # fmt: skip
    tree = Path(tree).resolve()
    with tempfile.TemporaryDirectory(prefix="enpire-selfcheck-") as scratch:
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", TMPDIR=scratch)
        env["PYTHONPATH"] = os.pathsep.join([str(tree), *sys.path[1:]])
        proc = subprocess.Popen(
            [sys.executable, "-m", "enpire_evolve.selfcheck", str(tree), scratch],
            cwd=tree, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, preexec_fn=_limits(int(timeout) + 5, memory_mb),  # noqa: PLW1509
        )  # fmt: skip
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            return False, out.decode(errors="replace")[-4000:] + f"\n(timeout after {timeout} s)"
    text = out.decode(errors="replace")[-4000:]
    return proc.returncode == 0, text


def main() -> int:
    import pytest

    from enpire_policy import sandbox_worker

    tree, scratch = sys.argv[1], sys.argv[2]
    sandbox_worker._ALLOWED.extend([os.path.realpath(tree), os.path.realpath(scratch)])
    sys.addaudithook(sandbox_worker._audit)
    return int(pytest.main(["-q", "-p", "no:cacheprovider", "-p", "no:xdist", "-x", tree]))


if __name__ == "__main__":
    sys.exit(main())

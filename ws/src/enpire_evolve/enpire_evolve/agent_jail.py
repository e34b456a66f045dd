"""Run a program that may write only under some folders (Landlock), e.g. a coding agent's CLI:

    python -m enpire_evolve.agent_jail --write WORKTREE --write HOME/.claude -- claude -p ...

It reads everything and may start programs and use the network (the CLI needs its model API and
its own tools), but cannot write the ledger, other agents' trees, the lab's code or anything
else outside ``--write``; neither can what it starts. Exits 126 if Landlock is unavailable.
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--" not in argv:
        print("agent_jail: usage: --write DIR ... -- PROGRAM ARGS", file=sys.stderr)
        return 2
    cut = argv.index("--")
    ap = argparse.ArgumentParser(prog="agent_jail")
    ap.add_argument("--write", action="append", default=[])
    args = ap.parse_args(argv[:cut])
    program = argv[cut + 1 :]
    if not program:
        print("agent_jail: no program", file=sys.stderr)
        return 2
    from enpire_policy.isolation import confine_writes

    try:
        confine_writes([os.path.abspath(p) for p in args.write])
    except Exception as e:  # noqa: BLE001 - no Landlock: refuse rather than run unconfined
        print(f"agent_jail: cannot confine ({type(e).__name__}: {e})", file=sys.stderr)
        return 126
    os.execvp(program[0], program)
    return 127  # not reached


if __name__ == "__main__":
    raise SystemExit(main())

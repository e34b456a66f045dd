"""Optional check: do the real Claude Code and Codex CLIs take the flags enpire passes them?

Installs ``@anthropic-ai/claude-code`` and ``@openai/codex`` from the npm registry into a local
folder (nothing global), prints their versions, builds the command lines enpire's agent host
runs for each backend (a first turn and a resumed one, ``enpire_evolve.agent_host``) and checks
every flag in them against the CLI's own ``--help`` for that sub-command. Needs ``npm``.

    scripts/run python bench/agent_cli_check.py [--prefix DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
from pathlib import Path

from enpire_evolve.agent_host import CliAgentConfig, build_command

PACKAGES = ("@anthropic-ai/claude-code", "@openai/codex")


def sh(*args: str, timeout: float = 600) -> str:
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    return r.stdout + r.stderr


def flags_of(argv: list[str]) -> list[str]:
    """The options in a command line ('-c' once, whatever its values)."""
    out = []
    for a in argv:
        if re.fullmatch(r"--?[A-Za-z][\w-]*", a) and a not in out:
            out.append(a)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prefix", default="/tmp/enpire-agent-clis")
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    if not shutil.which("npm"):
        print("agent_cli_check: npm is not installed; nothing checked")
        return 2
    prefix = Path(a.prefix)
    prefix.mkdir(parents=True, exist_ok=True)
    log = sh("npm", "install", "--prefix", str(prefix), "--no-audit", "--no-fund", *PACKAGES)
    bin_dir = prefix / "node_modules" / ".bin"
    lines = [f"agent_cli_check: npm install --prefix {prefix} {' '.join(PACKAGES)}"]
    if not (bin_dir / "claude").exists() or not (bin_dir / "codex").exists():
        print(log[-3000:])
        lines.append("install FAILED")
        print("\n".join(lines))
        return 1
    claude, codex = str(bin_dir / "claude"), str(bin_dir / "codex")
    lines.append(f"claude --version: {sh(claude, '--version').strip().splitlines()[0]}")
    lines.append(f"codex --version: {sh(codex, '--version').strip().splitlines()[-1]}")
    files = {
        "worktree": Path("/tmp/wt"),
        "prompt_file": Path("/tmp/p.md"),
        "mcp_config": Path("/tmp/mcp.json"),
        "agent_id": Path("agent_0"),
    }
    mcp = ["enpire", "mcp", "--agent", "agent_0"]
    cases = []
    for backend, exe in (("claude", claude), ("codex", codex)):
        cfg = CliAgentConfig(backend=backend, command=[exe], model="some-model")
        for session in ("", "SESSION"):
            argv = build_command(cfg, "PROMPT", session, files, mcp)
            sub = [w for w in argv[1:3] if w in ("exec", "resume")]
            if backend == "codex" and session:
                sub = ["exec", "resume"]
            help_text = sh(exe, *sub, "--help")
            cases.append((backend, " ".join(sub) or "(main)", flags_of(argv), help_text))
    ok_all = True
    for backend, sub, flags, help_text in cases:
        missing = [
            f
            for f in flags
            if not re.search(rf"(^|[\s,]){re.escape(f)}([\s,=<\[]|$)", help_text, re.M)
        ]
        ok_all &= not missing
        lines.append(
            f"{backend} {sub}: {len(flags) - len(missing)}/{len(flags)} flags in "
            f"--help ({' '.join(flags)})" + (f"; MISSING {missing}" if missing else "")
        )
    lines.append("result: " + ("every flag enpire passes exists" if ok_all else "FLAGS MISSING"))
    print("\n".join(lines))
    if a.out:
        Path(a.out).write_text("\n".join(lines) + "\n")
    return 0 if ok_all else 1


if __name__ == "__main__":
    raise SystemExit(main())

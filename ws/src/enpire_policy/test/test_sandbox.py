"""Agent-written policy code is contained: every kind of bad code fails with a clear error
naming the file and line, and the caller keeps going."""

from __future__ import annotations

import math
import subprocess
import textwrap
from pathlib import Path

import pytest

from enpire_policy.sandbox import PolicyError, PolicySource, SandboxedPolicy

OBS = {"tip": [100.0, 100.0], "block_pose": [200.0, 200.0, 0.5], "goal_pose": [256, 256, 0.78]}

GOOD = """
class P:
    def reset(self, seed):
        self.seed = seed

    def act(self, obs):
        return {"tip": [obs["tip"][0] + VERSION, obs["tip"][1]], "lift": False}

    def metadata(self):
        return {"name": "good", "version": VERSION}


def make_policy(**kw):
    return P()
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path):
    r = tmp_path / "agent0"
    r.mkdir()
    git(r, "init", "-q", "-b", "main")
    git(r, "config", "user.email", "t@t")
    git(r, "config", "user.name", "t")
    return r


def commit(repo: Path, files: dict[str, str]) -> str:
    for name, text in files.items():
        (repo / name).write_text(textwrap.dedent(text))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "policy")
    return git(repo, "rev-parse", "HEAD")


def run(repo, tmp_path, sha, **kw) -> SandboxedPolicy:
    src = PolicySource(str(repo), "policy", sha)
    opts = dict(cache_dir=tmp_path / "cache", step_timeout=1.0, load_timeout=30.0)
    opts.update(kw)
    return SandboxedPolicy(src, **opts)


def test_runs_the_committed_code_not_the_worktree(repo, tmp_path):
    sha1 = commit(repo, {"policy.py": "VERSION = 1\n" + GOOD})
    (repo / "policy.py").write_text("VERSION = 2\n" + GOOD)  # uncommitted edit
    with run(repo, tmp_path, sha1) as pol:
        pol.reset(3)
        assert pol.metadata() == {"name": "good", "version": 1}
        assert pol.act(OBS).tip == (101.0, 100.0)
    with run(repo, tmp_path, None) as pol:  # no commit: the worktree as it is
        assert pol.act(OBS).tip == (102.0, 100.0)
    cached = tmp_path / "cache" / sha1 / "policy.py"
    assert cached.exists() and not cached.stat().st_mode & 0o222  # read-only export


def test_unknown_commit_and_module(repo, tmp_path):
    commit(repo, {"policy.py": "VERSION = 1\n" + GOOD})
    with pytest.raises(PolicyError) as e:
        run(repo, tmp_path, "0123456789abcdef").start()
    assert e.value.kind == "source"
    with pytest.raises(PolicyError) as e:
        PolicySource(str(repo), "not a module")
    assert e.value.kind == "source"


BAD = {
    "syntax": ("def act(self, obs:\n    return 1\n", "syntax", 1),
    "import": ("import numpy\nimport enpire_no_such_module\n", "import", 2),
    "raise": (
        GOOD.replace('return {"tip"', 'raise ValueError("boom")\n        return {"tip"'),
        "exception",
        7,
    ),
    "nan": (GOOD.replace('obs["tip"][0] + VERSION', "float('nan')"), "action", 6),
    "keys": (GOOD.replace('"lift": False', '"jump": True'), "action", 6),
    "hang": (
        GOOD.replace('return {"tip"', 'while True:\n            pass\n        return {"tip"'),
        "timeout",
        6,
    ),  # fmt: skip
    "memory": (
        GOOD.replace('return {"tip"', 'x = bytearray(8 << 30)\n        return {"tip"'),
        "memory",
        7,
    ),
    "write": (
        GOOD.replace(
            'return {"tip"',
            'open(OUTSIDE, "w").write("x")\n        return {"tip"',
        ),
        "forbidden",
        7,
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_policy_code_is_contained(case, repo, tmp_path):
    text, kind, line = BAD[case]
    outside = tmp_path / "outside.txt"
    header = f"VERSION = 1\nOUTSIDE = {str(outside)!r}\n"
    sha = commit(repo, {"policy.py": header + textwrap.dedent(text)})
    pol = run(repo, tmp_path, sha, memory_mb=1024)
    with pytest.raises(PolicyError) as e:
        pol.start()
        pol.reset(0)
        pol.act(OBS)
    err = e.value
    assert err.kind == kind, err
    assert err.file.endswith("policy.py"), err
    assert err.line == line + 2, err  # the two header lines
    assert f"policy.py:{line + 2}" in str(err)
    assert pol.proc is None  # the worker is gone, nothing lingers
    assert not outside.exists()


def test_hang_at_import_and_crash(repo, tmp_path):
    sha = commit(repo, {"policy.py": "while True:\n    pass\n"})
    with pytest.raises(PolicyError) as e:
        run(repo, tmp_path, sha, load_timeout=2.0).start()
    assert e.value.kind == "timeout"
    sha = commit(repo, {"policy.py": "import os\nos._exit(3)\n"})
    with pytest.raises(PolicyError) as e:
        run(repo, tmp_path, sha).start()
    assert e.value.kind == "crash" and "status 3" in e.value.message


def test_prints_go_to_the_log_and_scratch_is_writable(repo, tmp_path):
    code = GOOD.replace(
        'return {"tip"',
        'print("hello from act")\n        open("scratch.txt", "w").write("ok")\n'
        '        return {"tip"',
    )
    sha = commit(repo, {"policy.py": "VERSION = 1\n" + code})
    log = tmp_path / "worker.log"
    with run(repo, tmp_path, sha, log_path=log) as pol:
        for _ in range(3):
            assert math.isclose(pol.act(OBS).tip[0], 101.0)
    assert "hello from act" in log.read_text()


ENV_REPORT = """
import os


class P:
    def act(self, obs):
        return {"tip": [0.0, 0.0], "lift": False}

    def metadata(self):
        return {"blas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "")}


def make_policy(**kw):
    return P()
"""


def test_worker_runs_numpys_blas_single_threaded_unless_told(repo, tmp_path, monkeypatch):
    sha = commit(repo, {"policy.py": ENV_REPORT})
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    with run(repo, tmp_path, sha) as pol:
        assert pol.metadata() == {"blas_threads": "1"}
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "3")
    with run(repo, tmp_path, sha) as pol:
        assert pol.metadata() == {"blas_threads": "3"}

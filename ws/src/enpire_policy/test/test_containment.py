"""Hostile policy code cannot get out: every route of enpire_policy.containment is refused by
the OS layers alone (audit hook off) at the best isolation level this machine offers, and with
the audit hook on it fails as a policy error naming what was refused. Also: the isolation
levels refuse what they document, the minimum level is enforced, secrets stay out of the
worker's environment, and a killed process's scratch folders are removed at start-up."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

from enpire_policy import isolation
from enpire_policy.containment import ROUTES, Targets
from enpire_policy.sandbox import (
    SCRATCH_PREFIX,
    PolicyError,
    PolicySource,
    SandboxedPolicy,
    remove_stale_exports,
    remove_stale_scratch,
)

OBS = {"tip": [100.0, 100.0], "block_pose": [200.0, 200.0, 0.5], "goal_pose": [256, 256, 0.78]}
BEST = isolation.probe().best


def git(repo, *args):
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture(scope="module")
def targets(tmp_path_factory):
    t = Targets.create(tmp_path_factory.mktemp("targets"))
    yield t
    t.close()


def commit_route(root, name, t: Targets) -> tuple[str, str]:
    repo = root / f"hostile-{name}"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "policy.py").write_text(ROUTES[name].source(t))
    git(repo, "add", "-A")
    git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "-m", name)
    return str(repo), git(repo, "rev-parse", "HEAD")


def attempt(repo, sha, tmp_path, targets, **kw) -> PolicyError | None:
    pol = SandboxedPolicy(
        PolicySource(repo, "policy", sha),
        cache_dir=tmp_path / "cache",
        step_timeout=2.0,
        memory_mb=2048,
        cpu_seconds=30,
        hidden=[str(targets.data_dir)],
        **kw,
    )
    try:
        pol.start()
        pol.reset(0)
        pol.act(OBS)
        return None
    except PolicyError as e:
        return e
    finally:
        pol.close()


@pytest.mark.skipif(BEST == "rlimits", reason="no OS isolation layer on this machine")
@pytest.mark.parametrize("name", sorted(ROUTES))
def test_os_layers_alone_refuse_every_route(name, tmp_path, targets):
    targets.reset()
    repo, sha = commit_route(tmp_path, name, targets)
    err = attempt(repo, sha, tmp_path, targets, isolation_level=BEST, audit_hook=False)
    assert targets.escaped() == "", f"{name} escaped at {BEST}: {targets.escaped()}"
    if name in (
        "read_ledger",
        "write_ledger",
        "write_data_dir",
        "write_other_tree",
        "write_home",
        "ctypes_open",
        "sqlite_write",
        "socket_connect",
        "fork_exec",
        "posix_spawn",
        "subprocess",
        "ctypes_system",
        "kill_process",
        "fork_bomb",
    ):
        assert err is not None and err.kind in ("forbidden", "exception"), err


@pytest.mark.parametrize("name", sorted(ROUTES))
def test_every_route_fails_naming_the_reason(name, tmp_path, targets):
    targets.reset()
    repo, sha = commit_route(tmp_path, name, targets)
    err = attempt(repo, sha, tmp_path, targets)
    assert targets.escaped() == "", f"{name} escaped: {targets.escaped()}"
    assert err is not None, f"{name} was not refused"
    expected = {"memory": "memory", "endless_loop": "timeout", "nan_action": "action"}
    assert err.kind == expected.get(name, "forbidden"), err
    assert err.file.endswith("policy.py") or err.kind == "memory", err
    if err.kind == "forbidden":
        assert "may not" in err.message or "not permitted" in err.message, err


@pytest.mark.skipif(BEST == "rlimits", reason="no OS isolation layer on this machine")
def test_level_table_matches_the_documentation(tmp_path, targets):
    """seccomp stops programs and sockets; only landlock and above stop C-level file access."""
    levels = isolation.LEVELS[: isolation.rank(BEST) + 1]
    for name, blocked_from in (
        ("os_system", "seccomp"),
        ("socket_connect", "seccomp"),
        ("ctypes_open", "landlock"),
        ("read_ledger", "landlock"),
    ):
        repo, sha = commit_route(tmp_path, name, targets)
        for level in levels:
            targets.reset()
            err = attempt(repo, sha, tmp_path, targets, isolation_level=level, audit_hook=False)
            escaped = targets.escaped() or (name == "read_ledger" and err is None)
            should = isolation.rank(level) < isolation.rank(blocked_from)
            assert bool(escaped) == should, (name, level, escaped, err)
    targets.reset()


def test_minimum_level_is_enforced(monkeypatch):
    with pytest.raises(isolation.IsolationError, match="below the required"):
        isolation.resolve_level("rlimits", "seccomp")
    with pytest.raises(isolation.IsolationError, match="unknown isolation level"):
        isolation.resolve_level("auto", "chroot")
    fake = isolation.Capabilities(True, 0, "", {"landlock": "Landlock unavailable (test)"})
    monkeypatch.setattr(isolation, "probe", lambda: fake)
    assert isolation.resolve_level("auto", "seccomp") == "seccomp"
    with pytest.raises(isolation.IsolationError, match="Landlock unavailable"):
        isolation.resolve_level("auto", "namespace")


def test_worker_gets_no_secrets_and_sees_no_data_dir(tmp_path, targets):
    code = textwrap.dedent(f"""
        import os
        class P:
            def act(self, obs):
                assert "OPENAI_API_KEY" not in os.environ, "secret leaked"
                assert not os.path.exists({str(targets.ledger)!r}) or {BEST!r} != "namespace"
                return {{"tip": [1.0, 1.0], "lift": False}}
        def make_policy(**kw):
            return P()
    """)
    repo = tmp_path / "r"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "policy.py").write_text(code)
    git(repo, "add", "-A")
    git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "-m", "x")
    os.environ["OPENAI_API_KEY"] = "sk-secret"
    try:
        assert attempt(str(repo), "HEAD", tmp_path, targets) is None
    finally:
        del os.environ["OPENAI_API_KEY"]


def test_stale_scratch_of_a_killed_process_is_removed(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    stale = tmp_path / f"{SCRATCH_PREFIX}{dead}-abc"
    mine = tmp_path / f"{SCRATCH_PREFIX}{os.getpid()}-abc"
    stale.mkdir()
    mine.mkdir()
    (stale / "junk").write_text("x")
    assert remove_stale_scratch(tmp_path) == 1
    assert not stale.exists() and mine.exists()


def test_half_written_exports_of_a_killed_process_are_removed(tmp_path):
    old = tmp_path / ".0123456789ab-xyz"
    fresh = tmp_path / ".fedcba987654-xyz"
    done = tmp_path / "0123456789abcdef"
    for p in (old, fresh, done):
        p.mkdir()
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    assert remove_stale_exports(tmp_path) == 1
    assert not old.exists() and fresh.exists() and done.exists()

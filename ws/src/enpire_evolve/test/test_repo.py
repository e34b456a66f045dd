"""Agent trees and the shared repository survive an evolve node killed in the middle of a git
command: the lock files the killed git left behind are dropped when the node opens them again
(before, the agent whose push was cut off could never fetch again and its thread ended)."""

from __future__ import annotations

from enpire_evolve.repo import AgentTree, SharedRepo, git


def test_reopening_after_a_killed_git_drops_its_locks(tmp_path):
    shared = SharedRepo.create(tmp_path / "shared.git")
    tree = AgentTree.open(shared, tmp_path / "agent_0", "agent_0")
    tree.write("notes.md", "one\n")
    first = tree.commit("one")
    tree.publish()
    tree.fetch()
    # what `git push` / `git commit` leave when SIGKILLed mid-write
    left = [
        tmp_path / "agent_0/.git/refs/remotes/origin/agent_0.lock",
        tmp_path / "agent_0/.git/index.lock",
        tmp_path / "shared.git/refs/heads/agent_0.lock",
    ]
    for p in left:
        p.write_text("")

    shared = SharedRepo.create(tmp_path / "shared.git")  # the next evolve node starts
    tree = AgentTree.open(shared, tmp_path / "agent_0", "agent_0")
    assert not [p for p in left if p.exists()]
    assert tree.head() == first
    tree.write("notes.md", "two\n")
    second = tree.commit("two")
    tree.publish()
    tree.fetch()
    assert shared.rev("agent_0") == second
    assert git(tree.path, "rev-parse", "refs/remotes/origin/agent_0") == second

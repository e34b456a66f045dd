"""The agents' loop without a ROS graph: real git, real SQLite, real simulated episodes
(LocalLab runs gym-pusht in this process and agent code in the sandbox)."""

from __future__ import annotations

import json
import time

import pytest

from enpire_evolve.agents.base import Agent, Proposal
from enpire_evolve.agents.offline import OfflineAgent
from enpire_evolve.evolution import Evolution, EvolveConfig
from enpire_evolve.lab import LocalLab
from enpire_evolve.repo import POLICY_MODULE, git
from enpire_evolve.source_edit import SourceEditError, read_constants, set_constants


def _evolution(tmp_path, **kw) -> Evolution:
    cfg = EvolveConfig(**{"run_id": "t", "agents": 2, "screen_episodes": 6,
                          "confirm_episodes": 12, "confirm_chunk": 6, "wall_budget": 240,
                          "train_every": 3, **kw})  # fmt: skip
    evo = Evolution(cfg, LocalLab(tmp_path / "artifacts"), tmp_path, log=lambda m: logs.append(m))
    logs: list[str] = []
    evo.logs = logs  # shown by a failing assertion
    return evo


def test_source_edit_rewrites_only_the_constants():
    src = 'X = 1  # keep\nPARAMS = {"a": 1.0,\n          "b": 2.0}\n\ndef f():\n    return X\n'
    out = set_constants(src, {"PARAMS": {"a": 1.5, "b": 2.0}})
    assert read_constants(out, ("PARAMS", "X")) == {"PARAMS": {"a": 1.5, "b": 2.0}, "X": 1}
    assert out.startswith("X = 1  # keep\n") and out.endswith("def f():\n    return X\n")
    with pytest.raises(SourceEditError):
        set_constants(src, {"MISSING": 1})
    with pytest.raises(SourceEditError):
        read_constants("def (:", ("X",))


class _Follower(OfflineAgent):
    """An offline agent that, while its own branch solves nothing, waits for another agent to
    do better (so the test sees an adoption whatever the threads' timing)."""

    def propose(self, ctx):
        if ctx.parent_rate == 0.0:
            for _ in range(600):
                better = ctx.ledger.query(
                    "SELECT id FROM agent_steps WHERE run_id = ? AND agent_id != ? AND kept = 1"
                    " AND outcome = 'kept' AND success_rate >= 0.1",
                    (ctx.run_id, ctx.agent_id),
                )
                if better:
                    return None  # the host adopts that branch before the next step
                time.sleep(0.2)
        return super().propose(ctx)


def test_two_offline_agents_improve_and_one_adopts_the_others_branch(tmp_path):
    evo = _evolution(tmp_path)
    default = evo.make_agent
    evo.make_agent = lambda a, i: _Follower(a, seed=1) if i == 1 else default(a, i)
    out = evo.run()
    rows = evo.ledger.agent_steps("t")
    baseline = [r for r in rows if r["outcome"] == "baseline"]
    assert len(baseline) == 2 and all(r["success_rate"] == 0.0 for r in baseline), evo.logs
    best = max(r["success_rate"] for r in rows if r["kept"] and r["outcome"] != "confirmed")
    assert best > baseline[0]["success_rate"] + 0.5, rows
    # the best branch's code is the agent's own: written into its tree, no import of enpire
    top = max((r for r in rows if r["kept"] and r["outcome"] == "kept"),
              key=lambda r: r["success_rate"])  # fmt: skip
    code = git(evo.shared.path, "show", f"{top['commit_sha']}:{POLICY_MODULE}")
    assert "def plan_push" in code and "from enpire" not in code and "import enpire" not in code
    assert json.loads(top["details"])["move"]["kind"] in ("idea", "param", "train")
    adopted = [r for r in rows if r["outcome"] == "adopted"]
    assert adopted, "no agent adopted the other's branch"
    branches = evo.shared.branches()
    assert set(branches) >= {"main", "agent_0", "agent_1"}
    for r in adopted:  # the adopted commit is in the adopter's published history
        git(evo.shared.path, "merge-base", "--is-ancestor", r["commit_sha"],
            branches[r["agent_id"]])  # fmt: skip
    # kept experiments are commits whose message states hypothesis and result
    for r in rows:
        if r["outcome"] == "kept":
            msg = git(evo.shared.path, "log", "-1", "--format=%B", r["commit_sha"])
            assert r["hypothesis"][:40] in msg and "result:" in msg and "kept" in msg
    discarded = [r for r in rows if r["outcome"] == "discarded"]
    refs = git(evo.shared.path, "for-each-ref", "--format=%(objectname)", "refs/experiments")
    assert all(r["commit_sha"] in refs for r in discarded)
    # main is never written by the agents
    assert len(evo.shared.log("main")) == 1
    assert out["reason"] in ("goal", "wall-time budget of 240 s spent")
    if out["reason"] == "goal":
        conf = [r for r in rows if r["outcome"] == "confirmed"]
        assert conf and conf[0]["episodes"] == 12 and conf[0]["success_rate"] >= 0.99


class _Vandal(Agent):
    """Breaks its tree in a different way every step."""

    backend = "test"

    def __init__(self, agent_id):
        super().__init__(agent_id)
        self.n = 0

    def propose(self, ctx):
        self.n += 1
        if self.n == 1:
            ctx.tree.write(POLICY_MODULE, "def make_policy(:\n")
            return Proposal("syntax error", {"kind": "vandal"})
        if self.n == 2:
            (ctx.tree.path / "tests" / "test_pusht_policy.py").unlink()
            (ctx.tree.path / "policy" / "pusht_policy.py").unlink()
            return Proposal("delete the policy", {"kind": "vandal"})
        if self.n == 3:  # a test that tries to write outside the tree
            outside = ctx.tree.path.parent.parent / "shared.git" / "HEAD"
            ctx.tree.write(
                "tests/test_evil.py",
                f"def test_evil():\n    open({str(outside)!r}, 'w').write('x')\n",
            )
            return Proposal("overwrite the shared repository", {"kind": "vandal"})
        return None


def test_an_agent_that_breaks_its_tree_breaks_nothing_else(tmp_path):
    evo = _evolution(tmp_path, agents=1, wall_budget=120)
    evo.make_agent = lambda agent_id, i: _Vandal(agent_id)
    head_before = (evo.shared.path / "HEAD").read_text()
    evo.run()
    rows = evo.ledger.agent_steps("t")
    assert [r["outcome"] for r in rows] == ["baseline"] + ["tests_failed"] * 3
    assert "may not write" in json.loads(rows[3]["details"])["tests"]
    assert (evo.shared.path / "HEAD").read_text() == head_before
    branches = evo.shared.branches()
    assert branches["agent_0"] == branches["main"] == rows[0]["commit_sha"]
    tree = evo.run_dir / "agents" / "agent_0"
    assert read_constants((tree / POLICY_MODULE).read_text(), ("PARAMS",))


def test_a_restarted_run_resumes_from_the_ledger_and_git(tmp_path):
    first = _evolution(tmp_path, max_experiments=2, agents=1)
    first.run()
    rows = first.ledger.agent_steps("t")
    kept = [r for r in rows if r["kept"]][-1]
    assert len([r for r in rows if r["outcome"] in ("kept", "discarded")]) == 2
    again = _evolution(tmp_path, max_experiments=3, agents=1)
    again.run()
    rows2 = again.ledger.agent_steps("t")
    assert rows2[: len(rows)] == rows  # nothing finished was lost or redone
    new = rows2[len(rows) :]
    assert [r["outcome"] for r in new if r["outcome"] != "confirmed"] in (["kept"], ["discarded"])
    assert new[0]["parent_sha"] == kept["commit_sha"]  # built on the last kept commit
    assert not [r for r in new if r["outcome"] == "baseline"]


class _Unstartable(OfflineAgent):
    def __init__(self, agent_id, **kw):
        raise RuntimeError("backend 'nope' is not installed")


def test_an_agent_that_cannot_start_leaves_a_ledger_row_the_report_shows(tmp_path):
    from enpire_evolve.report import write_report

    evo = _evolution(tmp_path, agents=2, wall_budget=60)
    default = evo.make_agent
    evo.make_agent = lambda a, i: _Unstartable(a) if i == 0 else default(a, i)
    evo.run()
    assert evo.status["agent_0"].state == "failed"
    rows = evo.ledger.agent_steps("t", "agent_0")
    assert [r["outcome"] for r in rows] == ["agent_failed"], evo.logs
    assert "backend 'nope' is not installed" in rows[0]["hypothesis"]
    assert "RuntimeError" in json.loads(rows[0]["details"])["error"]
    others = evo.ledger.agent_steps("t", "agent_1")
    # the other agent went on (shown when not: its first row and the run's log)
    assert others and others[0]["outcome"] == "baseline", (others[:1], evo.logs)
    write_report(evo.ledger, "t", tmp_path / "report", tmp_path)
    md = (tmp_path / "report" / "t.md").read_text()
    assert "| agent_0 | agent_failed |" in md and "not installed" in md

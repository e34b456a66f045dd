"""The offline agent and what it starts from: the starter is the naive baseline with no import of
enpire's code, its ideas are source it writes into its own tree, its diagnosis reads recorded
trajectories, and a failed training is a result, not a stop (real git, real simulated episodes,
a real Train run through LocalLab)."""

from __future__ import annotations

import ast
import math
import types

import numpy as np
import pytest

from enpire_evolve.agents.base import AgentContext
from enpire_evolve.agents.offline import (
    IDEAS_DIR,
    OfflineAgent,
    idea_applied,
    load_ideas,
    trajectory_symptoms,
)
from enpire_evolve.lab import LocalLab
from enpire_evolve.repo import POLICY_MODULE, STARTER_DIR, AgentTree, SharedRepo
from enpire_evolve.source_edit import SourceEditError, apply_idea, read_constants


def _imports(path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_the_starter_and_the_ideas_import_nothing_of_enpire():
    files = [p for p in STARTER_DIR.rglob("*.py") if "__pycache__" not in p.parts]
    assert any(p.name == "pusht_policy.py" for p in files)
    for path in files:
        bad = {n for n in _imports(path) if n.startswith("enpire")}
        assert not bad, f"{path} imports {bad}"
    for path in IDEAS_DIR.glob("*.py"):
        assert _imports(path) <= {"math", "numpy"}, path


def _policy(source: str):
    mod = types.ModuleType("agent_policy")
    exec(compile(source, "pusht_policy.py", "exec"), mod.__dict__)
    return mod.make_policy()


def _success(source: str, seeds) -> int:
    from enpire_env.sim_cell import PushTCell
    from enpire_policy.episode import run_episode

    cell, policy = PushTCell(), _policy(source)
    return sum(run_episode(policy, s, cell, observe="state").success for s in seeds)


def test_ideas_written_into_the_starter_turn_it_into_a_working_pusher():
    start = (STARTER_DIR / POLICY_MODULE).read_text()
    ideas = load_ideas()
    assert set(ideas) >= {"contact_model", "push_length", "replan", "lift_over"}
    src = start
    for name in ("contact_model", "push_length", "replan"):
        assert not idea_applied(src, ideas[name])
        src, names = apply_idea(src, ideas[name]["source"])
        assert idea_applied(src, ideas[name]) and set(ideas[name]["replaces"]) <= set(names)
    # what the agent wrote is its own source: no import of enpire, and the baseline's untouched
    # parts (the policy class, make_policy) are still there byte for byte
    assert "from enpire" not in src and "import enpire" not in src
    for kept in ("class AgentPolicy", "def make_policy", "def approach"):
        start_part = start[start.index(kept) :].split("\n\n\n")[0]
        assert start_part in src
    params = read_constants(src, ("PARAMS",))["PARAMS"]
    assert params["standoff"] == 45.0 and params["angle_weight"] == 60.0  # merged, not replaced
    seeds = range(20)
    assert _success(start, seeds) == 0
    assert _success(src, seeds) >= 18


def test_apply_idea_refuses_what_it_cannot_place():
    src = "import numpy as np\n\nPARAMS = {'a': 1.0}\n\n\ndef f():\n    return 1\n"
    out, names = apply_idea(src, "def f():\n    return 2\n\n\ndef g():\n    return f()\n")
    assert names == ["f", "g"] and "return 2" in out and out.index("def g") < out.index("def f")
    with pytest.raises(SourceEditError):
        apply_idea(src, "print('side effect')\n")
    with pytest.raises(SourceEditError):
        apply_idea("X = 1\n", "PARAMS = {'b': 2}\n")  # no PARAMS to add to


def _trajectory(poses) -> np.ndarray:
    poses = np.asarray(poses, dtype=float)
    return np.column_stack([np.zeros((len(poses), 2)), poses])


def test_the_diagnosis_reads_what_went_wrong_from_a_trajectory():
    goal = (256.0, 256.0, math.pi / 4)
    n = 150
    # ends at the goal position but turned 90 degrees
    turned = [(256.0, 256.0, goal[2] + math.pi / 2)] * n
    assert "turned" in trajectory_symptoms(_trajectory(turned))
    # came within a few px of the goal pose, then went 60 px past it
    path = [(256.0 - 100 + k, 256.0, goal[2]) for k in range(101)]
    path += [(256.0 + k, 256.0, goal[2]) for k in range(60)]
    over = trajectory_symptoms(_trajectory(path))
    assert "overshoot" in over and "turned" not in over
    # pushed nowhere for the last 100 steps, 80 px short
    stuck = [(176.0 - max(50 - k, 0), 256.0, goal[2]) for k in range(n)]
    got = trajectory_symptoms(_trajectory(stuck))
    assert "stalled" in got and "far" in got and "overshoot" not in got
    assert trajectory_symptoms(_trajectory([goal] * n)) == []


def test_a_failed_training_is_a_result_the_agent_moves_on_from(tmp_path):
    shared = SharedRepo.create(tmp_path / "shared.git")
    tree = AgentTree.open(shared, tmp_path / "agent_0", "agent_0")
    src = (STARTER_DIR / POLICY_MODULE).read_text()
    for idea in load_ideas().values():  # every idea in: the next steps tune parameters
        src, _ = apply_idea(src, idea["source"])
    tree.write(POLICY_MODULE, src)
    parent = tree.commit("all ideas")
    history = [{"outcome": "kept", "details": "{}", "parent_sha": "", "kept": 1}] * 2
    ctx = AgentContext(
        agent_id="agent_0", tree=tree, lab=LocalLab(tmp_path / "artifacts"), parent=parent,
        parent_rate=0.9, last_failures={}, history=history, others=[],
        screen={"episodes": 4, "seed": 0}, goal_success=0.99,
    )  # fmt: skip
    # a budget no search can finish one candidate in: the Train goal fails
    agent = OfflineAgent("agent_0", train_every=2, train_budget=0.001)
    proposal = agent.propose(ctx)
    assert proposal is not None and proposal.move["kind"] == "param"
    assert "parameter search failed" in proposal.hypothesis and "306" in proposal.hypothesis
    assert tree.read(POLICY_MODULE) != src  # it still wrote its next experiment

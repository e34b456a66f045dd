"""The hostile-policy suite through the lab's own front doors: every route of
enpire_policy.containment, each committed in its own git repository, run through the Rollout
action and through a Train recipe (heuristic_search builds the policy from the same commit),
aimed at the rollout node's real data_dir and ledger. Each is refused: nothing is written, the
test's TCP server receives nothing, the episode ends as a policy error naming the reason, and
both nodes keep serving."""

from __future__ import annotations

import json
import sqlite3
import subprocess

import pytest
from action_msgs.msg import GoalStatus

from enpire_env.testing import NodeProcess, call_action, one_cell, rollout_node, running
from enpire_msgs.action import Rollout, Train
from enpire_msgs.msg import EpisodeResult, PolicyRef
from enpire_policy.containment import ROUTES, Targets
from enpire_rollout.rollout_core import RolloutErrorCode

pytestmark = pytest.mark.xdist_group("containment_graph")
EXPECTED = {"memory": "memory", "endless_loop": "timeout", "nan_action": "action"}


@pytest.fixture(scope="module")
def lab(ros_domain_module, ros_context_module, tmp_path_factory):
    data = tmp_path_factory.mktemp("containment-data")
    procs = {
        **one_cell(8.0),
        "rollout": rollout_node(
            data, 8.0, "reset_mode:=teleport", "step_timeout:=2.0", "max_steps:=20"
        ),
        "train": NodeProcess(
            "enpire_policy.train_node", ["-p", f"artifacts_dir:={data / 'artifacts'}"]
        ),
    }
    with running(procs):
        yield procs, data


def rollout_goal(ref: PolicyRef) -> Rollout.Goal:
    return Rollout.Goal(policy=ref, task="pusht", num_episodes=1, seed=5, agent_id="hostile")


def run_builtin(context, name: str) -> None:
    """One episode of a built-in policy; it must succeed as a goal."""
    (c,) = call_action(
        context, Rollout, "/rollout", [rollout_goal(PolicyRef(name=name))], timeout=120
    )
    assert c.status == GoalStatus.STATUS_SUCCEEDED, c.result.error_msg


def commit_route(root, name: str, t: Targets) -> PolicyRef:
    repo = root / f"agent-{name}"
    repo.mkdir()
    (repo / "policy.py").write_text(ROUTES[name].source(t))
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "-A"],
        ["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "-m", name],
    ):
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)
    sha = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    return PolicyRef(agent_id="hostile", repo_path=str(repo), commit=sha, module="policy")


@pytest.fixture(scope="module")
def targets(lab, ros_context_module, tmp_path_factory):
    _procs, data = lab
    # a first goal creates the ledger and data_dir's folders, so the targets are the real ones
    run_builtin(ros_context_module, "naive")
    (data / "artifacts").mkdir(exist_ok=True)  # where the train node writes
    t = Targets.create(
        tmp_path_factory.mktemp("targets"), ledger=data / "ledger.sqlite", data_dir=data
    )
    yield t
    t.close()


@pytest.mark.parametrize("name", sorted(ROUTES))
def test_route_is_refused_through_rollout_and_train(
    name, lab, targets, ros_context_module, tmp_path
):
    _procs, data = lab
    targets.reset()
    ref = commit_route(tmp_path, name, targets)
    (c,) = call_action(ros_context_module, Rollout, "/rollout", [rollout_goal(ref)], timeout=120)
    assert targets.escaped() == "", f"{name} escaped through Rollout: {targets.escaped()}"
    assert c.result.error_code == RolloutErrorCode.POLICY_ERROR, c.result.error_msg
    (ep,) = c.result.episodes
    assert ep.outcome == EpisodeResult.OUTCOME_POLICY_ERROR
    kind = EXPECTED.get(name, "forbidden")
    assert ep.error_msg.startswith(f"{kind}:"), (ep.error_msg, c.result.error_msg)  # the reason
    assert ep.recording_path, "a fleet episode names its recording"

    hp = {"iterations": 1, "population": 1, "episodes": 1, "max_steps": 5}
    g = Train.Goal(
        recipe="heuristic_search",
        policy=ref,
        task="pusht",
        hyperparameters=json.dumps(hp),
        time_budget=120.0,
    )
    (tc,) = call_action(ros_context_module, Train, "/train", [g], timeout=180)
    assert targets.escaped() == "", f"{name} escaped through Train: {targets.escaped()}"
    assert tc.status == GoalStatus.STATUS_ABORTED
    assert tc.result.error_code in (Train.Result.POLICY_ERROR, Train.Result.POLICY_LOAD_FAILED)
    assert f"{kind}:" in tc.result.error_msg, tc.result.error_msg


def test_both_nodes_keep_serving_and_the_ledger_is_intact(lab, targets, ros_context_module):
    _procs, data = lab
    run_builtin(ros_context_module, "heuristic")
    con = sqlite3.connect(data / "ledger.sqlite")
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()

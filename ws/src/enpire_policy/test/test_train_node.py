"""The Train action over a real ROS graph: each recipe on a tiny budget, artifacts loaded back,
bad goals and bad policy code answered with error codes while the node keeps serving."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from action_msgs.msg import GoalStatus

from enpire_env.sim_cell import PushTCell
from enpire_env.testing import NodeProcess, call_action
from enpire_msgs.action import Train
from enpire_msgs.msg import PolicyRef
from enpire_policy.artifacts import load_manifest, load_policy
from enpire_policy.episode import run_episode
from enpire_policy.heuristic import HeuristicPushT
from enpire_policy.lerobot_dataset import LeRobotDatasetWriter
from enpire_policy.recipes.base import TrainErrorCode

pytestmark = pytest.mark.xdist_group("train_node_graph")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "demos"
    w = LeRobotDatasetWriter(root, image_size=64)
    cell, pol = PushTCell(), HeuristicPushT()
    for seed in range(3):
        r = run_episode(pol, seed, cell, record=True, record_image_size=64)
        w.add_episode(r.to_episode_data({"policy": "heuristic"}))
    return str(root)


@pytest.fixture(scope="module")
def node(ros_domain_module, ros_context_module, tmp_path_factory):
    arts = tmp_path_factory.mktemp("artifacts")
    p = NodeProcess("enpire_policy.train_node", ["-p", f"artifacts_dir:={arts}"])
    try:
        assert p.wait_for_output("ready"), p.output
        yield p, arts
    finally:
        p.stop()
        print(p.output[-3000:])


def goal(recipe, hp=None, **kw) -> Train.Goal:
    g = Train.Goal(recipe=recipe, task="pusht", hyperparameters=json.dumps(hp or {}))
    g.policy = kw.pop("policy", PolicyRef(name="heuristic"))
    for k, v in kw.items():
        setattr(g, k, v)
    return g


TINY = {
    "heuristic_search": ({"iterations": 2, "population": 2, "episodes": 1}, False),
    "bc_mlp": ({"epochs": 2}, True),
    "bc_cnn": ({"epochs": 1, "image_size": 32}, True),
    "residual_rl": ({"iterations": 1, "pairs": 1, "episodes": 1}, False),
}


@pytest.mark.parametrize("recipe", sorted(TINY))
def test_each_recipe_trains_and_its_artifact_loads(recipe, node, dataset, ros_context_module):
    _p, arts = node
    hp, needs_data = TINY[recipe]
    g = goal(recipe, hp, datasets=[dataset] if needs_data else [])
    (call,) = call_action(ros_context_module, Train, "/train", [g], timeout=240)
    r = call.result
    assert call.status == GoalStatus.STATUS_SUCCEEDED, r.error_msg
    assert r.error_code == 0 and Path(r.artifact_path).parent.parent == Path(arts)
    assert call.feedback and call.feedback[-1].progress == pytest.approx(1.0)
    m = load_manifest(r.artifact_path)
    assert m["recipe"] == recipe and m["data"]["datasets"] == g.datasets
    assert json.loads(r.metrics) == json.loads(json.dumps(m["metrics"]))
    # artifacts are never overwritten: files are read-only
    assert all(not f.stat().st_mode & 0o222 for f in Path(r.artifact_path).iterdir())
    policy = load_policy(r.artifact_path)
    observe = "camera" if policy.metadata().get("needs_image") else "state"
    out = run_episode(policy, 5, PushTCell(), max_steps=5, observe=observe)
    assert out.error == "" and out.steps == 5


def test_bad_goals_get_codes_and_the_node_keeps_serving(node, ros_context_module, tmp_path):
    goals = [
        goal("no_such_recipe"),
        goal("bc_mlp", {"learning_rate": -0.1}, datasets=["/nonexistent"]),
        goal("bc_mlp", {}),  # no data selected
        goal("bc_mlp", {}, datasets=[str(tmp_path)]),  # not a dataset
        goal("heuristic_search", {"iterations": 0}),
        goal("heuristic_search", {"bogus": 1}),
        Train.Goal(recipe="residual_rl", task="pusht", hyperparameters="{not json"),
        goal("heuristic_search", policy=PolicyRef(name="no_such_builtin")),
    ]
    calls = call_action(ros_context_module, Train, "/train", goals, timeout=120)
    codes = [c.result.error_code for c in calls]
    assert codes == [
        TrainErrorCode.UNKNOWN_RECIPE,
        TrainErrorCode.INVALID_HYPERPARAMETERS,
        TrainErrorCode.EMPTY_DATA,
        TrainErrorCode.EMPTY_DATA,
        TrainErrorCode.INVALID_HYPERPARAMETERS,
        TrainErrorCode.INVALID_HYPERPARAMETERS,
        TrainErrorCode.INVALID_HYPERPARAMETERS,
        TrainErrorCode.POLICY_LOAD_FAILED,
    ], [c.result.error_msg for c in calls]
    assert all(c.status == GoalStatus.STATUS_ABORTED and c.result.error_msg for c in calls)
    assert "learning_rate" in calls[1].result.error_msg


def _agent_repo(tmp_path, code: str) -> tuple[str, str]:
    repo = tmp_path / "agent"
    repo.mkdir(parents=True)
    (repo / "pusht_policy.py").write_text(code)
    for args in (["init", "-q"], ["add", "-A"],
                 ["-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "p"]):  # fmt: skip
        subprocess.run(["git", "-C", str(repo), *args], check=True)
    sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], check=True,
                         capture_output=True, text=True).stdout.strip()  # fmt: skip
    return str(repo), sha


def test_agent_policy_code_is_searched_and_failures_are_contained(
    node, ros_context_module, tmp_path
):
    good = (
        "from enpire_policy.heuristic import HeuristicPushT\n\n"
        "def make_policy(params=None):\n    return HeuristicPushT(params)\n"
    )
    repo, sha = _agent_repo(tmp_path / "good", good)
    ref = PolicyRef(name="mine", agent_id="a0", repo_path=repo, commit=sha,
                    module="pusht_policy.py")  # fmt: skip
    bad_repo, bad_sha = _agent_repo(tmp_path / "bad", good.replace("return Heur", "return Heur("))
    crash = good.replace("return HeuristicPushT(params)", "return Crash()") + (
        "\nclass Crash:\n    def reset(self, seed):\n        pass\n\n"
        "    def act(self, obs):\n        return {'tip': [1, 2, 3]}\n"
    )
    crash_repo, crash_sha = _agent_repo(tmp_path / "crash", crash)
    hp = {"iterations": 1, "population": 1, "episodes": 1}
    calls = call_action(
        ros_context_module,
        Train,
        "/train",
        [
            goal("heuristic_search", hp, policy=ref),
            goal(
                "heuristic_search",
                hp,
                policy=PolicyRef(repo_path=bad_repo, commit=bad_sha, module="pusht_policy.py"),
            ),
            goal(
                "heuristic_search",
                hp,
                policy=PolicyRef(repo_path=crash_repo, commit=crash_sha, module="pusht_policy"),
            ),
        ],  # fmt: skip
        timeout=180,
    )
    assert calls[0].status == GoalStatus.STATUS_SUCCEEDED, calls[0].result.error_msg
    assert load_manifest(calls[0].result.artifact_path)["policy"]["commit"] == sha
    assert calls[1].result.error_code == TrainErrorCode.POLICY_LOAD_FAILED
    assert "pusht_policy.py:4" in calls[1].result.error_msg
    assert calls[2].result.error_code == TrainErrorCode.POLICY_ERROR
    assert "pusht_policy.py" in calls[2].result.error_msg


def test_cancel_a_running_training(node, ros_context_module):
    g = goal("residual_rl", {"iterations": 50, "pairs": 2, "episodes": 2})
    (call,) = call_action(ros_context_module, Train, "/train", [g], timeout=120,
                          cancel_after_feedback=1)  # fmt: skip
    assert call.status == GoalStatus.STATUS_CANCELED
    assert call.result.error_code == TrainErrorCode.CANCELED and call.result.artifact_path == ""

"""The rollout service without ROS: an in-process fleet of simulated cells, real sandboxed
policy workers, a real ledger and datasets."""

from __future__ import annotations

import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from enpire_policy.lerobot_dataset import read_episodes
from enpire_policy.policy_ref import PolicyRef
from enpire_rollout.ledger import Ledger
from enpire_rollout.rollout_core import RolloutError, RolloutErrorCode, RolloutRequest
from enpire_rollout.rollout_service import RolloutService, ServiceConfig, SimRobot


def _request(policy: PolicyRef, n: int, seed: int = 0, **kw) -> RolloutRequest:
    args = dict(task="pusht", num_episodes=n, robot_ids=[], num_robots=0, time_budget=0.0,
                seed=seed, agent_id="a")  # fmt: skip
    args.update(kw)
    return RolloutRequest(policy, **args)


@pytest.fixture
def service(tmp_path):
    robots = {r: SimRobot(r) for r in ("robot_0", "robot_1")}
    cfg = ServiceConfig(max_steps=120, video_size=16, min_episode_wall=0.0)
    svc = RolloutService(robots, Ledger(tmp_path / "ledger.sqlite"), tmp_path, cfg)
    yield svc
    svc.close()


def test_a_goal_runs_on_every_robot_and_everything_is_recorded(service, tmp_path):
    progress = []
    run = service.submit(_request(PolicyRef(name="heuristic"), 4, seed=10))
    out = service.wait(run, progress.append)
    assert out.error_code == RolloutErrorCode.NONE, out.error_msg
    assert len(out.episodes) == 4 and sorted(r.seed for r in out.episodes) == [10, 11, 12, 13]
    assert {r.robot_id for r in out.episodes} == {"robot_0", "robot_1"}
    assert progress and progress[-1].episodes_total == 4
    rows = Ledger(tmp_path / "ledger.sqlite").episodes()
    assert {r["id"] for r in rows} == {r.episode_id for r in out.episodes}
    for rec in out.episodes:
        assert rec.outcome in ("success", "failure") and rec.steps > 0
        assert rec.recording_path.startswith(rec.dataset) and rec.dataset_index >= 0
    eps = read_episodes(out.episodes[0].dataset)
    assert len(eps) == 4 and all(e["length"] > 0 for e in eps)


def git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout.strip()  # fmt: skip


def test_agent_code_errors_come_back_with_their_traceback(service, tmp_path):
    repo = tmp_path / "agent"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "policy.py").write_text(
        textwrap.dedent("""
        class Policy:
            def reset(self, seed):
                pass

            def act(self, obs):
                return self.plan(obs)

            def plan(self, obs):
                return {"tip": [obs["step"] // 0, 0.0]}


        def make_policy():
            return Policy()
    """)
    )
    git(repo, "add", "-A")
    git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "-m", "p")
    run = service.submit(_request(PolicyRef(repo_path=str(repo), module="policy"), 2))
    out = service.wait(run)
    assert out.error_code == RolloutErrorCode.POLICY_ERROR
    for rec in out.episodes:
        assert rec.outcome == "policy_error"
        assert "ZeroDivisionError" in rec.error and "plan" in rec.error  # the traceback


def test_bad_goals_are_refused_with_codes(service):
    with pytest.raises(RolloutError) as e:
        service.submit(_request(PolicyRef(name="nope"), 1))
    assert e.value.code == RolloutErrorCode.UNKNOWN_POLICY
    with pytest.raises(RolloutError) as e:
        service.submit(_request(PolicyRef(name="naive"), 1, robot_ids=["robot_9"]))
    assert e.value.code == RolloutErrorCode.UNKNOWN_ROBOT


def test_cancel_stops_the_goal(service):
    run = service.submit(_request(PolicyRef(name="naive"), 50))
    out = service.wait(run, canceled=lambda: True)
    assert out.error_code == RolloutErrorCode.CANCELED and len(out.episodes) < 50


def test_a_new_policy_finds_its_workers_started_before_robots_switch(tmp_path):
    robots = {r: SimRobot(r, time_scale=5.0) for r in ("robot_0", "robot_1")}
    cfg = ServiceConfig(max_steps=60, video_size=0, min_episode_wall=0.0)
    svc = RolloutService(robots, Ledger(tmp_path / "ledger.sqlite"), tmp_path, cfg)
    try:
        first = svc.submit(_request(PolicyRef(name="heuristic"), 4, seed=1))
        deadline = time.monotonic() + 60
        while len(svc._workers) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)  # both robots run the first policy (1.2 s per episode)
        # enough episodes that the robot whose first-policy episodes end last still gets some
        # (with 2, a robot that finished early could run both while the other was still busy)
        second = svc.submit(_request(PolicyRef(name="naive"), 6, seed=5))
        # both robots will switch to the second policy: two spare workers start meanwhile
        spares = list(svc._spares[PolicyRef(name="naive").key()])
        assert len(spares) == 2
        for fut in spares:
            assert fut.result(timeout=60).proc.poll() is None
        assert svc.wait(first).error_code == RolloutErrorCode.NONE
        out = svc.wait(second)
        assert out.error_code == RolloutErrorCode.NONE, out.error_msg
        assert {r.robot_id for r in out.episodes} == {"robot_0", "robot_1"}
        # every worker the robots used was a spare (a robot's own would log as robot_N)
        logs = sorted(p.name for p in (tmp_path / "logs").iterdir())
        assert [n for n in logs if n.startswith("robot_")] == [], logs
        assert "naive-policy.log" in logs, logs  # its spares' log
        assert not svc._spares
    finally:
        svc.close()
    assert all(f.result().proc is None or f.result().proc.poll() is not None for f in spares)


def _pids(svc) -> dict:
    return {r: pol.proc.pid for r, (_k, pol) in svc._workers.items() if pol.proc is not None}


def test_workers_stay_warm_for_the_next_goal_of_a_policy_whose_code_cannot_change(tmp_path):
    robots = {r: SimRobot(r, time_scale=5.0) for r in ("robot_0", "robot_1")}
    cfg = ServiceConfig(max_steps=20, video_size=0, min_episode_wall=0.0, worker_keep=2.0)
    svc = RolloutService(robots, Ledger(tmp_path / "ledger.sqlite"), tmp_path, cfg)
    repo = tmp_path / "agent"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "policy.py").write_text(
        "class P:\n    def reset(self, seed):\n        pass\n\n"
        "    def act(self, obs):\n        return {'tip': [256.0, 256.0]}\n\n\n"
        "def make_policy():\n    return P()\n"
    )
    git(repo, "add", "-A")
    git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "-m", "p")
    sha = git(repo, "rev-parse", "HEAD")
    try:
        for ref, kept in [
            (PolicyRef(name="heuristic"), True),
            (PolicyRef(repo_path=str(repo), module="policy", commit=sha), True),
            (PolicyRef(repo_path=str(repo), module="policy", commit="main"), False),  # moves
            (PolicyRef(repo_path=str(repo), module="policy"), False),  # the working tree
        ]:
            out = svc.wait(svc.submit(_request(ref, 2, seed=3)))
            assert out.error_code == RolloutErrorCode.NONE, out.error_msg
            warm = _pids(svc)
            assert bool(warm) == kept, (ref, warm)
            if not kept:
                continue
            out = svc.wait(svc.submit(_request(ref, 2, seed=9)))
            assert out.error_code == RolloutErrorCode.NONE, out.error_msg
            assert _pids(svc) == warm  # the same processes served the second goal
            deadline = time.monotonic() + 30
            while _alive(warm.values()) and time.monotonic() < deadline:
                time.sleep(0.1)  # no goal within worker_keep: they close
            assert not svc._workers and not _alive(warm.values())
    finally:
        svc.close()


def _alive(pids) -> list[int]:
    def state(pid: int) -> str:
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return "gone"

    return [pid for pid in pids if state(pid) not in ("gone", "Z")]


class _SilentRobot(SimRobot):
    """A cell that never publishes; ``on_wait`` runs when an episode waits for it."""

    def __init__(self, robot_id, on_wait):
        super().__init__(robot_id)
        self.on_wait = on_wait

    def wait_alive(self, timeout: float) -> bool:
        self.on_wait()
        return False


@pytest.mark.parametrize("stopping", [False, True])
def test_a_silent_cell_is_an_error_unless_the_process_is_stopping(tmp_path, stopping):
    state = {"running": True}
    logs = []

    def on_wait():  # the process's shutdown began while the episode waited for its cell
        state["running"] = not stopping

    svc = RolloutService(
        {"robot_0": _SilentRobot("robot_0", on_wait)},
        Ledger(tmp_path / "ledger.sqlite"),
        tmp_path,
        ServiceConfig(max_steps=20, video_size=0, min_episode_wall=0.0),
        lambda level, msg: logs.append((level, msg)),
        running=lambda: state["running"],
    )
    try:
        run = svc.submit(_request(PolicyRef(name="heuristic"), 1))
        deadline = time.monotonic() + 30
        while not run.records and time.monotonic() < deadline:
            time.sleep(0.05)
        rec = run.records[0]  # (a running fleet tries the episode again)
        assert rec.outcome == "interrupted" and "not publishing" in rec.error
        errors = [m for level, m in logs if level == "error"]
        if stopping:
            assert errors == [] and rec.error.startswith("the rollout service stopped")
        else:
            assert any("not publishing joint states" in m for m in errors), logs
    finally:
        svc.close()

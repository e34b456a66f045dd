"""evolve/status: the node's status dictionary through enpire_msgs/EvolveStatus and back."""

from enpire_evolve.status_msg import from_msg, to_msg


def test_status_round_trip():
    status = {
        "run_id": "night", "state": "done", "wall_used": 421.5, "wall_budget": 780.0,
        "outcome": {"reason": "goal", "agent_id": "agent_1", "commit": "abc123",
                    "confirm": {"successes": 99, "episodes": 100}},
        "report": {"html": "/data/reports/night.html", "markdown": "/data/reports/night.md"},
        "agents": [{"agent_id": "agent_0", "state": "done", "experiments": 4,
                    "best_rate": 0.9, "parent": "", "message": "waiting"},
                   {"agent_id": "agent_1", "state": "done", "experiments": 5,
                    "best_rate": 1.0, "parent": "def456", "message": ""}],
    }  # fmt: skip
    msg = to_msg(status)
    assert msg.outcome_reason == "goal" and msg.report_html == "/data/reports/night.html"
    assert [a.agent_id for a in msg.agents] == ["agent_0", "agent_1"]
    assert msg.agents[1].experiments == 5 and msg.agents[1].best_rate == 1.0
    assert from_msg(msg) == status


def test_a_running_status_has_no_outcome_yet():
    msg = to_msg({"run_id": "r", "state": "running", "wall_used": 3.0, "wall_budget": 0,
                  "outcome": {}, "report": {}, "agents": []})  # fmt: skip
    assert msg.outcome_reason == "" and msg.report_html == "" and from_msg(msg)["outcome"] == {}

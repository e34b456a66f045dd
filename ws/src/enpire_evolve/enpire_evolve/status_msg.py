"""evolve/status between the node's status dictionary and enpire_msgs/EvolveStatus."""

from __future__ import annotations

import json


def to_msg(status: dict, stamp=None):
    from enpire_msgs.msg import AgentState, EvolveStatus

    msg = EvolveStatus(
        run_id=str(status.get("run_id", "")),
        state=str(status.get("state", "")),
        wall_used=float(status.get("wall_used") or 0.0),
        wall_budget=float(status.get("wall_budget") or 0.0),
        outcome_reason=str((status.get("outcome") or {}).get("reason", "")),
        report_html=str((status.get("report") or {}).get("html", "") or ""),
        details_json=json.dumps(
            {"outcome": status.get("outcome") or {}, "report": status.get("report") or {}},
            default=str,
        ),
    )
    for a in status.get("agents", []):
        msg.agents.append(
            AgentState(
                agent_id=str(a.get("agent_id", "")), state=str(a.get("state", "")),
                experiments=int(a.get("experiments", 0)),
                best_rate=float(a.get("best_rate", 0.0)), parent=str(a.get("parent", "")),
                message=str(a.get("message", "")),
            )
        )  # fmt: skip
    if stamp is not None:
        msg.header.stamp = stamp
    return msg


def from_msg(msg) -> dict:
    """The status as a dictionary (what the CLI and benchmarks read)."""
    details = json.loads(msg.details_json or "{}")
    return {
        "run_id": msg.run_id,
        "state": msg.state,
        "wall_used": msg.wall_used,
        "wall_budget": msg.wall_budget,
        "outcome": details.get("outcome") or {},
        "report": details.get("report") or {},
        "agents": [
            {
                "agent_id": a.agent_id,
                "state": a.state,
                "experiments": a.experiments,
                "best_rate": a.best_rate,
                "parent": a.parent,
                "message": a.message,
            }
            for a in msg.agents
        ],  # fmt: skip
    }

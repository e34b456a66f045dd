"""What every agent backend implements, and what the host hands it each step."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

from enpire_evolve.lab import Lab
from enpire_evolve.repo import AgentTree


@dataclass
class AgentContext:
    """The state of an agent's lineage when it picks its next experiment."""

    agent_id: str
    tree: AgentTree
    lab: Lab
    parent: str  # sha the next experiment builds on
    parent_rate: float  # its screening success rate
    last_failures: dict  # failure summary of the parent's screening rollout
    history: list[dict]  # this agent's ledger rows (agent_steps), oldest first
    others: list[dict]  # the other agents' kept rows
    screen: dict  # {"episodes": n, "seed": s}: the screening set every candidate faces
    goal_success: float
    notes_dir: str = ""
    ledger: object = None  # enpire_rollout.ledger.Ledger (read-only use)
    run_id: str = ""


@dataclass
class Proposal:
    """An experiment the agent has written into its tree (not yet committed)."""

    hypothesis: str
    move: dict = field(default_factory=dict)  # what was changed, machine-readable
    artifact: str = ""  # a trained artifact the rollout should load instead of the code alone


class AgentPausedError(RuntimeError):
    """The agent cannot go on for now (e.g. its LLM endpoint is down); the host waits and
    reports it, the other agents go on."""


class Agent(abc.ABC):
    backend = "agent"

    def __init__(self, agent_id: str):
        self.agent_id = agent_id

    @abc.abstractmethod
    def propose(self, ctx: AgentContext) -> Proposal | None:
        """Edit ``ctx.tree`` into the next experiment and say why; None = nothing to try."""

    def close(self) -> None:  # noqa: B027 (optional)
        pass

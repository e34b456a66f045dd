"""The built-in offline agent: no model, real code edits.

It reads its lineage's last failure summary and its own history from the ledger, then writes
one change into ``policy/pusht_policy.py``:

- while the lineage solves less than half the screening set, it tries strategies it has not
  tried (``STRATEGY`` and that strategy's ``DEFAULTS`` as ``PARAMS``);
- otherwise it hill-climbs ``PARAMS``: one parameter up or down by a factor, preferring the
  direction that last worked and avoiding moves that already failed from the same parent;
- now and then (``train_every``) it asks the Train action for a cross-entropy search around
  the current parameters and writes the best ones it found into the source.

Agents differ by seed (the order in which they try things), so a fleet of them explores
different branches; the host lets them adopt each other's better branches.
"""

from __future__ import annotations

import json
import random

from enpire_evolve.agents.base import Agent, AgentContext, Proposal
from enpire_evolve.repo import POLICY_MODULE
from enpire_evolve.source_edit import SourceEditError, read_constants, set_constants

FACTORS = (1.5, 1 / 1.5)


class OfflineAgent(Agent):
    backend = "offline"

    def __init__(self, agent_id: str, seed: int = 0, train_every: int = 4,
                 train_budget: float = 60.0):  # fmt: skip
        super().__init__(agent_id)
        self.rng = random.Random(f"{agent_id}:{seed}")
        self.train_every = train_every
        self.train_budget = train_budget

    # --- what was tried ------------------------------------------------------------------
    @staticmethod
    def _moves(history: list[dict], parent: str | None = None) -> list[dict]:
        out = []
        for row in history:
            details = json.loads(row.get("details") or "{}")
            move = details.get("move")
            if move and (parent is None or row.get("parent_sha") == parent):
                out.append(dict(move, kept=bool(row.get("kept"))))
        return out

    def propose(self, ctx: AgentContext) -> Proposal | None:
        try:
            src = ctx.tree.read(POLICY_MODULE)
            consts = read_constants(src, ("STRATEGY", "PARAMS", "DEFAULTS"))
        except (OSError, SourceEditError):  # not the file this agent knows how to edit
            return None
        strategy = consts.get("STRATEGY")
        params = dict(consts.get("PARAMS") or {})
        defaults = consts.get("DEFAULTS") or {}
        moves = [m for m in self._moves(ctx.history) if m["kind"] == "strategy"]
        tried = {m["strategy"] for m in moves} | {m["from"] for m in moves}
        untried = [s for s in defaults if s != strategy and s not in tried]
        fs = ctx.last_failures or {}
        steps = sum(1 for r in ctx.history if r.get("outcome") in ("kept", "discarded"))
        if ctx.parent_rate < 0.5 and untried:
            new = self.rng.choice(sorted(untried))
            text = set_constants(src, {"STRATEGY": new, "PARAMS": dict(defaults[new])})
            ctx.tree.write(POLICY_MODULE, text)
            why = (f"{strategy} solves {ctx.parent_rate:.0%} of the screening set "
                   f"({self._describe(fs)}); try the {new} strategy")  # fmt: skip
            return Proposal(why, {"kind": "strategy", "strategy": new, "from": strategy})
        numeric = sorted(k for k, v in params.items() if isinstance(v, (int, float)))
        if not numeric:
            return None
        if self.train_every and steps and steps % self.train_every == 0:
            return self._train(ctx, src, strategy, params, numeric)
        key, factor = self._pick_mutation(ctx, numeric)
        old = float(params[key])
        params[key] = round(old * factor, 4)
        ctx.tree.write(POLICY_MODULE, set_constants(src, {"PARAMS": params}))
        way = "raise" if factor > 1 else "lower"
        why = (f"{strategy} at {ctx.parent_rate:.0%} ({self._describe(fs)}); {way} {key} "
               f"{old:g} -> {params[key]:g}")  # fmt: skip
        return Proposal(why, {"kind": "param", "strategy": strategy, "key": key,
                              "factor": factor, "old": old, "new": params[key]})  # fmt: skip

    def _pick_mutation(self, ctx: AgentContext, numeric: list[str]) -> tuple[str, float]:
        here = self._moves(ctx.history, ctx.parent)
        failed = {(m["key"], m["factor"]) for m in here if m["kind"] == "param" and not m["kept"]}
        kept = [m for m in self._moves(ctx.history) if m["kind"] == "param" and m["kept"]]
        options = [(k, f) for k in numeric for f in FACTORS if (k, f) not in failed]
        if not options:  # everything failed from this parent: smaller steps
            return self.rng.choice(numeric), self.rng.choice((1.2, 1 / 1.2))
        if kept and (kept[-1]["key"], kept[-1]["factor"]) in options and self.rng.random() < 0.6:
            return kept[-1]["key"], kept[-1]["factor"]  # momentum: what worked last
        return self.rng.choice(options)

    def _train(self, ctx, src, strategy, params, numeric) -> Proposal | None:
        space = {k: [float(params[k]), max(abs(params[k]) * 0.3, 1e-3), 0.0,
                     max(abs(params[k]) * 4, 1.0)] for k in numeric}  # fmt: skip
        hp = {"iterations": 2, "population": 6, "episodes": 6, "space": space,
              "seed": self.rng.randrange(1 << 30)}  # fmt: skip
        ref = {"name": f"{self.agent_id}@{ctx.parent[:8]}", "agent_id": self.agent_id,
               "repo_path": str(ctx.tree.path), "commit": ctx.parent,
               "module": POLICY_MODULE}  # fmt: skip
        res = ctx.lab.train("heuristic_search", ref, hp, self.train_budget, self.agent_id)
        found = (res.metrics or {}) if not res.error_code else {}
        best = None
        if res.artifact:
            from enpire_policy.artifacts import load_manifest

            best = (load_manifest(res.artifact).get("load") or {}).get("factory_kwargs", {})
            best = best.get("params")
        if not best:
            return None
        params.update({k: round(float(v), 4) for k, v in best.items() if k in params})
        ctx.tree.write(POLICY_MODULE, set_constants(src, {"PARAMS": params}))
        why = (f"{strategy} at {ctx.parent_rate:.0%}; a cross-entropy search around the current "
               f"parameters scored {found.get('best_success_rate', 0):.0%} on its own seeds: "
               f"adopt its parameters")  # fmt: skip
        return Proposal(why, {"kind": "train", "strategy": strategy, "artifact": res.artifact})

    @staticmethod
    def _describe(fs: dict) -> str:
        if not fs:
            return "no failures recorded yet"
        outcomes = fs.get("outcomes") or {}
        fail = {k: v for k, v in outcomes.items() if k != "success"}
        parts = [f"{v} {k}" for k, v in sorted(fail.items())] or ["no failures"]
        if fs.get("mean_final_reward_of_failures") is not None:
            parts.append(f"failures end at {fs['mean_final_reward_of_failures']:.2f} coverage")
        return ", ".join(parts)

"""The built-in offline agent: a scripted stand-in for a coding agent. No model; real code edits.

It has a small library of ideas (``agents/ideas/*.py``): each is source code — functions,
constants and the parameters they need — that it writes into its own ``policy/pusht_policy.py``
(a definition of the same name is replaced, a new one added). Each step it:

1. diagnoses its parent's failures from the recorded episodes (the block's trajectory in each
   failed episode's dataset): ended turned away from the goal, overshot a pose it had nearly
   reached, stalled, or ended far away;
2. applies the idea that cures the most frequent symptom and is not yet in its code (ties and
   the order of equally good ideas depend on its seed, so two agents explore differently),
   never one that already failed from the same parent;
3. with no idea left, hill-climbs ``PARAMS`` (one parameter up or down by a factor, preferring
   the direction that last worked), and every ``train_every``-th step asks the Train action for a
   cross-entropy search around its current parameters. A training that fails or runs out of
   budget is a result it reports and moves on from, never a reason to stop.

Nothing it writes imports enpire: the code that wins is in the agent's own tree.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

from enpire_evolve.agents.base import Agent, AgentContext, Proposal
from enpire_evolve.repo import POLICY_MODULE
from enpire_evolve.source_edit import (
    SourceEditError,
    apply_idea,
    parse,
    read_constants,
    set_constants,
)

FACTORS = (1.5, 1 / 1.5)
IDEAS_DIR = Path(__file__).resolve().parent / "ideas"
PUSHT_GOAL = (256.0, 256.0, math.pi / 4)  # gym-pusht's fixed goal pose
ANGLE_PX = 60.0  # px of pose error one radian of turn counts as, for the diagnosis
SYMPTOMS = ("turned", "overshoot", "stalled", "far")


def load_ideas(folder: Path = IDEAS_DIR) -> dict[str, dict]:
    """The idea library: name -> {"source", "title", "replaces", "requires", "cures"}."""
    out = {}
    for path in sorted(folder.glob("*.py")):
        src = path.read_text()
        meta = read_constants(src, ("IDEA",)).get("IDEA")
        if meta:
            out[path.stem] = {**meta, "source": src}
    return out


def idea_applied(policy_source: str, idea: dict) -> bool:
    """Whether every definition the idea replaces is, in the policy, the idea's own text."""
    import ast

    def defs(text: str) -> dict[str, str]:
        tree = parse(text)
        return {n.name: ast.get_source_segment(text, n) for n in tree.body
                if isinstance(n, (ast.FunctionDef, ast.ClassDef))}  # fmt: skip

    mine, theirs = defs(policy_source), defs(idea["source"])
    return all(mine.get(name) == theirs.get(name) for name in idea["replaces"])


def trajectory_symptoms(states) -> list[str]:
    """What went wrong in one failed episode, from its (T, 5) states
    (tip_u, tip_v, block_x, block_y, block_theta)."""
    import numpy as np

    s = np.asarray(states, dtype=float)
    if s.ndim != 2 or s.shape[1] < 5 or len(s) < 2:
        return []
    pos = np.hypot(s[:, 2] - PUSHT_GOAL[0], s[:, 3] - PUSHT_GOAL[1])
    ang = np.abs((s[:, 4] - PUSHT_GOAL[2] + math.pi) % (2 * math.pi) - math.pi)
    err = pos + ANGLE_PX * ang
    out = []
    if ang[-1] > 0.35:
        out.append("turned")
    if err[-1] - err.min() > 20.0 and err.min() < 40.0:
        out.append("overshoot")
    tail = s[-100:]
    moved = (
        np.hypot(*np.diff(tail[:, 2:4], axis=0).T).sum()
        + ANGLE_PX * np.abs(np.diff(tail[:, 4])).sum()
    )
    if moved < 15.0 and err[-1] > 20.0:
        out.append("stalled")
    if pos[-1] > 60.0:
        out.append("far")
    return out


def diagnose(ledger, run_id: str, commit: str, limit: int = 10) -> dict:
    """Symptom counts over the failed episodes of ``commit``'s last evaluation in this run
    (read from the ledger and the recorded datasets); {} when nothing was recorded."""
    if ledger is None or not commit:
        return {}
    rows = ledger.query(
        "SELECT details FROM agent_steps WHERE run_id = ? AND commit_sha = ? ORDER BY id DESC",
        (run_id, commit),
    )
    ids = []
    for r in rows:
        ids = json.loads(r.get("details") or "{}").get("episode_ids") or []
        if ids:
            break
    ids = [i for i in ids if i]
    if not ids:
        return {}
    marks = ",".join("?" * len(ids))
    eps = ledger.query(
        f"SELECT dataset, dataset_index FROM episodes WHERE id IN ({marks}) AND success = 0"
        " AND status = 'failure' AND dataset != ''",
        tuple(ids),
    )
    counts = dict.fromkeys(SYMPTOMS, 0)
    seen = 0
    for e in eps[:limit]:
        try:
            from enpire_policy.lerobot_dataset import read_frames

            frames = read_frames(e["dataset"], [int(e["dataset_index"])])
        except (OSError, ValueError, KeyError):
            continue
        seen += 1
        for sym in trajectory_symptoms(frames["observation.state"]):
            counts[sym] += 1
    return {"episodes": seen, **counts} if seen else {}


class OfflineAgent(Agent):
    backend = "offline"

    def __init__(self, agent_id: str, seed: int = 0, train_every: int = 4,
                 train_budget: float = 60.0):  # fmt: skip
        super().__init__(agent_id)
        self.rng = random.Random(f"{agent_id}:{seed}")
        self.train_every = train_every
        self.train_budget = train_budget
        self.ideas = load_ideas()

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
            params = dict(read_constants(src, ("PARAMS",)).get("PARAMS") or {})
        except (OSError, SourceEditError):  # not the file this agent knows how to edit
            return None
        symptoms = diagnose(ctx.ledger, ctx.run_id, ctx.parent)
        idea = self._pick_idea(ctx, src, symptoms)
        if idea is not None:
            return self._apply(ctx, src, idea, symptoms)
        numeric = sorted(k for k, v in params.items() if isinstance(v, (int, float)))
        if not numeric:
            return None
        steps = sum(1 for r in ctx.history if r.get("outcome") in ("kept", "discarded"))
        note = ""
        if self.train_every and steps and steps % self.train_every == 0:
            out = self._train(ctx, src, params, numeric, symptoms)
            if isinstance(out, Proposal):
                return out
            note = f"{out}; instead "  # the training's failure is a result, not a stop
        key, factor = self._pick_mutation(ctx, numeric)
        old = float(params[key])
        params[key] = round(old * factor, 4)
        ctx.tree.write(POLICY_MODULE, set_constants(src, {"PARAMS": params}))
        way = "raise" if factor > 1 else "lower"
        why = (f"at {ctx.parent_rate:.0%} ({self._describe(ctx.last_failures, symptoms)}); "
               f"{note}{way} {key} {old:g} -> {params[key]:g}")  # fmt: skip
        return Proposal(why, {"kind": "param", "key": key, "factor": factor, "old": old,
                              "new": params[key]})  # fmt: skip

    # --- ideas ----------------------------------------------------------------------------
    def _pick_idea(self, ctx: AgentContext, src: str, symptoms: dict) -> str | None:
        failed_here = {m["idea"] for m in self._moves(ctx.history, ctx.parent)
                       if m["kind"] == "idea" and not m["kept"]}  # fmt: skip
        applied = {n for n, idea in self.ideas.items() if idea_applied(src, idea)}
        options = []
        for name, idea in sorted(self.ideas.items()):
            if name in applied or name in failed_here:
                continue
            if not set(idea.get("requires") or ()) <= applied:
                continue
            cures = idea.get("cures", "")
            weight = symptoms.get(cures, 0) / max(symptoms.get("episodes", 1), 1)
            if cures == "turned":  # turning the T is the first thing a PushT pusher needs
                weight += 0.5 * symptoms.get("far", 0) / max(symptoms.get("episodes", 1), 1)
            options.append((weight + 0.3 * self.rng.random(), name))
        return max(options)[1] if options else None

    def _apply(self, ctx: AgentContext, src: str, name: str, symptoms: dict) -> Proposal:
        idea = self.ideas[name]
        text, names = apply_idea(src, idea["source"])
        ctx.tree.write(POLICY_MODULE, text)
        why = (f"at {ctx.parent_rate:.0%} ({self._describe(ctx.last_failures, symptoms)}); "
               f"write {idea['title']} into the policy ({', '.join(names)})")  # fmt: skip
        return Proposal(why, {"kind": "idea", "idea": name, "symptoms": symptoms,
                              "defines": names})  # fmt: skip

    # --- parameters -----------------------------------------------------------------------
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

    def _train(self, ctx, src, params, numeric, symptoms) -> Proposal | str:
        """A Proposal with the search's best parameters, or why there is none."""
        space = {k: [float(params[k]), max(abs(params[k]) * 0.3, 1e-3), 0.0,
                     max(abs(params[k]) * 4, 1.0)] for k in numeric}  # fmt: skip
        hp = {"iterations": 2, "population": 6, "episodes": 6, "space": space,
              "seed": self.rng.randrange(1 << 30)}  # fmt: skip
        ref = {"name": f"{self.agent_id}@{ctx.parent[:8]}", "agent_id": self.agent_id,
               "repo_path": str(ctx.tree.path), "commit": ctx.parent,
               "module": POLICY_MODULE}  # fmt: skip
        res = ctx.lab.train("heuristic_search", ref, hp, self.train_budget, self.agent_id)
        if res.error_code:
            return f"a parameter search failed ({res.error_code}: {res.error_msg[:120]})"
        best = None
        if res.artifact:
            from enpire_policy.artifacts import load_manifest

            best = (load_manifest(res.artifact).get("load") or {}).get("factory_kwargs", {})
            best = best.get("params")
        new = {k: round(float(v), 4) for k, v in (best or {}).items() if k in params}
        if not new or all(float(params[k]) == v for k, v in new.items()):
            return "a parameter search found nothing better than the current parameters"
        params.update(new)
        ctx.tree.write(POLICY_MODULE, set_constants(src, {"PARAMS": params}))
        found = res.metrics or {}
        budget = " (stopped by its budget)" if found.get("budget_exhausted") else ""
        why = (f"at {ctx.parent_rate:.0%} ({self._describe(ctx.last_failures, symptoms)}); a "
               f"cross-entropy search around the current parameters{budget} scored "
               f"{found.get('best_success_rate', 0):.0%} on its own seeds: adopt its "
               f"parameters")  # fmt: skip
        return Proposal(why, {"kind": "train", "artifact": res.artifact, "params": new})

    @staticmethod
    def _describe(fs: dict, symptoms: dict | None = None) -> str:
        if not fs:
            return "no failures recorded yet"
        outcomes = fs.get("outcomes") or {}
        fail = {k: v for k, v in outcomes.items() if k != "success"}
        parts = [f"{v} {k}" for k, v in sorted(fail.items())] or ["no failures"]
        if symptoms and symptoms.get("episodes"):
            seen = [f"{symptoms[s]} {s}" for s in SYMPTOMS if symptoms.get(s)]
            parts.append(f"of {symptoms['episodes']} failures: {', '.join(seen) or 'no pattern'}")
        elif fs.get("mean_final_reward_of_failures") is not None:
            parts.append(f"failures end at {fs['mean_final_reward_of_failures']:.2f} coverage")
        return ", ".join(parts)

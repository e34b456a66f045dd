"""The LLM agent: any OpenAI-compatible chat endpoint, driven through tool calls.

Each experiment is one conversation: the host describes the lineage (parent success rate,
failure summary, the other agents' results) and the model works in its git tree with tools —
list/read/write files, apply a patch, run the tests, train, roll out, query the ledger, read
the failure summary and the literature notes — until it calls ``commit`` with its hypothesis.
The host then evaluates the commit like any other (tests, screening rollout, keep/discard).

Every request is a row in the ledger's ``llm_calls`` (prompt and completion tokens, errors).
A request that fails (endpoint down, slow, 5xx) is retried with exponential backoff; replies
without a tool call or with malformed tool calls are answered with a correction and count as
failed attempts. When the attempts run out the agent raises :class:`AgentPausedError`: the
host records it, waits, and the other agents go on.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

from enpire_evolve.agents.base import Agent, AgentContext, AgentPausedError, Proposal

SYSTEM = """You are a robotics research agent improving a PushT policy for an SO-101 arm.
Your git tree holds the policy (policy/pusht_policy.py, built by make_policy()) and its tests.
Every experiment you commit is evaluated by the host on a fixed screening set of seeded
episodes and kept only if it beats its parent (success rate, ties broken by fewer steps).
Work with the tools: read the failure summary and the code, change one thing at a time,
run the tests, optionally train or roll out to check, then call `commit` with a one-sentence
hypothesis. Keep tests passing. Do not rewrite files you have not read."""


def _tool(tool: str, description: str, **props) -> dict:
    required = [k for k, v in props.items() if not v.pop("optional", False)]
    return {"type": "function", "function": {
        "name": tool, "description": description,
        "parameters": {"type": "object", "properties": props, "required": required}}}  # fmt: skip


TOOLS = [
    _tool("list_files", "List the files of your git tree."),
    _tool("read_file", "Read a file of your tree.", path={"type": "string"}),
    _tool(
        "write_file",
        "Create or overwrite a file of your tree.",
        path={"type": "string"},
        content={"type": "string"},
    ),  # fmt: skip
    _tool(
        "apply_patch", "Apply a unified diff (git apply) to your tree.", patch={"type": "string"}
    ),  # fmt: skip
    _tool("run_tests", "Run your tree's tests (pytest) and return the output."),
    _tool(
        "train",
        "Run a Train recipe on your working tree, e.g. heuristic_search, which tunes "
        "make_policy(params=...) by cross-entropy search. Returns the artifact and metrics.",
        recipe={"type": "string"},
        hyperparameters={"type": "object", "optional": True},
        time_budget={"type": "number", "optional": True},
    ),  # fmt: skip
    _tool(
        "rollout",
        "Run your working tree's policy for a few seeded episodes on the fleet "
        "and return a failure summary.",
        episodes={"type": "integer"},
        seed={"type": "integer", "optional": True},
    ),  # fmt: skip
    _tool(
        "query_ledger",
        "Read-only SQL (SELECT) over the experiment ledger: tables "
        "agent_steps, episodes, goals, trainings, llm_calls.",
        sql={"type": "string"},
    ),
    _tool("failure_summary", "The failure summary of your branch's last screening rollout."),
    _tool(
        "read_notes",
        "Literature notes: without a name, the list; with one, the note.",
        name={"type": "string", "optional": True},
    ),  # fmt: skip
    _tool(
        "commit",
        "End the experiment: commit your changes for evaluation.",
        hypothesis={"type": "string"},
        use_artifact={"type": "boolean", "optional": True},
    ),  # fmt: skip
]


class _MalformedReplyError(Exception):
    pass


class LlmAgent(Agent):
    backend = "openai"

    def __init__(self, agent_id: str, cfg, ledger=None, run_id: str = "", client=None):
        super().__init__(agent_id)
        self.cfg, self.ledger, self.run_id = cfg, ledger, run_id
        if client is None:
            import openai

            client = openai.OpenAI(
                base_url=cfg.base_url or None,
                api_key=os.environ.get(cfg.api_key_env) or "no-key",
                timeout=cfg.timeout, max_retries=0,  # retries are ours: each one is logged
            )  # fmt: skip
        self.client = client
        self.last_artifact = ""

    # --- the model ---------------------------------------------------------------------
    def _call(self, messages: list[dict]):
        """One completion with a tool call, retried with backoff; AgentPausedError at the end."""
        delay, last_error = self.cfg.backoff, ""
        for attempt in range(self.cfg.retries):
            if attempt:
                time.sleep(delay)
                delay *= 2
            t0 = time.time()
            row = {"run_id": self.run_id, "agent_id": self.agent_id, "model": self.cfg.model,
                   "t_start": t0}  # fmt: skip
            try:
                resp = self.client.chat.completions.create(
                    model=self.cfg.model, messages=messages, tools=TOOLS, tool_choice="auto",
                    temperature=self.cfg.temperature,
                )  # fmt: skip
            except Exception as e:  # noqa: BLE001 - connection, timeout, HTTP status, bad JSON
                last_error = f"{type(e).__name__}: {e}"[:500]
                self._log_call({**row, "t_end": time.time(), "ok": 0, "error": last_error})
                continue
            usage = getattr(resp, "usage", None)
            row.update(t_end=time.time(), prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
                       completion_tokens=getattr(usage, "completion_tokens", 0) or 0)  # fmt: skip
            try:
                msg = resp.choices[0].message
                calls = self._parse_calls(msg)
            except _MalformedReplyError as e:
                last_error = str(e)
                self._log_call({**row, "ok": 0, "error": last_error})
                messages.append({"role": "assistant", "content": getattr(msg, "content", "")
                                 or ""})  # fmt: skip
                messages.append({"role": "user", "content": f"{e}. Reply with a tool call "
                                 "(call `commit` when your change is ready)."})  # fmt: skip
                continue
            except (IndexError, AttributeError) as e:
                last_error = f"malformed response: {e}"
                self._log_call({**row, "ok": 0, "error": last_error})
                continue
            self._log_call({**row, "ok": 1, "error": ""})
            return msg, calls
        raise AgentPausedError(f"LLM endpoint: {self.cfg.retries} attempts failed; last: "
                               f"{last_error}")  # fmt: skip

    def _parse_calls(self, msg) -> list[tuple[str, str, dict]]:
        calls = getattr(msg, "tool_calls", None) or []
        if not calls:
            raise _MalformedReplyError("the reply has no tool call")
        out = []
        known = {t["function"]["name"] for t in TOOLS}
        for c in calls:
            name = c.function.name
            if name not in known:
                raise _MalformedReplyError(f"unknown tool '{name}'")
            try:
                args = json.loads(c.function.arguments or "{}")
            except json.JSONDecodeError as e:
                raise _MalformedReplyError(f"arguments of {name} are not JSON: {e}") from None
            if not isinstance(args, dict):
                raise _MalformedReplyError(f"arguments of {name} must be a JSON object")
            out.append((c.id, name, args))
        return out

    def _log_call(self, row: dict) -> None:
        if self.ledger is not None:
            self.ledger.add_llm_call(row)

    # --- one experiment ----------------------------------------------------------------
    def propose(self, ctx: AgentContext) -> Proposal | None:
        self.last_artifact = ""
        others = [f"{o['agent_id']} {o['success_rate']:.0%}: {o['hypothesis'][:120]}"
                  for o in ctx.others[-8:] if o.get("success_rate") is not None]  # fmt: skip
        mine = []
        for h in ctx.history[-10:]:
            rate = "" if h["success_rate"] is None else f" {h['success_rate']:.0%}"
            mine.append(f"{h['outcome']}{rate}: {(h['hypothesis'] or '')[:120]}")
        brief = {
            "agent": ctx.agent_id, "parent_commit": ctx.parent,
            "parent_success_rate": ctx.parent_rate, "goal_success_rate": ctx.goal_success,
            "screening_set": ctx.screen, "last_failures": ctx.last_failures,
            "your_history": mine, "other_agents": others, "files": ctx.tree.files(),
        }  # fmt: skip
        messages = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": json.dumps(brief, indent=1, default=str)},
        ]
        for _turn in range(self.cfg.max_turns):
            msg, calls = self._call(messages)
            messages.append({"role": "assistant", "content": msg.content or "", "tool_calls": [
                {"id": cid, "type": "function",
                 "function": {"name": name, "arguments": json.dumps(args)}}
                for cid, name, args in calls]})  # fmt: skip
            for cid, name, args in calls:
                if name == "commit":
                    hyp = str(args.get("hypothesis") or "").strip() or "(no hypothesis given)"
                    art = self.last_artifact if args.get("use_artifact") else ""
                    return Proposal(hyp, {"kind": "llm", "turns": _turn + 1}, art)
                try:
                    result = self._run_tool(ctx, name, args)
                except Exception as e:  # noqa: BLE001 - the model sees its tool's error
                    result = f"error: {type(e).__name__}: {e}"
                messages.append({"role": "tool", "tool_call_id": cid,
                                 "content": str(result)[:12000]})  # fmt: skip
        raise AgentPausedError(f"no commit after {self.cfg.max_turns} tool calls")

    def _run_tool(self, ctx: AgentContext, name: str, a: dict) -> str:
        tree = ctx.tree
        if name == "list_files":
            return "\n".join(tree.files())
        if name == "read_file":
            return tree.read(a["path"])
        if name == "write_file":
            tree.write(a["path"], a["content"])
            return f"wrote {a['path']} ({len(a['content'])} chars)"
        if name == "apply_patch":  # git apply refuses paths outside the tree and into .git
            r = subprocess.run(
                ["git", "apply", "--whitespace=nowarn", "-"],
                cwd=tree.path,
                input=a["patch"],
                capture_output=True,
                text=True,
                timeout=30,
            )
            return "applied" if r.returncode == 0 else f"git apply failed: {r.stderr.strip()}"
        if name == "run_tests":
            from enpire_evolve.selfcheck import run_selfcheck

            ok, out = run_selfcheck(tree.path, 120.0)
            return ("PASSED\n" if ok else "FAILED\n") + out[-4000:]
        if name == "train":
            ref = self._ref(ctx)
            hp = a.get("hyperparameters") or {}
            res = ctx.lab.train(a["recipe"], ref, hp, float(a.get("time_budget") or 60.0),
                                ctx.agent_id)  # fmt: skip
            if res.artifact:
                self.last_artifact = res.artifact
            return json.dumps(
                {
                    "error_code": res.error_code,
                    "error_msg": res.error_msg,
                    "artifact": res.artifact,
                    "metrics": res.metrics,
                },
                default=str,
            )
        if name == "rollout":
            n = max(1, min(int(a.get("episodes") or 3), ctx.screen["episodes"]))
            seed = int(a.get("seed", 500_000))
            res = ctx.lab.rollout(self._ref(ctx), n, seed, ctx.agent_id)
            return json.dumps(res.failure_summary(), default=str)
        if name == "query_ledger":
            from enpire_rollout.ledger import QueryError

            try:  # read-only connection; at most 200 rows and 2 s per query
                rows = ctx.ledger.query(a["sql"], max_rows=200, timeout=2.0)
            except QueryError as e:
                return f"query refused: {e}"
            return json.dumps(rows[:50], default=str)
        if name == "failure_summary":
            return json.dumps(ctx.last_failures, default=str)
        if name == "read_notes":
            from pathlib import Path

            notes = Path(ctx.notes_dir)
            if not a.get("name"):
                return "\n".join(p.name for p in sorted(notes.glob("*.md")))
            p = (notes / a["name"]).resolve()
            if p.parent != notes.resolve() or not p.is_file():
                return f"no note '{a['name']}'"
            return p.read_text()
        raise ValueError(f"unknown tool {name}")

    @staticmethod
    def _ref(ctx: AgentContext) -> dict:
        from enpire_evolve.repo import POLICY_MODULE

        # what the agent is editing right now, as a snapshot commit (its branch untouched), so
        # an artifact or a rollout refers to exactly the code it ran
        sha = ctx.tree.snapshot()
        return {
            "name": f"{ctx.agent_id}@{sha[:8]}",
            "agent_id": ctx.agent_id,
            "repo_path": str(ctx.tree.path),
            "commit": sha,
            "module": POLICY_MODULE,
        }

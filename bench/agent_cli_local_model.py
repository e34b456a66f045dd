"""Optional check: a real coding-agent CLI, hosted by `enpire agents`, runs one experiment end to
end against a scripted local model server.

Claude Code talks to any Anthropic-compatible endpoint named by ``ANTHROPIC_BASE_URL`` (its
documented setting for gateways); Codex to a model provider of its config (``-c
model_providers.<id>={base_url=..., wire_api="responses"}``). This script serves the Messages
API or the Responses API (streamed) on 127.0.0.1 with a fixed script instead of a model: read
the task (the enpire MCP server's ``task``), submit the agent's HEAD commit
(``submit_experiment``), wait for it (``wait_experiment``), answer in text. The CLI (installed
from npm by ``bench/agent_cli_check.py``) is launched by ``AgentHost`` exactly as in a real
run, with two simulated cells in this process serving the queue; the check passes when the
experiment ran and the host recorded the tokens the server reported.

    scripts/run python bench/agent_cli_check.py                # installs the CLIs first
    scripts/run python bench/agent_cli_local_model.py --cli claude [--out FILE]
    scripts/run python bench/agent_cli_local_model.py --cli codex
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from enpire_evolve.agent_host import AgentHost, CliAgentConfig, HostConfig
from enpire_evolve.mcp_server import local_fleet
from enpire_policy.isolation import probe

USAGE_IN, USAGE_OUT = 1000, 50  # what the scripted model reports per answer


class Script:
    """The next answer, from the conversation so far."""

    def __init__(self):
        self.lock = threading.Lock()
        self.answers = 0
        self.log: list[str] = []

    def next_responses(self, req: dict) -> list[dict]:
        return _responses_step(self, req)

    def next(self, req: dict) -> list[dict]:
        names = [t.get("name", "") for t in req.get("tools") or []]
        msgs = req.get("messages") or []
        if not any(n.startswith("mcp__enpire__") for n in names):
            return [{"type": "text", "text": "ok"}]  # an auxiliary request (titles, summaries)
        used = [
            b
            for m in msgs
            if m.get("role") == "assistant" and isinstance(m["content"], list)
            for b in m["content"]
            if b.get("type") == "tool_use"
        ]
        results = [
            b
            for m in msgs
            if m.get("role") == "user" and isinstance(m["content"], list)
            for b in m["content"]
            if b.get("type") == "tool_result"
        ]
        step = len(used)
        with self.lock:
            self.answers += 1
            self.log.append(f"step {step}: {len(msgs)} messages, {len(names)} tools")
        if step == 0:
            return [_tool("mcp__enpire__task", {})]
        if step == 1:
            return [_tool("mcp__enpire__submit_experiment", {"commit": "HEAD", "episodes": 4})]
        if step == 2:
            sub = json.loads(_text(results[-1]))
            return [_tool("mcp__enpire__wait_experiment", {"experiment_id": sub["id"]})]
        done = json.loads(_text(results[-1]))
        return [
            {
                "type": "text",
                "text": f"experiment {done['id']}: {done['status']}, "
                f"{done.get('successes')}/{done.get('episodes_done')} successes",
            }
        ]


def _responses_step(script: Script, req: dict) -> list[dict]:
    """The same script for a Responses API conversation (Codex)."""
    tools = []  # (namespace, name): Codex puts an MCP server's tools in a namespace
    for t in req.get("tools") or []:
        if t.get("type") == "namespace":
            tools += [(t["name"], x.get("name", "")) for x in t.get("tools") or []]
        else:
            tools.append(("", t.get("name", "")))
    items = [i for i in req.get("input") or [] if isinstance(i, dict)]
    calls = [i for i in items if i.get("type") == "function_call"]
    outputs = [i for i in items if i.get("type") == "function_call_output"]

    def named(tail: str) -> tuple[str, str]:
        return next((t for t in tools if t[1] == tail), ("", tail))

    lab = [t for t in tools if t[1] == "submit_experiment"]
    waited = [c for c in calls if c.get("name") == "exec_command"]
    step = len(calls) - len(waited)
    with script.lock:
        script.answers += 1
        script.log.append(f"step {step}: {len(items)} items, lab tools {bool(lab)}")
    if not lab:  # the MCP server is still starting (it is not in the tool list yet): wait
        if len(waited) >= 10:
            return [{"type": "text", "text": "the enpire tools never appeared"}]
        return [_tool(("", "exec_command"), {"cmd": "sleep 2"})]
    if step == 0:
        return [_tool(named("task"), {})]
    if step == 1:
        return [_tool(named("submit_experiment"), {"commit": "HEAD", "episodes": 4})]
    out = outputs[-1].get("output", "")  # the last call was one of the lab's
    if isinstance(out, list):
        out = "".join(x.get("text", "") for x in out if isinstance(x, dict))
    try:
        data = json.loads(_json_part(out))
    except ValueError:  # the call failed: say so and end the turn
        with script.lock:
            script.log.append(f"tool output was not the tool's JSON: {out[:300]}")
        return [{"type": "text", "text": f"the tool call failed: {out[:300]}"}]
    if step == 2:
        return [_tool(named("wait_experiment"), {"experiment_id": data["id"]})]
    return [{"type": "text", "text": f"experiment {data['id']}: {data['status']}"}]


def _json_part(text: str) -> str:
    """The JSON object in a tool's output (Codex may wrap the MCP result)."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return text[text.index("{") : text.rindex("}") + 1]
    if isinstance(obj, dict) and "content" in obj and "id" not in obj:
        return "".join(c.get("text", "") for c in obj["content"] if isinstance(c, dict))
    if isinstance(obj, list):
        return "".join(c.get("text", "") for c in obj if isinstance(c, dict))
    return text


def _tool(name: str, args: dict) -> dict:
    return {
        "type": "tool_use",
        "id": f"toolu_{name[-12:]}_{time.time_ns()}",
        "name": name,
        "input": args,
    }


def _text(block: dict) -> str:
    c = block.get("content")
    if isinstance(c, str):
        return c
    return "".join(x.get("text", "") for x in c or [] if x.get("type") == "text")


def make_handler(script: Script):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_a):
            pass

        def do_POST(self):  # noqa: N802 (http.server's name)
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or "{}")
            if self.path.rstrip("/").endswith("/responses"):
                self._responses(body)
                return
            if not self.path.startswith("/v1/messages") or "count_tokens" in self.path:
                self._json({"input_tokens": USAGE_IN})
                return
            blocks = script.next(body)
            stop = "tool_use" if blocks[-1]["type"] == "tool_use" else "end_turn"
            msg = {
                "id": f"msg_{time.time_ns()}",
                "type": "message",
                "role": "assistant",
                "model": body.get("model", "local"),
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": USAGE_IN, "output_tokens": 1},
            }
            if not body.get("stream"):
                msg.update(
                    content=blocks,
                    stop_reason=stop,
                    usage={"input_tokens": USAGE_IN, "output_tokens": USAGE_OUT},
                )
                self._json(msg)
                return
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.end_headers()
            self._event("message_start", {"type": "message_start", "message": msg})
            for i, b in enumerate(blocks):
                if b["type"] == "text":
                    start, delta = (
                        {"type": "text", "text": ""},
                        {"type": "text_delta", "text": b["text"]},
                    )
                else:
                    start = {"type": "tool_use", "id": b["id"], "name": b["name"], "input": {}}
                    delta = {"type": "input_json_delta", "partial_json": json.dumps(b["input"])}
                self._event(
                    "content_block_start",
                    {"type": "content_block_start", "index": i, "content_block": start},
                )
                self._event(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": i, "delta": delta},
                )
                self._event("content_block_stop", {"type": "content_block_stop", "index": i})
            self._event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": None},
                    "usage": {"output_tokens": USAGE_OUT},
                },
            )
            self._event("message_stop", {"type": "message_stop"})

        def _responses(self, body: dict) -> None:
            """OpenAI's Responses API, streamed, as Codex uses it."""
            blocks = script.next_responses(body)
            rid = f"resp_{time.time_ns()}"
            usage = {
                "input_tokens": USAGE_IN,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": USAGE_OUT,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": USAGE_IN + USAGE_OUT,
            }
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.end_headers()
            resp = {"id": rid, "object": "response", "status": "in_progress", "output": []}
            self._event("response.created", {"type": "response.created", "response": resp})
            items = []
            for i, b in enumerate(blocks):
                if b["type"] == "text":
                    item = {
                        "type": "message",
                        "role": "assistant",
                        "id": f"msg_{i}_{rid}",
                        "status": "completed",
                        "content": [{"type": "output_text", "text": b["text"], "annotations": []}],
                    }
                else:
                    space, name = b["name"]
                    item = {
                        "type": "function_call",
                        "id": f"fc_{i}_{rid}",
                        "status": "completed",
                        "call_id": f"call_{i}_{rid}",
                        "name": name,
                        "arguments": json.dumps(b["input"]),
                    }
                    if space:  # an MCP server's tool: its namespace and its name
                        item["namespace"] = space
                items.append(item)
                self._event(
                    "response.output_item.added",
                    {"type": "response.output_item.added", "output_index": i, "item": item},
                )
                self._event(
                    "response.output_item.done",
                    {"type": "response.output_item.done", "output_index": i, "item": item},
                )
            done = dict(resp, status="completed", output=items, usage=usage)
            self._event("response.completed", {"type": "response.completed", "response": done})

        def _json(self, obj: dict) -> None:
            data = json.dumps(obj).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _event(self, name: str, obj: dict) -> None:
            self.wfile.write(f"event: {name}\ndata: {json.dumps(obj)}\n\n".encode())
            self.wfile.flush()

    return Handler


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cli", choices=("claude", "codex"), default="claude")
    ap.add_argument("--prefix", default="/tmp/enpire-agent-clis", help="agent_cli_check's")
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    exe = str(Path(a.prefix) / "node_modules" / ".bin" / a.cli)
    if not Path(exe).exists():
        print(f"agent_cli_local_model: no {a.cli} at {exe} (run agent_cli_check.py)")
        return 2
    script = Script()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(script))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    api = "Messages" if a.cli == "claude" else "Responses"
    lines = [f"agent_cli_local_model: {exe}, scripted {api} API on 127.0.0.1:{port}"]
    with tempfile.TemporaryDirectory(prefix="cli-local-") as tmp:
        tmp = Path(tmp)
        env = dict(
            os.environ,
            ANTHROPIC_BASE_URL=f"http://127.0.0.1:{port}",
            ANTHROPIC_API_KEY="sk-local-scripted",
            HOME=str(tmp / "home"),
            CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
            DISABLE_AUTOUPDATER="1",
        )
        (tmp / "home").mkdir()
        extra, model = [], ""
        if a.cli == "codex":  # a model provider of its own config, no key
            env["CODEX_HOME"] = str(tmp / "home" / ".codex")
            Path(env["CODEX_HOME"]).mkdir(parents=True)
            url = f"http://127.0.0.1:{port}/v1"
            provider = f'{{name="scripted", base_url="{url}", wire_api="responses"}}'
            extra = [
                "-c",
                'model_provider="scripted"',
                "-c",
                f"model_providers.scripted={provider}",
            ]
            model = "scripted-model"
        cli = CliAgentConfig(
            backend=a.cli,
            command=[exe],
            extra_args=extra,
            model=model,
            max_turns=1,
            hang_timeout=120,
            max_restarts=1,
            backoff=1.0,
        )
        host = AgentHost(
            HostConfig(run_id="cli-local", agents=1, cli=cli, wall_budget=300),
            tmp / "data",
            log=lambda m: lines.append(m),
            env=env,
        )
        service, feeder = local_fleet(host.ledger, tmp / "data", 2, 100, 0.0, video_size=0)
        try:
            host.run(poll=0.5)
        finally:
            feeder.close()
            service.close()
            server.shutdown()
        exps = host.ledger.query(
            "SELECT agent_id, status, episodes_done, successes FROM experiments"
        )
        calls = host.ledger.query("SELECT tool, outcome FROM tool_calls ORDER BY id")
        p, c = host.ledger.tokens("cli-local")
        st = host.status["agent_0"]
        events = (host.run_dir / "logs" / "agent_0.events.jsonl").read_text().splitlines()
        lines += [
            f"isolation: {host.isolation} (the CLI writes only its worktree, the shared repo, "
            "its temp and state folders; the lab's tools come over HTTP"
            + ("; its own PID namespace and /proc" if probe().bwrap else "")
            + ")"
            if host.isolation == "landlock"
            else f"isolation: {host.isolation}",
            f"agent: state {st.state}, turns {st.turns}, restarts {st.restarts}, session "
            f"{st.session or '-'}",
            f"tool calls: {[(r['tool'], r['outcome']) for r in calls]}",
            f"experiments: {exps}",
            f"model answers scripted: {script.answers}; tokens recorded by the host: prompt {p},"
            f" completion {c}",
            f"last events: {[json.loads(e).get('type') for e in events[-4:] if e[:1] == '{']}",
        ]
        ok = bool(exps) and exps[0]["status"] == "done" and st.turns == 1 and p > 0
        lines += [f"server: {entry[:160]}" for entry in script.log[-4:]]
        if not ok:
            err = (host.run_dir / "logs" / "agent_0.stderr.log").read_text()[-2000:]
            lines.append(f"stderr: {err}")
            lines += [e[:300] for e in events[-6:]]
    lines.append(
        "result: " + (f"one experiment ran end to end through {a.cli}" if ok else "FAILED")
    )
    print("\n".join(lines))
    if a.out:
        Path(a.out).write_text("\n".join(lines) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

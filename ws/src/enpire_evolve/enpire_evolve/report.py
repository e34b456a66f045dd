"""The morning report: what the agents did overnight, from the ledger and git alone.

    paths = write_report(ledger, run_id, out_dir)   # {"html": ..., "markdown": ..., ...}

One self-contained HTML file (plots embedded) and a markdown summary: the outcome and the
winning branch and commit with how to reproduce it; success vs wall time per agent; MRU per
robot over time; token spend and MTU; the best policy's failure cases with camera frames.
"""

from __future__ import annotations

import base64
import html
import io
import json
import time
from pathlib import Path

import numpy as np


def queue_experiments(ledger, run_id: str) -> list[dict]:
    """The run's finished experiments from the queue of agents hosted by ``enpire agents``
    (the evolve node's agents go through the queue too, but their steps are in agent_steps;
    a CLI agent that was given up has only an ``agent_failed`` row there)."""
    return ledger.query(
        "SELECT agent_id, kind, commit_sha, episodes_done, successes, success_rate, finished,"
        " result FROM experiments WHERE run_id = ? AND status = 'done' AND agent_id NOT IN"
        " (SELECT DISTINCT agent_id FROM agent_steps WHERE run_id = ?"
        " AND outcome != 'agent_failed') ORDER BY finished",
        (run_id, run_id),
    )


def run_metrics(ledger, run_id: str) -> dict:
    """The headline figures of a run, computed from ledger rows (the host loop's agent steps,
    and the queue's experiments of CLI agents)."""
    from enpire_rollout.metrics import fleet_usage

    run = ledger.run(run_id) or {}
    steps = ledger.agent_steps(run_id)
    t0 = float(run.get("created") or (steps[0]["wall_start"] if steps else time.time()))
    t1 = float(run.get("finished") or time.time())
    result = json.loads(run.get("result") or "{}")
    prompt, completion = ledger.tokens(run_id)
    tokens = prompt + completion
    minutes = max((t1 - t0) / 60, 1e-9)
    usage = fleet_usage(ledger, t0, t1)
    baseline = [s["success_rate"] for s in steps if s["outcome"] == "baseline"]
    kept = [
        s
        for s in steps
        if s["kept"] and s["success_rate"] is not None and s["outcome"] in ("kept", "baseline")
    ]
    top = max(kept, key=lambda s: (s["success_rate"], -s["id"])) if kept else None
    best = top["success_rate"] if top else 0.0
    base = min(baseline) if baseline else 0.0
    experiments = [s for s in steps if s["outcome"] in ("kept", "discarded", "tests_failed")]
    queued = [e for e in queue_experiments(ledger, run_id) if e["kind"] != "confirm"]
    top_q = max(queued, key=lambda e: e["success_rate"] or 0.0) if queued else None
    if top_q and (top_q["success_rate"] or 0.0) > best:
        best, top = top_q["success_rate"], {"commit_sha": top_q["commit_sha"]}
    queue_seconds = sum(json.loads(e["result"] or "{}").get("robot_seconds", 0.0) for e in queued)
    goal = result.get("reason") == "goal"
    return {
        "run_id": run_id,
        "status": run.get("status"),
        "reason": result.get("reason", ""),
        "goal_reached": goal,
        "start": t0,
        "end": t1,
        "wall_seconds": t1 - t0,
        "time_to_goal_s": (t1 - t0) if goal else None,
        "winner": {
            k: result.get(k)
            for k in (
                "agent_id",
                "branch",
                "commit",
                "success_rate",
                "ci",
                "episodes",
                "shared_repo",
            )
        }
        if goal
        else {},
        "baseline_rate": base,
        "best_screening_rate": best,
        "best_commit": top["commit_sha"] if top else "",
        "experiments": len(experiments) + len(queued),
        "kept": sum(1 for s in experiments if s["outcome"] == "kept"),
        "adoptions": sum(1 for s in steps if s["outcome"] == "adopted"),
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "tokens": tokens,
        "mtu_tokens_per_min": tokens / minutes,
        "tokens_to_goal": tokens if goal else None,
        "progress_per_mtok": ((best - base) / (tokens / 1e6)) if tokens else None,
        "mru": usage.mru,
        "mru_per_robot": usage.per_robot,
        "episodes": usage.episodes,
        "episodes_per_hour": usage.episodes_per_hour,
        "robot_seconds": sum(s["robot_seconds"] or 0.0 for s in steps) + queue_seconds,
    }


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _plots(ledger, run_id: str, m: dict) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    steps = ledger.agent_steps(run_id)
    t0 = m["start"]
    # success vs wall time per agent: every evaluated candidate, and the lineage's best
    fig, ax = plt.subplots(figsize=(7, 3.4))
    for agent in sorted({s["agent_id"] for s in steps}):
        rows = [
            s
            for s in steps
            if s["agent_id"] == agent
            and s["success_rate"] is not None
            and s["outcome"] in ("baseline", "kept", "discarded", "adopted")
        ]
        if not rows:
            continue
        x = [(s["wall_end"] - t0) / 60 for s in rows]
        best, line = 0.0, []
        for s in rows:
            if s["kept"]:
                best = s["success_rate"]
            line.append(best)
        (h,) = ax.step(x, line, where="post", label=f"{agent} (branch)")
        ax.scatter(x, [s["success_rate"] for s in rows], s=14, color=h.get_color(), alpha=0.5)
    conf = [s for s in steps if s["outcome"] in ("confirmed", "not_confirmed")]
    for s in conf:
        ax.scatter(
            [(s["wall_end"] - t0) / 60],
            [s["success_rate"]],
            marker="*",
            s=120,
            color="green" if s["outcome"] == "confirmed" else "red",
            zorder=5,
        )
    queued = queue_experiments(ledger, run_id)
    for agent in sorted({e["agent_id"] for e in queued}):
        rows = [e for e in queued if e["agent_id"] == agent and e["kind"] != "confirm"]
        if not rows:
            continue
        x = [(e["finished"] - t0) / 60 for e in rows]
        y = [e["success_rate"] or 0.0 for e in rows]
        (h,) = ax.step(x, np.maximum.accumulate(y), where="post", label=f"{agent} (best so far)")
        ax.scatter(x, y, s=14, color=h.get_color(), alpha=0.5)
    for e in (e for e in queued if e["kind"] == "confirm"):
        ax.scatter(
            [(e["finished"] - t0) / 60],
            [e["success_rate"] or 0.0],
            marker="*",
            s=120,
            color="green",
            zorder=5,
        )
    ax.set(
        xlabel="wall time [min]",
        ylabel="success rate",
        ylim=(-0.03, 1.05),
        title="success vs wall time (dots: candidates; stars: confirmations)",
    )
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    out["success"] = _png(fig)
    # MRU timeline per robot
    ivs = ledger.intervals(m["start"], m["end"])
    robots = sorted({iv["robot_id"] for iv in ivs})
    fig, ax = plt.subplots(figsize=(7, 3))
    if robots:
        from enpire_rollout.metrics import utilisation

        span = max(m["end"] - m["start"], 1.0)
        nb = int(min(60, max(5, span // 15)))
        edges = np.linspace(m["start"], m["end"], nb + 1)
        for r in robots:
            u = [
                utilisation(ivs, a, b, [r])[r] for a, b in zip(edges[:-1], edges[1:], strict=True)
            ]
            ax.plot((edges[:-1] - t0) / 60, u, drawstyle="steps-post", label=r, alpha=0.6)
        fleet = [
            utilisation(ivs, a, b, robots) for a, b in zip(edges[:-1], edges[1:], strict=True)
        ]
        fleet = [sum(f.values()) / len(robots) for f in fleet]
        ax.plot(
            (edges[:-1] - t0) / 60,
            fleet,
            drawstyle="steps-post",
            color="black",
            lw=2,
            label="fleet MRU",
        )
        ax.set_title(f"MRU over time (whole run: {m['mru']:.1%})")
        ax.legend(fontsize=7, ncol=4)
    else:
        ax.text(0.5, 0.5, "no robot intervals in the ledger (local simulation)", ha="center")
    ax.set(xlabel="wall time [min]", ylabel="busy fraction", ylim=(-0.03, 1.05))
    ax.grid(alpha=0.3)
    out["mru"] = _png(fig)
    # token spend
    calls = ledger.query(
        "SELECT agent_id, t_end, prompt_tokens, completion_tokens FROM"
        " llm_calls WHERE run_id = ? ORDER BY t_end",
        (run_id,),
    )
    fig, ax = plt.subplots(figsize=(7, 2.8))
    if calls:
        for agent in sorted({c["agent_id"] for c in calls}):
            cs = [c for c in calls if c["agent_id"] == agent and c["t_end"]]
            x = [(c["t_end"] - t0) / 60 for c in cs]
            y = np.cumsum([c["prompt_tokens"] + c["completion_tokens"] for c in cs])
            ax.step(x, y, where="post", label=agent)
        ax.legend(fontsize=8)
        ax.set_title(f"tokens (MTU {m['mtu_tokens_per_min']:.0f} tokens/min)")
    else:
        ax.text(0.5, 0.5, "no LLM calls: offline agents spend no tokens", ha="center")
    ax.set(xlabel="wall time [min]", ylabel="tokens (cumulative)")
    ax.grid(alpha=0.3)
    out["tokens"] = _png(fig)
    return out


def _failure_frames(ledger, run_id: str, m: dict, n_eps: int = 4, n_frames: int = 5):
    """Frames of the best policy's failed episodes (confirmation first, else screening)."""
    from enpire_policy.lerobot_dataset import read_episode_frames

    best = (m.get("winner") or {}).get("commit") or m.get("best_commit")
    rows = ledger.query(
        "SELECT details FROM agent_steps WHERE run_id = ? AND commit_sha = ? AND outcome IN"
        " ('confirmed', 'not_confirmed', 'kept')",
        (run_id, best or ""),
    )
    ids = [i for r in rows for i in json.loads(r["details"] or "{}").get("episode_ids", [])]
    m["best_policy_episodes"] = len(ids)
    if not ids:
        return None, []
    marks = ",".join("?" for _ in ids)
    eps = ledger.query(
        f"SELECT id, seed, robot_id, dataset, dataset_index, steps FROM episodes"
        f" WHERE success = 0 AND status != 'interrupted' AND id IN ({marks})",
        tuple(ids),
    )[:n_eps]
    strips, info = [], []
    for e in eps:
        try:
            frames = read_episode_frames(e["dataset"], int(e["dataset_index"]))
        except Exception:  # noqa: BLE001 - a missing video only loses the picture
            continue
        if len(frames) == 0:
            continue
        pick = np.linspace(0, len(frames) - 1, n_frames).astype(int)
        strips.append(np.concatenate([frames[i] for i in pick], axis=1))
        info.append(e)
    if not strips:
        return None, info
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(strips), 1, figsize=(7, 1.6 * len(strips)), squeeze=False)
    for ax, s, e in zip(axes[:, 0], strips, info, strict=True):
        ax.imshow(s)
        ax.set_axis_off()
        ax.set_title(
            f"episode {e['id']} seed {e['seed']} on {e['robot_id']}: failed after "
            f"{e['steps']} steps",
            fontsize=8,
        )
    return _png(fig), info


def _summary_md(m: dict, steps: list[dict], failures: list[dict]) -> str:
    w = m["winner"]
    lines = [f"# enpire morning report — run `{m['run_id']}`", ""]
    if m["goal_reached"]:
        lo, hi = w.get("ci") or (0, 1)
        lines += [
            f"**Goal reached** by `{w['agent_id']}` in {m['time_to_goal_s'] / 60:.1f} min: "
            f"{w['success_rate']:.1%} success over {w['episodes']} fresh episodes "
            f"(95% CI {lo:.1%}–{hi:.1%}).",
            "",
            f"- winning branch `{w['branch']}`, commit `{w['commit']}`",
            f"- shared repository: `{w['shared_repo']}`",
        ]
    else:
        lines += [
            f"**Goal not reached**: {m['reason']}. Best screening success rate "
            f"{m['best_screening_rate']:.0%} (baseline {m['baseline_rate']:.0%})"
            + (f", commit `{m['best_commit'][:12]}`." if m.get("best_commit") else "."),
        ]
        conf = [s for s in steps if s["outcome"] in ("confirmed", "not_confirmed")]
        if conf:
            c = conf[-1]
            why = json.loads(c["details"] or "{}").get("error") or "its episodes ran out"
            lines.append(
                f"The last confirmation ({c['agent_id']}, commit "
                f"`{(c['commit_sha'] or '')[:12]}`) ran {c['episodes']} episodes at "
                f"{(c['success_rate'] or 0):.1%} and stopped: {why}."
            )
        else:
            lines.append(
                "No candidate reached the goal rate on the screening set, so none was "
                "sent to confirmation."
            )
        lines.append("")
    tok = f"{m['tokens']}" + (f" ({m['tokens_to_goal']} to the goal)" if m["goal_reached"] else "")
    ppm = (
        "n/a (no tokens spent)"
        if m["progress_per_mtok"] is None
        else f"{m['progress_per_mtok']:.2f} success-rate gain per Mtok"
    )
    lines += [
        "",
        "## Headline numbers",
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| wall time | {m['wall_seconds'] / 60:.1f} min |",
        f"| experiments (kept) | {m['experiments']} ({m['kept']}) |",
        f"| branch adoptions | {m['adoptions']} |",
        f"| success rate: baseline → best screening | {m['baseline_rate']:.0%} → "
        f"{m['best_screening_rate']:.0%} |",
        f"| MRU (robot time on experiments / wall time) | {m['mru']:.1%} |",
        f"| episodes (per hour) | {m['episodes']} ({m['episodes_per_hour']:.0f}) |",
        f"| tokens (prompt + completion) | {tok} |",
        f"| MTU (tokens per minute) | {m['mtu_tokens_per_min']:.1f} |",
        f"| progress per Mtok | {ppm} |",
        "",
        "## Experiments",
        "",
        "| agent | outcome | success | parent | hypothesis |",
        "| --- | --- | --- | --- | --- |",
    ]
    for s in steps:
        rate = "" if s["success_rate"] is None else f"{s['success_rate']:.0%}"
        par = "" if s["parent_rate"] is None else f"{s['parent_rate']:.0%}"
        hyp = (s["hypothesis"] or "").replace("|", "/").replace("\n", " ")[:140]
        lines.append(f"| {s['agent_id']} | {s['outcome']} | {rate} | {par} | {hyp} |")
    lines += ["", "## Failure cases of the best policy", ""]
    best = (m.get("winner") or {}).get("commit") or m.get("best_commit") or ""
    if not failures:
        lines.append(
            f"No failed episode of the best policy (commit `{best[:12]}`) among its "
            f"{m.get('best_policy_episodes', 0)} recorded episodes."
        )
    else:
        lines.append(f"Commit `{best[:12]}`, {len(failures)} of its failed episodes:")
        lines += [
            f"- episode `{e['id']}` (seed {e['seed']}, {e['robot_id']}): "
            f"{e['steps']} steps, dataset `{e['dataset']}`"
            for e in failures
        ]
    commit = w.get("commit") if m["goal_reached"] else m.get("best_commit")
    if commit:
        repo = w.get("shared_repo") or m.get("shared_repo") or "<run dir>/shared.git"
        lines += [
            "",
            "## Reproduce",
            "",
            f"The {'winning' if m['goal_reached'] else 'best'} policy on 200 new seeds:",
            "",
            "```bash",
            f"git clone {repo} best && cd best && git checkout {commit}",
            f"enpire rollout --repo $PWD --commit {commit} --module policy/pusht_policy.py"
            f" --episodes 200 --seed 5000000",
            "```",
        ]
    return "\n".join(lines) + "\n"


def write_report(ledger, run_id: str, out_dir: str | Path, data_dir=None) -> dict:
    out_dir = Path(out_dir).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    m = run_metrics(ledger, run_id)
    steps = ledger.agent_steps(run_id)
    plots = _plots(ledger, run_id, m)
    frames_png, failures = _failure_frames(ledger, run_id, m)
    shared = Path(data_dir or "~/.enpire/data").expanduser() / "evolve" / run_id / "shared.git"
    if shared.exists():
        m["shared_repo"] = str(shared)
    md = _summary_md(m, steps, failures)
    md_path = out_dir / f"{run_id}.md"
    md_path.write_text(md)
    lead, _, rest = md.partition("## Headline numbers")
    answer = html.escape(lead.split("\n", 1)[1].strip()).replace("\n", "<br>")
    body = [html.escape(line) for line in ("## Headline numbers" + rest).splitlines()]
    imgs = "".join(
        f'<h2>{t}</h2><img alt="{t}" src="data:image/png;base64,{plots[k]}">'
        for k, t in (
            ("success", "Success vs wall time"),
            ("mru", "Robot utilisation"),
            ("tokens", "Token spend"),
        )
    )
    if frames_png:
        imgs += (
            f'<h2>Best policy failure cases</h2><img alt="failure frames" '
            f'src="data:image/png;base64,{frames_png}">'
        )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>enpire report {html.escape(run_id)}</title><style>"
        "body{font-family:sans-serif;max-width:960px;margin:2em auto;padding:0 1em}"
        "pre{white-space:pre-wrap;background:#f6f6f6;padding:1em}img{max-width:100%}</style>"
        f"</head><body><h1>enpire run {html.escape(run_id)}</h1><p>{answer}</p>"
        f"{imgs}<h2>Summary</h2><pre>{chr(10).join(body)}</pre>"
        f"<h2>Figures (JSON)</h2><pre>{html.escape(json.dumps(m, indent=1, default=str))}</pre>"
        "</body></html>"
    )
    html_path = out_dir / f"{run_id}.html"
    html_path.write_text(page)
    (out_dir / f"{run_id}.json").write_text(json.dumps(m, indent=1, default=str))
    return {"html": str(html_path), "markdown": str(md_path), "metrics": m}

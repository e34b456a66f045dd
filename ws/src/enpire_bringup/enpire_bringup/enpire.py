"""The ``enpire`` command: start a fleet's nodes, send goals, run the demo."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path

from enpire_bringup.fleet import (
    FleetConfig,
    align_confirmation,
    default_params_file,
    plan_nodes,
)

DEFAULT_CALIBRATION_DIR = "~/.enpire/calibration"


def _fleet_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--robots", default="1", help="robot count or comma-separated names")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--sim", dest="sim", action="store_true", default=True, help="simulated cells")
    g.add_argument("--hardware", dest="sim", action="store_false", help="real SO-101 arms")
    p.add_argument("--agents", type=int, default=0, help="coding agents to host")
    p.add_argument("--agent-backend", default="offline", help="offline | openai")
    p.add_argument("--task", default="pusht")
    p.add_argument(
        "--time-scale", type=float, default=None, help="simulated cells' speed-up over real time"
    )
    p.add_argument(
        "--config", default=None, help=f"params file (default: {default_params_file()})"
    )
    p.add_argument(
        "--data-dir", default=None, help="datasets, MCAP, ledger, artifacts (default: config's)"
    )
    p.add_argument("--hardware-plugin", default="mock_components/GenericSystem",
                   help="ros2_control plugin of the arms (--hardware)")  # fmt: skip
    p.add_argument("--serial-ports", default="", help="per robot, comma-separated (--hardware)")
    p.add_argument("--camera-devices", default="", help="per robot, comma-separated (--hardware)")
    p.add_argument("--rviz", action="store_true", help="markers per robot and rviz2")
    p.add_argument(
        "--camera",
        default="",
        choices=["", "topdown", "synthetic"],
        help="sim cells' camera: the renderer from above, or a tilted real-looking "
        "camera EN reads through a calibration (made with --sim when missing)",
    )
    p.add_argument(
        "--calibration-dir",
        default=None,
        help=f"camera calibrations <robot>.yaml (default with --camera synthetic: "
        f"{DEFAULT_CALIBRATION_DIR})",
    )
    p.add_argument(
        "--max-respawns",
        type=int,
        default=5,
        help="restarts of a node that keeps dying before the launch ends",
    )
    p.add_argument(
        "--min-isolation",
        default="",
        help="refuse to run agent code below this isolation level "
        "(default: landlock with --hardware; see `enpire isolation`)",
    )
    p.add_argument("--hardware-driver", default="ros2_control", choices=("ros2_control", "python"),
                   help="--hardware: ros2_control, or enpire's Python Feetech node")  # fmt: skip


def _config(args) -> FleetConfig:
    return FleetConfig(
        robots=args.robots,
        sim=args.sim,
        agents=args.agents,
        agent_backend=args.agent_backend,
        task=args.task,
        params_file=args.config or default_params_file(),
        time_scale=args.time_scale,
        data_dir=args.data_dir,
        hardware_plugin=args.hardware_plugin,
        serial_ports=args.serial_ports,
        camera_devices=args.camera_devices,
        rviz=args.rviz,
        hardware_driver=args.hardware_driver,
        max_respawns=args.max_respawns,
        min_isolation=args.min_isolation,
        camera=args.camera,
        calibration_dir=args.calibration_dir
        or (DEFAULT_CALIBRATION_DIR if args.camera == "synthetic" else None),
    )


def _install_stop_handlers(stop: threading.Event) -> None:
    def handler(signum, _frame):
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def cmd_launch(args) -> int:
    from enpire_bringup.launcher import Launcher

    cfg = _config(args)
    specs = plan_nodes(cfg)
    if cfg.sim and cfg.camera == "synthetic" and not args.dry_run:
        ensure_sim_calibrations(cfg.robots, cfg.calibration_dir)
    if args.dry_run:
        for s in specs:
            print(f"{s.fqn}: {s.package}/{s.executable} {s.parameters}")
        return 0
    stop = threading.Event()
    _install_stop_handlers(stop)
    launcher = Launcher(specs)
    launcher.start()
    rc = launcher.wait(stop)
    if launcher.failed:
        print(
            f"enpire launch: node {launcher.failed[0]} died (exit code {launcher.failed[1]}) "
            f"after {launcher.restarts.get(launcher.failed[0], 0)} restart(s)",
            file=sys.stderr,
        )
    return rc


def _reset_goal(robot: str, task: str, seed: int, mode: str):
    from enpire_msgs.action import Reset

    goal = Reset.Goal()
    goal.robot_id, goal.task, goal.seed, goal.mode = robot, task, seed, mode
    return goal


def run_resets(goals, server: str = "/reset", timeout: float = 60.0, progress=None):
    """Send Reset goals concurrently; return their results in order."""
    from enpire_msgs.action import Reset

    def on_feedback(i, msg):
        if progress:
            progress(i, msg.feedback)

    return _send_and_wait(Reset, server, goals, on_feedback, timeout, "enpire_cli")


def _print_reset_result(robot: str, res) -> None:
    if res is None:
        print(f"  {robot}: no result")
    elif res.success:
        state = ", ".join(f"{v:.2f}" for v in res.requested_state)
        print(
            f"  {robot}: ok  seed={res.seed} mode={res.mode} start=({state}) "
            f"robot_s={res.robot_seconds:.2f} wall_s={res.wall_seconds:.2f}"
        )
    else:
        print(f"  {robot}: FAILED error_code={res.error_code}: {res.error_msg}")


def cmd_reset(args) -> int:
    goal = _reset_goal(args.robot, args.task, args.seed, args.mode)

    def progress(_i, fb):
        print(f"  [{fb.progress * 100:5.1f}%] attempt {fb.attempt}: {fb.phase}")

    (res,) = run_resets([goal], server=args.server, timeout=args.timeout, progress=progress)
    _print_reset_result(args.robot, res)
    return 0 if res is not None and res.success else 1


def watch_evolve(timeout: float, dead=lambda: None, quiet: bool = False) -> dict:
    """Follow ``/evolve/status`` with a progress bar until the run is done; its last status."""
    import rclpy
    from rclpy.qos import DurabilityPolicy, QoSProfile
    from tqdm import tqdm

    from enpire_evolve.status_msg import from_msg
    from enpire_msgs.msg import EvolveStatus

    rclpy.init()
    node = rclpy.create_node("enpire_cli_evolve")
    last: dict = {}

    def on_status(msg):
        last.clear()
        last.update(from_msg(msg))

    qos = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    node.create_subscription(EvolveStatus, "/evolve/status", on_status, qos)
    bar = None
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.5)
            gone = dead()
            if gone:
                raise RuntimeError(f"node {gone[0]} died (exit code {gone[1]})")
            if not last:
                continue
            if bar is None and not quiet:
                total = float(last.get("wall_budget") or 0) or None
                bar = tqdm(total=total, desc=f"evolve {last['run_id']}", unit="s",
                           bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s "
                           "{postfix}")  # fmt: skip
            if bar is not None:
                bar.n = min(float(last.get("wall_used") or 0), bar.total or 1e12)
                bar.set_postfix_str(" | ".join(
                    f"{a['agent_id']} {a['best_rate']:.0%} {a['state']}"
                    for a in last.get("agents", [])))  # fmt: skip
                bar.refresh()
            if last.get("state") == "done":
                return dict(last)
        raise TimeoutError(f"the evolve run did not finish within {timeout:.0f} s")
    finally:
        if bar is not None:
            bar.close()
        node.destroy_node()
        rclpy.try_shutdown()


def _print_run(status: dict) -> None:
    report = status.get("report") or {}
    m = report.get("metrics") or {}
    out = status.get("outcome") or {}
    if out.get("reason") == "goal":
        lo, hi = out.get("ci") or (0, 1)
        print(
            f"enpire: GOAL REACHED by {out['agent_id']} in {m.get('wall_seconds', 0) / 60:.1f} "
            f"min: {out['success_rate']:.1%} over {out['episodes']} fresh episodes "
            f"(95% CI {lo:.1%}-{hi:.1%}); branch {out['branch']} commit {out['commit'][:12]}"
        )
    else:
        print(
            f"enpire: goal not reached: {out.get('reason', 'unknown')}; best screening success "
            f"{m.get('best_screening_rate', 0):.0%} (baseline {m.get('baseline_rate', 0):.0%})"
        )
    if m:
        print(
            f"  experiments {m['experiments']} (kept {m['kept']}), adoptions {m['adoptions']}, "
            f"MRU {m['mru']:.1%}, episodes {m['episodes']}, tokens {m['tokens']} "
            f"(MTU {m['mtu_tokens_per_min']:.1f}/min)"
        )
    if report.get("html"):
        print(f"  report: {report['html']}\n          {report['markdown']}")
    elif report.get("error"):
        print(f"  report failed: {report['error']}")


class _NodeLog:
    """Node output to a log file; the agents' steps and errors also above the progress bar."""

    SHOW = ("evolve: agent", "ERROR", "error:", "Traceback")

    def __init__(self, path):
        from pathlib import Path

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.file = open(path, "a", buffering=1)  # noqa: SIM115 - closed by close()

    def write(self, text: str) -> None:
        from tqdm import tqdm

        self.file.write(text)
        for line in text.splitlines():
            if any(k in line for k in self.SHOW):
                tqdm.write(line.split("]: ", 1)[-1][:160])

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def cmd_demo(args) -> int:
    from pathlib import Path

    from enpire_bringup.launcher import Launcher

    cfg = _config(args)
    specs = plan_nodes(cfg)
    run_id = args.run_id or time.strftime("demo-%Y%m%d-%H%M%S")
    for s in specs:
        if s.name == "evolve_node":
            s.parameters.update(run_id=run_id, wall_budget=float(args.budget),
                                confirm_episodes=int(args.confirm_episodes))  # fmt: skip
    align_confirmation(specs)
    print(f"enpire demo: {len(cfg.robots)} simulated cell(s) at {cfg.time_scale}x, "
          f"{cfg.agents} {cfg.agent_backend} agent(s) from the naive baseline, run {run_id}, "
          f"budget {args.budget:.0f} s")  # fmt: skip
    data = Path(cfg.data_dir or "~/.enpire/data").expanduser()
    log = _NodeLog(data / "logs" / f"{run_id}.log")
    print(f"enpire demo: node output goes to {log.file.name}")
    try:
        with Launcher(specs, out=log) as launcher:
            status = watch_evolve(args.budget + 900.0, launcher.step)
    finally:
        log.close()
    _print_run(status)
    return 0 if (status.get("report") or {}).get("html") else 1


def cmd_report(args) -> int:
    from pathlib import Path

    from enpire_evolve.report import write_report
    from enpire_rollout.ledger import Ledger

    data = Path(args.data_dir or "~/.enpire/data").expanduser()
    ledger = Ledger(data / "ledger.sqlite")
    if ledger.run(args.run_id) is None:
        runs = [r["id"] for r in ledger.query("SELECT id FROM evolve_runs ORDER BY created")]
        raise ValueError(f"no run '{args.run_id}' in {data / 'ledger.sqlite'} (runs: {runs})")
    rep = write_report(ledger, args.run_id, Path(args.out or data / "reports"), data_dir=data)
    _print_run({"report": rep, "outcome": json.loads(ledger.run(args.run_id)["result"] or "{}")})
    return 0


def _policy_ref(kw: dict):
    """The PolicyRef message of the CLI's --policy/--repo/--commit/--module/--artifact/--agent."""
    from enpire_policy.policy_ref import PolicyRef

    names = {"policy": "name", "repo": "repo_path", "agent": "agent_id"}
    return PolicyRef.from_any({names.get(k, k): v for k, v in kw.items()}).to_msg()


def _rollout_goal(args_or_kw: dict):
    from enpire_msgs.action import Rollout

    kw = dict(args_or_kw)
    return Rollout.Goal(
        policy=_policy_ref(kw), task=kw.get("task") or "pusht",
        num_episodes=int(kw["episodes"]), robot_ids=list(kw.get("robot_ids") or []),
        num_robots=int(kw.get("num_robots") or 0), time_budget=float(kw.get("budget") or 0.0),
        seed=int(kw.get("seed", -1)), agent_id=kw.get("agent") or "cli",
    )  # fmt: skip


def _send_and_wait(
    action_type, server: str, goals: list, on_feedback, timeout: float, name: str
) -> list:
    """Goals from a fresh node, sent together: wait for the server, send each (again if nobody
    answers), pass feedback on as ``on_feedback(index, msg)``, fail within seconds when the
    server dies (:mod:`enpire_env.goal_liveness`); the results in order (None: not accepted)."""
    import rclpy
    from rclpy.action import ActionClient

    from enpire_env.goal_liveness import Liveness, send_goal, wait_result

    rclpy.init()
    node = rclpy.create_node(name)
    try:
        client = ActionClient(node, action_type, server)
        kind = action_type.__name__
        if not client.wait_for_server(timeout_sec=min(timeout, 60.0)):
            raise TimeoutError(f"no {kind} action server at {server}")

        def spin(dt: float) -> None:
            rclpy.spin_once(node, timeout_sec=dt)

        deadline = time.monotonic() + timeout
        lives = [Liveness(f"the {kind} server {server}") for _ in goals]
        handles = [
            send_goal(client, g, lives[i], lambda msg, i=i: on_feedback(i, msg), spin)
            for i, g in enumerate(goals)
        ]
        results = []
        for life, handle in zip(lives, handles, strict=True):
            if handle is None or not handle.accepted:
                results.append(None)
                continue
            life.beat()
            got = wait_result(
                handle.get_result_async(), life, deadline - time.monotonic(), handle, spin
            )
            results.append(got.result if got else None)
        return results
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


def run_rollout(goal, server: str = "/rollout", timeout: float = 3600.0, label: str = ""):
    """Send one Rollout goal, show a progress bar from its feedback, return its result."""
    from tqdm import tqdm

    from enpire_msgs.action import Rollout

    bar = tqdm(total=goal.num_episodes, desc=label or goal.policy.name or "rollout", unit="ep")

    def on_feedback(_i, msg):
        fb = msg.feedback
        bar.n = fb.episodes_done
        busy = sum(1 for r in fb.robots if r.phase != "idle")
        bar.set_postfix(successes=fb.successes, robots_busy=busy)
        bar.refresh()

    try:
        (res,) = _send_and_wait(
            Rollout, server, [goal], on_feedback, timeout, "enpire_cli_rollout"
        )
        if res is not None:
            bar.n = res.num_episodes
            bar.refresh()
        return res
    finally:
        bar.close()


def run_train(goal, server: str = "/train", timeout: float = 7200.0):
    """Send one Train goal, show its progress (stage, iteration, score), return its result."""
    from tqdm import tqdm

    from enpire_msgs.action import Train

    bar = tqdm(total=100, desc=goal.recipe, unit="%")

    def on_feedback(_i, msg):
        fb = msg.feedback
        bar.n = int(round(100 * fb.progress))
        bar.set_postfix(
            stage=fb.stage, it=f"{fb.iteration}/{fb.iterations_total}", score=f"{fb.score:.3f}"
        )
        bar.refresh()

    try:
        (res,) = _send_and_wait(Train, server, [goal], on_feedback, timeout, "enpire_cli_train")
        return res
    finally:
        bar.close()


def cmd_train(args) -> int:
    from enpire_msgs.action import Train

    goal = Train.Goal(
        recipe=args.recipe, policy=_policy_ref(vars(args)), task=args.task,
        episode_ids=[e for e in args.episode_ids.split(",") if e],
        datasets=[d for d in args.datasets.split(",") if d],
        hyperparameters=args.hyperparameters, time_budget=args.time_budget, device=args.device,
    )  # fmt: skip
    res = run_train(goal, args.server, args.timeout)
    if res is None:
        print(f"  {args.recipe}: the goal was not accepted")
        return 1
    if res.error_code:
        print(f"  {args.recipe}: error_code={res.error_code}: {res.error_msg}")
        return 1
    print(f"  {args.recipe}: artifact {res.artifact_path} ({res.wall_seconds:.0f} s)")
    print(f"  metrics: {res.metrics}")
    return 0


def _print_rollout_result(res, label: str) -> None:
    if res is None:
        print(f"  {label}: no result")
        return
    if res.error_code:
        print(f"  {label}: error_code={res.error_code}: {res.error_msg}")
    print(
        f"  {label}: {res.num_successes}/{res.num_episodes} successes = "
        f"{res.success_rate:.0%} (95% CI {res.ci_low:.0%}-{res.ci_high:.0%}), "
        f"robot time {res.robot_seconds:.0f} s, wall {res.wall_seconds:.0f} s"
    )


def cmd_rollout(args) -> int:
    goal = _rollout_goal(vars(args))
    res = run_rollout(goal, args.server, args.timeout)
    _print_rollout_result(res, args.policy or args.repo or args.artifact)
    return 0 if res is not None and res.error_code == 0 else 1


def _policy_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--policy", default="heuristic", help="built-in policy name")
    p.add_argument("--repo", default="", help="git worktree with agent policy code")
    p.add_argument("--commit", default="", help="commit of --repo ('' = as it is)")
    p.add_argument("--module", default="policy", help="policy module in --repo")
    p.add_argument("--artifact", default="", help="trained artifact directory")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="enpire",
        description="enpire: reset, run, verify and improve robot policies with coding agents.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("launch", help="start the fleet's nodes as processes (Ctrl-C stops)")
    _fleet_args(p)
    p.add_argument("--dry-run", action="store_true", help="print the node plan and exit")
    p.set_defaults(func=cmd_launch)

    p = sub.add_parser("reset", help="send one Reset goal and print feedback and result")
    p.add_argument("--robot", default="robot_0")
    p.add_argument("--task", default="pusht")
    p.add_argument("--seed", type=int, default=-1)
    p.add_argument("--mode", default="", help="pick_place | teleport (default: node's)")
    p.add_argument("--server", default="/reset", help="Reset action name")
    p.add_argument("--timeout", type=float, default=60.0)
    p.set_defaults(func=cmd_reset)

    p = sub.add_parser("rollout", help="run a policy for N episodes on the fleet")
    _policy_args(p)
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-robots", type=int, default=0, help="0 = all free robots")
    p.add_argument("--budget", type=float, default=0.0, help="wall seconds (0 = none)")
    p.add_argument("--agent", default="cli")
    p.add_argument("--server", default="/rollout")
    p.add_argument("--timeout", type=float, default=3600.0)
    p.set_defaults(func=cmd_rollout)

    p = sub.add_parser("train", help="improve a policy with a recipe (Train goal, progress)")
    p.add_argument(
        "--recipe",
        default="heuristic_search",
        help="heuristic_search | bc_mlp | bc_cnn | residual_rl",
    )
    _policy_args(p)
    p.add_argument("--task", default="pusht")
    p.add_argument("--episode-ids", default="", help="training data: comma-separated ids")
    p.add_argument("--datasets", default="", help="training data: comma-separated folders")
    p.add_argument("--hyperparameters", default="{}", help="JSON object")
    p.add_argument("--time-budget", type=float, default=0.0, help="compute s (0 = node's)")
    p.add_argument("--device", default="", help="'' (auto), cpu or cuda")
    p.add_argument("--agent", default="cli")
    p.add_argument("--server", default="/train")
    p.add_argument("--timeout", type=float, default=7200.0)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "demo", help="the whole loop in simulation: cells, EN/PI/R nodes and two offline agents "
        "improving the naive baseline until the goal or the budget; then the report",
    )  # fmt: skip
    _fleet_args(p)
    p.add_argument("--budget", type=float, default=780.0, help="wall seconds for the agents")
    p.add_argument(
        "--confirm-episodes", type=int, default=100,
        help="fresh episodes that confirm the goal (200 take ~9 min on 2 cores)",
    )  # fmt: skip
    p.add_argument("--run-id", default="", help="run name (default: demo-<time>)")
    p.set_defaults(func=cmd_demo, robots="4", time_scale=5.0, agents=2)

    p = sub.add_parser("report", help="(re)write the morning report of a run from the ledger")
    p.add_argument("--run-id", required=True)
    p.add_argument("--data-dir", default=None, help="default ~/.enpire/data")
    p.add_argument("--out", default=None, help="default <data-dir>/reports")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "calibrate",
        help="camera calibration of a cell: intrinsics (ChArUco), the table (the "
        "mat's ArUco markers) and the colour model; validate it; print the board",
    )
    p.add_argument("what", choices=["capture", "camera", "validate", "board"])
    p.add_argument("--robot", default="robot_0")
    p.add_argument("--dir", default=DEFAULT_CALIBRATION_DIR, help="where <robot>.yaml is stored")
    p.add_argument("--board", default="", help="camera: frames of the ChArUco board (a glob)")
    p.add_argument("--empty", default="", help="camera: frames of the mat without the block")
    p.add_argument("--block", default="", help="camera: the same view with the block on the mat")
    p.add_argument("--image", default="", help="validate: a frame of the mat")
    p.add_argument(
        "--sim", action="store_true", help="take the frames from the sim cell's synthetic camera"
    )
    p.add_argument("--tilt", type=float, default=20.0, help="--sim: camera tilt [deg]")
    p.add_argument("--seed", type=int, default=0, help="--sim: the camera's noise seed")
    p.add_argument("--out", default=".", help="board, capture: folder to write the images to")
    p.add_argument(
        "--source",
        default="",
        help="capture: /dev/videoN, its index, a video file or ros:<image topic>",
    )
    p.add_argument("--name", default="frame", help="capture: file name prefix (board, empty, ...)")
    p.add_argument("--count", type=int, default=1, help="capture: frames to take")
    p.add_argument(
        "--interval",
        type=float,
        default=0.0,
        help="capture: seconds between frames (0: press Enter for each)",
    )
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser(
        "doctor",
        help="check a hardware cell (servos, voltage, temperature, calibration "
        "ranges, camera, safety limits); exit 1 on a fault",
    )
    p.add_argument("--port", default="", help="the arm's serial port, e.g. /dev/ttyACM0")
    p.add_argument("--arm-calibration", default="", help="LeRobot calibration JSON of the arm")
    p.add_argument("--supply-volts", type=float, default=0.0, help="the servos' supply (0: any)")
    p.add_argument("--camera", default="", help="V4L2 device (/dev/video0), index or video file")
    p.add_argument("--frames", type=int, default=30, help="frames to measure the rate over")
    p.add_argument("--min-fps", type=float, default=10.0)
    p.add_argument(
        "--timeout-margin-ms",
        type=float,
        default=0.0,
        help="extra wait for a servo's status packet (slow USB adapters)",
    )
    p.add_argument("--robot", default="robot_0")
    p.add_argument("--calibration-dir", default=DEFAULT_CALIBRATION_DIR)
    p.add_argument("--params", default="", help="params file (default: enpire_bringup's)")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser(
        "isolation", help="which isolation levels for agent code this machine offers, and why not"
    )
    p.add_argument("--min", default="rlimits", help="exit 1 when the best level is below this")
    p.set_defaults(func=cmd_isolation)

    p = sub.add_parser(
        "mcp",
        add_help=False,
        help="the lab's tools as an MCP server (stdio or HTTP) for Claude Code, Codex, ...; "
        "`enpire mcp --help` for its options",
    )
    p.add_argument("args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_mcp)
    p = sub.add_parser(
        "agents",
        add_help=False,
        help="host coding agents (claude, codex, a command) against a lab; "
        "`enpire agents --help` for its options",
    )
    p.add_argument("args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_agents)
    return parser


def ensure_sim_calibrations(robots: list[str], calibration_dir: str) -> None:
    """Every simulated robot seen through the synthetic camera needs a calibration: make the
    missing ones as `enpire calibrate camera --sim` would (the same camera for all)."""
    from enpire_env.calibration import calibration_path

    cal_dir = Path(calibration_dir).expanduser()
    missing = [r for r in robots if not calibration_path(cal_dir, r).exists()]
    if not missing:
        return
    from enpire_env.perception import calibrate_synthetic

    print(f"calibrating the synthetic camera for {', '.join(missing)} (as `enpire calibrate "
          "camera --sim`) ...", flush=True)  # fmt: skip
    calibrate_synthetic(cal_dir, missing)


def _read_images(pattern: str) -> list:
    import glob

    import cv2

    paths = sorted(glob.glob(str(Path(pattern).expanduser())))
    if not paths:
        raise ValueError(f"no image matches {pattern!r}")
    out = []
    for path in paths:
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"cannot read image {path}")
        out.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    return out


def _synthetic_camera(args):
    from enpire_env.camera_sim import CameraConfig, SyntheticCamera

    return SyntheticCamera(CameraConfig(tilt_deg=args.tilt, seed=args.seed))


def cmd_calibrate(args) -> int:
    from enpire_env.calibration import CalibrationError, CameraCalibration, calibration_path

    cal_dir = Path(args.dir).expanduser()
    path = calibration_path(cal_dir, args.robot)
    try:
        if args.what == "board":
            return _write_board(Path(args.out).expanduser())
        if args.what == "capture":
            return _capture(args)
        if args.what == "camera":
            from enpire_env.perception import calibrate_from_frames

            if args.sim:
                from enpire_env.perception import synthetic_calibration_frames
                from enpire_env.sim_cell import PushTCell

                frames = synthetic_calibration_frames(_synthetic_camera(args), PushTCell())
            else:
                if not (args.empty and args.block):
                    raise ValueError("give --empty and --block frames (or --sim)")
                frames = {
                    "board": _read_images(args.board) if args.board else [],
                    "empty": _read_images(args.empty),
                    "block": _read_images(args.block),
                }
            print(
                f"calibrating {args.robot}: {len(frames['board'])} board views, "
                f"{len(frames['empty'])} frames without the block, {len(frames['block'])} "
                "with it",
                flush=True,
            )
            calib = calibrate_from_frames(
                frames["board"], frames["empty"], frames["block"], args.robot
            )
            calib.save(path)
            if calib.camera_matrix is not None:
                rms = calib.intrinsics_rms_px
                print(f"  intrinsics: RMS {rms:.3f} px over the board and mat views")
                print(f"  camera tilt from vertical: {calib.tilt_deg():.1f} deg")
            else:
                print("  no board views: table by homography only (no lens distortion model)")
            print(f"  mat markers' reprojection error: {calib.reprojection_px:.3f} px")
            print(f"  {calib.workspace_px_per_pixel():.2f} workspace px per camera pixel")
            c = calib.colours
            print(
                f"  colours (table = 1): block {tuple(round(v, 3) for v in c.block)}, goal "
                f"{tuple(round(v, 3) for v in c.goal)}, noise {c.noise:.3f}"
            )
            print(f"wrote {path}")
            return 0
        # validate
        calib = CameraCalibration.load(path)
        if args.sim:
            from enpire_env.sim_cell import PushTCell

            frame = _synthetic_camera(args).view(PushTCell())
        elif args.image:
            frame = _read_images(args.image)[0]
        else:
            raise ValueError("give --image FILE (a frame of the mat) or --sim")
        v = calib.validate(frame)
        print(
            f"{args.robot}: markers {v['markers']}: reprojection RMS {v['rms_px']:.3f} px, "
            f"max {v['max_px']:.3f} px (~{v['rms_workspace_px']:.2f} workspace px)"
        )
        if v["rms_workspace_px"] > 2.0:
            print("the camera or the mat moved since calibration: calibrate again")
            return 1
        return 0
    except CalibrationError as e:
        print(f"enpire calibrate {args.what}: {e}", file=sys.stderr)
        return 1


def _capture(args) -> int:
    import cv2

    from enpire_env.capture import CaptureError, capture

    if not args.source:
        raise ValueError("give --source: /dev/videoN, its index, a video file or ros:<topic>")
    out = Path(args.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)

    def prompt(i: int) -> None:
        input(f"[{i + 1}/{args.count}] {args.name}: press Enter to take the frame ")

    try:
        for i, frame in enumerate(capture(args.source, args.count, args.interval, prompt)):
            path = out / f"{args.name}_{i:02d}.png"
            cv2.imwrite(str(path), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            print(f"[{i + 1}/{args.count}] wrote {path} ({frame.shape[1]}x{frame.shape[0]})",
                  flush=True)  # fmt: skip
    except CaptureError as e:
        print(f"enpire calibrate capture: {e}", file=sys.stderr)
        return 1
    return 0


def _write_board(out: Path) -> int:
    import cv2
    import numpy as np

    from enpire_env.camera_sim import charuco_board, mat_texture

    out.mkdir(parents=True, exist_ok=True)
    board = charuco_board().generateImage((1400, 1000), marginSize=40)
    cv2.imwrite(str(out / "charuco_board.png"), board)
    blank = np.full((512, 512, 3), 255, np.uint8)
    cv2.imwrite(str(out / "mat_markers.png"), mat_texture(blank))
    print(
        f"wrote {out / 'charuco_board.png'} (7x5 squares: print so that a square measures "
        f"40 mm) and {out / 'mat_markers.png'} (the mat: print so that its inner square, the "
        "workspace, measures the params' workspace_size)"
    )
    return 0


def cmd_doctor(args) -> int:
    from enpire_env import doctor

    findings = doctor.run(
        port=args.port,
        arm_calibration=args.arm_calibration,
        camera=args.camera,
        calibration_dir=str(Path(args.calibration_dir).expanduser()),
        robot_id=args.robot,
        params_file=args.params or str(default_params_file()),
        supply_volts=args.supply_volts,
        frames=args.frames,
        min_fps=args.min_fps,
        timeout_margin_ms=args.timeout_margin_ms,
    )
    for f in findings:
        print(f.line())
    faults = sum(f.level == doctor.FAULT for f in findings)
    warns = sum(f.level == doctor.WARN for f in findings)
    print(f"{faults} fault(s), {warns} warning(s)")
    return 1 if faults else 0


def cmd_mcp(args) -> int:
    from enpire_evolve import mcp_server

    return mcp_server.main(args.args)


def cmd_agents(args) -> int:
    from enpire_evolve import agent_host

    return agent_host.main(args.args)


def cmd_isolation(args) -> int:
    from enpire_policy import isolation

    print(isolation.probe().describe())
    try:
        isolation.resolve_level("auto", args.min)
    except isolation.IsolationError as e:
        print(f"enpire isolation: {e}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("mcp", "agents"):  # their own parsers take every option
        args = argparse.Namespace(
            command=argv[0], args=argv[1:], func=cmd_mcp if argv[0] == "mcp" else cmd_agents
        )
        return args.func(args)
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TimeoutError, RuntimeError) as e:
        print(f"enpire {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""The ``enpire`` command: start a fleet's nodes, send goals, run the demo."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time

from enpire_bringup.fleet import FleetConfig, default_params_file, plan_nodes


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


def _config(args) -> FleetConfig:
    return FleetConfig(
        robots=args.robots,
        sim=args.sim,
        agents=args.agents,
        agent_backend=args.agent_backend,
        task=args.task,
        params_file=args.config or default_params_file(),
        time_scale=args.time_scale,
    )


def _install_stop_handlers(stop: threading.Event) -> None:
    def handler(signum, _frame):
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def cmd_launch(args) -> int:
    from enpire_bringup.launcher import Launcher

    specs = plan_nodes(_config(args))
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
            f"enpire launch: node {launcher.failed[0]} died (exit code {launcher.failed[1]})",
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
    import rclpy
    from rclpy.action import ActionClient

    from enpire_msgs.action import Reset

    rclpy.init()
    node = rclpy.create_node("enpire_cli")
    try:
        client = ActionClient(node, Reset, server)
        if not client.wait_for_server(timeout_sec=timeout):
            raise TimeoutError(f"no Reset action server at {server} after {timeout:.0f} s")

        def on_feedback(i):
            return lambda fb: progress and progress(i, fb.feedback)

        sends = [
            client.send_goal_async(g, feedback_callback=on_feedback(i))
            for i, g in enumerate(goals)
        ]
        results = []
        deadline = time.monotonic() + timeout
        for f in sends:
            rclpy.spin_until_future_complete(node, f, timeout_sec=deadline - time.monotonic())
            handle = f.result()
            if handle is None or not handle.accepted:
                results.append(None)
                continue
            rf = handle.get_result_async()
            rclpy.spin_until_future_complete(node, rf, timeout_sec=deadline - time.monotonic())
            results.append(rf.result().result if rf.result() else None)
        return results
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


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


def cmd_demo(args) -> int:
    from tqdm import tqdm

    from enpire_bringup.launcher import Launcher

    cfg = _config(args)
    specs = plan_nodes(cfg)
    print(f"enpire demo: starting {len(specs)} node(s) for robots {cfg.robots}")
    with Launcher(specs) as launcher:
        goals, robots = [], []
        for k in range(args.resets):
            robot = cfg.robots[k % len(cfg.robots)]
            goals.append(_reset_goal(robot, cfg.task, args.seed + k, ""))
            robots.append(robot)
        bar = tqdm(total=len(goals), desc="resets", unit="reset")
        results = []
        # one reset per robot at a time: the robots work in parallel, each through its queue
        n = len(cfg.robots)
        for wave in range(0, len(goals), n):
            results += run_resets(goals[wave : wave + n], timeout=args.timeout)
            bar.update(len(goals[wave : wave + n]))
        bar.close()
        dead = launcher.poll()
    ok = sum(1 for r in results if r is not None and r.success)
    print(f"enpire demo: {ok}/{len(results)} resets succeeded")
    for robot, res in zip(robots, results, strict=True):
        _print_reset_result(robot, res)
    if dead:
        print(f"enpire demo: node {dead[0]} died (exit code {dead[1]})", file=sys.stderr)
        return 1
    return 0 if ok == len(results) else 1


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

    p = sub.add_parser(
        "demo", help="start simulated cells and the nodes, run the loop (for now: resets)"
    )
    _fleet_args(p)
    p.add_argument("--resets", type=int, default=4, help="reset goals to send")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=300.0)
    p.set_defaults(func=cmd_demo, robots="2", time_scale=5.0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TimeoutError) as e:
        print(f"enpire {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

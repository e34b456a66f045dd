"""What the fleet's own processes cost (issue 15), in one run:

1. idle: `enpire launch --robots 1` with no goal, CPU of every node process over a window;
2. a step: the same fleet running heuristic episodes (`enpire rollout`), CPU of every node
   process and of every process it started (policy workers: sampled while they live, see
   CpuMeter) divided by the robot-steps it drove (control periods of cell time, resets and
   episodes alike), the wall time per policy step, and the same episodes in one process (no
   ROS) for the ROS / in-process ratio: bare (the policy's steps on a PushTCell, nothing
   recorded) and as the same goal (the rollout service over an in-process SimRobot, recorded
   the same way);
3. throughput: episodes per hour with 1, 4 and 8 cells, each fleet running one long goal;
4. what this machine charges for idling between steps, which every step of a fleet pays: the same
   in-process episodes paced to the control period (as SimRobot with the fleet's time_scale),
   a thread that only sleeps one control period per wake, and the floor of a ROS step: its
   two messages alone (CellState out, JointTrajectory back) between two processes at the
   control period, read as the nodes read them.

    scripts/run python bench/fleet_cost.py [--cells 1 4 8] [--time-scale 5]
        [--throughput-time-scale 2] [--window 120] [--out bench/results/fleet_cost.txt]

Targets: idle <= 2 % of a core per robot, <= 3 ms CPU per robot-step, ROS / in-process <= 4x,
8 cells vs 1 >= 6x episodes per hour at a time scale at which 8 cells fit on the machine.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")
ENPIRE = [sys.executable, "-m", "enpire_bringup.enpire"]


def _stat(pid: int) -> tuple[int, float, float] | None:
    """(start time, own utime + stime, + children's cutime + cstime) of ``pid`` [s]."""
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    own = (int(f[11]) + int(f[12])) / TICK
    return int(f[19]), own, own + (int(f[13]) + int(f[14])) / TICK


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[-300:]
    except (FileNotFoundError, ProcessLookupError):
        return "?"


def _children(pid: int) -> list[int]:
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            out += [int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
    except (FileNotFoundError, ProcessLookupError):
        pass
    return out


class CpuMeter:
    """CPU used by each node process and every process it started, over a window, sampled
    every ``period`` s. A process's children count in its ``cutime`` only once it has reaped
    them; a policy worker runs as bwrap's grandchild and is not reaped by the node when it
    ends (its CPU never reaches the node's cutime), so workers and every other deeper
    descendant are sampled while they live (one that ends between two samples loses at most
    its last ``period`` s, idle for a closed worker). Direct children that ended are in the
    node's cutime, so their samples are dropped."""

    def __init__(self, nodes: dict[str, int], period: float = 0.2):
        self.nodes, self.period = nodes, period
        self._base = {n: (_stat(p) or (0, 0.0, 0.0))[2] for n, p in nodes.items()}
        self._seen: dict[tuple[int, int], list] = {}  # (pid, start) -> [node, depth, first, last]
        self._argv: dict[tuple[int, int], str] = {}  # direct children started in the window
        self._stop = threading.Event()
        self._sample(first=True)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self, first: bool = False) -> set:
        alive = set()
        for name, pid in self.nodes.items():
            todo = [(c, 1) for c in _children(pid)]
            while todo:
                child, depth = todo.pop()
                st = _stat(child)
                if st is None:
                    continue
                key = (child, st[0])
                alive.add(key)
                if key not in self._seen:
                    self._seen[key] = [name, depth, st[1] if first else 0.0, 0.0]
                    if not first and depth == 1:  # started by the node in the window
                        self._argv[key] = _cmdline(child)
                self._seen[key][3] = st[1]
                todo += [(c, depth + 1) for c in _children(child)]
        return alive

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self._sample()

    def started(self, name: str) -> list[str]:
        """Command lines of the processes ``name`` started itself during the window."""
        return [a for k, a in self._argv.items() if self._seen[k][0] == name]

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        alive = self._sample()
        used = {n: (_stat(p) or (0, 0.0, 0.0))[2] - self._base[n] for n, p in self.nodes.items()}
        for key, (name, depth, first, last) in self._seen.items():
            if depth > 1 or key in alive:  # an ended direct child is in the node's cutime
                used[name] += last - first
        return used


class Fleet:
    """``enpire launch`` in a process group, with the pids of its nodes."""

    def __init__(self, robots: int, time_scale: float, data_dir: str, env: dict, config: str = ""):
        self.lines: list[str] = []
        extra = ["--config", config] if config else []
        self.proc = subprocess.Popen(
            [
                *ENPIRE,
                "launch",
                "--robots",
                str(robots),
                "--time-scale",
                str(time_scale),
                "--data-dir",
                data_dir,
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,
        )
        threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True).start()
        deadline = time.monotonic() + 180
        while not (self._said("rollout server ready") and self._said("reset server ready")):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError("fleet did not start:\n" + "".join(self.lines[-30:]))
            time.sleep(0.2)
        self.nodes = {
            m.group(1): int(m.group(2))
            for ln in list(self.lines)
            if (m := re.search(r"started (\S+) \(pid (\d+)\)", ln))
        }
        self.nodes.pop("/train_node", None)  # PI: not part of the robot fleet

    def _said(self, text: str) -> bool:
        return any(text in ln for ln in list(self.lines))

    def meter(self) -> CpuMeter:
        return CpuMeter(self.nodes)

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


def rollout(env: dict, episodes: int, seed: int, budget: float = 0.0) -> None:
    cmd = [
        *ENPIRE,
        "rollout",
        "--policy",
        "heuristic",
        "--episodes",
        str(episodes),
        "--seed",
        str(seed),
        "--agent",
        "bench",
    ]
    if budget:
        cmd += ["--budget", str(budget)]
    subprocess.run(
        cmd,
        env=env,
        check=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=3600,
    )


def ledger_rows(data_dir: str, sql: str, args=()) -> list[dict]:
    from enpire_rollout.ledger import LedgerReader

    return LedgerReader(Path(data_dir) / "ledger.sqlite").query(sql, args, max_rows=100000)


def no_video_config(tmp: str) -> str:
    """The default params file with the rollout node's video and MCAP frames off."""
    import yaml

    from enpire_bringup.fleet import default_params_file

    cfg = yaml.safe_load(default_params_file().read_text())
    cfg["rollout_node"]["ros__parameters"].update(video_size=0, mcap_image_every=0)
    path = Path(tmp) / "no-video.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def idle_and_step(args, env: dict, out: list[str], video: bool) -> float:
    with tempfile.TemporaryDirectory(prefix="enpire-cost-") as data:
        fleet = Fleet(1, args.time_scale, data, env, "" if video else no_video_config(data))
        try:
            time.sleep(args.settle)
            meter = fleet.meter()
            t0 = time.monotonic()
            time.sleep(args.idle_seconds if video else 0.0)
            wall = time.monotonic() - t0
            idle = meter.stop()
            # a first goal pays once-per-process costs (imports, the verifier's colour table,
            # the policy worker's start): not a step's cost, so not in the measurement
            rollout(env, 1, args.seed - 1)
            t_measured = time.time()
            meter = fleet.meter()
            rollout(env, args.episodes, args.seed)
            used = meter.stop()
            started = meter.started("/rollout_node")
        finally:
            fleet.close()
        eps = ledger_rows(
            data,
            "SELECT steps, robot_seconds, reset_seconds, wall_start, "
            "wall_end, status FROM episodes WHERE wall_start >= ?",
            (t_measured,),
        )
        ivs = ledger_rows(
            data,
            "SELECT state, t_start, t_end FROM robot_intervals WHERE t_start >= ?",
            (t_measured,),
        )
    if video:
        total = sum(idle.values())
        out.append(
            f"idle: enpire launch --robots 1 --time-scale {args.time_scale:g}, no goal, "
            f"{wall:.0f} s window after {args.settle:g} s settling"
        )
        for n, s in sorted(idle.items(), key=lambda kv: -kv[1]):
            out.append(f"  {n:<28} {100 * s / wall:6.2f} % of a core")
        out.append(f"  idle fleet: {100 * total / wall:.2f} % of a core per robot (target <= 2 %)")
    out.append(
        "step, "
        + (
            "with the default video recording (96 px frames every step, "
            "MCAP with every 5th camera frame):"
            if video
            else "state only (video_size 0, mcap_image_every 0):"
        )
    )
    steps = sum(r["steps"] for r in eps)
    robot_s = sum(r["robot_seconds"] + r["reset_seconds"] for r in eps)
    robot_steps = robot_s * args.control_hz
    cpu = sum(used.values())
    ep_wall = sum(
        iv["t_end"] - iv["t_start"] for iv in ivs if iv["state"] == "episode" and iv["t_end"]
    )
    out.append(
        f"  {len(eps)} heuristic episodes ({steps} policy steps, "
        f"{robot_steps:.0f} robot-steps with resets) on 1 cell, after a 1-episode warm-up goal"
    )
    workers = [a for a in started if "sandbox_worker" in a]
    others = len(started) - len(workers)
    out.append(
        f"  policy workers R started meanwhile: {len(workers)} (the warm-up goal's stays warm "
        f"for the next goal of its policy: worker_keep); other processes: {others}"
    )
    for a in started:
        if a not in workers:
            out.append(f"    {a}")
    for n, s in sorted(used.items(), key=lambda kv: -kv[1]):
        out.append(f"  {n:<28} {1000 * s / robot_steps:6.2f} ms CPU per robot-step")
    per_step = 1000 * cpu / robot_steps
    out.append(f"  {per_step:.2f} ms CPU per robot-step (all processes; target <= 3 ms)")
    period = 1000 / args.control_hz / args.time_scale
    out.append(
        f"  {1000 * ep_wall / max(steps, 1):.1f} ms wall per policy step (control "
        f"period at time_scale {args.time_scale:g}: {period:.0f} ms)"
    )
    return per_step


def in_process(args, paced: bool) -> float:
    """CPU ms per policy step of the same heuristic episodes in this process (no ROS): as fast
    as they compute, or ``paced`` to the fleet's control period in wall time (R's in-process
    robot, SimRobot, with the fleet's time_scale), which idles between steps as a fleet does."""
    from enpire_env.sim_cell import PushTCell
    from enpire_policy.episode import run_on_port
    from enpire_policy.heuristic import HeuristicPushT
    from enpire_rollout.rollout_service import SimRobot

    pol = HeuristicPushT()
    robot = SimRobot("bench", PushTCell(), time_scale=args.time_scale if paced else 0.0)
    t, steps = time.process_time(), 0
    for s in range(args.seed, args.seed + args.episodes):
        robot.reset(s)
        pol.reset(s)
        steps += run_on_port(robot, pol, s).steps
    return 1000 * (time.process_time() - t) / max(steps, 1)


def _service_peer(video: bool, episodes: int, seed: int) -> None:
    """The same goal as the fleet's, recorded the same way, without ROS: the rollout service
    over an in-process SimRobot (as ``enpire agents``' local cells), its policy worker
    sandboxed, a ledger, the dataset with or without video; as fast as it computes, after a
    one-episode warm-up goal. Prints the CPU ms per robot-step of this process and every
    process it started (the policy worker)."""
    from enpire_policy.policy_ref import PolicyRef
    from enpire_rollout.ledger import Ledger
    from enpire_rollout.rollout_core import RolloutRequest
    from enpire_rollout.rollout_service import RolloutService, ServiceConfig, SimRobot

    def goal(n: int, first: int) -> RolloutRequest:
        return RolloutRequest(PolicyRef(name="heuristic"), "pusht", n, [], 0, 0.0, first, "bench")

    with tempfile.TemporaryDirectory(prefix="enpire-cost-") as data:
        svc = RolloutService(
            {"robot_0": SimRobot("robot_0")},
            Ledger(f"{data}/ledger.sqlite"),
            data,
            ServiceConfig(video_size=96 if video else 0),
        )
        try:
            svc.wait(svc.submit(goal(1, seed - 1)))
            meter = CpuMeter({"service": os.getpid()})
            out = svc.wait(svc.submit(goal(episodes, seed)))
            cpu = sum(meter.stop().values())
        finally:
            svc.close()
    steps = sum(r.run.steps for r in out.episodes if r.run is not None)
    print(f"{1000 * cpu / max(steps, 1):.4f}", flush=True)


def in_process_service(args, env: dict, video: bool) -> float:
    """CPU ms per robot-step of the fleet's goal done by the rollout service in one process
    (``_service_peer``, in a process of its own)."""
    from enpire_policy.isolation import SMALL_MATH_ENV

    cmd = [sys.executable, __file__, "--service-peer", str(int(video)), str(args.episodes)]
    env = {**SMALL_MATH_ENV, **env}  # as the launcher runs the rollout node
    run = subprocess.run(
        [*cmd, str(args.seed)], env=env, stdout=subprocess.PIPE, text=True, timeout=600
    )
    return float(run.stdout.split()[-1])


def _tree_cpu(pid: int) -> float:
    """CPU seconds used so far by the processes ``pid`` started, and theirs (not ``pid``)."""
    total = 0.0
    for child in _children(pid):
        st = _stat(child)
        total += (st[1] if st else 0.0) + _tree_cpu(child)
    return total


def _floor_peer(role: str, period: float, steps: int) -> None:
    """One side of the messaging floor: the cell publishes a CellState per period and takes
    the commands that came; the policy side answers each state with a JointTrajectory. Both
    send and read them as the nodes do (reliable publishers, best-effort StreamNode
    subscriptions, the messages as bytes through enpire_env.cdr). Role ``contained``: the
    policy side as R runs agent code, asking a policy in its sandboxed worker for each answer
    (the built-in ``naive``, whose act() is a few small numpy operations; the worker's CPU
    counts). Prints its CPU ms per step."""
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from trajectory_msgs.msg import JointTrajectory

    from enpire_env import cdr
    from enpire_env.kinematics import JOINT_NAMES
    from enpire_env.node_utils import STREAM_QOS, StreamNode
    from enpire_msgs.msg import BlockPose, CellState

    rclpy.init()
    node = rclpy.create_node(f"floor_{role}")
    streams = StreamNode(node)
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    if role == "cell":
        pub = node.create_publisher(CellState, "floor/cell_state", qos)
        streams.subscribe(
            JointTrajectory,
            "floor/joint_trajectory",
            cdr.decode_joint_trajectory,
            STREAM_QOS,
            raw=True,
        )
        while pub.get_subscription_count() == 0:
            time.sleep(0.1)
        time.sleep(1.0)
        t0, nxt = time.process_time(), time.monotonic()
        for i in range(steps):
            pose = BlockPose(visible=True, x=250.0, y=250.0, theta=0.5)
            header = cdr.Header(cdr.Stamp(i, 0))
            pub.publish(cdr.encode_cell_state(header, JOINT_NAMES, [0.1] * 6, [0.0] * 6, pose))
            nxt += period
            time.sleep(max(0.0, nxt - time.monotonic()))
    else:
        pub = node.create_publisher(JointTrajectory, "floor/joint_trajectory", qos)
        worker = None
        if role == "contained":
            from enpire_env.pusht_geometry import GOAL_POSE
            from enpire_policy.sandbox import PolicySource, SandboxedPolicy

            worker = SandboxedPolicy(PolicySource("", "enpire_policy.naive")).start()
            worker.reset(0)
            obs = dict(tip=[200.0, 200.0], tip_height=0.0, joints=[0.1] * 6, step=0, dt=0.1)
            obs.update(goal_pose=list(GOAL_POSE), block_pose=[250.0, 250.0, 0.5])
        answered, started, done = [0], [0.0, 0.0], threading.Event()

        def answer(data: bytes) -> None:
            cdr.decode_cell_state(data)
            if worker is not None:
                obs["step"] = answered[0]
                worker.act(obs)
            pub.publish(cdr.encode_joint_trajectory(JOINT_NAMES, [(0.1, [0.1] * 6)]))
            answered[0] += 1
            if answered[0] == 1:
                started[:] = time.process_time(), _tree_cpu(os.getpid())
            elif answered[0] == steps:
                done.set()

        streams.subscribe(CellState, "floor/cell_state", answer, STREAM_QOS, raw=True)
        done.wait(steps * period + 60)
        # the clock started at the first state: the steps answered after it
        t0, steps = started[0] - (_tree_cpu(os.getpid()) - started[1]), max(answered[0] - 1, 1)
        if worker is not None:
            worker.close()
    print(f"{1000 * (time.process_time() - t0) / steps:.4f}", flush=True)
    streams.close()
    node.destroy_node()
    rclpy.try_shutdown()


def messaging_floor(
    args, env: dict, steps: int = 500, contained: bool = False
) -> tuple[float, float]:
    """CPU ms per step of a policy step's two messages alone (state to R, command to the cell)
    between two processes at the fleet's control period: (cell side, policy side); with
    ``contained``, the policy side asks a policy in its sandboxed worker for each answer."""
    from enpire_policy.isolation import SMALL_MATH_ENV

    period = 1.0 / (args.control_hz * args.time_scale)
    cmd = [sys.executable, __file__, "--floor-peer"]
    env = {**SMALL_MATH_ENV, **env}  # as the launcher runs the nodes
    peers = [
        subprocess.Popen(
            [*cmd, role, str(period), str(steps)], env=env, stdout=subprocess.PIPE, text=True
        )
        for role in ("contained" if contained else "policy", "cell")
    ]
    cpu = [float(p.communicate(timeout=300)[0].split()[-1]) for p in peers]
    return cpu[1], cpu[0]


def throughput(cells: int, args, env: dict) -> tuple[float, float]:
    """Episodes per hour of a fleet of ``cells`` running one long goal, and the CPU ms per
    robot-step of all its processes over the same window: the CPU from the end of the warm-up
    to the end of the goal over the robot-steps (cell seconds of resets and episodes x
    control_hz) of the episodes that ended in it (an episode running across either end of the
    window is on one side only, so the figure is good to about one episode per cell)."""
    with tempfile.TemporaryDirectory(prefix=f"enpire-cost-{cells}-") as data:
        fleet = Fleet(cells, args.throughput_time_scale, data, env)
        meter: list[CpuMeter] = []
        try:
            time.sleep(args.settle)
            t0 = time.time()
            timer = threading.Timer(args.warmup, lambda: meter.append(fleet.meter()))
            timer.start()
            rollout(env, 10000, args.seed, budget=args.window)
            t1 = time.time()
            timer.cancel()
            used = meter[0].stop() if meter else {}
        finally:
            fleet.close()
        start = t0 + args.warmup
        rows = ledger_rows(
            data,
            "SELECT status, robot_seconds, reset_seconds FROM episodes "
            "WHERE wall_end >= ? AND wall_end <= ?",
            (start, t1),
        )
    n = sum(r["status"] in ("success", "failure") for r in rows)
    robot_steps = sum(r["robot_seconds"] + r["reset_seconds"] for r in rows) * args.control_hz
    cpu = 1000 * sum(used.values()) / robot_steps if robot_steps else float("nan")
    return n / ((t1 - start) / 3600), cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cells", type=int, nargs="*", default=[1, 4, 8])
    ap.add_argument("--time-scale", type=float, default=5.0)
    ap.add_argument("--throughput-time-scale", type=float, default=2.0)
    ap.add_argument("--control-hz", type=float, default=10.0)
    ap.add_argument("--idle-seconds", type=float, default=20.0)
    ap.add_argument("--settle", type=float, default=8.0, help="s after all nodes are ready")
    ap.add_argument("--episodes", type=int, default=16)
    ap.add_argument("--seed", type=int, default=500)
    ap.add_argument("--window", type=float, default=180.0, help="wall s per fleet size")
    ap.add_argument("--warmup", type=float, default=30.0, help="s of the window not counted")
    ap.add_argument("--domain", type=int, default=78)
    ap.add_argument("--out", default="")
    ap.add_argument("--floor-peer", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--service-peer", nargs=3, type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.floor_peer:
        _floor_peer(args.floor_peer[0], float(args.floor_peer[1]), int(args.floor_peer[2]))
        return
    if args.service_peer:
        _service_peer(bool(args.service_peer[0]), args.service_peer[1], args.service_peer[2])
        return
    env = dict(os.environ, ROS_DOMAIN_ID=str(args.domain))
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    out = [f"bench/fleet_cost.py on {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}"]
    direct, paced = in_process(args, False), in_process(args, True)
    print(out[0], flush=True)
    for video in (True, False):
        shown = len(out)
        ros = idle_and_step(args, env, out, video)
        out.append(
            f"  in one process (same episodes, no ROS, no video), as fast as they compute: "
            f"{direct:.2f} ms CPU per step -> ROS / in-process {ros / direct:.1f}x (target <= 4x)"
        )
        out.append(
            f"  the same, paced to the control period as the fleet is (SimRobot, time_scale "
            f"{args.time_scale:g}): {paced:.2f} ms CPU per step -> ROS / in-process "
            f"{ros / paced:.1f}x"
        )
        same = in_process_service(args, env, video)
        out.append(
            f"  the same goal recorded the same way without ROS (the rollout service over an "
            f"in-process SimRobot, sandboxed policy worker, ledger, dataset"
            f"{' with video' if video else ''}; teleport resets), as fast as it computes: "
            f"{same:.2f} ms CPU per robot-step -> ROS / in-process {ros / same:.1f}x"
        )
        print("\n".join(out[shown:]), flush=True)
    period, wakes = 1.0 / (args.control_hz * args.time_scale), 100
    t = time.process_time()
    for _ in range(wakes):
        time.sleep(period)
    out.append(
        f"idling: a thread that sleeps {1000 * period:.0f} ms and does nothing else: "
        f"{1000 * (time.process_time() - t) / wakes:.3f} ms CPU per wake"
    )
    cell, pol = messaging_floor(args, env)
    out.append(
        f"floor: a policy step's two messages alone (CellState out, JointTrajectory back) between "
        f"two processes at the control period ({1000 * period:.0f} ms),"
        f" read as the nodes read them: {cell:.2f} + {pol:.2f} = {cell + pol:.2f} ms CPU per step"
    )
    print(out[-1], flush=True)
    cell2, pol2 = messaging_floor(args, env, contained=True)
    floor = cell2 + pol2 + paced
    out += [
        f"floor with the policy in its sandboxed worker, as R runs agent code (the built-in "
        f"naive, a few small numpy operations per act): {cell2:.2f} + {pol2:.2f} = "
        f"{cell2 + pol2:.2f} ms CPU per step",
        f"  + the paced in-process step ({paced:.2f} ms: physics and policy, idling between "
        f"steps) = {floor:.2f} ms CPU per policy step before EN's resets, recording or video "
        f"(4x the bare in-process step: {4 * direct:.2f} ms)",
    ]
    print("\n".join(out[-2:]), flush=True)
    rates = {}
    for n in args.cells:
        rates[n], cpu = throughput(n, args, env)
        line = (
            f"throughput: {n} cell(s) at time_scale {args.throughput_time_scale:g}: "
            f"{rates[n]:.0f} episodes/h, {cpu:.2f} ms CPU per robot-step (all processes, "
            "default video recording)"
        )
        out.append(line)
        print(line, flush=True)
    if rates.get(1):
        for n in args.cells:
            if n > 1:
                out.append(f"  {n} cells vs 1: {rates[n] / rates[1]:.2f}x")
                print(out[-1], flush=True)
    if args.out:
        Path(args.out).write_text("\n".join(out) + "\n")


if __name__ == "__main__":
    main()

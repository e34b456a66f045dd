"""Test helpers: an isolated ROS graph per test and real node processes.

Import the fixtures into a ``conftest.py``::

    from enpire_env.testing import ros_domain, ros_context  # noqa: F401

Each test gets its own ``ROS_DOMAIN_ID`` and localhost-only discovery, so tests (and pytest-xdist
workers) run in parallel without seeing each other's nodes.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from enpire_env.procutil import die_with_parent

_DOMAINS_PER_WORKER = 24
_counter = itertools.count()
_in_use: set[int] = set()


def allocate_domain_id() -> int:
    """A domain id in 1..96 that no other live test of this pytest-xdist worker holds.

    Each worker owns 24 ids (workers beyond four share ranges); ids are handed out round-robin
    and skip the ones still held (e.g. by a module-scoped graph), so a long-lived graph never
    sees a later test's nodes.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    idx = int(worker[2:]) if worker[2:].isdigit() else 0
    base = 1 + (idx % 4) * _DOMAINS_PER_WORKER
    for _ in range(_DOMAINS_PER_WORKER):
        domain_id = base + next(_counter) % _DOMAINS_PER_WORKER
        if domain_id not in _in_use:
            _in_use.add(domain_id)
            return domain_id
    raise RuntimeError(f"all {_DOMAINS_PER_WORKER} ROS domains of worker {worker} are in use")


def release_domain_id(domain_id: int) -> None:
    _in_use.discard(domain_id)


def isolated_env(domain_id: int, base: dict | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env["ROS_DOMAIN_ID"] = str(domain_id)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env.pop("ROS_STATIC_PEERS", None)
    env.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    env["PYTHONUNBUFFERED"] = "1"
    return env


@contextlib.contextmanager
def _domain():
    domain_id = allocate_domain_id()
    with pytest.MonkeyPatch.context() as mp:
        for k, v in isolated_env(domain_id, {}).items():
            mp.setenv(k, v)
        mp.delenv("ROS_STATIC_PEERS", raising=False)
        try:
            yield domain_id
        finally:
            release_domain_id(domain_id)


@contextlib.contextmanager
def _context(domain_id: int):
    import rclpy
    from rclpy.context import Context

    ctx = Context()
    rclpy.init(context=ctx, domain_id=domain_id)
    try:
        yield ctx
    finally:
        rclpy.try_shutdown(context=ctx)


@pytest.fixture
def ros_domain() -> Iterator[int]:
    """Give this test its own ROS domain (also for the processes it starts)."""
    with _domain() as d:
        yield d


@pytest.fixture
def ros_context(ros_domain) -> Iterator[object]:
    """An rclpy context on the test's domain, shut down afterwards."""
    with _context(ros_domain) as ctx:
        yield ctx


@pytest.fixture(scope="module")
def ros_domain_module() -> Iterator[int]:
    """One ROS domain for all tests of a module (to share node processes between them)."""
    with _domain() as d:
        yield d


@pytest.fixture(scope="module")
def ros_context_module(ros_domain_module) -> Iterator[object]:
    with _context(ros_domain_module) as ctx:
        yield ctx


@contextlib.asynccontextmanager
async def mcp_session(*args: str):
    """An MCP client session with ``enpire mcp ARGS`` over stdio: the SDK's own client,
    launching the server as Claude Code or Codex do, with this process's environment."""
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    cmd = ["-m", "enpire_bringup.enpire", "mcp", *args]
    params = StdioServerParameters(command=sys.executable, args=cmd, env=dict(os.environ))
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


def tool_json(result) -> dict:
    """The JSON a tool call answered (asserting it was not an error)."""
    assert not result.is_error, result.content[0].text
    return json.loads(result.content[0].text)


class NodeProcess:
    """A ROS node run as ``python -m module`` in its own process, its output captured."""

    def __init__(self, module: str, ros_args: list[str] | None = None, env=None):
        cmd = [sys.executable, "-m", module]
        if ros_args:
            cmd += ["--ros-args", *ros_args]
        self.module = module
        self.lines: list[str] = []
        self._cv = threading.Condition()
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env or dict(os.environ),
            start_new_session=True,
            preexec_fn=die_with_parent,  # noqa: PLW1509  (no node outlives a killed test run)
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cv:
                self.lines.append(line.rstrip("\n"))
                self._cv.notify_all()

    @property
    def output(self) -> str:
        with self._cv:
            return "\n".join(self.lines)

    def wait_for_output(self, text: str, timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cv:
            while not any(text in line for line in self.lines):
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    return any(text in line for line in self.lines)
                self._cv.wait(min(left, 0.2))
            return True

    def stop(self, timeout: float = 5.0) -> int:
        """SIGINT, then SIGTERM, then SIGKILL; returns the exit code."""
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            if self.proc.poll() is not None:
                break
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                continue
        self.proc.wait()
        self._reader.join(2.0)
        return self.proc.returncode

    def __enter__(self) -> NodeProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def sim_cell(time_scale: float, robot: str = "robot_0", *params: str) -> NodeProcess:
    """A simulated cell (small, slow camera: cheap; its safety filter inside), with more
    ``params`` as ``name:=value``."""
    args = ["-r", f"__ns:=/{robot}", "-p", f"time_scale:={time_scale}"]
    for p in ("camera_hz:=2.0", "camera_size:=64", *params):
        args += ["-p", p]
    return NodeProcess("enpire_env.sim_cell_node", args)


def one_cell(time_scale: float, robot: str = "robot_0") -> dict[str, NodeProcess]:
    """The robot side of a one-robot fleet: a simulated cell and an env_node."""
    return {
        "cell": sim_cell(time_scale, robot),
        "env": NodeProcess("enpire_env.env_node", ["-p", f"robots:=[{robot}]"]),
    }


def rollout_node(data, time_scale: float, *params: str, robots=("robot_0",)) -> NodeProcess:
    """A rollout node for ``robots`` with ``data`` as data_dir and no video, plus ``params``
    (``name:=value``)."""
    args = [
        "-p",
        f"robots:=[{', '.join(robots)}]",
        "-p",
        f"data_dir:={data}",
        "-p",
        f"time_scale:={time_scale}",
        "-p",
        "video_size:=0",
        "-p",
        "mcap_image_every:=0",
    ]
    for p in params:
        args += ["-p", p]
    return NodeProcess("enpire_rollout.rollout_node", args)


# a robot's driver as many are written: joint states, the block pose and camera frames
# published with the sensor-data QoS (best effort), 20 Hz, until terminated
_SENSOR_DRIVER = """
import sys, time
import numpy as np
import rclpy
from rclpy.qos import qos_profile_sensor_data as qos
from sensor_msgs.msg import Image, JointState
from enpire_env.kinematics import JOINT_NAMES
from enpire_env.ros_conversions import image_to_msg, stamp_from_seconds
from enpire_msgs.msg import BlockPose

rclpy.init()
node = rclpy.create_node("sensor_driver", namespace=sys.argv[1])
joints = node.create_publisher(JointState, "joint_states", qos)
pose = node.create_publisher(BlockPose, "perception/block_pose", qos)
camera = node.create_publisher(Image, "camera/image_raw", qos)
frame = np.full((48, 64, 3), 7, np.uint8)
t = 0.0
while rclpy.ok():
    t += 0.05
    stamp = stamp_from_seconds(t)
    js = JointState(name=list(JOINT_NAMES), position=[0.25] * 6, velocity=[0.0] * 6)
    js.header.stamp = stamp
    joints.publish(js)
    bp = BlockPose(visible=True, x=250.0, y=260.0, theta=0.5, source="driver")
    bp.header.stamp = stamp
    pose.publish(bp)
    img = image_to_msg(frame)
    img.header.stamp = stamp
    camera.publish(img)
    time.sleep(0.05)
"""


@contextlib.contextmanager
def sensor_driver(robot_id: str) -> Iterator[subprocess.Popen]:
    """A process publishing ``robot_id``'s joint states (all joints 0.25 rad), block pose and
    camera frames (48 x 64, every value 7) best effort, as a driver configured for sensor data
    does. Run it inside a test's ROS domain."""
    proc = subprocess.Popen([sys.executable, "-c", _SENSOR_DRIVER, f"/{robot_id}"])
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def running(procs: dict[str, NodeProcess], ready: str = "ready", timeout: float = 60.0):
    """Wait until every node says ``ready``; on exit stop them all (including any the test
    put into ``procs`` meanwhile) and print the end of each one's output."""
    try:
        for p in procs.values():
            assert p.wait_for_output(ready, timeout=timeout), p.output
        yield procs
    finally:
        for p in procs.values():
            p.stop()
        tail = int(os.environ.get("ENPIRE_TEST_LOG_TAIL", "2500"))
        print("\n".join(f"--- {k}\n{p.output[-tail:]}" for k, p in procs.items()))


class ActionCall:
    """What one action call returned: acceptance, feedback messages, status and result."""

    def __init__(self) -> None:
        self.accepted = False
        self.feedback: list = []
        self.status: int | None = None
        self.result = None


def call_action(
    context,
    action_type,
    action_name: str,
    goals: list,
    timeout: float = 30.0,
    cancel_after_feedback: int | None = None,
) -> list[ActionCall]:
    """Send ``goals`` concurrently from a fresh node on ``context``; wait for every result,
    as enpire's own clients do (:mod:`enpire_env.goal_liveness`): a goal request nobody
    answers is sent again, and a server silent for ``SILENCE`` s raises ServerGoneError.

    With ``cancel_after_feedback=n`` each goal is cancelled once it has sent n feedback messages.
    """
    from rclpy.action import ActionClient
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

    from enpire_env.goal_liveness import Liveness, send_goal, wait_result

    node = Node("test_action_client", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)

    def spin(dt: float) -> None:
        executor.spin_once(timeout_sec=dt)

    try:
        client = ActionClient(node, action_type, action_name)
        if not client.wait_for_server(timeout_sec=timeout):
            raise TimeoutError(f"action server {action_name} not available after {timeout} s")
        calls = [ActionCall() for _ in goals]
        handles: list = [None] * len(goals)
        lives = [Liveness(f"the action server {action_name}") for _ in goals]

        def on_feedback(i):
            def cb(msg):
                calls[i].feedback.append(msg.feedback)
                if (
                    cancel_after_feedback is not None
                    and len(calls[i].feedback) == cancel_after_feedback
                    and handles[i] is not None
                ):
                    handles[i].cancel_goal_async()

            return cb

        deadline = time.monotonic() + timeout
        for i, g in enumerate(goals):
            handle = send_goal(
                client, g, lives[i], on_feedback(i), spin, accept_timeout=min(10.0, timeout)
            )
            calls[i].accepted = handle.accepted
            handles[i] = handle
        for i, handle in enumerate(handles):
            if not handle.accepted:
                continue
            lives[i].beat()
            got = wait_result(
                handle.get_result_async(),
                lives[i],
                max(0.0, deadline - time.monotonic()),
                handle,
                spin,
            )
            if got is None:
                raise TimeoutError(f"goal {i} got no result in {timeout} s")
            calls[i].status = got.status
            calls[i].result = got.result
        return calls
    finally:
        executor.shutdown()
        node.destroy_node()


class TopicProbe:
    """Keeps the latest messages of some topics, spun in a background thread.

    probe = TopicProbe(ctx); probe.watch("/robot_0/sim/ground_truth", SimGroundTruth)
    msg = probe.wait_for("/robot_0/sim/ground_truth", lambda m: m.cell_time > 1.0)
    """

    def __init__(self, context, name: str = "test_probe"):
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node

        self.node = Node(name, context=context)
        self._executor = SingleThreadedExecutor(context=context)
        self._executor.add_node(self.node)
        self._latest: dict[str, object] = {}
        self._cv = threading.Condition()
        self._pubs: dict[str, object] = {}
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._running = True
        self._thread.start()

    def _spin(self) -> None:
        while self._running:
            try:
                self._executor.spin_once(timeout_sec=0.05)
            except Exception:  # noqa: BLE001 - context shut down under us
                return

    def watch(self, topic: str, msg_type, qos: int = 10) -> None:
        def cb(msg, topic=topic):
            with self._cv:
                self._latest[topic] = msg
                self._cv.notify_all()

        self.node.create_subscription(msg_type, topic, cb, qos)

    def latest(self, topic: str):
        with self._cv:
            return self._latest.get(topic)

    def wait_for(self, topic: str, predicate=lambda m: True, timeout: float = 20.0):
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                msg = self._latest.get(topic)
                if msg is not None and predicate(msg):
                    return msg
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no matching message on {topic} in {timeout} s")
                self._cv.wait(min(left, 0.1))

    def publish(self, topic: str, msg) -> None:
        if topic not in self._pubs:
            pub = self.node.create_publisher(type(msg), topic, 10)
            deadline = time.monotonic() + 10.0  # let discovery match the subscribers
            while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.1)
            self._pubs[topic] = pub
        self._pubs[topic].publish(msg)

    def close(self) -> None:
        self._running = False
        self._thread.join(2.0)
        self._executor.shutdown()
        self.node.destroy_node()

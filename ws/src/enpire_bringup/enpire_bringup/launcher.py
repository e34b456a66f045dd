"""Start a launch plan's nodes as separate processes, without ros2 launch.

Each node runs as ``python -m <package>.<executable> --ros-args ...``; its output is forwarded
with a ``[name]`` prefix. Ctrl-C (or SIGTERM) stops all nodes. A node that exits is restarted
after its ``respawn_delay`` (doubling with each quick death, up to 30 s), as launch_ros'
``respawn``; one that keeps dying (``max_respawns`` deaths in a row, each within
``STABLE_AFTER`` s of its start) or has ``respawn`` off stops the others, and the launcher
returns non-zero, naming it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TextIO

from enpire_bringup.fleet import NodeSpec, node_env, write_params_file
from enpire_env.procutil import die_with_parent


def executable_path(package: str, executable: str) -> str:
    """``<prefix>/lib/<package>/<executable>`` of an installed ROS package (as ``ros2 run``)."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_prefix
    except ImportError:  # pragma: no cover - ament_index_python comes with every set-up
        raise ValueError(f"cannot look up ROS package {package}") from None
    try:
        path = Path(get_package_prefix(package)) / "lib" / package / executable
    except PackageNotFoundError:
        raise ValueError(
            f"ROS package '{package}' is not installed: hardware mode needs a ROS 2 install "
            "with ros2_control, robot_state_publisher and v4l2_camera (README: 'Run on real "
            "SO-101 arms')"
        ) from None
    if not os.access(path, os.X_OK):
        raise ValueError(f"{package} has no executable {executable} ({path})")
    return str(path)


STABLE_AFTER = 30.0  # s: a node that ran this long before dying starts a fresh backoff
MAX_DELAY = 30.0


class Launcher:
    def __init__(
        self,
        specs: list[NodeSpec],
        python: str = sys.executable,
        env: dict[str, str] | None = None,
        out: TextIO = sys.stdout,
        stop_timeout: float = 5.0,
    ):
        self.specs = specs
        self.python = python
        self.env = dict(os.environ if env is None else env)
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        self.env.update(node_env(self.env))
        self.out = out
        self.stop_timeout = stop_timeout
        self.procs: dict[str, subprocess.Popen] = {}
        self.restarts: dict[str, int] = {}  # total restarts per node
        self._quick: dict[str, int] = {}  # deaths in a row, each soon after its start
        self._started: dict[str, float] = {}
        self._due: dict[str, float] = {}  # node -> when to start it again
        self._commands: dict[str, list[str]] = {}
        self._labels: dict[str, str] = {}
        self._threads: list[threading.Thread] = []
        self._print_lock = threading.Lock()
        self._tmp = tempfile.TemporaryDirectory(prefix="enpire-launch-")
        self.failed: tuple[str, int] | None = None

    def command(self, spec: NodeSpec, params_file: Path) -> list[str]:
        if spec.python:
            args = [self.python, "-m", spec.module]
        else:
            args = [executable_path(spec.package, spec.executable), *spec.arguments]
        args += ["--ros-args", "-r", f"__node:={spec.name}"]
        if spec.namespace:
            args += ["-r", f"__ns:=/{spec.namespace.strip('/')}"]
        for src, dst in spec.remappings:
            args += ["-r", f"{src}:={dst}"]
        if spec.parameters:
            args += ["--params-file", str(params_file)]
        return args

    def log(self, name: str, line: str) -> None:
        with self._print_lock:
            self.out.write(f"[{name}] {line}\n")
            self.out.flush()

    def start(self) -> None:
        params_file = write_params_file(self.specs, Path(self._tmp.name) / "params.yaml")
        width = max((len(s.fqn) for s in self.specs), default=0)
        commands = [self.command(spec, params_file) for spec in self.specs]  # all or none
        for spec, cmd in zip(self.specs, commands, strict=True):
            self._commands[spec.fqn] = cmd
            self._labels[spec.fqn] = spec.fqn.lstrip("/").ljust(width - 1)
            self.restarts[spec.fqn] = self._quick[spec.fqn] = 0
            self._spawn(spec.fqn)

    def _spawn(self, fqn: str) -> None:
        proc = subprocess.Popen(
            self._commands[fqn],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.env,
            start_new_session=True,  # Ctrl-C reaches us; we forward it
            preexec_fn=die_with_parent,  # noqa: PLW1509  (a killed launcher leaves no node)
        )
        self.procs[fqn] = proc
        self._started[fqn] = time.monotonic()
        t = threading.Thread(target=self._pump, args=(self._labels[fqn], proc), daemon=True)
        t.start()
        self._threads.append(t)
        self.log("enpire", f"started {fqn} (pid {proc.pid})")

    def _pump(self, label: str, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.log(label, line.rstrip("\n"))

    def poll(self) -> tuple[str, int] | None:
        """The first node found to have exited (and not yet due for a restart), with its code."""
        for fqn, proc in self.procs.items():
            rc = proc.poll()
            if rc is not None and fqn not in self._due:
                return fqn, rc
        return None

    def step(self) -> tuple[str, int] | None:
        """Restart what is due, schedule restarts of nodes that died; returns the node that
        ended the launch (it kept dying, or may not respawn), else None."""
        now = time.monotonic()
        for fqn, when in list(self._due.items()):
            if now >= when:
                del self._due[fqn]
                self.restarts[fqn] += 1
                self._spawn(fqn)
        while (dead := self.poll()) is not None:
            fqn, rc = dead
            spec = next(s for s in self.specs if s.fqn == fqn)
            quick = now - self._started[fqn] < STABLE_AFTER
            self._quick[fqn] = self._quick[fqn] + 1 if quick else 1
            if not spec.respawn or self._quick[fqn] > spec.max_respawns:
                why = "" if not spec.respawn else f" ({spec.max_respawns} restarts did not help)"
                self.log("enpire", f"node {fqn} exited with code {rc}{why}; stopping all")
                return dead
            delay = min(spec.respawn_delay * 2 ** (self._quick[fqn] - 1), MAX_DELAY)
            self._due[fqn] = now + delay
            self.log(
                "enpire",
                f"node {fqn} exited with code {rc}; restarting in {delay:g} s "
                f"({self._quick[fqn]}/{spec.max_respawns})",
            )
        return None

    def wait(self, stop_event: threading.Event | None = None) -> int:
        """Block until a node ends the launch or ``stop_event`` is set; then stop all. Returns
        the exit code (1 when a node ended it, named in ``failed``)."""
        stop_event = stop_event or threading.Event()
        while not stop_event.is_set():
            dead = self.step()
            if dead:
                self.failed = dead
                self.shutdown()
                return 1
            stop_event.wait(0.1)
        self.shutdown()
        return 0

    def shutdown(self) -> None:
        """SIGINT to every node, then SIGTERM, then SIGKILL to the ones still running."""
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            alive = [p for p in self.procs.values() if p.poll() is None]
            if not alive:
                break
            for p in alive:
                try:
                    os.killpg(p.pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + self.stop_timeout
            while time.monotonic() < deadline and any(p.poll() is None for p in alive):
                time.sleep(0.05)
        for p in self.procs.values():
            p.wait()
        for t in self._threads:
            t.join(2.0)
        self._tmp.cleanup()

    def __enter__(self) -> Launcher:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()

"""The containment drill: hostile policies, each trying one route out of the sandbox, and the
check of what got through. Used by the containment tests (through the sandbox, the Rollout
action and a Train recipe) and by ``bench/containment.py``.

    targets = Targets.create(tmp_path)          # files, a ledger, a TCP server, a sleeper
    src = ROUTES["os_system"].source(targets)  # policy code to commit in a git repo
    ...run it...
    targets.escaped()                           # what the route changed, or "" if nothing

Every route does its harm in ``act()``; a route that is not refused makes ``act()`` return an
ordinary action, so an escape also shows as an episode that did not fail.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

_HEAD = """\
import ctypes, math, os, socket, sqlite3, subprocess, sys

MARK = {mark!r}
LEDGER = {ledger!r}
DATA = {data!r}
OTHER = {other!r}
HOME = {home!r}
PORT = {port!r}
VICTIM = {victim!r}


class P:
    def reset(self, seed):
        pass

    def metadata(self):
        return {{"name": "hostile"}}

    def act(self, obs):
{body}
        return {{"tip": [256.0, 256.0], "lift": False}}


def make_policy(**kwargs):
    return P()
"""


@dataclass(frozen=True)
class Route:
    name: str
    what: str  # one line for the table
    body: str  # the body of act(), indented by 8
    dangerous: bool = False  # would harm the machine where nothing refuses it (not run there)

    def source(self, t: Targets) -> str:
        return _HEAD.format(
            mark=str(t.mark),
            ledger=str(t.ledger),
            data=str(t.data_dir),
            other=str(t.other_tree),
            home=str(t.home),
            port=t.port,
            victim=t.victim_pid,
            body=self.body,
        )


def _r(name: str, what: str, *lines: str, dangerous: bool = False) -> Route:
    return Route(name, what, "\n".join(" " * 8 + ln for ln in lines), dangerous)


ROUTES: dict[str, Route] = {
    r.name: r
    for r in [
        _r("os_system", "os.system('echo x >> FILE')", "os.system(f'echo x >> {MARK}')"),
        _r(
            "subprocess",
            "subprocess.run(['sh', '-c', ...])",
            "subprocess.run(['sh', '-c', f'echo x >> {MARK}'], check=False)",
        ),
        _r(
            "posix_spawn",
            "os.posix_spawn('/bin/sh', ...)",
            "pid = os.posix_spawn('/bin/sh', ['sh', '-c', f'echo x >> {MARK}'], dict(os.environ))",
            "os.waitpid(pid, 0)",
        ),
        _r(
            "fork_exec",
            "os.fork() then os.execv('/bin/sh')",
            "pid = os.fork()",
            "if pid == 0:",
            "    os.execv('/bin/sh', ['sh', '-c', f'echo x >> {MARK}'])",
            "os.waitpid(pid, 0)",
        ),
        _r(
            "ctypes_system",
            "ctypes: libc system()",
            "r = ctypes.CDLL(None).system(f'echo x >> {MARK}'.encode())",
            "if r != 0:",
            "    raise PermissionError(f'libc system() failed ({r})')",
        ),
        _r(
            "ctypes_open",
            "ctypes: libc open() + write() on FILE",
            "libc = ctypes.CDLL(None, use_errno=True)",
            "fd = libc.open(MARK.encode(), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)",
            "if fd < 0:",
            "    raise PermissionError(os.strerror(ctypes.get_errno()))",
            "libc.write(fd, b'x\\n', 2)",
        ),
        _r(
            "sqlite_write",
            "sqlite3: DELETE FROM episodes in the ledger",
            "con = sqlite3.connect(LEDGER)",
            "con.execute('DELETE FROM episodes')",
            "con.commit()",
        ),
        _r(
            "write_data_dir",
            "write a file into data_dir",
            "open(os.path.join(DATA, 'planted.txt'), 'w').write('x')",
        ),
        _r("write_ledger", "append to the ledger file", "open(LEDGER, 'ab').write(b'x' * 64)"),
        _r(
            "write_other_tree",
            "edit another agent's tree",
            "open(os.path.join(OTHER, 'policy.py'), 'a').write('# planted')",
        ),
        _r(
            "write_home",
            "write into $HOME",
            "open(os.path.join(HOME, 'planted.txt'), 'w').write('x')",
        ),
        _r("read_ledger", "read the ledger file", "open(LEDGER, 'rb').read()"),
        _r(
            "socket_connect",
            "TCP connect to a server on localhost",
            "s = socket.create_connection(('127.0.0.1', PORT), timeout=2)",
            "s.sendall(b'escaped')",
            "s.close()",
        ),
        _r("kill_process", "SIGKILL another process", "os.kill(VICTIM, 9)"),  # our own sleeper
        _r("fork_bomb", "fork bomb", "while True:", "    os.fork()", dangerous=True),
        _r("memory", "allocate 8 GB", "b = bytearray(8 << 30)"),
        _r("endless_loop", "endless loop", "while True:", "    pass"),
        _r("nan_action", "NaN action", "return {'tip': [math.nan, math.nan], 'lift': False}"),
    ]
}


class _Server:
    """A TCP server on localhost that records every byte it receives."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received = b""
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                conn.settimeout(2)
                try:
                    while chunk := conn.recv(4096):
                        self.received += chunk
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


@dataclass
class Targets:
    """What the hostile policies aim at, and the check of what changed."""

    root: Path
    data_dir: Path
    ledger: Path
    other_tree: Path
    home: Path
    mark: Path
    server: _Server
    victim: subprocess.Popen

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def victim_pid(self) -> int:
        return self.victim.pid

    @classmethod
    def create(
        cls, root: str | Path, ledger: str | Path | None = None, data_dir: str | Path | None = None
    ) -> Targets:
        root = Path(root)
        data = Path(data_dir) if data_dir else root / "data"
        data.mkdir(parents=True, exist_ok=True)
        led = Path(ledger) if ledger else data / "ledger.sqlite"
        other = root / "other-agent"
        other.mkdir(exist_ok=True)
        home = Path(os.path.expanduser("~"))
        victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
        t = cls(root, data, led, other, home, root / "escape-marker.txt", _Server(), victim)
        t._own_ledger = ledger is None
        t.reset()
        return t

    def _restore(self) -> None:
        """The files the routes aim at, as they were (an escape may have changed them)."""
        (self.data_dir / "planted.txt").unlink(missing_ok=True)
        (self.other_tree / "policy.py").write_text("# another agent's code\n")
        if not self._own_ledger and self.ledger.exists():
            return
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{self.ledger}{suffix}").unlink(missing_ok=True)
        con = sqlite3.connect(self.ledger)
        con.execute("CREATE TABLE episodes (id INTEGER PRIMARY KEY, success INTEGER)")
        con.executemany("INSERT INTO episodes (success) VALUES (?)", [(1,), (0,), (1,)])
        con.commit()
        con.close()

    def _snapshot(self) -> dict:
        con = sqlite3.connect(f"file:{self.ledger}?mode=ro", uri=True)
        try:
            rows = {r[0] for r in con.execute("SELECT id FROM episodes")}
        finally:
            con.close()
        return {
            "rows": rows,
            "ledger_size": self.ledger.stat().st_size,
            "other": (self.other_tree / "policy.py").read_text(),
            "data": sorted(p.name for p in self.data_dir.iterdir()),
        }

    def escaped(self) -> str:
        """What got out so far ("" when nothing did)."""
        now, was, out = self._snapshot(), self._before, []
        if self.mark.exists():
            out.append(f"wrote {self.mark.name}")
        if was["rows"] - now["rows"] or (self._own_ledger and now["rows"] != was["rows"]):
            out.append(f"ledger rows {len(was['rows'])} -> {len(now['rows'])}")
        if self._own_ledger and now["ledger_size"] != was["ledger_size"]:
            out.append("ledger file changed")  # (a live ledger grows by itself)
        if now["other"] != was["other"]:
            out.append("edited another agent's tree")
        if set(now["data"]) - set(was["data"]) - {"ledger.sqlite-wal", "ledger.sqlite-shm"}:
            out.append(f"new files in data_dir: {set(now['data']) - set(was['data'])}")
        if (self.home / "planted.txt").exists():
            out.append("wrote into $HOME")
        if self.server.connections or self.server.received:
            out.append(f"server got {self.server.connections} connection(s)")
        if self.victim.poll() is not None:
            out.append("killed another process")
        return "; ".join(out)

    def reset(self) -> None:
        """Undo an escape so the next route starts clean."""
        self._restore()
        self.mark.unlink(missing_ok=True)
        (self.home / "planted.txt").unlink(missing_ok=True)
        self.server.connections, self.server.received = 0, b""
        if self.victim.poll() is not None:
            self.victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
        self._before = self._snapshot()

    def close(self) -> None:
        self.server.close()
        if self.victim.poll() is None:
            self.victim.send_signal(signal.SIGKILL)
            self.victim.wait()
        (self.home / "planted.txt").unlink(missing_ok=True)

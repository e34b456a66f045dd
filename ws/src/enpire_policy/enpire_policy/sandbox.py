"""Load agent-written policy code safely: from a git worktree at a commit, in a subprocess.

    src = PolicySource(worktree="/path/to/agent0", module="policy", commit="a1b2c3d")
    with SandboxedPolicy(src) as policy:        # starts the worker, imports the module
        policy.reset(seed=0)
        action = policy.act(obs)                # an Action, validated

The code is exported from the commit (``git archive``) into a read-only cache, so what runs is
exactly what was committed, whatever the worktree holds now. The worker process runs confined
at an isolation level of :mod:`enpire_policy.isolation` (bubblewrap namespaces, Landlock,
seccomp, resource limits: no programs, processes, network, or files beyond its code and a
private scratch folder), with a per-call deadline and an audit hook that turns Python-level
attempts into errors naming what was refused. Every failure —
syntax or import error, exception, hang, memory blow-up, NaN or malformed action, forbidden
write — raises :class:`PolicyError` naming the file and line where it is known; the caller
(rollout worker, train node) keeps running.
"""

from __future__ import annotations

import json
import os
import pickle
import resource
import select
import shutil
import signal
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from enpire_policy import isolation
from enpire_policy.interface import Action, ActionError

SCRATCH_PREFIX = "enpire-policy-scratch-"


class PolicyError(RuntimeError):
    """Agent policy code failed. ``kind`` is one of: source, syntax, import, exception,
    timeout, crash, memory, action, forbidden."""

    def __init__(self, kind: str, message: str, file: str = "", line: int = 0, tb: str = ""):
        where = f" ({file}:{line})" if file else ""
        super().__init__(f"{kind}: {message}{where}")
        self.kind, self.message, self.file, self.line, self.traceback = (
            kind,
            message,
            file,
            line,
            tb,
        )

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "message": self.message,
            "file": self.file,
            "line": self.line,
            "traceback": self.traceback,
        }


@dataclass
class PolicySource:
    """Where a policy's code lives: a module (dotted) importable from ``worktree``, at
    ``commit`` (None: the worktree as it is), built by ``factory(**kwargs)``."""

    worktree: str
    module: str = "policy"
    commit: str | None = None
    factory: str = "make_policy"
    kwargs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.module or not all(p.isidentifier() for p in self.module.split(".")):
            raise PolicyError("source", f"'{self.module}' is not a Python module name")
        if not self.factory.isidentifier():
            raise PolicyError("source", f"'{self.factory}' is not a Python name")


def _git(worktree: str, *args: str) -> bytes:
    r = subprocess.run(["git", "-C", worktree, *args], capture_output=True, timeout=60)
    if r.returncode != 0:
        raise PolicyError("source", f"git {' '.join(args)}: {r.stderr.decode().strip()}")
    return r.stdout


def materialize(src: PolicySource, cache_dir: str | Path) -> Path:
    """The directory holding the policy's code: an export of the commit (cached, read-only),
    or the worktree itself when no commit is given."""
    if not src.worktree:  # installed code only (a built-in policy or an artifact loader)
        empty = Path(cache_dir) / "no-worktree"
        empty.mkdir(parents=True, exist_ok=True)
        return empty.resolve()
    root = Path(src.worktree)
    if not root.is_dir():
        raise PolicyError("source", f"worktree {root} does not exist")
    if src.commit is None:
        return root.resolve()
    sha = _git(str(root), "rev-parse", "--verify", "--quiet", f"{src.commit}^{{commit}}")
    sha = sha.decode().strip()
    dest = Path(cache_dir) / sha
    if dest.is_dir():
        return dest
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{sha[:12]}-", dir=cache_dir))
    try:
        archive = tmp / "code.tar"
        archive.write_bytes(_git(str(root), "archive", "--format=tar", sha))
        with tarfile.open(archive) as tar:
            tar.extractall(tmp / "code", filter="data")
        archive.unlink()
        for p in sorted((tmp / "code").rglob("*"), reverse=True):
            p.chmod(0o555 if p.is_dir() else 0o444)
        try:
            os.rename(tmp / "code", dest)  # atomic: a concurrent export of the same sha wins
        except OSError:
            if not dest.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def scratch_dir(prefix: str = SCRATCH_PREFIX) -> Path:
    """A fresh private scratch folder named after this process, so that a later start-up can
    remove the ones a killed process left behind (:func:`remove_stale_scratch`)."""
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-"))


def remove_stale_scratch(root: str | Path | None = None, prefix: str = SCRATCH_PREFIX) -> int:
    """Remove scratch folders whose owning process is gone (SIGKILL leaves them); returns how
    many were removed."""
    removed = 0
    for p in Path(root or tempfile.gettempdir()).glob(f"{prefix}*"):
        pid = p.name[len(prefix) :].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        shutil.rmtree(p, ignore_errors=True)
        removed += 1
    return removed


def default_cache_dir() -> Path:
    return Path(tempfile.gettempdir()) / "enpire-policy-cache"


def remove_stale_exports(cache_dir: str | Path | None = None, older_than: float = 600.0) -> int:
    """Remove half-written code exports (``.<sha>-*`` folders) that a killed process left in a
    code cache; ones younger than ``older_than`` s may still be in progress elsewhere."""
    removed = 0
    root = Path(cache_dir or default_cache_dir())
    if not root.is_dir():
        return 0
    for p in root.glob(".*-*"):
        try:
            if p.is_dir() and time.time() - p.stat().st_mtime > older_than:
                shutil.rmtree(p, ignore_errors=True)
                removed += 1
        except FileNotFoundError:
            continue
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _limits(cpu_seconds: int, memory_mb: int):
    def apply() -> None:
        os.setsid()
        if cpu_seconds > 0:
            resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))
        if memory_mb > 0:
            b = memory_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (b, b))

    return apply


class SandboxedPolicy:
    """A policy running in a limited subprocess; same reset/act/metadata as a policy."""

    def __init__(
        self,
        src: PolicySource,
        cache_dir: str | Path | None = None,
        cpu_seconds: int = 600,
        memory_mb: int = 4096,
        step_timeout: float = 1.0,
        load_timeout: float = 60.0,
        log_path: str | Path | None = None,
        isolation_level: str = "",
        min_isolation: str = "",
        hidden: list[str] = (),
        audit_hook: bool = True,
    ):
        """``isolation_level``/``min_isolation``: see :mod:`enpire_policy.isolation` (empty:
        the process-wide setting, :func:`isolation.configured`); ``hidden``: paths the worker
        must not see (data_dir; $HOME and the cache's parent always); ``audit_hook=False``
        leaves containment to the OS layers alone (tests and the containment bench)."""
        self.src = src
        self.cache_dir = Path(cache_dir or default_cache_dir())
        self.cpu_seconds, self.memory_mb = cpu_seconds, memory_mb
        self.step_timeout, self.load_timeout = step_timeout, load_timeout
        self.log_path = Path(log_path) if log_path else None
        self.proc: subprocess.Popen | None = None
        self.code_dir: Path | None = None
        self.scratch: Path | None = None
        self.meta: dict = {}
        self._act_where = ("", 0)
        level, minimum = isolation.configured()
        self.level = isolation.resolve_level(isolation_level or level, min_isolation or minimum)
        self.hidden = [*hidden, os.path.expanduser("~"), str(self.cache_dir.resolve().parent)]
        self.audit_hook = audit_hook

    # --- lifecycle ----------------------------------------------------------------------
    def start(self) -> SandboxedPolicy:
        self.code_dir = materialize(self.src, self.cache_dir)
        self.scratch = scratch_dir()
        req_r, self._req_w = os.pipe()
        self._resp_r, resp_w = os.pipe()
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        scratch = str(self.scratch.resolve())
        pythonpath = [str(self.code_dir), *sys.path[1:]]
        self.confinement = isolation.Confinement.for_child(
            self.level, str(self.code_dir), self.hidden, scratch
        )
        argv = [sys.executable, "-m", "enpire_policy.sandbox_worker", str(req_r), str(resp_w)]
        self.proc = subprocess.Popen(
            self.confinement.command(argv, scratch),
            cwd=scratch,
            env=isolation.child_env(pythonpath, scratch),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            pass_fds=(req_r, resp_w),
            preexec_fn=_limits(self.cpu_seconds, self.memory_mb),  # noqa: PLW1509
        )
        os.close(req_r)
        os.close(resp_w)
        if log is not subprocess.DEVNULL:
            log.close()
        reply = self._call(
            {
                "op": "load",
                "module": self.src.module,
                "factory": self.src.factory,
                "kwargs": self.src.kwargs,
                "code_dir": str(self.code_dir),
                "scratch": scratch,
                "confine": self.confinement.to_json(),
                "audit_hook": self.audit_hook,
            },
            self.load_timeout,
        )
        self.meta = reply.get("metadata", {})
        self._act_where = (reply.get("act_file", ""), int(reply.get("act_line", 0)))
        return self

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
        for fd in ("_req_w", "_resp_r"):
            if hasattr(self, fd):
                try:
                    os.close(getattr(self, fd))
                except OSError:
                    pass
                delattr(self, fd)
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None
        self.proc = None

    def __enter__(self) -> SandboxedPolicy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # --- policy API ---------------------------------------------------------------------
    def metadata(self) -> dict:
        return dict(self.meta)

    def reset(self, seed: int) -> None:
        self._call({"op": "reset", "seed": int(seed)}, self.load_timeout)

    def act(self, obs: dict) -> Action:
        reply = self._call({"op": "act", "obs": obs}, self.step_timeout)
        try:
            return Action.parse(reply.get("action"))
        except ActionError as e:
            self.close()  # the episode ends here; a fresh worker serves the next one
            file, line = self._act_where
            raise PolicyError("action", f"act() returned a bad action: {e}", file, line) from None

    # --- transport ----------------------------------------------------------------------
    def _call(self, msg: dict, timeout: float) -> dict:
        if self.proc is None:
            raise PolicyError("crash", "the policy worker is not running")
        data = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            os.write(self._req_w, struct.pack("!I", len(data)))
            view = memoryview(data)
            while view:
                view = view[os.write(self._req_w, view) :]
        except BrokenPipeError:
            raise self._died() from None
        line = self._read_line(timeout, msg["op"])
        reply = json.loads(line)
        if not reply.get("ok"):
            self.close()
            err = reply.get("error", {})
            raise PolicyError(
                err.get("kind", "exception"),
                err.get("message", "unknown error"),
                err.get("file", ""),
                int(err.get("line", 0)),
                err.get("traceback", ""),
            )
        return reply

    def _read_line(self, timeout: float, op: str) -> bytes:
        buf = b""
        deadline = time.monotonic() + timeout
        while not buf.endswith(b"\n"):
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._resp_r], [], [], max(left, 0))
            if not ready:
                self.close()
                file, line = self._act_where if op == "act" else ("", 0)
                raise PolicyError("timeout", f"{op}() did not answer within {timeout:g} s", file,
                                  line)  # fmt: skip
            chunk = os.read(self._resp_r, 1 << 16)
            if not chunk:
                raise self._died()
            buf += chunk
        return buf

    def _died(self) -> PolicyError:
        code = self.proc.wait(timeout=10) if self.proc else None
        self.close()
        if code is not None and code > 128 and self.level == "namespace":
            code = -(code - 128)  # bwrap exits with 128 + the signal that killed its child
        if code is not None and code < 0:
            sig = signal.Signals(-code).name
            kind = "memory" if sig == "SIGKILL" else "crash"
            if sig == "SIGXCPU":
                return PolicyError("timeout", f"CPU-time limit of {self.cpu_seconds} s exceeded")
            return PolicyError(kind, f"the policy worker was killed by {sig}")
        return PolicyError("crash", f"the policy worker exited with status {code}")

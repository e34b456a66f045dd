"""The policy worker process (see enpire_policy.sandbox): imports one policy module and serves
reset / act requests. Requests arrive pickled from the trusted parent; replies go back as JSON
lines, so nothing the policy returns is ever unpickled by the parent."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import pickle
import struct
import sys
import traceback
from pathlib import Path

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_ALLOWED: list[str] = []  # writable roots
_READABLE: list[str] = []  # read-only roots (empty: reads are not checked)
_MODIFY = (
    "os.remove",
    "os.rmdir",
    "os.mkdir",
    "os.truncate",
    "os.chmod",
    "os.chown",
    "os.link",
    "os.symlink",
    "shutil.rmtree",
    "shutil.copyfile",
    "os.utime",
)
_PROGRAMS = (
    "os.system",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
    "os.fork",
    "os.forkpty",
    "subprocess.Popen",
    "pty.spawn",
)
_NETWORK = ("socket.__new__", "socket.connect", "socket.bind", "socket.sendto")
# libc entry points agent code has no business calling through ctypes
_LIBC = {
    "system",
    "popen",
    "fork",
    "vfork",
    "clone",
    "clone3",
    "execv",
    "execve",
    "execvp",
    "execvpe",
    "execl",
    "execlp",
    "execle",
    "fexecve",
    "posix_spawn",
    "posix_spawnp",
    "socket",
    "connect",
    "bind",
    "open",
    "open64",
    "openat",
    "openat64",
    "creat",
    "creat64",
    "fopen",
    "fopen64",
    "unlink",
    "unlinkat",
    "rename",
    "renameat",
    "kill",
    "syscall",
    "ptrace",
    "mount",
    "unshare",
    "setns",
    "prctl",
    "seccomp",
    "dlopen",
    "sqlite3_open",
    "sqlite3_open_v2",
    "truncate",
    "chmod",
    "mkdir",
}


def _inside(path, roots: list[str]) -> bool:
    try:
        p = os.path.realpath(os.fsdecode(path))
    except (TypeError, ValueError):
        return True  # file descriptors: already open
    return p == os.devnull or any(p == a or p.startswith(a.rstrip(os.sep) + os.sep) for a in roots)


def _writable(path) -> bool:
    return _inside(path, _ALLOWED)


def _refuse(what: str) -> None:
    raise PermissionError(f"policy code may not {what}")


def _audit(event: str, args: tuple) -> None:
    if not _ALLOWED:
        return
    if event == "open":
        path, mode, flags = args
        if path is None or isinstance(path, int):
            return
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & _WRITE_FLAGS
        )
        if writing and not _writable(path):
            _refuse(f"write to {os.fsdecode(path)}")
        if _READABLE and not writing and not _inside(path, _READABLE + _ALLOWED):
            _refuse(f"read {os.fsdecode(path)}")
    elif event in _MODIFY:
        target = args[0]
        if isinstance(target, (str, bytes, os.PathLike)) and not _writable(target):
            _refuse(f"modify {os.fsdecode(target)}")
    elif event == "os.rename":
        for target in args[:2]:
            if not _writable(target):
                _refuse(f"move {os.fsdecode(target)}")
    elif event in _PROGRAMS:
        _refuse(f"start programs or processes ({event})")
    elif event in _NETWORK:
        _refuse(f"use sockets ({event})")
    elif event in ("os.kill", "os.killpg") and args[0] != os.getpid():
        _refuse(f"signal other processes ({event} {args[0]})")
    elif event == "sqlite3.connect":
        db = args[0]
        if (
            isinstance(db, (str, bytes, os.PathLike))
            and os.fsdecode(db) != ":memory:"
            and (not _writable(db))
        ):
            _refuse(f"open the database {os.fsdecode(db)}")
    elif event == "ctypes.dlsym" and isinstance(args[1], str) and args[1] in _LIBC:
        _refuse(f"call {args[1]}() through ctypes")


def guard(confine_json: str, scratch: str, audit_hook: bool = True) -> None:
    """Confine this process (:class:`enpire_policy.isolation.Confinement`) and, unless told not
    to, add the audit hook that names refused calls; call it after the trusted imports and
    before any agent code (policy workers and the agent tree's self-check tests alike)."""
    import numpy  # noqa: F401 - trusted imports before confinement

    from enpire_policy.isolation import Confinement

    conf = Confinement.from_json(confine_json)
    conf.apply()
    if audit_hook:
        _ALLOWED.append(os.path.realpath(scratch))
        _READABLE.extend(os.path.realpath(p) for p in conf.readable)
        sys.addaudithook(_audit)


def _where(exc: BaseException, code_dir: str) -> tuple[str, int]:
    if isinstance(exc, SyntaxError) and exc.filename:
        return exc.filename, int(exc.lineno or 0)
    frames = traceback.extract_tb(exc.__traceback__)
    mine = [f for f in frames if os.path.realpath(f.filename).startswith(code_dir)]
    f = (mine or frames or [None])[-1]
    return (f.filename, int(f.lineno or 0)) if f else ("", 0)


def _error(exc: BaseException, code_dir: str, kind: str) -> dict:
    file, line = _where(exc, code_dir)
    if isinstance(exc, SyntaxError):
        kind = "syntax"
    elif isinstance(exc, MemoryError):
        kind = "memory"
    elif isinstance(exc, PermissionError):  # the audit hook, Landlock or seccomp (EPERM/EACCES)
        kind = "forbidden"
    msg = f"{type(exc).__name__}: {exc}"
    tb = "".join(traceback.format_exception(exc))
    return {"kind": kind, "message": msg, "file": file, "line": line, "traceback": tb}


def _jsonable(x):
    import numpy as np

    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (np.floating, np.integer, np.bool_)):
        return x.item()
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def _read(fd: int) -> dict | None:
    head = b""
    while len(head) < 4:
        chunk = os.read(fd, 4 - len(head))
        if not chunk:
            return None
        head += chunk
    (n,) = struct.unpack("!I", head)
    buf = bytearray()
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return pickle.loads(bytes(buf))


def main() -> None:
    req_fd, resp_fd = int(sys.argv[1]), int(sys.argv[2])
    sys.stdout = sys.stderr  # prints from policy code go to the log, not the protocol
    policy, code_dir = None, ""

    def reply(obj: dict) -> None:
        data = (json.dumps(obj, allow_nan=True) + "\n").encode()
        while data:
            data = data[os.write(resp_fd, data) :]

    while (msg := _read(req_fd)) is not None:
        op, stage = msg["op"], "exception"
        try:
            if op == "load":
                code_dir = os.path.realpath(msg["code_dir"])
                sys.path.insert(0, code_dir)
                guard(msg["confine"], msg["scratch"], msg.get("audit_hook", True))
                stage = "import"
                mod = importlib.import_module(msg["module"])
                stage = "exception"
                policy = getattr(mod, msg["factory"])(**msg["kwargs"])
                meta = policy.metadata() if hasattr(policy, "metadata") else {}
                try:
                    act_file = inspect.getsourcefile(policy.act) or ""
                    act_line = inspect.getsourcelines(policy.act)[1]
                except (TypeError, OSError):
                    act_file, act_line = "", 0
                reply(
                    {
                        "ok": True,
                        "metadata": _jsonable(meta),
                        "act_file": act_file,
                        "act_line": act_line,
                        "module_file": str(Path(mod.__file__)),
                    }
                )
            elif op == "reset":
                stage = "exception"
                if hasattr(policy, "reset"):
                    policy.reset(msg["seed"])
                reply({"ok": True})
            elif op == "act":
                stage = "exception"
                reply({"ok": True, "action": _jsonable(policy.act(msg["obs"]))})
            else:
                reply({"ok": False, "error": {"kind": "crash", "message": f"bad op {op}"}})
        except BaseException as e:  # everything the policy throws goes back as an error
            reply({"ok": False, "error": _error(e, code_dir, stage)})
            if op == "load":
                return


if __name__ == "__main__":
    main()

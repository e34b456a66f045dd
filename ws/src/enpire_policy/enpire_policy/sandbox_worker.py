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
_ALLOWED: list[str] = []


def _writable(path) -> bool:
    try:
        p = os.path.realpath(os.fsdecode(path))
    except (TypeError, ValueError):
        return True  # file descriptors: already open
    return p == os.devnull or any(p == a or p.startswith(a + os.sep) for a in _ALLOWED)


def _audit(event: str, args: tuple) -> None:
    if not _ALLOWED:
        return
    if event == "open":
        path, mode, flags = args
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & _WRITE_FLAGS
        )
        if writing and path is not None and not isinstance(path, int) and not _writable(path):
            raise PermissionError(f"policy code may not write to {os.fsdecode(path)}")
    elif event in ("os.remove", "os.rmdir", "os.mkdir", "os.truncate", "os.chmod", "os.link",
                   "os.symlink", "shutil.rmtree", "shutil.copyfile", "os.utime"):  # fmt: skip
        target = args[0]
        if isinstance(target, (str, bytes, os.PathLike)) and not _writable(target):
            raise PermissionError(f"policy code may not modify {os.fsdecode(target)}")
    elif event == "os.rename":
        for target in args[:2]:
            if not _writable(target):
                raise PermissionError(f"policy code may not move {os.fsdecode(target)}")


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
    elif isinstance(exc, PermissionError) and "policy code may not" in str(exc):
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
                _ALLOWED.extend([os.path.realpath(msg["scratch"])])
                sys.addaudithook(_audit)
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
                reply({"ok": True, "metadata": _jsonable(meta), "act_file": act_file,
                       "act_line": act_line, "module_file": str(Path(mod.__file__))})  # fmt: skip
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

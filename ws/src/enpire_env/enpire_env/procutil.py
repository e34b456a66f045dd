"""Child processes that never outlive their parent (Linux: PR_SET_PDEATHSIG)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent dies (Linux only;
    elsewhere a no-op). Meant for ``subprocess.Popen(preexec_fn=...)``."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    # the parent may have died between fork and prctl: then we were re-parented already
    if os.getppid() == 1:
        os._exit(1)

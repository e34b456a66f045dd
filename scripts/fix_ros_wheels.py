"""Repair the ROS 2 PyPI wheels' exported CMake paths inside a virtual environment.

The wheels are built in a manylinux container and their exported CMake targets name include
directories of that container (``/opt/python/cp311-cp311/...``).  Building a custom interface
package then fails with "Imported target ... includes non-existent path".  This rewrites those
strings to the running interpreter's include directory, numpy's include directory and the venv
prefix.  It is idempotent: a second run finds nothing to change.
"""

from __future__ import annotations

import argparse
import sys
import sysconfig
from pathlib import Path

BUILD_PREFIX = "/opt/python/cp311-cp311"


def replacements(prefix: Path) -> list[tuple[str, str]]:
    import numpy

    return [
        (f"{BUILD_PREFIX}/include/python3.11", sysconfig.get_paths()["include"]),
        (
            f"{BUILD_PREFIX}/lib/python3.11/site-packages/numpy/_core/include",
            numpy.get_include(),
        ),
        (BUILD_PREFIX, str(prefix)),
    ]


def candidate_files(prefix: Path):
    share = prefix / "share"
    yield from share.glob("*/cmake/*.cmake")
    yield from (share / "ament_index" / "resource_index" / "parent_prefix_path").glob("*")


def fix(prefix: Path) -> int:
    changed = 0
    pairs = replacements(prefix)
    for path in candidate_files(prefix):
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
        if BUILD_PREFIX not in text:
            continue
        for old, new in pairs:
            text = text.replace(old, new)
        path.write_text(text, encoding="utf-8", errors="surrogateescape")
        changed += 1
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefix", type=Path, default=Path(sys.prefix), help="venv prefix")
    args = parser.parse_args(argv)
    n = fix(args.prefix.resolve())
    print(f"fix_ros_wheels: rewrote build-machine paths in {n} file(s) under {args.prefix}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

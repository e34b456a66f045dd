"""scripts/setup.sh refuses unsupported machines with a clear message."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETUP = ROOT / "scripts" / "setup.sh"
BASH = shutil.which("bash")


def _run(env, tmp_path):
    env = {**env, "ENPIRE_VENV": str(tmp_path / "venv")}
    env.pop("ROS_DISTRO", None)
    return subprocess.run([BASH, str(SETUP)], capture_output=True, text=True, env=env, timeout=60)


def test_missing_python_is_named(tmp_path):
    out = _run({**os.environ, "PYTHON": "python3.11-does-not-exist"}, tmp_path)
    assert out.returncode != 0
    assert "CPython 3.11 is required" in out.stderr
    assert not (tmp_path / "venv").exists()


def test_wrong_python_version_is_named(tmp_path):
    fake = tmp_path / "python3.10"
    fake.write_text('#!/bin/sh\ncase "$2" in *platform*) echo CPython;; *) echo 3.10;; esac\n')
    fake.chmod(0o755)
    out = _run({**os.environ, "PYTHON": str(fake)}, tmp_path)
    assert out.returncode != 0
    assert "unsupported Python" in out.stderr and "3.10" in out.stderr


def test_missing_cmake_is_named(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    os.symlink(shutil.which("dirname"), bindir / "dirname")
    os.symlink(os.path.realpath(sys.executable), bindir / "python3.11")
    out = _run({**os.environ, "PATH": str(bindir), "PYTHON": "python3.11"}, tmp_path)
    assert out.returncode != 0
    assert "'cmake' was not found" in out.stderr

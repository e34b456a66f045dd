"""The `enpire` command as a user runs it: real processes on an isolated ROS domain."""

import os
import re
import signal
import subprocess
import sys
import time


def _enpire(*args, **kw):
    return subprocess.run(
        [sys.executable, "-m", "enpire_bringup.enpire", *args],
        capture_output=True,
        text=True,
        timeout=120,
        **kw,
    )


def test_help_lists_subcommands():
    out = _enpire("--help")
    assert out.returncode == 0
    for sub in ("launch", "reset", "demo"):
        assert sub in out.stdout


def test_dry_run_prints_plan():
    out = _enpire("launch", "--robots", "3", "--dry-run")
    assert out.returncode == 0, out.stderr
    assert "/env_node: enpire_env/env_node" in out.stdout
    assert "robot_2" in out.stdout


def test_bad_robot_spec_is_a_clear_error():
    out = _enpire("launch", "--robots", "0", "--dry-run")
    assert out.returncode == 2
    assert "robots must be >= 1" in out.stderr


def _launch(*args):
    """`enpire launch ARGS` in its own session, output piped."""
    return subprocess.Popen(
        [sys.executable, "-m", "enpire_bringup.enpire", "launch", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip


def _read_until(proc, done, timeout=30.0) -> list[str]:
    """Lines of ``proc`` until ``done(lines)`` holds, the output ends or ``timeout`` passes."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not done(lines):
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
    return lines


def _pids(lines) -> list[int]:
    return [int(x.split("pid ")[1].rstrip(")\n")) for x in lines if "(pid " in x]


def test_launch_prefixes_logs_and_stops_cleanly_on_ctrl_c(ros_domain, tmp_path):
    proc = _launch("--robots", "2", "--data-dir", str(tmp_path))
    lines = _read_until(proc, lambda ls: bool(ls) and "reset server ready" in ls[-1])
    assert any(
        re.match(r"\[env_node\s*\] ", line) and "reset server ready" in line for line in lines
    ), lines
    child_pids = _pids(lines)
    assert child_pids
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    for pid in child_pids:
        assert not os.path.exists(f"/proc/{pid}") or "zombie" in open(f"/proc/{pid}/status").read()


def test_launch_exits_nonzero_naming_the_node_that_died(ros_domain, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("env_node:\n  ros__parameters:\n    max_attempts: 'three'\n")
    out = _enpire(
        "launch", "--config", str(bad), "--data-dir", str(tmp_path), "--max-respawns", "1"
    )
    assert out.returncode == 1
    assert "/env_node" in out.stderr and "died" in out.stderr
    assert "after 1 restart(s)" in out.stderr  # restarted once, then it ended the launch
    assert "restarting in 1 s" in out.stdout


def test_killed_launcher_leaves_no_orphan_nodes(ros_domain, tmp_path):
    proc = _launch("--robots", "1", "--data-dir", str(tmp_path))
    lines = _read_until(proc, lambda ls: len(_pids(ls)) >= 4)
    child_pids = _pids(lines)
    assert len(child_pids) == 4, lines  # the cell (its safety filter inside), EN, PI and R
    proc.kill()  # SIGKILL: the launcher gets no chance to stop its nodes itself
    proc.wait(timeout=10)

    def alive(pid):
        try:
            with open(f"/proc/{pid}/status") as f:
                return "zombie" not in f.read()
        except FileNotFoundError:
            return False

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(alive(p) for p in child_pids):
        time.sleep(0.2)
    left = [p for p in child_pids if alive(p)]
    for p in left:
        os.kill(p, signal.SIGKILL)
    assert not left, f"nodes outlived the launcher: {left}"


def test_rollout_command_runs_a_policy_on_the_fleet(ros_domain, tmp_path):
    launch = _launch("--robots", "2", "--time-scale", "4", "--data-dir", str(tmp_path))
    try:
        out = subprocess.run(
            [sys.executable, "-m", "enpire_bringup.enpire", "rollout", "--policy", "heuristic",
             "--episodes", "2", "--seed", "3", "--timeout", "300"],
            capture_output=True, text=True, timeout=360,
        )  # fmt: skip
        assert out.returncode == 0, out.stdout + out.stderr
        assert re.search(r"heuristic: \d/2 successes", out.stdout), out.stdout
        assert "ep" in out.stderr  # the progress bar
        assert (tmp_path / "ledger.sqlite").exists()
        assert list((tmp_path / "datasets").glob("*/meta/info.json"))
        bad = subprocess.run(
            [sys.executable, "-m", "enpire_bringup.enpire", "rollout", "--policy", "nope",
             "--episodes", "1", "--timeout", "60"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert bad.returncode == 1 and "unknown built-in policy 'nope'" in bad.stdout
        hp = '{"iterations": 1, "population": 2, "episodes": 1, "max_steps": 10}'
        train = subprocess.run(
            [sys.executable, "-m", "enpire_bringup.enpire", "train", "--policy", "heuristic",
             "--hyperparameters", hp, "--timeout", "300"],
            capture_output=True, text=True, timeout=360,
        )  # fmt: skip
        assert train.returncode == 0, train.stdout + train.stderr
        assert "heuristic_search: artifact " in train.stdout
        assert "%" in train.stderr  # the progress bar
        too_long = subprocess.run(
            [sys.executable, "-m", "enpire_bringup.enpire", "train", "--time-budget", "1e9",
             "--timeout", "60"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert too_long.returncode == 1 and "time_budget must be 0 .. 86400" in too_long.stdout
    finally:
        os.killpg(launch.pid, signal.SIGINT)
        launch.communicate(timeout=60)


def test_calibrate_a_sim_camera_validate_it_and_print_the_board(tmp_path):
    cal = str(tmp_path / "cal")
    r = _enpire("calibrate", "camera", "--sim", "--robot", "robot_2", "--dir", cal)
    assert r.returncode == 0, r.stderr
    assert "intrinsics: RMS" in r.stdout and (tmp_path / "cal" / "robot_2.yaml").exists()
    r = _enpire("calibrate", "validate", "--sim", "--robot", "robot_2", "--dir", cal)
    assert r.returncode == 0 and "markers [0, 1, 2, 3]" in r.stdout, r.stdout + r.stderr
    r = _enpire("calibrate", "validate", "--sim", "--tilt", "24", "--robot", "robot_2",
                "--dir", cal)  # fmt: skip
    assert r.returncode == 1 and "moved" in r.stdout
    r = _enpire("calibrate", "camera", "--dir", cal, "--empty", str(tmp_path / "no_*.png"),
                "--block", "x")  # fmt: skip
    assert r.returncode == 2 and "no image matches" in r.stderr
    r = _enpire("calibrate", "board", "--out", str(tmp_path / "print"))
    assert r.returncode == 0
    assert (tmp_path / "print" / "charuco_board.png").stat().st_size > 1000


def test_capture_frames_from_a_camera_and_calibrate_from_them(tmp_path):
    """A real cell's path without a board: frames taken from a camera (here a video file of the
    synthetic camera), then the table by homography and the colours from them."""
    import cv2

    from enpire_env.camera_sim import CameraConfig, SyntheticCamera
    from enpire_env.sim_cell import PushTCell

    cam, cell = SyntheticCamera(CameraConfig()), PushTCell()

    def video(name, block_pose):
        cell.teleport(block_pose)
        w = cv2.VideoWriter(str(tmp_path / name), cv2.VideoWriter_fourcc(*"MJPG"), 30,
                            (640, 480))  # fmt: skip
        for _ in range(4):
            w.write(cv2.cvtColor(cam.view(cell), cv2.COLOR_RGB2BGR))
        w.release()

    video("empty.avi", [-1000.0, -1000.0, 0.0])
    video("block.avi", [300.0, 150.0, 1.2])
    shots = tmp_path / "shots"
    for name in ("empty", "block"):
        src = str(tmp_path / f"{name}.avi")
        r = _enpire("calibrate", "capture", "--source", src, "--out", str(shots),
                    "--name", name, "--count", "3", "--interval", "0.01")  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert f"[3/3] wrote {shots / f'{name}_02.png'} (640x480)" in r.stdout
    r = _enpire("calibrate", "camera", "--dir", str(tmp_path / "cal"), "--empty",
                str(shots / "empty_*.png"), "--block", str(shots / "block_*.png"))  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "table by homography only" in r.stdout
    r = _enpire("calibrate", "capture", "--source", str(tmp_path / "none.avi"), "--out",
                str(shots))  # fmt: skip
    assert r.returncode == 1 and "cannot open camera" in r.stderr

"""The container files (no Docker engine here): every file they copy or run exists, the
compose file points at Dockerfiles that exist, and the entry point is a valid bash script."""

import re
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = sorted((ROOT / "docker").glob("Dockerfile*"))


def test_there_is_an_x86_and_a_jetson_image():
    names = {p.name for p in DOCKERFILES}
    assert {"Dockerfile.jazzy", "Dockerfile.jetson-thor"} <= names


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_copies_only_what_exists(path):
    text = path.read_text().replace("\\\n", " ")
    assert re.search(r"^FROM \S+", text, re.M)
    copies = re.findall(r"^COPY (.+)$", text, re.M)
    assert copies
    for line in copies:
        *sources, _dest = line.split()
        for src in sources:
            assert (ROOT / src).exists(), f"{path.name}: COPY {src} does not exist"
    assert "make setup" in text  # the README's own set-up, with the image's ROS sourced
    assert "ENTRYPOINT" in text


def test_compose_builds_existing_dockerfiles():
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    built = [s["build"] for s in compose["services"].values() if "build" in s]
    assert built
    for b in built:
        context = (ROOT / "docker" / b["context"]).resolve()
        assert context == ROOT
        assert (context / b["dockerfile"]).is_file()
    for s in compose["services"].values():
        assert s["command"][0] == "enpire"


def test_entrypoint_is_executable_bash():
    ep = ROOT / "docker" / "entrypoint.sh"
    assert ep.stat().st_mode & 0o111
    subprocess.run(["bash", "-n", str(ep)], check=True)
    assert "scripts/env.sh" in ep.read_text() and (ROOT / "scripts" / "env.sh").is_file()


def test_docker_context_leaves_out_build_outputs():
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", "ws/build", "ws/install"} <= set(ignored)

"""Every package of ws/src is a well-formed ROS 2 package (format 3, real dependencies)."""

import ast
import importlib
from pathlib import Path

import pytest
from catkin_pkg.package import parse_package

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "ws" / "src"
PACKAGES = sorted(p.parent.name for p in SRC.glob("*/package.xml"))
EXPECTED = {
    "enpire_msgs",
    "enpire_env",
    "enpire_policy",
    "enpire_rollout",
    "enpire_evolve",
    "enpire_bringup",
}


def test_the_six_packages_exist():
    assert set(PACKAGES) == EXPECTED


@pytest.mark.parametrize("name", PACKAGES)
def test_package_xml(name):
    pkg = parse_package(SRC / name / "package.xml")  # validates strictly
    assert pkg.package_format == 3
    assert pkg.name == name
    deps = {d.name for d in pkg.build_depends + pkg.exec_depends}
    for dep in deps:
        if dep.startswith("enpire_"):
            assert dep in EXPECTED, f"{name} depends on unknown package {dep}"
    build_type = pkg.get_build_type()
    if name == "enpire_msgs":
        assert build_type == "ament_cmake"
    else:
        assert build_type == "ament_python"
        assert "rclpy" in deps
        assert "python3-pytest" in {d.name for d in pkg.test_depends}


def _console_scripts(setup_py: Path) -> list[str]:
    tree = ast.parse(setup_py.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "entry_points":
            value = ast.literal_eval(node.value)
            return list(value.get("console_scripts", []))
    return []


@pytest.mark.parametrize("name", [p for p in PACKAGES if p != "enpire_msgs"])
def test_ament_python_layout_and_entry_points(name):
    pkg_dir = SRC / name
    assert (pkg_dir / "resource" / name).is_file()
    assert (pkg_dir / name / "__init__.py").is_file()
    assert f"$base/lib/{name}" in (pkg_dir / "setup.cfg").read_text()
    text = (pkg_dir / "setup.py").read_text()
    assert '"test": ["pytest"]' in text  # else colcon test finds no tests
    for script in _console_scripts(pkg_dir / "setup.py"):
        exe, target = (s.strip() for s in script.split("="))
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func))
        if exe != "enpire":
            # style: entry point name = module name, so `python -m` runs what `ros2 run` runs
            assert module == f"{name}.{exe}"

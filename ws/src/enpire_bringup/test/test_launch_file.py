"""fleet.launch.py against a stand-in of the launch / launch_ros API (neither installs here):
it uses only their public names, declares every argument with a description, and starts the
same nodes with the same parameters as `enpire launch` for 1, 4 and 8 robots, sim and
hardware."""

import ast
import importlib.util
import sys
import types
from pathlib import Path

import pytest

from enpire_bringup.fleet import FleetConfig, node_env, plan_nodes

LAUNCH_FILE = Path(__file__).resolve().parents[1] / "launch" / "fleet.launch.py"
PUBLIC = {
    "launch": {"LaunchDescription"},
    "launch.actions": {"DeclareLaunchArgument", "GroupAction", "OpaqueFunction"},
    "launch.substitutions": {"LaunchConfiguration", "PathJoinSubstitution"},
    "launch_ros.actions": {"Node", "PushROSNamespace"},
    "launch_ros.substitutions": {"FindPackageShare"},
}


def test_imports_only_public_launch_api():
    tree = ast.parse(LAUNCH_FILE.read_text())
    compile(tree, str(LAUNCH_FILE), "exec")
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.module.startswith("enpire_bringup"):
                continue
            assert node.module in PUBLIC, node.module
            assert {a.name for a in node.names} <= PUBLIC[node.module], node.module
        elif isinstance(node, ast.Import):
            pytest.fail(f"plain import in a launch file: {[a.name for a in node.names]}")


class _Action:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class _Config:
    def __init__(self, name):
        self.name = name

    def perform(self, context):
        value = context[self.name]
        return value.perform(context) if hasattr(value, "perform") else value


class _Join:
    def __init__(self, parts):
        self.parts = parts

    def perform(self, context):
        return str(Path(*[p.perform(context) if hasattr(p, "perform") else p
                          for p in self.parts]))  # fmt: skip


class _Share:
    def __init__(self, package):
        self.package = package

    def perform(self, context):
        from enpire_bringup.fleet import bringup_share

        return str(bringup_share())


@pytest.fixture()
def launch_module(monkeypatch):
    mods = {
        "launch": {"LaunchDescription": lambda actions: list(actions)},
        "launch.actions": {"DeclareLaunchArgument": _Action, "GroupAction": _Action,
                           "OpaqueFunction": _Action},
        "launch.substitutions": {"LaunchConfiguration": _Config, "PathJoinSubstitution": _Join},
        "launch_ros": {},
        "launch_ros.actions": {"Node": _Action, "PushROSNamespace": _Action},
        "launch_ros.substitutions": {"FindPackageShare": _Share},
    }  # fmt: skip
    for name, attrs in mods.items():
        m = types.ModuleType(name)
        for k, v in attrs.items():
            setattr(m, k, v)
        monkeypatch.setitem(sys.modules, name, m)
    spec = importlib.util.spec_from_file_location("fleet_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _launched(module, **overrides):
    actions = module.generate_launch_description()
    declared = [a for a in actions if a.kwargs.get("default_value") is not None or a.args]
    context = {}
    for a in actions:
        if a.args:  # DeclareLaunchArgument(name, default_value=..., description=...)
            assert a.kwargs.get("description"), f"argument {a.args[0]} has no description"
            context[a.args[0]] = a.kwargs["default_value"]
    assert declared
    context.update(overrides)
    (opaque,) = [a for a in actions if "function" in a.kwargs]
    nodes = []
    for item in opaque.kwargs["function"](context):
        ns = ""
        if item.args:  # GroupAction([PushROSNamespace(ns), node])
            push, item = item.args[0]
            ns = push.args[0]
        nodes.append((ns, item.kwargs))
    return nodes


@pytest.mark.parametrize("robots", [1, 4, 8])
@pytest.mark.parametrize("sim", [True, False])
@pytest.mark.parametrize("rviz", [False, True])
def test_launch_file_and_enpire_launch_agree(launch_module, robots, sim, rviz):
    launched = _launched(launch_module, robots=str(robots), sim=str(sim).lower(), agents="2",
                         rviz=str(rviz).lower())  # fmt: skip
    planned = plan_nodes(FleetConfig(robots=robots, sim=sim, agents=2, rviz=rviz))
    _agree(launched, planned)
    names = [kw["name"] for _, kw in launched]
    assert names.count("evolve_node") == 1
    assert names.count("viz") == (robots if rviz else 0)
    assert names.count("rviz2") == int(rviz)
    assert names.count("sim_cell" if sim else "controller_manager") == robots


def test_launch_file_python_driver(launch_module):
    launched = _launched(
        launch_module,
        robots="arm_a,arm_b",
        sim="false",
        hardware_driver="python",
        serial_ports="/dev/ttyUSB0,/dev/ttyUSB1",
    )
    planned = plan_nodes(FleetConfig(robots="arm_a,arm_b", sim=False, hardware_driver="python",
                                     serial_ports="/dev/ttyUSB0,/dev/ttyUSB1"))  # fmt: skip
    _agree(launched, planned)
    drivers = [kw for _, kw in launched if kw["name"] == "so101_driver"]
    assert [d["parameters"][0]["port"] for d in drivers] == ["/dev/ttyUSB0", "/dev/ttyUSB1"]


def _agree(launched, planned):
    assert len(launched) == len(planned)
    for (ns, kw), spec in zip(launched, planned, strict=True):
        assert (ns, kw["package"], kw["executable"], kw["name"]) == (
            spec.namespace, spec.package, spec.executable, spec.name)  # fmt: skip
        (params,) = kw["parameters"]
        assert params.pop("use_sim_time") is False
        assert params == spec.parameters
        assert kw["arguments"] == spec.arguments and kw["remappings"] == spec.remappings
        assert kw["additional_env"] == node_env()


def test_launch_file_synthetic_camera(launch_module, tmp_path):
    cal = str(tmp_path / "cal")
    launched = _launched(launch_module, robots="2", camera="synthetic", calibration_dir=cal)
    planned = plan_nodes(FleetConfig(robots=2, camera="synthetic", calibration_dir=cal))
    _agree(launched, planned)
    cells = [kw["parameters"][0] for _, kw in launched if kw["name"] == "sim_cell"]
    assert [c["camera_model"] for c in cells] == ["synthetic"] * 2
    assert all(c["calibration_dir"] == cal for c in cells)
    (env,) = [kw["parameters"][0] for _, kw in launched if kw["name"] == "env_node"]
    assert env["calibration_dir"] == cal
    with pytest.raises(ValueError, match="topdown or synthetic"):
        FleetConfig(camera="fisheye")

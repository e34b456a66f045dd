"""The launch plan: which nodes a fleet runs, with which parameters.

ROS-free and shared by ``launch/fleet.launch.py`` and ``enpire launch``, so both start the same
nodes with the same parameters.
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROBOT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
AGENT_BACKENDS = ("offline", "openai")


@dataclass
class NodeSpec:
    """One node to start: ``ros2 run <package> <executable>`` under a name and namespace."""

    package: str
    executable: str
    name: str
    namespace: str = ""
    parameters: dict = field(default_factory=dict)

    @property
    def module(self) -> str:
        # entry point name = module name, so `python -m` runs what `ros2 run` would
        return f"{self.package}.{self.executable}"

    @property
    def fqn(self) -> str:
        ns = self.namespace.strip("/")
        return f"/{ns}/{self.name}" if ns else f"/{self.name}"


def parse_robots(robots: str | int | list[str]) -> list[str]:
    """``4`` -> robot_0..robot_3; ``"arm_a,arm_b"`` -> those names."""
    if isinstance(robots, list):
        names = [str(r).strip() for r in robots]
    elif isinstance(robots, int) or str(robots).strip().isdigit():
        n = int(robots)
        if n < 1:
            raise ValueError(f"robots must be >= 1, got {n}")
        names = [f"robot_{i}" for i in range(n)]
    else:
        names = [r.strip() for r in str(robots).split(",") if r.strip()]
    if not names:
        raise ValueError("robots: give a count or a comma-separated list of names")
    for n in names:
        if not ROBOT_NAME.match(n):
            raise ValueError(f"robot name '{n}' is not a valid ROS namespace name")
    if len(set(names)) != len(names):
        raise ValueError(f"robot names repeat: {names}")
    return names


def default_params_file() -> Path:
    """config/enpire.yaml of the installed package, else of the source tree."""
    try:
        from ament_index_python.packages import get_package_share_directory

        p = Path(get_package_share_directory("enpire_bringup")) / "config" / "enpire.yaml"
        if p.is_file():
            return p
    except Exception:  # noqa: BLE001 - not installed / no ament index: use the source tree
        pass
    return Path(__file__).resolve().parent.parent / "config" / "enpire.yaml"


@dataclass
class FleetConfig:
    robots: list[str] = field(default_factory=lambda: ["robot_0"])
    sim: bool = True
    agents: int = 0
    agent_backend: str = "offline"
    task: str = "pusht"
    params_file: Path = field(default_factory=default_params_file)
    time_scale: float | None = None  # overrides sim_cell's time_scale when set
    data_dir: str | None = None  # overrides rollout_node.data_dir and train_node.artifacts_dir

    def __post_init__(self) -> None:
        self.robots = parse_robots(self.robots)
        if self.agents < 0:
            raise ValueError(f"agents must be >= 0, got {self.agents}")
        if self.agent_backend not in AGENT_BACKENDS:
            raise ValueError(
                f"agent_backend '{self.agent_backend}' unknown; use {', '.join(AGENT_BACKENDS)}"
            )
        if self.time_scale is not None and not float(self.time_scale) > 0:
            raise ValueError(f"time_scale must be > 0, got {self.time_scale}")
        self.params_file = Path(os.path.expanduser(str(self.params_file)))
        if not self.params_file.is_file():
            raise ValueError(f"params file not found: {self.params_file}")


def load_params(params_file: Path) -> dict[str, dict]:
    """``{node_name: {param: value}}`` from a ROS 2 params file."""
    data = yaml.safe_load(Path(params_file).read_text()) or {}
    out: dict[str, dict] = {}
    for key, block in data.items():
        if not isinstance(block, dict) or "ros__parameters" not in block:
            raise ValueError(f"{params_file}: block '{key}' has no ros__parameters")
        out[str(key).strip("/").split("/")[-1]] = dict(block["ros__parameters"] or {})
    return out


def plan_nodes(cfg: FleetConfig) -> list[NodeSpec]:
    """The nodes of a fleet, in start order."""
    params = load_params(cfg.params_file)

    def node(package: str, executable: str, name: str, namespace: str = "", **overrides):
        p = copy.deepcopy(params.get(name, {}))
        p.update(overrides)
        return NodeSpec(package, executable, name, namespace, p)

    nodes = []
    if cfg.sim:
        for i, robot in enumerate(cfg.robots):
            extra = {} if cfg.time_scale is None else {"time_scale": float(cfg.time_scale)}
            nodes.append(node("enpire_env", "sim_cell_node", "sim_cell", robot, seed=i, **extra))
    for robot in cfg.robots:
        nodes.append(node("enpire_env", "safety_filter_node", "safety_filter", robot))
    nodes.append(node("enpire_env", "env_node", "env_node", robots=list(cfg.robots)))
    data = {} if not cfg.data_dir else {"data_dir": str(cfg.data_dir)}
    arts = {} if not cfg.data_dir else {"artifacts_dir": str(Path(cfg.data_dir) / "artifacts")}
    nodes.append(node("enpire_policy", "train_node", "train_node", **arts))
    scale = (
        cfg.time_scale
        if cfg.time_scale is not None
        else params.get("sim_cell", {}).get("time_scale", 1.0)
    )
    nodes.append(node("enpire_rollout", "rollout_node", "rollout_node",
                      robots=list(cfg.robots), time_scale=float(scale if cfg.sim else 1.0),
                      **data))  # fmt: skip
    if cfg.agents > 0:
        nodes.append(node("enpire_evolve", "evolve_node", "evolve_node", agents=int(cfg.agents),
                          backend=cfg.agent_backend, **data))  # fmt: skip
    return nodes


class _NoAliasDumper(yaml.SafeDumper):
    """rcl's params-file parser refuses YAML anchors/aliases."""

    def ignore_aliases(self, data) -> bool:
        return True


def write_params_file(specs: list[NodeSpec], path: Path) -> Path:
    """One params file holding every node's parameters under its fully qualified name."""
    data = {s.fqn: {"ros__parameters": s.parameters} for s in specs if s.parameters}
    Path(path).write_text(yaml.dump(data, Dumper=_NoAliasDumper, sort_keys=False))
    return Path(path)

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

from enpire_policy.isolation import SMALL_MATH_ENV

ROBOT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
AGENT_BACKENDS = ("offline", "openai")
MOCK_HARDWARE = "mock_components/GenericSystem"
HARDWARE_DRIVERS = ("ros2_control", "python")
# Environment of every node process, unless the user's environment sets the variable (the
# policy workers' too: one place, enpire_policy.isolation)
NODE_ENV = dict(SMALL_MATH_ENV)


def node_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The variables of NODE_ENV the environment (default: this process's) leaves unset."""
    environ = os.environ if environ is None else environ
    return {k: v for k, v in NODE_ENV.items() if k not in environ}


@dataclass
class NodeSpec:
    """One node to start: ``ros2 run <package> <executable>`` under a name and namespace."""

    package: str
    executable: str
    name: str
    namespace: str = ""
    parameters: dict = field(default_factory=dict)
    arguments: list[str] = field(default_factory=list)  # command-line arguments (spawners)
    remappings: list[tuple[str, str]] = field(default_factory=list)
    python: bool = True  # an enpire node `python -m` runs; False: a ROS package's executable
    # a node that dies is started again after respawn_delay s (doubling, up to 30 s), as
    # launch_ros' respawn / respawn_delay / respawn_max_retries; past max_respawns deaths in a
    # row (each within 30 s of its start) it ends the launch
    respawn: bool = True
    respawn_delay: float = 1.0
    max_respawns: int = 5

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
    # hardware (sim=False): the ros2_control plugin, and one serial port / camera per robot
    hardware_plugin: str = MOCK_HARDWARE
    serial_ports: list[str] | str = ""  # "" = /dev/ttyACM<i>
    camera_devices: list[str] | str = ""  # "" = /dev/video<2 i>
    rviz: bool = False  # markers per robot, cells side by side in a world frame, and rviz2
    hardware_driver: str = "ros2_control"  # or "python": enpire's Feetech node per arm
    # refuse to run agent code below this isolation level ("" = the params file's, and
    # "landlock" on hardware: no agent code on real arms without OS-level file isolation)
    min_isolation: str = ""
    max_respawns: int = 5  # restarts of a node that keeps dying before the launch ends
    camera: str = ""  # sim cells' camera_model: topdown | synthetic ("" = the params file's)
    calibration_dir: str | None = None  # EN's (and the sim cells') camera calibrations

    def __post_init__(self) -> None:
        self.robots = parse_robots(self.robots)
        if self.min_isolation:
            from enpire_policy.isolation import rank

            rank(self.min_isolation)  # a clear error for an unknown level
        if self.agents < 0:
            raise ValueError(f"agents must be >= 0, got {self.agents}")
        if self.camera not in ("", "topdown", "synthetic"):
            raise ValueError(f"camera must be topdown or synthetic, got {self.camera!r}")
        if self.max_respawns < 0:
            raise ValueError(f"max_respawns must be >= 0, got {self.max_respawns}")
        if self.agent_backend not in AGENT_BACKENDS:
            raise ValueError(
                f"agent_backend '{self.agent_backend}' unknown; use {', '.join(AGENT_BACKENDS)}"
            )
        if self.time_scale is not None and not float(self.time_scale) > 0:
            raise ValueError(f"time_scale must be > 0, got {self.time_scale}")
        self.params_file = Path(os.path.expanduser(str(self.params_file)))
        if not self.params_file.is_file():
            raise ValueError(f"params file not found: {self.params_file}")
        n = len(self.robots)
        self.serial_ports = _per_robot(self.serial_ports, n, "serial_ports",
                                       [f"/dev/ttyACM{i}" for i in range(n)])  # fmt: skip
        self.camera_devices = _per_robot(self.camera_devices, n, "camera_devices",
                                         [f"/dev/video{2 * i}" for i in range(n)])  # fmt: skip
        if self.hardware_driver not in HARDWARE_DRIVERS:
            raise ValueError(f"hardware_driver must be one of {HARDWARE_DRIVERS}, "
                             f"got {self.hardware_driver!r}")  # fmt: skip
        if not self.hardware_plugin or "/" not in self.hardware_plugin:
            raise ValueError(
                f"hardware_plugin must be 'package/Class', got {self.hardware_plugin!r}"
            )


def _per_robot(value, n: int, name: str, default: list[str]) -> list[str]:
    items = value if isinstance(value, list) else [v.strip() for v in str(value).split(",")]
    items = [str(v) for v in items if str(v)]
    if not items:
        return default
    if len(items) != n:
        raise ValueError(f"{name}: {len(items)} given for {n} robot(s)")
    return items


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
    # simulated cells run the safety filter themselves, with the safety_filter block's values
    filter_in_cell = cfg.sim and params.get("sim_cell", {}).get("safety_filter", True)
    if cfg.sim:
        for i, robot in enumerate(cfg.robots):
            extra = {} if cfg.time_scale is None else {"time_scale": float(cfg.time_scale)}
            if cfg.camera:
                extra["camera_model"] = cfg.camera
            if cfg.calibration_dir:
                extra["calibration_dir"] = str(cfg.calibration_dir)
            if filter_in_cell:
                extra = {**params.get("safety_filter", {}), **extra}
            nodes.append(node("enpire_env", "sim_cell_node", "sim_cell", robot, seed=i, **extra))
    else:
        for i, robot in enumerate(cfg.robots):
            nodes += hardware_nodes(cfg, robot, i, params)
    if not filter_in_cell:
        for robot in cfg.robots:
            nodes.append(node("enpire_env", "safety_filter_node", "safety_filter", robot))
    cal = {} if not cfg.calibration_dir else {"calibration_dir": str(cfg.calibration_dir)}
    nodes.append(node("enpire_env", "env_node", "env_node", robots=list(cfg.robots), **cal))
    data = {} if not cfg.data_dir else {"data_dir": str(cfg.data_dir)}
    arts = {} if not cfg.data_dir else {"artifacts_dir": str(Path(cfg.data_dir) / "artifacts")}
    iso = {}
    if cfg.min_isolation or not cfg.sim:
        iso = {"min_isolation": cfg.min_isolation or "landlock"}
    arts.update(iso)
    nodes.append(node("enpire_policy", "train_node", "train_node", **arts))
    scale = (
        cfg.time_scale
        if cfg.time_scale is not None
        else params.get("sim_cell", {}).get("time_scale", 1.0)
    )
    nodes.append(node("enpire_rollout", "rollout_node", "rollout_node",
                      robots=list(cfg.robots), time_scale=float(scale if cfg.sim else 1.0),
                      **data, **iso))  # fmt: skip
    if cfg.agents > 0:
        nodes.append(node("enpire_evolve", "evolve_node", "evolve_node", agents=int(cfg.agents),
                          backend=cfg.agent_backend, **data, **iso))  # fmt: skip
    if cfg.rviz:
        nodes += rviz_nodes(cfg, params)
    for n in nodes:
        n.max_respawns = cfg.max_respawns
    align_confirmation(nodes)
    return nodes


def align_confirmation(nodes: list[NodeSpec]) -> None:
    """The evolve node's goal decides what the rollout node's queue confirms: one rule, set
    once (goal rate, fresh episodes, chunk; whether candidates go through the queue)."""
    evolve = next((n for n in nodes if n.name == "evolve_node"), None)
    rollout = next((n for n in nodes if n.name == "rollout_node"), None)
    if evolve is None or rollout is None:
        return
    e = evolve.parameters
    for theirs, mine in (("goal_success", "confirm_goal_success"),
                         ("confirm_episodes", "confirm_episodes"),
                         ("confirm_chunk", "confirm_chunk")):  # fmt: skip
        if theirs in e:
            rollout.parameters[mine] = e[theirs]
    if e.get("experiment_queue", True):
        rollout.parameters["experiment_queue"] = True


CELL_SPACING = 0.5  # m between cells in rviz's world frame


def rviz_nodes(cfg: FleetConfig, params: dict) -> list[NodeSpec]:
    """Per robot a viz node (markers in <robot>/base_link) and a static transform placing that
    frame in ``world``; then rviz2 with a config showing every robot's markers and camera."""
    out = []
    for i, robot in enumerate(cfg.robots):
        viz = copy.deepcopy(params.get("viz", {}))
        viz["frame_id"] = f"{robot}/base_link"
        out.append(NodeSpec("enpire_env", "viz_node", "viz", robot, viz))
        out.append(NodeSpec(
            "tf2_ros", "static_transform_publisher", "world_to_base", robot,
            arguments=["--x", f"{i * CELL_SPACING:g}", "--frame-id", "world",
                       "--child-frame-id", f"{robot}/base_link"], python=False))  # fmt: skip
    out.append(NodeSpec("rviz2", "rviz2", "rviz2", arguments=["-d", str(rviz_file(cfg.robots))],
                        python=False))  # fmt: skip
    return out


def rviz_config(robots: list[str]) -> dict:
    """An rviz2 config showing each robot's markers and top-down camera in the world frame."""
    displays = [{"Class": "rviz_default_plugins/Grid", "Name": "Grid", "Enabled": True,
                 "Cell Size": 0.1, "Plane Cell Count": 40, "Reference Frame": "world"},
                {"Class": "rviz_default_plugins/TF", "Name": "TF", "Enabled": False}]  # fmt: skip
    for robot in robots:
        markers = {
            "Value": f"/{robot}/viz/markers",
            "Depth": 5,
            "Reliability Policy": "Reliable",
            "Durability Policy": "Volatile",
        }
        camera = {
            "Value": f"/{robot}/camera/image_raw",
            "Depth": 1,
            "Reliability Policy": "Best Effort",
        }
        displays.append(
            {
                "Class": "rviz_default_plugins/MarkerArray",
                "Name": f"{robot} cell",
                "Enabled": True,
                "Topic": markers,
            }
        )
        displays.append(
            {
                "Class": "rviz_default_plugins/Image",
                "Name": f"{robot} camera",
                "Enabled": True,
                "Topic": camera,
            }
        )
    return {"Panels": [{"Class": "rviz_common/Displays", "Name": "Displays"}],
            "Visualization Manager": {
                "Class": "", "Name": "root", "Enabled": True, "Displays": displays,
                "Global Options": {"Fixed Frame": "world", "Frame Rate": 30},
                "Views": {"Current": {"Class": "rviz_default_plugins/TopDownOrtho",
                                      "Name": "Current View", "Scale": 400,
                                      "X": CELL_SPACING * (len(robots) - 1) / 2, "Y": 0}}},
            "Window Geometry": {"Width": 1400, "Height": 900}}  # fmt: skip


def rviz_file(robots: list[str]) -> Path:
    """rviz/enpire.rviz when it shows exactly these robots, else a generated file."""
    shipped = bringup_share() / "rviz" / "enpire.rviz"
    cfg = rviz_config(robots)
    if shipped.is_file() and yaml.safe_load(shipped.read_text()) == cfg:
        return shipped
    import hashlib
    import tempfile

    text = yaml.safe_dump(cfg, sort_keys=False)
    name = f"enpire-{hashlib.sha1(text.encode()).hexdigest()[:10]}.rviz"
    path = Path(tempfile.gettempdir()) / name
    if not path.is_file():
        path.write_text(text)
    return path


def bringup_share() -> Path:
    """enpire_bringup's share folder (installed), else the source tree."""
    try:
        from ament_index_python.packages import get_package_share_directory

        p = Path(get_package_share_directory("enpire_bringup"))
        if (p / "urdf").is_dir():
            return p
    except Exception:  # noqa: BLE001 - not installed: the source tree
        pass
    return Path(__file__).resolve().parent.parent


def robot_description(hardware_plugin: str = MOCK_HARDWARE, serial_port: str = "/dev/ttyACM0"
                      ) -> str:  # fmt: skip
    """The SO-101 URDF with its ros2_control block for one arm."""
    import xacro

    doc = xacro.process_file(
        str(bringup_share() / "urdf" / "so101.urdf.xacro"),
        mappings={"hardware_plugin": hardware_plugin, "serial_port": serial_port},
    )  # fmt: skip
    return doc.toxml()


def hardware_nodes(cfg: FleetConfig, robot: str, index: int, params: dict) -> list[NodeSpec]:
    """One real SO-101 under ros2_control, in the robot's namespace: robot_state_publisher,
    the controller manager, spawners for joint_state_broadcaster and arm_controller, and a
    V4L2 camera publishing camera/image_raw — the topics a simulated cell serves."""
    controllers = str(bringup_share() / "config" / "so101_controllers.yaml")
    cm_params = yaml.safe_load(Path(controllers).read_text())["controller_manager"]
    desc = robot_description(cfg.hardware_plugin, cfg.serial_ports[index])
    spawn = ["--controller-manager", "controller_manager", "--param-file", controllers]
    camera = copy.deepcopy(params.get("camera", {}))
    camera["video_device"] = cfg.camera_devices[index]
    camera_node = NodeSpec(
        "v4l2_camera",
        "v4l2_camera_node",
        "camera",
        robot,
        camera,
        python=False,
        remappings=[("image_raw", "camera/image_raw"), ("camera_info", "camera/camera_info")],
    )
    if cfg.hardware_driver == "python":
        driver = copy.deepcopy(params.get("so101_driver", {}))
        driver["port"] = cfg.serial_ports[index]
        return [
            NodeSpec("robot_state_publisher", "robot_state_publisher", "robot_state_publisher",
                     robot, {"robot_description": desc, "frame_prefix": f"{robot}/"},
                     python=False),
            NodeSpec("enpire_env", "so101_driver_node", "so101_driver", robot, driver),
            camera_node,
        ]  # fmt: skip
    return [
        NodeSpec("robot_state_publisher", "robot_state_publisher", "robot_state_publisher",
                 robot, {"robot_description": desc, "frame_prefix": f"{robot}/"},
                 python=False),
        NodeSpec("controller_manager", "ros2_control_node", "controller_manager", robot,
                 dict(cm_params["ros__parameters"]), python=False,
                 remappings=[("~/robot_description", "robot_description")]),
        NodeSpec("controller_manager", "spawner", "spawner_joint_state_broadcaster", robot,
                 arguments=["joint_state_broadcaster", *spawn], python=False),
        NodeSpec("controller_manager", "spawner", "spawner_arm_controller", robot,
                 arguments=["arm_controller", *spawn], python=False),
        camera_node,
    ]  # fmt: skip


class _NoAliasDumper(yaml.SafeDumper):
    """rcl's params-file parser refuses YAML anchors/aliases."""

    def ignore_aliases(self, data) -> bool:
        return True


def write_params_file(specs: list[NodeSpec], path: Path) -> Path:
    """One params file holding every node's parameters under its fully qualified name."""
    data = {s.fqn: {"ros__parameters": s.parameters} for s in specs if s.parameters}
    Path(path).write_text(yaml.dump(data, Dumper=_NoAliasDumper, sort_keys=False))
    return Path(path)

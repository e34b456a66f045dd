"""MoveIt configuration of the SO-101 for enpire's MoveIt reset backend (ROS-free, no MoveIt).

The files live in ``enpire_bringup/config/moveit/``: the SRDF, ``kinematics.yaml``,
``joint_limits.yaml``, ``pilz_cartesian_limits.yaml``, one ``<pipeline>_planning.yaml`` per
planning pipeline and ``moveit_py.yaml`` (MoveItPy's own options and the named plan-request
parameter sets). :func:`moveit_config_dict` merges them into the parameter dictionary MoveItPy
takes as ``config_dict``, laid out as ``moveit_configs_utils.MoveItConfigsBuilder`` lays it out.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

from enpire_env.kinematics import bringup_path, default_urdf

SRDF_NAME = "so101.srdf"
PLANNING_GROUP = "arm"
TIP_LINK = "tool_tip"


class MoveItConfigError(ValueError):
    """The MoveIt configuration is missing or inconsistent."""


def default_moveit_config_dir() -> Path:
    """enpire_bringup's config/moveit, installed or in the source tree."""
    try:
        return bringup_path("config/moveit", "ENPIRE_MOVEIT_CONFIG_DIR")
    except FileNotFoundError as e:
        raise MoveItConfigError(str(e)) from None


def _yaml(path: Path) -> dict:
    if not path.is_file():
        raise MoveItConfigError(f"missing MoveIt config file {path}")
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise MoveItConfigError(f"{path} must hold a mapping")
    return data


def srdf_groups(srdf: str) -> dict[str, ET.Element]:
    return {g.get("name"): g for g in ET.fromstring(srdf).findall("group")}


def moveit_config_dict(config_dir: str | Path | None = None, urdf: str | None = None) -> dict:
    """The parameters MoveItPy needs (``MoveItPy(config_dict=...)``) for the SO-101."""
    d = Path(config_dir) if config_dir else default_moveit_config_dir()
    srdf_path = d / SRDF_NAME
    if not srdf_path.is_file():
        raise MoveItConfigError(f"missing SRDF {srdf_path}")
    srdf = srdf_path.read_text()
    if PLANNING_GROUP not in srdf_groups(srdf):
        raise MoveItConfigError(f"{srdf_path} has no planning group '{PLANNING_GROUP}'")
    own = _yaml(d / "moveit_py.yaml")
    pipelines = own.get("planning_pipelines", {}).get("pipeline_names", [])
    if not pipelines:
        raise MoveItConfigError("moveit_py.yaml: planning_pipelines.pipeline_names is empty")
    planning = _yaml(d / "joint_limits.yaml")
    planning.update(_yaml(d / "pilz_cartesian_limits.yaml"))
    params = {
        "robot_description": urdf or default_urdf(),
        "robot_description_semantic": srdf,
        "robot_description_kinematics": _yaml(d / "kinematics.yaml"),
        "robot_description_planning": planning,
        **own,
    }
    for name in pipelines:
        params[name] = _yaml(d / f"{name}_planning.yaml")
    return params


def plan_request_namespaces(params: dict) -> list[str]:
    """Names usable as ``PlanRequestParameters(moveit, ns)`` ("" = the top-level set)."""
    out = [""] if "plan_request_params" in params else []
    out += [k for k, v in params.items() if isinstance(v, dict) and "plan_request_params" in v]
    return out

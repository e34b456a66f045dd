from pathlib import Path

import pytest
import yaml

from enpire_bringup.fleet import (
    FleetConfig,
    default_params_file,
    load_params,
    parse_robots,
    plan_nodes,
    write_params_file,
)


def test_robot_count_and_names():
    assert parse_robots(3) == ["robot_0", "robot_1", "robot_2"]
    assert parse_robots("2") == ["robot_0", "robot_1"]
    assert parse_robots("arm_a, arm_b") == ["arm_a", "arm_b"]


@pytest.mark.parametrize("bad", ["0", "", "a,a", "1arm", "arm-b"])
def test_bad_robot_specs_are_rejected(bad):
    with pytest.raises(ValueError):
        parse_robots(bad)


def test_config_validates_itself(tmp_path):
    with pytest.raises(ValueError, match="agents"):
        FleetConfig(agents=-1)
    with pytest.raises(ValueError, match="agent_backend"):
        FleetConfig(agent_backend="gpt-magic")
    with pytest.raises(ValueError, match="not found"):
        FleetConfig(params_file=tmp_path / "nope.yaml")


def test_default_params_file_has_a_block_per_node():
    params = load_params(default_params_file())
    assert "env_node" in params
    assert params["env_node"]["max_attempts"] == 3


def test_plan_gives_env_node_the_fleet_robots():
    specs = plan_nodes(FleetConfig(robots="4"))
    env = next(s for s in specs if s.name == "env_node")
    assert env.parameters["robots"] == ["robot_0", "robot_1", "robot_2", "robot_3"]
    assert env.parameters["default_mode"] == "pick_place"
    assert env.module == "enpire_env.env_node"


def test_params_file_overrides_are_used(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("env_node:\n  ros__parameters:\n    max_attempts: 7\n")
    (env,) = [s for s in plan_nodes(FleetConfig(params_file=f)) if s.name == "env_node"]
    assert env.parameters["max_attempts"] == 7


def test_block_without_ros_parameters_is_an_error(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("env_node:\n  max_attempts: 7\n")
    with pytest.raises(ValueError, match="ros__parameters"):
        load_params(f)


def test_written_params_file_uses_fully_qualified_names(tmp_path):
    specs = plan_nodes(FleetConfig(robots="2"))
    data = yaml.safe_load(write_params_file(specs, tmp_path / "x.yaml").read_text())
    assert data["/env_node"]["ros__parameters"]["robots"] == ["robot_0", "robot_1"]


def test_written_params_file_has_no_yaml_aliases(tmp_path):
    # rcl refuses anchors/aliases ("Will not support aliasing"); robots share list values
    text = write_params_file(plan_nodes(FleetConfig(robots="3")), tmp_path / "x.yaml").read_text()
    assert "&id" not in text and "*id" not in text
    data = yaml.safe_load(text)
    assert data["/robot_2/sim_cell"]["ros__parameters"]["workspace_min"][0] == 0.05


def test_plan_per_robot_nodes_in_namespaces():
    specs = plan_nodes(FleetConfig(robots="2", time_scale=7.0))
    names = [s.fqn for s in specs]
    assert names == [
        "/robot_0/sim_cell", "/robot_1/sim_cell", "/env_node", "/train_node", "/rollout_node",
    ]  # fmt: skip
    assert specs[0].parameters["time_scale"] == 7.0 and specs[1].parameters["seed"] == 1
    # the sim cells run the safety filter themselves, with the safety_filter block's values
    assert specs[0].parameters["safety_filter"] is True
    assert specs[0].parameters["watchdog_timeout"] == 0.5
    rollout = specs[-1].parameters
    assert rollout["robots"] == ["robot_0", "robot_1"] and rollout["time_scale"] == 7.0
    data = plan_nodes(FleetConfig(robots="1", data_dir="/tmp/x"))
    assert data[-1].parameters["data_dir"] == "/tmp/x"
    assert data[-2].parameters["artifacts_dir"] == "/tmp/x/artifacts"
    hw = [s.fqn for s in plan_nodes(FleetConfig(robots="2", sim=False))]
    assert "/robot_0/sim_cell" not in hw and "/robot_0/safety_filter" in hw


def test_sim_cells_without_their_own_filter_get_the_filter_node(tmp_path):
    params = yaml.safe_load(default_params_file().read_text())
    params["sim_cell"]["ros__parameters"]["safety_filter"] = False
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump(params))
    names = [s.fqn for s in plan_nodes(FleetConfig(robots="2", params_file=f))]
    assert "/robot_0/safety_filter" in names and "/robot_1/safety_filter" in names


def test_agents_add_the_evolve_node_with_its_config(tmp_path):
    assert not [s for s in plan_nodes(FleetConfig(robots=2)) if s.name == "evolve_node"]
    specs = plan_nodes(FleetConfig(robots=2, agents=3, agent_backend="openai",
                                   data_dir=str(tmp_path)))  # fmt: skip
    (evolve,) = [s for s in specs if s.name == "evolve_node"]
    assert evolve.package == "enpire_evolve" and evolve.executable == "evolve_node"
    assert evolve.parameters["agents"] == 3 and evolve.parameters["backend"] == "openai"
    assert evolve.parameters["data_dir"] == str(tmp_path)  # the rollout node's ledger
    (rollout,) = [s for s in specs if s.name == "rollout_node"]
    assert rollout.parameters["data_dir"] == evolve.parameters["data_dir"]
    assert evolve.parameters["llm"]["api_key_env"] == "OPENAI_API_KEY"
    # every declared parameter of the node has a value in the params file
    from enpire_evolve.evolution import EvolveConfig

    for name in EvolveConfig.__dataclass_fields__:
        if name not in ("run_id", "llm", "agents", "backend"):
            assert name in evolve.parameters, name
    # the params file the launcher writes round-trips, nested llm block included
    out = write_params_file(specs, tmp_path / "p.yaml")
    data = yaml.safe_load(out.read_text())
    assert data["/evolve_node"]["ros__parameters"]["llm"]["model"]


def test_hardware_mode_runs_ros2_control_per_robot():
    cfg = FleetConfig(robots="arm_a,arm_b", sim=False,
                      hardware_plugin="feetech_ros2_driver/FeetechHardwareInterface",
                      serial_ports="/dev/ttyUSB0,/dev/ttyUSB1")  # fmt: skip
    specs = plan_nodes(cfg)
    assert not [s for s in specs if s.name == "sim_cell"]
    for robot, port in (("arm_a", "/dev/ttyUSB0"), ("arm_b", "/dev/ttyUSB1")):
        mine = {s.name: s for s in specs if s.namespace == robot}
        assert set(mine) == {"robot_state_publisher", "controller_manager", "camera",
                             "spawner_joint_state_broadcaster", "spawner_arm_controller",
                             "safety_filter"}  # fmt: skip
        desc = mine["robot_state_publisher"].parameters["robot_description"]
        assert "feetech_ros2_driver/FeetechHardwareInterface" in desc and port in desc
        assert mine["spawner_arm_controller"].arguments[0] == "arm_controller"
        assert ("image_raw", "camera/image_raw") in mine["camera"].remappings
        assert not mine["controller_manager"].python and mine["safety_filter"].python
    with pytest.raises(ValueError, match="serial_ports"):
        FleetConfig(robots=2, sim=False, serial_ports="/dev/ttyUSB0")
    with pytest.raises(ValueError, match="hardware_plugin"):
        FleetConfig(robots=1, hardware_plugin="nonsense")


def test_rviz_shows_every_robot_side_by_side():
    from enpire_bringup.fleet import bringup_share, rviz_config, rviz_file

    specs = plan_nodes(FleetConfig(robots=3, rviz=True))
    viz = [s for s in specs if s.name == "viz"]
    assert [s.parameters["frame_id"] for s in viz] == [f"robot_{i}/base_link" for i in range(3)]
    tfs = [s for s in specs if s.name == "world_to_base"]
    assert [s.arguments[1] for s in tfs] == ["0", "0.5", "1"]
    (rviz,) = [s for s in specs if s.name == "rviz2"]
    cfg = yaml.safe_load(Path(rviz.arguments[1]).read_text())
    topics = [d["Topic"]["Value"] for d in cfg["Visualization Manager"]["Displays"]
              if "Topic" in d]  # fmt: skip
    assert "/robot_2/viz/markers" in topics and "/robot_0/camera/image_raw" in topics
    # the shipped rviz/enpire.rviz is the generated config of the default 4-robot fleet
    four = [f"robot_{i}" for i in range(4)]
    shipped = bringup_share() / "rviz" / "enpire.rviz"
    assert yaml.safe_load(shipped.read_text()) == rviz_config(four)
    assert rviz_file(four) == shipped


def test_the_params_file_sets_every_rollout_service_parameter_at_its_default():
    from dataclasses import fields

    from enpire_rollout.rollout_service import ServiceConfig

    params = yaml.safe_load(default_params_file().read_text())["rollout_node"]["ros__parameters"]
    declared = [f for f in fields(ServiceConfig) if "doc" in f.metadata]
    assert len(declared) >= 10
    for f in declared:
        assert f.name in params, f.name
        assert params[f.name] == f.default and type(params[f.name]) is type(f.default), f.name

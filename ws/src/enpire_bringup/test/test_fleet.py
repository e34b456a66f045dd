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
    assert data["/robot_2/safety_filter"]["ros__parameters"]["workspace_min"][0] == 0.05


def test_plan_per_robot_nodes_in_namespaces():
    specs = plan_nodes(FleetConfig(robots="2", time_scale=7.0))
    names = [s.fqn for s in specs]
    assert names == [
        "/robot_0/sim_cell", "/robot_1/sim_cell", "/robot_0/safety_filter",
        "/robot_1/safety_filter", "/env_node", "/train_node", "/rollout_node",
    ]  # fmt: skip
    assert specs[0].parameters["time_scale"] == 7.0 and specs[1].parameters["seed"] == 1
    rollout = specs[-1].parameters
    assert rollout["robots"] == ["robot_0", "robot_1"] and rollout["time_scale"] == 7.0
    data = plan_nodes(FleetConfig(robots="1", data_dir="/tmp/x"))
    assert data[-1].parameters["data_dir"] == "/tmp/x"
    assert data[-2].parameters["artifacts_dir"] == "/tmp/x/artifacts"
    hw = [s.fqn for s in plan_nodes(FleetConfig(robots="2", sim=False))]
    assert "/robot_0/sim_cell" not in hw and "/robot_0/safety_filter" in hw

"""Launch an enpire fleet: ros2 launch enpire_bringup fleet.launch.py robots:=4 sim:=true

The node list comes from enpire_bringup.fleet.plan_nodes, the same function `enpire launch` uses.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, GroupAction, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node, PushROSNamespace
from launch_ros.substitutions import FindPackageShare

from enpire_bringup.fleet import FleetConfig, node_env, plan_nodes


def _truthy(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes", "on")


def _nodes(context):
    cfg = FleetConfig(
        robots=LaunchConfiguration("robots").perform(context),
        sim=_truthy(LaunchConfiguration("sim").perform(context)),
        agents=int(LaunchConfiguration("agents").perform(context)),
        agent_backend=LaunchConfiguration("agent_backend").perform(context),
        task=LaunchConfiguration("task").perform(context),
        params_file=LaunchConfiguration("params_file").perform(context),
        time_scale=float(LaunchConfiguration("time_scale").perform(context)) or None,
        data_dir=LaunchConfiguration("data_dir").perform(context) or None,
        camera=LaunchConfiguration("camera").perform(context),
        calibration_dir=LaunchConfiguration("calibration_dir").perform(context) or None,
        hardware_plugin=LaunchConfiguration("hardware_plugin").perform(context),
        serial_ports=LaunchConfiguration("serial_ports").perform(context),
        camera_devices=LaunchConfiguration("camera_devices").perform(context),
        rviz=_truthy(LaunchConfiguration("rviz").perform(context)),
        hardware_driver=LaunchConfiguration("hardware_driver").perform(context),
    )
    use_sim_time = _truthy(LaunchConfiguration("use_sim_time").perform(context))
    actions = []
    for spec in plan_nodes(cfg):
        node = Node(
            package=spec.package,
            executable=spec.executable,
            name=spec.name,
            parameters=[{**spec.parameters, "use_sim_time": use_sim_time}],
            arguments=list(spec.arguments),
            remappings=list(spec.remappings),
            additional_env=node_env(),
            output="screen",
            # the same restart policy as `enpire launch` (the delay does not double here)
            respawn=spec.respawn,
            respawn_delay=spec.respawn_delay,
            respawn_max_retries=spec.max_respawns,
        )
        if spec.namespace:
            actions.append(GroupAction([PushROSNamespace(spec.namespace), node]))
        else:
            actions.append(node)
    return actions


def generate_launch_description():
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "robots", default_value="1", description="Robot count, or comma-separated names."
            ),
            DeclareLaunchArgument(
                "sim", default_value="true", description="Simulated cells (true) or hardware."
            ),
            DeclareLaunchArgument(
                "agents", default_value="0", description="Number of coding agents to host."
            ),
            DeclareLaunchArgument(
                "agent_backend", default_value="offline", description="offline | openai"
            ),
            DeclareLaunchArgument("task", default_value="pusht", description="Task to run."),
            DeclareLaunchArgument(
                "params_file",
                default_value=PathJoinSubstitution(
                    [FindPackageShare("enpire_bringup"), "config", "enpire.yaml"]
                ),
                description="Parameters file with one block per node.",
            ),
            DeclareLaunchArgument(
                "time_scale",
                default_value="0",
                description="Simulated cells' speed-up over real time (0: from params_file).",
            ),
            DeclareLaunchArgument(
                "data_dir",
                default_value="",
                description="Datasets, MCAP logs, ledger and artifacts ('': from params_file).",
            ),
            DeclareLaunchArgument(
                "camera",
                default_value="",
                description="Simulated cells' camera: topdown or synthetic ('': params_file).",
            ),
            DeclareLaunchArgument(
                "calibration_dir",
                default_value="",
                description="Camera calibrations <robot>.yaml for EN ('': params_file).",
            ),
            DeclareLaunchArgument(
                "use_sim_time", default_value="false", description="Use /clock as time source."
            ),
            DeclareLaunchArgument(
                "rviz",
                default_value="false",
                description="Markers per robot, the cells side by side in 'world', and rviz2.",
            ),
            DeclareLaunchArgument(
                "hardware_plugin",
                default_value="mock_components/GenericSystem",
                description="ros2_control hardware plugin of the arms (sim:=false); the mock "
                "echoes commands for a dry run, or name your Feetech/SO-101 driver's plugin.",
            ),
            DeclareLaunchArgument(
                "hardware_driver",
                default_value="ros2_control",
                description="sim:=false: 'ros2_control' (controller manager + hardware_plugin) "
                "or 'python' (enpire's Feetech bus node, same topics).",
            ),
            DeclareLaunchArgument(
                "serial_ports",
                default_value="",
                description="Comma-separated serial port per robot ('': /dev/ttyACM<i>).",
            ),
            DeclareLaunchArgument(
                "camera_devices",
                default_value="",
                description="Comma-separated V4L2 device per robot ('': /dev/video<2i>).",
            ),
            OpaqueFunction(function=_nodes),
        ]
    )

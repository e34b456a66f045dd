"""Plumbing every enpire node shares: typed, described parameters, joint-state parsing and the
``main()`` life cycle (init, spin a MultiThreadedExecutor, shut down on Ctrl-C)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node

from enpire_env.kinematics import JOINT_NAMES


def declare(node: Node, name: str, default, description: str):
    """Declare a parameter with a typed default and a description; return its value."""
    node.declare_parameter(name, default, ParameterDescriptor(description=description))
    return node.get_parameter(name).value


def joint_positions(msg) -> np.ndarray | None:
    """The SO-101 joint positions of a sensor_msgs/JointState in JOINT_NAMES order, or None
    when the message lacks one of them."""
    names = list(msg.name)
    try:
        return np.array([msg.position[names.index(n)] for n in JOINT_NAMES])
    except (ValueError, IndexError):
        return None


def run_node(factory: Callable[[], Node], num_threads: int | Callable[[Node], int], args=None):
    """``main()`` of a node: as ros2/examples, catching Ctrl-C and external shutdown alike."""
    rclpy.init(args=args)
    node = None
    try:
        node = factory()
        threads = num_threads(node) if callable(num_threads) else num_threads
        executor = MultiThreadedExecutor(num_threads=threads)
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()

"""Robot streams are read as ROS reads sensor data (best effort): a driver that publishes with
the sensor-data QoS is heard, as a reliable one is."""

import numpy as np
import rclpy
from rclpy.callback_groups import ReentrantCallbackGroup

from enpire_env.node_utils import StreamNode
from enpire_env.ros_cell_port import RosCellPort
from enpire_env.testing import sensor_driver


def test_en_hears_a_best_effort_driver(ros_context):
    node = rclpy.create_node("stream_qos_probe", context=ros_context)
    streams = StreamNode(node)
    try:
        with sensor_driver("r9") as driver:
            port = RosCellPort(node, "r9", ReentrantCallbackGroup(), streams, cell_timeout=5.0)
            with port.streaming():
                assert np.allclose(port.joint_positions(), 0.25)
                img = port.camera_image()
            assert img.shape == (48, 64, 3) and np.all(img == 7)
            assert driver.poll() is None
    finally:
        streams.close()
        node.destroy_node()

"""The rollout node hears a robot whose driver publishes with the sensor-data QoS (best
effort), as ROS reads sensor data: joint states, block pose and camera frames."""

import time

import numpy as np
import rclpy

from enpire_env.kinematics import So101Kinematics
from enpire_env.node_utils import StreamNode
from enpire_env.sim_cell import CellConfig
from enpire_env.testing import sensor_driver
from enpire_rollout.robot_link import RobotLink


def test_r_hears_a_best_effort_driver(ros_context):
    node = rclpy.create_node("link_qos_probe", context=ros_context)
    streams = StreamNode(node)
    kin, cfg = So101Kinematics(), CellConfig()
    try:
        with sensor_driver("r8") as driver:
            link = RobotLink(node, "r8", None, kin, cfg, True, streams)
            # the driver's topics are discovered before the link picks which it reads
            deadline = time.monotonic() + 10.0
            while not node.count_publishers("/r8/camera/image_raw"):
                assert time.monotonic() < deadline, "the driver was not discovered"
                time.sleep(0.1)
            link.open()
            try:
                assert link.wait_alive(5.0)
                link.start()
                assert np.allclose(link.joints(), 0.25)
                assert link.observe(0)["block_pose"] == [250.0, 260.0, 0.5]
                img = link.image(32)
                assert img.shape == (32, 32, 3) and np.all(img == 7)
            finally:
                link.close()
            assert driver.poll() is None
    finally:
        streams.close()
        node.destroy_node()

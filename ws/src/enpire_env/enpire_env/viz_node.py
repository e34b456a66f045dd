"""Visualisation of one cell for rviz, one node per robot namespace (see :mod:`.markers`).

sub  perception/block_pose     enpire_msgs/BlockPose: the T where perception sees it
sub  joint_states              the tool tip by forward kinematics on the URDF
sub  policy/joint_trajectory   the last commanded point: where the tip is heading
pub  viz/markers               visualization_msgs/MarkerArray at ``rate_hz``
"""

from __future__ import annotations

import threading

from geometry_msgs.msg import Point
from rclpy.node import Node
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory
from visualization_msgs.msg import Marker, MarkerArray

from enpire_env.kinematics import JOINT_NAMES, So101Kinematics
from enpire_env.markers import cell_markers
from enpire_env.node_utils import STREAM_QOS, declare, joint_positions, run_node
from enpire_env.sim_cell import CellConfig
from enpire_msgs.msg import BlockPose

_KINDS = {"line_strip": Marker.LINE_STRIP, "sphere": Marker.SPHERE}


def to_marker_array(items: list[dict], frame_id: str, stamp) -> MarkerArray:
    out = MarkerArray()
    for it in items:
        m = Marker()
        m.header.frame_id, m.header.stamp = frame_id, stamp
        m.ns, m.id, m.type = it["ns"], it["id"], _KINDS[it["kind"]]
        if it.get("delete"):
            m.action = Marker.DELETE
            out.markers.append(m)
            continue
        m.action = Marker.ADD
        m.pose.orientation.w = 1.0
        r, g, b, a = it["colour"]
        m.color.r, m.color.g, m.color.b, m.color.a = r, g, b, a
        if it["kind"] == "sphere":
            m.pose.position.x, m.pose.position.y, m.pose.position.z = it["position"]
            m.scale.x = m.scale.y = m.scale.z = it["scale"]
        else:
            m.scale.x = it["scale"]
            m.points = [Point(x=p[0], y=p[1], z=p[2]) for p in it["points"]]
        out.markers.append(m)
    return out


class VizNode(Node):
    def __init__(self) -> None:
        super().__init__("viz")
        self.frame_id = declare(self, "frame_id", "base_link", "Frame of the markers.")
        rate = declare(self, "rate_hz", 5.0, "Marker updates per second.")
        self.cfg = CellConfig(
            workspace_center_x=declare(self, "workspace_center_x", 0.20, "Workspace centre [m]."),
            workspace_size=declare(self, "workspace_size", 0.18, "Workspace side [m]."),
        )
        self.kin = So101Kinematics()
        self._lock = threading.Lock()
        self.block = self.tip = self.target = None
        self.create_subscription(BlockPose, "perception/block_pose", self._on_block, STREAM_QOS)
        self.create_subscription(JointState, "joint_states", self._on_joints, STREAM_QOS)
        self.create_subscription(
            JointTrajectory, "policy/joint_trajectory", self._on_cmd, STREAM_QOS
        )
        self.pub = self.create_publisher(MarkerArray, "viz/markers", 10)
        self.create_timer(1.0 / rate, self._publish)
        self.get_logger().info("viz ready")

    def _on_block(self, msg: BlockPose) -> None:
        with self._lock:
            self.block = (msg.x, msg.y, msg.theta) if msg.visible else None

    def _on_joints(self, msg: JointState) -> None:
        q = joint_positions(msg)
        if q is not None:
            with self._lock:
                self.tip = self.kin.tip_position(q)

    def _on_cmd(self, msg: JointTrajectory) -> None:
        if not msg.points or list(msg.joint_names) != list(JOINT_NAMES):
            return
        with self._lock:
            self.target = self.kin.tip_position(list(msg.points[-1].positions))

    def _publish(self) -> None:
        with self._lock:
            items = cell_markers(self.block, tip=self.tip, target=self.target, cfg=self.cfg)
        self.pub.publish(to_marker_array(items, self.frame_id, self.get_clock().now().to_msg()))


def main(args=None) -> None:
    run_node(VizNode, 2, args)


if __name__ == "__main__":
    main()

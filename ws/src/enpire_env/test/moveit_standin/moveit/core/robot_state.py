"""Stand-in for moveit.core.robot_state (see ../../README.md)."""

import numpy as np


class RobotState:
    def __init__(self, robot_model):
        self.robot_model = robot_model
        self._q = {n: 0.0 for n in robot_model.joint_names}
        self.dirty = False

    def set_joint_group_positions(self, joint_model_group_name, position_values):
        joints = self.robot_model.group_joints(joint_model_group_name)
        values = np.asarray(position_values, dtype=float)
        if values.shape != (len(joints),):
            raise ValueError(f"group {joint_model_group_name} has {len(joints)} joints")
        self._q.update(zip(joints, values.tolist(), strict=True))
        self.dirty = True

    def get_joint_group_positions(self, joint_model_group_name):
        return np.array(
            [self._q[n] for n in self.robot_model.group_joints(joint_model_group_name)]
        )

    def update(self, force=False):
        self.dirty = False

    @property
    def joint_positions(self):
        return dict(self._q)

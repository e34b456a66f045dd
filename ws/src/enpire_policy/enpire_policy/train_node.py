"""PI node: serves the ``Train`` action (recipes from :mod:`enpire_policy.recipes`).

A thin ROS wrapper over :func:`enpire_policy.train_core.run_training_isolated` (each
training in its own process). One training runs at a
time per device; further goals wait in order (feedback stage "queued") and can be canceled
while they wait. Every goal is accepted so that a bad one gets an error code and a message.
"""

from __future__ import annotations

import json
import os
import threading
import time

from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node

from enpire_env.goal_liveness import FeedbackKeepalive
from enpire_env.node_utils import declare, run_node
from enpire_msgs.action import Train
from enpire_policy import isolation
from enpire_policy.recipes.base import TrainError, TrainErrorCode, TrainRequest
from enpire_policy.train_core import TrainResult, run_training_isolated, validate


def _policy_ref(msg) -> dict:
    return {
        "name": msg.name,
        "agent_id": msg.agent_id,
        "repo_path": msg.repo_path,
        "commit": msg.commit,
        "module": msg.module,
        "artifact": msg.artifact,
    }


class TrainNode(Node):
    def __init__(self) -> None:
        super().__init__("train_node")
        self._root = os.path.expanduser(
            declare(
                self,
                "artifacts_dir",
                "~/.enpire/artifacts",
                "Where versioned training artifacts are written.",
            )  # fmt: skip
        )
        self._default_budget = declare(
            self, "default_time_budget", 3600.0, "Compute seconds when a goal gives 0."
        )
        self.get_logger().info(
            isolation.start_up(
                declare(self, "isolation", "auto", isolation.PARAM_DOC),
                declare(self, "min_isolation", "rlimits", isolation.MIN_PARAM_DOC),
            )
        )
        self._device_locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._server = ActionServer(
            self,
            Train,
            "train",
            execute_callback=self._execute,
            goal_callback=lambda _g: GoalResponse.ACCEPT,
            cancel_callback=lambda _g: CancelResponse.ACCEPT,
            callback_group=ReentrantCallbackGroup(),
        )
        self.get_logger().info(f"train server ready; artifacts in {self._root}")

    def _lock_for(self, device: str) -> threading.Lock:
        with self._guard:
            return self._device_locks.setdefault(device or "auto", threading.Lock())

    def _execute(self, goal_handle) -> Train.Result:
        g: Train.Goal = goal_handle.request
        req = TrainRequest(
            recipe=g.recipe,
            policy=_policy_ref(g.policy),
            task=g.task or "pusht",
            episode_ids=list(g.episode_ids),
            datasets=list(g.datasets),
            hyperparameters=g.hyperparameters,
            time_budget=g.time_budget or self._default_budget,
            device=g.device,
        )
        self.get_logger().info(f"train goal: recipe={req.recipe!r}")
        fb = Train.Feedback()

        def progress(stage="", progress=0.0, iteration=0, total=0, loss=0.0, score=0.0):
            fb.stage, fb.progress = stage, float(progress)
            fb.iteration, fb.iterations_total = int(iteration), int(total)
            fb.loss, fb.score = float(loss), float(score)
            keepalive.publish()

        with FeedbackKeepalive(goal_handle, fb) as keepalive:  # clients see the node lives
            res, t0 = self._run(goal_handle, req, progress)
        return self._finish(goal_handle, res, t0)

    def _run(self, goal_handle, req: TrainRequest, progress) -> tuple[TrainResult, float]:
        t0 = time.monotonic()
        # a bad goal is answered at once, not after the trainings queued before it: a queued
        # goal holds an executor thread, and with all of them held the node cannot even
        # accept the next goal (its client then sends it again)
        try:
            validate(req)
        except TrainError as e:
            return TrainResult(e.code, e.msg, wall_seconds=time.monotonic() - t0), t0
        lock = self._lock_for(req.device)
        while not lock.acquire(timeout=0.2):  # one training per device; the rest queue
            if goal_handle.is_cancel_requested:
                return TrainResult(TrainErrorCode.CANCELED, "canceled while queued"), t0
            progress(stage="queued")
        try:
            res = run_training_isolated(
                req, self._root, progress, lambda: goal_handle.is_cancel_requested
            )
        finally:
            lock.release()
        return res, t0

    def _finish(self, goal_handle, res: TrainResult, t0: float) -> Train.Result:
        out = Train.Result()
        out.error_code, out.error_msg = int(res.error_code), res.error_msg
        out.artifact_path = res.artifact_path
        out.metrics = json.dumps(res.metrics, default=str)
        out.wall_seconds = time.monotonic() - t0
        if res.error_code == TrainErrorCode.NONE:
            self.get_logger().info(f"trained {res.artifact_path}")
            goal_handle.succeed()
        elif res.error_code == TrainErrorCode.CANCELED and goal_handle.is_cancel_requested:
            goal_handle.canceled()
        else:
            self.get_logger().warning(
                f"training failed ({TrainErrorCode(res.error_code).name}): {res.error_msg}"
            )
            goal_handle.abort()
        return out


def main(args=None) -> None:
    run_node(TrainNode, 6, args)


if __name__ == "__main__":
    main()

"""R node: serves the ``Rollout`` action on a fleet of robots and publishes fleet metrics.

Wiring only: parameters, one :class:`enpire_rollout.robot_link.RobotLink` per robot (its
topics, EN's Reset action, the MCAP log) and the action server, around the ROS-free
:class:`enpire_rollout.rollout_service.RolloutService` (goals, scheduling, policy workers,
episodes, recording, the ledger).
"""

from __future__ import annotations

import os
import time
from dataclasses import fields
from pathlib import Path

from rclpy.action import ActionClient, ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node

from enpire_env.kinematics import So101Kinematics
from enpire_env.node_utils import StreamNode, declare, run_node
from enpire_env.ros_conversions import stamp_from_seconds
from enpire_env.sim_cell import CellConfig
from enpire_msgs.action import Reset, Rollout
from enpire_msgs.msg import FleetMetrics
from enpire_policy import isolation
from enpire_policy.policy_ref import PolicyRef
from enpire_rollout.experiments import ConfirmRule, ExperimentFeeder, ExperimentQueue
from enpire_rollout.ledger import Ledger
from enpire_rollout.messages import episode_result_msg, robot_status_msg
from enpire_rollout.metrics import UsageMeter, fleet_usage
from enpire_rollout.robot_link import RobotLink
from enpire_rollout.rollout_core import RolloutError, RolloutErrorCode, RolloutRequest
from enpire_rollout.rollout_service import GoalProgress, RolloutService, ServiceConfig


class RolloutNode(Node):
    def __init__(self) -> None:
        super().__init__("rollout_node")
        self.fleet = list(declare(self, "robots", ["robot_0"], "Robot ids of the fleet."))
        data = Path(
            os.path.expanduser(
                declare(
                    self,
                    "data_dir",
                    "~/.enpire/data",
                    "Datasets, MCAP logs and the ledger go here.",
                )
            )
        )
        ledger_path = declare(self, "ledger_path", "", "SQLite ledger (empty: data_dir/...).")
        time_scale = declare(self, "time_scale", 1.0, "The cells' time scale (for budgets).")
        bg = declare(
            self,
            "background_policy",
            "",
            "While no goal is queued, robots run this policy (built-in name or artifact "
            "directory) and record the episodes; any goal preempts it. '' = idle.",
        )
        cfg = ServiceConfig(
            min_episode_wall=5.0 / max(time_scale, 1e-6),
            background_policy=PolicyRef.parse(bg) if bg else None,
            **{
                f.name: declare(self, f.name, f.default, f.metadata["doc"])
                for f in fields(ServiceConfig)
                if "doc" in f.metadata
            },
        )
        reset_timeout = declare(self, "reset_timeout", 120.0, "Wall seconds per reset.")
        reset_mode = declare(self, "reset_mode", "", "Reset mode ('' = EN's default).")
        mcap_every = declare(
            self, "mcap_image_every", 5, "Camera frames in MCAP: every n-th (0 = none)."
        )
        self.get_logger().info(
            isolation.start_up(
                declare(self, "isolation", "auto", isolation.PARAM_DOC),
                declare(self, "min_isolation", "rlimits", isolation.MIN_PARAM_DOC),
                [data / "code-cache"],
            )
        )
        self.ledger = Ledger(ledger_path or data / "ledger.sqlite")
        closed = self.ledger.close_open_intervals()
        if closed:
            self.get_logger().warning(f"closed {closed} interval(s) left open by a crash")
        aborted = self.ledger.abort_running_goals(
            "rollout", "the rollout node stopped while the goal ran (restarted)"
        )
        if aborted:
            self.get_logger().warning(f"aborted {len(aborted)} goal(s) left running: {aborted}")
        self.group = ReentrantCallbackGroup()
        self._streams = StreamNode(self)
        kin, cell_cfg = So101Kinematics(), CellConfig()
        # one /reset client for the fleet: each client takes every goal's feedback and status
        reset_client = ActionClient(self, Reset, "/reset", callback_group=self.group)
        links = {
            r: RobotLink(
                self,
                r,
                self.group,
                kin,
                cell_cfg,
                cfg.video_size > 0 or mcap_every > 0,
                self._streams,
                1.0 / cfg.control_hz,
                cfg.cell_timeout,
                reset_mode,
                reset_timeout,
                mcap_every,
                reset_client,
            )
            for r in self.fleet
        }
        self.service = RolloutService(
            links, self.ledger, data, cfg, self._log, running=self.context.ok
        )
        self.feeder = None
        if declare(self, "experiment_queue", True, "Serve the ledger's experiment queue."):
            rule = ConfirmRule(
                goal_success=declare(
                    self, "confirm_goal_success", 0.95, "A result at this rate is confirmed."
                ),
                episodes=declare(self, "confirm_chunk", 50, "Fresh episodes per confirmation."),
                total=declare(self, "confirm_episodes", 200, "Fresh episodes that confirm."),
                when_idle=declare(
                    self,
                    "confirm_when_idle",
                    True,
                    "Idle robots confirm the best candidate of the research runs whose "
                    "experiments this node has run (not of earlier runs in the same ledger).",
                ),
            )
            queue = ExperimentQueue(self.ledger)
            self.feeder = ExperimentFeeder(
                self.service, queue, self.get_name(), rule, log=self._log
            ).start()
        self._t_start = time.time()
        self._usage = UsageMeter(self.ledger, self._t_start, self.fleet)  # since the start
        self.metrics_pub = self.create_publisher(FleetMetrics, "/fleet/metrics", 10)
        self.create_timer(1.0, self._publish_metrics, callback_group=self.group)
        self._server = ActionServer(
            self,
            Rollout,
            "rollout",
            execute_callback=self._execute,
            goal_callback=lambda _g: GoalResponse.ACCEPT,
            cancel_callback=self._on_cancel,
            callback_group=self.group,
        )
        self.get_logger().info(f"rollout server ready for robots {self.fleet}; data in {data}")

    def _log(self, level: str, msg: str) -> None:
        log = self.get_logger()  # one call site per severity (rclpy caches it per site)
        if level == "error":
            log.error(msg)
        elif level == "warning":
            log.warning(msg)
        else:
            log.info(msg)

    def _on_cancel(self, _gh) -> CancelResponse:
        self.service.wake()  # goal loops look at their cancel requests at once
        return CancelResponse.ACCEPT

    def _execute(self, gh) -> Rollout.Result:
        g, result = gh.request, Rollout.Result()
        req = RolloutRequest(
            PolicyRef.from_any(g.policy),
            g.task or "pusht",
            int(g.num_episodes),
            list(g.robot_ids),
            int(g.num_robots),
            float(g.time_budget),
            int(g.seed),
            g.agent_id,
        )
        t0 = time.monotonic()
        try:
            run = self.service.submit(req)
        except RolloutError as e:
            result.error_code, result.error_msg = int(e.code), e.msg
            result.wall_seconds = time.monotonic() - t0
            self.get_logger().warning(f"rollout refused ({e.code.name}): {e.msg}")
            gh.abort()
            return result

        def feedback(p: GoalProgress) -> None:
            robots = [robot_status_msg(r) for r in self.service.robot_states()]
            gh.publish_feedback(
                Rollout.Feedback(
                    episodes_done=p.episodes_done,
                    episodes_total=p.episodes_total,
                    successes=p.successes,
                    robots=robots,
                )
            )

        out = self.service.wait(run, feedback, lambda: gh.is_cancel_requested)
        result.error_code, result.error_msg = int(out.error_code), out.error_msg
        result.num_episodes, result.num_successes = len(out.episodes), out.num_successes
        result.success_rate = out.success_rate
        result.ci_low, result.ci_high = out.interval
        result.episode_ids = [r.episode_id for r in out.episodes]
        result.episodes = [episode_result_msg(r) for r in out.episodes]
        result.robot_seconds, result.wall_seconds = out.robot_seconds, out.wall_seconds
        if out.error_code == RolloutErrorCode.CANCELED and gh.is_cancel_requested:
            gh.canceled()
        elif out.error_code != RolloutErrorCode.NONE:
            self.get_logger().warning(f"rollout failed ({out.error_code.name}): {out.error_msg}")
            gh.abort()
        else:
            gh.succeed()
        return result

    def _publish_metrics(self) -> None:
        if not self.metrics_pub.get_subscription_count():
            return  # the ledger queries below cost more than nobody listening is worth
        now = time.time()
        total = self._usage.usage(now)
        window = fleet_usage(self.ledger, max(self._t_start, now - 60.0), now, self.fleet)
        m = FleetMetrics(
            num_robots=len(self.fleet),
            mru=total.mru,
            mru_window=window.mru,
            window_seconds=60.0,
            episodes_per_hour=total.episodes_per_hour,
            episodes_total=total.episodes,
            robot_ids=list(self.fleet),
            robot_utilisation=[total.per_robot.get(r, 0.0) for r in self.fleet],
            num_busy=self.service.busy,
        )
        m.header.stamp = stamp_from_seconds(now)
        self.metrics_pub.publish(m)

    def destroy_node(self) -> None:
        if self.feeder is not None:
            self.feeder.close()
        self.service.close()
        self._streams.close()
        super().destroy_node()


def main(args=None) -> None:
    # threads: goals' execute callbacks, reset clients' futures, timers
    run_node(RolloutNode, lambda node: 2 * len(node.fleet) + 6, args)


if __name__ == "__main__":
    main()

"""The evolve node (E): hosts N coding agents that improve the policy code on the fleet.

Each agent works in its own git tree (clone of ``<data_dir>/evolve/<run_id>/shared.git``) and
reaches the robots and trainers through the Rollout and Train actions (:class:`RosLab`); the
loop itself is :mod:`enpire_evolve.evolution`, ROS-free. The node publishes the run's state as
``enpire_msgs/EvolveStatus`` on ``evolve/status`` (1 Hz, latched), writes every step to the ledger,
and at the end writes the morning report (HTML + markdown) to ``<data_dir>/reports/``.
Killing and restarting the node with the same ``run_id`` resumes the run.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from rclpy.action import ActionClient
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile

from enpire_env.goal_liveness import Liveness, ServerGoneError, send_goal, wait_result
from enpire_env.node_utils import declare, run_node
from enpire_evolve.evolution import Evolution, EvolveConfig, LlmConfig
from enpire_evolve.lab import (
    OUTCOMES,
    EpisodeSummary,
    Lab,
    QueueLab,
    RolloutSummary,
    TrainSummary,
)
from enpire_evolve.status_msg import to_msg
from enpire_msgs.action import Rollout, Train
from enpire_msgs.msg import EvolveStatus
from enpire_policy import isolation
from enpire_policy.policy_ref import PolicyRef

GOAL_RETRIES = 5  # a goal whose server died is sent again this often ...
RETRY_DELAY = 3.0  # ... this many s apart (a respawned node is back within a few s)


class RosLab(Lab):
    """Rollout and Train goals sent from the evolve node."""

    def __init__(self, node: Node, rollout_server: str, train_server: str, timeout: float):
        group = ReentrantCallbackGroup()
        self.node, self.timeout = node, timeout
        self.rollout_client = ActionClient(node, Rollout, rollout_server, callback_group=group)
        self.train_client = ActionClient(node, Train, train_server, callback_group=group)
        self._handles: dict[int, object] = {}  # goal handles are not hashable
        self._lock = threading.Lock()
        self._canceled = False

    def cancel_all(self) -> None:
        with self._lock:
            self._canceled = True
            handles = list(self._handles.values())
        for h in handles:
            h.cancel_goal_async()

    def _run_goal(self, client, goal, feedback=None, should_cancel=None):
        """Send a goal and wait for its result; None if it was not accepted.
        ``should_cancel(feedback)`` returning True cancels the goal. A server that dies while
        the goal runs (silent for goal_liveness.SILENCE s) or does not answer the goal request
        is waited for and the goal sent again (a rollout runs its seeds again), up to
        ``GOAL_RETRIES`` times."""
        for attempt in range(GOAL_RETRIES + 1):
            try:
                return self._run_goal_once(client, goal, feedback, should_cancel)
            except ServerGoneError as e:
                if attempt == GOAL_RETRIES or self._canceled:
                    raise
                self.node.get_logger().warning(
                    f"{e}; sending the goal again in {RETRY_DELAY:g} s "
                    f"(retry {attempt + 1}/{GOAL_RETRIES})"
                )
                time.sleep(RETRY_DELAY)
        return None

    def _run_goal_once(self, client, goal, feedback=None, should_cancel=None):
        if self._canceled:
            return None
        box: dict = {}
        life = Liveness(f"the {type(goal).__name__.split('_')[0]} server {client._action_name}")

        def on_feedback(msg):
            if feedback:
                feedback(msg)
            h = box.get("handle")
            if should_cancel and h is not None and not box.get("canceled"):
                if should_cancel(msg.feedback):
                    box["canceled"] = True
                    h.cancel_goal_async()

        handle = send_goal(client, goal, life, on_feedback)
        box["handle"] = handle
        if handle is None or not handle.accepted:
            return None
        with self._lock:
            self._handles[id(handle)] = handle
            if self._canceled:
                handle.cancel_goal_async()
        try:
            return wait_result(handle.get_result_async(), life, self.timeout, handle).result
        finally:
            with self._lock:
                self._handles.pop(id(handle), None)

    def wait_for_servers(self, timeout: float) -> bool:
        return self.rollout_client.wait_for_server(timeout) and self.train_client.wait_for_server(
            timeout
        )

    @staticmethod
    def _ref(policy: dict):
        return PolicyRef.from_any(policy).to_msg()

    def rollout(self, policy, episodes, seed, agent_id, progress=None,
                stop_when=None) -> RolloutSummary:  # fmt: skip
        goal = Rollout.Goal(policy=self._ref(policy), task="pusht", num_episodes=int(episodes),
                            seed=int(seed), agent_id=agent_id)  # fmt: skip

        def on_feedback(msg):
            if progress:
                fb = msg.feedback
                progress(fb.episodes_done, fb.episodes_total, fb.successes)

        def cancel(fb) -> bool:
            return (
                bool(stop_when)
                and fb.episodes_done < fb.episodes_total
                and stop_when(fb.episodes_done, fb.episodes_total, fb.successes)
            )

        r = self._run_goal(self.rollout_client, goal, on_feedback, cancel)
        if r is None:
            return RolloutSummary(error_code=200, error_msg="the Rollout goal was not accepted")
        out = RolloutSummary(
            num_episodes=r.num_episodes, successes=r.num_successes, success_rate=r.success_rate,
            ci_low=r.ci_low, ci_high=r.ci_high, robot_seconds=r.robot_seconds,
            wall_seconds=r.wall_seconds, error_code=r.error_code, error_msg=r.error_msg,
        )  # fmt: skip
        for e in r.episodes:
            outcome = OUTCOMES[e.outcome] if e.outcome < len(OUTCOMES) else str(e.outcome)
            out.episodes.append(EpisodeSummary(
                int(e.seed), bool(e.success), outcome, int(e.steps), float(e.final_reward),
                float(e.robot_seconds), e.error_msg, e.episode_id, e.recording_path))  # fmt: skip
        return out

    def train(
        self, recipe, policy, hyperparameters, time_budget, agent_id, progress=None
    ) -> TrainSummary:
        goal = Train.Goal(recipe=recipe, policy=self._ref(dict(policy, agent_id=agent_id)),
                          task="pusht", hyperparameters=json.dumps(hyperparameters),
                          time_budget=float(time_budget))  # fmt: skip

        def on_feedback(msg) -> None:
            if progress is not None:
                progress(float(msg.feedback.progress), msg.feedback.stage)

        r = self._run_goal(self.train_client, goal, on_feedback)
        if r is None:
            return TrainSummary(300, "the Train goal was not accepted")
        metrics = json.loads(r.metrics) if r.metrics else {}
        return TrainSummary(r.error_code, r.error_msg, r.artifact_path, metrics, r.wall_seconds)


class EvolveNode(Node):
    def __init__(self) -> None:
        super().__init__("evolve_node")
        d = EvolveConfig()
        p = {
            "run_id": declare(self, "run_id", d.run_id, "Run name; the same name resumes it."),
            "agents": declare(self, "agents", d.agents, "Coding agents to host."),
            "backend": declare(self, "backend", d.backend, "Agent backend: offline | openai."),
            "screen_episodes": declare(self, "screen_episodes", d.screen_episodes,
                                       "Episodes per candidate (same seeds for all)."),
            "screen_seed": declare(self, "screen_seed", d.screen_seed,
                                   "First seed of the screening set."),
            "goal_success": declare(self, "goal_success", d.goal_success,
                                    "Success rate that ends the run once confirmed."),
            "confirm_episodes": declare(self, "confirm_episodes", d.confirm_episodes,
                                        "Fresh episodes of the confirming evaluation."),
            "confirm_seed": declare(self, "confirm_seed", d.confirm_seed,
                                    "First seed of the confirming evaluation."),
            "confirm_chunk": declare(self, "confirm_chunk", d.confirm_chunk,
                                     "Confirmation chunk (stops early when it cannot pass)."),
            "wall_budget": declare(self, "wall_budget", d.wall_budget,
                                   "Wall seconds for the run; 0 = none."),
            "robot_seconds_budget": declare(self, "robot_seconds_budget", d.robot_seconds_budget,
                                            "Robot seconds for the run; 0 = none."),
            "agent_robot_seconds_budget": declare(
                self, "agent_robot_seconds_budget", d.agent_robot_seconds_budget,
                "Robot seconds per agent; 0 = none."),
            "token_budget": declare(self, "token_budget", d.token_budget,
                                    "LLM tokens for the run; 0 = none."),
            "agent_token_budget": declare(self, "agent_token_budget", d.agent_token_budget,
                                          "LLM tokens per agent; 0 = none."),
            "max_experiments": declare(self, "max_experiments", d.max_experiments,
                                       "Experiments per agent; 0 = none."),
            "adopt_margin": declare(self, "adopt_margin", d.adopt_margin,
                                    "Adopt another agent's branch this much better."),
            "test_timeout": declare(self, "test_timeout", d.test_timeout,
                                    "Seconds for a tree's own tests."),
            "train_every": declare(self, "train_every", d.train_every,
                                   "Offline agent: every n-th experiment trains; 0 = never."),
            "train_budget": declare(self, "train_budget", d.train_budget,
                                    "Compute seconds per Train goal."),
            "pause_seconds": declare(self, "pause_seconds", d.pause_seconds,
                                     "Wait of an agent whose backend fails."),
            "seed": declare(self, "seed", d.seed, "Seed of the agents' choices."),
        }  # fmt: skip
        lc = LlmConfig()
        llm = {
            "base_url": declare(self, "llm.base_url", lc.base_url,
                                "OpenAI-compatible endpoint ('' = OPENAI_BASE_URL / default)."),
            "model": declare(self, "llm.model", lc.model, "Model name."),
            "api_key_env": declare(self, "llm.api_key_env", lc.api_key_env,
                                   "Environment variable holding the API key."),
            "timeout": declare(self, "llm.timeout", lc.timeout, "Seconds per request."),
            "retries": declare(self, "llm.retries", lc.retries, "Attempts per request."),
            "backoff": declare(self, "llm.backoff", lc.backoff, "First retry delay [s]."),
            "max_turns": declare(self, "llm.max_turns", lc.max_turns,
                                 "Tool calls per experiment."),
        }  # fmt: skip
        data = Path(os.path.expanduser(declare(self, "data_dir", "~/.enpire/data",
                                               "Ledger, agent trees, reports.")))  # fmt: skip
        ledger_path = declare(self, "ledger_path", "", "SQLite ledger ('' = data_dir/...).")
        rollout_server = declare(self, "rollout_server", "/rollout", "Rollout action name.")
        train_server = declare(self, "train_server", "/train", "Train action name.")
        goal_timeout = declare(self, "goal_timeout", 3600.0, "Wall seconds per goal.")
        self.report_dir = Path(os.path.expanduser(declare(
            self, "report_dir", "", "Where reports go ('' = data_dir/reports)."))
            or data / "reports")  # fmt: skip
        self.cfg = EvolveConfig(**p, llm=llm)  # validates; a bad value stops the node here
        self.get_logger().info(  # the agent trees' self-check tests run confined
            isolation.start_up(
                declare(self, "isolation", "auto", isolation.PARAM_DOC),
                declare(self, "min_isolation", "rlimits", isolation.MIN_PARAM_DOC),
            )
        )
        from enpire_rollout.ledger import Ledger

        self.ledger = Ledger(ledger_path or data / "ledger.sqlite")
        self.data_dir = data
        self.lab = RosLab(self, rollout_server, train_server, goal_timeout)
        if declare(
            self,
            "experiment_queue",
            True,
            "Screen candidates through the rollout node's "
            "experiment queue (as CLI agents do), which also confirms them on fresh seeds "
            "and keeps idle robots confirming the best; false = Rollout goals.",
        ):
            self.lab = QueueLab(self.ledger, self.cfg.run_id, self.lab)
        self.evo = Evolution(self.cfg, self.lab, data, self.ledger,
                             log=lambda m: self.get_logger().info(m))  # fmt: skip
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.status_pub = self.create_publisher(EvolveStatus, "evolve/status", latched)
        self.state, self.report = "waiting for servers", {}
        self.create_timer(1.0, self._publish_status)
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        from enpire_evolve.report import write_report

        while not self.lab.wait_for_servers(5.0):
            self.get_logger().info("waiting for the Rollout and Train action servers")
        self.state = "running"
        self.get_logger().info(f"ready: {self.cfg.agents} {self.cfg.backend} agent(s), run "
                               f"{self.cfg.run_id}")  # fmt: skip
        outcome = self.evo.run()
        self.state = "writing report"
        try:
            self.report = write_report(self.ledger, self.cfg.run_id, self.report_dir,
                                       data_dir=self.data_dir)  # fmt: skip
        except Exception as e:  # noqa: BLE001 - the run's results are in the ledger anyway
            self.get_logger().error(f"report failed: {type(e).__name__}: {e}")
            self.report = {"error": str(e)}
        self.state = "done"
        self.get_logger().info(f"done: {outcome.get('reason')}; report {self.report.get('html')}")
        self._publish_status()

    def _publish_status(self) -> None:
        status = {
            "run_id": self.cfg.run_id, "state": self.state, "wall_used": self.evo.wall_used(),
            "wall_budget": self.cfg.wall_budget, "outcome": self.evo.outcome,
            "report": self.report, "agents": [vars(s) for s in self.evo.status.values()],
        }  # fmt: skip
        self.status_pub.publish(to_msg(status, self.get_clock().now().to_msg()))

    def destroy_node(self) -> None:
        self.evo.stop("node shut down")
        super().destroy_node()


def main(args=None) -> None:
    run_node(EvolveNode, 4, args)


if __name__ == "__main__":
    main()

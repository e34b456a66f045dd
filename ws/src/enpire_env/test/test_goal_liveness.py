"""send_goal against a real action server that answers slowly: the copy it runs is the one used."""

import threading
import time

from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node

from enpire_env.goal_liveness import Liveness, send_goal
from enpire_msgs.action import Reset


class SlowServer:
    """A Reset server whose first goal request takes ``delay`` s to be answered; it takes
    requests one at a time, in order, as an executor with one callback group does."""

    def __init__(self, ctx, delay: float):
        self.node = Node("slow_reset_server", context=ctx)
        self.delay, self.accepted, self.ended = delay, [], {}
        self._first = True
        self.server = ActionServer(
            self.node,
            Reset,
            "slow_reset",
            execute_callback=self._execute,
            goal_callback=self._on_goal,
            handle_accepted_callback=self._on_accepted,
            cancel_callback=lambda _h: CancelResponse.ACCEPT,
            callback_group=MutuallyExclusiveCallbackGroup(),
        )

    def _on_goal(self, _goal):
        if self._first:
            self._first = False
            time.sleep(self.delay)
        return GoalResponse.ACCEPT

    def _on_accepted(self, handle):
        self.accepted.append(bytes(handle.goal_id.uuid))
        threading.Thread(target=handle.execute, daemon=True).start()

    def _execute(self, handle):
        t_end = time.monotonic() + 1.5
        while time.monotonic() < t_end and not handle.is_cancel_requested:
            time.sleep(0.05)
        key = bytes(handle.goal_id.uuid)
        if handle.is_cancel_requested:
            handle.canceled()
            self.ended[key] = "canceled"
        else:
            handle.succeed()
            self.ended[key] = "succeeded"
        return Reset.Result(success=not handle.is_cancel_requested)


def test_a_slow_answer_to_the_first_copy_wins_and_later_copies_are_canceled(ros_context):
    from rclpy.action import ActionClient

    server = SlowServer(ros_context, delay=1.2)
    client_node = Node("slow_reset_client", context=ros_context)
    client = ActionClient(client_node, Reset, "slow_reset")
    executor = MultiThreadedExecutor(num_threads=4, context=ros_context)
    executor.add_node(server.node)
    executor.add_node(client_node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        assert client.wait_for_server(timeout_sec=10)
        goal = Reset.Goal(robot_id="robot_0", task="pusht")
        handle = send_goal(client, goal, Liveness("slow_reset"), accept_timeout=0.5, attempts=3)
        assert handle.accepted
        # the server was sent three copies; the one it took first (and runs) is the one used
        deadline = time.monotonic() + 10
        while len(server.ended) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(server.accepted) == 3
        assert bytes(handle.goal_id.uuid) == server.accepted[0]
        assert server.ended[server.accepted[0]] == "succeeded"
        assert [server.ended[k] for k in server.accepted[1:]] == ["canceled", "canceled"]
    finally:
        executor.shutdown()
        client.destroy()
        server.server.destroy()
        client_node.destroy_node()
        server.node.destroy_node()

"""Plumbing every enpire node shares: typed, described parameters, joint-state parsing and the
``main()`` life cycle (init, spin an executor, shut down on Ctrl-C)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

import numpy as np
import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.exceptions import InvalidHandle
from rclpy.executors import (
    ExternalShutdownException,
    MultiThreadedExecutor,
    SingleThreadedExecutor,
)
from rclpy.guard_condition import GuardCondition
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.subscription import Subscription

from enpire_env.kinematics import JOINT_NAMES

# How enpire reads a robot's streams (joint states, cell_state, perception, the per-step policy
# command into the safety filter): best effort, as ROS reads sensor data
# (qos_profile_sensor_data). Any publisher matches, reliable or best effort (a reliable
# subscription never hears a best-effort one: a driver publishing with the sensor-data QoS),
# and no acknowledgement travels back per message: ~0.2-0.3 ms of CPU less per control step over a
# fleet's processes (bench/results/fleet_cost.txt). The next message supersedes a lost one;
# depth 10 keeps a burst. Publishers stay reliable; one-shot commands (EN's moves on the
# controller topics) stay reliable both ends.
STREAM_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
# camera frames: the same, two deep (a frame is ~200 KB; only the latest is used)
CAMERA_QOS = QoSProfile(depth=2, reliability=ReliabilityPolicy.BEST_EFFORT)


def declare(node: Node, name: str, default, description: str):
    """Declare a parameter with a typed default and a description; return its value."""
    node.declare_parameter(name, default, ParameterDescriptor(description=description))
    return node.get_parameter(name).value


class StreamNode:
    """A companion node for a node's high-rate topic streams (joint states, perception,
    commands, camera), read by a loop of its own in a thread: one wait set over just these
    subscriptions, every queued message taken and handed to its callback in that thread.

    What it saves, per message received (measured with the Kilted wheels, 100 Hz JointState
    between two processes): rclpy's SingleThreadedExecutor 0.87 ms CPU, this loop 0.47 ms;
    a MultiThreadedExecutor over a node that serves actions 1.8 ms (an earlier measurement).
    The executors rebuild their wait set over every entity of the node (parameter services,
    action servers, QoS event handlers) and schedule each callback as a task at each wake;
    the streams need neither. The loop uses rclpy's wait set as its executors and
    ``rclpy.wait_for_message`` do (``_rclpy.WaitSet``: the same calls in Humble, Jazzy and
    Kilted). Subscriptions come and go with :meth:`subscribe` and :meth:`unsubscribe` while it
    runs; a callback that raises is logged, not fatal."""

    def __init__(self, node: Node):
        self.node = rclpy.create_node(
            f"{node.get_name()}_streams",
            namespace=node.get_namespace(),
            context=node.context,
            start_parameter_services=False,
        )
        self._lock = threading.Lock()
        self._subs: list = []
        self._version = 0
        self._closing = False
        self._wake = GuardCondition(None, None, context=node.context)
        node.context.on_shutdown(self._trigger)
        self._thread = threading.Thread(target=self._loop, name=self.node.get_name(), daemon=True)
        self._thread.start()

    def subscribe(self, msg_type, topic: str, callback, qos, raw: bool = False):
        """A subscription whose callback runs in the stream thread; undo with unsubscribe. As
        with rclpy's executors, a callback of two arguments gets the MessageInfo too; with
        ``raw`` the callback gets the serialized bytes (read them with enpire_env.cdr)."""
        sub = self.node.create_subscription(
            msg_type,
            topic,
            callback,
            qos,
            event_callbacks=SubscriptionEventCallbacks(use_default_callbacks=False),
            raw=raw,
        )
        with self._lock:
            self._subs.append(sub)
            self._version += 1
        self._trigger()
        return sub

    def unsubscribe(self, sub) -> None:
        """Stop a subscription; safe while the loop waits on it (rclpy destroys a handle once
        the loop lets go of it)."""
        with self._lock:
            if sub not in self._subs:
                return
            self._subs.remove(sub)
            self._version += 1
        self._trigger()
        self.node.destroy_subscription(sub)

    def _trigger(self) -> None:
        try:
            self._wake.trigger()
        except Exception:  # noqa: BLE001 - destroyed or its context gone: the loop is ending
            pass

    def _loop(self) -> None:
        ctx = self.node.context
        version, stack, wait_set, subs = -1, None, None, []
        try:
            while not self._closing and ctx.ok():
                with self._lock:
                    changed = version != self._version
                    if changed:
                        version, subs = self._version, list(self._subs)
                if changed:  # hold the handles this wait set uses until the set changes
                    if stack is not None:
                        stack.close()
                    stack = contextlib.ExitStack()
                    subs = [s for s in subs if _entered(stack, s.handle)]
                    stack.enter_context(self._wake.handle)
                    stack.enter_context(ctx.handle)
                    wait_set = _rclpy.WaitSet(len(subs), 1, 0, 0, 0, 0, ctx.handle)
                wait_set.clear_entities()
                for s in subs:
                    wait_set.add_subscription(s.handle)
                wait_set.add_guard_condition(self._wake.handle)
                wait_set.wait(-1)
                ready = wait_set.get_ready_entities("subscription")
                for s in subs:
                    if s.handle.pointer in ready:
                        self._take_all(s)
        except Exception as e:  # noqa: BLE001 - the context shut down under the wait
            if ctx.ok() and not self._closing:
                self.node.get_logger().error(f"stream loop stopped: {e!r}")
        finally:
            if stack is not None:
                stack.close()

    def _take_all(self, sub) -> None:
        while True:
            taken = sub.handle.take_message(sub.msg_type, sub.raw)
            if taken is None:
                return
            try:
                if sub._callback_type is Subscription.CallbackType.WithMessageInfo:
                    sub.callback(*taken)  # as rclpy's executors: (message, MessageInfo)
                else:
                    sub.callback(taken[0])
            except Exception as e:  # noqa: BLE001 - one bad message must not stop the streams
                self.node.get_logger().error(
                    f"{sub.topic_name}: callback failed: {e!r}", throttle_duration_sec=5.0
                )

    def close(self) -> None:
        self._closing = True
        self._trigger()
        self._thread.join(2.0)
        self._wake.destroy()
        self.node.destroy_node()


def _entered(stack: contextlib.ExitStack, handle) -> bool:
    try:
        stack.enter_context(handle)
        return True
    except InvalidHandle:  # destroyed meanwhile
        return False


def joint_positions(msg) -> np.ndarray | None:
    """The SO-101 joint positions of a sensor_msgs/JointState in JOINT_NAMES order, or None
    when the message lacks one of them."""
    names = list(msg.name)
    try:
        return np.array([msg.position[names.index(n)] for n in JOINT_NAMES])
    except (ValueError, IndexError):
        return None


def run_node(factory: Callable[[], Node], num_threads: int | Callable[[Node], int], args=None):
    """``main()`` of a node: as ros2/examples, catching Ctrl-C and external shutdown alike.

    One thread means a SingleThreadedExecutor: for nodes whose callbacks are all quick it
    costs about a third of a MultiThreadedExecutor per message (the fleet's step cost).
    """
    rclpy.init(args=args)
    node = None
    try:
        node = factory()
        threads = num_threads(node) if callable(num_threads) else num_threads
        executor = SingleThreadedExecutor() if threads == 1 else MultiThreadedExecutor(threads)
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except _rclpy.RCLError:
        if rclpy.ok():
            raise
        # a signal shut the context down between the executor's check and its wait set
        # (rclpy raises RCLError there, not ExternalShutdownException): a normal end
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()

"""Goals whose server may die: servers keep their feedback flowing, clients notice silence.

DDS discovery keeps a dead action server "ready" for about 20 s (Fast DDS's participant lease),
and a result that never comes looks the same as a long goal. So every enpire action server
republishes its goal's latest feedback at least once a second while the goal runs
(:class:`FeedbackKeepalive`; the rollout node's goal loop does it on its own), and a client
waiting on a result treats ``SILENCE`` seconds without feedback as a server that died: it asks
for a cancel (if the server only stalled, the goal stops) and raises :class:`ServerGoneError`
naming the action. ``enpire rollout|reset|train`` and the evolve node's lab wait this way.
"""

from __future__ import annotations

import threading
import time

KEEPALIVE_PERIOD = 1.0  # s between feedback messages at the least, while a goal runs
SILENCE = 8.0  # s without feedback after which a client gives the server up


class ServerGoneError(RuntimeError):
    """The action server stopped answering while a goal ran (its node died or hangs)."""


class FeedbackKeepalive:
    """Publishes ``feedback`` through ``goal_handle`` whenever ``period`` s passed without a
    feedback message; :meth:`publish` sends an update at once. Use it as a context manager
    around the part of an execute callback where the goal is active."""

    def __init__(self, goal_handle, feedback, period: float = KEEPALIVE_PERIOD):
        self.goal_handle, self.feedback, self.period = goal_handle, feedback, period
        self._lock = threading.Lock()
        self._last = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="keepalive")

    def publish(self) -> None:
        with self._lock:
            if self._stop.is_set():
                return
            try:
                self.goal_handle.publish_feedback(self.feedback)
            except Exception:  # noqa: BLE001 - the goal ended meanwhile
                return
            self._last = time.monotonic()

    def _run(self) -> None:
        while not self._stop.wait(self.period / 4):
            if time.monotonic() - self._last >= self.period:
                self.publish()

    def start(self) -> FeedbackKeepalive:
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._lock:
            self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=2 * self.period)

    def __enter__(self) -> FeedbackKeepalive:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class Liveness:
    """When a goal's server last showed a sign of life; call :meth:`beat` on each feedback."""

    def __init__(self, what: str, silence: float = SILENCE):
        self.what, self.silence = what, silence
        self.last = time.monotonic()

    def beat(self, *_args) -> None:
        self.last = time.monotonic()

    def check(self) -> None:
        """Raise :class:`ServerGoneError` when the server has been silent too long."""
        quiet = time.monotonic() - self.last
        if quiet > self.silence:
            raise ServerGoneError(
                f"{self.what} stopped answering: no feedback for {quiet:.0f} s while the goal "
                "ran (its node died or hangs); finished episodes are in the ledger, and the "
                "goal can be sent again once the server is back"
            )


def _wait(future, timeout: float, spin=None, liveness: Liveness | None = None, handle=None):
    done = threading.Event()
    future.add_done_callback(lambda _f: done.set())
    deadline = time.monotonic() + timeout
    while not done.is_set():
        if spin is not None:
            spin(0.25)
        elif done.wait(0.25):
            break
        if done.is_set():
            break
        if liveness is not None:
            try:
                liveness.check()
            except ServerGoneError:
                if handle is not None:
                    try:
                        handle.cancel_goal_async()
                    except Exception:  # noqa: BLE001 - best effort towards a dead server
                        pass
                raise
        if time.monotonic() > deadline:
            raise TimeoutError(f"no answer within {timeout:.0f} s")
    return future.result()


def send_goal(
    client,
    goal,
    liveness: Liveness,
    feedback=None,
    spin=None,
    accept_timeout: float = 10.0,
    attempts: int = 3,
):
    """Send ``goal`` and return its accepted (or rejected) handle. A request that gets no
    answer within ``accept_timeout`` s — a dead server still in discovery, or a restarted one
    that had not matched this client yet — is sent again, up to ``attempts`` times. Every copy
    sent stays a candidate: the first to be answered wins (a slow server answers the copies in
    the order it took them, so the copy it runs is the one used, and a later copy it refused
    as a duplicate is not), and the others are canceled when their answers come.
    ``feedback(msg)`` sees every feedback message. ``spin(dt)`` drives the node when the
    caller owns it."""

    def on_feedback(msg) -> None:
        liveness.beat()
        if feedback is not None:
            feedback(msg)

    lock = threading.Lock()
    answered = threading.Event()
    winner: list = []

    def on_answer(fut) -> None:
        with lock:
            first = not winner
            if first:
                winner.append(fut)
        if first:
            answered.set()
            return
        h = fut.result()  # a copy answered after another one won: take it back
        if h is not None and h.accepted:
            h.cancel_goal_async()

    for _ in range(attempts):
        fut = client.send_goal_async(goal, feedback_callback=on_feedback)
        fut.add_done_callback(on_answer)
        deadline = time.monotonic() + accept_timeout
        while not answered.is_set() and time.monotonic() < deadline:
            if spin is not None:
                spin(0.25)
            else:
                answered.wait(0.25)
        if answered.is_set():
            liveness.beat()
            return winner[0].result()
    with lock:  # late answers from here on are canceled
        winner.append(None)
    raise ServerGoneError(
        f"{liveness.what} did not answer the goal request ({attempts} tries, "
        f"{accept_timeout:g} s each): is its node running?"
    )


def wait_result(future, liveness: Liveness, timeout: float, handle=None, spin=None):
    """The result of ``future`` (a goal's get_result future), checking ``liveness`` every
    quarter second; ``spin(dt)`` drives the node when the caller owns it (else an executor
    elsewhere completes the future). On silence the goal is canceled (``handle``) and
    :class:`ServerGoneError` raised; :class:`TimeoutError` after ``timeout`` s."""
    try:
        return _wait(future, timeout, spin, liveness, handle)
    except TimeoutError:
        raise TimeoutError(f"{liveness.what} gave no result within {timeout:.0f} s") from None

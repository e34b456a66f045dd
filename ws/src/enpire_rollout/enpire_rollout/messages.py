"""The rollout service's values as enpire_msgs messages: one conversion each."""

from __future__ import annotations

from enpire_msgs.msg import EpisodeResult, RobotStatus
from enpire_rollout.rollout_service import EpisodeRecord, RobotState

OUTCOMES = {
    "success": EpisodeResult.OUTCOME_SUCCESS,
    "failure": EpisodeResult.OUTCOME_FAILURE,
    "policy_error": EpisodeResult.OUTCOME_POLICY_ERROR,
    "reset_failed": EpisodeResult.OUTCOME_RESET_FAILED,
    "interrupted": EpisodeResult.OUTCOME_INTERRUPTED,
    "canceled": EpisodeResult.OUTCOME_CANCELED,
}


def episode_result_msg(rec: EpisodeRecord) -> EpisodeResult:
    """The one conversion of an episode into its message: every field filled."""
    run = rec.run
    return EpisodeResult(
        episode_id=rec.episode_id,
        robot_id=rec.robot_id,
        task=rec.task,
        seed=int(rec.seed),
        outcome=OUTCOMES[rec.outcome],
        success=rec.success,
        steps=int(rec.steps),
        final_reward=float(run.final_reward if run else 0.0),
        max_reward=float(run.max_reward if run else 0.0),
        robot_seconds=float(rec.robot_seconds),
        wall_seconds=float(max(rec.wall_end - rec.wall_start, 0.0)),
        # safety_violations: counted per robot in safety/status, not per episode
        error_msg=rec.error,
        recording_path=rec.recording_path,
    )


def robot_status_msg(r: RobotState) -> RobotStatus:
    if r.state == "down":
        state = RobotStatus.STATE_OFFLINE
    elif r.state == "cooldown":
        state = RobotStatus.STATE_FAULT
    else:
        state = {"resetting": RobotStatus.STATE_RESETTING, "running": RobotStatus.STATE_RUNNING}
        state = state.get(r.phase, RobotStatus.STATE_IDLE)
    return RobotStatus(
        robot_id=r.robot_id,
        state=state,
        phase=r.phase,
        goal_id=r.goal_id,
        episode_id=r.episode_id,
    )

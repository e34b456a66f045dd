"""Run one training request: validate, create a versioned artifact, run the recipe, record.

ROS-free; ``train_node`` wraps it in the Train action server.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from enpire_policy import artifacts
from enpire_policy.recipes import RECIPES, recipe_function, recipe_params
from enpire_policy.recipes.base import (
    CanceledError,
    TrainContext,
    TrainError,
    TrainErrorCode,
    TrainRequest,
    parse_hyperparameters,
)

CHILD_NICENESS = 10  # a training process's niceness (lower CPU priority than the fleet)


@dataclass
class TrainResult:
    error_code: int = TrainErrorCode.NONE
    error_msg: str = ""
    artifact_path: str = ""
    metrics: dict = field(default_factory=dict)
    wall_seconds: float = 0.0


# bounds of a goal: enpire_msgs/action/Train Goal.MAX_* (mirrored, checked by a test)
MAX_TIME_BUDGET = 86400.0
MAX_EPISODE_IDS = 100_000
MAX_HYPERPARAMETERS_BYTES = 65536


def validate(req: TrainRequest) -> None:
    """Goal checks that need no work: raise TrainError with a code and message."""
    if req.recipe not in RECIPES:
        raise TrainError(
            TrainErrorCode.UNKNOWN_RECIPE,
            f"unknown recipe '{req.recipe}' (known: {', '.join(sorted(RECIPES))})",
        )
    if req.task != "pusht":
        raise TrainError(TrainErrorCode.INVALID_HYPERPARAMETERS, f"unknown task '{req.task}'")
    if not math.isfinite(req.time_budget) or not 0 <= req.time_budget <= MAX_TIME_BUDGET:
        raise TrainError(
            TrainErrorCode.INVALID_HYPERPARAMETERS,
            f"time_budget must be 0 .. {MAX_TIME_BUDGET:g} s, got {req.time_budget}",
        )
    if len(req.episode_ids) + len(req.datasets) > MAX_EPISODE_IDS:
        raise TrainError(
            TrainErrorCode.INVALID_HYPERPARAMETERS,
            f"at most {MAX_EPISODE_IDS} episode_ids and datasets, got "
            f"{len(req.episode_ids) + len(req.datasets)}",
        )
    if isinstance(req.hyperparameters, str) and (
        len(req.hyperparameters.encode()) > MAX_HYPERPARAMETERS_BYTES
    ):
        raise TrainError(
            TrainErrorCode.INVALID_HYPERPARAMETERS,
            f"hyperparameters are longer than {MAX_HYPERPARAMETERS_BYTES} bytes",
        )
    if req.device not in ("", "cpu", "cuda"):
        raise TrainError(TrainErrorCode.INVALID_HYPERPARAMETERS,
                         f"device must be '', 'cpu' or 'cuda', got '{req.device}'")  # fmt: skip
    if req.recipe.startswith("bc_") and not (req.datasets or req.episode_ids):
        raise TrainError(TrainErrorCode.EMPTY_DATA, f"{req.recipe} needs datasets or episode_ids")
    if isinstance(req.hyperparameters, str):
        try:
            hp = json.loads(req.hyperparameters) if req.hyperparameters.strip() else {}
        except json.JSONDecodeError as e:
            raise TrainError(TrainErrorCode.INVALID_HYPERPARAMETERS,
                             f"hyperparameters are not JSON: {e}") from None  # fmt: skip
        req.hyperparameters = hp
    # each recipe's hyper-parameters are checked up front, before any work
    parse_hyperparameters(recipe_params(req.recipe), req.hyperparameters)


def run_training(
    req: TrainRequest,
    artifacts_root: str | Path,
    progress=lambda **kw: None,
    canceled=lambda: False,
) -> TrainResult:
    t0 = time.monotonic()
    res = TrainResult()
    out_dir = None
    try:
        validate(req)
        out_dir = artifacts.new_artifact_dir(artifacts_root, req.recipe)
        budget = req.time_budget or math.inf
        ctx = TrainContext(out_dir, progress, canceled, t0 + budget)
        summary = recipe_function(req.recipe)(req, ctx)
        manifest = {
            "recipe": req.recipe,
            "task": req.task,
            "policy": req.policy,
            "data": {"datasets": req.datasets, "episode_ids": req.episode_ids},
            **summary,
        }
        artifacts.finish(out_dir, manifest)
        res.artifact_path = str(out_dir)
        res.metrics = summary.get("metrics", {})
    except TrainError as e:
        res.error_code, res.error_msg = e.code, e.msg
    except CanceledError:
        res.error_code, res.error_msg = TrainErrorCode.CANCELED, "training canceled"
    except Exception as e:  # a recipe bug fails this run, not the server
        res.error_code = TrainErrorCode.TRAINING_FAILED
        res.error_msg = f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=5)}"
    if res.error_code and out_dir is not None:
        shutil.rmtree(out_dir, ignore_errors=True)  # no half-written artifact is left behind
    res.wall_seconds = time.monotonic() - t0
    return res


def _child(req: TrainRequest, root: str, queue, cancel_event) -> None:
    from enpire_env.procutil import die_with_parent

    die_with_parent()
    try:  # training runs beside the fleet's episodes: the cells and their policies come first
        os.nice(CHILD_NICENESS)
    except OSError:
        pass

    def progress(**kw):
        queue.put(("progress", kw))

    res = run_training(req, root, progress, cancel_event.is_set)
    queue.put(("result", res.__dict__))


def run_training_isolated(
    req: TrainRequest,
    artifacts_root: str | Path,
    progress=lambda **kw: None,
    canceled=lambda: False,
    grace: float = 10.0,
) -> TrainResult:
    """:func:`run_training` in a child process: a recipe that crashes the interpreter (or a
    native library) fails this run with TRAINING_FAILED, and the caller keeps serving."""
    import multiprocessing as mp
    import queue as queue_mod

    t0 = time.monotonic()
    try:
        validate(req)  # bad goals are answered at once, without a process
    except TrainError as e:
        return TrainResult(e.code, e.msg, wall_seconds=time.monotonic() - t0)
    ctx = mp.get_context("spawn")
    q, cancel = ctx.Queue(), ctx.Event()
    proc = ctx.Process(target=_child, args=(req, str(artifacts_root), q, cancel), daemon=True)
    proc.start()
    cancel_at = None
    try:
        while True:
            if canceled() and cancel_at is None:
                cancel.set()
                cancel_at = time.monotonic()
            if cancel_at is not None and time.monotonic() - cancel_at > grace:
                proc.kill()
                proc.join()
                return TrainResult(TrainErrorCode.CANCELED, "training canceled (killed)",
                                   wall_seconds=time.monotonic() - t0)  # fmt: skip
            try:
                kind, payload = q.get(timeout=0.1)
            except queue_mod.Empty:
                if not proc.is_alive() and q.empty():
                    proc.join()
                    return TrainResult(
                        TrainErrorCode.TRAINING_FAILED,
                        f"the training process died (exit code {proc.exitcode})",
                        wall_seconds=time.monotonic() - t0,
                    )
                continue
            if kind == "progress":
                progress(**payload)
            else:
                proc.join(timeout=30)
                return TrainResult(**payload)
    finally:
        if proc.is_alive():
            proc.kill()
            proc.join()

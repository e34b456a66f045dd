import math

import numpy as np
import pytest

from enpire_env.pusht_geometry import GOAL_POSE, tee_world_point
from enpire_env.sim_cell import CellConfig, CommandError, PushTCell

GRIP = 5


@pytest.fixture
def cell():
    return PushTCell()


def _go(cell, xyz, gripper=1.0, yaw=None, steps=40):
    q = cell.kin.ik(xyz, yaw=yaw, seed=cell.q, max_tilt=0.7)
    q[GRIP] = gripper
    cell.command([(0.5, q)])
    for _ in range(steps):
        cell.step()
    return q


def test_table_pixel_round_trip_and_orientation():
    cfg = CellConfig()
    for u, v in [(0, 0), (256, 256), (100, 400)]:
        assert cfg.table_to_px(*cfg.px_to_table(u, v)) == pytest.approx((u, v))
    # forward (x) is up in the image, left (y) is left in the image
    u0, v0 = cfg.table_to_px(0.2, 0.0)
    assert cfg.table_to_px(0.25, 0.0)[1] < v0 and cfg.table_to_px(0.2, 0.05)[0] < u0
    for yaw in (0.0, 1.0, -2.0):
        assert cfg.px_to_yaw(cfg.yaw_to_px(yaw)) == pytest.approx(yaw)


def test_joints_respect_velocity_limits(cell):
    q0 = cell.q.copy()
    target = q0.copy()
    target[0] += 1.0
    cell.command([(0.01, target)])
    cell.step()
    assert abs(cell.q[0] - q0[0]) == pytest.approx(cell.kin.max_velocity()[0] * cell.dt)
    for _ in range(10):
        cell.step()
    assert cell.q[0] == pytest.approx(target[0])


@pytest.mark.parametrize(
    "points, message",
    [
        ([], "no points"),
        ([(0.5, [0.0] * 5)], "expected 6"),
        ([(0.5, [math.nan] * 6)], "non-finite"),
        ([(0.5, [0.0] * 6), (0.4, [0.0] * 6)], "must increase"),
    ],
)
def test_malformed_commands_are_refused_and_motion_continues(cell, points, message):
    q = cell.q.copy()
    with pytest.raises(CommandError, match=message):
        cell.command(points)
    cell.step()
    assert cell.q == pytest.approx(q)


def test_out_of_range_positions_are_clipped(cell):
    assert cell.command([(0.5, [9.0, 0, 0, 0, 0, 1.0])]) == 1
    for _ in range(20):
        cell.step()
    assert cell.q[0] == pytest.approx(cell.kin.limits["shoulder_pan"].upper)


def test_low_tip_pushes_the_block_and_lifted_tip_does_not(cell):
    cell.teleport((256.0, 256.0, 0.0))
    cfg = cell.cfg
    start = cfg.px_to_table(256, 380)
    _go(cell, (*start, 0.05))
    _go(cell, (*start, 0.005))
    before = cell.block_pose()
    # sweep over the block with the tip lifted: nothing moves
    _go(cell, (*cfg.px_to_table(256, 380), 0.05))
    _go(cell, (*cfg.px_to_table(256, 150), 0.05), steps=60)
    assert cell.block_pose() == pytest.approx(before, abs=1e-6)
    # push from below (image) with the tip low: the block moves up the image
    _go(cell, (*cfg.px_to_table(256, 400), 0.05))
    _go(cell, (*cfg.px_to_table(256, 400), 0.005))
    _go(cell, (*cfg.px_to_table(256, 300), 0.005), steps=60)
    assert cell.block_pose()[1] < before[1] - 20


def test_closed_gripper_carries_the_block(cell):
    cell.teleport((256.0, 300.0, 0.0))
    grasp = cell.cfg.px_to_table(256, 375)  # middle of the stem
    _go(cell, (*grasp, 0.05))
    _go(cell, (*grasp, 0.004))
    _go(cell, (*grasp, 0.004), gripper=0.0)
    assert cell.attached and cell.q[GRIP] == pytest.approx(cell.cfg.gripper_holding)
    _go(cell, (*grasp, 0.05), gripper=0.0)
    _go(cell, (*cell.cfg.px_to_table(200, 375), 0.05), gripper=0.0)
    # the grasped point of the T travels with the tip (the T turns with the jaws' yaw)
    assert tee_world_point(cell.block_pose(), (0, 75)) == pytest.approx((200, 375), abs=1.0)
    _go(cell, (*cell.cfg.px_to_table(200, 375), 0.008), gripper=0.0)
    _go(cell, (*cell.cfg.px_to_table(200, 375), 0.008), gripper=1.0)
    assert not cell.attached
    placed = cell.block_pose()
    _go(cell, (*cell.cfg.px_to_table(200, 375), 0.05))
    assert cell.block_pose() == pytest.approx(placed, abs=0.5)  # lifting off does not push


def test_closing_beside_the_block_grasps_nothing(cell):
    cell.teleport((256.0, 300.0, 0.0))
    beside = cell.cfg.px_to_table(150, 400)
    _go(cell, (*beside, 0.004))
    _go(cell, (*beside, 0.004), gripper=0.0)
    assert not cell.attached and cell.q[GRIP] == pytest.approx(0.0)


def test_ground_truth_and_render(cell):
    cell.teleport((256.0, 256.0, math.pi / 4))
    gt = cell.ground_truth()
    assert gt["success"] and gt["coverage"] == pytest.approx(1.0)
    img = cell.render(128)
    assert img.shape == (128, 128, 3) and img.dtype == np.uint8


def test_frames_drawn_in_part_are_the_whole_drawings_pixels():
    """After the first frame of a size, a frame is drawn and scaled only where the block and
    the pusher were and are: over pushes, grasps, carries, lifts and teleports, at every size
    (whole factors of the surface and others), each frame equals PushTEnv._draw's picture."""
    import cv2
    import pygame

    from enpire_env.tasks import PUSHT

    cell = PushTCell()
    sizes = (512, 256, 128, 96)
    compared = carried = 0

    def check():
        nonlocal compared
        rgb = np.transpose(pygame.surfarray.array3d(cell.env._draw()), (1, 0, 2))
        for size in sizes:
            want = (
                rgb if size == 512 else cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)
            )
            assert np.array_equal(cell.render(size), want)
            compared += 1

    for seed in range(3):
        cell.teleport(PUSHT.sample_start_state(seed))
        check()
        centre = cell.cfg.px_to_table(*tee_world_point(cell.block_pose(), (0.0, 15.0)))
        x, y = centre
        start = cell.block_pose()
        moves = [
            (x, y, 0.05, 1.0),  # over the block
            (x, y, 0.004, 1.0),  # down onto it (open jaws straddle it)
            (x, y, 0.004, 0.0),  # grasp
            (x + 0.03, y, 0.05, 0.0),  # carry it, lifted
            (x + 0.03, y, 0.004, 1.0),  # put it down, release
            (x - 0.05, y + 0.02, 0.004, 1.0),  # push across the table
        ]
        for *target, grip in moves:
            q = cell.kin.ik(target, seed=cell.q, max_tilt=0.7)
            q[GRIP] = grip
            cell.command([(0.5, q)])
            for _ in range(6):
                cell.step()
                carried += cell.attached
                check()
        assert not np.allclose(cell.block_pose(), start)
    assert carried and compared == 3 * (1 + 36) * len(sizes)


def test_a_teleported_cell_is_drawn_where_it_is():
    """The frame right after a teleport shows the pusher at its new place, as the frame after
    a step in which nothing moves does (an in-process episode records that frame first)."""
    cell = PushTCell()
    tip = (*cell.cfg.px_to_table(150.0, 200.0), 0.05)
    cell.teleport((300.0, 300.0, 0.5), q=cell.kin.ik(tip, max_tilt=0.8))
    for _ in range(3):
        cell.step()
    cell.teleport((256.0, 300.0, 1.0))  # the arm parked: the pusher moves far
    first = cell.render(256)
    pusher, block = tuple(cell.env.agent.position), cell.block_pose()
    cell.step()
    assert tuple(cell.env.agent.position) == pusher
    assert np.array_equal(cell.block_pose(), block)
    assert np.array_equal(first, cell.render(256))


def test_physics_follows_gym_pushts_step_and_coverage_is_its_rule():
    """The cell steps gym-pusht's physics without PushTEnv.step's coverage and observation:
    a pushed block must move exactly as under PushTEnv.step, and the cell's coverage must be
    the value PushTEnv.step reports."""
    import gym_pusht  # noqa: F401
    import gymnasium as gym

    cell = PushTCell()
    ref = gym.make("gym_pusht/PushT-v0", obs_type="state").unwrapped
    rng = np.random.default_rng(3)
    state = [256.0, 330.0, 250.0, 250.0, 0.6]  # agent below the block, pushing up into it
    for env in (cell.env, ref):
        env.reset(seed=0, options={"reset_to_state": state})
    moved = 0.0
    for i in range(60):
        action = np.array([256.0, 330.0 - 3.0 * i]) + rng.normal(0, 4, 2)
        cell._physics(action)
        _obs, _r, _term, _trunc, info = ref.step(action)
        cell._coverage = None
        assert tuple(cell.env.block.position) == tuple(ref.block.position)
        assert cell.env.block.angle == ref.block.angle
        assert tuple(cell.env.agent.position) == tuple(ref.agent.position)
        assert cell.coverage == pytest.approx(info["coverage"], abs=1e-12)
        moved = max(moved, abs(ref.block.position[1] - 250.0))
    assert moved > 10  # the block was pushed, not left at rest


def test_render_is_the_renderers_pixels():
    """Frames (drawn on a surface kept across frames, read from its buffer) equal an RGB copy
    of gym-pusht's own drawing, PushTEnv._draw."""
    import cv2
    import pygame

    cell = PushTCell()
    rng = np.random.default_rng(5)
    for i in range(8):
        # the block anywhere, over the goal, against the walls, under the lifted pusher
        block = [(*rng.uniform(150, 350, 2), rng.uniform(-3, 3)), GOAL_POSE, (40, 60, 0.3)][i % 3]
        tip = (*cell.cfg.px_to_table(*block[:2]), 0.05)
        cell.teleport(block, q=cell.kin.ik(tip, max_tilt=0.8))
        for _ in range(3):
            cell.step()
        if i == 6:  # the goal moves: the table and goal are drawn again
            cell.env.goal_pose = np.array([200.0, 300.0, 1.0])
        screen = cell.env._draw()
        rgb = np.transpose(pygame.surfarray.array3d(screen), (1, 0, 2))
        for size in (512, 256, 96):
            want = (
                rgb if size == 512 else cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)
            )
            assert np.array_equal(cell.render(size), want)

import math

import numpy as np
import pytest

from enpire_env.pusht_geometry import GOAL_POSE, coverage, tee_sdf
from enpire_env.sim_cell import PushTCell
from enpire_env.tasks import PUSHT
from enpire_env.verify import estimate_block_pose, evaluate


@pytest.fixture(scope="module")
def cell():
    return PushTCell()


@pytest.mark.parametrize("seed", range(8))
def test_pose_estimate_is_within_a_few_pixels(cell, seed):
    cell.teleport(PUSHT.sample_start_state(seed))
    est = estimate_block_pose(cell.render(256))
    gt = cell.block_pose()
    assert np.hypot(*(est.pose[:2] - gt[:2])) < 4.0
    assert abs(math.remainder(est.pose[2] - gt[2], 2 * math.pi)) < 0.05
    assert est.mismatch < 0.1


def test_success_is_judged_from_the_image(cell):
    cell.teleport(GOAL_POSE)
    v = evaluate(cell.render(256))
    assert v.success and v.reward == 1.0
    off = (GOAL_POSE[0] + 15, GOAL_POSE[1], GOAL_POSE[2])
    cell.teleport(off)
    v = evaluate(cell.render(256))
    assert not v.success and v.coverage == pytest.approx(coverage(off), abs=0.03)


def test_no_block_in_view():
    img = np.full((64, 64, 3), 255, np.uint8)
    assert estimate_block_pose(img) is None
    assert not evaluate(img).ok and evaluate(img).reward == 0.0
    with pytest.raises(ValueError, match="square RGB"):
        estimate_block_pose(np.zeros((10, 20, 3), np.uint8))


def test_near_the_threshold_the_renderers_own_model_finds_the_drawn_vertices(cell):
    from enpire_env import verify

    rng = np.random.default_rng(7)
    found = 0
    for _ in range(12):
        cell.teleport(np.array(GOAL_POSE) + rng.normal(0, [3.0, 3.0, 0.04]))
        img, gt = cell.render(256), cell.block_pose()
        est = estimate_block_pose(img)
        _block, pusher, wall = verify.segment(img)
        region = verify._exact_region(est.pose, img, pusher, wall)
        if region is None:
            continue
        found += 1
        # every pose of the set rounds its vertices exactly as the true pose does
        assert (verify._vertex_keys(region) == verify._vertex_keys(gt[None])).all()
        assert np.abs(region.mean(axis=0) - gt)[:2].max() < 0.6
    assert found >= 10


def test_the_exact_decision_agrees_with_the_truth_more_often(cell, monkeypatch):
    from enpire_env import verify
    from enpire_env.pusht_geometry import is_success

    rng = np.random.default_rng(11)
    poses = [np.array(GOAL_POSE) + rng.normal(0, [3.0, 3.0, 0.04]) for _ in range(80)]
    agree = {}
    for exact in (False, True):
        monkeypatch.setattr(verify, "EXACT", exact)
        n = 0
        for p in poses:
            cell.teleport(p)
            n += evaluate(cell.render(256)).success == is_success(coverage(cell.block_pose()))
        agree[exact] = n
    assert agree[True] >= agree[False] and agree[True] >= 77, agree


def _template_at_pose(pose, xs, ys, k):
    """The T's pixel coverage at a body pose (x, y, theta): the reference for the fit's
    centroid parametrisation."""
    from enpire_env import verify

    x, y, th = pose
    c, s = math.cos(th), math.sin(th)
    lx, ly = c * (xs - x) + s * (ys - y), -s * (xs - x) + c * (ys - y)
    return np.clip(0.5 - (tee_sdf(lx, ly)[0] - verify.OUTLINE_PX) / k, 0.0, 1.0)


def test_the_soft_fits_jacobian_is_the_templates_derivative():
    """The sub-pixel fit uses an analytic Jacobian (no finite differences): it must be the
    derivative of the template it fits, inside and outside the T, across both boxes."""
    from enpire_env import verify

    rng = np.random.default_rng(0)
    xs, ys = rng.uniform(150, 320, 3000), rng.uniform(150, 320, 3000)
    for g in ([220.0, 230.0, 0.7], [256.0, 256.0, -2.9], [240.0, 250.0, math.pi / 4]):
        g = np.array(g)
        tpl, jac = verify._soft_template_centroid(g, xs, ys, 2.0)
        same = _template_at_pose(verify._pose_from_centroid(*g), xs, ys, 2.0)
        assert np.allclose(tpl, same, atol=1e-12)
        h = 1e-6
        num = np.stack(
            [
                (
                    verify._soft_template_centroid(g + e, xs, ys, 2.0)[0]
                    - verify._soft_template_centroid(g - e, xs, ys, 2.0)[0]
                )
                / (2 * h)
                for e in np.eye(3) * h
            ],
            axis=1,
        )
        # away from the kinks (a pixel exactly at a box corner or at the clip edge)
        smooth = np.abs(num - jac).max(axis=1) < 1e-3
        assert smooth.mean() > 0.99
        assert np.abs(jac).max() > 1.0  # not trivially zero


@pytest.mark.parametrize("seed", range(4))
def test_the_coarse_fit_counts_on_its_crop_what_the_whole_image_holds(cell, seed):
    """The coarse fit counts mismatching pixels on a crop around the block: every pose, near
    the block or reaching outside the crop (counted on the whole image then), gives the count
    of the whole image."""
    from enpire_env import verify

    cell.teleport(PUSHT.sample_start_state(seed))
    seg = verify.palette_segmentation(cell.render(256))
    crop = verify._Mismatch(seg.block, seg.care)
    assert crop.crop_block.size < seg.block.size / 3
    rng = np.random.default_rng(seed)
    centre = np.array([*verify.tee_world_point(cell.block_pose(), verify.LOCAL_CENTROID), 0.0])
    for shift in (0.0, 4.0, 40.0, 150.0):  # px: on the block ... far outside the crop
        for _ in range(10):
            g = centre + [*rng.normal(0, shift, 2), rng.uniform(-math.pi, math.pi)]
            pose = verify._pose_from_centroid(*g)
            assert crop(pose) == verify._mismatch(pose, seg.block, seg.care)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("off", [0.0, 12.0])
def test_the_sub_pixel_fit_on_the_edge_band_finds_the_whole_boxs_fit(cell, seed, off, monkeypatch):
    """The sub-pixel fit runs on the pixels near the T's edge: from the coarse fit's start it
    finds the pose the fit over the block's whole box finds, and from a start further off
    than the band allows (off px) it fits the whole box again."""
    from enpire_env import verify

    cell.teleport(PUSHT.sample_start_state(seed))
    seg = verify.palette_segmentation(cell.render(256))
    start = np.array([*verify.tee_world_point(cell.block_pose(), verify.LOCAL_CENTROID), 0.0])
    start[2] = cell.block_pose()[2] + 0.004
    start[:2] += off / math.sqrt(2)
    band = verify._refine_soft(start, seg)
    monkeypatch.setattr(verify, "_SOFT_BAND_PX", 1e9)  # every pixel of the box
    whole = verify._refine_soft(start, seg)
    # as close as least_squares stops (relative step and cost change 1e-8: ~2e-6 px at a
    # centroid ~200 px)
    assert band[0] == pytest.approx(whole[0], abs=1e-5)
    assert band[1] == pytest.approx(whole[1], rel=1e-7)

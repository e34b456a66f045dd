"""Stamps of the cell clock: a clock summed in 0.1 s steps never jumps back a second."""

from __future__ import annotations

import pytest

from enpire_env.ros_conversions import seconds_from_stamp, stamp_from_seconds


def test_stamps_round_trip_on_a_summed_clock():
    t, last = 0.0, -1.0
    for _ in range(1000):
        t += 0.1  # 5.999999999999995 after 60 steps
        back = seconds_from_stamp(stamp_from_seconds(t))
        assert back == pytest.approx(t, abs=1e-9) and back > last
        last = back


@pytest.mark.parametrize("seconds", [0.0, 1.5, 2.999999999999, 1e6 + 0.25])
def test_stamp_fields_are_normalised(seconds):
    st = stamp_from_seconds(seconds)
    assert 0 <= st.nanosec < 1_000_000_000
    assert seconds_from_stamp(st) == pytest.approx(seconds, abs=1e-9)


def test_images_from_messages_and_views_copied_or_not():
    import numpy as np

    from enpire_env import cdr
    from enpire_env.ros_conversions import image_to_msg, msg_to_image

    img = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    msg = image_to_msg(img)
    view = cdr.decode_cell_state(
        cdr.encode_cell_state(cdr.Header(), [], [], [], cdr.BlockPoseView(), msg)
    ).image
    for m in (msg, view):
        out = msg_to_image(m)
        assert np.array_equal(out, img) and out.flags.writeable
        ro = msg_to_image(m, copy=False)  # a view of the message's bytes: nothing copied
        assert np.array_equal(ro, img) and not np.shares_memory(ro, out)
    ro = msg_to_image(view, copy=False)
    assert not ro.flags.writeable  # the decoded message's bytes cannot be written through it
    assert np.shares_memory(msg_to_image(view, copy=False), ro)
    bgr = image_to_msg(img[:, :, ::-1])
    bgr.encoding = "bgr8"
    assert np.array_equal(msg_to_image(bgr, copy=False), img)

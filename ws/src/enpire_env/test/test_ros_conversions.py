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

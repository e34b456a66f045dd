"""Episode MCAP files: CDR messages with ros2msg schemas that mcap-ros2-support decodes."""

import pytest
from sensor_msgs.msg import Image, JointState
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from enpire_msgs.msg import EpisodeResult
from enpire_rollout.mcap_log import McapEpisodeLog, msgdef, read_messages


def test_msgdef_includes_dependencies_once():
    text = msgdef("trajectory_msgs/msg/JointTrajectory")
    assert text.count("MSG: std_msgs/Header") == 1
    assert text.count("MSG: builtin_interfaces/Time") == 1
    assert "MSG: trajectory_msgs/JointTrajectoryPoint" in text
    assert "MSG: builtin_interfaces/Duration" in text
    own = msgdef("enpire_msgs/msg/EpisodeResult")
    assert "OUTCOME_INTERRUPTED=4" in own and "MSG:" not in own  # constants are not types


def test_round_trip(tmp_path):
    path = tmp_path / "ep.mcap"
    log = McapEpisodeLog(path)
    js = JointState(name=["shoulder_pan"], position=[0.25])
    js.header.stamp.sec = 7
    log.write("/robot_0/joint_states", js, 1_000)
    img = Image(height=2, width=2, encoding="rgb8", step=6, data=bytes(range(12)))
    log.write("/robot_0/camera/image_raw", img, 2_000)
    traj = JointTrajectory(joint_names=["a"], points=[JointTrajectoryPoint(positions=[0.5])])
    log.write("/robot_0/policy/joint_trajectory", traj, 3_000)
    log.write("/robot_0/episode_result", EpisodeResult(success=True, steps=12), 4_000)
    log.metadata("episode", {"seed": 3})
    assert not path.exists()  # appears only when complete
    log.close()
    msgs = read_messages(path)
    assert [t for t, _, _ in msgs] == [
        "/robot_0/joint_states", "/robot_0/camera/image_raw",
        "/robot_0/policy/joint_trajectory", "/robot_0/episode_result",
    ]  # fmt: skip
    assert list(msgs[0][1].position) == [0.25] and msgs[0][1].header.stamp.sec == 7
    assert bytes(msgs[1][1].data) == bytes(range(12))
    assert list(msgs[2][1].points[0].positions) == [0.5]
    assert msgs[3][1].success and msgs[3][1].steps == 12
    assert [ts for _, _, ts in msgs] == [1_000, 2_000, 3_000, 4_000]


def test_aborted_log_leaves_nothing(tmp_path):
    log = McapEpisodeLog(tmp_path / "ep.mcap")
    log.write("/x", JointState(), 1)
    log.abort()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(FileNotFoundError):
        read_messages(tmp_path / "ep.mcap")


def test_concurrent_writers_do_not_corrupt_the_file(tmp_path):
    import threading

    log = McapEpisodeLog(tmp_path / "ep.mcap")

    def writer(k):
        for i in range(200):
            if k % 2:
                log.write(f"/r/js{k}", JointState(name=["a"] * 3, position=[float(i)] * 3), i)
            else:
                img = Image(height=1, width=i + 1, encoding="rgb8", data=bytes(3 * (i + 1)))
                log.write(f"/r/img{k}", img, i)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    msgs = read_messages(tmp_path / "ep.mcap")
    assert len(msgs) == 800
    assert all(len(m.data) == 3 * m.width for t, m, _ in msgs if "img" in t)


def test_batched_messages_keep_their_order_values_and_times(tmp_path):
    log = McapEpisodeLog(tmp_path / "ep.mcap", batch=3)  # written 3 at a time, the rest at close
    for i in range(10):
        log.write("/r/joint_states", JointState(name=["a"], position=[float(i)]), 100 + i)
    log.metadata("episode", {"seed": 1})
    log.write("/r/joint_states", JointState(name=["a"], position=[10.0]), 110)
    log.close()
    msgs = read_messages(tmp_path / "ep.mcap")
    assert [m.position[0] for _, m, _ in msgs] == [float(i) for i in range(11)]
    assert [ts for _, _, ts in msgs] == list(range(100, 111))

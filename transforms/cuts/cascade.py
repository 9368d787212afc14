"""SVD's cut-detection cascade: merge the detectors' boundaries into the list of shots.

``CutCascade`` is what the analysis pass feeds: one frame-level detector (ContentDetector,
AdaptiveDetector or TransNetV2) at the native rate, the same family of detector at lower frame
rates for gradual transitions, and fade detection from the luma of every frame. ``scenes_from``
is the pure merge.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np

from transforms.cuts.align import aligned_unrelatedness
from transforms.cuts.base import Boundaries, FrameDetector, at_rate
from transforms.cuts.content import PySceneDetectLevel, to_hsv
from transforms.cuts.fades import find_fades, merge_ranges
from transforms.cuts.gradual import GradualTransitionDetector, pair_flow, unrelatedness
from transforms.cuts.postcheck import HiddenTransitionCheck, structure_unrelatedness


@dataclass
class CutResult:
    scenes: list[tuple[int, int]]  # [start, end) frame ranges of usable shot content
    cuts: list[int]
    gaps: list[tuple[int, int]]


def scaled_strides(strides, fps: float) -> tuple[int, ...]:
    """``cuts.cascade_strides`` at a file's rate: they count frames at 25 fps, so each level
    compares frames the same time apart whatever the rate (a 24-frame stride is about 1 s: 48
    frames at 50 fps, 12 at 12.5 fps), and strides that meet are one level. Stride 1, the native
    rate, stays 1."""
    return tuple(sorted({1 if k == 1 else at_rate(k, fps) for k in strides}))


def scenes_from(num_frames: int, cuts: list[int], gaps: list[tuple[int, int]],
                margin: int = 1, min_len: int = 1) -> list[tuple[int, int]]:
    """Split ``[0, num_frames)`` at hard ``cuts`` and remove ``gaps`` (each widened by
    ``margin`` frames); pieces shorter than ``min_len`` frames are dropped."""
    excluded = np.zeros(num_frames, dtype=bool)
    for a, b in gaps:
        excluded[max(0, a - margin):min(num_frames, b + margin)] = True
    bounds = sorted({0, num_frames, *(c for c in cuts if 0 < c < num_frames)})
    scenes = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        keep = ~excluded[a:b]
        if not keep.any():
            continue
        padded = np.concatenate([[False], keep, [False]]).astype(np.int8)
        edges = np.flatnonzero(np.diff(padded))
        for s, e in zip(edges[::2], edges[1::2]):
            if e - s >= min_len:
                scenes.append((a + int(s), a + int(e)))
    return scenes


def timed_scenes(num_frames: int, cuts: list[int], gaps: list[tuple[int, int]], margin: int,
                 min_scene_s: float, times, fps: float) -> list[tuple[int, int]]:
    """:func:`scenes_from` with the shortest scene measured on presentation ``times`` (a scene
    ``[a, e)`` lasts from frame a's time to frame e's, or one frame past the last)."""
    scenes = scenes_from(num_frames, cuts, gaps, margin, 1)
    if not num_frames:
        return scenes
    t = np.asarray(times, np.float64)
    end = np.append(t, t[-1] + 1.0 / (fps or 25.0))
    return [(a, e) for a, e in scenes if end[e] - end[a] >= min_scene_s - 1e-4]


class CutCascade(FrameDetector):
    name = "cascade"

    def __init__(self, fps: float, cfg, timestamps: bool = False):
        """``cfg``: a :class:`pipeline.config.CutsConfig`. ``timestamps``: every ``push`` gives
        the frame's presentation time and the shortest scene (``cuts.min_scene_s``) is measured
        on it (variable-frame-rate files); else on frame numbers at ``fps``."""
        self.fps = fps if fps > 0 else 25.0
        self.cfg = cfg
        self.timestamps = timestamps
        if cfg.detector == "transnetv2":
            from transforms.cuts.transnet import TransNetV2Detector

            self.frame_level: FrameDetector = TransNetV2Detector(cfg.transnetv2_threshold)
        else:
            self.frame_level = PySceneDetectLevel(
                self.fps, 1, cfg.detector, cfg.threshold, cfg.adaptive_threshold, cfg.min_scene_s, timestamps)
        # Also collects the per-frame luma and lag-1 change used by fades and localisation.
        self.gradual = GradualTransitionDetector(
            self.fps, scaled_strides(cfg.cascade_strides, self.fps), cfg.cascade_threshold, cfg.detector,
            cfg.min_scene_s, cfg.max_transition_s, timestamps=timestamps)
        self.check = HiddenTransitionCheck(self.fps) if cfg.post_check else None
        self._recent: deque[tuple[int, np.ndarray]] = deque(maxlen=16)  # for verify_cuts
        # Cuts verify_cuts dropped only once the frames were aligned: the camera moved further
        # than flow follows, so windows across them (which compare pictures moved far apart,
        # what the blend tests take for a dissolve) are not tested, as windows across a cut.
        self.jolts: list[int] = []

    @property
    def grid(self) -> int:
        """Frames between the positions every lower-rate window and check window is aligned to:
        a pass that starts at a multiple of it (a segment of a long video) looks at the same
        windows as a pass from frame 0."""
        steps = [lvl.stride for lvl in self.gradual.levels] + ([self.check.step] if self.check else [])
        return int(np.lcm.reduce(steps)) if steps else 1

    def push(self, index: int, frame_bgr: np.ndarray, grey: np.ndarray | None = None, t: float | None = None) -> None:
        """``grey``: the frame's luma at the same size when the caller has it (saves a conversion);
        ``t``: its presentation time in seconds from the first frame."""
        hsv = to_hsv(frame_bgr)
        if grey is None:
            grey = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY)
        if isinstance(self.frame_level, PySceneDetectLevel):
            self._recent.append((index, grey))
            found = self.frame_level.cut_frames
            before = len(found)
            self.frame_level.push(index, frame_bgr, hsv, t)
            new, found[before:] = found[before:], []
            for c in new:
                moved = self._camera_motion(c)  # a cut flow relates is dropped
                if moved == "aligned":
                    self.jolts.append(c)
                elif not moved:
                    found.append(c)
                    self.gradual.watch_cut(c)
        else:
            self.frame_level.push(index, frame_bgr)
        self.gradual.push(index, frame_bgr, hsv, grey, t)
        if self.check is not None:
            cuts = self.frame_level.cut_frames if isinstance(self.frame_level, PySceneDetectLevel) else ()
            if self.jolts:
                cuts = sorted([*cuts, *self.jolts])
            self.check.push(index, grey, self.gradual.contrast[-1], cuts, t if self.timestamps else None)

    def _camera_motion(self, c: int) -> str | None:
        """``cuts.verify_cuts``: optical flow relates the frames before and at cut ``c`` (the
        larger of unrelatedness and structure unrelatedness is below the setting), as they are
        or once aligned by one affine motion (:mod:`transforms.cuts.align`: a jolt that also
        zooms moves too far for flow alone), so the jump is the camera moving (a jolt, a whip
        pan), not a new shot. Returns how they were related ("flow" or "aligned"), or None."""
        limit = self.cfg.verify_cuts
        frames = dict(self._recent)
        if not limit or c - 1 not in frames or c not in frames:
            return None
        a, b = frames[c - 1], frames[c]
        flow = pair_flow(a, b)
        if unrelatedness(a, b, flow=flow) < limit and structure_unrelatedness(a, b, flow) < limit:
            return "flow"
        aligned = aligned_unrelatedness(a, b)
        return "aligned" if aligned is not None and aligned < limit else None

    def finish(self, num_frames: int) -> Boundaries:
        hard = self.frame_level.finish(num_frames)
        max_ramp = int(round(self.cfg.max_transition_s * self.fps))
        fades = find_fades(np.asarray(self.gradual.luma), self.cfg.fade_black_level, max_ramp,
                           contrast=np.asarray(self.gradual.contrast))
        fade_b = Boundaries(gaps=fades)
        flashes = self.gradual.flashes
        hard.cuts = [c for c in hard.cuts if not any(a <= c < b for a, b in flashes)]
        # Windows across a jolt are camera motion, as windows across a cut are the cut.
        grad = self.gradual.finish(num_frames, sorted(hard.cuts + self.jolts), hard.gaps + fades)
        out = hard.merge(fade_b).merge(grad)
        # A cut inside (or at the edge of) a transition's gap is the same boundary: keep the gap.
        gaps = merge_ranges(out.gaps)
        out.cuts = [c for c in out.cuts if not any(a <= c <= b for a, b in gaps)]
        return out

    def checked(self, num_frames: int, times: np.ndarray | None = None) -> Boundaries:
        """:meth:`finish`, then the check after splitting (``cuts.post_check``): the hidden
        transitions it finds inside the planned scenes become gaps too. ``times`` as in
        :meth:`result`."""
        b = self.finish(num_frames)
        cuts, gaps = b.cuts, merge_ranges(b.gaps)
        if self.check is not None:
            hidden = self.check.gaps(self._scenes(num_frames, cuts, gaps, times), cuts, self.gradual.flashes)
            if hidden:
                gaps = merge_ranges(gaps + hidden)
                cuts = [c for c in cuts if not any(a <= c <= e for a, e in gaps)]
        return Boundaries(cuts=cuts, gaps=gaps)

    def result(self, num_frames: int, times: np.ndarray | None = None) -> CutResult:
        """``times``: every frame's presentation time (from 0): the shortest scene is measured
        on them; else in frames at ``fps``."""
        b = self.checked(num_frames, times)
        return CutResult(self._scenes(num_frames, b.cuts, b.gaps, times), b.cuts, b.gaps)

    def _scenes(self, num_frames: int, cuts: list[int], gaps: list[tuple[int, int]], times) -> list[tuple[int, int]]:
        if times is not None and len(times) == num_frames:
            return timed_scenes(num_frames, cuts, gaps, self.cfg.boundary_margin_frames, self.cfg.min_scene_s,
                                times, self.fps)
        min_len = max(1, int(round(self.cfg.min_scene_s * self.fps)))
        return scenes_from(num_frames, cuts, gaps, self.cfg.boundary_margin_frames, min_len)

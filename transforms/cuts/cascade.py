"""SVD's cut-detection cascade: merge the detectors' boundaries into the list of shots.

``CutCascade`` is what the analysis pass feeds: one frame-level detector (ContentDetector,
AdaptiveDetector or TransNetV2) at the native rate, the same family of detector at lower frame
rates for gradual transitions, and fade detection from the luma of every frame. ``scenes_from``
is the pure merge.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from transforms.cuts.base import Boundaries, FrameDetector
from transforms.cuts.content import PySceneDetectLevel, to_hsv
from transforms.cuts.fades import find_fades, merge_ranges
from transforms.cuts.gradual import GradualTransitionDetector


@dataclass
class CutResult:
    scenes: list[tuple[int, int]]  # [start, end) frame ranges of usable shot content
    cuts: list[int]
    gaps: list[tuple[int, int]]
    events: list[tuple[str, int, int]]


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


class CutCascade(FrameDetector):
    name = "cascade"

    def __init__(self, fps: float, cfg):
        """``cfg``: a :class:`pipeline.config.CutsConfig`."""
        self.fps = fps if fps > 0 else 25.0
        self.cfg = cfg
        if cfg.detector == "transnetv2":
            from transforms.cuts.transnet import TransNetV2Detector

            self.frame_level: FrameDetector = TransNetV2Detector(cfg.transnetv2_threshold)
        else:
            self.frame_level = PySceneDetectLevel(
                self.fps, 1, cfg.detector, cfg.threshold, cfg.adaptive_threshold, cfg.min_scene_s)
        # Also collects the per-frame luma and lag-1 change used by fades and localisation.
        self.gradual = GradualTransitionDetector(
            self.fps, tuple(cfg.cascade_strides), cfg.cascade_threshold, cfg.detector,
            cfg.min_scene_s, cfg.max_transition_s)

    def push(self, index: int, frame_bgr: np.ndarray, grey: np.ndarray | None = None) -> None:
        """``grey``: the frame's luma at the same size when the caller has it (saves a conversion)."""
        hsv = to_hsv(frame_bgr)
        if isinstance(self.frame_level, PySceneDetectLevel):
            self.frame_level.push(index, frame_bgr, hsv)
        else:
            self.frame_level.push(index, frame_bgr)
        self.gradual.push(index, frame_bgr, hsv, grey)

    def finish(self, num_frames: int) -> Boundaries:
        hard = self.frame_level.finish(num_frames)
        max_ramp = int(round(self.cfg.max_transition_s * self.fps))
        fades = find_fades(np.asarray(self.gradual.luma), self.cfg.fade_black_level, max_ramp,
                           contrast=np.asarray(self.gradual.contrast))
        fade_b = Boundaries(gaps=fades, events=[("fade", a, b) for a, b in fades])
        grad = self.gradual.finish(num_frames, hard.cuts, hard.gaps + fades)
        return hard.merge(fade_b).merge(grad)

    def result(self, num_frames: int) -> CutResult:
        b = self.finish(num_frames)
        gaps = merge_ranges(b.gaps)
        min_len = max(1, int(round(self.cfg.min_scene_s * self.fps)))
        scenes = scenes_from(num_frames, b.cuts, gaps, self.cfg.boundary_margin_frames, min_len)
        return CutResult(scenes, b.cuts, gaps, b.events)

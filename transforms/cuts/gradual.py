"""Dissolves and wipes: SVD's lower-frame-rate cascade levels plus frame-exact localisation.

Consecutive frames of a cross-dissolve or a wipe differ little, so a frame-to-frame detector
misses them. Running the same detector on every k-th frame (1/k of the frame rate) compares
frames k apart and exposes the change. Fast motion also makes frames k apart differ, so each
candidate window is checked: in a dissolve every pixel of the in-between frames lies between its
values at the window's ends (a blend), and in a wipe each pixel equals one end or the other.
Moving content fails that test. Confirmed windows are then grown at the full frame rate over
the frames whose frame-to-frame change stays above the local baseline, so the gap covers the
whole transition, frame-exactly.
"""

from __future__ import annotations

from collections import deque

import cv2
import numpy as np

from transforms.cuts.base import Boundaries, FrameDetector
from transforms.cuts.content import PySceneDetectLevel
from transforms.cuts.fades import merge_ranges


def betweenness(frames: list[np.ndarray], tol: float = 6.0) -> float:
    """Fraction of changing pixels whose in-between values stay within the end frames' range.

    ``frames``: grey uint8 frames of one window, first and last being its ends. Returns 1.0 for
    a perfect dissolve or wipe; moving content scores lower.
    """
    a = frames[0].astype(np.int16)
    b = frames[-1].astype(np.int16)
    changing = np.abs(a - b) > 3 * tol
    n_changing = int(changing.sum())
    if n_changing < 0.02 * a.size or len(frames) < 3:
        return 0.0
    lo = np.minimum(a, b) - tol
    hi = np.maximum(a, b) + tol
    inside = [((m >= lo) & (m <= hi) & changing).sum() / n_changing
              for m in (f.astype(np.int16) for f in frames[1:-1])]
    return float(np.mean(inside))


class GradualTransitionDetector(FrameDetector):
    name = "gradual"

    def __init__(self, fps: float, strides: tuple[int, ...], threshold: float = 35.0,
                 kind: str = "content", min_scene_s: float = 0.4, max_transition_s: float = 2.5,
                 min_betweenness: float = 0.95, join_betweenness: float = 0.85, timestamps: bool = False):
        self.fps = fps if fps > 0 else 25.0
        self.levels = [PySceneDetectLevel(self.fps, s, "content" if kind == "transnetv2" else kind,
                                          threshold=threshold, min_scene_s=min_scene_s, timestamps=timestamps)
                       for s in strides if s > 1]
        self.max_transition = max(2, int(round(max_transition_s * self.fps)))
        self.min_betweenness = min_betweenness
        self.join_betweenness = join_betweenness
        longest = max([lvl.stride for lvl in self.levels], default=1)
        # Enough history to look at a window even when a detector reports it a little late.
        self._ring: deque[tuple[int, np.ndarray]] = deque(maxlen=2 * longest + 2 * int(self.fps) + 4)
        self._prev: np.ndarray | None = None
        self.d1: list[float] = []  # mean |grey difference| to the previous frame
        self.luma: list[float] = []  # mean grey level
        self.contrast: list[float] = []  # standard deviation of the grey level
        self.candidates: list[tuple[int, int, float]] = []  # (window start, window end, betweenness)

    def push(self, index: int, frame_bgr: np.ndarray, hsv: np.ndarray | None = None,
             grey: np.ndarray | None = None, t: float | None = None) -> None:
        if grey is None:
            grey = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY)
        mean, std = cv2.meanStdDev(grey)
        self.luma.append(float(mean[0, 0]))
        self.contrast.append(float(std[0, 0]))
        self.d1.append(0.0 if self._prev is None else cv2.mean(cv2.absdiff(grey, self._prev))[0])
        self._prev = grey
        self._ring.append((index, grey))
        for level in self.levels:
            before = len(level.cut_frames)
            level.push(index, frame_bgr, hsv, t)
            for c in level.cut_frames[before:]:
                self._check(c - level.stride, c)

    def _check(self, a: int, b: int) -> None:
        window = [g for i, g in self._ring if a <= i <= b]
        if len(window) != b - a + 1:
            return
        self.candidates.append((a, b, betweenness(window)))

    def finish(self, num_frames: int, hard_cuts: list[int] = (), other_gaps: list[tuple[int, int]] = ()) -> Boundaries:
        for level in self.levels:
            before = len(level.cut_frames)
            level.finish(num_frames)
            for c in level.cut_frames[before:]:
                self._check(c - level.stride, c)
        d1 = np.asarray(self.d1)
        windows = []
        for a, b, score in sorted(set(self.candidates)):
            if any(a < c <= b for c in hard_cuts):
                continue  # the jump is a hard cut already found at the native rate
            if any(a < ge and b >= gs for gs, ge in other_gaps):
                continue  # inside a fade already handled
            windows.append((a, b, score))
        # Hysteresis: a window that is clearly a blend seeds a transition; a neighbouring window
        # that is nearly one joins it (a long dissolve between moving shots spans several
        # windows, and the ones at its ends also contain motion).
        accepted = {w for w in windows if w[2] >= self.min_betweenness}
        grown = True
        while grown:
            grown = False
            for w in windows:
                if w not in accepted and w[2] >= self.join_betweenness and any(
                        w[0] <= o[1] and o[0] <= w[1] for o in accepted):
                    accepted.add(w)
                    grown = True
        gaps = []
        for a, b, score in windows:
            if (a, b, score) not in accepted:
                continue  # motion, not a blend
            start, end = self._locate(d1, a, b)
            gaps.append((start, end))
        return Boundaries(gaps=merge_ranges(gaps))

    def _locate(self, d1: np.ndarray, a: int, b: int) -> tuple[int, int]:
        """Grow window [a, b] over frames whose lag-1 change is above the local baseline."""
        n = len(d1)
        span = 2 * int(self.fps)
        around = np.concatenate([d1[max(1, a - span):a], d1[b + 1:b + 1 + span]])
        base = float(np.median(around)) if around.size else 0.0
        elevated = max(1.5 * base, base + 0.5)
        start = a
        while start > 1 and (a - start) < self.max_transition and d1[start] > elevated:
            start -= 1
        end = b
        while end + 1 < n and (end - b) < self.max_transition and d1[end + 1] > elevated:
            end += 1
        # d1[start] is the change from start-1 to start: start-1 is the last clean frame of the
        # shot before; end is the first frame whose successor no longer changes much.
        return start, end + 1

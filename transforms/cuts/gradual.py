"""Dissolves and wipes: SVD's lower-frame-rate cascade levels plus frame-exact localisation.

Consecutive frames of a cross-dissolve or a wipe differ little, so a frame-to-frame detector
misses them. Running the same detector on every k-th frame (1/k of the frame rate) compares
frames k apart and exposes the change. Fast motion also makes frames k apart differ, so each
candidate window is checked twice:

* betweenness: in a dissolve every pixel of the in-between frames lies between its values at
  the window's ends (a blend), and in a wipe each pixel equals one end or the other;
* unrelatedness: optical flow cannot carry one end of the window onto the other (two shots),
  while motion inside one shot, however fast, is what flow explains.

Between moving shots a blend is never perfect (both shots move while they mix), so a window
that is nearly a blend is accepted when its ends are also unrelated. Overlapping confirmed
windows are one transition; its span is grown at the full frame rate over the frames whose
frame-to-frame change stays above each side's baseline, and at each lower rate by the window
just before or after when that window stands above its side's baseline; a side that grew at
neither is widened by a fifth (the faint first and last frames of a blend between moving shots
raise no change), so the gap covers the whole transition.

Flashes (a frame or three that jump away and come back) are told apart from cuts here too: the
cascade drops a hard cut into or out of a flash, and no window that touches one is a transition.
"""

from __future__ import annotations

import functools
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


def pair_flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dense optical flow (Farneback) from grey frame ``a`` to ``b``, as the unrelatedness
    tests use it."""
    return cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 9, 3, 5, 1.1, 0)


def _globally(f: np.ndarray) -> np.ndarray:
    f = f.astype(np.float32)
    return (f - f.mean()) / (f.std() + 4.0)


@functools.lru_cache(maxsize=8)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (x, y) of an h x w picture, float32, read-only (made once per size)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    x.flags.writeable = y.flags.writeable = False
    return x, y


def unrelatedness(a: np.ndarray, b: np.ndarray, border: int = 8, floor: float = 0.8,
                  flow: np.ndarray | None = None, normalise=_globally) -> float:
    """How little of grey frame ``b`` motion from ``a`` explains: the median residual after
    warping ``b`` onto ``a`` along dense optical flow (Farneback), over the median residual
    without warping (medians: another shot changes most of the frame, a car driving through a
    still scene only part of it, and flow at 128 px does not track such small fast things).
    Both frames are first normalised (``normalise``; by default to zero mean and unit contrast:
    a lighting change or a flash scales a frame's values, not its structure), and the residual
    without warping counts as at least ``floor`` (two unrelated pictures differ by about 1 in
    these units; a pair that differs by much less is one picture, whatever flow makes of its
    noise). Near 0: the same shot, moved; near 1 or above: flow cannot relate them (another
    shot). A fast pan or shake over a long window also scores high (Farneback at 128 px loses
    track): the blend test has to reject those. ``flow``: :func:`pair_flow` of the pair, when
    the caller has it."""
    if flow is None:
        flow = pair_flow(a, b)
    h, w = a.shape
    x, y = _grid(h, w)
    na, nb = normalise(a), normalise(b)
    warped = cv2.remap(nb, x + flow[..., 0], y + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    inner = (slice(border, h - border), slice(border, w - border)) if min(h, w) > 4 * border else (slice(None),) * 2
    residual = float(np.median(np.abs(warped - na)[inner]))
    raw = float(np.median(np.abs(nb - na)[inner]))
    return residual / max(raw, floor)


def flash_span(frames: dict[int, np.ndarray], c: int, longest: int = 3, ratio: float = 0.35) -> tuple[int, int] | None:
    """The frames ``[start, end)`` of a flash around a jump at frame ``c`` (grey frames by
    index), or None. A flash jumps away and comes back within ``longest`` frames: either a frame
    just after ``c`` is much closer to the frame before the jump than ``c`` is (the jump goes
    into the flash), or ``c`` is much closer to a frame just before the flash (it comes out)."""
    if c - 1 not in frames or c not in frames:
        return None
    jump = cv2.mean(cv2.absdiff(frames[c - 1], frames[c]))[0]
    if jump <= 0:
        return None
    for j in range(1, longest + 1):  # into the flash: frames c .. c+j-1 are the flash
        if c + j in frames and cv2.mean(cv2.absdiff(frames[c - 1], frames[c + j]))[0] < ratio * jump:
            return c, c + j
    for j in range(2, longest + 2):  # out of it: frames c-j+1 .. c-1 were the flash
        if c - j in frames and cv2.mean(cv2.absdiff(frames[c - j], frames[c]))[0] < ratio * jump:
            return c - j + 1, c + 1
    return None


class GradualTransitionDetector(FrameDetector):
    name = "gradual"

    def __init__(self, fps: float, strides: tuple[int, ...], threshold: float = 35.0,
                 kind: str = "content", min_scene_s: float = 0.4, max_transition_s: float = 2.5,
                 min_betweenness: float = 0.95, join_betweenness: float = 0.85, timestamps: bool = False,
                 near_betweenness: float = 0.88, min_unrelated: float = 0.70, min_evidence: float = 1.60,
                 join_near: tuple[float, float] = (0.80, 0.75), flash_frames: int = 3,
                 blend_unrelated: float = 0.40):
        """A window is a transition when its betweenness reaches ``min_betweenness``, or when it
        reaches ``near_betweenness`` with ``unrelatedness >= min_unrelated`` and the two summing
        to ``min_evidence``; a neighbouring window joins one with ``join_betweenness``, or with
        the pair ``join_near`` (betweenness, unrelatedness). No window whose unrelatedness is
        under ``blend_unrelated`` starts a transition (a light dimming is a perfect blend of one
        picture). ``flash_frames``: the longest flash."""
        self.fps = fps if fps > 0 else 25.0
        self.levels = [PySceneDetectLevel(self.fps, s, "content" if kind == "transnetv2" else kind,
                                          threshold=threshold, min_scene_s=min_scene_s, timestamps=timestamps)
                       for s in strides if s > 1]
        self.max_transition = max(2, int(round(max_transition_s * self.fps)))
        self.min_betweenness = min_betweenness
        self.join_betweenness = join_betweenness
        self.near_betweenness, self.min_unrelated, self.min_evidence = near_betweenness, min_unrelated, min_evidence
        self.join_near = join_near
        self.blend_unrelated = blend_unrelated
        self.flash_frames = flash_frames
        self._watch: list[int] = []  # hard cuts to test for a flash once the frames after them arrive
        self.flashes: list[tuple[int, int]] = []  # [start, end) of each flash found
        longest = max([lvl.stride for lvl in self.levels], default=1)
        # Enough history to look at a window even when a detector reports it a little late.
        self._ring: deque[tuple[int, np.ndarray]] = deque(maxlen=2 * longest + 2 * int(self.fps) + 4)
        self._prev: np.ndarray | None = None
        self.d1: list[float] = []  # mean |grey difference| to the previous frame
        self.luma: list[float] = []  # mean grey level
        self.contrast: list[float] = []  # standard deviation of the grey level
        # (window start, window end, betweenness, unrelatedness)
        self.candidates: list[tuple[int, int, float, float]] = []

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
        while self._watch and index >= self._watch[0] + self.flash_frames:
            self._test_flash(self._watch.pop(0))
        for level in self.levels:
            before = len(level.cut_frames)
            level.push(index, frame_bgr, hsv, t)
            for c in level.cut_frames[before:]:
                self._check(c - level.stride, c)

    def watch_cut(self, c: int) -> None:
        """A hard cut the frame-level detector reported at ``c``: tested for a flash once the
        next ``flash_frames`` frames are in."""
        self._watch.append(c)
        self._watch.sort()

    def _test_flash(self, c: int) -> None:
        span = flash_span(dict(self._ring), c, self.flash_frames)
        if span is not None:
            self.flashes.append(span)

    def _check(self, a: int, b: int) -> None:
        window = [g for i, g in self._ring if a <= i <= b]
        if len(window) != b - a + 1:
            return
        score = betweenness(window)
        unrel = 0.0
        if score >= min(self.near_betweenness, self.join_near[0]):
            unrel = unrelatedness(window[0], window[-1])
        self.candidates.append((a, b, score, unrel))

    def _seed(self, score: float, unrel: float) -> bool:
        if unrel < self.blend_unrelated:
            return False  # the ends are one picture, moved or relit: no transition starts here
        return score >= self.min_betweenness or (
            score >= self.near_betweenness and unrel >= self.min_unrelated and score + unrel >= self.min_evidence)

    def _joins(self, score: float, unrel: float) -> bool:
        if unrel < self.blend_unrelated:
            return False
        return score >= self.join_betweenness or (score >= self.join_near[0] and unrel >= self.join_near[1])

    def finish(self, num_frames: int, hard_cuts: list[int] = (), other_gaps: list[tuple[int, int]] = ()) -> Boundaries:
        for level in self.levels:
            before = len(level.cut_frames)
            level.finish(num_frames)
            for c in level.cut_frames[before:]:
                self._check(c - level.stride, c)
        d1 = np.asarray(self.d1)
        windows = []
        for a, b, score, unrel in sorted(set(self.candidates)):
            if any(a < c <= b for c in hard_cuts):
                continue  # the jump is a hard cut already found at the native rate
            if any(a < ge and b >= gs for gs, ge in other_gaps):
                continue  # inside a fade already handled
            if any(a <= fe and b >= fs for fs, fe in self.flashes):
                continue  # a flash, not a transition
            windows.append((a, b, score, unrel))
        # Hysteresis: a window that is clearly a blend seeds a transition; a neighbouring window
        # that is nearly one joins it (a long dissolve between moving shots spans several
        # windows, and the ones at its ends also contain motion).
        accepted = {w for w in windows if self._seed(w[2], w[3])}
        grown = True
        while grown:
            grown = False
            for w in windows:
                if w not in accepted and self._joins(w[2], w[3]) and any(
                        w[0] <= o[1] and o[0] <= w[1] for o in accepted):
                    accepted.add(w)
                    grown = True
        # Accepted windows that overlap describe one transition; a window of a low frame rate
        # can be much longer than a short transition, and one inside a long transition misses
        # its faint ends, so the group's span is grown at every rate and then widened a little.
        gaps = []
        for a, b in merge_ranges([(w[0], w[1]) for w in accepted]):
            start, end = self._locate(d1, a, b)
            for level in self.levels:
                lo, hi = self._grow(level, a, b)
                start, end = min(start, lo), max(end, hi)
            start, end = min(start, a), max(end, b + 1)
            # A side that grew found the end of the ramp; one that did not may still hide the
            # faintest fifth of a blend between moving shots.
            pad = max(2, int(round(0.2 * (end - start))))
            start -= 2 if start < a else pad
            end += 2 if end > b + 1 else pad
            gaps.append((max(0, start), min(len(d1), end)))
        return Boundaries(gaps=merge_ranges(gaps))

    def _grow(self, level: PySceneDetectLevel, a: int, b: int) -> tuple[int, int]:
        """Grow ``[a, b]`` over the window just before and the one just after it at one lower
        frame rate, each when its change stands above that side's own baseline at the same rate
        (the faint ends of a dissolve between moving shots barely change the frame-to-frame
        difference, but 1/k of the frame rate sees them)."""
        k = level.stride
        sc = level.scores  # window [i - k, i] -> its content score, i a multiple of k
        span = 2 * int(self.fps)

        def limit(keys) -> float:  # no baseline on a side (the video's start or end): no growth
            vals = [sc[i] for i in keys if i in sc]
            base = float(np.median(vals)) if len(vals) >= 2 else float("inf")
            return max(1.5 * base, base + 2.0)

        first = -(-a // k) * k  # the first window end at or after a
        left = limit(range(first - k, first - k - span, -k))
        start = first - k if first - k >= 0 and sc.get(first, 0.0) > left else a
        last = (b // k) * k + k  # the first window end after b
        right = limit(range(last + k, last + k + span, k))
        end = last + 1 if sc.get(last, 0.0) > right else b + 1
        return min(start, a), end

    def _locate(self, d1: np.ndarray, a: int, b: int) -> tuple[int, int]:
        """Grow window [a, b] over frames whose lag-1 change is above the local baseline, by at
        most the window's own length on each side (what the cascade saw of a transition is never
        less than what it missed; beyond that, a moving shot's own change would be taken in)."""
        n = len(d1)
        most = min(self.max_transition, max(2, b - a))
        span = 2 * int(self.fps)

        def elevated(side: np.ndarray) -> float:  # each side against its own shot's baseline
            base = float(np.median(side)) if side.size else 0.0
            return max(1.5 * base, base + 0.5)

        before = elevated(d1[max(1, a - span):a])
        after = elevated(d1[b + 1:b + 1 + span])
        start = a
        while start > 1 and (a - start) < most and d1[start] > before:
            start -= 1
        end = b
        while end + 1 < n and (end - b) < most and d1[end + 1] > after:
            end += 1
        # d1[start] is the change from start-1 to start: start-1 is the last clean frame of the
        # shot before; end is the first frame whose successor no longer changes much.
        return start, end + 1

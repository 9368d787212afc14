"""The check after splitting: a transition the cascade missed, hidden inside a planned clip.

The cascade only looks at a window when a content detector at a lower frame rate fires on it,
and a long dissolve or a wipe between moving shots often raises no such jump. This check looks
at every window of about 1, 1.5 and 2 seconds (stepping 4 frames at 25 fps) with two cheap
features of frames it already has (betweenness at strides inside the window, and the dip of
contrast in the middle: a blend of two unrelated pictures has less contrast than either), and
runs optical flow only on the windows that pass them. A window whose ends flow cannot relate
(:func:`unrelatedness`, and again on locally normalised frames, so that a static camera whose
exposure changes as objects leave is not taken for two shots), and that is a blend, is a
hidden transition.

Only windows inside one planned clip count (the cascade's shots: a window across a cut or a
gap is the known boundary). Each group of such windows is located by flow too: frames that
flow still relates to the group's first frame are the shot before, frames it relates to the
last one are the shot after, and what lies between (widened by 30%) leaves the clip, which
is split in two or trimmed.

Measured on the labelled set (``benchmarks/bench_cuts.py``, BENCHMARKS.md); the thresholds
were set on its ``dev`` and ``held`` parts only.
"""

from __future__ import annotations

import bisect
from collections import deque

import cv2
import numpy as np

from transforms.cuts.base import REFERENCE_FPS, at_rate
from transforms.cuts.fades import merge_ranges
from transforms.cuts.gradual import betweenness, pair_flow, unrelatedness
from transforms.cuts.sweep import cells, changes_enough, sweep


def contrast_dip(contrast, a: int, b: int) -> float:
    """Lowest contrast (``contrast[i]``: frame i's grey standard deviation) inside window
    ``[a, b]`` over the straight line between its ends' (1.0: no dip). A cross-dissolve of two
    unrelated pictures halfway through has about 0.7 of their contrast; a pan or a moving
    object keeps it. Each end's contrast is the lower of its frame and the one next to it
    inside the window, so one bright frame at an end (a flash, a mark) makes no dip."""
    if b - a < 4:
        return 1.0
    c = np.asarray(contrast[a:b + 1], dtype=np.float64)
    first, last = min(c[0], c[1]), min(c[-1], c[-2])
    line = first + (last - first) * np.arange(2, b - a - 1) / (b - a)
    return float(np.min(c[2:-2] / np.maximum(line, 1.0)))


def local_contrast(f: np.ndarray, sigma: float = 3.0) -> np.ndarray:
    """Grey frame ``f`` with its local mean removed and divided by its local contrast."""
    f = f.astype(np.float32)
    mean = cv2.GaussianBlur(f, (0, 0), sigma)
    var = cv2.GaussianBlur((f - mean) ** 2, (0, 0), sigma)
    return (f - mean) / np.sqrt(var + 16.0)


def structure_unrelatedness(a: np.ndarray, b: np.ndarray, flow: np.ndarray | None = None) -> float:
    """:func:`unrelatedness` on locally normalised frames: the same picture with objects gone
    and the exposure changed (a static camera, hands lifting bottles away) keeps its structure
    and scores low (about 0.35), where two shots score 0.5-0.8."""
    return unrelatedness(a, b, flow=flow, normalise=local_contrast)


def locate(frames: dict[int, np.ndarray], a: int, b: int, step: int, tau: float = 0.15,
           widen: float = 0.3) -> tuple[int, int]:
    """The span ``[start, end)`` of the transition inside ``[a, b]``, from grey ``frames`` (by
    index, every ``step``-th at least). ``ua``: how unrelated each frame is to frame ``a``; ``ub``:
    to frame ``b``. Before the crossing (ua >= ub) the last frame still close to ``a`` (ua at most
    ``tau`` of its largest value) ends the shot before; after it the first frame close to ``b``
    starts the shot after. The span between is widened by ``widen`` on each side (the faint
    ends of a blend between moving shots) and kept inside ``[a, b]``."""
    idx = [i for i in range(a, b + 1, step) if i in frames]
    if not idx or idx[0] != a or b not in frames:
        return a, b + 1  # frames missing: the whole group leaves the clip
    if idx[-1] != b:
        idx.append(b)
    ua = np.array([unrelatedness(frames[a], frames[i]) for i in idx])
    ub = np.array([unrelatedness(frames[i], frames[b]) for i in idx])
    crossed = ua >= ub
    k = int(np.argmax(crossed)) if crossed.any() else len(idx) - 1
    lo = max([j for j in range(k + 1) if ua[j] <= tau * ua.max()], default=0)
    hi = min([j for j in range(k, len(idx)) if ub[j] <= tau * ub.max()], default=len(idx) - 1)
    start, end = idx[lo], idx[hi] + 1
    pad = max(2, int(round(widen * (end - start))))
    return max(a, start - pad), min(b + 1, end + pad)


def groups(windows: list[tuple[int, int]], share: float = 0.25) -> list[tuple[int, int]]:
    """The spans ``[first, last]`` of groups of ``[a, b]`` windows that saw one transition: a
    window joins a group when it overlaps the group's furthest-reaching window by at least
    ``share`` of the shorter of the two. Two transitions a short shot apart each lie in windows
    that also hold that shot and touch at their ends; joined, they would be located as one span
    over both transitions and the shot between (0.25: set on the labelled set's parts, where
    0.5 also split one trap's windows in two)."""
    out: list[list[int]] = []  # [first, last, length of the window that reaches last]
    for a, b in sorted(windows):
        if out and min(b, out[-1][1]) - a >= share * min(b - a, out[-1][2]):
            if b > out[-1][1]:
                out[-1][1:] = [b, b - a]
        else:
            out.append([a, b, b - a])
    return [(g[0], g[1]) for g in out]


class HiddenTransitionCheck:
    """Fed every frame of the analysis decode (grey, at analysis size) with its contrast;
    :meth:`gaps` returns the hidden transitions inside the planned ``scenes``."""

    def __init__(self, fps: float, spans: tuple[int, ...] = (24, 36, 48), step: int = 4,
                 min_betweenness: float = 0.75, min_unrelated: float = 0.75, max_dip: float = 0.95,
                 min_structure: float = 0.45, min_sweep: float = 0.65, wipe_unrelated: float = 0.5,
                 wipe_structure: float = 0.5, strong_blend: tuple[float, float, float] = (0.92, 0.65, 0.45),
                 keep_frames: int = 4000):
        """``spans`` and ``step`` count frames at 25 fps: a window lasts ``span / 25`` seconds
        (measured on the frames' timestamps when :meth:`push` gets them, so a variable-rate
        file's windows last as long at 15 fps as at 60; else ``span`` scaled with ``fps``). A
        window is a hidden transition with betweenness >= ``min_betweenness``, contrast dip <=
        ``max_dip`` (the cheap tests), then unrelatedness >= ``min_unrelated`` and structure
        unrelatedness >= ``min_structure`` (flow, only when the tests before pass). A window
        that is not taken as a blend is a wipe when its sweep score
        (:func:`transforms.cuts.sweep.sweep`) is >= ``min_sweep`` (its cheap test) and then its
        unrelatedness >= ``wipe_unrelated`` and structure unrelatedness >= ``wipe_structure``
        (half of a wipe's window is the other shot, so its ends need less flow evidence than a
        blend's); the frames its edge took to cross the picture then leave the clip (a wipe is
        located by its edge, not by flow). A strong blend, ``strong_blend`` = (betweenness at
        least, contrast dip at most, unrelatedness it then needs), needs less flow evidence: two
        shots of like composition (a street into a road) are partly related by flow, but their
        blend is plain (set on the labelled set's parts: two dissolves more found, no false one).
        ``keep_frames``: most frames kept for locating (beyond it a group leaves whole)."""
        self.spans = tuple(sorted({at_rate(s, fps) for s in spans}))
        self.seconds = tuple(sorted({s / REFERENCE_FPS for s in spans}))
        self.step = at_rate(step, fps)
        self.sample = at_rate(2, fps)  # frames kept for locating: every other at 25 fps
        self.min_betweenness, self.min_unrelated, self.max_dip = min_betweenness, min_unrelated, max_dip
        self.min_structure, self.min_sweep = min_structure, min_sweep
        self.wipe_unrelated, self.wipe_structure = wipe_unrelated, wipe_structure
        self.strong_blend = strong_blend
        self.keep_frames = keep_frames
        self._ring: deque[tuple[int, float | None, np.ndarray, np.ndarray]] = deque()
        self._contrast = np.empty(1024, dtype=np.float64)  # grows by doubling; a view is sliced
        self._count = 0
        self.windows: list[tuple[int, int]] = []  # [a, b] windows that passed all the tests
        self.wipes: list[tuple[int, int, int, int, float]] = []  # (a, b, start, end, score): wipe windows
        self.frames: dict[int, np.ndarray] = {}  # sampled frames inside those windows

    @property
    def contrast(self) -> np.ndarray:
        """Grey standard deviation of every frame pushed so far."""
        return self._contrast[: self._count]

    def _starts(self, index: int, t: float | None) -> list[int]:
        """First frames of the windows that end at ``index`` (time ``t``)."""
        if t is None:
            return [index - span for span in self.spans]
        times = [r[1] for r in self._ring]  # increasing
        out = []
        for span_s in self.seconds:  # the frame whose time is nearest t - span_s
            want = t - span_s
            k = bisect.bisect_left(times, want)
            k = min((j for j in (k - 1, k) if 0 <= j < len(times)), key=lambda j: abs(times[j] - want))
            if abs(times[k] - want) <= 0.5 * span_s and self._ring[k][0] < index - 1:
                out.append(self._ring[k][0])
        return sorted(set(out), reverse=True)

    def push(self, index: int, grey: np.ndarray, contrast: float, cuts: list[int] = (),
             t: float | None = None) -> None:
        """``cuts``: the hard cuts found so far (sorted); a window across one is not tested.
        ``t``: the frame's presentation time in seconds."""
        self._ring.append((index, t, grey, cells(grey)))
        longest = max(self.spans) + 2
        while len(self._ring) > longest and (t is None or self._ring[0][1] < t - max(self.seconds) - 0.5):
            self._ring.popleft()
        if self._count == len(self._contrast):
            self._contrast = np.concatenate([self._contrast, np.empty_like(self._contrast)])
        self._contrast[self._count] = contrast
        self._count += 1
        if index % self.step:
            return
        ring = None
        for a in self._starts(index, t):
            if a < 0 or (cuts and cuts[-1] > a):
                continue  # before the start, or across a cut already found (the known boundary)
            if ring is None:
                ring = {i: (g, c) for i, _, g, c in self._ring}
            if index not in ring or a not in ring:
                continue
            blend, wipe = self._blend(ring, a, index), None
            flow = pair_flow(ring[a][0], ring[index][0]) if blend else None  # one flow for every test
            if not (blend and self._unrelated(ring[a][0], ring[index][0], flow, self._needs(*blend),
                                              self.min_structure)):
                wipe = self._wipe(ring, a, index)
                if wipe is None:
                    continue
                if flow is None:
                    flow = pair_flow(ring[a][0], ring[index][0])
                if not self._unrelated(ring[a][0], ring[index][0], flow, self.wipe_unrelated, self.wipe_structure):
                    continue
            self.windows.append((a, index))
            if wipe is not None:  # located by its edge: no frames needed
                self.wipes.append((a, index, *wipe))
                continue
            for i in range(a, index + 1):
                if (i % self.sample == 0 or i in (a, index)) and len(self.frames) < self.keep_frames:
                    self.frames.setdefault(i, ring[i][0])

    @staticmethod
    def _unrelated(a: np.ndarray, b: np.ndarray, flow: np.ndarray, unrelated: float, structure: float) -> bool:
        """Two shots: flow relates neither the frames nor their local structure."""
        return unrelatedness(a, b, flow=flow) >= unrelated and structure_unrelatedness(a, b, flow) >= structure

    def _blend(self, ring: dict, a: int, b: int) -> tuple[float, float] | None:
        """The cheap tests for a dissolve: a dip of contrast (the cheapest, first), then
        betweenness at strides inside ``[a, b]``. Returns both when the window passes."""
        dip = contrast_dip(self._contrast, a, b)
        if dip > self.max_dip:
            return None
        window = [ring[i][0] for i in range(a, b + 1, max(1, (b - a) // 6)) if i in ring]
        if window[-1] is not ring[b][0]:
            window.append(ring[b][0])
        between = betweenness(window)
        return (dip, between) if between >= self.min_betweenness else None

    def _needs(self, dip: float, between: float) -> float:
        """The unrelatedness a blend's ends need: less for a strong blend."""
        least_between, most_dip, unrelated = self.strong_blend
        return unrelated if between >= least_between and dip <= most_dip else self.min_unrelated

    def _wipe(self, ring: dict, a: int, b: int) -> tuple[int, int, float] | None:
        """The cheap test for a wipe or an iris over every frame of ``[a, b]``: the span
        ``[start, end)`` its edge took to cross the picture and the sweep score, or None."""
        idx = range(a, b + 1)
        if any(i not in ring for i in idx) or not changes_enough(ring[a][1], ring[b][1]):
            return None  # (most windows: one shot, whose ends' cells are alike)
        score, first, last = sweep(np.stack([ring[i][1] for i in idx]))
        start, end = a + int(np.floor(first)), a + int(np.ceil(last)) + 1
        # The whole edge inside the window, with frames of each shot around it: a window that
        # holds a wipe in part, or motion switching cells all through it, is not one.
        if score < self.min_sweep or start <= a or end > b or end - start > 0.75 * (b - a):
            return None
        return start, end, score

    def gaps(self, scenes: list[tuple[int, int]], cuts: list[int] = (),
             flashes: list[tuple[int, int]] = ()) -> list[tuple[int, int]]:
        """Hidden transitions ``[start, end)`` inside the planned ``scenes`` (``[s, e)`` ranges).
        Windows across a cut, over a flash, or not inside one scene are not counted."""
        def counts(a: int, b: int) -> bool:
            return (any(s <= a and b < e for s, e in scenes) and not any(a < c <= b for c in cuts)
                    and not any(a <= fe and b >= fs for fs, fe in flashes))

        wiped = {(a, b) for a, b, *_ in self.wipes}  # located by their edge, not by flow
        inside = [(a, b) for a, b in self.windows if counts(a, b) and (a, b) not in wiped]
        located = [locate(self.frames, a, b, self.sample) for a, b in groups(inside)]
        return merge_ranges(located + self._edges(counts))

    def _edges(self, counts, spread: float = 0.1) -> list[tuple[int, int]]:
        """The spans of the wipe windows that count. Windows whose spans overlap saw one wipe;
        of those only the ones scoring within ``spread`` of the best are kept (a window that
        starts inside the wipe, or that ends before it is over, sweeps less cleanly and
        reports a span that is not the edge's)."""
        pad = max(2, self.step // 2)  # the edge's first and last frames change few cells
        wipes = sorted((s, e, score) for a, b, s, e, score in self.wipes if counts(a, b))
        out: list[tuple[int, int]] = []
        group: list[tuple[int, int, float]] = []
        for w in wipes + [None]:
            if group and (w is None or w[0] >= max(e for _, e, _ in group)):
                best = max(score for *_, score in group)
                out += [(max(0, s - pad), e + pad) for s, e, score in group if score >= best - spread]
                group = []
            if w is not None:
                group.append(w)
        return out

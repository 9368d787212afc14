"""Fades to and from black (or white): a pure function over per-frame mean luma.

A fade is a run of near-uniform dark (or bright) frames plus the ramps on either side where
the picture darkens into it or brightens out of it. All of it is one gap: no frame of a fade
enters a clip. Detecting the dark run is what PySceneDetect's ThresholdDetector does; the ramp
extension is what keeps half-faded frames out of clips too.
"""

from __future__ import annotations

import numpy as np


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Half-open index ranges where ``mask`` is true."""
    if not mask.any():
        return []
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def find_fades(luma: np.ndarray, black_level: float = 18.0, max_ramp: int = 60,
               min_step: float = 0.15, white_level: float | None = 245.0,
               contrast: np.ndarray | None = None, max_contrast: float = 12.0) -> list[tuple[int, int]]:
    """Return ``[start, end)`` gaps covering each fade to/from black (and white).

    ``luma``: mean luma per frame (0-255). ``contrast``: its standard deviation per frame; a
    frame is only "black" when it is also flat (a dark night scene or white text on black has
    structure and stays content). ``max_ramp``: longest ramp on either side, in frames.
    ``min_step``: smallest per-frame luma change that still counts as ramping.
    """
    luma = np.asarray(luma, dtype=np.float64)
    n = len(luma)
    if n == 0:
        return []
    flat = np.ones(n, dtype=bool) if contrast is None else np.asarray(contrast) < max_contrast
    gaps = []
    masks = [((luma < black_level) & flat, +1.0)]
    if white_level is not None:
        masks.append(((luma > white_level) & flat, -1.0))
    for mask, sign in masks:
        # sign=+1: frames get darker going into the run, brighter coming out.
        s = sign * luma
        for a, b in _runs(mask):
            start = a
            while start > 0 and a - start < max_ramp and s[start - 1] > s[start] + min_step:
                start -= 1
            end = b
            while end < n and end - b < max_ramp and s[end] > s[end - 1] + min_step:
                end += 1
            gaps.append((start, end))
    return merge_ranges(gaps)


def merge_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]

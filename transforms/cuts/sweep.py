"""Wipes and irises: an edge that sweeps across the picture, replacing one shot by the next.

A wipe has no blend and no dip of contrast, so the check after splitting's cheap tests for
dissolves do not see it, and between moving shots no frame-to-frame jump stands out either.
What a wipe does have is order in space: each part of the picture changes from the shot before
to the shot after once, and *when* it changes is a straight function of where it is (of x for a
wipe left or right, of y for up or down, of the distance from the centre for an iris).

So each frame is shrunk to a grid of cells (32x18 for 16:9), and in a window each cell's
switching time is the frame of its largest frame-to-frame change. Over the cells whose content
differs between the window's ends, the correlation of switching time with x, y and the radius
is the sweep score: close to 1 for a wipe or an iris, low for a pan, a moving object, a
dissolve (every cell at once) or a hard cut. The line fitted to the switching times gives the
frames the edge took to cross the picture: the span that leaves the clip.

Used by :class:`transforms.cuts.postcheck.HiddenTransitionCheck` as a cheap test beside the
blend tests; optical flow between the window's ends decides, as for dissolves. Measured on the
labelled set (``benchmarks/bench_cuts.py``).
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

CELLS_X = 32  # cells across; rows follow the picture's aspect


def cells(grey: np.ndarray) -> np.ndarray:
    """The cell picture of a grey frame (float32, ``CELLS_X`` wide): local means, so noise and
    fine texture average out and an edge crossing a cell is one change."""
    h, w = grey.shape[:2]
    ch = max(2, int(round(CELLS_X * h / w)))
    return cv2.resize(grey, (CELLS_X, ch), interpolation=cv2.INTER_AREA).astype(np.float32)


@functools.lru_cache(maxsize=8)
def _coords(ch: int, cw: int) -> np.ndarray:
    """(3, ch*cw): each cell's x and y (0..1 across the picture) and distance from the centre
    (in widths), the three directions a wipe or an iris moves along."""
    yy, xx = np.mgrid[0:ch, 0:cw]
    xs, ys = (xx + 0.5) / cw, (yy + 0.5) / ch
    rs = np.hypot(xs - 0.5, (ys - 0.5) * ch / cw)
    return np.stack([xs.ravel(), ys.ravel(), rs.ravel()]).astype(np.float64)


def changes_enough(first: np.ndarray, last: np.ndarray, min_change: float = 12.0, min_cells: float = 0.3) -> bool:
    """Whether at least ``min_cells`` of the cells differ by ``min_change`` grey levels between
    a window's ``first`` and ``last`` cell pictures: :func:`sweep`'s first test, which most
    windows fail, without stacking the frames between."""
    return int((np.abs(first - last) > min_change).sum()) >= min_cells * first.size


def sweep(window: np.ndarray, min_change: float = 12.0, min_cells: float = 0.3) -> tuple[float, float, float]:
    """``window``: (n, ch, cw) cell pictures of consecutive frames. Returns ``(score, first,
    last)``: the largest absolute correlation between the cells' switching times and their x,
    y or radius, and the frame offsets (from the window's first frame) of the first and last
    switch among the cells that follow the fitted line (the edge entering and leaving the
    picture). ``(0, 0, 0)`` when fewer than ``min_cells`` of
    the cells differ by ``min_change`` grey levels between the window's ends (one shot, or two
    alike) or when every cell switches at once (a cut, a dissolve)."""
    n = len(window)
    if n < 4:
        return 0.0, 0.0, 0.0
    flat = window.reshape(n, -1)
    changed = np.abs(flat[0] - flat[-1]) > min_change
    if changed.sum() < min_cells * flat.shape[1]:
        return 0.0, 0.0, 0.0
    steps = np.abs(np.diff(flat[:, changed], axis=0))  # (n - 1, cells): change into frame i + 1
    when = steps.argmax(axis=0).astype(np.float64) + 1.0  # the frame each cell switches at
    if when.std() < 1e-6:
        return 0.0, 0.0, 0.0
    coords = _coords(*window.shape[1:])
    best, first, last = 0.0, 0.0, 0.0
    dw = when - when.mean()
    ww = float(dw @ dw)
    for u_all in coords:
        u = u_all[changed]
        du = u - u.mean()
        uu = float(du @ du)
        if uu < 1e-12 * len(u):  # every changed cell at one x (or y, or radius)
            continue
        uw = float(du @ dw)
        r = uw / np.sqrt(uu * ww)  # Pearson's correlation; the least-squares line follows
        if abs(r) > best:
            slope = uw / uu
            icept = when.mean() - slope * u.mean()
            # the span: where the cells that follow the line switch (cells off it are motion)
            near = when[np.abs(when - (icept + slope * u)) <= max(2.0, 0.1 * n)]
            if len(near) < 2:
                continue
            best, first, last = abs(r), float(near.min()), float(near.max())
    return best, first, last

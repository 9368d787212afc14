"""Global alignment of two frames before flow: a camera jolt with a zoom is not a cut.

Farneback flow at 128 px follows a shift of a few pixels, but a hand-held jolt that moves the
picture by a tenth of its width and zooms it by 10% between two frames is too far for it: the
residual after warping stays high and :func:`transforms.cuts.gradual.unrelatedness` calls the
pair two shots. Here the frames are first aligned by one affine motion (a translation from phase
correlation, then OpenCV's ECC refining a full affine from it), and flow then only has the
small motion left to explain. Two different shots stay unrelated after alignment: no single
affine motion carries one onto the other.

Measured on the labelled set (``benchmarks/bench_cuts.py``): the true hard cuts of five parts
score 0.62 or more aligned (the larger of unrelatedness and structure unrelatedness), the false
cuts in its hand-held shake traps 0.11-0.34.
"""

from __future__ import annotations

import cv2
import numpy as np

from transforms.cuts.gradual import pair_flow, unrelatedness
from transforms.cuts.postcheck import structure_unrelatedness


def camera_like(warp: np.ndarray, size: tuple[int, int], zoom: float = 1.5, aspect: float = 1.3,
                degrees: float = 10.0) -> bool:
    """Whether the 2x3 affine ``warp`` is a motion a camera makes between two frames: a zoom
    within ``1/zoom`` to ``zoom``, the two axes scaled within ``aspect`` of each other, a
    rotation under ``degrees`` and a shift of at most half the picture (``size``: w, h). An
    affine map is free enough to carry one synthetic gradient onto another (a ramp in x onto a
    ramp in y); those are not a camera's."""
    m = warp[:, :2].astype(np.float64)
    big, small = np.linalg.svd(m, compute_uv=False)
    turn = np.degrees(np.arctan2(m[1, 0] - m[0, 1], m[0, 0] + m[1, 1]))
    w, h = size
    return bool(np.linalg.det(m) > 0 and 1 / zoom <= small <= big <= zoom and big <= aspect * small
                and abs(turn) <= degrees and abs(warp[0, 2]) <= w / 2 and abs(warp[1, 2]) <= h / 2)


def affine_to(a: np.ndarray, b: np.ndarray, iterations: int = 50) -> np.ndarray | None:
    """The 2x3 affine map ``W`` with ``b(W(x)) ~ a(x)`` for grey frames ``a`` and ``b`` (same
    size), or None when ECC does not converge or what it finds is no camera's motion
    (:func:`camera_like`): no single motion relates them."""
    fa, fb = a.astype(np.float32), b.astype(np.float32)
    (dx, dy), _ = cv2.phaseCorrelate(fa, fb)
    warp = np.array([[1, 0, dx], [0, 1, dy]], np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, iterations, 1e-4)
    try:
        _, warp = cv2.findTransformECC(fa, fb, warp, cv2.MOTION_AFFINE, criteria, None, 5)
    except cv2.error:  # the iteration diverged or the frames are flat
        return None
    return warp if camera_like(warp, (a.shape[1], a.shape[0])) else None


def aligned_unrelatedness(a: np.ndarray, b: np.ndarray) -> float | None:
    """The larger of :func:`unrelatedness` and :func:`structure_unrelatedness` of grey frames
    ``a`` and ``b`` once ``b`` is warped onto ``a`` by :func:`affine_to`; None when they cannot
    be aligned."""
    warp = affine_to(a, b)
    if warp is None:
        return None
    h, w = a.shape
    moved = cv2.warpAffine(b, warp, (w, h), flags=cv2.INTER_LINEAR + cv2.WARP_INVERSE_MAP,
                           borderMode=cv2.BORDER_REPLICATE)
    flow = pair_flow(a, moved)
    return max(unrelatedness(a, moved, flow=flow), structure_unrelatedness(a, moved, flow))

"""Camera-motion tags from the flow the motion stage already computes (no extra decode, no model).

For every sampled pair the dense flow on the 128 px grey picture is fitted with a similarity
transform (translation, scale, rotation; RANSAC, so moving objects are outliers and the
background decides). A clip's parameters are the medians over its pairs, in rates that do not
depend on resolution or frame rate:

* ``camera_pan``: horizontal motion of the picture, percent of the frame width per second
  (positive: the picture moves right, i.e. the camera pans left);
* ``camera_tilt``: the same vertically (positive: the picture moves down, the camera tilts up);
* ``camera_zoom``: log scale change per second (positive: zooming in);
* ``camera_rotation``: degrees per second (positive: counter-clockwise picture rotation on screen);
* ``camera_shake``: the spread (standard deviation) of the per-pair translation, percent of the
  width per second; ``camera_fit``: the median share of flow vectors the fit explains.

``camera_motion`` names the motion: ``static``, ``pan_left``, ``pan_right``, ``tilt_up``,
``tilt_down``, ``zoom_in``, ``zoom_out``, ``rotate``, ``shaky`` or ``complex`` (the fit explains
too little: crowds, water, non-rigid scenes), by the thresholds in ``cfg.camera``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

LABELS = ("static", "pan_left", "pan_right", "tilt_up", "tilt_down", "zoom_in", "zoom_out", "rotate", "shaky",
          "complex")


@dataclass(frozen=True)
class CameraFit:
    """One sampled pair's similarity fit (rates per second)."""

    pan: float
    tilt: float
    zoom: float
    rotation: float
    fit: float  # share of the sampled flow vectors within 1 px of the fitted motion


def fit_camera(flow: np.ndarray, dt: float) -> CameraFit | None:
    """The similarity transform that best explains ``flow`` ((h, w, 2) pixels between two frames
    ``dt`` seconds apart), on a grid of about 12 x 12 points; None when it cannot be fitted."""
    h, w = flow.shape[:2]
    step = max(4, min(h, w) // 12)
    ys, xs = np.mgrid[step // 2:h:step, step // 2:w:step]
    src = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float32)
    dst = src + flow[ys.ravel(), xs.ravel()].astype(np.float32)
    m, inliers = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=1.0)
    if m is None or inliers is None:
        return None
    scale, angle = math.hypot(m[0, 0], m[1, 0]), math.atan2(m[1, 0], m[0, 0])
    centre = np.array([w / 2, h / 2, 1.0])
    dx, dy = m @ centre - centre[:2]  # how the picture's centre moves
    dt = max(dt, 1e-3)
    return CameraFit(100 * dx / w / dt, 100 * dy / w / dt, math.log(max(scale, 1e-6)) / dt,
                     -math.degrees(angle) / dt, float(inliers.mean()))


def clip_camera(fits: list[CameraFit | None], cfg) -> dict:
    """The camera columns of a clip from the fits of its pairs (``cfg``: the whole Config; its
    ``camera`` section holds the thresholds). Empty when no pair inside the clip was fitted."""
    fits = [f for f in fits if f is not None]
    if not fits:
        return {}
    a = np.array([(f.pan, f.tilt, f.zoom, f.rotation, f.fit) for f in fits], dtype=np.float64)
    pan, tilt, zoom, rotation, fit = np.median(a, axis=0)
    shake = float(np.hypot(a[:, 0].std(), a[:, 1].std())) if len(a) > 1 else 0.0
    label = classify(pan, tilt, zoom, rotation, shake, fit, cfg.camera)
    return {"camera_motion": label, "camera_pan": round(float(pan), 4), "camera_tilt": round(float(tilt), 4),
            "camera_zoom": round(float(zoom), 5), "camera_rotation": round(float(rotation), 4),
            "camera_shake": round(shake, 4), "camera_fit": round(float(fit), 4)}


def classify(pan: float, tilt: float, zoom: float, rotation: float, shake: float, fit: float, cfg) -> str:
    """One label: each component measured against its threshold; the largest one wins."""
    parts = {"pan": abs(pan) / cfg.pan_threshold, "tilt": abs(tilt) / cfg.pan_threshold,
             "zoom": abs(zoom) / cfg.zoom_threshold, "rotate": abs(rotation) / cfg.rotation_threshold}
    steady = math.hypot(pan, tilt)
    if shake > cfg.shake_threshold and shake > cfg.shake_ratio * steady:
        return "shaky"
    if max(parts.values()) < 1.0:
        return "static"
    if fit < cfg.min_fit:
        return "complex"
    kind = max(parts, key=parts.get)
    if kind == "pan":
        return "pan_left" if pan > 0 else "pan_right"  # the picture moves right: the camera turns left
    if kind == "tilt":
        return "tilt_up" if tilt > 0 else "tilt_down"
    if kind == "zoom":
        return "zoom_in" if zoom > 0 else "zoom_out"
    return "rotate"

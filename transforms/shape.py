"""Training-ready clip geometry and timing (``clips.size``, ``clips.fit``, ``clips.fps``,
``clips.max_frames``): pure functions, plus the per-frame conversion the clip encoder runs.

* Size: no target keeps the aspect ratio (longest side at most ``clips.max_side``). With one
  target ``WxH`` every clip becomes exactly that; with several, each clip gets the one nearest its
  own aspect ratio (log distance), so a portrait clip goes to a portrait bucket. ``fit: crop``
  scales to cover the target and keeps the centre; ``fit: pad`` scales to fit inside it and adds
  black bars. Sizes are even (H.264 4:2:0); a fixed target is reached even from a smaller source
  (upscaled), ``max_side`` alone never upscales.
* Rate: output frame k shows the source frame nearest in time to ``k / fps`` from the clip's first
  frame (timestamps, so variable-rate sources come out constant-rate). Never above the source's
  own rate: no frame is invented.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from transforms.pixels import displayed_size, upright

_SIZE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


def parse_size(text: str) -> tuple[int, int]:
    """``"512x288"`` -> (512, 288); even, positive dimensions."""
    m = _SIZE.match(str(text))
    if not m:
        raise ValueError(f"clips.size: {text!r} is not WIDTHxHEIGHT, e.g. 512x288")
    w, h = int(m.group(1)), int(m.group(2))
    if w < 2 or h < 2 or w % 2 or h % 2:
        raise ValueError(f"clips.size: {text!r} must have even dimensions of at least 2 (H.264 4:2:0)")
    return w, h


def nearest_size(width: int, height: int, sizes: list[tuple[int, int]]) -> tuple[int, int]:
    """The target whose aspect ratio is nearest the clip's (ties: the larger one)."""
    aspect = width / max(1, height)
    return min(sizes, key=lambda s: (round(abs(math.log(aspect * s[1] / s[0])), 9), -s[0] * s[1]))


def _even(x: float) -> int:
    return max(2, int(round(x / 2)) * 2)


@dataclass(frozen=True)
class Geometry:
    """How a clip's displayed picture becomes the written one: scaled to ``scaled``, then cropped
    to ``out`` (``offset``: the window's top-left in the scaled picture) or, with ``pad``, placed
    at ``offset`` on a black canvas of ``out``."""

    out: tuple[int, int]
    scaled: tuple[int, int]
    offset: tuple[int, int] = (0, 0)
    pad: bool = False

    @property
    def plain(self) -> bool:
        return self.scaled == self.out


def geometry(width: int, height: int, clips_cfg) -> Geometry:
    """The :class:`Geometry` of a clip displayed at ``width`` x ``height``."""
    sizes = [parse_size(s) for s in clips_cfg.size]
    if not sizes:
        scale = 1.0
        if clips_cfg.max_side and max(width, height) > clips_cfg.max_side:
            scale = clips_cfg.max_side / max(width, height)
        out = (max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2))
        return Geometry(out, out)
    tw, th = nearest_size(width, height, sizes)
    cover = clips_cfg.fit == "crop"
    scale = (max if cover else min)(tw / width, th / height)
    sw, sh = _even(width * scale), _even(height * scale)
    if cover:
        sw, sh = max(sw, tw), max(sh, th)
        return Geometry((tw, th), (sw, sh), ((sw - tw) // 2, (sh - th) // 2))
    sw, sh = min(sw, tw), min(sh, th)
    return Geometry((tw, th), (sw, sh), ((tw - sw) // 2, (th - sh) // 2), pad=True)


def output_fps(source_fps: float, clips_cfg) -> float:
    """The written clip's rate: ``clips.fps`` when set and below the source's, else the source's."""
    if clips_cfg.fps and source_fps and clips_cfg.fps < source_fps - 1e-6:
        return float(clips_cfg.fps)
    return float(source_fps or 25.0)


def output_frames(num_frames: int, source_fps: float, clips_cfg) -> int:
    """Frames the written clip holds: the span resampled to :func:`output_fps`, at most
    ``clips.max_frames``."""
    fps = output_fps(source_fps, clips_cfg)
    n = num_frames if fps >= (source_fps or fps) - 1e-6 else max(1, int(math.floor(num_frames * fps / source_fps + 1e-6)))
    return min(n, clips_cfg.max_frames) if clips_cfg.max_frames else n


def max_clip_seconds(source_fps: float, clips_cfg) -> float:
    """The longest clip the planner may make: ``clips.max_duration_s``, shortened so that a clip
    holds at most ``clips.max_frames`` written frames."""
    if not clips_cfg.max_frames:
        return clips_cfg.max_duration_s
    return min(clips_cfg.max_duration_s, clips_cfg.max_frames / output_fps(source_fps, clips_cfg))


def resample(frames, source_fps: float, fps: float, count: int, end: float | None = None):
    """The ``count`` frames of a clip at ``fps``: for output time ``k / fps`` the source frame
    nearest in time (the earlier one on a tie). ``frames`` yields PyAV frames; their own
    timestamps are used when they have them, else their index at ``source_fps``. The last frame
    is shown until ``end`` (the clip's duration; default: one frame interval after it), so a
    held last frame of a variable-rate clip still fills the clip's time."""
    if count <= 0:
        return
    step = 1.0 / (source_fps or 25.0)
    k, prev, prev_t, t0 = 0, None, 0.0, None
    for i, frame in enumerate(frames):
        t = frame.time if frame.time is not None else i * step
        t0 = t if t0 is None else t0
        t -= t0
        while prev is not None and k < count and abs(prev_t - k / fps) <= abs(t - k / fps) + 1e-6:
            yield prev
            k += 1
        if k >= count:
            return
        prev, prev_t = frame, t
    until = prev_t + step if end is None else end
    while prev is not None and k < count and k / fps < until - 1e-9:
        yield prev  # the last frame is shown until the clip's end
        k += 1


class Shaper:
    """Source frame -> the written yuv420p frame (upright, scaled, cropped or padded)."""

    def __init__(self, geom: Geometry, rotation: int = 0, scaler: str = "area"):
        self.geom, self.rotation = geom, rotation or 0
        self.interpolation = scaler.upper()
        # One swscale context for all frames: ``frame.reformat`` builds a new one per frame, and
        # setting it up cost as much as the scaling (benchmarks/bench_clip_writing.py).
        self._sws = VideoReformatter()

    def __call__(self, frame: av.VideoFrame) -> av.VideoFrame:
        g = self.geom
        (w, h), (sw, sh), (x, y) = g.out, g.scaled, g.offset
        if g.plain and not self.rotation:
            return self._sws.reformat(frame, width=w, height=h, format="yuv420p", interpolation=self.interpolation)
        cw, ch = displayed_size(sw, sh, self.rotation)  # the coded picture's size before turning
        rgb = self._sws.reformat(frame, width=cw, height=ch, format="rgb24", interpolation=self.interpolation)
        img = upright(rgb.to_ndarray(), self.rotation)
        if g.pad:
            canvas = np.zeros((h, w, 3), np.uint8)
            canvas[y:y + sh, x:x + sw] = img
            img = canvas
        elif (sw, sh) != (w, h):
            img = img[y:y + h, x:x + w]
        return self._sws.reformat(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24"),
                                  format="yuv420p")

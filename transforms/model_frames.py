"""The frames the model stages read: every stage names the frame positions it wants and the size
it wants them at (:class:`FrameSpec`); :func:`transforms.clips.read_clips` takes them from the
one decode of each source. :class:`ClipWork` carries a clip through the model steps."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


def first_middle_last(num_frames: int) -> list[int]:
    """First, middle and last frame of a clip (fewer for clips of 1-2 frames)."""
    return sorted({0, (num_frames - 1) // 2, max(0, num_frames - 1)})


def uniform(count: int) -> Callable[[int], list[int]]:
    """``count`` frames spread evenly over the clip, first and last included."""
    def positions(num_frames: int) -> list[int]:
        if num_frames <= count:
            return list(range(num_frames))
        return sorted({round(i * (num_frames - 1) / (count - 1)) for i in range(count)}) if count > 1 else [num_frames // 2]
    return positions


def fixed_size(width: int, height: int) -> Callable[[int, int], tuple[int, int]]:
    return lambda w, h: (width, height)


def short_side(side: int) -> Callable[[int, int], tuple[int, int]]:
    """Aspect kept, shorter side ``side`` (never upscaled), even dimensions."""
    def size(w: int, h: int) -> tuple[int, int]:
        s = min(1.0, side / max(1, min(w, h)))
        return max(2, round(w * s / 2) * 2), max(2, round(h * s / 2) * 2)
    return size


def long_side(side: int) -> Callable[[int, int], tuple[int, int]]:
    """Aspect kept, longer side ``side`` (never upscaled), even dimensions."""
    def size(w: int, h: int) -> tuple[int, int]:
        s = min(1.0, side / max(1, max(w, h)))
        return max(2, round(w * s / 2) * 2), max(2, round(h * s / 2) * 2)
    return size


@dataclass(frozen=True)
class FrameSpec:
    positions: Callable[[int], list[int]]
    size: Callable[[int, int], tuple[int, int]]


@dataclass
class ClipWork:
    """A clip on its way through the model stages: its row, the frames every stage reads
    ({frame set: (k, h, w, 3) uint8 RGB}), what a stage hands to a later one (caption
    candidates, CLIP image embeddings), and the failure of the last step, if it failed."""

    row: object  # a transforms.rows.ClipRow
    frames: dict[str, np.ndarray]
    candidates: list[dict] = field(default_factory=list)
    image_emb: np.ndarray | None = None
    failed: tuple[str, str, str] | None = None  # (step, error type, message)
    errors: list = field(default_factory=list)  # the error rows of its failed steps so far

    @property
    def nbytes(self) -> int:
        return sum(f.nbytes for f in self.frames.values())

"""The small base class every cut detector implements, and the boundary types they return.

A detector sees each decoded frame once, in order, as a small BGR array (it never decodes the
video itself), and reports at the end:

* ``cuts``: frame numbers where a new shot starts abruptly (a hard cut at ``c`` means the
  previous shot ends at ``c`` exclusive and the next starts at ``c``);
* ``gaps``: half-open frame ranges ``[start, end)`` that belong to a gradual transition
  (fade, dissolve, wipe) and must never enter a clip.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

REFERENCE_FPS = 25.0  # frame counts in the cuts settings (strides, check windows) are at this rate


def at_rate(frames: int, fps: float) -> int:
    """``frames`` counted at 25 fps, as many frames at ``fps`` (at least 1; 25 if unknown)."""
    rate = fps if fps > 0 else REFERENCE_FPS
    return max(1, int(round(frames * rate / REFERENCE_FPS)))

@dataclass
class Boundaries:
    cuts: list[int] = field(default_factory=list)
    gaps: list[tuple[int, int]] = field(default_factory=list)

    def merge(self, other: Boundaries) -> Boundaries:
        return Boundaries(
            sorted(set(self.cuts) | set(other.cuts)),
            sorted(set(self.gaps) | set(other.gaps)),
        )


class FrameDetector(ABC):
    """Streaming detector: ``push`` every frame, then ``finish``."""

    name = "detector"

    @abstractmethod
    def push(self, index: int, frame_bgr: np.ndarray) -> None:
        """Feed frame ``index`` (0-based, consecutive) as a small BGR uint8 array."""

    @abstractmethod
    def finish(self, num_frames: int) -> Boundaries:
        """Called once after the last frame; returns everything detected."""

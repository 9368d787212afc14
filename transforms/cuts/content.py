"""Hard cuts with PySceneDetect's frame-difference detectors, at one frame rate.

``PySceneDetectLevel`` feeds every ``stride``-th frame to a ContentDetector or AdaptiveDetector.
At stride 1 it finds hard cuts frame-exactly. At stride k it is the detector "running at 1/k of
the frame rate" of SVD's cascade: it compares frames k apart, which turns a slow dissolve or wipe
into a jump it can see; such candidates are confirmed and located by ``gradual.py``.
"""

from __future__ import annotations

from collections import OrderedDict

import cv2
import numpy as np
from scenedetect import AdaptiveDetector, ContentDetector
from scenedetect.common import FrameTimecode

from transforms.cuts.base import Boundaries, FrameDetector


def to_hsv(frame_bgr: np.ndarray) -> np.ndarray:
    """The HSV picture ContentDetector scores (computed once per frame for every level)."""
    return cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2HSV)


class _HsvScore:
    """ContentDetector's frame score computed from an HSV frame handed in by the caller.

    Same formula as PySceneDetect (weighted mean of the mean absolute hue, saturation and
    luma differences to the previous frame; edges are off by default and unsupported here),
    but the HSV conversion is shared by all cascade levels and the three differences are one
    ``absdiff`` + ``mean`` instead of six int32 copies: about 10x cheaper per frame. Everything
    else (threshold, flash filter, ``min_scene_len``, the adaptive ratio) is PySceneDetect's.
    """

    _last_hsv: np.ndarray | None = None

    def _calculate_frame_score(self, timecode: FrameTimecode, frame_hsv: np.ndarray) -> float:
        last, self._last_hsv = self._last_hsv, frame_hsv
        if last is None:
            return 0.0
        dh, ds, dl, _ = cv2.mean(cv2.absdiff(frame_hsv, last))
        w = self._weights
        return (dh * w.delta_hue + ds * w.delta_sat + dl * w.delta_lum) / sum(abs(x) for x in w)


class HsvContentDetector(_HsvScore, ContentDetector):
    pass


class HsvAdaptiveDetector(_HsvScore, AdaptiveDetector):
    pass


# Timecodes given to PySceneDetect on a timestamp clock: microseconds (exact for every real frame
# rate); the shortest scene is measured on it less this slack, so float rounding of a constant
# rate's timestamps never turns 10 frames of 40 ms into 399,999 us.
TICKS_PER_S = 1_000_000
SLACK_TICKS = 100


class PySceneDetectLevel(FrameDetector):
    def __init__(self, fps: float, stride: int = 1, kind: str = "content", threshold: float = 27.0,
                 adaptive_threshold: float = 3.0, min_scene_s: float = 0.4, timestamps: bool = False):
        """``timestamps``: frames come with their presentation time (``push(..., t=)``) and
        ``min_scene_s`` is measured on it, so it means the same in a variable-frame-rate file;
        otherwise on frame numbers at ``fps``."""
        self.fps = fps if fps > 0 else 25.0
        self.stride = stride
        self.kind = kind
        self.name = f"{kind}@1/{stride}"
        self.timestamps = timestamps
        # Timestamp tick -> frame number of the frames PySceneDetect may still report (it reports
        # a cut at most a flash-filter window after the frame): the recent ones only.
        self._index_of: OrderedDict[int, int] = OrderedDict()
        self._last_t: float | None = None
        self._recent = 4096 + int(min_scene_s * 480)  # the window, twice over, up to 240 fps
        if timestamps:
            min_len = max(1, int(round(min_scene_s * TICKS_PER_S)) - SLACK_TICKS)
        else:  # in (source) frames: the frame numbers we pass are source frame numbers
            min_len = max(1, int(round(min_scene_s * self.fps)))
        if kind == "adaptive":
            self._det = HsvAdaptiveDetector(adaptive_threshold=adaptive_threshold, min_scene_len=min_len)
        else:
            self._det = HsvContentDetector(threshold=threshold, min_scene_len=min_len)
        assert self._det._weights.delta_edges == 0.0  # the shared-HSV score has no edge term
        self.cut_frames: list[int] = []
        # Content score of each frame this level saw, vs. the previous frame it saw
        # (for stride 1: the lag-1 difference series used to locate gradual transitions).
        self.scores: dict[int, float] = {}
        self._last_index = 0

    def _tc(self, index: int, t: float | None = None) -> FrameTimecode:
        if not self.timestamps:
            return FrameTimecode(index, fps=self.fps)
        tick = int(round((t if t is not None else index / self.fps) * TICKS_PER_S))
        self._index_of.setdefault(tick, index)
        if len(self._index_of) > self._recent:
            self._index_of.popitem(last=False)
        return FrameTimecode(tick, fps=float(TICKS_PER_S))

    def _frame(self, tc: FrameTimecode) -> int:
        n = int(tc.frame_num)
        if not self.timestamps:
            return n
        if n in self._index_of:
            return self._index_of[n]
        ticks = np.fromiter(self._index_of, dtype=np.int64)  # not one we gave: the nearest frame
        return self._index_of[int(ticks[np.argmin(np.abs(ticks - n))])]

    def push(self, index: int, frame_bgr: np.ndarray, hsv: np.ndarray | None = None, t: float | None = None) -> None:
        """Feed a frame; ``hsv`` is its :func:`to_hsv` when the caller already has it; ``t`` its
        presentation time in seconds (with ``timestamps``)."""
        if index % self.stride:
            return
        self._last_index, self._last_t = index, t
        if hsv is None:
            hsv = to_hsv(frame_bgr)
        for tc in self._det.process_frame(self._tc(index, t), hsv):
            self.cut_frames.append(self._frame(tc))
        score = getattr(self._det, "_frame_score", None)
        if score is not None:
            self.scores[index] = float(score)

    def finish(self, num_frames: int) -> Boundaries:
        for tc in self._det.post_process(self._tc(self._last_index, self._last_t)):
            self.cut_frames.append(self._frame(tc))
        cuts = sorted(c for c in set(self.cut_frames) if 0 < c < num_frames)
        return Boundaries(cuts=cuts)

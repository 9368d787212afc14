"""Motion score: mean dense optical-flow magnitude at ~2 fps (SVD), resolution independent.

Flow runs on small grey frames sampled every ``round(fps / motion.fps)`` frames. Each pair of
consecutive samples gives one value: mean flow magnitude divided by the picture width and by
the time between the samples, times 100, i.e. *percent of the frame width moved per second*.
The same content at 480p or 1080p scores the same. A clip's score is the mean of the pairs that
lie wholly inside it (no pair straddles a cut), and the per-pair series is kept too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np


def dense_flow(prev: np.ndarray, cur: np.ndarray, method: str = "farneback", dis=None) -> np.ndarray:
    """(h, w, 2) optical flow in pixels between two grey uint8 frames."""
    if method == "dis":
        dis = dis or cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        return dis.calc(prev, cur, None)
    return cv2.calcOpticalFlowFarneback(prev, cur, None, pyr_scale=0.5, levels=3, winsize=15,
                                        iterations=3, poly_n=5, poly_sigma=1.2, flags=0)


@dataclass
class MotionPair:
    a: int  # frame numbers of the two samples
    b: int
    score: float  # percent of frame width per second
    extra: dict = field(default_factory=dict)  # stage name -> its value for this pair (see Stage.pair)


@dataclass
class MotionSampler:
    """Streaming: ``wants(t)`` says which frames to hand over (by time, so variable frame
    rate sources are sampled evenly too); ``push`` them as grey frames."""

    fps: float
    target_fps: float = 2.0
    method: str = "farneback"
    hooks: dict = field(default_factory=dict)  # stage name -> pair(flow, dt): more from the same flow
    frame_hooks: dict = field(default_factory=dict)  # stage name -> frame(grey): more from the same samples
    pairs: list[MotionPair] = field(default_factory=list)
    samples: list[tuple[int, dict]] = field(default_factory=list)  # (frame number, stage -> value)

    def __post_init__(self):
        self.fps = self.fps if self.fps > 0 else 25.0
        self.interval = 1.0 / self.target_fps
        self._bucket = -1
        self._prev: tuple[int, float, np.ndarray] | None = None
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM) if self.method == "dis" else None

    def wants(self, t: float) -> bool:
        """The first frame of every 1/target_fps slot of the timeline (an absolute grid, so a
        video analyzed in segments samples exactly the frames a whole pass would)."""
        return int(np.floor(t / self.interval + 1e-6)) > self._bucket

    def push(self, index: int, t: float, grey: np.ndarray) -> None:
        if self.frame_hooks:
            self.samples.append((index, {name: hook(grey) for name, hook in self.frame_hooks.items()}))
        if self._prev is not None:
            pi, pt, pg = self._prev
            dt = max(t - pt, 1e-3)
            flow = dense_flow(pg, grey, self.method, self._dis)
            mag = float(cv2.magnitude(flow[..., 0], flow[..., 1]).mean())
            extra = {name: hook(flow, dt) for name, hook in self.hooks.items()}
            self.pairs.append(MotionPair(pi, index, 100.0 * mag / grey.shape[1] / dt, extra))
        self._prev = (index, t, grey)
        self._bucket = int(np.floor(t / self.interval + 1e-6))


def clip_motion(pairs: list[MotionPair], start: int, end: int) -> tuple[float | None, list[float]]:
    """Mean score and series of the pairs inside ``[start, end)``; None when none fits."""
    series = [p.score for p in pairs if p.a >= start and p.b < end]
    if not series:
        return None, []
    return float(np.mean(series)), [round(s, 4) for s in series]


def motion_of_frames(frames: list[np.ndarray], fps: float, method: str = "farneback") -> float:
    """Pure helper: score of a list of grey frames sampled at ``fps``."""
    sampler = MotionSampler(fps=fps, target_fps=fps, method=method)
    for i, f in enumerate(frames):
        sampler.push(i, i / fps, f)
    score, _ = clip_motion(sampler.pairs, 0, len(frames))
    return score if score is not None else 0.0

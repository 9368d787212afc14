"""Shot-boundary detection. ``detect_scenes(path)`` is the one-call API; ``CutCascade`` the
streaming one the pipeline uses (it shares a single decode with the other stages)."""

from transforms.cuts.base import Boundaries, FrameDetector
from transforms.cuts.cascade import CutCascade, CutResult, scenes_from


def detect_scenes(source: str, cfg) -> CutResult:
    """Decode ``source`` once at analysis size and return its shots (frame ranges); ``cfg``
    is a :class:`pipeline.config.Config` (``Config()`` for the defaults)."""
    from transforms.analyze import analyze_video

    return analyze_video(source, cfg, ("probe", "cuts")).cuts


__all__ = ["Boundaries", "CutCascade", "CutResult", "FrameDetector", "detect_scenes", "scenes_from"]

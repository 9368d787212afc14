"""Sample a video from a checkpoint: DDIM with classifier-free guidance, decoded by the frozen
autoencoder, written as H.264 mp4.

    vidcurate sample --checkpoint train/checkpoints/step_0000200 --prompt "a cyclist on a road" --frames 8 --out sample.mp4
"""

from __future__ import annotations

import argparse
import json
import logging
import os

import numpy as np
import torch

from model_training.data import motion_bucket
from model_training.diffusion import Schedule, ddim_sample
from model_training.model import VideoUNet
from model_training.train import TextEncoder, TrainConfig, _build, load_weights  # noqa: I001

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


def sample(checkpoint: str, prompt: str, frames: int, out: str, steps: int = 25, guidance: float = 4.0,
           fps: float = 12.0, motion: float | None = None, size: tuple[int, int] | None = None, seed: int = 0) -> str:
    with open(os.path.join(checkpoint, "meta.json"), encoding="utf-8") as fh:
        meta = json.load(fh)
    cfg = _build(TrainConfig, meta["config"])
    model = VideoUNet(cfg.model).eval()
    load_weights(model, checkpoint, ema=True)
    from model_training.autoencoder import load_autoencoder

    ae = load_autoencoder(cfg.autoencoder)
    text = TextEncoder(cfg.text, dim=cfg.model.text_dim)([prompt])
    empty = torch.zeros_like(text)
    h, w = size or cfg.data.buckets[0]
    calib = meta["motion_calibration"]
    m = torch.tensor([motion if motion is not None else calib[128]])  # default: the dataset's median motion
    micro = torch.stack([torch.tensor([fps]), motion_bucket(m, calib)], 1)
    temporal = cfg.stage == "video"

    def model_fn(x, t, conditional):
        return model(x, t, text if conditional else empty, micro=micro, temporal=temporal)

    schedule = Schedule(cfg.diffusion)
    shape = (1, frames, cfg.model.latent_channels, h // ae.downsample, w // ae.downsample)
    with torch.no_grad():
        z = ddim_sample(model_fn, schedule, shape, steps, guidance, torch.Generator().manual_seed(seed))
        video = ae.decode(z[0] / meta["latent_scale"])              # (T, 3, H, W) in [0, 1]
    pixels = (video.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    write_mp4(pixels, out, fps)
    from PIL import Image

    Image.fromarray(frame_grid(pixels)).save(preview_path(out))  # a frame grid beside the mp4
    log.info("wrote %s and its preview %s", out, preview_path(out))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="vidcurate sample", description="Sample a video from a trained checkpoint.")
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--prompt", default="")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--out", required=True, help="the mp4 to write (a frame-grid .png preview goes beside it)")
    ap.add_argument("--steps", type=int, default=25, help="DDIM steps")
    ap.add_argument("--guidance", type=float, default=4.0, help="classifier-free guidance scale")
    ap.add_argument("--fps", type=float, default=12.0)
    ap.add_argument("--motion", type=float, help="motion score to condition on (default: the data's median)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    sample(args.checkpoint, args.prompt, args.frames, args.out, args.steps, args.guidance, args.fps, args.motion, seed=args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Context frames (Video LDM's prediction and interpolation models), as pure functions.

Training shows the model some frames of each clip as given (their clean latents, masked, plus the
mask) and computes the loss only on the frames it must make:

- prediction: the first S frames given (S from 1 to ``max_given``), the model continues the clip;
  ``vidcurate sample --frames N`` longer than the trained length chains windows, each given the
  last frames of the one before;
- interpolation: a window of ``gap + 1`` frames with its first and last given, the model fills
  the ``gap - 1`` between them; ``vidcurate sample --interpolate K`` fills K - 1 frames between
  every two frames of a sample;
- nothing given (a share of the clips): generation from scratch, and the unconditional branch of
  classifier-free guidance on the context.

Shapes: B clips, T frames, C latent channels, h x w latent size; a mask is (B, T), 1 = given.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ContextConfig:
    # Used when model.context_frames is on (a model without it ignores this section).
    unconditioned: float = 0.3         # share of clips given no frame (from scratch; guidance's other branch)
    interpolation: float = 0.3         # share of batches that train interpolation instead of prediction
    gaps: tuple[int, ...] = (2, 4)     # interpolation windows trained (gap + 1 frames); --interpolate K needs K here
    max_given: int = 2                 # prediction: up to this many first frames given; longer samples overlap by it


def check(cfg: ContextConfig, frames: int) -> None:
    """Clear errors for a context section that cannot train on ``frames``-frame clips."""
    if not 1 <= cfg.max_given < frames:
        raise ValueError(f"context.max_given must be from 1 to data.frames - 1 ({frames - 1}), got {cfg.max_given}")
    bad = [k for k in cfg.gaps if not 2 <= k <= frames - 1]
    if bad:
        raise ValueError(f"context.gaps must be from 2 to data.frames - 1 ({frames - 1}), got {bad}")
    for name in ("unconditioned", "interpolation"):
        if not 0.0 <= getattr(cfg, name) <= 1.0:
            raise ValueError(f"context.{name} is a share from 0 to 1, got {getattr(cfg, name)}")


def draw(x0: torch.Tensor, cfg: ContextConfig, generator: torch.Generator | None = None):
    """A training batch's context: ``(x0, mask)``, x0 cropped to the interpolation window when the
    batch trains interpolation. x0 (B, T, C, h, w) -> (B, T', C, h, w), mask (B, T')."""
    b, t = x0.shape[:2]
    u = lambda *shape: torch.rand(shape, generator=generator)  # noqa: E731
    gaps = [k for k in cfg.gaps if k + 1 <= t]
    if gaps and float(u(1)) < cfg.interpolation:
        k = gaps[int(u(1) * len(gaps)) % len(gaps)]
        start = int(u(1) * (t - k)) % (t - k)
        x0 = x0[:, start:start + k + 1]
        mask = torch.zeros(b, k + 1)
        mask[:, 0] = mask[:, -1] = 1.0
    else:
        given = 1 + (u(b) * min(cfg.max_given, t - 1)).long()           # (B,) from 1 to max_given
        mask = (torch.arange(t)[None] < given[:, None]).float()
    mask[u(b) < cfg.unconditioned] = 0.0
    return x0, mask


def context_of(latents: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The model's context input: (B, T, C, h, w) latents and (B, T) mask -> (B, T, C + 1, h, w),
    the given frames' latents (zero elsewhere) and the mask as one more channel."""
    m = mask[:, :, None, None, None].to(latents.dtype)
    m = m.expand(*latents.shape[:2], 1, *latents.shape[3:])
    return torch.cat([latents * m, m], 2)


def masked_mse(out: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean squared error over the frames not given (all frames when ``mask`` is None)."""
    err = (out.float() - target.float()) ** 2
    if mask is None:
        return err.mean()
    keep = (1.0 - mask.float())[:, :, None, None, None].to(err.device)   # (B, T, 1, 1, 1)
    per_frame = err[0, 0].numel()
    return (err * keep).sum() / (keep.sum() * per_frame).clamp(min=1.0)

"""Noise schedule, parameterisation (v or epsilon) and DDIM sampling with classifier-free guidance.

x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps;  v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0
(Salimans & Ho 2022). Zero terminal SNR (Lin et al. 2023) rescales the schedule so the last step
is pure noise; it needs v-prediction (epsilon is undefined there).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)


@dataclass
class DiffusionConfig:
    steps: int = 1000
    beta_start: float = 0.00085      # Stable Diffusion's scaled-linear schedule
    beta_end: float = 0.012
    prediction: str = "v"            # "v" (Video LDM / SVD: no colour shifts) or "epsilon"
    zero_terminal_snr: bool = False
    # PYoCo's mixed noise prior (Ge et al. 2023): each frame's noise is a part shared by all the
    # clip's frames plus its own part; this is the shared part's share of the variance (0: i.i.d.
    # noise per frame). Frames that start from related noise stay related, so a small model's
    # samples flicker less. Used in training, validation and sampling alike.
    noise_correlation: float = 0.0


class Schedule:
    def __init__(self, cfg: DiffusionConfig):
        if cfg.prediction not in ("v", "epsilon"):
            raise ValueError(f"diffusion.prediction must be v or epsilon, got {cfg.prediction!r}")
        if cfg.zero_terminal_snr and cfg.prediction == "epsilon":
            raise ValueError("zero_terminal_snr needs prediction: v (epsilon is undefined at the last step)")
        self.cfg = cfg
        betas = torch.linspace(cfg.beta_start ** 0.5, cfg.beta_end ** 0.5, cfg.steps, dtype=torch.float64) ** 2
        abar = torch.cumprod(1 - betas, 0)
        if cfg.zero_terminal_snr:
            s = abar.sqrt()
            s0, sT = s[0].clone(), s[-1].clone()
            s = (s - sT) * s0 / (s0 - sT)
            abar = (s ** 2).clamp(min=1e-12)  # the last step: pure noise (kept finite for DDIM)
        self.abar = abar.float()
        if not 0.0 <= cfg.noise_correlation < 1.0:
            raise ValueError(f"diffusion.noise_correlation must be in [0, 1), got {cfg.noise_correlation}")

    def noise(self, shape, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        """Unit-variance noise of ``shape`` (B, T, C, h, w): i.i.d., or with ``noise_correlation``
        of its variance shared across the T frames of each clip."""
        eps = torch.randn(shape, generator=generator)
        r = self.cfg.noise_correlation
        if r > 0 and len(shape) == 5:
            shared = torch.randn((shape[0], 1, *shape[2:]), generator=generator)
            eps = r ** 0.5 * shared + (1 - r) ** 0.5 * eps
        return eps if device is None else eps.to(device)

    def coefs(self, t, ndim: int):
        a = self.abar.to(t.device)[t].view(-1, *([1] * (ndim - 1)))
        return a.sqrt(), (1 - a).sqrt()

    def add_noise(self, x0, noise, t):
        a, s = self.coefs(t, x0.ndim)
        return a * x0 + s * noise

    def target(self, x0, noise, t):
        if self.cfg.prediction == "epsilon":
            return noise
        a, s = self.coefs(t, x0.ndim)
        return a * noise - s * x0

    def to_x0_eps(self, out, xt, t):
        """Model output -> (x0, eps) estimates."""
        a, s = self.coefs(t, xt.ndim)
        if self.cfg.prediction == "epsilon":
            return (xt - s * out) / a.clamp(min=1e-4), out
        return a * xt - s * out, s * xt + a * out


def warn_if_mismatched(backbone_prediction: str | None, cfg: DiffusionConfig) -> None:
    """A frozen backbone trained for epsilon paired with v-prediction cannot adapt its spatial
    layers to the new target; say so."""
    if backbone_prediction and backbone_prediction != cfg.prediction:
        log.warning("the frozen spatial backbone was trained with %s-prediction but training uses %s; "
                    "its frozen layers cannot adapt (set diffusion.prediction: %s or unfreeze them)",
                    backbone_prediction, cfg.prediction, backbone_prediction)


@torch.no_grad()
def ddim_sample(model_fn, schedule: Schedule, shape, steps: int = 25, guidance: float = 1.0,
                generator: torch.Generator | None = None, eta: float = 0.0):
    """Deterministic DDIM (eta=0). ``model_fn(x, t, conditional: bool)`` returns the model output;
    guidance > 1 mixes conditional and unconditional outputs (classifier-free guidance)."""
    x = schedule.noise(shape, generator)
    ts = torch.linspace(schedule.cfg.steps - 1, 0, steps).round().long()
    for i, t in enumerate(ts):
        tt = t.repeat(shape[0])
        out = model_fn(x, tt, True)
        if guidance != 1.0:
            uncond = model_fn(x, tt, False)
            out = uncond + guidance * (out - uncond)
        x0, eps = schedule.to_x0_eps(out, x, tt)
        if i == len(ts) - 1:
            return x0
        a_prev = schedule.abar[ts[i + 1]]
        a_t = schedule.abar[t]
        sigma = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)).clamp(min=0).sqrt()
        x = a_prev.sqrt() * x0 + (1 - a_prev - sigma ** 2).clamp(min=0).sqrt() * eps
        if eta > 0:
            x = x + sigma * schedule.noise(shape, generator)
    return x

"""Video LDM's temporally aligned decoder: ``stage: decoder`` of ``vidcurate train``.

The frozen image autoencoder decodes every frame on its own, so the detail the latents leave open
is filled in differently from frame to frame and decoded videos flicker. Video LDM (Blattmann et
al. 2023, sec. 3.1.1) fine-tunes the decoder on video: temporal layers are added to it and trained
against a patch-wise video discriminator made of 3D convolutions, while the encoder stays frozen,
so the latent space the diffusion model learns is unchanged. Here the temporal layers are
:class:`model_training.autoencoder.TemporalMix` blocks in TAEF2's decoder (zero-initialised: step 0
is TAEF2), the image decoder's own weights stay frozen, the loss is L1 reconstruction plus a hinge
adversarial term from :class:`VideoDiscriminator` after ``decoder.adv_start`` steps, weighted
adaptively by the ratio of the two terms' gradient norms (VQGAN's rule).

Validation measures flicker on held-out clips (:func:`flicker`): how far the decoded video's
frame-to-frame changes are from the source's. The checkpoint's ``temporal.safetensors`` is what
``temporal_decoder:`` in a training config (and ``vidcurate sample --decoder``) loads.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from model_training.autoencoder import TAEF2, TemporalDecoder, load_autoencoder
from model_training.checkpoints import held_out_shards, latest_checkpoint, read_checkpoint, write_checkpoint
from model_training.data import ClipBatches, collate, validation_set

log = logging.getLogger(__name__)
PIXELS_ONLY = "stage: decoder learns from pixels: give mp4 shards (a run's shards), not latent shards"


@dataclass
class DecoderConfig:
    kernel: int = 3                # frames each temporal convolution sees
    lr: float = 1e-4               # temporal layers
    disc_lr: float = 1e-4          # discriminator
    disc_channels: int = 32        # first 3D-conv width of the discriminator (x2 per level)
    # The adversarial term's weight relative to L1 reconstruction, times the ratio of their gradient
    # norms at the last temporal layer (VQGAN's adaptive weight; taming-transformers uses 0.8).
    adv_weight: float = 0.1
    adv_start: int = 50            # reconstruction alone first: the discriminator starts against a sane decoder


class VideoDiscriminator(nn.Module):
    """A PatchGAN over space and time: (B, 3, T, H, W) in [0, 1] -> (B, 1, T', H/8, W/8) logits."""

    def __init__(self, ch: int = 32):
        super().__init__()

        def down(a, b, norm=True):
            return [nn.Conv3d(a, b, (3, 4, 4), stride=(1, 2, 2), padding=(1, 1, 1)),
                    *([nn.GroupNorm(8, b)] if norm else []), nn.LeakyReLU(0.2)]

        self.net = nn.Sequential(*down(3, ch, norm=False), *down(ch, 2 * ch), *down(2 * ch, 4 * ch),
                                 nn.Conv3d(4 * ch, 1, 3, padding=1))

    def forward(self, video):
        return self.net(video * 2 - 1)


def flicker(decoded: torch.Tensor, source: torch.Tensor) -> dict:
    """Per-pixel figures in 0-255 units over (B, T, 3, H, W) videos in [0, 1]: ``flicker``, the
    mean absolute difference between the decoded and the source frame-to-frame changes;
    ``decoded_change`` and ``source_change``, their mean absolute frame-to-frame changes; and
    ``psnr`` of the frames."""
    dd, ds = decoded.diff(dim=1), source.diff(dim=1)
    mse = F.mse_loss(decoded, source).item()
    return {"flicker": 255 * (dd - ds).abs().mean().item(), "decoded_change": 255 * dd.abs().mean().item(),
            "source_change": 255 * ds.abs().mean().item(), "psnr": 10 * torch.log10(torch.tensor(1 / max(mse, 1e-12))).item()}


def train_decoder(shards: list[str], cfg, out: str, resume: bool = False, progress: bool = True) -> dict:
    """``cfg``: a :class:`model_training.train.TrainConfig` with ``stage: decoder``; ``shards``:
    mp4 shards (the decoder learns from pixels)."""
    os.makedirs(out, exist_ok=True)
    dcfg = cfg.decoder
    torch.manual_seed(cfg.seed)

    # --- models: TAEF2 frozen; its decoder gains temporal layers; a video discriminator -----------
    ae = load_autoencoder(cfg.autoencoder)
    if not isinstance(ae, TAEF2):
        raise ValueError("stage: decoder fine-tunes TAEF2's decoder: use autoencoder: taef2 or taef2:/folder")
    net = TemporalDecoder(ae.decoder, dcfg.kernel)
    disc = VideoDiscriminator(dcfg.disc_channels)
    params = list(net.mix.parameters())
    opt = torch.optim.AdamW(params, lr=dcfg.lr, betas=(0.5, 0.9))
    opt_d = torch.optim.AdamW(disc.parameters(), lr=dcfg.disc_lr, betas=(0.5, 0.9))

    # --- data: mp4 clips as the trainer sees them (frames, stride, size buckets) ---------------------
    held_out = held_out_shards(cfg.val_shards)
    val = validation_set(held_out or shards, cfg.data, held_out=bool(held_out))
    if any("frames" not in v for v in val):
        raise ValueError(PIXELS_ONLY)
    data = ClipBatches(shards, cfg.data, skip_keys=[] if held_out else [v["key"] for v in val])
    step = 0
    ckpt = latest_checkpoint(out) if resume else None
    if ckpt:
        state = read_checkpoint(ckpt, {"temporal": net.mix, "discriminator": disc})
        opt.load_state_dict(state["optimizer"])
        opt_d.load_state_dict(state["optimizer_d"])
        data.load_state_dict(state["data"])
        torch.set_rng_state(state["rng"])
        step = int(state["step"])
        log.info("resumed from %s at step %d", ckpt, step)

    def decode(frames):                                       # (B, T, 3, H, W) -> the same, decoded
        with torch.no_grad():
            z = ae.encode(frames.flatten(0, 1))                 # frozen encoder: (B*T, 32, h, w)
        return net(z, frames.shape[1]).view(frames.shape)

    def validate() -> dict:
        if not val:
            return {}
        source = collate(val)["frames"]
        with torch.no_grad():
            return {k: round(v, 4) for k, v in flicker(decode(source).clamp(0, 1), source).items()}

    metrics = open(os.path.join(out, "metrics.jsonl"), "a", encoding="utf-8")
    if step == 0:
        metrics.write(json.dumps({"step": 0, **{f"val_{k}": v for k, v in validate().items()}}) + "\n")
        metrics.flush()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=step, desc="train (decoder)", unit="step")
    it, t_last = iter(data), time.perf_counter()
    while step < cfg.steps:
        batch = next(it)
        if "frames" not in batch:
            raise ValueError(PIXELS_ONLY)
        source = batch["frames"]                                # (B, T, 3, H, W) in [0, 1]
        fake = decode(source)
        as_video = lambda x: x.transpose(1, 2)                  # noqa: E731  (B, 3, T, H, W)
        adversarial = step >= dcfg.adv_start
        # Discriminator: hinge loss, real clips against decoded ones.
        d_loss = torch.tensor(0.0)
        if adversarial:
            d_loss = (F.relu(1 - disc(as_video(source))).mean() + F.relu(1 + disc(as_video(fake.detach()))).mean())
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
        # Temporal layers: reconstruction, plus fooling the discriminator, the latter weighted
        # adaptively as in VQGAN (taming-transformers), which Video LDM's decoder recipe follows:
        # by the ratio of the two losses' gradient norms at the last temporal layer.
        rec = F.l1_loss(fake, source)
        g_adv, weight = torch.tensor(0.0), 0.0
        if adversarial:
            g_adv = -disc(as_video(fake)).mean()
            last = net.mix[max(net.mix, key=int)].out.weight
            g_rec_norm = torch.autograd.grad(rec, last, retain_graph=True)[0].norm()
            g_adv_norm = torch.autograd.grad(g_adv, last, retain_graph=True)[0].norm()
            weight = dcfg.adv_weight * float((g_rec_norm / (g_adv_norm + 1e-4)).clamp(0, 1e4))
        loss = rec + weight * g_adv
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        step += 1
        if bar:
            bar.update(1)
            bar.set_postfix(rec=f"{rec.item():.4f}", d=f"{d_loss.item():.3f}")
        if step % cfg.log_every == 0 or step == cfg.steps:
            now = time.perf_counter()
            row = {"step": step, "rec_l1": rec.item(), "g_adv": g_adv.item(), "adv_weight": weight, "d_loss": d_loss.item(),
                   "steps_per_s": cfg.log_every / max(1e-9, now - t_last)}
            t_last = now
            if step % cfg.val_every == 0 or step == cfg.steps:
                row.update({f"val_{k}": v for k, v in validate().items()})
            metrics.write(json.dumps(row) + "\n")
            metrics.flush()
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            # temporal.safetensors: what `temporal_decoder:` and `vidcurate sample --decoder` load
            write_checkpoint(os.path.join(out, "checkpoints", f"step_{step:07d}"),
                             {"temporal": net.mix, "discriminator": disc},
                             {"optimizer": opt.state_dict(), "optimizer_d": opt_d.state_dict(), "step": step,
                              "data": data.state_dict(), "rng": torch.get_rng_state()},
                             {"config": dataclasses.asdict(cfg)})
    if bar:
        bar.close()
    metrics.close()
    return {"step": step, "out": out}

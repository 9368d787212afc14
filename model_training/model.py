"""The denoiser: a Video LDM ("Align your Latents") built around an image UNet.

The spatial layers are a diffusers ``UNet2DConditionModel`` (built from a config, or loaded from a
folder such as Stable Diffusion's ``unet/``). After every spatial ResNet block and every spatial
transformer we insert a temporal layer (a residual block of 3D convolutions over time, or
temporal self-attention with sinusoidal frame positions), and mix the two outputs with a learned
alpha:  out = alpha * spatial + (1 - alpha) * temporal(spatial).  Temporal output projections
start at zero, so a fresh video model computes exactly what the image model computes; with the
temporal path switched off it *is* the image model (frames are just a batch of images).

Conditioning (SVD): the caption's open_clip text embedding as one cross-attention token;
micro-conditioning on [fps, motion bucket] as sinusoidal embeddings through an MLP added to the
timestep embedding (its last layer starts at zero); optional context frames for prediction and
interpolation (Video LDM): the latents of the given frames, masked, and the mask go through their
own zero-initialised input convolution whose output is added to the UNet's, so a fresh context
model computes exactly what the model without it computes, and the image model's weights are
untouched (the context path trains with the temporal layers).

Shapes: B clips, T frames, C latent channels, h x w latent size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class ModelConfig:
    latent_channels: int = 32          # TAEF2: 32
    # The spatial UNet: a diffusers UNet2DConditionModel folder (frozen when given), or built
    # from the fields below. Small numbers train on a CPU; SD-sized ones need GPUs.
    spatial_init: str | None = None
    block_out_channels: tuple[int, ...] = (64, 128)
    layers_per_block: int = 1
    attention_head_dim: int = 8
    norm_num_groups: int = 8
    text_dim: int = 768                # open_clip text embedding size (cross-attention width)
    temporal: bool = True              # insert temporal layers (False: the image model)
    temporal_attention: bool = True    # temporal attention after spatial transformers
    max_frames: int = 64               # frame position embeddings up to this many frames
    micro_conditioning: bool = True    # SVD's [fps, motion bucket] conditioning
    context_frames: bool = False       # extra input: masked latents of given frames + mask (prediction, interpolation)
    down_block_types: tuple[str, ...] = field(default=("CrossAttnDownBlock2D", "DownBlock2D"))
    up_block_types: tuple[str, ...] = field(default=("UpBlock2D", "CrossAttnUpBlock2D"))


def sinusoidal(x: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """(N,) -> (N, dim) sinusoidal embedding (as for timesteps and frame positions)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=x.device) / half)
    args = x.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def groups_for(ch: int, want: int = 32) -> int:
    g = min(want, ch)
    while ch % g:
        g -= 1
    return g


class FrameState:
    """Shared by all temporal layers of one model: how many frames the batch holds."""

    def __init__(self):
        self.num_frames = 1
        self.temporal = True


class TemporalConvBlock(nn.Module):
    """Residual block of two 3D convolutions over time (kernel 3x1x1): (B*T, C, h, w) -> same."""

    def __init__(self, ch: int):
        super().__init__()
        g = groups_for(ch)
        self.norm1, self.conv1 = nn.GroupNorm(g, ch), nn.Conv3d(ch, ch, (3, 1, 1), padding=(1, 0, 0))
        self.norm2, self.conv2 = nn.GroupNorm(g, ch), nn.Conv3d(ch, ch, (3, 1, 1), padding=(1, 0, 0))
        nn.init.zeros_(self.conv2.weight)  # starts as the identity
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x, num_frames: int):
        bt, c, h, w = x.shape
        y = x.view(bt // num_frames, num_frames, c, h, w).transpose(1, 2)  # (B, C, T, h, w)
        y = self.conv1(F.silu(self.norm1(y)))
        y = self.conv2(F.silu(self.norm2(y)))
        return x + y.transpose(1, 2).reshape(bt, c, h, w)


class TemporalAttention(nn.Module):
    """Self-attention across frames at every spatial position, with frame positions."""

    def __init__(self, ch: int, head_dim: int = 32, max_frames: int = 64):
        super().__init__()
        self.heads = max(1, ch // head_dim)
        self.norm = nn.GroupNorm(groups_for(ch), ch)
        self.qkv = nn.Linear(ch, 3 * ch)
        self.out = nn.Linear(ch, ch)
        nn.init.zeros_(self.out.weight)  # starts as the identity
        nn.init.zeros_(self.out.bias)
        self.register_buffer("positions", sinusoidal(torch.arange(max_frames), ch), persistent=False)

    def forward(self, x, num_frames: int):
        bt, c, h, w = x.shape
        b, t = bt // num_frames, num_frames
        y = self.norm(x).view(b, t, c, h * w).permute(0, 3, 1, 2).reshape(b * h * w, t, c)  # (B*h*w, T, C)
        y = y + self.positions[:t].to(y.dtype)
        q, k, v = self.qkv(y).view(b * h * w, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b * h * w, t, c)
        y = self.out(y).view(b, h * w, t, c).permute(0, 2, 3, 1).reshape(bt, c, h, w)
        return x + y


class WithTemporal(nn.Module):
    """A spatial module followed by a temporal one, mixed by a learned alpha (Video LDM)."""

    def __init__(self, spatial: nn.Module, temporal: nn.Module, state: FrameState):
        super().__init__()
        self.spatial, self.temporal = spatial, temporal
        self.mix = nn.Parameter(torch.zeros(1))  # alpha = sigmoid(mix)
        self.state = state

    def forward(self, *args, **kwargs):
        out = self.spatial(*args, **kwargs)
        if not self.state.temporal:
            return out
        x = out[0] if isinstance(out, tuple) else out.sample if hasattr(out, "sample") else out
        alpha = torch.sigmoid(self.mix).to(x.dtype)
        mixed = alpha * x + (1 - alpha) * self.temporal(x, self.state.num_frames)
        if isinstance(out, tuple):
            return (mixed, *out[1:])
        if hasattr(out, "sample"):
            out.sample = mixed
            return out
        return mixed


class VideoUNet(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        from diffusers import UNet2DConditionModel

        self.cfg = cfg
        if cfg.spatial_init:
            self.unet = UNet2DConditionModel.from_pretrained(cfg.spatial_init)
        else:
            self.unet = UNet2DConditionModel(
                sample_size=32, in_channels=cfg.latent_channels, out_channels=cfg.latent_channels,
                block_out_channels=tuple(cfg.block_out_channels), layers_per_block=cfg.layers_per_block,
                down_block_types=tuple(cfg.down_block_types), up_block_types=tuple(cfg.up_block_types),
                cross_attention_dim=cfg.text_dim, attention_head_dim=cfg.attention_head_dim,
                norm_num_groups=cfg.norm_num_groups)
        time_dim = self.unet.time_embedding.linear_2.out_features
        if cfg.micro_conditioning:  # [fps, motion bucket] -> 2 x 256 sinusoidal -> MLP, added to the time embedding
            self.micro = nn.Sequential(nn.Linear(512, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim))
            nn.init.zeros_(self.micro[2].weight)
            nn.init.zeros_(self.micro[2].bias)
        self._context = None
        if cfg.context_frames:  # masked latents + mask -> the width of conv_in's output, added to it
            old = self.unet.conv_in
            self.context_in = nn.Conv2d(cfg.latent_channels + 1, old.out_channels, old.kernel_size, padding=old.padding)
            nn.init.zeros_(self.context_in.weight)
            nn.init.zeros_(self.context_in.bias)
            old.register_forward_hook(self._add_context)
        self.state = FrameState()
        if cfg.temporal:
            self._insert_temporal_layers()

    def _insert_temporal_layers(self):
        blocks = [*self.unet.down_blocks, self.unet.mid_block, *self.unet.up_blocks]
        for block in blocks:
            for i, resnet in enumerate(block.resnets):
                block.resnets[i] = WithTemporal(resnet, TemporalConvBlock(resnet.out_channels), self.state)
            if self.cfg.temporal_attention:
                for i, attn in enumerate(getattr(block, "attentions", None) or []):
                    ch = attn.in_channels
                    block.attentions[i] = WithTemporal(attn, TemporalAttention(ch, max(8, ch // 4), self.cfg.max_frames),
                                                       self.state)

    def spatial_parameters(self):
        return [p for n, p in self.named_parameters() if not self.is_temporal(n)]

    def temporal_parameters(self):
        return [p for n, p in self.named_parameters() if self.is_temporal(n)]

    @staticmethod
    def is_temporal(name: str) -> bool:
        """What the video stage trains (and what a checkpoint of the image stage may lack)."""
        return ".temporal." in name or name.endswith(".mix") or name.startswith(("micro.", "context_in."))

    def _add_context(self, _module, _inputs, out):
        return out if self._context is None else out + self.context_in(self._context.to(out.dtype))

    def forward(self, x, t, text, micro=None, context=None, temporal: bool = True):
        """x (B, T, C, h, w) noisy latents; t (B,) timesteps; text (B, D) caption embeddings;
        micro (B, 2) [fps, motion bucket]; context (B, T, C + 1, h, w) masked latents + mask.
        Returns the model output (B, T, C, h, w)."""
        b, frames = x.shape[:2]
        self.state.num_frames, self.state.temporal = frames, temporal and self.cfg.temporal
        flat = x.flatten(0, 1)                                          # (B*T, C, h, w)
        if self.cfg.context_frames:
            # No context is all-zero context (no frame given), as in training's unconditioned share.
            self._context = context.flatten(0, 1) if context is not None else flat.new_zeros(
                flat.shape[0], self.cfg.latent_channels + 1, *flat.shape[2:])  # (B*T, C + 1, h, w)
        kwargs = {}
        if self.cfg.micro_conditioning:
            m = micro if micro is not None else x.new_zeros(b, 2)
            emb = torch.cat([sinusoidal(m[:, 0], 256), sinusoidal(m[:, 1], 256)], -1)  # (B, 512)
            kwargs["added_time"] = self.micro(emb.to(x.dtype)).repeat_interleave(frames, 0)
        tokens = text[:, None, :].repeat_interleave(frames, 0)          # (B*T, 1, D)
        try:
            out = self._unet(flat, t.repeat_interleave(frames, 0), tokens, **kwargs)
        finally:
            self._context = None
        return out.view(b, frames, *out.shape[1:])

    def _unet(self, sample, timesteps, tokens, added_time=None):
        if added_time is None:
            return self.unet(sample, timesteps, encoder_hidden_states=tokens).sample
        # The UNet adds a class embedding to its time embedding; ours is the micro-conditioning.
        self.unet.class_embedding = _Constant(added_time)
        try:
            return self.unet(sample, timesteps, encoder_hidden_states=tokens,
                             class_labels=torch.zeros(sample.shape[0], device=sample.device)).sample
        finally:
            self.unet.class_embedding = None


class _Constant(nn.Module):
    """Stands in for the UNet's class embedding for one call, returning our embedding."""

    def __init__(self, value):
        super().__init__()
        self.value = value

    def forward(self, _labels):
        return self.value

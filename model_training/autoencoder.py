"""Frozen image autoencoders: frames (N, 3, H, W) in [0, 1] <-> latents (N, C, H/8, W/8).

TAEF2 (madebyollin/taesd, MIT): a tiny autoencoder for the FLUX.2 latent space, 8x down, 32
channels, ~1.34M parameters per half; our own definition of its architecture, loading the
published state dicts (plain ``nn.Sequential`` indices). Weights come from a folder
(``taef2:/dir``) or are downloaded once from a pinned commit with sha256 checks. diffusers
``AutoencoderKL`` / ``AutoencoderTiny`` load from a folder or the hub (``diffusers:<name or dir>``).
"""

from __future__ import annotations

import hashlib
import os
import urllib.request

import torch
import torch.nn as nn

TAEF2_COMMIT = "5cccb12dc72074a4be35680c3b108548a7c69978"
TAEF2_SHA256 = {
    "taef2_encoder.pth": "10a4e1021e89d7551eaf161352da8dbd0b1aa83872ae28b150c1df1ce2f147b6",
    "taef2_decoder.pth": "0a44a31e1ae59eb9dbf9359d24942fd3ef5928162c1800d97a28c61d51be0ab5",
}


def conv(n_in: int, n_out: int, **kwargs) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, padding=1, **kwargs)


class Clamp(nn.Module):
    def forward(self, x):  # soft clamp of latents to about [-3, 3]
        return torch.tanh(x / 3) * 3


class Block(nn.Module):
    """Residual block: three 3x3 convs. TAEF2's low-resolution blocks first mix channels with a
    residual 1x1 MLP (``pool``: 64 -> 256 -> 64 with a 4-group GroupNorm)."""

    def __init__(self, n_in: int, n_out: int, pool: bool = False):
        super().__init__()
        self.conv = nn.Sequential(conv(n_in, n_out), nn.ReLU(), conv(n_out, n_out), nn.ReLU(), conv(n_out, n_out))
        self.skip = nn.Conv2d(n_in, n_out, 1, bias=False) if n_in != n_out else nn.Identity()
        self.fuse = nn.ReLU()
        self.pool = (nn.Sequential(nn.Conv2d(n_in, 4 * n_in, 1, bias=False), nn.GroupNorm(4, 4 * n_in), nn.ReLU(),
                                   nn.Conv2d(4 * n_in, n_in, 1, bias=False)) if pool else None)

    def forward(self, x):
        if self.pool is not None:
            x = x + self.pool(x)
        return self.fuse(self.conv(x) + self.skip(x))


def taef2_encoder(latent_channels: int = 32) -> nn.Sequential:
    down = lambda: conv(64, 64, stride=2, bias=False)  # noqa: E731
    return nn.Sequential(
        conv(3, 64), Block(64, 64),
        down(), Block(64, 64), Block(64, 64), Block(64, 64),
        down(), Block(64, 64), Block(64, 64), Block(64, 64),
        down(), Block(64, 64, True), Block(64, 64, True), Block(64, 64, True),
        conv(64, latent_channels))


def taef2_decoder(latent_channels: int = 32) -> nn.Sequential:
    up = lambda: [nn.Upsample(scale_factor=2), conv(64, 64, bias=False)]  # noqa: E731
    return nn.Sequential(
        Clamp(), conv(latent_channels, 64), nn.ReLU(),
        Block(64, 64, True), Block(64, 64, True), Block(64, 64, True), *up(),
        Block(64, 64), Block(64, 64), Block(64, 64), *up(),
        Block(64, 64), Block(64, 64), Block(64, 64), *up(),
        Block(64, 64), conv(64, 3))


class Autoencoder(nn.Module):
    """Common interface: ``encode(x01) -> latents``, ``decode(latents) -> x01``; frozen."""

    downsample = 8
    latent_channels = 32
    # Multiplies raw latents so they have about unit variance (the diffusion model's scale).
    scaling_factor = 1.0

    def encode(self, x):
        raise NotImplementedError

    def decode(self, z):
        raise NotImplementedError


class TAEF2(Autoencoder):
    latent_channels = 32

    def __init__(self, encoder_path: str | None = None, decoder_path: str | None = None):
        super().__init__()
        self.encoder, self.decoder = taef2_encoder(32), taef2_decoder(32)
        for module, path in ((self.encoder, encoder_path), (self.decoder, decoder_path)):
            if path:
                module.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        self.requires_grad_(False).eval()

    @torch.no_grad()
    def encode(self, x):  # (N, 3, H, W) in [0, 1] -> (N, 32, H/8, W/8)
        return self.encoder(x)

    @torch.no_grad()
    def decode(self, z):  # (N, 32, h, w) -> (N, 3, 8h, 8w) in [0, 1]
        return self.decoder(z).clamp(0, 1)


class TemporalMix(nn.Module):
    """A residual 3D-convolution block over (time, height, width) inserted after a decoder layer
    (Video LDM's temporal layers in the decoder). Its last convolution starts at zero, so a fresh
    block passes its input through unchanged: the decoder starts as the image decoder."""

    def __init__(self, channels: int = 64, kernel: int = 3):
        super().__init__()
        pad = (kernel // 2, 1, 1)
        self.conv = nn.Conv3d(channels, channels, (kernel, 3, 3), padding=pad)
        self.out = nn.Conv3d(channels, channels, (kernel, 3, 3), padding=pad)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x, frames: int):                      # x (B*T, C, H, W)
        v = x.view(-1, frames, *x.shape[1:]).transpose(1, 2)    # (B, C, T, H, W)
        v = v + self.out(torch.relu(self.conv(torch.relu(v))))
        return v.transpose(1, 2).reshape(x.shape)


# TAEF2 decoder layers followed by temporal mixing: after the three low-resolution blocks and after
# each of the next two groups of blocks (1/8, 1/4 and 1/2 of the output size; the full-size block is
# left alone, where 3D convolutions would cost most).
TEMPORAL_AFTER = (5, 10, 15)


class TemporalDecoder(nn.Module):
    """The TAEF2 decoder (frozen) with :class:`TemporalMix` blocks: latents of the frames of
    videos -> frames, each video's frames decoded together."""

    def __init__(self, decoder: nn.Sequential, kernel: int = 3, after: tuple[int, ...] = TEMPORAL_AFTER):
        super().__init__()
        self.spatial = decoder.requires_grad_(False)
        self.mix = nn.ModuleDict({str(i): TemporalMix(64, kernel) for i in after})

    def forward(self, z, frames: int):                      # z (B*T, C, h, w) -> (B*T, 3, 8h, 8w)
        x = z
        for i, layer in enumerate(self.spatial):
            x = layer(x)
            if str(i) in self.mix:
                x = self.mix[str(i)](x, frames)
        return x


class TemporalTAEF2(TAEF2):
    """TAEF2 whose ``decode`` is the temporally aligned decoder (``stage: decoder``): the N
    latents given to ``decode`` are the N frames of one video (as the sampler hands them over).
    The encoder is TAEF2's own, so the latent space is unchanged."""

    def __init__(self, encoder_path: str | None, decoder_path: str | None, temporal_path: str):
        super().__init__(encoder_path, decoder_path)
        from safetensors.torch import load_file

        state = load_file(temporal_path)
        kernel = next(v.shape[2] for k, v in state.items() if k.endswith("conv.weight"))
        after = tuple(sorted({int(k.split(".")[0]) for k in state}))
        self.temporal = TemporalDecoder(self.decoder, kernel, after)
        self.temporal.mix.load_state_dict(state)
        self.temporal.requires_grad_(False).eval()

    @torch.no_grad()
    def decode(self, z):  # (T, 32, h, w): one video -> (T, 3, 8h, 8w) in [0, 1]
        return self.temporal(z, z.shape[0]).clamp(0, 1)


class DiffusersAutoencoder(Autoencoder):
    """diffusers AutoencoderKL or AutoencoderTiny (a folder or hub name)."""

    def __init__(self, name: str):
        super().__init__()
        from diffusers import AutoencoderKL, AutoencoderTiny

        cls = AutoencoderTiny if "tiny" in name.lower() or "taesd" in name.lower() else AutoencoderKL
        self.vae = cls.from_pretrained(name).requires_grad_(False).eval()
        self.latent_channels = self.vae.config.latent_channels
        self.scaling_factor = float(getattr(self.vae.config, "scaling_factor", 1.0) or 1.0)
        self.downsample = 2 ** (len(self.vae.config.block_out_channels) - 1)

    @torch.no_grad()
    def encode(self, x):
        out = self.vae.encode(x * 2 - 1)
        return out.latent_dist.mode() if hasattr(out, "latent_dist") else out.latents

    @torch.no_grad()
    def decode(self, z):
        return ((self.vae.decode(z).sample + 1) / 2).clamp(0, 1)


PACKAGED_TAEF2 = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights", "taef2")


def fetch_taef2(cache_dir: str | None = None) -> str:
    """The folder with TAEF2's two files: the copy shipped inside the package (MIT, 2 x 2.7 MB,
    see weights/taef2/LICENSE), else a download from the pinned commit (sha256 checked) into the
    cache."""
    if all(os.path.isfile(os.path.join(PACKAGED_TAEF2, n)) for n in TAEF2_SHA256):
        return PACKAGED_TAEF2
    cache_dir = cache_dir or os.path.join(os.path.expanduser("~"), ".cache", "vidcurate", "taef2")
    os.makedirs(cache_dir, exist_ok=True)
    for name, digest in TAEF2_SHA256.items():
        path = os.path.join(cache_dir, name)
        if os.path.exists(path):
            continue
        url = f"https://github.com/madebyollin/taesd/raw/{TAEF2_COMMIT}/{name}"
        try:
            with urllib.request.urlopen(url, timeout=60) as resp:
                data = resp.read()
        except Exception as exc:
            raise RuntimeError(f"TAEF2 weights could not be downloaded ({exc}). Fix: download {url} (and the "
                               f"decoder) into a folder and use autoencoder: taef2:/that/folder") from exc
        if hashlib.sha256(data).hexdigest() != digest:
            raise RuntimeError(f"{url} has an unexpected sha256")
        with open(path + ".part", "wb") as fh:
            fh.write(data)
        os.replace(path + ".part", path)
    return cache_dir


def load_autoencoder(spec: str, temporal_decoder: str | None = None) -> Autoencoder:
    """``taef2`` (the packaged weights, offline), ``taef2:/folder`` or ``diffusers:<folder or hub name>``.
    ``temporal_decoder``: a checkpoint of ``stage: decoder`` (its folder or its
    ``temporal.safetensors``) whose temporal layers TAEF2's decoder then uses."""
    if spec == "taef2" or spec.startswith("taef2:"):
        folder = spec.split(":", 1)[1] if ":" in spec else fetch_taef2()
        paths = (os.path.join(folder, "taef2_encoder.pth"), os.path.join(folder, "taef2_decoder.pth"))
        if temporal_decoder:
            path = temporal_decoder
            if os.path.isdir(path):
                path = os.path.join(path, "temporal.safetensors")
            if not os.path.isfile(path):
                raise ValueError(f"temporal decoder {temporal_decoder!r}: no temporal.safetensors there "
                                 "(give a checkpoint folder of a `stage: decoder` run)")
            return TemporalTAEF2(*paths, path)
        return TAEF2(*paths)
    if temporal_decoder:
        raise ValueError("temporal_decoder works with the taef2 autoencoder only")
    if spec.startswith("diffusers:"):
        return DiffusersAutoencoder(spec.split(":", 1)[1])
    raise ValueError(f"unknown autoencoder {spec!r}: use taef2, taef2:/folder or diffusers:<folder or hub name>")

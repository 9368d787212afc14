"""CLIP stage (SVD: aesthetics and text-image alignment from CLIP embeddings of the first, middle
and last frame). Pure functions over RGB frames and open_clip models; no Beam here.

Models resolve as open_clip does: ``model`` is an open_clip architecture name with ``pretrained``
a tag (downloaded from the hub into ``cache_dir`` on machines with internet) or a checkpoint file;
or ``model`` is ``local-dir:/folder`` / a folder path / ``hf-hub:org/repo`` holding
``open_clip_config.json`` + weights (the format ``open_clip.push_to_hf_hub`` writes). Weights load
with ``weights_only=True``.

The aesthetic score is the LAION improved aesthetic predictor (an MLP over L2-normalised
ViT-L/14 image embeddings, about 1-10; most photos score 4-6) or one of LAION's older linear heads.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import urllib.request

import numpy as np

from transforms.errors import ModelUnavailable

log = logging.getLogger(__name__)

_MODELS: dict[tuple, tuple] = {}  # (model, pretrained, device) -> (model, preprocess, tokenizer)
_HEADS: dict[str, object] = {}
_LOCK = threading.Lock()

# The improved aesthetic predictor, pinned to a commit and checked after download.
AESTHETIC_URL = ("https://github.com/christophschuhmann/improved-aesthetic-predictor/raw/"
                 "6934dd81792f086e613a121dbce43082cb8be85e/sac+logos+ava1-l14-linearMSE.pth")
AESTHETIC_SHA256 = "21dd590f3ccdc646f0d53120778b296013b096a035a2718c9cb0d511bff0f1e0"


def pick_device(requested: str | None = None) -> str:
    """``requested`` or CUDA when present, else CPU."""
    if requested and requested != "auto":
        return requested
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _schema_name(model: str) -> str:
    """A bare folder path means open_clip's ``local-dir:`` format."""
    if not model.startswith(("local-dir:", "hf-hub:")) and os.path.isdir(model):
        return "local-dir:" + os.path.abspath(model)
    return model


def describe(model: str, pretrained: str | None) -> str:
    model = _schema_name(model)
    return model if model.startswith(("local-dir:", "hf-hub:")) else f"{model} ({pretrained or 'no weights'})"


def resolve_open_clip(model: str, pretrained: str | None, cache_dir: str | None = None) -> None:
    """Make sure the weights are on disk (downloading them if they come from the hub), without
    building the model; raises ``ModelUnavailable`` with what to do. Run before any video."""
    import open_clip

    name = _schema_name(model)
    hint = ("give a local checkpoint: `pretrained: /path/to/weights.bin` beside an architecture name, "
            "or `model: /path/to/folder` holding open_clip_config.json and the weights")
    try:
        if name.startswith("local-dir:"):
            folder = name.split(":", 1)[1]
            if not os.path.isfile(os.path.join(folder, "open_clip_config.json")):
                raise FileNotFoundError(f"{folder} has no open_clip_config.json")
            return
        if name.startswith("hf-hub:"):
            from huggingface_hub import hf_hub_download

            hf_hub_download(name.split(":", 1)[1], "open_clip_config.json", cache_dir=cache_dir)
            return
        if open_clip.get_model_config(name) is None:
            raise ValueError(f"unknown open_clip architecture {name!r} "
                             f"(open_clip.list_models() has {len(open_clip.list_models())})")
        if pretrained is None:
            raise ValueError("no weights given: set `pretrained` (a tag such as 'openai' or a file path)")
        if os.path.exists(pretrained):
            return
        cfg = open_clip.get_pretrained_cfg(name, pretrained)
        if not cfg:
            raise ValueError(f"{pretrained!r} is neither a file nor a pretrained tag of {name} "
                             f"(tags: {', '.join(open_clip.list_pretrained_tags_by_model(name))})")
        open_clip.download_pretrained(cfg, cache_dir=cache_dir)
    except Exception as exc:
        raise ModelUnavailable(f"open_clip model {describe(model, pretrained)} is not available: {exc}. "
                               f"Fix: {hint}") from exc


def load_open_clip(model: str, pretrained: str | None = None, device: str | None = None,
                   cache_dir: str | None = None):
    """(model, preprocess, tokenizer), cached per process (every stage of a worker shares it)."""
    device = pick_device(device)
    key = (model, pretrained, device, cache_dir)
    with _LOCK:
        if key in _MODELS:
            return _MODELS[key]
        import open_clip

        resolve_open_clip(model, pretrained, cache_dir)
        name = _schema_name(model)
        kwargs = {} if name.startswith(("local-dir:", "hf-hub:")) else {"pretrained": pretrained}
        try:
            net, _, preprocess = open_clip.create_model_and_transforms(
                name, device=device, cache_dir=cache_dir, weights_only=True, **kwargs)
            tokenizer = open_clip.get_tokenizer(name, cache_dir=cache_dir)
        except Exception as exc:
            raise ModelUnavailable(f"open_clip model {describe(model, pretrained)} failed to load: {exc}") from exc
        net.eval()
        log.info("loaded open_clip %s on %s", describe(model, pretrained), device)
        _MODELS[key] = (net, preprocess, tokenizer)
        return _MODELS[key]


def preprocess_frames(preprocess, frames: np.ndarray):
    """(N, H, W, 3) uint8 RGB -> (N, 3, S, S) float tensor, with the model's own transforms."""
    import torch
    from PIL import Image

    return torch.stack([preprocess(Image.fromarray(f)) for f in frames])


def preprocess_clips(preprocess, clips: list[np.ndarray]):
    """Frames of several clips (each (k, H, W, 3); sizes may differ between clips) -> one
    (sum k, 3, S, S) tensor."""
    import torch

    return torch.cat([preprocess_frames(preprocess, f) for f in clips])


def embed_images(net, pixels, device: str | None = None) -> np.ndarray:
    """L2-normalised image embeddings (N, D) float32 of preprocessed pixels (N, 3, S, S)."""
    import torch

    with torch.inference_mode():
        emb = net.encode_image(pixels.to(device or next(net.parameters()).device))
        emb = torch.nn.functional.normalize(emb.float(), dim=-1)
    return emb.cpu().numpy()


def embed_texts(net, tokenizer, texts: list[str]) -> np.ndarray:
    """L2-normalised text embeddings (N, D) float32."""
    import torch

    with torch.inference_mode():
        tokens = tokenizer(list(texts)).to(next(net.parameters()).device)
        emb = torch.nn.functional.normalize(net.encode_text(tokens).float(), dim=-1)
    return emb.cpu().numpy()


def text_frame_similarity(text_emb: np.ndarray, frame_emb: np.ndarray) -> np.ndarray:
    """Cosine similarity of each text (T, D) with a clip's frames (F, D), averaged over the
    frames: (T,). SVD and Panda-70M compare captions with several frames of the clip."""
    return (np.asarray(text_emb, np.float32) @ np.asarray(frame_emb, np.float32).T).mean(axis=1)


# --- aesthetic head ---------------------------------------------------------------------------

def _mlp_class():
    import torch.nn as nn

    class AestheticMLP(nn.Module):
        """LAION improved aesthetic predictor: 768 -> 1024 -> 128 -> 64 -> 16 -> 1 (state-dict keys
        ``layers.{0,2,4,6,7}``, dropout in between as in the original training code)."""

        def __init__(self, dim: int = 768):
            super().__init__()
            self.layers = nn.Sequential(nn.Linear(dim, 1024), nn.Dropout(0.2), nn.Linear(1024, 128), nn.Dropout(0.2),
                                        nn.Linear(128, 64), nn.Dropout(0.1), nn.Linear(64, 16), nn.Linear(16, 1))

        def forward(self, x):  # (N, dim) -> (N, 1)
            return self.layers(x)

    return AestheticMLP


def AestheticMLP(dim: int = 768):  # noqa: N802 - a constructor; torch is imported lazily
    return _mlp_class()(dim)


def _aesthetic_module(state: dict):
    import torch.nn as nn

    if "layers.0.weight" in state:  # improved predictor: 768 -> 1024 -> 128 -> 64 -> 16 -> 1
        return AestheticMLP(state["layers.0.weight"].shape[1])
    if set(state) == {"weight", "bias"}:  # LAION's linear heads (B/32, B/16, L/14)
        return nn.Linear(state["weight"].shape[1], 1)
    raise ValueError(f"unrecognised aesthetic head (keys {sorted(state)[:4]}...)")


def fetch_aesthetic_head(cache_dir: str | None = None) -> str:
    """Download the improved aesthetic predictor (pinned commit, sha256 checked) into the cache."""
    cache_dir = cache_dir or os.path.join(os.path.expanduser("~"), ".cache", "vidcurate")
    path = os.path.join(cache_dir, "sac+logos+ava1-l14-linearMSE.pth")
    if os.path.exists(path):
        return path
    os.makedirs(cache_dir, exist_ok=True)
    tmp = path + ".part"
    try:
        with urllib.request.urlopen(AESTHETIC_URL, timeout=60) as resp, open(tmp, "wb") as out:
            out.write(resp.read())
    except Exception as exc:
        raise ModelUnavailable(f"the LAION aesthetic predictor could not be downloaded ({exc}). Fix: download "
                               f"{AESTHETIC_URL} and set clip.aesthetic_head to its path") from exc
    with open(tmp, "rb") as fh:
        digest = hashlib.sha256(fh.read()).hexdigest()
    if digest != AESTHETIC_SHA256:
        os.remove(tmp)
        raise ModelUnavailable(f"downloaded aesthetic predictor has sha256 {digest}, expected {AESTHETIC_SHA256}")
    os.replace(tmp, path)
    return path


def load_aesthetic_head(path: str | None, cache_dir: str | None = None, device: str | None = None):
    """The aesthetic head from a ``.pth`` state dict (``None``: the improved predictor from its
    pinned download). Returns a module mapping normalised embeddings (N, D) -> (N, 1)."""
    import torch

    path = path or fetch_aesthetic_head(cache_dir)
    with _LOCK:
        if path in _HEADS:
            return _HEADS[path]
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            head = _aesthetic_module(state)
            head.load_state_dict(state)
        except Exception as exc:
            raise ModelUnavailable(f"aesthetic head {path} could not be loaded: {exc}") from exc
        head = head.to(pick_device(device)).eval()
        _HEADS[path] = head
        return head


def head_dim(head) -> int:
    return head.layers[0].in_features if hasattr(head, "layers") else head.in_features


def aesthetic_scores(head, emb: np.ndarray) -> np.ndarray:
    """Scores (N,) of L2-normalised embeddings (N, D)."""
    import torch

    with torch.inference_mode():
        x = torch.as_tensor(np.asarray(emb, np.float32), device=next(head.parameters()).device)
        return head(x).squeeze(-1).float().cpu().numpy()

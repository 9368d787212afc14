"""CLIP stage (SVD: aesthetics and text-image alignment from CLIP embeddings of the first, middle
and last frame). Pure functions over RGB frames and open_clip models; no Beam here.

Models resolve as open_clip does: ``model`` is an open_clip architecture name with ``pretrained``
a tag (downloaded from the hub into ``cache_dir`` on machines with internet) or a checkpoint file;
or ``model`` is ``local-dir:/folder`` / a folder path / ``hf-hub:org/repo`` holding
``open_clip_config.json`` + weights (the format ``open_clip.push_to_hf_hub`` writes). Weights load
with ``weights_only=True``.

The aesthetic score comes from a LAION head over these embeddings; the stage's model step is in
:mod:`transforms.aesthetic`.
"""

from __future__ import annotations

import logging
import os
import threading

import numpy as np

from transforms.errors import ModelUnavailable

log = logging.getLogger(__name__)

_MODELS: dict[tuple, tuple] = {}  # (model, pretrained, device) -> (model, preprocess, tokenizer)
_LOCK = threading.Lock()

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

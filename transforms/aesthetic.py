"""The aesthetic score of CLIP image embeddings: the LAION improved aesthetic predictor (an MLP over
L2-normalised ViT-L/14 embeddings, about 1-10; most photos score 4-6) or one of LAION's older
linear heads (B/32, B/16, L/14). Weights load with ``weights_only=True``; the improved predictor
downloads once from a pinned commit and is checked by sha256. ``load_step``/``score_step`` are the
clip stage's model step (see :mod:`transforms.stages`)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import threading
import urllib.request

import numpy as np

from transforms.clip_embed import embed_images, load_open_clip, pick_device, preprocess_clips, resolve_open_clip
from transforms.errors import ModelUnavailable

_HEADS: dict[str, object] = {}
_LOCK = threading.Lock()

# The improved aesthetic predictor, pinned to a commit and checked after download.
AESTHETIC_URL = ("https://github.com/christophschuhmann/improved-aesthetic-predictor/raw/"
                 "6934dd81792f086e613a121dbce43082cb8be85e/sac+logos+ava1-l14-linearMSE.pth")
AESTHETIC_SHA256 = "21dd590f3ccdc646f0d53120778b296013b096a035a2718c9cb0d511bff0f1e0"



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
                               f"{AESTHETIC_URL} and set clip_model.aesthetic_head to its path") from exc
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


# --- the stage's step ----------------------------------------------------------------------------

def load_step(cfg):
    """The CLIP model and its aesthetic head (they must agree on the embedding size)."""
    c = cfg.clip_model
    net, preprocess, _ = load_open_clip(c.model, c.pretrained, c.device, c.cache_dir)
    head = load_aesthetic_head(c.aesthetic_head, c.cache_dir, c.device)
    dim = net.text_projection.shape[-1] if getattr(net, "text_projection", None) is not None else None
    dim = dim or getattr(net.visual, "output_dim", None)
    if dim is not None and head_dim(head) != dim:
        raise ModelUnavailable(f"clip_model.aesthetic_head expects {head_dim(head)}-d embeddings but {c.model} "
                               f"gives {dim}-d; use the head made for this CLIP model")
    return net, preprocess, head


def score_step(model, works: list, cfg) -> list:
    """Image embeddings of first/middle/last frames and the aesthetic score (mean over frames)."""
    net, preprocess, head = model
    emb = embed_images(net, preprocess_clips(preprocess, [w.frames["clip"] for w in works]))
    scores = aesthetic_scores(head, emb)
    out, i = [], 0
    for w in works:
        n = len(w.frames["clip"])
        mine, theirs = emb[i:i + n], scores[i:i + n]
        row = w.row.replace(aesthetic_score=round(float(theirs.mean()), 5),
                            aesthetic_scores=[round(float(x), 5) for x in theirs],
                            clip_embedding=mine.astype(np.float16).tolist() if cfg.clip_model.store_embeddings else None)
        out.append(dataclasses.replace(w, row=row, image_emb=mine))
        i += n
    return out


def preflight(cfg) -> None:
    c = cfg.clip_model
    resolve_open_clip(c.model, c.pretrained, c.cache_dir)
    if c.aesthetic_head and not os.path.isfile(c.aesthetic_head):
        raise ModelUnavailable(f"clip_model.aesthetic_head {c.aesthetic_head} does not exist. Fix: point it at the "
                               ".pth file (e.g. sac+logos+ava1-l14-linearMSE.pth) or set it to null to download it")
    if not c.aesthetic_head:
        fetch_aesthetic_head(c.cache_dir)

"""Caption stage (SVD: an image captioner on the middle frame, a video captioner, and an LLM that
merges them; Panda-70M: rank candidate captions by CLIP text-frame similarity). Pure functions
over RGB frames and models; no Beam here. Every candidate is kept with its model and score.

- image captioner: open_clip CoCa (``coca_ViT-L-14`` / ``mscoco_finetuned_laion2B-s13B-b90k`` by
  default), beam search on the middle frame; loads through ``transforms.clip_embed`` like CLIP.
- multi-frame captioner: any transformers image-text-to-text model that takes several images in
  one chat turn (default ``HuggingFaceTB/SmolVLM2-256M-Video-Instruct``: small enough for CPU).
- fusion and selection: :mod:`transforms.fusion`.

``coca_step`` and ``vlm_step`` are the stage's model steps (see :mod:`transforms.stages`): each
adds its candidate to every clip of a batch.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import threading

import numpy as np

from transforms.errors import ModelUnavailable

log = logging.getLogger(__name__)

_MODELS: dict[tuple, tuple] = {}
_LOCK = threading.Lock()


def clean_caption(text: str) -> str:
    """One line, no special tokens, no dangling punctuation, first letter upper case."""
    text = re.sub(r"<[^>\s]*>", " ", text or "")
    text = text.strip().split("\n")[0]
    text = re.sub(r"\s+", " ", text).strip(" \"'`-:")
    text = re.sub(r"\s+([.,!?;:])", r"\1", text)
    return text[:1].upper() + text[1:] if text else ""


# What the fusion LLM is asked (in-process or over an endpoint).
FUSE_INSTRUCTION = ("Merge these descriptions of one video clip into a single short, factual caption "
                    "of one sentence. Keep what they agree on; do not invent details.")


# --- CoCa (open_clip) --------------------------------------------------------------------------

SOT, EOT = 49406, 49407  # open_clip's SimpleTokenizer start/end of text


def coca_beam_search(net, pixels, max_len: int = 30, num_beams: int = 3, min_len: int = 4) -> list[list[int]]:
    """Token ids (without start/end) of the best beam for each image, length-normalised.

    Our own decoder over CoCa's forward (image encoded once, text decoder re-run per step):
    open_clip's ``generate`` needs transformers' ``BeamSearchScorer``, which transformers 5
    removed."""
    import torch

    with torch.inference_mode():
        latent, embs = net._encode_image(pixels)
        b, k = pixels.shape[0], num_beams
        latent = latent.repeat_interleave(k, 0)
        embs = embs.repeat_interleave(k, 0)
        seqs = torch.full((b * k, 1), SOT, dtype=torch.long, device=pixels.device)
        scores = torch.zeros(b, k, device=pixels.device)
        scores[:, 1:] = float("-inf")  # all beams start identical: expand only the first
        finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(b)]
        for step in range(max_len):
            logits = net(None, seqs, image_latent=latent, image_embs=embs, output_labels=False)["logits"][:, -1]
            # NaN logits (a broken checkpoint) must never win a topk: treat them as impossible.
            logp = torch.log_softmax(logits.float(), dim=-1).nan_to_num(nan=float("-inf"))  # (b*k, V)
            if step < min_len:
                logp[:, EOT] = float("-inf")
            vocab = logp.shape[-1]
            total = (scores.view(-1, 1) + logp).view(b, k * vocab)
            top_scores, top_idx = total.topk(2 * k, dim=-1)
            new_seqs, new_scores = [], []
            for i in range(b):
                kept = []
                for s, idx in zip(top_scores[i].tolist(), top_idx[i].tolist()):
                    beam, token = divmod(idx, vocab)
                    prev = seqs[i * k + beam]
                    if token == EOT or step == max_len - 1:
                        ids = prev[1:].tolist() + ([] if token == EOT else [token])
                        finished[i].append((s / max(1, len(ids)), ids))
                    elif len(kept) < k:
                        kept.append((s, torch.cat([prev, prev.new_tensor([token])])))
                    if len(kept) == k:
                        break
                while len(kept) < k:  # every candidate ended: pad with dead beams
                    kept.append((float("-inf"), torch.cat([seqs[i * k], seqs.new_tensor([EOT])])))
                new_seqs += [q for _, q in kept]
                new_scores.append([s for s, _ in kept])
            seqs = torch.stack(new_seqs)
            scores = torch.tensor(new_scores, device=pixels.device)
            if all(len(f) >= k and max(x[0] for x in f) >= scores[i].max().item() / (step + 1)
                   for i, f in enumerate(finished)):
                break
    out = []
    for i in range(b):
        best = max(finished[i], key=lambda x: x[0])[1] if finished[i] else seqs[i * k, 1:].tolist()
        out.append(best)
    return out


def coca_captions(net, preprocess, frames, seq_len: int = 30, num_beams: int = 3) -> list[str]:
    """One caption per frame: ``frames`` is (N, H, W, 3) uint8 RGB or a list of (1, H, W, 3)
    arrays of different sizes. Beam search over CoCa's text decoder."""
    import open_clip

    from transforms.clip_embed import preprocess_clips

    pixels = preprocess_clips(preprocess, list(frames) if isinstance(frames, list) else [frames]).to(next(net.parameters()).device)
    return [clean_caption(open_clip.decode(ids_tensor(ids)).replace("<end_of_text>", "").replace("<start_of_text>", ""))
            for ids in coca_beam_search(net, pixels, seq_len, num_beams)]


def ids_tensor(ids: list[int]):
    import torch

    return torch.tensor(ids, dtype=torch.long)


# --- multi-frame captioner (transformers) -------------------------------------------------------

def hf_resolve(name: str, what: str, cache_dir: str | None = None, gguf_file: str | None = None) -> str:
    """A local folder for ``name`` (downloading a hub repo into the cache on machines with
    internet); raises ``ModelUnavailable`` saying how to give the weights locally."""
    if os.path.isdir(name):
        return name
    try:
        from huggingface_hub import snapshot_download

        patterns = [gguf_file, "*.json", "*.txt", "*.model", "*.jinja"] if gguf_file else None
        return snapshot_download(name, cache_dir=cache_dir, allow_patterns=patterns)
    except Exception as exc:
        raise ModelUnavailable(f"{what} {name!r} is not available: {exc}. Fix: download it where there is "
                               f"internet (`huggingface-cli download {name} --local-dir DIR`) and set the "
                               f"model to DIR") from exc


def load_vlm(name: str, device: str | None = None, cache_dir: str | None = None):
    """(model, processor) of a transformers image-text-to-text model, cached per process."""
    from transforms.clip_embed import pick_device

    device = pick_device(device)
    key = ("vlm", name, device)
    with _LOCK:
        if key not in _MODELS:
            from transformers import AutoModelForImageTextToText, AutoProcessor

            path = hf_resolve(name, "multi-frame captioner", cache_dir)
            try:
                processor = AutoProcessor.from_pretrained(path)
                model = AutoModelForImageTextToText.from_pretrained(path).to(device).eval()
            except Exception as exc:
                raise ModelUnavailable(f"multi-frame captioner {name!r} failed to load: {exc}") from exc
            log.info("loaded multi-frame captioner %s on %s", name, device)
            _MODELS[key] = (model, processor)
        return _MODELS[key]


def vlm_captions(model, processor, clips_frames: list[np.ndarray], prompt: str, max_new_tokens: int = 48) -> list[str]:
    """One caption per clip from several frames each ((k, H, W, 3) uint8 RGB), all clips in one
    batch. The frames go in as images of one user turn, in time order."""
    import torch
    from PIL import Image

    texts, images = [], []
    for frames in clips_frames:
        msgs = [{"role": "user", "content": [*({"type": "image"} for _ in frames), {"type": "text", "text": prompt}]}]
        texts.append(processor.apply_chat_template(msgs, add_generation_prompt=True))
        images.append([Image.fromarray(f) for f in frames])
    tok = processor.tokenizer
    if getattr(tok, "pad_token", None) is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"  # generation continues the right end of every row
    inputs = processor(text=texts, images=images, return_tensors="pt", padding=True).to(model.device)
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    new = out[:, inputs["input_ids"].shape[1]:]
    return [clean_caption(t) for t in processor.batch_decode(new, skip_special_tokens=True)]


# --- the stage's steps ---------------------------------------------------------------------------

def middle_index(n: int) -> int:
    """Index of the middle frame inside ``first_middle_last``'s (up to 3) frames."""
    return 1 if n == 3 else 0


def _with_candidate(work, model: str, kind: str, text: str):
    return dataclasses.replace(work, candidates=[*work.candidates, {"model": model, "kind": kind, "text": text}])


def load_coca(cfg):
    from transforms.clip_embed import load_open_clip

    c = cfg.caption
    net, preprocess, _ = load_open_clip(c.coca_model, c.coca_pretrained, c.device, c.cache_dir)
    return net, preprocess


def coca_step(model, works: list, cfg) -> list:
    from transforms.clip_embed import describe

    net, preprocess = model
    c = cfg.caption
    middles = [w.frames["clip"][middle_index(len(w.frames["clip"]))][None] for w in works]
    texts = coca_captions(net, preprocess, middles, c.coca_max_tokens, c.coca_beams)
    who = "open_clip:" + describe(c.coca_model, c.coca_pretrained)
    return [_with_candidate(w, who, "image", t) for w, t in zip(works, texts)]


def load_vlm_step(cfg):
    return load_vlm(cfg.caption.vlm_model, cfg.caption.device, cfg.caption.cache_dir)


def vlm_step(model, works: list, cfg) -> list:
    c = cfg.caption
    texts = vlm_captions(*model, [w.frames["vlm"] for w in works], c.vlm_prompt, c.vlm_max_tokens)
    return [_with_candidate(w, c.vlm_model, "video", t) for w, t in zip(works, texts)]

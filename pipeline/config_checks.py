"""Validation of the typed configuration: value types while it is built from YAML, then ranges
and choices across sections, each problem with what to change."""

from __future__ import annotations

import typing


class ConfigError(ValueError):
    """A configuration value is missing, unknown or out of range."""


_CHOICES = {
    ("cuts", "detector"): ("content", "adaptive", "transnetv2"),
    ("motion", "method"): ("farneback", "dis"),
    ("caption", "select"): ("best", "fused"),
    ("clips", "fit"): ("crop", "pad"),
    ("clips", "scaler"): ("area", "bilinear", "bicubic", "fast_bilinear", "lanczos"),
    ("runner", "direct_running_mode"): ("auto", "multi_processing", "multi_threading", "in_memory"),
    ("runner", "share_model_across_processes"): ("auto", "always", "never"),
    ("runner", "plan_inputs"): ("auto", "driver", "pipeline"),
}


def check_ranges(cfg) -> None:
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
    need(cfg.cuts.verify_cuts >= 0, "cuts.verify_cuts must be >= 0 (0 keeps every cut the detector reports)")
    need(cfg.clips.min_duration_s > 0, "clips.min_duration_s must be > 0")
    need(cfg.clips.max_duration_s >= cfg.clips.min_duration_s,
         "clips.max_duration_s must be >= clips.min_duration_s")
    need(0 <= cfg.clips.crf <= 51, "clips.crf must be between 0 and 51")
    need(1 <= cfg.clips.jpeg_quality <= 100, "clips.jpeg_quality must be between 1 and 100")
    need(cfg.clips.fps >= 0, "clips.fps must be >= 0 (0 keeps each source's rate)")
    need(cfg.clips.max_frames >= 0, "clips.max_frames must be >= 0 (0: no limit)")
    need(set(cfg.write.bucket_by) <= {"aspect", "size", "frames"},
         "write.bucket_by takes aspect, size and frames, e.g. [aspect, frames]")
    need(all(a > 0 for a in cfg.write.aspect_buckets) and len(cfg.write.aspect_buckets) > 0,
         "write.aspect_buckets must be positive width/height ratios")
    need(all(f >= 1 for f in cfg.write.frame_buckets) and len(cfg.write.frame_buckets) > 0,
         "write.frame_buckets must be frame counts >= 1")
    from transforms.shape import parse_size

    for size in cfg.clips.size:
        try:
            parse_size(size)
        except ValueError as exc:
            need(False, str(exc))
    need(cfg.write.shard_max_clips >= 1, "write.shard_max_clips must be >= 1")
    need(cfg.write.shard_max_bytes >= 1024, "write.shard_max_bytes must be >= 1024")
    need(cfg.limits.max_aspect_ratio >= 1, "limits.max_aspect_ratio must be >= 1")
    need(cfg.limits.min_frames >= 2, "limits.min_frames must be >= 2")
    need(cfg.runner.direct_num_workers >= 0, "runner.direct_num_workers must be >= 0")
    need(cfg.runner.checkpoint_clips >= 1, "runner.checkpoint_clips must be >= 1")
    need(cfg.runner.checkpoint_s > 0, "runner.checkpoint_s must be > 0")
    need(cfg.runner.model_copies >= 1, "runner.model_copies must be >= 1")
    need(cfg.input.remote_attempts >= 1, "input.remote_attempts must be >= 1")
    need(cfg.input.max_attempts >= 1, "input.max_attempts must be >= 1")
    need(cfg.caption.fuser.backend in ("transformers", "openai", "none"),
         f"caption.fuser.backend is {cfg.caption.fuser.backend!r}; choose one of transformers, openai, none")
    need(cfg.caption.fuser.backend != "openai" or bool(cfg.caption.fuser.endpoint),
         "caption.fuser.backend is openai: set caption.fuser.endpoint, e.g. http://localhost:8000/v1")
    need(set(cfg.caption.captioners) <= {"coca", "vlm"} and len(cfg.caption.captioners) > 0,
         f"caption.captioners must name one or both of coca, vlm; got {list(cfg.caption.captioners)}")
    need(cfg.caption.vlm_frames >= 1, "caption.vlm_frames must be >= 1")
    need(cfg.clip_model.frame_size >= 32, "clip_model.frame_size must be at least 32 pixels")
    for section in ("ocr", "clip_model", "caption"):
        need(getattr(cfg, section).batch_size >= 1, f"{section}.batch_size must be >= 1")
    for name, flags in cfg.runner.profiles.items():
        need(all(f.startswith("--") for f in flags), f"runner.profiles.{name} must be a list of --flag=value strings")
    for name in ("drop_bottom_percent", "drop_top_percent"):
        for column, pct in getattr(cfg.filters, name).items():
            need(0 <= pct < 100, f"filters.{name}.{column} must be a percentage in [0, 100), got {pct}")
    from transforms.stages import STAGES, labelled_columns

    for bound in (b for s in STAGES for b in s.bounds if b.kind == "exclude"):
        labels = labelled_columns()[bound.column]
        unknown = sorted(set(getattr(cfg.filters, bound.setting)) - set(labels))
        need(not unknown, f"filters.{bound.setting} has unknown label(s) {', '.join(unknown)}; "
                          f"choose from {', '.join(labels)}")
    from transforms.dedup import KEEP_BY, SIGNALS

    d = cfg.dedup
    need(0 < d.min_similarity <= 1, f"dedup.min_similarity must be in (0, 1], got {d.min_similarity}")
    need(d.min_frames >= 1 and d.bands >= 1 and d.min_shared_keys >= 1,
         "dedup.min_frames, dedup.bands and dedup.min_shared_keys must be >= 1")
    need(1 <= d.band_bits <= 62, f"dedup.band_bits must be in 1..62, got {d.band_bits}")
    need(bool(d.use) and set(d.use) <= set(SIGNALS), f"dedup.use must name one or both of {', '.join(SIGNALS)}")
    need(0 < d.clip_min_similarity <= 1, f"dedup.clip_min_similarity must be in (0, 1], got {d.clip_min_similarity}")
    unknown = sorted(set(d.keep_by) - set(KEEP_BY))
    need(not unknown, f"dedup.keep_by has unknown key(s) {', '.join(unknown)}; choose from {', '.join(KEEP_BY)}")
    for (section, name), choices in _CHOICES.items():
        value = getattr(getattr(cfg, section), name)
        need(value in choices, f"{section}.{name} is {value!r}; choose one of {', '.join(choices)}")
    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))


def coerce(value, annotation, where: str):
    """Check ``value`` against a (simple) type annotation and convert YAML lists to tuples."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return coerce(value, inner[0], where)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping like {{motion_score: 25}}, got {value!r}")
        return {coerce(k, args[0], f"{where} key"): coerce(v, args[1], f"{where}.{k}") for k, v in value.items()}
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        return tuple(coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
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



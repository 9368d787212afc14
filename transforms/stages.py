"""The stage registry: every stage declared once.

A :class:`Stage` says what the stage adds to a clip row (columns and their Arrow types), which
frames it reads (positions and size), which filter bounds and reject reasons belong to it, and,
for a model stage, its model steps (load once per worker, predict a batch). ``--stages``,
preflight, the table schemas, the filters, ``stats``/``report`` and the summary all read
:data:`STAGES`. Adding a stage: one module in ``transforms/`` with its pure functions, one entry
here, its config section, README lines and tests.

Analysis stages (probe, cuts, motion) run in the one analysis decode; model stages run in
this order over the clips that survived the cheaper filters, each from the same frame read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa

from transforms import aesthetic, camera, captions, dedup, fusion, ocr
from transforms import model_frames as mf

CANDIDATE = pa.struct([("model", pa.string()), ("kind", pa.string()), ("text", pa.string()),
                       ("score", pa.float64())])


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    summarised: bool = False  # shown in `stats` percentiles, the report's histograms and gallery
    in_shard_json: bool = True  # large columns stay in Parquet only
    labels: tuple[str, ...] = ()  # a categorical column's values: counted in `stats` and the report


@dataclass(frozen=True)
class Bound:
    """An absolute filter: ``filters.<setting>`` bounds ``column`` ("min" or "max"); a clip
    outside it gets ``reason`` in ``reject_reasons``."""

    reason: str
    column: str
    kind: str
    setting: str


@dataclass(frozen=True)
class Step:
    """One model of a model stage: ``load(cfg)`` once per worker, ``predict(model, works, cfg)``
    on a batch of :class:`transforms.model_frames.ClipWork` (returns them updated). ``name``
    is the ``stage`` of its error rows, ``label`` its Beam step."""

    name: str
    label: str
    load: Callable
    predict: Callable
    batch_size: int


@dataclass(frozen=True)
class Stage:
    name: str
    section: str | None  # its config section (None: no settings of its own)
    columns: tuple[Column, ...] = ()
    bounds: tuple[Bound, ...] = ()
    # Model stages: cfg -> {frame set name: FrameSpec}, cfg -> steps, cfg -> None (raises
    # ModelUnavailable when a model is missing), before any video is processed.
    frames: Callable | None = None
    steps: Callable | None = None
    preflight: Callable | None = None
    required: bool = False  # always runs (cannot be left out of --stages)
    needs: tuple[str, ...] = ()  # stages whose work it builds on (they run too)
    # Analysis stages on the motion stage's samples, in the analysis decode: pair(flow, dt) -> a
    # value per sampled pair, or frame(grey) -> a value per sampled frame; clip(the values inside
    # a clip, cfg) -> the clip's columns.
    pair: Callable | None = None
    frame: Callable | None = None
    clip: Callable | None = None

    @property
    def is_model(self) -> bool:
        return self.steps is not None


def _caption_frames(cfg) -> dict:
    frames = _clip_frames(cfg)  # candidates are ranked against the CLIP frames
    if "vlm" in cfg.caption.captioners:
        frames["vlm"] = mf.FrameSpec(mf.uniform(cfg.caption.vlm_frames), mf.long_side(cfg.caption.vlm_frame_size))
    return frames


def _clip_frames(cfg) -> dict:
    return {"clip": mf.FrameSpec(mf.first_middle_last, mf.short_side(cfg.clip_model.frame_size))}


def _caption_steps(cfg) -> tuple[Step, ...]:
    c = cfg.caption
    steps = []
    if "coca" in c.captioners:
        steps.append(Step("caption_coca", "CaptionCoCa", captions.load_coca, captions.coca_step, c.batch_size))
    if "vlm" in c.captioners:
        steps.append(Step("caption_vlm", "CaptionVLM", captions.load_vlm_step, captions.vlm_step, c.batch_size))
    if c.fuser.backend != "none":
        steps.append(Step("caption_fuse", "CaptionFuse", fusion.load_fuser, fusion.fuse_step, c.fuser.batch_size))
    steps.append(Step("caption_select", "CaptionSelect", fusion.load_selector, fusion.select_step,
                      max(c.batch_size, cfg.clip_model.batch_size)))
    return tuple(steps)


STAGES: tuple[Stage, ...] = (
    Stage("probe", None, required=True, bounds=(
        Bound("min_width", "width", "min", "min_width"),
        Bound("min_height", "height", "min", "min_height"),
        Bound("min_fps", "fps", "min", "min_fps"),
        Bound("max_fps", "fps", "max", "max_fps"),
        Bound("min_aspect_ratio", "aspect_ratio", "min", "min_aspect_ratio"),
        Bound("max_aspect_ratio", "aspect_ratio", "max", "max_aspect_ratio"))),
    Stage("cuts", "cuts", required=True, bounds=(
        Bound("min_duration", "duration_s", "min", "min_duration_s"),
        Bound("max_duration", "duration_s", "max", "max_duration_s"))),
    Stage("motion", "motion",
          columns=(Column("motion_score", pa.float64(), summarised=True),
                   Column("motion_series", pa.list_(pa.float64()))),
          bounds=(Bound("min_motion", "motion_score", "min", "min_motion"),
                  Bound("max_motion", "motion_score", "max", "max_motion"))),
    Stage("camera", "camera", needs=("motion",), pair=camera.fit_camera, clip=camera.clip_camera,
          columns=(Column("camera_motion", pa.string(), labels=camera.LABELS),
                   Column("camera_pan", pa.float64(), summarised=True),
                   Column("camera_tilt", pa.float64()), Column("camera_zoom", pa.float64()),
                   Column("camera_rotation", pa.float64()), Column("camera_shake", pa.float64()),
                   Column("camera_fit", pa.float64())),
          bounds=(Bound("camera_motion", "camera_motion", "exclude", "exclude_camera_motion"),)),
    Stage("dedup", "dedup", needs=("motion",), frame=dedup.thumb, clip=dedup.clip_thumbs,
          columns=(Column("dedup_thumbs", pa.list_(pa.binary()), in_shard_json=False),
                   Column("duplicate_of", pa.string()),  # the kept clip of its group
                   Column("duplicate_kind", pa.string(), labels=dedup.KINDS),
                   Column("duplicate_similarity", pa.float64()))),
    Stage("ocr", "ocr",
          columns=(Column("ocr_text_area", pa.float64(), summarised=True),  # max over the frames
                   Column("ocr_text_area_mean", pa.float64()),
                   Column("ocr_fractions", pa.list_(pa.float64()))),
          bounds=(Bound("max_ocr_text_area", "ocr_text_area", "max", "max_ocr_text_area"),),
          frames=lambda cfg: {"ocr": mf.FrameSpec(mf.first_middle_last, mf.fixed_size(cfg.ocr.width, cfg.ocr.height))},
          steps=lambda cfg: (Step("ocr", "OCR", ocr.load, ocr.score_step, cfg.ocr.batch_size),),
          preflight=ocr.preflight),
    Stage("clip", "clip_model",
          columns=(Column("aesthetic_score", pa.float64(), summarised=True),
                   Column("aesthetic_scores", pa.list_(pa.float64())),
                   # first/middle/last frame, L2-normalised
                   Column("clip_embedding", pa.list_(pa.list_(pa.float16())), in_shard_json=False)),
          bounds=(Bound("min_aesthetic", "aesthetic_score", "min", "min_aesthetic"),),
          frames=_clip_frames,
          steps=lambda cfg: (Step("clip", "CLIP", aesthetic.load_step, aesthetic.score_step, cfg.clip_model.batch_size),),
          preflight=aesthetic.preflight),
    Stage("caption", "caption",
          columns=(Column("caption", pa.string()), Column("caption_model", pa.string()),
                   Column("text_similarity", pa.float64(), summarised=True),
                   Column("caption_candidates", pa.list_(CANDIDATE))),
          bounds=(Bound("min_text_similarity", "text_similarity", "min", "min_text_similarity"),),
          frames=_caption_frames, steps=_caption_steps, preflight=fusion.preflight),
)

BY_NAME = {s.name: s for s in STAGES}
NAMES = tuple(BY_NAME)
MODEL_STAGES = tuple(s.name for s in STAGES if s.is_model)
DEFAULT = ("probe", "cuts", "motion")


def parse_stages(text: str | None) -> tuple[str, ...]:
    """``--stages`` as registry names in run order (required stages always included)."""
    if not text:
        return DEFAULT
    asked = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in asked if s not in BY_NAME]
    if unknown:
        raise ValueError(f"unknown stage(s) {', '.join(unknown)}; choose from {', '.join(NAMES)}")
    asked += [n for s in asked for n in BY_NAME[s].needs]
    return tuple(s.name for s in STAGES if s.name in asked or s.required)


def pair_hooks(stages) -> dict[str, Callable]:
    """name -> per-pair function of the flow-based analysis stages in ``stages``."""
    return {s.name: s.pair for s in STAGES if s.pair is not None and s.name in stages}


def frame_hooks(stages) -> dict[str, Callable]:
    """name -> per-sampled-frame function of the analysis stages in ``stages``."""
    return {s.name: s.frame for s in STAGES if s.frame is not None and s.name in stages}


def stage_of(column: str) -> Stage | None:
    """The stage whose filter bound reads ``column``."""
    return next((s for s in STAGES for b in s.bounds if b.column == column), None)


def summarised_columns() -> tuple[str, ...]:
    """Columns ``stats`` summarises: the clip's duration, every stage's scores, size and rate."""
    return ("duration_s", *(c.name for s in STAGES for c in s.columns if c.summarised), "fps", "width", "height")


def labelled_columns() -> dict[str, tuple[str, ...]]:
    """Categorical columns and their labels (``stats`` and the report count them; an ``exclude``
    bound may name only these labels)."""
    return {c.name: c.labels for s in STAGES for c in s.columns if c.labels}


def frame_specs(cfg, stages) -> dict[str, mf.FrameSpec]:
    """Every frame set the model stages in ``stages`` read (one decode serves them all)."""
    specs: dict[str, mf.FrameSpec] = {}
    for s in STAGES:
        if s.is_model and s.name in stages:
            specs.update(s.frames(cfg))
    return specs


def model_steps(cfg, stages) -> list[tuple[Stage, Step]]:
    """(stage, step) of every model in run order: cheap OCR first, captions last."""
    return [(s, step) for s in STAGES if s.is_model and s.name in stages for step in s.steps(cfg)]


def preflight(cfg, stages) -> None:
    """Fail fast, before any video: every model the stages need must be on disk or
    downloadable now (hub weights are fetched into the cache here, once)."""
    for s in STAGES:
        if s.preflight is not None and s.name in stages:
            s.preflight(cfg)


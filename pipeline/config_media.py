"""Settings of what a run writes: the clips (codec, size, rate, length) and the shards (bounds,
buckets). Part of :class:`pipeline.config.Config`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClipsConfig:
    # Clips shorter than this are recorded but rejected ("min_duration").
    min_duration_s: float = 2.0
    # Shots longer than this are split into clips no longer than it (see keyframe_splits).
    max_duration_s: float = 10.0
    # Video encoder for clips (H.264 through PyAV's bundled FFmpeg).
    codec: str = "libx264"
    crf: int = 20
    preset: str = "veryfast"
    # Longest side of written clips in pixels; 0 keeps the source size (never upscales).
    max_side: int = 0
    # Training-ready clips. Target sizes "WxH": one (every clip becomes exactly that), or several
    # size buckets (each clip gets the one nearest its aspect ratio, e.g. [512x288, 288x512,
    # 384x384]); empty keeps the aspect ratio (max_side applies). Replaces max_side when set.
    size: tuple[str, ...] = ()
    # How a clip reaches a target size: crop (scale to cover, keep the centre) or pad (scale to
    # fit, black bars).
    fit: str = "crop"
    # Target frame rate: frames picked by timestamp (nearest), so variable-rate sources come out
    # constant-rate. Never above a source's own rate (no frame is invented); 0 keeps the source's.
    fps: float = 0.0
    # Most frames a written clip holds (after fps); longer shots are split into more clips. 0: no limit.
    max_frames: int = 0
    # swscale filter for resizing: area (averages when shrinking: no aliasing; about bilinear's
    # cost), bilinear, bicubic, fast_bilinear (cheapest, softer), lanczos.
    scaler: str = "area"
    # Frame-exact without re-encoding everything: when a clip keeps its H.264 source's size and
    # rate, the GOPs wholly inside it are copied as they are and only the frames before its first
    # and after its last copied keyframe are encoded (falls back to encoding all when it can't).
    stream_copy: bool = True
    # Split long shots at source keyframes where one leaves pieces of half to all of
    # max_duration_s (else equally): a split inside a shot is no transition, and a clip that
    # starts on a keyframe is copied without re-encoding its first frames.
    keyframe_splits: bool = True
    # Decode re-encoded clips without the deblocking filter on pictures that no other picture
    # references (B-frames mostly): 18-20% less decode CPU on the 1080p slides, and those frames
    # change far less than the CRF 20 re-encode changes them (>= 45 dB PSNR on the shared videos,
    # BENCHMARKS.md); nothing is carried into other pictures. false decodes every picture in full.
    skip_nonref_deblock: bool = True
    # Copy the clip's audio (re-encoded to AAC) into the mp4.
    keep_audio: bool = False
    # JPEG quality of the middle-frame thumbnail stored with each sample.
    jpeg_quality: int = 90


@dataclass(frozen=True)
class WriteConfig:
    # A shard is closed when either bound would be exceeded.
    shard_max_clips: int = 1000
    shard_max_bytes: int = 1024**3
    # Rows per Parquet file (Beam writes several files in parallel).
    parquet_max_rows: int = 100_000
    # Bucketed shards for trainers: kept clips are grouped by properties of the written clip,
    # each group into its own shard set named by its bucket, e.g. shard-a178_512x288_f64-00000-0000.tar
    # (a loader picks a set by name; vidcurate train draws each batch from one). aspect: width /
    # height x 100 to the nearest of aspect_buckets; size: WxH as written; frames: written frames
    # rounded down to frame_buckets (f64: at least 64). Empty: one set (shard-00000-0000.tar...).
    bucket_by: tuple[str, ...] = ()
    aspect_buckets: tuple[float, ...] = (0.5625, 0.75, 1.0, 1.3333, 1.7778, 2.3333)
    frame_buckets: tuple[int, ...] = (16, 32, 64, 128, 256)

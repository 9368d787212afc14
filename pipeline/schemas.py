"""Arrow schemas of the run's tables. Later stages add their score columns here, so every
table always has every column (null until a stage computes it)."""

from __future__ import annotations

import pyarrow as pa

CANDIDATE = pa.struct([("model", pa.string()), ("kind", pa.string()), ("text", pa.string()),
                       ("score", pa.float64())])
SPAN = pa.struct([("start_frame", pa.int64()), ("end_frame", pa.int64())])

VIDEOS = pa.schema([
    ("video_id", pa.string()), ("source", pa.string()), ("status", pa.string()),
    ("error_type", pa.string()), ("error_message", pa.string()),
    ("container", pa.string()), ("size_bytes", pa.int64()), ("duration_s", pa.float64()),
    ("fps", pa.float64()), ("num_frames", pa.int64()), ("codec", pa.string()),
    ("pix_fmt", pa.string()), ("width", pa.int64()), ("height", pa.int64()),
    ("rotation", pa.int64()), ("has_audio", pa.bool_()), ("audio_codec", pa.string()),
    ("bit_rate", pa.int64()), ("scenes", pa.list_(SPAN)), ("cuts", pa.list_(pa.int64())),
    ("transitions", pa.list_(SPAN)), ("num_clips", pa.int64()), ("analysis_seconds", pa.float64()),
    ("analysis_segments", pa.int64()),
    # Frames the header promises, decode errors met (a shortfall or errors make status "partial"),
    # and the runs that have analysed this input (failures are retried up to input.max_attempts).
    ("header_frames", pa.int64()), ("decode_errors", pa.int64()), ("attempts", pa.int64()),
])

CLIP_BASE = [
    ("clip_id", pa.string()), ("video_id", pa.string()), ("source", pa.string()),
    ("start_frame", pa.int64()), ("end_frame", pa.int64()),
    ("start_time", pa.float64()), ("end_time", pa.float64()),
    ("start_pts", pa.int64()), ("end_pts", pa.int64()),
    # width/height as displayed (rotation applied); rotation: clockwise degrees of the source's
    # display matrix, already applied to the written clip's pixels.
    ("fps", pa.float64()), ("width", pa.int64()), ("height", pa.int64()), ("rotation", pa.int64()),
    ("num_frames", pa.int64()), ("duration_s", pa.float64()),
    ("motion_score", pa.float64()), ("motion_series", pa.list_(pa.float64())),
]
# Columns of the model stages (OCR, CLIP, captions); null until those stages run.
CLIP_SCORES: list[tuple[str, pa.DataType]] = [
    ("ocr_text_area", pa.float64()), ("ocr_text_area_mean", pa.float64()),
    ("ocr_fractions", pa.list_(pa.float64())),
    ("aesthetic_score", pa.float64()), ("aesthetic_scores", pa.list_(pa.float64())),
    ("clip_embedding", pa.list_(pa.list_(pa.float16()))),  # first/middle/last frame, L2-normalised
    ("caption", pa.string()), ("caption_model", pa.string()), ("text_similarity", pa.float64()),
    ("caption_candidates", pa.list_(CANDIDATE)),
]
# Columns left out of each shard sample's .json (large; they stay in the Parquet tables).
SHARD_JSON_EXCLUDE = ("clip_embedding",)
CLIP_TAIL = [
    ("keep", pa.bool_()), ("reject_reasons", pa.list_(pa.string())), ("shard", pa.string()),
    ("clip_bytes", pa.int64()), ("out_width", pa.int64()), ("out_height", pa.int64()),
]


def clips_schema() -> pa.Schema:
    return pa.schema(CLIP_BASE + CLIP_SCORES + CLIP_TAIL)


ERRORS = pa.schema([
    ("source", pa.string()), ("video_id", pa.string()), ("clip_id", pa.string()),
    ("stage", pa.string()), ("error_type", pa.string()), ("message", pa.string()),
])


def conform(row: dict, schema: pa.Schema) -> dict:
    """Keep exactly the schema's columns (missing ones as None)."""
    return {name: row.get(name) for name in schema.names}


def shard_json(row: dict) -> dict:
    """A clip row as stored in its shard sample's .json."""
    return {k: v for k, v in conform(row, clips_schema()).items() if k not in SHARD_JSON_EXCLUDE}

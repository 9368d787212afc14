"""The rows of the three tables, typed: ``VideoRow``, ``ClipRow``, ``ErrorRow``.

Each is generated from one column list (name, Arrow type), so the dataclass and the Parquet
schema cannot disagree; the stage columns come from :data:`transforms.stages.STAGES`. Rows are
built complete by the transforms and travel through Beam as these objects; ``to_dict`` gives
the table row. ``ErrorRow`` is the one failure type: every stage reports a failed input, clip or
batch as one (the ``errors`` table), and never raises past its Beam step.
"""

from __future__ import annotations

import dataclasses
import hashlib

import pyarrow as pa

from transforms.stages import STAGES

SPAN = pa.struct([("start_frame", pa.int64()), ("end_frame", pa.int64())])

VIDEO_COLUMNS: list[tuple[str, pa.DataType]] = [
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
    # and the runs that have analyzed this input (failures are retried up to input.max_attempts).
    ("header_frames", pa.int64()), ("decode_errors", pa.int64()), ("attempts", pa.int64()),
]

CLIP_SPAN_COLUMNS: list[tuple[str, pa.DataType]] = [
    ("clip_id", pa.string()), ("video_id", pa.string()), ("source", pa.string()),
    ("start_frame", pa.int64()), ("end_frame", pa.int64()),
    ("start_time", pa.float64()), ("end_time", pa.float64()),
    ("start_pts", pa.int64()), ("end_pts", pa.int64()),
    # width/height as displayed (rotation applied); rotation: clockwise degrees of the source's
    # display matrix, already applied to the written clip's pixels.
    ("fps", pa.float64()), ("width", pa.int64()), ("height", pa.int64()), ("rotation", pa.int64()),
    ("num_frames", pa.int64()), ("duration_s", pa.float64()),
]
# The filter's verdict and the written media (set when the clip is packed into a shard).
CLIP_RESULT_COLUMNS: list[tuple[str, pa.DataType]] = [
    ("keep", pa.bool_()), ("reject_reasons", pa.list_(pa.string())), ("shard", pa.string()),
    ("clip_bytes", pa.int64()), ("out_width", pa.int64()), ("out_height", pa.int64()),
    ("out_fps", pa.float64()), ("out_frames", pa.int64()),
]
# What the written clip is (clips.size / fps / max_frames), set with its shard.
OUT_COLUMNS = ("out_width", "out_height", "out_fps", "out_frames")
CLIP_COLUMNS = CLIP_SPAN_COLUMNS + [(c.name, c.type) for s in STAGES for c in s.columns] + CLIP_RESULT_COLUMNS
# Left out of each shard sample's .json (large; they stay in the Parquet tables).
SHARD_JSON_EXCLUDE = frozenset(c.name for s in STAGES for c in s.columns if not c.in_shard_json)

ERROR_COLUMNS: list[tuple[str, pa.DataType]] = [
    ("source", pa.string()), ("video_id", pa.string()), ("clip_id", pa.string()),
    ("stage", pa.string()), ("error_type", pa.string()), ("message", pa.string()),
]


class _Row:
    """Methods of the generated row classes."""

    __slots__ = ()
    schema: pa.Schema

    def to_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.schema.names}

    @classmethod
    def from_dict(cls, data: dict, strict: bool = True):
        """A row from a table or record; ``strict``: a column this version does not know is
        an error (a table written by something else), else it is dropped."""
        unknown = set(data) - set(cls.schema.names)
        if unknown and strict:
            raise ValueError(f"{cls.__name__}: unknown column(s) {', '.join(sorted(unknown))}")
        return cls(**{k: v for k, v in data.items() if k in cls.schema.names})

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


def _row_class(name: str, columns: list[tuple[str, pa.DataType]], required: tuple[str, ...], doc: str):
    fields = [(n, object) if n in required else (n, object, dataclasses.field(default=None))
              for n, _ in columns]
    fields.sort(key=lambda f: len(f) == 3)  # required first (dataclass rule); to_dict keeps schema order
    cls = dataclasses.make_dataclass(name, fields, bases=(_Row,), slots=True, eq=True)
    cls.__module__ = __name__
    cls.__doc__ = doc
    cls.schema = pa.schema(columns)
    return cls


VideoRow = _row_class("VideoRow", VIDEO_COLUMNS, ("video_id", "source", "status"),
                      "One input video: its probe facts, cuts and status (ok, partial, no_usable_shot, error).")
ClipRow = _row_class("ClipRow", CLIP_COLUMNS, ("clip_id", "video_id", "source"),
                     "One clip: its span in the source, every stage's scores, the filter verdict, its shard.")
ErrorRow = _row_class("ErrorRow", ERROR_COLUMNS, ("source", "video_id", "stage", "error_type", "message"),
                      "Why an input, a clip or a batch did not go through a stage.")


def video_id_for(source: str) -> str:
    """Stable id of an input: a hash of its (normalised) source string."""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]


def clip_id_for(video_id: str, start: int, end: int) -> str:
    return f"{video_id}_{start:07d}_{end:07d}"


def error(source: str, stage: str, error_type: str, message: str, clip_id: str | None = None) -> ErrorRow:
    return ErrorRow(source=source, video_id=video_id_for(source), clip_id=clip_id, stage=stage,
                    error_type=error_type, message=message)


def failure_of(exc: BaseException, source: str) -> tuple[str, str]:
    """(error type, message) of an exception: a VideoError's own words, else its type."""
    message = getattr(exc, "message", None)
    error_type = getattr(exc, "error_type", None)
    if message and error_type:
        return error_type, message
    return type(exc).__name__, f"{source}: unexpected {type(exc).__name__}: {exc}"


def failed_video(source: str, error_type: str, message: str) -> VideoRow:
    return VideoRow(video_id=video_id_for(source), source=source, status="error", error_type=error_type,
                    error_message=message, scenes=[], cuts=[], transitions=[], num_clips=0)


def rejected(row, reason: str):
    """``row`` not kept, for a reason that is not a filter (e.g. ``write_error``)."""
    return row.replace(shard=None, keep=False, reject_reasons=sorted(set(row.reject_reasons or []) | {reason}))


def shard_json(row) -> dict:
    """A clip row as stored in its shard sample's .json."""
    return {k: v for k, v in row.to_dict().items() if k not in SHARD_JSON_EXCLUDE}

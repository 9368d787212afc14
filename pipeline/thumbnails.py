"""Animated WebP thumbnails of clips for the report: from the clip in its shard when it was
written, else decoded from its source (a rejected clip, or a ``--no-clips`` run)."""

from __future__ import annotations

import base64
import io
import logging
import os

import numpy as np

from pipeline.rundir import check_shard_name
from transforms.shards import iter_members

log = logging.getLogger(__name__)


def _pick(frames, total: int, count: int, width: int) -> list:
    """PIL images of ``count`` evenly spaced frames of a stream of ``total`` frames; frames are
    converted as they pass, never all held."""
    picks = set(np.linspace(0, max(0, total - 1), num=min(count, max(1, total))).round().astype(int).tolist())
    out = []
    for i, frame in enumerate(frames):
        if i in picks:
            out.append(frame.to_image().resize((width, max(2, int(frame.height * width / frame.width)))))
        if i >= max(picks):
            break
    return out


def _frames_from_mp4(data: bytes, total: int, count: int, width: int):
    import av

    with av.open(io.BytesIO(data)) as c:
        return _pick(c.decode(video=0), total, count, width)


def _frames_from_source(row: dict, count: int, width: int):
    """Frames of a clip that was never written (rejected, or a --no-clips run), from its source."""
    from transforms.clips import ClipReader
    from transforms.containers import opened
    from transforms.rows import ClipRow

    with opened(row["source"]) as container:
        reader = ClipReader(container, row["source"])
        try:
            return _pick(reader.frames(ClipRow.from_dict(row, strict=False)), row["num_frames"], count, width)
        finally:
            reader.close()


def thumbnail(row: dict, run_dir: str, count: int = 8, width: int = 200) -> str | None:
    """An animated WebP data URI of ``count`` frames of the clip."""
    try:
        images = None
        if row.get("shard"):
            path = os.path.join(run_dir, "shards", check_shard_name(row["shard"]))
            data = next((fh.read() for key, _, fh in iter_members(path, ("mp4",)) if key == row["clip_id"]), None)
            if data is not None:
                images = _frames_from_mp4(data, row["num_frames"], count, width)
        if not images:
            images = _frames_from_source(row, count, width)
        if not images:
            return None
        buf = io.BytesIO()
        images[0].save(buf, format="WEBP", save_all=True, append_images=images[1:], duration=250, loop=0, quality=70)
        return "data:image/webp;base64," + base64.b64encode(buf.getvalue()).decode()
    except Exception as exc:  # noqa: BLE001 - a missing thumbnail must not stop the report
        log.warning("no thumbnail for %s: %s", row.get("clip_id"), exc)
        return None

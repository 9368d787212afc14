"""Clip writing: frame-exact H.264 mp4 clips plus a middle-frame JPEG, one source open per video.

Frames are matched on their presentation timestamps (the ``pts`` recorded by the analysis pass),
so a clip holds exactly frames ``[start_frame, end_frame)`` whatever the keyframe layout: the
reader seeks to the keyframe before a clip, decodes forward, and the encoder starts every clip on
a fresh keyframe. Clips of one video are written in order and decoding continues from one clip
to the next instead of seeking back, so overlapping GOPs are decoded once.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
from collections.abc import Iterator
from fractions import Fraction

import av

from transforms import decode


def atomic_write_bytes(path: str, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(path) or ".")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def fsync_file(path: str) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def staged_clip_ok(path: str, num_frames: int) -> bool:
    """A staged mp4 from an earlier run is whole: it opens and holds ``num_frames`` video
    packets (demux only; one frame per packet in what we encode)."""
    try:
        with av.open(path) as c:
            if not c.streams.video:
                return False
            return sum(1 for p in c.demux(c.streams.video[0]) if p.size) == num_frames
    except (av.error.FFmpegError, OSError, ValueError):
        return False

log = logging.getLogger(__name__)

# Seek instead of decoding through when the next clip starts this much later.
SEEK_AHEAD_S = 4.0


def output_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """Even dimensions (H.264 4:2:0 needs them), longest side at most ``max_side`` (0: source)."""
    scale = 1.0
    if max_side and max(width, height) > max_side:
        scale = max_side / max(width, height)
    w = max(2, int(width * scale) // 2 * 2)
    h = max(2, int(height * scale) // 2 * 2)
    return w, h


class ClipReader:
    """Yields the decoded frames of successive clips of one open container."""

    def __init__(self, container, source: str, threads: int = 0):
        self.container = container
        self.source = source
        self.threads = threads
        self.stream = container.streams.video[0]
        self._it: Iterator[decode.DecodedFrame] | None = None
        self._pending: decode.DecodedFrame | None = None
        self._pos_time = -1.0
        self._index = 0  # absolute frame index, valid only when reading from the start

    def close(self) -> None:
        """Stop decoding (flushes the decoder) before the container is closed."""
        if self._it is not None:
            self._it.close()
            self._it = None
        self._pending = None

    def _restart(self, start_pts: int | None) -> None:
        if self._it is not None:
            self._it.close()
        self._it = decode.iter_frames(self.container, self.source, self.threads, start_pts=start_pts)
        self._pending = None

    def _next(self) -> decode.DecodedFrame | None:
        if self._pending is not None:
            f, self._pending = self._pending, None
            return f
        try:
            return next(self._it)
        except StopIteration:
            return None

    def frames(self, clip: dict) -> Iterator[av.VideoFrame]:
        start_pts, end_pts = clip.get("start_pts"), clip.get("end_pts")
        count = clip["num_frames"]
        if start_pts is None or start_pts < 0:
            yield from self._frames_by_index(clip["start_frame"], count)
            return
        behind = self._it is None or self._pos_time > clip["start_time"] + 1e-6
        if behind or clip["start_time"] - self._pos_time > SEEK_AHEAD_S:
            self._restart(start_pts)
        got = 0
        while got < count:
            df = self._next()
            if df is None:
                break
            self._pos_time = df.time
            if df.pts is None or df.pts < start_pts:
                continue
            if end_pts is not None and df.pts >= end_pts:
                self._pending = df  # first frame of what follows: maybe the next clip's
                break
            got += 1
            yield df.frame

    def _frames_by_index(self, start: int, count: int) -> Iterator[av.VideoFrame]:
        if self._it is None or self._index > start:
            self._restart(None)
            self._index = 0
        while self._index < start + count:
            df = self._next()
            if df is None:
                return
            i = self._index
            self._index += 1
            if i >= start:
                yield df.frame


def encode_clip(frames: Iterator[av.VideoFrame], path: str, rate: Fraction, width: int,
                height: int, cfg, middle: int = 0, rotation: int = 0) -> tuple[int, bytes | None]:
    """Encode frames to an H.264 mp4 at ``path``; returns (frames written, JPEG of frame
    number ``middle``). ``cfg`` is a :class:`pipeline.config.ClipsConfig`. ``width`` x
    ``height`` is the displayed size; frames of a rotated source (``rotation`` degrees
    clockwise) are turned upright, so every reader shows them the right way up."""
    written = 0
    jpeg = None
    with av.open(path, mode="w", format="mp4") as out:
        stream = out.add_stream(cfg.codec, rate=rate)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(cfg.crf), "preset": cfg.preset} if "264" in cfg.codec else {}
        for frame in frames:
            if rotation:
                f = av.VideoFrame.from_ndarray(decode.to_rgb_upright(frame, width, height, rotation),
                                               format="rgb24").reformat(format="yuv420p")
            else:
                f = frame.reformat(width=width, height=height, format="yuv420p")
            f.pts = written
            f.time_base = 1 / rate
            for packet in stream.encode(f):
                out.mux(packet)
            if written == middle:
                buf = io.BytesIO()
                f.to_image().save(buf, format="JPEG", quality=cfg.jpeg_quality)
                jpeg = buf.getvalue()
            written += 1
        for packet in stream.encode(None):
            out.mux(packet)
    return written, jpeg


def write_clips(source: str, clips: list[dict], out_dir: str, cfg, threads: int = 0) -> Iterator[tuple[dict, dict | None, str | None]]:
    """Write each clip of one source video under ``out_dir``.

    Yields ``(row, media, error)``: ``media`` is ``{"mp4": path, "jpg": path, "bytes": n}``
    or None with an error message. ``cfg`` is the full :class:`pipeline.config.Config`.
    """
    os.makedirs(out_dir, exist_ok=True)
    with decode.opened(source, cfg.input.remote_attempts, cfg.input.remote_timeout_s) as container:
        reader = ClipReader(container, source, threads)
        try:
            yield from _write_all(reader, source, clips, out_dir, cfg)
        finally:
            reader.close()


def _write_all(reader: ClipReader, source: str, clips: list[dict], out_dir: str, cfg):
    for clip in sorted(clips, key=lambda c: c["start_frame"]):
        w, h = output_size(clip["width"], clip["height"], cfg.clips.max_side)
        rate = Fraction(clip["fps"]).limit_denominator(1001) if clip["fps"] > 0 else Fraction(25)
        final = os.path.join(out_dir, clip["clip_id"] + ".mp4")
        jpg = os.path.join(out_dir, clip["clip_id"] + ".jpg")
        if os.path.exists(final) and os.path.exists(jpg) and staged_clip_ok(final, clip["num_frames"]):
            # Written by an earlier, interrupted run (fsynced, then renamed into place last;
            # checked again here in case the disk lost it anyway).
            yield clip, {"mp4": final, "jpg": jpg, "bytes": os.path.getsize(final) + os.path.getsize(jpg),
                         "out_width": w, "out_height": h}, None
            continue
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".mp4", dir=out_dir)
        os.close(fd)
        try:
            n, jpeg = encode_clip(reader.frames(clip), tmp, rate, w, h, cfg.clips,
                                  middle=(clip["num_frames"] - 1) // 2, rotation=clip.get("rotation") or 0)
            if n != clip["num_frames"]:
                raise decode.CorruptVideo(
                    f"{source}: clip {clip['clip_id']} has {n} decodable frames, expected "
                    f"{clip['num_frames']}")
            if cfg.clips.keep_audio:
                tmp = _with_audio(source, tmp, clip, out_dir, cfg)
            atomic_write_bytes(jpg, jpeg)
            fsync_file(tmp)
            os.replace(tmp, final)  # last: an existing mp4 marks a finished clip
            yield clip, {"mp4": final, "jpg": jpg, "bytes": os.path.getsize(final) + len(jpeg),
                         "out_width": w, "out_height": h}, None
        except (decode.VideoError, av.error.FFmpegError, OSError, ValueError) as exc:
            if os.path.exists(tmp):
                os.remove(tmp)
            message = exc.message if isinstance(exc, decode.VideoError) else f"{source}: {exc}"
            yield clip, None, message


def _with_audio(source: str, video_path: str, clip: dict, out_dir: str, cfg) -> str:
    """Remux the clip's video with the source's audio for the same time span, as AAC.

    Clip times count from the source's first video frame; audio is cut on the container's
    clock at the clip's first frame (its pts), so a stream that starts later or earlier than the
    video stays in sync, to the sample."""
    import numpy as np

    fd, merged = tempfile.mkstemp(prefix=".tmp-", suffix=".mp4", dir=out_dir)
    os.close(fd)
    with av.open(video_path) as vin, decode.opened(source, cfg.input.remote_attempts, cfg.input.remote_timeout_s) as src, av.open(merged, "w", format="mp4") as out:
        if not src.streams.audio:
            os.remove(merged)
            return video_path
        vsrc = src.streams.video[0]
        if clip.get("start_pts") is not None and clip["start_pts"] >= 0 and vsrc.time_base:
            t0 = float(clip["start_pts"] * vsrc.time_base)
        else:
            t0 = float((vsrc.start_time or 0) * (vsrc.time_base or 0)) + clip["start_time"]
        t1 = t0 + (clip["end_time"] - clip["start_time"])
        vstream_in = vin.streams.video[0]
        vout = out.add_stream_from_template(vstream_in)
        ain = src.streams.audio[0]
        rate = ain.codec_context.sample_rate or 44100
        aout = out.add_stream("aac", rate=rate)
        for packet in vin.demux(vstream_in):
            if packet.dts is None:
                continue
            packet.stream = vout
            out.mux(packet)
        src.seek(max(0, int((t0 - 1.0) / ain.time_base)) if ain.time_base else 0, stream=ain, backward=True)
        resampler = av.AudioResampler(format="fltp", layout="stereo", rate=rate)
        chunks, first_t = [], None
        for frame in src.decode(ain):
            if frame.time is None:
                continue
            if frame.time >= t1:
                break
            for rf in resampler.resample(frame):
                if first_t is None:
                    first_t = rf.time if rf.time is not None else frame.time
                chunks.append(rf.to_ndarray())
        if chunks and first_t is not None:
            samples = np.concatenate(chunks, axis=1)
            a = max(0, int(round((t0 - first_t) * rate)))
            b = max(a, int(round((t1 - first_t) * rate)))
            pad = max(0, int(round((first_t - t0) * rate)))  # audio starts after the clip: silence first
            samples = np.concatenate([np.zeros((samples.shape[0], pad), samples.dtype), samples[:, a:b]], axis=1)
            samples = samples[:, : int(round((t1 - t0) * rate))]
            for i in range(0, samples.shape[1], 1024):
                af = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, i:i + 1024]), format="fltp",
                                                layout="stereo")
                af.sample_rate = rate
                af.pts = i
                for packet in aout.encode(af):
                    out.mux(packet)
        for packet in aout.encode(None):
            out.mux(packet)
    os.remove(video_path)
    return merged

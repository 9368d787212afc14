"""One decode per source for everything done to its clips (:func:`read_clips`): frame-exact H.264
mp4 clips plus a middle-frame JPEG, and the frames the model stages read, from the same frames.

Frames are matched on their presentation timestamps (the ``pts`` recorded by the analysis pass),
so a clip holds exactly frames ``[start_frame, end_frame)`` whatever the keyframe layout: the
reader seeks to the keyframe before a clip, decodes forward, and every clip starts on a fresh
keyframe (GOPs inside a clip are copied, not encoded, when :mod:`transforms.smartcut` can). Clips
of one video are written in order; decoding goes on from one clip to the next.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
from collections.abc import Iterator
from fractions import Fraction

import av
import numpy as np

from transforms import decode, pixels, smartcut, storage
from transforms.containers import opened
from transforms.errors import CorruptVideo
from transforms.pixels import to_rgb_upright
from transforms.shape import Shaper, geometry, output_fps, output_frames, resample


def staged_clip_ok(path: str, num_frames: int) -> bool:
    """A staged mp4 from an earlier run is whole: it opens and holds ``num_frames`` video
    packets (demux only; one frame per packet in what we encode)."""
    try:
        with contextlib.ExitStack() as stack:
            target = path if storage.is_local(path) else stack.enter_context(storage.open_read(path))
            c = stack.enter_context(av.open(target))
            if not c.streams.video:
                return False
            return sum(1 for p in c.demux(c.streams.video[0]) if p.size) == num_frames
    except (av.error.FFmpegError, OSError, ValueError):
        return False

log = logging.getLogger(__name__)

# Seek instead of decoding through when the next clip starts this much later.
SEEK_AHEAD_S = 4.0


def output_size(width: int, height: int, clips_cfg) -> tuple[int, int]:
    """The written size of a clip displayed at ``width`` x ``height`` (see :mod:`transforms.shape`)."""
    return geometry(width, height, clips_cfg).out


class ClipReader:
    """Yields the decoded frames of successive clips of one open container."""

    def __init__(self, container, source: str, skip_nonref_deblock: bool = False):
        self.container = container
        self.source = source
        self.skip = "noref" if skip_nonref_deblock else False
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
        self._it = decode.iter_frames(self.container, self.source, start_pts=start_pts, skip_loop_filter=self.skip)
        self._pending = None

    def _next(self) -> decode.DecodedFrame | None:
        if self._pending is not None:
            f, self._pending = self._pending, None
            return f
        try:
            return next(self._it)
        except StopIteration:
            return None

    def frames(self, clip) -> Iterator[av.VideoFrame]:
        """The decoded frames of ``clip`` (a :class:`transforms.rows.ClipRow`), matched on pts."""
        start_pts, end_pts = clip.start_pts, clip.end_pts
        count = clip.num_frames
        if start_pts is None or start_pts < 0:
            yield from self._frames_by_index(clip.start_frame, count)
            return
        behind = self._it is None or self._pos_time > clip.start_time + 1e-6
        if behind or clip.start_time - self._pos_time > SEEK_AHEAD_S:
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


def encode_clip(frames: Iterator[av.VideoFrame], path: str, rate: Fraction, shaper: Shaper, cfg,
                middle: int = 0) -> tuple[int, bytes | None]:
    """Encode frames to an mp4 at ``path``, each made by ``shaper`` (a :class:`Shaper`: upright,
    at the written size); returns (frames written, JPEG of frame number ``middle``). ``cfg`` is
    a :class:`pipeline.config.ClipsConfig`."""
    written = 0
    jpeg = None
    with av.open(path, mode="w", format="mp4") as out:
        stream = out.add_stream(cfg.codec, rate=rate)
        stream.width, stream.height = shaper.geom.out
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(cfg.crf), "preset": cfg.preset} if "264" in cfg.codec else {}
        for frame in frames:
            f = shaper(frame)
            f.pts = written
            f.time_base = 1 / rate
            for packet in stream.encode(f):
                out.mux(packet)
            if written == middle:
                jpeg = pixels.jpeg(f, cfg.jpeg_quality)
            written += 1
        for packet in stream.encode(None):
            out.mux(packet)
    return written, jpeg


def _paths(out_dir: str, clip) -> tuple[str, str]:
    return os.path.join(out_dir, clip.clip_id + ".mp4"), os.path.join(out_dir, clip.clip_id + ".jpg")


def planned(clip, clips_cfg) -> dict:
    """What the written clip will be: ``out_width``, ``out_height``, ``out_fps``, ``out_frames``."""
    w, h = output_size(clip.width, clip.height, clips_cfg)
    return {"out_width": w, "out_height": h, "out_fps": round(output_fps(clip.fps, clips_cfg), 6),
            "out_frames": output_frames(clip.num_frames, clip.fps, clips_cfg)}


def staged_media(out_dir: str, clip, clips_cfg) -> dict | None:
    """The media of ``clip`` written by an earlier, interrupted run, if they are whole (the mp4
    is fsynced, then renamed into place last; checked again in case the disk lost it anyway)."""
    mp4, jpg = _paths(out_dir, clip)
    plan = planned(clip, clips_cfg)
    if storage.exists(mp4) and storage.exists(jpg) and staged_clip_ok(mp4, plan["out_frames"]):
        return {"mp4": mp4, "jpg": jpg, "bytes": storage.size_of(mp4) + storage.size_of(jpg), **plan}
    return None


def write_clip(frames: Iterator[av.VideoFrame], source: str, clip, out_dir: str, cfg,
               copier: smartcut.Copier | None = None) -> dict:
    """Encode one clip's ``frames`` (from :meth:`ClipReader.frames`) to ``out_dir``: its mp4 and
    middle-frame JPEG, at the size, rate and length :func:`planned` says; returns ``{"mp4",
    "jpg", "bytes", "out_width", "out_height", "out_fps", "out_frames"}``. Raises a
    :class:`VideoError` when the source holds fewer frames than the clip. ``cfg`` is the full
    :class:`pipeline.config.Config`. A ``copier`` copies the GOPs inside the clip instead."""
    storage.makedirs(out_dir)
    plan = planned(clip, cfg.clips)
    shaper = Shaper(geometry(clip.width, clip.height, cfg.clips), clip.rotation or 0, cfg.clips.scaler)
    src_fps = clip.fps if clip.fps and clip.fps > 0 else 25.0
    rate = Fraction(plan["out_fps"]).limit_denominator(1001)  # 25 for a clip of unknown rate
    seen = 0

    def counted():
        nonlocal seen
        for f in frames:
            seen += 1
            yield f

    spanned = counted()
    chosen = spanned
    if plan["out_fps"] < src_fps - 1e-6:
        chosen = resample(spanned, src_fps, plan["out_fps"], plan["out_frames"], end=clip.duration_s)
    chosen = itertools.islice(chosen, plan["out_frames"])
    final, jpg = _paths(out_dir, clip)
    tmp = storage.temp_beside(final, suffix=".mp4")
    try:
        done = copier.write(clip, tmp, cfg.clips) if copier is not None else None
        if done is not None:
            n, jpeg = done
            seen = n
        else:
            n, jpeg = encode_clip(chosen, tmp, rate, shaper, cfg.clips, middle=(plan["out_frames"] - 1) // 2)
            for _ in spanned:  # the rest of the span (the model stages' frames are tapped from it)
                pass
        if seen < clip.num_frames or n != plan["out_frames"]:
            raise CorruptVideo(f"{source}: clip {clip.clip_id} has {seen} decodable frames, "
                               f"expected {clip.num_frames} (wrote {n} of {plan['out_frames']})")
        if cfg.clips.keep_audio:
            from transforms.clip_audio import with_audio

            tmp = with_audio(source, tmp, clip, out_dir, cfg)
        storage.put_bytes(jpg, jpeg)
        size = os.path.getsize(tmp)
        storage.put_file(tmp, final)  # last: an existing mp4 marks a finished clip
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return {"mp4": final, "jpg": jpg, "bytes": size + len(jpeg), **plan}


class _Tap:
    """Collects the wanted frames of one clip while they stream past (to an encoder or not)."""

    def __init__(self, clip, specs: dict):
        self.wanted = {name: spec.positions(clip.num_frames) for name, spec in specs.items()}
        self.sizes = {name: spec.size(clip.width, clip.height) for name, spec in specs.items()}
        self.every = set().union(*self.wanted.values()) if self.wanted else set()
        self.rotation = clip.rotation or 0
        self.got: dict[str, list] = {name: [] for name in specs}

    def through(self, frames: Iterator) -> Iterator:
        for i, frame in enumerate(frames):
            if i in self.every:
                converted = {}
                for name, positions in self.wanted.items():
                    if i in positions:
                        size = self.sizes[name]
                        if size not in converted:
                            converted[size] = to_rgb_upright(frame, size[0], size[1], self.rotation)
                        self.got[name].append(converted[size])
            yield frame

    def frames(self) -> dict[str, np.ndarray] | None:
        if any(len(self.got[n]) != len(self.wanted[n]) for n in self.got):
            return None
        return {n: np.stack(v) for n, v in self.got.items()}


def read_clips(source: str, clips: list, cfg, specs: dict | None = None,
               out_dir: str | None = None) -> Iterator[tuple[object, dict | None, dict | None, str | None]]:
    """One decode of ``source`` for its clips, in clip order: ``(clip, media, frames, error)``.

    With ``out_dir`` each clip is written there (see :func:`write_clip`); with ``specs``
    (:class:`transforms.model_frames.FrameSpec` by frame set) the frames every model stage
    reads are taken from the same decoded frames.
    A clip that fails has ``error`` set (and the others None); the rest go on."""
    specs = specs or {}
    todo = []
    for clip in sorted(clips, key=lambda c: c.start_frame):
        media = staged_media(out_dir, clip, cfg.clips) if out_dir else None
        if media is not None and not specs:
            yield clip, media, {}, None  # written by an earlier step or run: no decode needed
        else:
            todo.append((clip, media))
    if not todo:
        return
    with opened(source, cfg.input.remote_attempts, cfg.input.remote_timeout_s) as container:
        copier = None
        stream = container.streams.video[0]
        if out_dir and all(smartcut.copyable(c, planned(c, cfg.clips), stream) for c, _ in todo):
            copier = smartcut.Copier.for_source(container, cfg.clips)
        reader = copier or ClipReader(container, source, cfg.clips.skip_nonref_deblock)
        try:
            for clip, media in todo:
                tap = _Tap(clip, specs)
                try:
                    frames = tap.through(reader.frames(clip))
                    if out_dir and media is None:
                        media = write_clip(frames, source, clip, out_dir, cfg, copier)
                    for _ in frames if specs else ():  # what a stream copy did not decode
                        pass
                except Exception as exc:  # noqa: BLE001 - one clip's failure is data
                    yield clip, None, None, getattr(exc, "message", None) or f"{source}: {exc}"
                    continue
                frames = tap.frames() if specs else {}
                if frames is None:
                    yield clip, None, None, f"{source}: clip {clip.clip_id} has fewer frames than recorded"
                    continue
                yield clip, media, frames, None
        finally:
            reader.close()

"""Opening, probing and streaming-decoding videos with PyAV (FFmpeg bundled in the wheel).

Everything that touches a container lives here, so the stages above only see numpy arrays.
Errors are raised as :class:`VideoError` subclasses whose messages say what is wrong with the
input in words a user understands; the Beam layer turns them into error rows.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from fractions import Fraction

import av

from transforms.containers import opened
from transforms.errors import CorruptVideo, LimitExceeded, NoVideoStream, TooShort, UnsupportedCodec
from transforms.storage import size_of

log = logging.getLogger(__name__)

av.logging.set_level(av.logging.PANIC)  # FFmpeg's own chatter; we report errors ourselves


@dataclass
class ProbeInfo:
    """Container and stream facts read from headers (no full decode)."""

    container: str
    size_bytes: int
    duration_s: float
    fps: float
    num_frames: int  # from the header when present, else estimated from duration * fps
    header_frames: int  # what the header promises (frame count, or stream duration x rate); 0: unknown
    codec: str
    pix_fmt: str
    width: int
    height: int
    rotation: int
    has_audio: bool
    audio_codec: str | None
    bit_rate: int | None

    def to_dict(self) -> dict:
        return asdict(self)


def _rotation(stream) -> int:
    rotate = stream.metadata.get("rotate")
    if rotate is not None:
        try:
            return int(float(rotate)) % 360
        except ValueError:
            return 0
    for side in getattr(stream, "side_data", {}) or {}:
        if "DISPLAYMATRIX" in str(side).upper():
            try:
                return int(round(-float(stream.side_data[side]))) % 360
            except (TypeError, ValueError):
                return 0
    return 0


def _stream_fps(stream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            value = float(rate)
            if 0 < value < 1000:
                return value
    return 0.0


def probe_container(container, source: str, size_bytes: int | None = None) -> ProbeInfo:
    if not container.streams.video:
        if container.streams.audio:
            raise NoVideoStream(f"{source} has audio but no video stream")
        raise NoVideoStream(f"{source} has no video stream")
    stream = container.streams.video[0]
    ctx = stream.codec_context
    if ctx is None or not ctx.name:
        raise UnsupportedCodec(f"{source}: the video codec is unknown to FFmpeg")
    fps = _stream_fps(stream)
    duration = 0.0
    if stream.duration is not None and stream.time_base:
        duration = float(stream.duration * stream.time_base)
    elif container.duration:
        duration = container.duration / 1_000_000
    frames = int(stream.frames or 0)
    header_frames = frames
    if header_frames <= 0 and stream.duration is not None and stream.time_base and fps > 0:
        header_frames = int(round(float(stream.duration * stream.time_base) * fps))
    if frames <= 0 and duration > 0 and fps > 0:
        frames = int(round(duration * fps))
    if duration <= 0 and frames > 0 and fps > 0:
        duration = frames / fps
    audio = container.streams.audio[0] if container.streams.audio else None
    if size_bytes is None:
        size_bytes = size_of(source)
    return ProbeInfo(
        container=container.format.name,
        size_bytes=int(size_bytes or 0),
        duration_s=round(duration, 6),
        fps=round(fps, 6),
        num_frames=frames,
        header_frames=max(0, header_frames),
        codec=ctx.name,
        pix_fmt=str(ctx.format.name) if ctx.format is not None else "",
        width=int(ctx.width or 0),
        height=int(ctx.height or 0),
        rotation=_rotation(stream),
        has_audio=audio is not None,
        audio_codec=audio.codec_context.name if audio is not None and audio.codec_context else None,
        bit_rate=int(container.bit_rate) if container.bit_rate else None,
    )


def probe(source: str) -> ProbeInfo:
    """One-call probe: open, read headers, close."""
    with opened(source) as container:
        return probe_container(container, source)


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def check_limits(info: ProbeInfo, limits, source: str) -> None:
    """Raise LimitExceeded/TooShort when a probed video is outside the configured bounds."""
    if info.width <= 0 or info.height <= 0:
        raise CorruptVideo(f"{source}: the video stream reports no picture size")
    if info.size_bytes > limits.max_file_bytes:
        raise LimitExceeded(
            f"{source} is {human_bytes(info.size_bytes)}, over limits.max_file_bytes "
            f"({human_bytes(limits.max_file_bytes)})")
    if info.duration_s > limits.max_duration_s:
        raise LimitExceeded(
            f"{source} lasts {info.duration_s:.0f} s, over limits.max_duration_s ({limits.max_duration_s:.0f} s)")
    if info.width > limits.max_width or info.height > limits.max_height:
        raise LimitExceeded(
            f"{source} is {info.width}x{info.height}, over limits.max_width x max_height "
            f"({limits.max_width}x{limits.max_height})")
    aspect = max(info.width / info.height, info.height / info.width)
    if aspect > limits.max_aspect_ratio:
        raise LimitExceeded(
            f"{source} has an extreme aspect ratio ({info.width}x{info.height}, {aspect:.1f}:1), "
            f"over limits.max_aspect_ratio ({limits.max_aspect_ratio:g})")
    if info.fps > 0:
        check_frames(source, info.num_frames, limits)


def check_frames(source: str, n: int, limits, what: str = "") -> None:
    """TooShort when a video has fewer than ``limits.min_frames`` frames (the one such check)."""
    if 0 < n < limits.min_frames:
        raise TooShort(f"{source} has only {n} {what}frame(s); at least limits.min_frames "
                       f"({limits.min_frames}) are needed for a clip")


def frame_rotation(frame: av.VideoFrame) -> int:
    """Clockwise degrees (0, 90, 180, 270) to turn this frame to show it upright, from the
    stream's display matrix (PyAV reports it per frame, counter-clockwise)."""
    try:
        ccw = int(round(float(getattr(frame, "rotation", 0) or 0)))
    except (TypeError, ValueError):
        return 0
    return (-ccw) % 360 // 90 * 90


@dataclass
class DecodedFrame:
    index: int  # 0-based position in decode order (the frame number used everywhere)
    pts: int | None
    time: float
    frame: av.VideoFrame


def iter_frames(container, source: str, threads: int = 0, start_pts: int | None = None,
                skip_loop_filter: bool | str = False, stats: dict | None = None) -> Iterator[DecodedFrame]:
    """Yield decoded frames one at a time (never the whole video in memory).

    With ``start_pts`` the container seeks to the keyframe before it first; frame ``index``
    is then only meaningful relative to that point, so callers that seek match on ``pts``.
    ``skip_loop_filter`` skips the decoder's deblocking filter (H.264/HEVC/VP8...): about 20%
    less decode time, for pictures that are only ever looked at shrunk (the analysis pass).
    ``"noref"`` skips it only on pictures no other picture references, so no error is carried
    into other pictures (``True`` is ``"all"``).
    ``stats`` (a dict) receives ``decode_errors`` (packets that failed to decode) and
    ``stopped`` (why decoding ended early, if it did).
    """
    stats = stats if stats is not None else {}
    stats.setdefault("decode_errors", 0)
    stream = container.streams.video[0]
    if not stream.codec_context.is_open:  # threading and options only apply before the first decode
        stream.thread_type = "AUTO"
        if threads:
            stream.codec_context.thread_count = threads
        if skip_loop_filter:
            which = "all" if skip_loop_filter is True else skip_loop_filter
            stream.codec_context.options = {**stream.codec_context.options, "skip_loop_filter": which}
    index = 0
    tb = stream.time_base or Fraction(1, 1)
    frames = _frames_from(container, stream, source, stats, start_pts)
    try:
        for frame in frames:
            pts = frame.pts
            t = float(pts * tb) if pts is not None else (index / (_stream_fps(stream) or 25.0))
            yield DecodedFrame(index, pts, t, frame)
            index += 1
    except av.error.FFmpegError as exc:
        if index == 0:
            raise CorruptVideo(f"{source}: no frame could be decoded ({exc})") from None
        log.warning("%s: decoding stopped after %d frames: %s", source, index, exc)
        stats["decode_errors"] += 1
        stats["stopped"] = f"decoding stopped after {index} frames: {exc}"
    except GeneratorExit:
        # The caller stopped early. Drop the frames still inside the (threaded) decoder now:
        # closing a container with frames in flight can otherwise block forever.
        frames.close()
        try:
            stream.codec_context.flush_buffers()
        except Exception:  # noqa: BLE001 - best effort on the way out
            pass
        raise


def _decode(container, stream, source: str, stats: dict) -> Iterator[av.VideoFrame]:
    """Frames from the demuxer's current position; undecodable packets are counted and skipped
    (``stats["error_at"]``: frames decoded before each error, the first 100)."""
    out = 0
    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.error.InvalidDataError:
            log.debug("%s: skipping undecodable packet", source)
            stats["decode_errors"] += 1
            if len(stats.setdefault("error_at", [])) < 100:
                stats["error_at"].append(out)
            continue
        out += len(frames)
        yield from frames


# How far before the wanted frame a seek is retried when it lands after it (seconds), before
# falling back to the start of the stream.
SEEK_BACKOFF_S = (0.0, 1.0, 5.0, 30.0)


def _frames_from(container, stream, source: str, stats: dict, start_pts: int | None) -> Iterator[av.VideoFrame]:
    """Decoded frames starting at or before ``start_pts`` (None: from where the demuxer is).

    Containers without an index (MPEG-TS, MPEG-PS) seek by timestamp estimates and land on the
    keyframe *after* the target, or nowhere when a file has a single keyframe: when the first
    frame decoded is later than ``start_pts`` the seek is retried further back, and finally from
    the start of the stream, so callers that match frames by pts always find theirs."""
    if start_pts is None:
        yield from _decode(container, stream, source, stats)
        return
    tb = stream.time_base or Fraction(1, 1)
    origin = stream.start_time if stream.start_time is not None else 0
    for back in SEEK_BACKOFF_S:
        target = start_pts - int(back / tb)
        if target <= origin:
            break
        try:
            container.seek(target, stream=stream, backward=True, any_frame=False)
        except av.error.FFmpegError:
            continue
        frames = _decode(container, stream, source, stats)
        first = next(frames, None)
        if first is not None and first.pts is not None and first.pts <= start_pts:
            yield first
            yield from frames
            return
        frames.close()
    # From the start: a target well before the first timestamp (seeking to the first timestamp
    # itself lands on the second keyframe in MPEG-PS); AVI and FLV refuse negative targets.
    for target in (origin - int(3600 / tb), min(origin, 0), origin):
        try:
            container.seek(target, stream=stream, backward=True, any_frame=False)
            break
        except av.error.FFmpegError:
            continue
    yield from _decode(container, stream, source, stats)



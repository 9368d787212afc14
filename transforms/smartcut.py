"""Frame-exact H.264 clips without re-encoding what need not be: the GOPs that lie wholly inside
a clip are copied packet for packet, and only the frames before the first copied keyframe (the
head) and after the last copied GOP (the tail) go through x264.

The copied packets keep the source's parameter sets; the re-encoded head and tail get their own,
under ids the source does not use (x264's ``sps-id``), and all of them go into the one ``avcC``
of the mp4, so the file is a plain single-description H.264 mp4 that any decoder reads.

A GOP is copied only when it is closed: it starts with an IDR picture and shows exactly the
frames from its keyframe to the next one (no leading pictures that reach back), so it decodes on
its own to exactly those frames. Sources this cannot handle (other codecs, Annex B streams,
resized, rotated or resampled clips) take the ordinary decode-and-encode path.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import av

from transforms.gops import GopReader, decoded
from transforms.h264 import (
    NAL_AUD,
    NAL_PPS,
    NAL_SPS,
    AvcC,
    Gop,
    annexb_nals,
    copy_span,
    decode_times,
    free_ids,
    length_prefixed,
    pps_id,
    sps_id,
)
from transforms.pixels import jpeg

log = logging.getLogger(__name__)

END = 1 << 62  # "after every frame": the end of a clip that runs to the end of its video


def encode_part(frames, stream, ident: int, clips_cfg, sink) -> tuple[bytes, bytes, list[tuple[bytes, int, bool]]]:
    """x264-encode ``frames`` (source timestamps kept) with parameter-set id ``ident``; returns
    (SPS, PPS, [(length-prefixed access unit, pts, keyframe)] in decode order). ``sink`` is called
    with each frame before it is encoded."""
    cc = stream.codec_context
    enc = av.CodecContext.create(clips_cfg.codec, "w")
    enc.width, enc.height, enc.pix_fmt = cc.width, cc.height, "yuv420p"
    enc.thread_type = "FRAME"  # as a muxer's encoder does (else x264 gets sliced threads)
    enc.time_base = stream.time_base
    if stream.average_rate:
        enc.framerate = stream.average_rate
    enc.options = {"crf": str(clips_cfg.crf), "preset": clips_cfg.preset, "x264-params": f"sps-id={ident}"}
    sps = pps = None
    out = []

    def take(packets):
        nonlocal sps, pps
        for p in packets:
            keep = []
            for nal in annexb_nals(bytes(p)):
                kind = nal[0] & 31
                if kind == NAL_SPS:
                    sps = sps or nal
                elif kind == NAL_PPS:
                    pps = pps or nal
                elif kind != NAL_AUD:
                    keep.append(nal)
            out.append((length_prefixed(keep), p.pts, p.is_keyframe))

    for f in frames:  # yuv420p: Copier.for_source takes only such sources
        sink(f)
        f.pict_type = av.video.frame.PictureType.NONE
        take(enc.encode(f))
    take(enc.encode(None))
    if not out:
        return None, None, []
    if sps is None or pps is None or sps_id(sps) != ident or pps_id(pps) != ident:
        raise ValueError(f"encoder did not take parameter-set id {ident}")
    return sps, pps, out


def mux(path: str, stream, units: list[tuple[bytes, int, bool]], sets: AvcC, start_pts: int,
        end_pts: int) -> None:
    """Write access units (decode order, source timestamps) to an mp4 whose avcC is ``sets``,
    timestamps moved so the clip starts at 0."""
    shown = sorted(u[1] for u in units)
    if end_pts >= END:  # the video's last frame: as long as the one before it
        end_pts = shown[-1] + (shown[-1] - shown[-2] if len(shown) > 1 else 1)
    after = dict(zip(shown, shown[1:] + [end_pts], strict=True))
    with av.open(path, mode="w", format="mp4") as out:
        ost = out.add_stream_from_template(stream)
        ost.codec_context.extradata = sets.to_bytes()
        for (data, pts, key), dts in zip(units, decode_times([u[1] for u in units]), strict=True):
            pkt = av.Packet(data)
            pkt.stream = ost
            pkt.time_base = stream.time_base
            pkt.pts, pkt.dts = pts - start_pts, dts - start_pts
            pkt.duration = max(after[pts] - pts, 1)
            pkt.is_keyframe = key
            out.mux(pkt)


def write_copied(stream, gops: list[Gop], span: tuple[int, int, int], start_pts: int, end_pts: int,
                 path: str, clips_cfg, avcc: AvcC) -> tuple[int, bytes, int]:
    """Write the clip of frames ``[start_pts, end_pts)`` to the mp4 ``path``: the head and tail
    re-encoded (streamed), what ``span`` (:func:`transforms.h264.copy_span`) says copied.
    Returns (frames written, middle-frame JPEG, frames copied)."""
    a, b, n = span
    copied = [p for g in gops[a:b] for p in g.packets] + (gops[b].packets[:n] if n else [])
    head_hi = gops[a].key_pts
    rest = sorted(p.pts for p in gops[b].packets[n:]) if b < len(gops) else []
    tail_lo = rest[0] if rest else gops[b + 1].key_pts if b + 1 < len(gops) else end_pts
    # The clip's frames in display order, known from the packets before anything is decoded.
    shown = sorted({p.pts for g in gops for p in g.packets if start_pts <= p.pts < end_pts})
    middle_pts = shown[(len(shown) - 1) // 2] if shown else None
    fast = clips_cfg.skip_nonref_deblock
    picture = []

    def sink(f):
        if f.pts == middle_pts:
            picture.append(f)

    sets = AvcC(avcc.length_size, list(avcc.sps), list(avcc.pps))
    head_id, tail_id = free_ids(avcc, 2)

    def encoded(part: list[Gop], lo: int, hi: int, ident: int) -> list[tuple[bytes, int, bool]]:
        if lo >= hi:
            return []
        sps, pps, units = encode_part(decoded(stream, part, lo, hi, fast), stream, ident, clips_cfg, sink)
        if units:
            sets.sps.append(sps)
            sets.pps.append(pps)
        return units

    units = (encoded(gops[:a], start_pts, head_hi, head_id)
             + [(p.data, p.pts, p.key) for p in copied]
             + encoded(gops[b if b >= len(gops) or gops[b].min_pts == gops[b].key_pts else b - 1:],
                       tail_lo, end_pts, tail_id))  # an open GOP's leading frames need the one before
    if sorted(u[1] for u in units) != shown:  # e.g. frames before the first keyframe: no splice
        raise ValueError(f"the spliced clip holds {len(units)} frames of {len(shown)}")
    if middle_pts is not None and not picture:  # in the copied part: decode its GOP up to it
        g = next(g for g in gops[a:b + 1] if g.key_pts <= middle_pts <= g.max_pts)
        picture = [next(decoded(stream, [g], middle_pts, middle_pts + 1, fast))]
    mux(path, stream, units, sets, start_pts, end_pts)
    return len(units), jpeg(picture[0], clips_cfg.jpeg_quality) if picture else b"", len(copied)


def copyable(clip, plan: dict, stream) -> bool:
    """Whether ``clip``, written as ``plan`` (:func:`transforms.clips.planned`) says, holds its
    source frames unchanged (no resize, rotation, rate change or truncation)."""
    cc = stream.codec_context
    return ((plan["out_width"], plan["out_height"]) == (cc.width, cc.height) and not clip.rotation
            and plan["out_frames"] == clip.num_frames and bool(clip.fps) and plan["out_fps"] >= clip.fps - 1e-6
            and clip.start_pts is not None and clip.start_pts >= 0)


class Copier:
    """Writes the clips of one source (in start order) by stream copy where a GOP allows it, and
    gives the decoded frames of a clip that has no GOP to copy (:meth:`frames`)."""

    def __init__(self, container, avcc: AvcC, skip_nonref_deblock: bool = False):
        self.reader = GopReader(container, avcc.length_size)
        self.skip_nonref_deblock = skip_nonref_deblock
        self.stream = self.reader.stream
        self.avcc = avcc

    @classmethod
    def for_source(cls, container, clips_cfg) -> Copier | None:
        """A copier when the source's video is H.264 (4:2:0, 8-bit, length-prefixed with an
        avcC) and clips are written as H.264; else None."""
        cc = container.streams.video[0].codec_context
        if not clips_cfg.stream_copy or clips_cfg.codec != "libx264" or cc.name != "h264":
            return None
        if cc.format is None or cc.format.name != "yuv420p":
            return None
        avcc = AvcC.parse(cc.extradata)
        if avcc is None or avcc.length_size != 4:
            return None
        try:
            free_ids(avcc, 2)
        except (ValueError, IndexError):
            return None
        return cls(container, avcc, clips_cfg.skip_nonref_deblock)

    def _span(self, clip) -> tuple[list[Gop], int]:
        """The GOPs ``clip`` needs and the pts it ends before (for the last clip of a video,
        which has none recorded: after its ``num_frames`` frames, or the end of the stream)."""
        if clip.end_pts is not None:
            return self.reader.gops_for(clip.start_pts, clip.end_pts), clip.end_pts
        gops = self.reader.gops_for(clip.start_pts, END)
        shown = sorted(p.pts for g in gops for p in g.packets if p.pts >= clip.start_pts)
        return gops, shown[clip.num_frames] if len(shown) > clip.num_frames else END

    def close(self) -> None:
        """Nothing to release: each decode flushes its own decoder (see :func:`decoded`)."""

    def frames(self, clip) -> Iterator[av.VideoFrame]:
        gops, end = self._span(clip)
        yield from decoded(self.stream, gops, clip.start_pts, end, self.skip_nonref_deblock)

    def write(self, clip, path: str, clips_cfg) -> tuple[int, bytes] | None:
        """Write ``clip`` to ``path`` copying what it can: (frames written, JPEG), or None when
        no whole GOP lies inside the clip (then encode :meth:`frames`)."""
        gops, end = self._span(clip)
        span = copy_span(gops, clip.start_pts, end)
        if span is None:
            return None
        try:
            n, jpeg, copied = write_copied(self.stream, gops, span, clip.start_pts, end, path, clips_cfg, self.avcc)
        except (ValueError, av.error.FFmpegError) as exc:  # e.g. repeated timestamps: encode it all
            log.warning("%s: stream copy failed (%s); encoding the whole clip", clip.clip_id, exc)
            return None
        log.debug("%s: %d of %d frames copied", path, copied, n)
        return n, jpeg

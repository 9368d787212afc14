"""Reading an H.264 stream as GOPs of packets (forward, seeking ahead when clips are far apart)
and decoding a run of them: the I/O under :mod:`transforms.smartcut`."""

from __future__ import annotations

from collections.abc import Iterator

import av

from transforms.h264 import Gop, Pkt, is_idr, is_reference


class GopReader:
    """GOPs of one open container's video stream, read forward for clips in start order; keeps
    only the GOPs the current clip can still need."""

    def __init__(self, container, length_size: int, seek_ahead_s: float = 4.0):
        self.container = container
        self.stream = container.streams.video[0]
        self._packets = container.demux(self.stream)
        self.length_size = length_size
        self.seek_ahead = seek_ahead_s / float(self.stream.time_base or 1)  # in pts
        self.seeks = 0
        self._gops: list[Gop] = []
        self._pending: Pkt | None = None
        self._done = False

    def _seek(self, pts: int) -> None:
        """Go to the keyframe at or before ``pts`` (0: the start) instead of reading up to it."""
        self.container.seek(pts, stream=self.stream, backward=True)
        self._packets = self.container.demux(self.stream)
        self._gops, self._pending, self._done = [], None, False
        self.seeks += 1

    def _read_gop(self) -> Gop | None:
        packets: list[Pkt] = []
        if self._pending is not None:
            packets.append(self._pending)
            self._pending = None
        for p in self._packets:
            if not p.size:
                continue
            if p.pts is None:
                raise ValueError("packet without pts")
            data = bytes(p)
            pk = Pkt(data, p.pts, p.dts, p.is_keyframe, is_reference(data, self.length_size))
            if pk.key and packets:
                self._pending = pk
                break
            packets.append(pk)
        else:
            self._done = True
        if not packets:
            return None
        return Gop(packets, packets[0].key and is_idr(packets[0].data, self.length_size))

    def gops_for(self, start_pts: int, end_pts: int) -> list[Gop]:
        """The GOPs from the last keyframe at or before ``start_pts`` through every GOP whose
        keyframe is before ``end_pts`` (and the one after, to know where the last one ends).
        Seeks when the clip starts far past what was read (a long video with few clips)."""
        read = self._gops[-1].key_pts if self._gops else self._pending.pts if self._pending else 0
        if start_pts - read > self.seek_ahead:
            self._seek(start_pts)
            first = self._read_gop()
            if first is None or first.key_pts > start_pts:  # landed after it: read from the start
                self._seek(0)
            else:
                self._gops.append(first)
        while self._gops and len(self._gops) > 1 and self._gops[1].key_pts <= start_pts:
            self._gops.pop(0)
        while not self._done and (not self._gops or self._gops[-1].key_pts < end_pts):
            g = self._read_gop()
            if g is None:
                break
            self._gops.append(g)
            while len(self._gops) > 1 and self._gops[1].key_pts <= start_pts:
                self._gops.pop(0)
        return list(self._gops)


def decoded(stream, gops: list[Gop], lo: int, hi: int, skip_nonref_deblock: bool = False) -> Iterator[av.VideoFrame]:
    """Frames with ``lo <= pts < hi``, decoding ``gops`` (consecutive, from a keyframe) with a
    fresh decoder; stops once past ``hi``. Pictures outside ``[lo, hi)`` that no other picture
    references are not decoded (the frames before a clip's start, up to its middle frame).
    ``skip_nonref_deblock`` skips the deblocking filter on those that are decoded (see
    ``clips.skip_nonref_deblock``)."""
    dec = av.CodecContext.create(stream.codec_context.name, "r")
    dec.extradata = stream.codec_context.extradata
    dec.thread_type = "AUTO"
    if skip_nonref_deblock:
        dec.options = {"skip_loop_filter": "noref"}
    tb = stream.time_base
    try:
        for g in gops:
            if g.key_pts >= hi:
                break
            for p in g.packets:
                if not p.ref and not lo <= p.pts < hi:
                    continue
                pkt = av.Packet(p.data)
                pkt.pts, pkt.dts, pkt.time_base = p.pts, p.dts, tb
                for f in dec.decode(pkt):
                    if f.pts is not None and lo <= f.pts < hi:
                        yield f
        for f in dec.decode(None):
            if f.pts is not None and lo <= f.pts < hi:
                yield f
    except GeneratorExit:
        dec.flush_buffers()  # frames in flight in a threaded decoder can block its teardown
        raise

"""H.264 pieces the stream-copying clip writer needs (pure): NAL units in Annex B and
length-prefixed form, parameter-set ids, the ``avcC`` record that carries parameter sets in an
mp4, and which GOPs of a clip can be copied."""

from __future__ import annotations

from dataclasses import dataclass, field

NAL_SLICE, NAL_IDR, NAL_SPS, NAL_PPS, NAL_AUD = 1, 5, 7, 8, 9


def _rbsp(nal: bytes) -> bytes:
    """The NAL payload without its emulation-prevention bytes (0x000003 -> 0x0000)."""
    out, zeros = bytearray(), 0
    for b in nal[1:]:
        if zeros >= 2 and b == 3:
            zeros = 0
            continue
        out.append(b)
        zeros = zeros + 1 if b == 0 else 0
    return bytes(out)


def _read_ue(data: bytes, bit: int) -> tuple[int, int]:
    """An unsigned Exp-Golomb value at ``bit``; returns (value, next bit)."""
    zeros = 0
    while not (data[bit >> 3] >> (7 - (bit & 7))) & 1:
        zeros += 1
        bit += 1
    bit += 1
    value = 0
    for _ in range(zeros):
        value = (value << 1) | ((data[bit >> 3] >> (7 - (bit & 7))) & 1)
        bit += 1
    return (1 << zeros) - 1 + value, bit


def sps_id(nal: bytes) -> int:
    """seq_parameter_set_id of an SPS NAL (after profile, constraint flags and level)."""
    return _read_ue(_rbsp(nal[:64]), 24)[0]


def pps_id(nal: bytes) -> int:
    """pic_parameter_set_id of a PPS NAL."""
    return _read_ue(_rbsp(nal[:16]), 0)[0]


def annexb_nals(data: bytes) -> list[bytes]:
    """The NAL units of an Annex B byte stream (start codes 00 00 01 / 00 00 00 01)."""
    nals, i, n = [], 0, len(data)
    starts = []
    while True:
        j = data.find(b"\x00\x00\x01", i)
        if j < 0:
            break
        starts.append(j + 3)
        i = j + 3
    for k, s in enumerate(starts):
        e = starts[k + 1] - 3 if k + 1 < len(starts) else n
        while e > s and data[e - 1] == 0:  # trailing zero of a 4-byte start code
            e -= 1
        if e > s:
            nals.append(data[s:e])
    return nals


def length_prefixed(nals: list[bytes], size: int = 4) -> bytes:
    return b"".join(len(x).to_bytes(size, "big") + x for x in nals)


def split_length_prefixed(data: bytes, size: int = 4) -> list[bytes]:
    nals, i = [], 0
    while i + size <= len(data):
        n = int.from_bytes(data[i:i + size], "big")
        nals.append(data[i + size:i + size + n])
        i += size + n
    return nals


@dataclass
class AvcC:
    """An ``AVCDecoderConfigurationRecord`` (ISO/IEC 14496-15): NAL length size and parameter sets."""

    length_size: int
    sps: list[bytes] = field(default_factory=list)
    pps: list[bytes] = field(default_factory=list)

    @classmethod
    def parse(cls, data: bytes | None) -> AvcC | None:
        """None unless ``data`` is a well-formed avcC (version 1)."""
        if not data or len(data) < 7 or data[0] != 1:
            return None
        try:
            rec = cls((data[4] & 3) + 1)
            i = 6
            for _ in range(data[5] & 31):
                n = int.from_bytes(data[i:i + 2], "big")
                rec.sps.append(bytes(data[i + 2:i + 2 + n]))
                i += 2 + n
            count = data[i]
            i += 1
            for _ in range(count):
                n = int.from_bytes(data[i:i + 2], "big")
                rec.pps.append(bytes(data[i + 2:i + 2 + n]))
                i += 2 + n
        except IndexError:
            return None
        if not rec.sps or not rec.pps or any(len(x) < 4 for x in rec.sps) or i > len(data):
            return None
        return rec

    def to_bytes(self) -> bytes:
        """The record, with profile and level the highest and compatibility flags the common ones
        of its SPSs (the stream holds pictures of each)."""
        profile = max(s[1] for s in self.sps)
        compat = 0xFF
        for s in self.sps:
            compat &= s[2]
        level = max(s[3] for s in self.sps)
        out = bytearray([1, profile, compat, level, 0xFC | (self.length_size - 1), 0xE0 | len(self.sps)])
        for s in self.sps:
            out += len(s).to_bytes(2, "big") + s
        out.append(len(self.pps))
        for p in self.pps:
            out += len(p).to_bytes(2, "big") + p
        if profile not in (66, 77, 88):  # High profiles (as FFmpeg writes): chroma format, bit depths
            out += bytes([0xFC | 1, 0xF8, 0xF8, 0])  # 4:2:0, 8-bit (all that is copied), no SPS ext
        return bytes(out)


def is_idr(data: bytes, length_size: int) -> bool:
    """Whether a length-prefixed access unit holds an IDR slice."""
    return any(n and n[0] & 31 == NAL_IDR for n in split_length_prefixed(data, length_size))


def is_reference(data: bytes, length_size: int) -> bool:
    """Whether a length-prefixed access unit may be referenced by later pictures: any of its
    slices has a non-zero ``nal_ref_idc`` (or it holds no slice). A picture that is not is
    never needed to decode another, so a decoder can skip it when it is not shown."""
    i, slices = 0, 0
    while i + length_size < len(data):
        n = int.from_bytes(data[i:i + length_size], "big")
        header = data[i + length_size] if n else 0  # an empty NAL has no header byte
        if header & 31 in (NAL_SLICE, NAL_IDR):
            if header & 0x60:
                return True
            slices += 1
        i += length_size + n
    return slices == 0


@dataclass
class Pkt:
    """One demuxed video packet, held as bytes (decode order); ``ref``: see :func:`is_reference`."""

    data: bytes
    pts: int
    dts: int | None
    key: bool
    ref: bool = True


@dataclass
class Gop:
    """Packets from one keyframe to the next, in decode order."""

    packets: list[Pkt]
    idr: bool

    @property
    def key_pts(self) -> int:
        return self.packets[0].pts

    @property
    def min_pts(self) -> int:
        return min(p.pts for p in self.packets)

    @property
    def max_pts(self) -> int:
        return max(p.pts for p in self.packets)


def clean_prefix(gop: Gop, end_pts: int) -> int:
    """The most packets, from the start of ``gop`` in decode order, that show exactly its first
    frames and none at or after ``end_pts``: a prefix whose largest pts is its n-th smallest."""
    shown = sorted(p.pts for p in gop.packets)
    best, top = 0, None
    for n, p in enumerate(gop.packets, 1):
        top = p.pts if top is None else max(top, p.pts)
        if top >= end_pts:
            break
        if top == shown[n - 1] and shown[0] == gop.key_pts:
            best = n
    return best


def copy_span(gops: list[Gop], start_pts: int, end_pts: int) -> tuple[int, int, int] | None:
    """What of ``gops`` can be copied into the clip of frames ``[start_pts, end_pts)``:
    ``(a, b, n)``, the GOPs ``gops[a:b]`` whole and the first ``n`` packets of ``gops[b]``
    (:func:`clean_prefix`), or None. A whole GOP starts with an IDR at or after ``start_pts``,
    shows only frames from its keyframe up to the next GOP's keyframe, and ends before
    ``end_pts``; the longest run of them is taken, and a partial GOP only after it or alone."""
    best, run = None, None
    for i, g in enumerate(gops):
        nxt = gops[i + 1].key_pts if i + 1 < len(gops) else None
        ok = (g.idr and g.key_pts >= start_pts and g.min_pts == g.key_pts and g.max_pts < end_pts
              and (nxt is None or g.max_pts < nxt))
        if ok:
            run = (run[0], i + 1) if run and run[1] == i else (i, i + 1)
            if best is None or run[1] - run[0] > best[1] - best[0]:
                best = run
        else:
            run = None
    if best is None:  # no whole GOP: part of the first IDR GOP that starts inside the clip
        first = next((i for i, g in enumerate(gops) if g.idr and start_pts <= g.key_pts < end_pts), None)
        if first is None:
            return None
        best = (first, first)
    a, b = best
    g = gops[b] if b < len(gops) else None
    n = clean_prefix(g, end_pts) if g is not None and g.idr and g.key_pts < end_pts else 0
    return (a, b, n) if b > a or n else None


def decode_times(pts_in_decode_order: list[int]) -> list[int]:
    """Strictly increasing decode timestamps, each at or before its packet's pts: the i-th
    smallest pts shifted back by the stream's largest reordering."""
    shown = sorted(pts_in_decode_order)
    shift = max(max(s - p for s, p in zip(shown, pts_in_decode_order, strict=True)), 0)
    return [s - shift for s in shown]


def free_ids(avcc: AvcC, count: int) -> list[int]:
    """``count`` parameter-set ids neither the source's SPSs nor its PPSs use."""
    used = {sps_id(s) for s in avcc.sps} | {pps_id(p) for p in avcc.pps}
    free = [i for i in range(1, 32) if i not in used]
    if len(free) < count:
        raise ValueError("no free parameter-set id")
    return free[:count]

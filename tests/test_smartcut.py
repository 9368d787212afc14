"""Stream-copied clips (``clips.stream_copy``): which GOPs can be copied, the H.264 pieces that
splice re-encoded heads and tails onto copied packets, and whole clips that decode to exactly the
source's frames (the copied ones bit for bit)."""

from __future__ import annotations

from fractions import Fraction
from types import SimpleNamespace

import av
import numpy as np
import pytest
from media import moving, write_video

from pipeline.config import Config, with_changes
from transforms.clips import read_clips, staged_clip_ok
from transforms.h264 import (
    AvcC,
    Gop,
    Pkt,
    annexb_nals,
    clean_prefix,
    copy_span,
    decode_times,
    length_prefixed,
    pps_id,
    split_length_prefixed,
    sps_id,
)
from transforms.rows import ClipRow

# Decode order of one x264-like GOP of 7 frames: I0 P3 B1 B2 P6 B4 B5 (display numbers).
ORDER = [0, 3, 1, 2, 6, 4, 5]


def gop(first: int, idr: bool = True, order=ORDER) -> Gop:
    return Gop([Pkt(b"", first + k, None, k == 0) for k in order], idr)


@pytest.mark.parametrize("end, expected", [
    (1, 1), (3, 1),  # I0 alone (P3 is needed by B1 B2, and shows at 3)
    (4, 4), (6, 4),  # I0 P3 B1 B2
    (7, 7), (100, 7),  # all of it
])
def test_clean_prefix(end, expected):
    assert clean_prefix(gop(0), end) == expected


@pytest.mark.parametrize("start, end, expected", [
    (0, 21, (0, 3, 0)),  # every GOP whole
    (2, 21, (1, 3, 0)),  # the first starts before the clip: its part is re-encoded
    (2, 18, (1, 2, 4)),  # GOP 1 whole, then I14 P17 B15 B16 of GOP 2
    (2, 11, (1, 1, 4)),  # no whole GOP: the start of GOP 1
    (2, 8, (1, 1, 1)),  # just its IDR
    (2, 7, None),  # no keyframe inside the clip
    (8, 21, (2, 3, 0)),
])
def test_copy_span(start, end, expected):
    assert copy_span([gop(0), gop(7), gop(14)], start, end) == expected


def test_copy_span_needs_idr_and_closed_gops():
    assert copy_span([gop(0), gop(7, idr=False), gop(14)], 2, 21) == (2, 3, 0)
    # Leading pictures (shown before their keyframe) reach into the GOP before: not copied whole.
    leading = Gop([Pkt(b"", p, None, p == 7) for p in (7, 5, 6, 10, 8, 9)], True)
    assert copy_span([gop(0, order=[0, 3, 1, 2, 4]), leading, gop(14)], 2, 21) == (2, 3, 0)


def test_decode_times_increase_and_never_pass_pts():
    pts = [p * 512 for p in ORDER + [o + 7 for o in ORDER]]
    dts = decode_times(pts)
    assert dts == sorted(dts) and len(set(dts)) == len(dts)
    assert all(d <= p for d, p in zip(dts, pts, strict=True))
    assert dts[0] == -512  # shifted back by the one frame of reordering, no more


def test_nal_units_and_avcc_round_trip():
    sps, pps, idr = b"\x67\x64\x00\x1f\xac", b"\x68\xee\x3c\x80", b"\x65\x88\x84\x00\x00\x03\x01"
    assert annexb_nals(b"\x00\x00\x00\x01" + sps + b"\x00\x00\x01" + pps + b"\x00\x00\x00\x01" + idr) == [sps, pps, idr]
    assert split_length_prefixed(length_prefixed([sps, idr])) == [sps, idr]
    rec = AvcC(4, [sps], [pps])
    back = AvcC.parse(rec.to_bytes())
    assert (back.length_size, back.sps, back.pps) == (4, [sps], [pps])
    assert rec.to_bytes()[-4:] == b"\xfd\xf8\xf8\x00"  # High profile (100): 4:2:0, 8-bit, as ISO 14496-15 asks
    assert AvcC.parse(b"\x00\x00\x00\x01" + sps) is None  # Annex B extradata is not an avcC


def test_x264_takes_the_parameter_set_id():
    from transforms.smartcut import encode_part

    class S:  # the stream attributes encode_part reads
        codec_context = SimpleNamespace(width=64, height=48)
        time_base = Fraction(1, 25)
        average_rate = 25

    frames = []
    for i in range(3):
        f = av.VideoFrame.from_ndarray(moving(i, 64, 48), format="rgb24").reformat(format="yuv420p")
        f.pts = i
        frames.append(f)
    cfg = Config().clips
    sps, pps, units = encode_part(iter(frames), S, 7, cfg, lambda f: None)
    assert (sps_id(sps), pps_id(pps), len(units)) == (7, 7, 3)
    assert sorted(u[1] for u in units) == [0, 1, 2]
    assert not any(n[0] & 31 in (7, 8) for u in units for n in split_length_prefixed(u[0]))


def source_frames(path):
    with av.open(path) as c:
        return [(f.pts, f.to_ndarray(format="yuv420p")) for f in c.decode(video=0)]


def row(src, frames, start, end, fps=25, n=None):
    """A clip of frames ``[start, end)``; ``end`` None: to the end of the video (no end pts)."""
    count = (n or len(frames)) - start if end is None else end - start
    return ClipRow(clip_id=f"v_0000000_{start:07d}", video_id="v", source=src, start_frame=start,
                   end_frame=start + count, start_time=start / fps, end_time=(start + count) / fps,
                   fps=float(fps), width=320, height=180, rotation=0, num_frames=count,
                   duration_s=count / fps, reject_reasons=[], start_pts=frames[start][0],
                   end_pts=None if end is None else frames[end][0] if end < len(frames) else None)


@pytest.fixture(scope="module")
def bframes_source(tmp_path_factory):
    """100 frames of motion, x264 with B-frames and an IDR every 24 frames."""
    path = str(tmp_path_factory.mktemp("src") / "b.mp4")
    write_video(path, n=100, fps=25, gop=24, options={"preset": "veryfast", "bf": "3", "sc_threshold": "0"})
    return path


@pytest.mark.parametrize("start, end, copied_at_least, parameter_sets", [
    # head 5-23 encoded, GOP 24-47 whole, part of GOP 48, and a tail unless that part reaches 60
    (5, 60, 24 + 1, {2, 3}),
    (24, 48, 24, {1}),  # exactly one GOP: all copied, nothing encoded
    (26, 40, 0, {1}),  # no keyframe inside: all encoded (plain x264 stream)
    (50, None, 24, {2}),  # the last clip (no end pts), to the end of the video: head 50-71 encoded
])
def test_copied_clip_holds_exactly_the_source_frames(bframes_source, tmp_path, start, end, copied_at_least,
                                                     parameter_sets):
    src = source_frames(bframes_source)
    with av.open(bframes_source) as c:
        assert any(p.pts is not None and p.dts is not None and p.pts > p.dts for p in c.demux(video=0))  # reordered
    clip = row(bframes_source, src, start, end)
    got = {}
    for copy in (True, False):
        cfg = with_changes(Config(), clips={"stream_copy": copy})
        (r, media, _, err), = read_clips(bframes_source, [clip], cfg, None, str(tmp_path / str(copy)))
        assert err is None and media["out_frames"] == clip.num_frames
        assert staged_clip_ok(media["mp4"], clip.num_frames)
        with av.open(media["mp4"]) as c:
            s = c.streams.video[0]
            frames = [f for f in c.decode(s)]
            times = [float(f.pts * s.time_base) for f in frames]
            got[copy] = [f.to_ndarray(format="yuv420p") for f in frames], AvcC.parse(s.codec_context.extradata)
        assert times == pytest.approx([i / 25 for i in range(clip.num_frames)], abs=1e-3)
    want = [a for _, a in src[start:start + clip.num_frames]]
    for copy, (frames, avcc) in got.items():
        assert len(frames) == len(want)
        exact = sum(np.array_equal(f, w) for f, w in zip(frames, want, strict=True))
        worst = min(10 * np.log10(255 ** 2 / max(np.mean((f.astype(float) - w) ** 2), 1e-9))
                    for f, w in zip(frames, want, strict=True))
        assert worst > 35  # every frame is the right one (a neighbour would be far off)
        if copy:
            assert exact >= copied_at_least
            # The source's parameter sets plus one pair per re-encoded part, all in one avcC.
            assert len(avcc.sps) == len(avcc.pps) and len(avcc.sps) in parameter_sets
        else:
            assert exact < copied_at_least or copied_at_least == 0


def test_clips_of_one_video_in_a_row_and_the_thumbnail(bframes_source, tmp_path):
    from PIL import Image

    src = source_frames(bframes_source)
    clips = [row(bframes_source, src, a, b) for a, b in ((0, 30), (30, 70), (70, None))]
    out = list(read_clips(bframes_source, clips, Config(), None, str(tmp_path)))
    assert [e for *_, e in out] == [None, None, None]
    for clip, media, _, _ in out:
        with av.open(media["mp4"]) as c:
            assert sum(1 for _ in c.decode(video=0)) == clip.num_frames
        mid = src[clip.start_frame + (clip.num_frames - 1) // 2][1][:180]  # Y plane of the middle frame
        thumb = np.asarray(Image.open(media["jpg"]).convert("L"), dtype=float)
        assert np.abs(thumb - mid).mean() < 6


def test_model_frames_are_the_same_when_the_clip_is_copied(bframes_source, tmp_path):
    """The model stages' frames come from the same decode whether the clip's GOPs are copied or
    encoded, and a clip written while scoring is copied as one written without scoring."""
    from transforms.model_frames import FrameSpec

    src = source_frames(bframes_source)
    clips = [row(bframes_source, src, 5, 60), row(bframes_source, src, 60, None)]
    specs = {"ends": FrameSpec(lambda n: [0, n // 2, n - 1], lambda w, h: (64, 36))}

    def bit_exact(mp4, clip):  # frames equal to the source's: the copied ones
        want = [a for _, a in src[clip.start_frame:clip.start_frame + clip.num_frames]]
        with av.open(mp4) as c:
            return sum(np.array_equal(f.to_ndarray(format="yuv420p"), w) for f, w in zip(c.decode(video=0), want))

    got = {}
    for copy in (True, False):
        cfg = with_changes(Config(), clips={"stream_copy": copy})
        out = list(read_clips(bframes_source, clips, cfg, specs, str(tmp_path / str(copy))))
        assert [e for *_, e in out] == [None, None]
        got[copy] = [f["ends"] for _, _, f, _ in out]
        exact = [bit_exact(m["mp4"], c) for c, m, _, _ in out]
        plain = list(read_clips(bframes_source, clips, cfg, None, str(tmp_path / f"plain{copy}")))
        assert [bit_exact(m["mp4"], c) for c, m, _, _ in plain] == exact
        assert min(exact) >= 24 if copy else max(exact) < 24
    for copied, encoded in zip(got[True], got[False], strict=True):
        assert copied.shape == (3, 36, 64, 3) and np.array_equal(copied, encoded)


def test_a_splice_that_fails_falls_back_to_encoding(bframes_source, tmp_path, monkeypatch, caplog):
    from transforms import smartcut

    def broken(*args, **kwargs):
        raise ValueError("the spliced clip holds 3 frames of 55")

    monkeypatch.setattr(smartcut, "write_copied", broken)
    src = source_frames(bframes_source)
    clip = row(bframes_source, src, 5, 60)
    (_, media, _, err), = read_clips(bframes_source, [clip], Config(), None, str(tmp_path))
    assert err is None and "encoding the whole clip" in caplog.text
    with av.open(media["mp4"]) as c:
        assert len(AvcC.parse(c.streams.video[0].codec_context.extradata).sps) == 1  # one x264 stream
        assert sum(1 for _ in c.decode(video=0)) == 55


@pytest.mark.parametrize("ext, copies", [(".mp4", True), (".mov", True), (".mkv", True), (".ts", False)])
def test_containers_that_carry_an_avcc_are_copied(tmp_path, ext, copies):
    """MP4, MOV and MKV keep H.264 parameter sets in an avcC: GOPs are copied. MPEG-TS carries
    them in the stream (Annex B): its clips are encoded whole, still frame-exact."""
    path = write_video(str(tmp_path / f"v{ext}"), n=60, fps=25, gop=20)
    src = source_frames(path)
    clip = row(path, src, 3, 50)
    (_, media, _, err), = read_clips(path, [clip], Config(), None, str(tmp_path / "out"))
    assert err is None
    want = [a for _, a in src[3:50]]
    with av.open(media["mp4"]) as c:
        got = [f.to_ndarray(format="yuv420p") for f in c.decode(video=0)]
    assert len(got) == 47
    exact = sum(np.array_equal(f, w) for f, w in zip(got, want, strict=True))
    assert (exact >= 20) == copies  # GOP 20-39 at least, when copied


def test_clips_far_apart_seek_instead_of_reading_through(tmp_path):
    from transforms.smartcut import Copier

    path = write_video(str(tmp_path / "long.mp4"), n=300, fps=25, gop=25)
    src = source_frames(path)
    clips = [row(path, src, 10, 40), row(path, src, 250, 275), row(path, src, 275, None)]
    with av.open(path) as c:
        copier = Copier.for_source(c, Config().clips)
        for clip in clips:
            n, _ = copier.write(clip, str(tmp_path / f"{clip.start_frame}.mp4"), Config().clips)
            assert n == clip.num_frames
        assert copier.reader.seeks == 1  # from GOP 25 (1 s) to frame 250 (10 s); never back
    for clip in clips:
        with av.open(str(tmp_path / f"{clip.start_frame}.mp4")) as c:
            got = [f.to_ndarray(format="yuv420p") for f in c.decode(video=0)]
        want = [a for _, a in src[clip.start_frame:clip.start_frame + clip.num_frames]]
        assert len(got) == len(want) and sum(np.array_equal(g, w) for g, w in zip(got, want, strict=True)) >= 15


def test_frames_an_edit_list_hides_never_reach_a_clip(tmp_path):
    """An mp4 cut from a longer one keeps the GOP before its first shown frame, hidden by an edit
    list (packets before 0, marked discard): clips hold only the shown frames, copied or not."""
    full = write_video(str(tmp_path / "full.mp4"), n=65, fps=25, gop=20)
    cut = str(tmp_path / "cut.mp4")
    with av.open(full) as c, av.open(cut, "w", format="mp4") as out:
        s = c.streams.video[0]
        o = out.add_stream_from_template(s)
        step = int(1 / (25 * s.time_base))
        for p in c.demux(s):
            if p.dts is not None:
                p.pts, p.dts, p.stream = p.pts - 5 * step, p.dts - 5 * step, o
                out.mux(p)
    with av.open(cut) as c:
        assert sum(p.is_discard for p in c.demux(video=0)) == 5
    src = source_frames(cut)  # the 60 shown frames, pts 0, 512, ...
    assert len(src) == 60 and src[0][0] == 0
    clips = [row(cut, src, 0, 30), row(cut, src, 30, None)]
    out = list(read_clips(cut, clips, Config(), None, str(tmp_path / "out")))
    assert [e for *_, e in out] == [None, None]
    for clip, media, _, _ in out:
        with av.open(media["mp4"]) as c:
            got = [f.to_ndarray(format="yuv420p") for f in c.decode(video=0)]
        want = [a for _, a in src[clip.start_frame:clip.start_frame + clip.num_frames]]
        assert len(got) == len(want) == 30
        assert sum(np.array_equal(g, w) for g, w in zip(got, want, strict=True)) >= 15  # GOP 15-34 / 35-54


def test_unreferenced_pictures_are_found_and_skipping_them_changes_no_other_frame(bframes_source):
    """``is_reference``: the pictures it calls unreferenced can be left out of a decode (as the
    GOP decoder does before a clip's start and up to its middle frame) and every other frame
    still decodes bit for bit."""
    from transforms.h264 import is_reference

    with av.open(bframes_source) as c:
        s = c.streams.video[0]
        packets = [(bytes(p), p.pts, p.dts, p.is_keyframe) for p in c.demux(s) if p.size]
        extradata, tb = s.codec_context.extradata, s.time_base
    refs = [is_reference(d, 4) for d, *_ in packets]
    assert all(r for r, (*_, key) in zip(refs, packets) if key)
    assert 0 < refs.count(False) < len(refs)  # x264's B-frames outside the pyramid

    def decode(keep):
        dec = av.CodecContext.create("h264", "r")
        dec.extradata = extradata
        out = {}
        for (data, pts, dts, _), k in zip(packets, keep):
            if k:
                pkt = av.Packet(data)
                pkt.pts, pkt.dts, pkt.time_base = pts, dts, tb
                out.update({f.pts: f.to_ndarray(format="yuv420p") for f in dec.decode(pkt)})
        out.update({f.pts: f.to_ndarray(format="yuv420p") for f in dec.decode(None)})
        return out

    every, some = decode([True] * len(packets)), decode(refs)
    assert len(every) == len(packets) and len(some) == refs.count(True)
    assert all(np.array_equal(some[p], every[p]) for p in some)


def test_skipping_deblocking_on_unreferenced_pictures_changes_only_them_and_little(bframes_source):
    """``clips.skip_nonref_deblock``: decoding for re-encoding skips the deblocking filter only
    on pictures nothing references, so every reference picture is bit for bit the full decode's
    and the others stay close to it (far closer than the CRF 20 re-encode that follows)."""
    from transforms import decode
    from transforms.h264 import is_reference

    with av.open(bframes_source) as c:
        ref_at = {p.pts: is_reference(bytes(p), 4) for p in c.demux(video=0) if p.size}

    def frames(skip):
        with av.open(bframes_source) as c:
            return {df.pts: df.frame.to_ndarray(format="yuv420p").astype(float)
                    for df in decode.iter_frames(c, bframes_source, skip_loop_filter=skip)}

    full, fast = frames(False), frames("noref")
    assert full.keys() == fast.keys() == ref_at.keys()
    changed = [p for p in full if not np.array_equal(full[p], fast[p])]
    assert changed and all(not ref_at[p] for p in changed)  # the option is applied, to them only
    worst = max(np.mean((full[p] - fast[p]) ** 2) for p in changed)
    assert 10 * np.log10(255 ** 2 / worst) > 40  # dB
    assert Config().clips.skip_nonref_deblock


@pytest.mark.parametrize("copy", [True, False])
def test_clip_writing_decodes_as_skip_nonref_deblock_says(bframes_source, tmp_path, copy):
    """The setting reaches both decoders of clip writing (the GOP decoder of stream copy and
    the whole-clip reader): with it some of the frames the model stages get change, without it
    none differs from a plain full decode."""
    from transforms.model_frames import FrameSpec

    src = source_frames(bframes_source)
    clip = row(bframes_source, src, 5, 60)
    every = {"all": FrameSpec(lambda n: list(range(n)), lambda w, h: (w, h))}

    def tapped(skip):
        cfg = with_changes(Config(), clips={"stream_copy": copy, "skip_nonref_deblock": skip})
        (_, media, frames, err), = read_clips(bframes_source, [clip], cfg, every, str(tmp_path / f"{copy}{skip}"))
        assert err is None and len(frames["all"]) == 55
        return frames["all"]

    fast, full = tapped(True), tapped(False)
    differs = [not np.array_equal(a, b) for a, b in zip(fast, full, strict=True)]
    assert 0 < sum(differs) < len(differs)
    with av.open(bframes_source) as c:  # full is what an ordinary decode gives, frame for frame
        want = [f.to_ndarray(format="rgb24") for i, f in enumerate(c.decode(video=0)) if 5 <= i < 60]
    assert all(np.array_equal(a, b) for a, b in zip(full, want, strict=True))


def test_long_shots_split_at_keyframes_are_copied_whole(tmp_path):
    """``clips.keyframe_splits``: a 20 s shot with an IDR every 2 s and clips of at most 3 s
    becomes ten 2 s clips that start on keyframes, so every frame is copied, none encoded."""
    from transforms.analyze import analyze_video, clip_rows

    path = write_video(str(tmp_path / "long.mp4"), n=200, fps=10, gop=20)
    cfg = with_changes(Config(), clips={"max_duration_s": 3.0, "min_duration_s": 0.5})
    a = analyze_video(path, cfg)
    assert list(a.keys) == list(range(0, 200, 20)) and a.cuts.scenes == [(0, 200)]
    rows = clip_rows(a, cfg)
    assert [(r.start_frame, r.end_frame) for r in rows] == [(i, i + 20) for i in range(0, 200, 20)]
    plain = clip_rows(a, with_changes(cfg, clips={"keyframe_splits": False}))
    assert [(r.start_frame, r.end_frame) for r in plain][:2] == [(0, 29), (29, 58)]  # 7 equal pieces
    src = source_frames(path)
    out = list(read_clips(path, rows, cfg, None, str(tmp_path / "clips")))
    assert [e for *_, e in out] == [None] * 10
    with av.open(path) as c:
        source_packets = [bytes(p) for p in c.demux(video=0) if p.size]
    for clip, media, _, _ in out:
        with av.open(media["mp4"]) as c:
            packets = [bytes(p) for p in c.demux(video=0) if p.size]
        with av.open(media["mp4"]) as c:
            frames = [f.to_ndarray(format="yuv420p") for f in c.decode(video=0)]
        assert packets == source_packets[clip.start_frame:clip.end_frame]  # copied, not encoded
        assert all(np.array_equal(f, w) for f, (_, w) in zip(frames, src[clip.start_frame:clip.end_frame], strict=True))

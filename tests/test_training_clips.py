"""Training-ready clips (issue 16 item 3): ``clips.size`` (crop / pad, size buckets), ``clips.fps``
(resampled by timestamps), ``clips.max_frames``; exact sizes, frame counts, picked frames and
timing of what is written."""

from __future__ import annotations

import json
import tarfile
from types import SimpleNamespace

import av
import numpy as np
import pytest
from media import moving, write_video

from pipeline.config import Config, with_changes
from transforms.clips import read_clips
from transforms.rows import ClipRow
from transforms.shape import Geometry, geometry, max_clip_seconds, output_fps, output_frames, parse_size, resample


def clips_cfg(**kw):
    base = dict(size=(), fit="crop", max_side=0, fps=0.0, max_frames=0, max_duration_s=10.0)
    return SimpleNamespace(**(base | kw))


@pytest.mark.parametrize("width, height, kw, expected", [
    # No target: aspect kept, max_side bounds the longest side, never upscaled.
    (1920, 1080, {"max_side": 512}, Geometry((512, 288), (512, 288))),
    (176, 144, {"max_side": 512}, Geometry((176, 144), (176, 144))),
    # One target, crop: scale to cover, keep the centre.
    (640, 480, {"size": ("320x180",)}, Geometry((320, 180), (320, 240), (0, 30))),
    (1920, 1080, {"size": ("320x180",)}, Geometry((320, 180), (320, 180))),
    # One target, pad: scale to fit, centred on black.
    (640, 480, {"size": ("320x180",), "fit": "pad"}, Geometry((320, 180), (240, 180), (40, 0), pad=True)),
    # A smaller source reaches a fixed target (upscaled).
    (176, 144, {"size": ("352x288",)}, Geometry((352, 288), (352, 288))),
    # Buckets: the nearest aspect ratio wins; a portrait clip goes to the portrait bucket.
    (1080, 1920, {"size": ("512x288", "288x512", "384x384")}, Geometry((288, 512), (288, 512))),
    (500, 480, {"size": ("512x288", "288x512", "384x384")}, Geometry((384, 384), (400, 384), (8, 0))),
])
def test_geometry(width, height, kw, expected):
    assert geometry(width, height, clips_cfg(**kw)) == expected


@pytest.mark.parametrize("bad", ["512", "511x288", "0x0", "axb"])
def test_bad_sizes_are_refused(bad):
    with pytest.raises(ValueError, match="clips.size"):
        parse_size(bad)
    with pytest.raises(ValueError, match="clips.size"):
        with_changes(Config(), clips={"size": (bad,)})


class _F:
    def __init__(self, i, t):
        self.i, self.time = i, t


@pytest.mark.parametrize("times, source_fps, fps, expected", [
    # 30 -> 15: every other frame.
    ([i / 30 for i in range(12)], 30, 15, [0, 2, 4, 6, 8, 10]),
    # 30 -> 12: nearest in time, the earlier frame on a tie (k * 2.5).
    ([i / 30 for i in range(15)], 30, 12, [0, 2, 5, 7, 10, 12]),
    # 25 -> 24: one frame in 25 dropped.
    ([i / 25 for i in range(25)], 25, 24, list(range(13)) + list(range(14, 25))),
    # Variable rate (60 fps, then 20 fps) -> constant 10 fps, by the timestamps.
    ([i / 60 for i in range(30)] + [0.5 + i / 20 for i in range(10)], 40, 10,
     [0, 6, 12, 18, 24, 30, 32, 34, 36, 38]),
])
def test_resample_picks_frames_by_time(times, source_fps, fps, expected):
    frames = [_F(i, 7.0 + t) for i, t in enumerate(times)]  # absolute times: the clip starts at 7 s
    picked = [f.i for f in resample(iter(frames), source_fps, fps, len(expected))]
    assert picked == expected


def test_resample_never_pads_a_short_source():
    frames = [_F(i, i / 30) for i in range(10)]
    assert [f.i for f in resample(iter(frames), 30, 15, 8)] == [0, 2, 4, 6, 8]


def test_output_rate_and_length():
    c = clips_cfg(fps=12.0, max_frames=40)
    assert output_fps(30, c) == 12 and output_fps(10, c) == 10  # never above the source's rate
    assert output_frames(60, 30, c) == 24 and output_frames(100, 10, c) == 40
    assert max_clip_seconds(30, c) == pytest.approx(40 / 12)
    assert max_clip_seconds(8, c) == 5.0  # 40 frames at the source's own 8 fps
    assert max_clip_seconds(30, clips_cfg()) == 10.0


def barcode(i, w, h):
    """Frame ``i`` shows its number in binary: 6 stripes across the middle 60% of the picture
    (white: 1), mid-grey elsewhere; it reads back after any scale, centre crop or pad."""
    img = np.full((h, w, 3), 128, np.uint8)
    for j in range(6):
        y0 = int((0.2 + 0.1 * j) * h)
        img[y0:int((0.3 + 0.1 * j) * h)] = 255 if (i >> j) & 1 else 0
    return img


def read_barcode(grey, geom, height):
    """The number of a :func:`barcode` frame written with ``geom`` from a source ``height`` tall."""
    sh, dy = geom.scaled[1], geom.offset[1]
    n = 0
    for j in range(6):
        y = round((0.25 + 0.1 * j) * height * sh / height + (dy if geom.pad else -dy))
        n |= (int(grey[y, grey.shape[1] // 2]) > 128) << j
    return n


def decoded(path):
    with av.open(path) as c:
        s = c.streams.video[0]
        frames = [f.to_ndarray(format="gray") for f in c.decode(s)]
        return s.codec_context.width, s.codec_context.height, s.average_rate, frames


def clip_row(source, n, fps, width, height, rotation=0):
    return ClipRow(clip_id=f"v_0000000_{n:07d}", video_id="v", source=source, start_frame=0, end_frame=n,
                   start_time=0.0, end_time=n / fps, fps=float(fps), width=width, height=height,
                   rotation=rotation, num_frames=n, duration_s=n / fps, reject_reasons=[])


def test_written_clip_has_the_target_size_rate_and_frames(tmp_path):
    src = write_video(str(tmp_path / "ramp.mp4"), n=60, fps=30, gop=30, frame=barcode, size=(320, 240))
    cfg = with_changes(Config(), clips={"size": ("160x90",), "fps": 12.0})
    (row, media, _, err), = read_clips(src, [clip_row(src, 60, 30, 320, 240)], cfg, None, str(tmp_path / "out"))
    assert err is None
    assert (media["out_width"], media["out_height"], media["out_fps"], media["out_frames"]) == (160, 90, 12.0, 24)
    w, h, rate, frames = decoded(media["mp4"])
    assert (w, h, rate) == (160, 90, 12)
    geom = geometry(320, 240, cfg.clips)
    assert [read_barcode(f, geom, 240) for f in frames] == [round(k * 2.5 - 0.01) for k in range(24)]  # nearest k / 12 s


def test_pad_puts_black_bars_and_max_frames_caps(tmp_path):
    src = write_video(str(tmp_path / "ramp.mp4"), n=40, fps=25, frame=barcode, size=(320, 240))
    cfg = with_changes(Config(), clips={"size": ("320x180",), "fit": "pad", "max_frames": 30})
    (row, media, _, err), = read_clips(src, [clip_row(src, 30, 25, 320, 240)], cfg, None, str(tmp_path / "out"))
    assert err is None and media["out_frames"] == 30
    w, h, _, frames = decoded(media["mp4"])
    assert (w, h, len(frames)) == (320, 180, 30)
    assert frames[10][:, :30].max() <= 20 and frames[10][:, -30:].max() <= 20  # the bars are black
    geom = geometry(320, 240, cfg.clips)
    assert [read_barcode(f, geom, 240) for f in frames] == list(range(30))


def test_rotated_source_goes_to_the_bucket_of_its_displayed_shape(tmp_path):
    src = write_video(str(tmp_path / "phone.mp4"), n=20, fps=25, frame=barcode, size=(320, 180), rotation=-90)
    cfg = with_changes(Config(), clips={"size": ("160x90", "90x160")})
    (row, media, _, err), = read_clips(src, [clip_row(src, 20, 25, 180, 320, rotation=90)], cfg, None,
                                       str(tmp_path / "out"))
    assert err is None
    w, h, _, frames = decoded(media["mp4"])
    assert (w, h, len(frames)) == (90, 160, 20)
    # Turned a quarter clockwise: the stripes stand, bit 0 (the coded top) at the right.
    picture = frames[5].astype(float)
    assert picture[:, 67].std() < 10 and picture[80].std() > 40
    assert [picture[80, round((0.75 - 0.1 * j) * 90)] > 128 for j in range(6)] == [True, False, True, False, False, False]


def test_short_source_is_an_error_not_a_padded_clip(tmp_path):
    src = write_video(str(tmp_path / "short.mp4"), n=20, fps=30, frame=barcode)
    cfg = with_changes(Config(), clips={"fps": 15.0})
    (row, media, _, err), = read_clips(src, [clip_row(src, 30, 30, 320, 180)], cfg, None, str(tmp_path / "out"))
    assert media is None and "decodable frames" in err


@pytest.mark.parametrize("w, h, frames, by, label", [
    (512, 288, 70, ("aspect", "size", "frames"), "a178_512x288_f64"),
    (288, 512, 64, ("frames", "aspect"), "f64_a56"),
    (400, 384, 10, ("aspect", "frames"), "a100_f0"),
    (640, 480, 300, ("aspect", "frames"), "a133_f256"),
])
def test_bucket_labels(w, h, frames, by, label):
    from transforms.shards import bucket_label, shard_label, shard_name

    cfg = Config().write
    assert bucket_label(w, h, frames, by, cfg.aspect_buckets, cfg.frame_buckets) == label
    assert shard_label(shard_name(3, 1, label)) == label


def test_run_writes_training_ready_clips_into_bucketed_shard_sets(tmp_path):
    """`vidcurate run` with size buckets, a target rate and frame buckets; `vidcurate filter`
    keeps the sets; the trainer's loader draws every batch from one set."""
    from model_training.data import ClipBatches, DataConfig, shard_sets
    from pipeline.cli import main
    from pipeline.rundir import check_shard_name
    from pipeline.tables import read_rows

    src = tmp_path / "in"
    src.mkdir()
    write_video(str(src / "wide.mp4"), n=150, fps=25, size=(320, 180))
    write_video(str(src / "tall.mp4"), n=100, fps=25, size=(320, 180), rotation=-90)
    write_video(str(src / "square.mp4"), n=75, fps=30, size=(240, 240), frame=lambda i, w, h: moving(i, w, h))
    sets = ["--set", "clips.size=[160x90,90x160,128x128]", "--set", "clips.fps=12.5", "--set", "clips.max_frames=40",
            "--set", "write.bucket_by=[size,frames]", "--set", "write.frame_buckets=[16,32]",
            "--set", "filters.min_motion=null", "--set", "clips.min_duration_s=1"]
    assert main(["run", "--input", str(src), "--output", str(tmp_path / "run"), "--stages", "probe,cuts", *sets]) == 0
    rows = [r for r in read_rows(str(tmp_path / "run"), "clips") if r["keep"]]
    assert len(rows) >= 5
    for r in rows:
        check_shard_name(r["shard"])
        size, frames_label = r["shard"].split("-")[1].split("_")
        assert size == f"{r['out_width']}x{r['out_height']}"
        assert r["out_fps"] == 12.5 and r["out_frames"] <= 40
        assert frames_label == ("f32" if r["out_frames"] >= 32 else "f16" if r["out_frames"] >= 16 else "f0")
        assert r["out_frames"] == int(r["num_frames"] * 12.5 / r["fps"] + 1e-6)
    by_size = {r["out_width"] * 1000 + r["out_height"] for r in rows}
    assert by_size == {160090, 90160, 128128}
    # Inspected: stats and the report list the written sizes and the shard sets.
    from pipeline.report import build_report
    from pipeline.stats import render_stats, stats

    st = stats(str(tmp_path / "run"))
    assert sum(v["clips"] for v in st["shard_sets"].values()) == len(rows)
    assert set(st["shard_sets"]) == {r["shard"].split("-")[1] for r in rows}
    assert {k.split("@")[0] for k in st["written"]} == {"160x90", "90x160", "128x128"}
    text = render_stats(st)
    assert "shard sets" in text and "160x90@12.5" in text
    html = build_report(str(tmp_path / "run"), samples_per_score=False)
    assert "Shard sets" in html and "90x160_f" in html
    # Decided again: the kept clips and their shard sets stay (copied from the old shards).
    assert main(["filter", str(tmp_path / "run"), "--output", str(tmp_path / "f"), "--set", "filters.max_motion=1000"]) == 0
    again = {r["clip_id"]: r["shard"] for r in read_rows(str(tmp_path / "f"), "clips") if r["keep"]}
    assert {k: v.split("-")[1] for k, v in again.items()} == {r["clip_id"]: r["shard"].split("-")[1] for r in rows}
    # The loader: every batch from one shard set.
    urls = sorted(str(p) for p in (tmp_path / "run" / "current" / "shards").glob("*.tar"))
    labels = shard_sets(urls)
    assert len(labels) >= 3
    set_of = {}
    for label, members in labels.items():
        for u in members:
            with tarfile.open(u) as t:
                set_of |= {m.name.split(".")[0]: label for m in t if m.name.endswith(".json")}
    cfg = DataConfig(frames=4, stride=1, buckets=((90, 160), (160, 90), (128, 128)), batch_size=2)
    it = iter(ClipBatches(urls, cfg))
    drawn = [next(it) for _ in range(4)]
    assert all(len({set_of[k] for k in b["keys"]}) == 1 for b in drawn)
    assert all(float(x) == 12.5 for b in drawn for x in b["fps"])  # the written rate conditions the model
    assert len({set_of[b["keys"][0]] for b in drawn}) >= 2  # sets take turns


def _latent_shards(tmp_path, sets: dict[str, int], per_shard: int = 3) -> list[str]:
    """Latent shards (the `vidcurate encode` sample layout) named as bucketed shard sets."""
    import io

    from transforms.shards import TarWriter, shard_name

    urls = []
    for label, n_shards in sets.items():
        for b in range(n_shards):
            path = str(tmp_path / shard_name(b, 0, label))
            with TarWriter(path) as w:
                for i in range(per_shard):
                    buf = io.BytesIO()
                    np.save(buf, np.zeros((1, 4, 2, 2, 2), np.float16))
                    w.write({"__key__": f"{label}{b}s{i}", "latents.npy": buf.getvalue(),
                             "json": {"fps": 10.0, "motion_score": 1.0}})
            urls.append(path)
    return urls


def test_loader_sets_take_turns_and_resume_exactly(tmp_path):
    from model_training.data import ClipBatches, DataConfig

    urls = _latent_shards(tmp_path, {"f16": 1, "f32": 3})
    cfg = DataConfig(frames=4, batch_size=1)
    whole = ClipBatches(urls, cfg)
    it = iter(whole)
    keys = [next(it)["keys"][0] for _ in range(15)]
    sets = [k[:3] for k in keys[:12]]  # one epoch: 3 + 9 samples
    assert sets.count("f16") == 3 and sets.count("f32") == 9
    assert sets[:4].count("f16") == 1  # in proportion all through the epoch, not one set after the other
    first = ClipBatches(urls, cfg)
    it = iter(first)
    head = [next(it)["keys"][0] for _ in range(7)]
    resumed = ClipBatches(urls, cfg)
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))  # as a checkpoint stores it
    it = iter(resumed)
    assert head + [next(it)["keys"][0] for _ in range(8)] == keys


def test_shaper_reuses_one_scaler_and_matches_plain_reformat(tmp_path):
    """One swscale context per clip gives the same pixels as PyAV's per-frame reformat."""
    from transforms.shape import Shaper

    src = write_video(str(tmp_path / "m.mp4"), n=6, fps=25, size=(320, 180))
    shaper = Shaper(Geometry((160, 90), (160, 90)), 0, "area")
    with av.open(src) as c:
        for frame in c.decode(video=0):
            ours = shaper(frame).to_ndarray()
            plain = frame.reformat(width=160, height=90, format="yuv420p", interpolation="AREA").to_ndarray()
            assert np.array_equal(ours, plain)


def test_filter_cuts_a_no_clips_run_with_the_runs_clip_settings(tmp_path):
    from pipeline.cli import main
    from pipeline.tables import read_rows

    src = tmp_path / "in"
    src.mkdir()
    write_video(str(src / "wide.mp4"), n=100, fps=25, size=(320, 180))
    base = ["--set", "filters.min_motion=null", "--set", "clips.min_duration_s=1"]
    assert main(["run", "--input", str(src), "--output", str(tmp_path / "run"), "--stages", "probe,cuts", "--no-clips",
                 "--set", "clips.size=[160x90]", "--set", "clips.fps=10", *base]) == 0
    assert main(["filter", str(tmp_path / "run"), "--output", str(tmp_path / "f"), *base]) == 0
    kept = [r for r in read_rows(str(tmp_path / "f"), "clips") if r["keep"]]
    assert kept and all((r["out_width"], r["out_height"], r["out_fps"]) == (160, 90, 10.0) for r in kept)
    # A key given again wins.
    assert main(["filter", str(tmp_path / "run"), "--output", str(tmp_path / "g"), *base, "--set", "clips.fps=5"]) == 0
    assert {r["out_fps"] for r in read_rows(str(tmp_path / "g"), "clips") if r["keep"]} == {5.0}


def test_held_last_frame_fills_the_clip_to_its_end():
    # Ten frames 50 ms apart, the last one held until 0.8 s (a variable-rate clip): at 5 fps
    # the clip holds 4 frames; the last output time (0.6 s) still shows the held frame.
    frames = [_F(i, i * 0.05) for i in range(10)]
    assert [f.i for f in resample(iter(frames), 12.5, 5, 4, end=0.8)] == [0, 4, 8, 9]
    assert [f.i for f in resample(iter(frames), 12.5, 5, 4)] == [0, 4, 8]  # without the clip's end

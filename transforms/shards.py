"""WebDataset shards: samples are dicts keyed by extension, written by a context manager into
reproducible tars (sorted members, fixed mtime/owner), appearing atomically (temp + rename)."""

from __future__ import annotations

import io
import json
import os
import tarfile
import tempfile


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


class ShardWriter:
    """``with ShardWriter(path) as w: w.write({"__key__": k, "mp4": ..., "json": {...}})``.

    Values may be bytes, str (UTF-8), dict/list (JSON) or ``{"path": file}`` to stream a file.
    The tar is written to a temp file in the same directory, fsynced and renamed on success.
    """

    def __init__(self, path: str):
        self.path = path
        self.count = 0
        self._tmp = None
        self._tar = None

    def __enter__(self):
        directory = os.path.dirname(self.path) or "."
        os.makedirs(directory, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".tar", dir=directory)
        self._fh = os.fdopen(fd, "wb")
        self._tar = tarfile.open(fileobj=self._fh, mode="w", format=tarfile.USTAR_FORMAT)
        return self

    def write(self, sample: dict) -> None:
        key = safe_key(sample["__key__"])
        for ext in sorted(k for k in sample if not k.startswith("__")):
            value = sample[ext]
            name = f"{key}.{ext}"
            if isinstance(value, dict) and set(value) == {"path"}:
                with open(value["path"], "rb") as src:
                    size = os.fstat(src.fileno()).st_size
                    self._tar.addfile(_info(name, size), src)
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
            os.replace(self._tmp, self.path)
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

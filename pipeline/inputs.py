"""Turn ``--input`` (a directory, a glob, a manifest or a single file/URL) into a source list."""

from __future__ import annotations

import csv
import glob as globlib
import logging
import os

from transforms.storage import local_path

log = logging.getLogger(__name__)
_MANIFEST_COLUMNS = ("source", "path", "url", "video", "filename")


class InputError(ValueError):
    pass


def _is_url(s: str) -> bool:
    return local_path(s) is None


def _manifest_base(manifest: str) -> str:
    return os.path.dirname(os.path.abspath(manifest)) if not _is_url(manifest) else manifest.rsplit("/", 1)[0]


def _resolve(entry: str, base: str) -> str:
    entry = entry.strip()
    if _is_url(entry) or os.path.isabs(entry):
        return entry
    return os.path.normpath(os.path.join(base, entry)) if not _is_url(base) else f"{base}/{entry}"


def _open_text(path: str):
    if _is_url(path):
        import fsspec

        from transforms.s3config import fs_options

        return fsspec.open(path, "rt", encoding="utf-8", **fs_options(path)).open()
    return open(path, encoding="utf-8", newline="")


def read_manifest(path: str) -> list[str]:
    base = _manifest_base(path)
    lower = path.lower()
    if lower.endswith(".parquet"):
        import pyarrow.parquet as pq

        from transforms.storage import pyarrow_fs

        fs, where = pyarrow_fs(path)
        table = pq.read_table(where, filesystem=fs)
        column = next((c for c in _MANIFEST_COLUMNS if c in table.column_names), None)
        if column is None:
            raise InputError(f"manifest {path} needs one of the columns {', '.join(_MANIFEST_COLUMNS)}")
        values = table.column(column).to_pylist()
    elif lower.endswith(".csv"):
        with _open_text(path) as fh:
            rows = list(csv.reader(fh))
        if not rows:
            return []
        header = [h.strip().lower() for h in rows[0]]
        column = next((header.index(c) for c in _MANIFEST_COLUMNS if c in header), None)
        values = [r[column] for r in rows[1:] if len(r) > column] if column is not None else [r[0] for r in rows if r]
    else:
        with _open_text(path) as fh:
            values = [ln for ln in (line.strip() for line in fh) if ln and not ln.startswith("#")]
    return [_resolve(str(v), base) for v in values if v is not None and str(v).strip()]


def expand_inputs(spec: str, extensions: tuple[str, ...], recursive: bool = True) -> list[str]:
    """Sources in a stable order, local ones as absolute paths (so later commands, workers and
    re-filters find them from any directory). Directories are walked for files with a video
    extension (entries named like videos that are not files are kept, so they end as error rows)."""
    return [s if _is_url(s) else os.path.abspath(s) for s in _expand(spec, extensions, recursive)]


def _expand(spec: str, extensions: tuple[str, ...], recursive: bool) -> list[str]:
    exts = tuple(e.lower() for e in extensions)
    lower = spec.lower()
    if lower.endswith((".txt", ".csv", ".parquet", ".lst")) and not lower.endswith(exts):
        return read_manifest(spec)
    if _is_url(spec):
        import fsspec

        from transforms.s3config import fs_options

        fs, path = fsspec.core.url_to_fs(spec, **fs_options(spec))
        if any(ch in path for ch in "*?["):
            found = fs.glob(path)
        elif fs.isdir(path):
            found = fs.find(path) if recursive else fs.ls(path, detail=False)
        else:
            return [spec]
        return sorted(fs.unstrip_protocol(p) for p in found if p.lower().endswith(exts))
    if any(ch in spec for ch in "*?["):
        return sorted(p for p in globlib.glob(spec, recursive=recursive) if p.lower().endswith(exts))
    if os.path.isdir(spec) and not lower.rstrip("/").endswith(exts):
        found = []
        for root, dirs, files in os.walk(spec, followlinks=False):
            dirs.sort()
            names = files + [d for d in dirs if d.lower().endswith(exts)]
            found.extend(os.path.join(root, n) for n in names if n.lower().endswith(exts))
            if not recursive:
                break
        return sorted(found)
    # A single path: a file, or something that will become an error row (missing, a directory...).
    if not os.path.lexists(spec):
        log.warning("--input %s does not exist: it is recorded as one input with an error row "
                    "(a mistyped folder, glob or manifest name?)", spec)
    return [spec]

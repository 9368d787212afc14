"""Never lose, never duplicate: per-video completion records and crash-safe file writes.

* ``_analysis/<video_id>.json`` holds a video's analysis (its video row, clip rows, or its error
  row). It is written last for that video, to a temp file that is fsynced and renamed, so it
  exists only when complete. A re-run skips every source that has one made with the same
  analysis settings.
* Clip media are staged under ``_staging/<media key>/<video_id>/``; the mp4 is renamed into
  place after its JPEG, so an mp4 that exists is a finished clip and is not encoded again.
* A record is keyed by content as well as by name: it holds the source's fingerprint (size and
  mtime locally; ETag, generation or mtime plus size on object stores), and a file replaced at the
  same path is analyzed again.
* A failed video's record counts its attempts; the next run retries it until
  ``input.max_attempts`` runs have failed on it, then its failure is final.
* The tables of a run go to a new generation directory, switched in when complete (see
  :mod:`pipeline.rundir`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil

from transforms import storage
from transforms.rows import ClipRow, ErrorRow, VideoRow
from transforms.storage import local_path

ANALYSIS_DIR = "_analysis"
STAGING_DIR = "_staging"
SCORED_DIR = "_scored"


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


# The clips settings the clip plan depends on (fps only through max_frames; both left out of the
# key while max_frames is 0, so older runs keep their key).
PLAN_KEYS = ("max_duration_s", "max_frames", "fps")


def analysis_key(cfg, stages) -> str:
    """Everything a video's analysis and clip spans depend on: the analysis stages of the run
    and their settings (not the filters, nor the model stages: changing those does not force
    re-analysis)."""
    from transforms.stages import BY_NAME

    d = cfg.to_dict()
    analyzed = sorted(s for s in stages if not BY_NAME[s].is_model)
    sections = {BY_NAME[s].section for s in analyzed if BY_NAME[s].section} | {"limits", "analysis", "cuts"}
    return _digest({k: d[k] for k in sorted(sections)} | {"stages": analyzed} |
                   {"clips": {k: d["clips"][k] for k in PLAN_KEYS if k == "max_duration_s" or d["clips"]["max_frames"]}})


def media_key(cfg) -> str:
    """Everything a written clip depends on besides its span."""
    return _digest(cfg.to_dict()["clips"])


def staging_dir(output: str, cfg) -> str:
    return os.path.join(output, STAGING_DIR, media_key(cfg))


def model_key(cfg, stages) -> str:
    """Everything a clip's model-stage results depend on: the analysis (its spans and cheap
    scores), the model stages and their settings, and the filters (they route clips between
    model stages). Not the runner, nor how clips are written."""
    d = cfg.to_dict()
    return _digest({"analysis": analysis_key(cfg, stages), "stages": list(stages),
                    **{k: v for k, v in d.items() if k not in ("runner", "write", "clips", "input")}})


def scored_dir(output: str, cfg, stages) -> str:
    """Where the model stages' checkpoints of this run's settings go: ``_scored/<model key>/``."""
    return os.path.join(output, SCORED_DIR, model_key(cfg, stages))


CHECKPOINT_NAME = re.compile(r"[0-9a-f]{16}_[0-9]{7,}_[0-9]{7,}-[0-9a-f]{8}\.json")


def write_scored(directory: str, items: list) -> str:
    """One checkpoint: ``[(clip row, [error rows])]`` of scored clips, written once under a new
    name (a retried bundle writes another file; readers keep one copy of each clip)."""
    from pipeline.rundir import check_clip_id

    name = f"{check_clip_id(items[0][0].clip_id)}-{os.urandom(4).hex()}.json"
    data = [{"row": row.to_dict(), "errors": [e.to_dict() for e in errors]} for row, errors in items]
    path = os.path.join(directory, name)
    storage.put_bytes(path, json.dumps(data, default=_to_json).encode())
    return path


def checkpoint_files(directory: str) -> list[str]:
    """The checkpoints in ``directory`` (names vidcurate writes only)."""
    return [os.path.join(directory, n) for n in storage.listdir(directory) if CHECKPOINT_NAME.fullmatch(n)]


def read_scored(path: str) -> list:
    """A checkpoint back as ``[(clip row, [error rows])]``; an unreadable one as nothing (its
    clips are scored again)."""
    from pipeline.rundir import check_clip_id

    try:
        data = json.loads(storage.read_bytes(path), object_hook=_from_json)
        out = []
        for item in data:
            row = ClipRow.from_dict(item["row"], strict=False)
            check_clip_id(row.clip_id)
            out.append((row, [ErrorRow.from_dict(e, strict=False) for e in item["errors"]]))
        return out
    except (OSError, ValueError, KeyError, TypeError):
        return []


def fingerprint(source: str) -> str | None:
    """What identifies this version of the source's content without reading it: size and
    modification time locally; ETag, generation or mtime plus size on object stores."""
    path = local_path(source)
    if path is not None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return f"{st.st_size}:{st.st_mtime_ns}"
    try:
        fs, path = storage._fs(source)
        info = fs.info(path)
    except Exception:  # noqa: BLE001 - unreachable now: the analysis reports why
        return None
    for field in ("ETag", "etag", "generation", "md5Hash", "LastModified", "mtime", "last_modified"):
        if info.get(field):
            return f"{info.get('size')}:{field}={info[field]}"
    return f"{info.get('size')}"


def _to_json(x):
    """Binary columns (e.g. the dedup signatures) round-trip as base64; anything else as text."""
    if isinstance(x, bytes):
        return {"$base64": base64.b64encode(x).decode("ascii")}
    return str(x)


def _from_json(obj: dict):
    return base64.b64decode(obj["$base64"]) if set(obj) == {"$base64"} else obj


def _read(path: str) -> dict | None:
    try:
        return json.loads(storage.read_bytes(path), object_hook=_from_json)
    except (OSError, ValueError):
        return None  # missing or unreadable: analyze again


def _failed(record: dict) -> bool:
    return (record.get("video") or {}).get("status") == "error"


def record_path(output: str, video_id: str) -> str:
    from pipeline.rundir import check_video_id

    return os.path.join(output, ANALYSIS_DIR, f"{check_video_id(video_id)}.json")


def finish(output: str | None, key: str, video, clips: list, error) -> dict:
    """A video's analysis as its completion record (typed rows); with an ``output`` the record
    is written, last for that video, and a failure's record counts the runs that failed on it."""
    attempts = 1
    if output:
        path = record_path(output, video.video_id)
        stamp = fingerprint(video.source)
        if video.status == "error":
            old = _read(path)
            if old and old.get("key") == key and old.get("fingerprint") == stamp and _failed(old):
                attempts = int(old.get("attempts", 1)) + 1
    record = {"video": video.replace(attempts=attempts), "clips": clips, "error": error}
    if output:
        data = {"key": key, "fingerprint": stamp, "attempts": attempts, "video": record["video"].to_dict(),
                "clips": [c.to_dict() for c in clips], "error": error.to_dict() if error else None}
        storage.put_bytes(path, json.dumps(data, default=_to_json).encode())
    return record


def typed(record: dict) -> dict:
    """A record read back from disk with typed rows (as :func:`finish` returns it)."""
    return {"video": VideoRow.from_dict(record["video"], strict=False),
            "clips": [ClipRow.from_dict(c, strict=False) for c in record["clips"]],
            "error": ErrorRow.from_dict(record["error"], strict=False) if record.get("error") else None}


def load_records(output: str, key: str, sources, max_attempts: int = 3) -> dict[str, dict]:
    """Final records of these sources (``{video_id: source}``) made with the same analysis
    settings from the same content: successes, and failures that used up ``max_attempts``."""
    directory = os.path.join(output, ANALYSIS_DIR)
    out = {}
    for name in storage.listdir(directory):
        vid = name[: -len(".json")]
        if not name.endswith(".json") or vid not in sources:
            continue
        record = final_record(os.path.join(directory, name), key, sources[vid], max_attempts)
        if record is not None:
            out[vid] = record
    return out


def final_record(path: str, key: str, source: str, max_attempts: int = 3) -> dict | None:
    """The record at ``path`` as typed rows if it is final for ``source`` under ``key``: made
    with the same analysis settings from the same content, a success or a failure that used
    up ``max_attempts``; else None (analyze again)."""
    record = _read(path)
    if not record or record.get("key") != key:
        return None
    if record.get("fingerprint") != fingerprint(source):
        return None  # replaced at the same path: analyze the new content
    if _failed(record) and int(record.get("attempts", 1)) < max_attempts:
        return None  # failed, attempts left: retry
    return typed(record)


def clean_stale(output: str) -> int:
    """Remove temp files and Beam temp directories left by a killed run; returns how many.
    (On an object store nothing is written under a temp name: there is nothing to remove.)"""
    removed = 0
    if not storage.is_local(output):
        return 0
    output = local_path(output)
    for root, dirs, files in os.walk(output):
        for d in list(dirs):
            if d.startswith("beam-temp-") or d.startswith(".temp-beam"):
                shutil.rmtree(os.path.join(root, d), ignore_errors=True)
                dirs.remove(d)
                removed += 1
        for f in files:
            if f.startswith(".tmp-"):
                try:
                    os.remove(os.path.join(root, f))
                    removed += 1
                except OSError:
                    pass
    return removed


def run_key(sources: list[str], cfg, no_clips: bool, stages=()) -> str:
    """Same inputs (by name; content is checked per record) and the same settings."""
    d = cfg.to_dict()
    d.pop("runner", None)
    return _digest({"sources": sources, "config": d, "no_clips": no_clips, "stages": list(stages)})

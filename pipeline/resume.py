"""Never lose, never duplicate: per-video completion records and crash-safe file writes.

* ``_analysis/<video_id>.json`` holds a video's analysis (its video row, clip rows, or its error
  row). It is written last for that video, to a temp file that is fsynced and renamed, so it
  exists only when complete. A re-run skips every source that has one made with the same
  analysis settings.
* Clip media are staged under ``_staging/<media key>/<video_id>/``; the mp4 is renamed into
  place after its JPEG, so an mp4 that exists is a finished clip and is not encoded again.
* ``summary.json`` is written after everything else: a run directory without it is unfinished.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile

ANALYSIS_DIR = "_analysis"
STAGING_DIR = "_staging"


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def analysis_key(cfg) -> str:
    """Everything a video's analysis and clip spans depend on."""
    d = cfg.to_dict()
    return _digest({k: d[k] for k in ("limits", "analysis", "cuts", "motion")} |
                   {"clips": {k: d["clips"][k] for k in ("min_duration_s", "max_duration_s")}})


def media_key(cfg) -> str:
    """Everything a written clip depends on besides its span."""
    return _digest(cfg.to_dict()["clips"])


def staging_dir(output: str, cfg) -> str:
    return os.path.join(output, STAGING_DIR, media_key(cfg))


def atomic_write_bytes(path: str, data: bytes) -> None:
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_record(output: str, key: str, video: dict, clips: list[dict], error: dict | None) -> None:
    record = {"key": key, "video": video, "clips": clips, "error": error}
    path = os.path.join(output, ANALYSIS_DIR, f"{video['video_id']}.json")
    atomic_write_bytes(path, json.dumps(record, default=str).encode())


def load_records(output: str, key: str, video_ids: set[str]) -> dict[str, dict]:
    """Finished records of these videos made with the same analysis settings."""
    directory = os.path.join(output, ANALYSIS_DIR)
    out = {}
    if not os.path.isdir(directory):
        return out
    for name in os.listdir(directory):
        vid = name[: -len(".json")]
        if not name.endswith(".json") or vid not in video_ids:
            continue
        try:
            with open(os.path.join(directory, name), encoding="utf-8") as fh:
                record = json.load(fh)
        except (OSError, ValueError):
            continue  # unreadable: analyse again
        if record.get("key") == key:
            out[vid] = record
    return out


def clean_stale(output: str) -> int:
    """Remove temp files and Beam temp directories left by a killed run; returns how many."""
    removed = 0
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
    d = cfg.to_dict()
    d.pop("runner", None)
    return _digest({"sources": sources, "config": d, "no_clips": no_clips, "stages": list(stages)})

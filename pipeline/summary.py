"""``summary.json``: what a run did (counts, hours, reject reasons, errors, shards), its config and
the versions of what it ran with. Read from the tables the run wrote."""

from __future__ import annotations

import json
import os
import sys
from importlib import metadata

from pipeline.tables import read_rows
from transforms import storage

STATUSES = ("ok", "partial", "no_usable_shot", "error")


def video_counts(videos: list[dict]) -> dict:
    """Videos in total and per status, and the hours of those that gave frames."""
    out = {"total": len(videos), **{s: sum(1 for v in videos if v["status"] == s) for s in STATUSES}}
    out["hours"] = sum(v["duration_s"] or 0 for v in videos if v["status"] in ("ok", "partial")) / 3600
    return out


def reason_counts(reason_lists) -> dict[str, int]:
    """reject reason -> clips it rejects (a clip can have several)."""
    counts: dict[str, int] = {}
    for reasons in reason_lists:
        for reason in reasons or []:
            counts[reason] = counts.get(reason, 0) + 1
    return dict(sorted(counts.items()))


def error_counts(errors: list[dict]) -> dict[str, int]:
    """``stage:error_type`` -> error rows."""
    return reason_counts([f"{e['stage']}:{e['error_type']}"] for e in errors)


def write_summary(output: str, summary: dict) -> dict:
    storage.put_bytes(os.path.join(output, "summary.json"),
                      json.dumps(summary, indent=2, sort_keys=True, default=str).encode("utf-8"))
    return summary


def _versions() -> dict:
    names = ("vidcurate", "apache-beam", "scenedetect", "av", "opencv-python-headless", "numpy",
             "pyarrow", "torch", "open-clip-torch", "easyocr")
    out = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = None
    out["python"] = sys.version.split()[0]
    return out


def summarize(output: str, cfg, stages, wall: float, n_inputs: int, no_clips: bool) -> dict:
    v, c, e = read_rows(output, "videos"), read_rows(output, "clips"), read_rows(output, "errors")
    failed = [r for r in v if r["status"] == "error"]
    kept = [r for r in c if r["keep"]]
    with_kept = {r["video_id"] for r in kept}
    counts = video_counts(v)
    hours_in = counts["hours"]
    shards_dir = os.path.join(output, "shards")
    shards = sorted(f for f in storage.listdir(shards_dir) if f.endswith(".tar"))
    return {
        "inputs": n_inputs,
        "stages": list(stages),
        "analysis_only": no_clips,
        "wall_seconds": round(wall, 2),
        "videos": {**counts, "hours": round(hours_in, 4),
                   "without_kept_clip": sum(1 for r in v if r["video_id"] not in with_kept),
                   "retry_pending": sum(1 for r in failed if (r.get("attempts") or 1) < cfg.input.max_attempts)},
        "clips": {
            "total": len(c), "kept": len(kept), "rejected": len(c) - len(kept),
            "hours_total": round(sum(r["duration_s"] or 0 for r in c) / 3600, 4),
            "hours_kept": round(sum(r["duration_s"] or 0 for r in kept) / 3600, 4),
            "reject_reasons": reason_counts(r["reject_reasons"] for r in c),
        },
        "errors": {"total": len(e), "by_type": error_counts(e)},
        "shards": {"count": len(shards), "bytes": sum(storage.size_of(os.path.join(shards_dir, s)) for s in shards)},
        "video_seconds_per_wall_second": round(hours_in * 3600 / wall, 3) if wall > 0 else None,
        "config": cfg.to_dict(),
        "versions": _versions(),
    }

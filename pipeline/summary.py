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


COUNTS = os.path.join("logs", "counts.json")  # in a generation: the counts the pipeline combined


def empty_counts() -> dict:
    return {"videos": dict.fromkeys(STATUSES, 0), "hours": 0.0, "retry_pending": 0,
            "clips": 0, "kept": 0, "seconds_total": 0.0, "seconds_kept": 0.0, "reject_reasons": {},
            "errors": 0, "errors_by_type": {}, "videos_with_kept": 0}


def _bump(d: dict, key: str, n: int = 1) -> None:
    d[key] = d.get(key, 0) + n


def count_row(acc: dict, kind: str, row, max_attempts: int) -> dict:
    """Add one typed row (``kind``: videos, clips or errors) to the counts ``acc``."""
    if kind == "videos":
        _bump(acc["videos"], row.status)
        if row.status in ("ok", "partial"):
            acc["hours"] += (row.duration_s or 0) / 3600
        if row.status == "error" and (row.attempts or 1) < max_attempts:
            acc["retry_pending"] += 1
    elif kind == "clips":
        acc["clips"] += 1
        acc["seconds_total"] += row.duration_s or 0
        if row.keep:
            acc["kept"] += 1
            acc["seconds_kept"] += row.duration_s or 0
        for reason in row.reject_reasons or []:
            _bump(acc["reject_reasons"], reason)
    else:
        acc["errors"] += 1
        _bump(acc["errors_by_type"], f"{row.stage}:{row.error_type}")
    return acc


def merge_counts(accs) -> dict:
    out = empty_counts()
    for a in accs:
        for k, v in a.items():
            if isinstance(v, dict):
                for kk, n in v.items():
                    _bump(out[k], kk, n)
            else:
                out[k] += v
    return out


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


def counts_from_tables(output: str, cfg) -> dict:
    """The counts of :func:`summarize` read back from a generation's tables (``vidcurate
    filter``, whose videos table is copied, not computed; and runs without counts.json)."""
    from transforms.rows import ClipRow, ErrorRow, VideoRow

    acc, with_kept = empty_counts(), set()
    for kind, cls in (("videos", VideoRow), ("clips", ClipRow), ("errors", ErrorRow)):
        for r in read_rows(output, kind):
            count_row(acc, kind, cls.from_dict(r, strict=False), cfg.input.max_attempts)
            if kind == "clips" and r["keep"]:
                with_kept.add(r["video_id"])
    acc["videos_with_kept"] = len(with_kept)
    return acc


def summarize(output: str, cfg, stages, wall: float, n_inputs: int, no_clips: bool) -> dict:
    """The summary of a finished generation: from the counts the pipeline combined
    (``logs/counts.json``, see :class:`pipeline.graph.CountRows`) when it wrote them, else
    from its tables."""
    try:
        n = json.loads(storage.read_bytes(os.path.join(output, COUNTS)))
    except (OSError, ValueError):
        n = counts_from_tables(output, cfg)
    total = sum(n["videos"].values())
    hours_in = n["hours"]
    shards_dir = os.path.join(output, "shards")
    shards = sorted(f for f in storage.listdir(shards_dir) if f.endswith(".tar"))
    return {
        "inputs": n_inputs,
        "stages": list(stages),
        "analysis_only": no_clips,
        "wall_seconds": round(wall, 2),
        "videos": {"total": total, **{s: n["videos"].get(s, 0) for s in STATUSES}, "hours": round(hours_in, 4),
                   "without_kept_clip": total - n["videos_with_kept"],
                   "retry_pending": n["retry_pending"]},
        "clips": {
            "total": n["clips"], "kept": n["kept"], "rejected": n["clips"] - n["kept"],
            "hours_total": round(n["seconds_total"] / 3600, 4),
            "hours_kept": round(n["seconds_kept"] / 3600, 4),
            "reject_reasons": dict(sorted(n["reject_reasons"].items())),
        },
        "errors": {"total": n["errors"], "by_type": dict(sorted(n["errors_by_type"].items()))},
        "shards": {"count": len(shards), "bytes": sum(storage.size_of(os.path.join(shards_dir, s)) for s in shards)},
        "video_seconds_per_wall_second": round(hours_in * 3600 / wall, 3) if wall > 0 else None,
        "config": cfg.to_dict(),
        "versions": _versions(),
    }

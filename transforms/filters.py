"""Filters as predicates over clip rows: every score is recorded, filters only decide ``keep``.

``reject_reasons(row, cfg)`` is pure; a clip may fail several filters and all are listed, so
the filter funnel can be computed and thresholds changed later without recomputing scores.
"""

from __future__ import annotations


def bounds(cfg) -> list[tuple[str, str, str, float]]:
    """(reason, column, "min"|"max", value) for every active absolute bound."""
    f = cfg.filters
    min_dur = f.min_duration_s if f.min_duration_s is not None else cfg.clips.min_duration_s
    spec = [
        ("min_duration", "duration_s", "min", min_dur),
        ("max_duration", "duration_s", "max", f.max_duration_s),
        ("min_motion", "motion_score", "min", f.min_motion),
        ("max_motion", "motion_score", "max", f.max_motion),
        ("min_width", "width", "min", f.min_width),
        ("min_height", "height", "min", f.min_height),
        ("min_fps", "fps", "min", f.min_fps),
    ]
    return [s for s in spec if s[3] is not None]


def reject_reasons(row: dict, cfg) -> list[str]:
    reasons = []
    for reason, column, kind, value in bounds(cfg):
        x = row.get(column)
        if x is None:
            # A score that could not be computed (e.g. motion of a clip shorter than one flow
            # pair) fails its filter rather than slipping through.
            if column in row:
                reasons.append(reason)
            continue
        if (kind == "min" and x < value - 1e-9) or (kind == "max" and x > value + 1e-9):
            reasons.append(reason)
    return reasons


def apply_filters(row: dict, cfg) -> dict:
    row = dict(row)
    reasons = sorted(set(row.get("reject_reasons") or []) | set(reject_reasons(row, cfg)))
    row["reject_reasons"] = reasons
    row["keep"] = not reasons
    return row

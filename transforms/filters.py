"""Filters as predicates over clip rows: every score is recorded, filters only decide ``keep``.

Everything here is pure. ``percentile_thresholds`` turns SVD-style "drop the bottom N%" cuts
into absolute bounds over a dataset; ``reject_reasons`` lists every filter a clip fails, so the
funnel can be computed and thresholds changed later without recomputing scores.
"""

from __future__ import annotations

import numpy as np

# Reasons that are not filters: they survive a re-filter.
STICKY_REASONS = ("write_error",)


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
        ("max_fps", "fps", "max", f.max_fps),
        ("min_aspect_ratio", "aspect_ratio", "min", f.min_aspect_ratio),
        ("max_aspect_ratio", "aspect_ratio", "max", f.max_aspect_ratio),
        ("max_ocr_text_area", "ocr_text_area", "max", f.max_ocr_text_area),
        ("min_aesthetic", "aesthetic_score", "min", f.min_aesthetic),
        ("min_text_similarity", "text_similarity", "min", f.min_text_similarity),
    ]
    return [s for s in spec if s[3] is not None]


# Which column each absolute filter reads (reason -> column), for funnels and what-if tables.
REASON_COLUMNS = {
    "min_duration": "duration_s", "max_duration": "duration_s", "min_motion": "motion_score",
    "max_motion": "motion_score", "min_width": "width", "min_height": "height", "min_fps": "fps",
    "max_fps": "fps", "min_aspect_ratio": "aspect_ratio", "max_aspect_ratio": "aspect_ratio",
    "max_ocr_text_area": "ocr_text_area", "min_aesthetic": "aesthetic_score",
    "min_text_similarity": "text_similarity",
}


def reason_column(reason: str) -> str | None:
    """The column a reject reason is about (percentile reasons end in ``pct_<column>``)."""
    if reason in REASON_COLUMNS:
        return REASON_COLUMNS[reason]
    if "pct_" in reason:
        return reason.split("pct_", 1)[1]
    return None


def percentile_columns(cfg) -> list[str]:
    f = cfg.filters
    return sorted(set(f.drop_bottom_percent) | set(f.drop_top_percent))


def percentile_thresholds(values: dict[str, list[float]], cfg) -> list[tuple[str, str, str, float]]:
    """Absolute bounds equivalent to the config's percentile cuts over ``values`` (column ->
    all non-null values in the dataset). "Drop the bottom 25%" keeps values >= the 25th
    percentile (numpy's linear interpolation)."""
    out = []
    for kind, spec in (("min", cfg.filters.drop_bottom_percent), ("max", cfg.filters.drop_top_percent)):
        for column, pct in sorted(spec.items()):
            vals = np.asarray([v for v in values.get(column, []) if v is not None], dtype=np.float64)
            if vals.size == 0 or pct <= 0:
                continue
            q = pct if kind == "min" else 100 - pct
            name = f"{'bottom' if kind == 'min' else 'top'}_{pct:g}pct_{column}"
            out.append((name, column, kind, float(np.percentile(vals, q))))
    return out


def _value(row: dict, column: str):
    if column == "aspect_ratio":
        w, h = row.get("width"), row.get("height")
        return w / h if w and h else None
    return row.get(column)


# The model stage that computes each filterable score column.
STAGE_COLUMNS = {"ocr_text_area": "ocr", "aesthetic_score": "clip", "text_similarity": "caption"}


def reject_reasons(row: dict, cfg, extra: list[tuple[str, str, str, float]] = (), scored=()) -> list[str]:
    """Every filter ``row`` fails. ``scored``: the model stages whose scores are complete; a
    bound on a model score applies once its stage has run. A clip lacking that score then is
    rejected as ``<stage>_failed`` (a failed batch, unreadable frames) unless another filter
    rejects it anyway: cheap filters run first, so a rejected clip is not scored by design, and
    ``run`` and ``vidcurate filter`` must agree on it. A missing cheap score (e.g. motion of a
    clip shorter than one flow pair) fails its own filter."""
    reasons, failed = [], []
    for reason, column, kind, value in [*bounds(cfg), *extra]:
        stage = STAGE_COLUMNS.get(column)
        if stage is not None and stage not in scored:
            continue  # not scored (yet): the bound applies after that stage
        x = _value(row, column)
        if x is None:
            if stage:
                failed.append(f"{stage}_failed")
            else:
                reasons.append(reason)
            continue
        if (kind == "min" and x < value - 1e-9) or (kind == "max" and x > value + 1e-9):
            reasons.append(reason)
    return reasons or sorted(set(failed))


def apply_filters(row: dict, cfg, extra: list[tuple[str, str, str, float]] = (), scored=()) -> dict:
    """Recompute ``keep``/``reject_reasons`` from scratch (keeping only sticky reasons). The one
    code path of ``run`` and ``vidcurate filter``; ``scored`` as in :func:`reject_reasons`."""
    row = dict(row)
    sticky = [r for r in (row.get("reject_reasons") or []) if r in STICKY_REASONS]
    reasons = sorted(set(sticky) | set(reject_reasons(row, cfg, extra, scored)))
    row["reject_reasons"] = reasons
    row["keep"] = not reasons
    return row

"""Dataset inspection: ``stats`` (funnel, percentiles, errors), what-if tables and DuckDB SQL
over a run's Parquet tables. Pure functions over the tables; the CLI only prints."""

from __future__ import annotations

import os

import numpy as np

from pipeline.summary import error_counts, video_counts
from pipeline.tables import read_rows
from transforms import storage
from transforms.filters import reason_column
from transforms.stages import labelled_columns, summarised_columns

# Score columns summarised when present (the registry's, and the clip's size and rate).
SCORE_COLUMNS = summarised_columns()
PERCENTILES = (1, 5, 12.5, 25, 50, 75, 95, 99)


def connect(run_dir: str):
    """A DuckDB connection with views ``clips``, ``videos`` and ``errors`` over the run."""
    import duckdb

    from pipeline import rundir
    from pipeline.tables import table_files

    run_dir = rundir.resolve(run_dir)
    con = duckdb.connect()
    if not storage.is_local(run_dir):
        con.register_filesystem(storage._fs(run_dir)[0])  # read through fsspec: no DuckDB extension to download
    for name in ("clips", "videos", "errors"):
        directory = os.path.join(run_dir, name)
        if table_files(directory):
            path = os.path.join(directory, "*.parquet").replace("'", "''")
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{path}')")
    return con


def query(run_dir: str, sql: str):
    """Run ``sql``; returns (column names, rows)."""
    import duckdb

    con = connect(run_dir)
    try:
        cur = con.execute(sql)
        return [d[0] for d in cur.description], cur.fetchall()
    except duckdb.Error as exc:  # a mistyped query: say what DuckDB said, no traceback
        raise ValueError(f"the query failed: {exc}") from None
    finally:
        con.close()


def funnel(clips: list[dict]) -> list[dict]:
    """Per reject reason: clips and hours it removes, and how many only it removes."""
    reasons = sorted({r for c in clips for r in c["reject_reasons"] or []})
    out = []
    for reason in reasons:
        hit = [c for c in clips if reason in (c["reject_reasons"] or [])]
        only = [c for c in hit if len(c["reject_reasons"]) == 1]
        out.append({"filter": reason, "clips": len(hit), "hours": sum(c["duration_s"] or 0 for c in hit) / 3600,
                    "only_this": len(only), "only_this_hours": sum(c["duration_s"] or 0 for c in only) / 3600})
    return out


def score_percentiles(clips: list[dict]) -> dict[str, dict]:
    out = {}
    for column in SCORE_COLUMNS:
        vals = np.asarray([c.get(column) for c in clips if c.get(column) is not None], dtype=np.float64)
        if vals.size == 0:
            continue
        out[column] = {"count": int(vals.size), "mean": float(vals.mean()),
                       **{f"p{p:g}": float(np.percentile(vals, p)) for p in PERCENTILES}}
    return out


def stats(run_dir: str) -> dict:
    from pipeline import rundir

    run_dir = rundir.resolve(run_dir)
    videos, clips, errors = read_rows(run_dir, "videos"), read_rows(run_dir, "clips"), read_rows(run_dir, "errors")
    if not videos and not clips:
        raise ValueError(f"{run_dir} has no videos or clips table; is it a vidcurate run directory?")
    kept = [c for c in clips if c["keep"]]
    return {
        "videos": video_counts(videos),
        "clips": {"total": len(clips), "kept": len(kept),
                  "hours": sum(c["duration_s"] or 0 for c in clips) / 3600,
                  "hours_kept": sum(c["duration_s"] or 0 for c in kept) / 3600,
                  "shards": len({c["shard"] for c in kept if c["shard"]})},
        "funnel": funnel(clips),
        "scores": score_percentiles(clips),
        "errors": error_counts(errors),
        **{column: label_counts(clips, column) for column in labelled_columns()},
        "dedup": dedup_counts(clips),
        "written": written_counts(kept),
        "shard_sets": shard_set_counts(kept),
    }


def written_counts(kept: list[dict]) -> dict[str, dict]:
    """Kept clips by what was written (``WxH@fps``: clips.size / fps), with their mean frames."""
    out: dict[str, dict] = {}
    for c in kept:
        if c.get("out_width"):
            key = f"{c['out_width']}x{c['out_height']}@{c['out_fps'] or c['fps'] or 0:g}"
            e = out.setdefault(key, {"clips": 0, "frames": 0})
            e["clips"] += 1
            e["frames"] += c.get("out_frames") or c.get("num_frames") or 0
    return {k: {"clips": v["clips"], "mean_frames": round(v["frames"] / v["clips"], 1)}
            for k, v in sorted(out.items(), key=lambda kv: -kv[1]["clips"])}


def shard_set_counts(kept: list[dict]) -> dict[str, dict]:
    """Shard sets of bucketed shards (``write.bucket_by``): label -> shards and clips; empty when
    the run wrote one unbucketed set."""
    from transforms.shards import shard_label

    out: dict[str, dict] = {}
    for c in kept:
        label = shard_label(c["shard"]) if c.get("shard") else ""
        if label:
            e = out.setdefault(label, {"shards": set(), "clips": 0})
            e["shards"].add(c["shard"])
            e["clips"] += 1
    return {k: {"shards": len(v["shards"]), "clips": v["clips"]} for k, v in sorted(out.items())}


def dedup_counts(clips: list[dict]) -> dict:
    """Groups of duplicates (a kept clip and the clips that name it) and their sizes; empty when
    the dedup stage did not run or found nothing."""
    groups: dict[str, int] = {}
    for c in clips:
        if c.get("duplicate_of"):
            groups[c["duplicate_of"]] = groups.get(c["duplicate_of"], 0) + 1
    if not groups:
        return {}
    return {"groups": len(groups), "duplicates": sum(groups.values()), "largest_group": 1 + max(groups.values()),
            "hours_removed": sum(c["duration_s"] or 0 for c in clips if c.get("duplicate_of")) / 3600}


def label_counts(clips: list[dict], column: str) -> dict[str, dict]:
    """label -> clips and kept clips of a categorical column (empty when its stage did not run)."""
    out: dict[str, dict] = {}
    for c in clips:
        label = c.get(column)
        if label:
            entry = out.setdefault(label, {"clips": 0, "kept": 0})
            entry["clips"] += 1
            entry["kept"] += bool(c["keep"])
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["clips"]))


def what_if(run_dir: str, column: str, percents=(12.5, 25, 50), values=None, top: bool = False) -> list[dict]:
    """Clips and hours each candidate cut on ``column`` would keep, among clips that pass every
    other filter (rows whose only reasons concern this column count as passing)."""
    clips = read_rows(run_dir, "clips")
    if clips and column not in clips[0]:
        raise ValueError(f"no column {column!r} in the clips table")
    vals = np.asarray([c[column] for c in clips if c.get(column) is not None], dtype=np.float64)
    if vals.size == 0:
        return []
    others = [c for c in clips if all(reason_column(r) == column for r in c["reject_reasons"] or [])]
    candidates = [(f"{'top' if top else 'bottom'} {p:g}%", float(np.percentile(vals, 100 - p if top else p))) for p in percents]
    candidates += [(f"{'<=' if top else '>='} {v:g}", float(v)) for v in (values or [])]
    out = []
    for label, threshold in candidates:
        keep = [c for c in others if c.get(column) is not None and (c[column] <= threshold if top else c[column] >= threshold)]
        out.append({"cut": label, "threshold": threshold, "clips_kept": len(keep),
                    "hours_kept": sum(c["duration_s"] or 0 for c in keep) / 3600})
    return out


def render_stats(s: dict) -> str:
    v, c = s["videos"], s["clips"]
    lines = [
        f"videos   {v['total']:>8}  ok {v['ok']}  error {v['error']}"
        + "".join(f"  {k} {v[k]}" for k in ("partial", "no_usable_shot") if v.get(k)) + f"  ({v['hours']:.3f} h)",
        f"clips    {c['total']:>8}  kept {c['kept']} ({c['hours_kept']:.3f} of {c['hours']:.3f} h)  in {c['shards']} shard(s)",
        "",
        "filter funnel (a clip can fail several filters)",
        f"  {'filter':<28}{'clips':>8}{'hours':>10}{'only this':>11}{'hours':>10}",
    ]
    for f in s["funnel"]:
        lines.append(f"  {f['filter']:<28}{f['clips']:>8}{f['hours']:>10.3f}{f['only_this']:>11}{f['only_this_hours']:>10.3f}")
    if not s["funnel"]:
        lines.append("  (nothing rejected)")
    lines += ["", "scores (percentiles over all clips)",
              f"  {'column':<16}{'n':>6}" + "".join(f"{'p' + format(p, 'g'):>9}" for p in PERCENTILES)]
    for col, d in s["scores"].items():
        lines.append(f"  {col:<16}{d['count']:>6}" + "".join(f"{d['p' + format(p, 'g')]:>9.3g}" for p in PERCENTILES))
    for column in labelled_columns():
        if s.get(column):
            lines += ["", f"{column.replace('_', ' ')} (clips, kept)"]
            lines += [f"  {k:<16}{v['clips']:>6}{v['kept']:>6}" for k, v in s[column].items()]
    if s.get("dedup"):
        d = s["dedup"]
        lines += ["", f"duplicates  {d['duplicates']} clip(s) ({d['hours_removed']:.3f} h) in {d['groups']} group(s), "
                      f"largest {d['largest_group']} clips; each group keeps one"]
    if s.get("written") and (len(s["written"]) > 1 or s.get("shard_sets")):
        lines += ["", "written clips (size@fps: clips, mean frames)"]
        lines += [f"  {k:<20}{v['clips']:>6}{v['mean_frames']:>8.1f}" for k, v in s["written"].items()]
    if s.get("shard_sets"):
        lines += ["", "shard sets (write.bucket_by: shards, clips)"]
        lines += [f"  {k:<24}{v['shards']:>4}{v['clips']:>7}" for k, v in s["shard_sets"].items()]
    lines += ["", "errors"]
    lines += [f"  {k:<40}{n:>6}" for k, n in s["errors"].items()] or ["  (none)"]
    return "\n".join(lines)

"""``vidcurate filter``: re-apply filters to a finished run without recomputing any score.

Clips that were already in a shard are copied out of it; clips that were never cut (a
``--no-clips`` run, or newly kept by looser filters) are cut from their source now, and only
those: the score-first, cut-later workflow.
"""

from __future__ import annotations

import logging
import os
import shutil

import apache_beam as beam

from pipeline import beam_pipeline, schemas
from pipeline.run import execute, pipeline_options, read_table, summarize, write_summary
from transforms.filters import apply_filters, percentile_columns, percentile_thresholds

log = logging.getLogger(__name__)


def where_ids(run_dir: str, where: str) -> set[str]:
    """clip_ids matching a SQL predicate over the run's clips table (DuckDB)."""
    from pipeline.inspect import connect

    con = connect(run_dir)
    try:
        return {r[0] for r in con.execute(f"SELECT clip_id FROM clips WHERE {where}").fetchall()}
    except Exception as exc:  # duckdb raises several error types for bad SQL
        raise ValueError(f"--where {where!r} is not a valid condition on the clips table: {exc}") from None
    finally:
        con.close()


def refiltered_rows(run_dir: str, cfg, where: str | None = None) -> list[dict]:
    """The run's clip rows with keep/reject_reasons recomputed under ``cfg`` (and ``where``)."""
    table = read_table(run_dir, "clips")
    if table is None:
        raise ValueError(f"{run_dir} has no clips table; is it a vidcurate run directory?")
    rows = table.to_pylist()
    values = {c: [r.get(c) for r in rows] for c in percentile_columns(cfg)}
    extra = percentile_thresholds(values, cfg)
    passing = where_ids(run_dir, where) if where else None
    out = []
    for row in rows:
        new = apply_filters(row, cfg, extra)
        if passing is not None and row["clip_id"] not in passing:
            new["reject_reasons"] = sorted(set(new["reject_reasons"]) | {"where"})
            new["keep"] = False
        # A kept row keeps its old shard name as a pointer to its media until it is re-packed.
        new["shard"] = row.get("shard") if new["keep"] else None
        out.append(new)
    return out


def refilter(run_dir: str, output: str, cfg, where: str | None = None, beam_args: list[str] | None = None) -> dict:
    run_dir, output = os.path.abspath(run_dir), os.path.abspath(output)
    if run_dir == output:
        raise ValueError("--output must be a new directory, not the run being filtered")
    rows = refiltered_rows(run_dir, cfg, where)
    for name in ("videos", "clips", "errors", "shards", "logs"):
        shutil.rmtree(os.path.join(output, name), ignore_errors=True)
    os.makedirs(output, exist_ok=True)
    for name in ("videos",):
        shutil.copytree(os.path.join(run_dir, name), os.path.join(output, name))
    old_errors = read_table(run_dir, "errors")
    old_errors = old_errors.to_pylist() if old_errors is not None else []
    old_shards = os.path.join(run_dir, "shards")
    log.info("vidcurate filter: %d clips, %d kept -> %s", len(rows), sum(r["keep"] for r in rows), output)
    n_videos = len({r["video_id"] for r in rows})

    def build(p):
        clips = p | "Clips" >> beam.Create(rows)
        out = clips | "Materialise" >> beam_pipeline.MaterialiseClips(cfg, output, old_shards)
        shards = beam_pipeline.table_shards(n_videos, cfg)
        beam_pipeline.write_table(out["clips"], os.path.join(output, "clips", "part"), schemas.clips_schema(),
                                  shards["clips"], "Clips")
        errors = (p | "OldErrors" >> beam.Create(old_errors), out["errors"]) | "AllErrors" >> beam.Flatten()
        beam_pipeline.write_table(errors, os.path.join(output, "errors", "part"), schemas.ERRORS, 1, "Errors")

    wall = execute(output, pipeline_options(cfg, beam_args or []), set(), build)
    summary = summarize(output, cfg, ["filter"], wall, n_videos, False)
    summary["filtered_from"] = run_dir
    summary["where"] = where
    return write_summary(output, summary)

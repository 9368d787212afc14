"""``vidcurate filter``: re-apply filters to a finished run without recomputing any score.

Clips that were already in a shard are copied out of it; clips that were never cut (a
``--no-clips`` run, or newly kept by looser filters) are cut from their source now, and only
those: the score-first, cut-later workflow.
"""

from __future__ import annotations

import json
import logging
import os

import apache_beam as beam

from pipeline import balance, rundir
from pipeline.dedup import dedup_rows
from pipeline.filtering import collect_values
from pipeline.media import Materialise
from pipeline.options import pipeline_options
from pipeline.run import execute, publish
from pipeline.summary import reason_counts, summarize
from pipeline.tables import CLIPS, ERRORS, WriteTable, read_rows, read_table, table_files, table_shards
from transforms import storage
from transforms.filters import apply_filters, percentile_columns, percentile_thresholds
from transforms.rows import ClipRow, ErrorRow

log = logging.getLogger(__name__)


def where_ids(run_dir: str, where: str) -> set[str]:
    """clip_ids matching a SQL predicate over the run's clips table (DuckDB)."""
    from pipeline.stats import connect

    con = connect(run_dir)
    try:
        return {r[0] for r in con.execute(f"SELECT clip_id FROM clips WHERE {where}").fetchall()}
    except Exception as exc:  # duckdb raises several error types for bad SQL
        raise ValueError(f"--where {where!r} is not a valid condition on the clips table: {exc}") from None
    finally:
        con.close()


def source_stages(run_dir: str) -> list[str]:
    """The stages the run being filtered computed (from its summary.json)."""
    summary = json.loads(storage.read_bytes(os.path.join(rundir.resolve(run_dir), "summary.json")))
    return list(summary.get("source_stages") or summary.get("stages") or [])


MEDIA_SECTIONS = ("clips", "write")


def with_run_media(run_dir: str, cfg):
    """``cfg`` with the run's own ``clips`` and ``write`` sections (how its clips were cut and
    packed: size, rate, shard buckets), so clips cut now match the ones copied; a key ``cfg``
    sets to something other than its default (``--set clips.X=...``, ``--config``) wins."""
    from pipeline.config import config_from_dict, load_config

    path = os.path.join(rundir.resolve(run_dir), "summary.json")
    try:
        ran = config_from_dict(json.loads(storage.read_bytes(path))["config"], migrate=True).to_dict()
    except (OSError, KeyError, ValueError):
        return cfg  # an old or partial run: the defaults
    default, data = load_config(None, []).to_dict(), cfg.to_dict()
    for section in MEDIA_SECTIONS:
        for key, value in ran.get(section, {}).items():
            if data[section].get(key) == default[section].get(key):
                data[section][key] = value
    return config_from_dict(data)


def checked(data: dict) -> ClipRow:
    """A clip row read back from a table: its ids and shard name become file names, so they
    must have the forms vidcurate writes (else :class:`pipeline.rundir.RunDirError`)."""
    row = ClipRow.from_dict(data, strict=False)
    rundir.check_video_id(row.video_id)
    rundir.check_clip_id(row.clip_id)
    if not row.clip_id.startswith(row.video_id + "_"):
        raise rundir.RunDirError(f"clip_id {row.clip_id!r} does not belong to video_id {row.video_id!r}")
    if row.shard is not None:
        rundir.check_shard_name(row.shard)
    return row


def refiltered_rows(run_dir: str, cfg, where: str | None = None) -> list[ClipRow]:
    """The run's clip rows with keep/reject_reasons recomputed under ``cfg`` (and ``where``),
    through the same :func:`transforms.filters.apply_filters` as ``vidcurate run``."""
    gen = rundir.resolve(run_dir)
    table = read_table(gen, "clips")
    if table is None:
        raise ValueError(f"{run_dir} has no clips table; is it a vidcurate run directory?")
    rows = [checked(r) for r in table.to_pylist()]
    ran = source_stages(run_dir)
    if cfg.dedup.against and "dedup" not in ran:
        raise ValueError(f"--dedup-against: {run_dir} was run without the dedup stage (no signatures to compare)")
    extra = percentile_thresholds(collect_values(percentile_columns(cfg), rows), cfg)
    passing = where_ids(run_dir, where) if where else None
    out = []
    for row in rows:
        new = apply_filters(row, cfg, extra, ran)
        if passing is not None and row.clip_id not in passing:
            new = new.replace(reject_reasons=sorted(set(new.reject_reasons) | {"where"}), keep=False)
        out.append(new)
    if "dedup" in ran:
        out = dedup_rows(out, cfg)
    # A kept row keeps its old shard name as a pointer to its media until it is re-packed.
    return [new.replace(shard=old.shard if new.keep else None) for old, new in zip(rows, out)]


def dry_run(run_dir: str, cfg, where: str | None = None) -> dict:
    """What ``vidcurate filter`` would keep, without writing anything."""
    rows = refiltered_rows(run_dir, cfg, where)
    kept = [r for r in rows if r.keep]
    return {"clips": len(rows), "kept": len(kept), "hours_kept": round(sum(r.duration_s for r in kept) / 3600, 4),
            "reject_reasons": reason_counts(r.reject_reasons for r in rows)}


def refilter(run_dir: str, output: str, cfg, where: str | None = None, beam_args: list[str] | None = None) -> dict:
    """Write the re-filtered run to ``output`` (a new run directory, or an earlier filter
    output: its previous generation stays readable until the new one is complete)."""
    run_dir, output = storage.absolute(run_dir), storage.absolute(output)
    if rundir.inside(output, run_dir) or rundir.inside(run_dir, output):
        raise ValueError("--output must be a new directory outside the run being filtered (and not containing it)")
    gen_in = rundir.resolve(run_dir)
    rows = refiltered_rows(run_dir, cfg, where)
    stages = source_stages(run_dir)
    rundir.claim(output)
    with rundir.locked(output):
        generation = rundir.new_generation(output)
        for part in table_files(os.path.join(gen_in, "videos")):  # the videos table as it is
            storage.put_bytes(os.path.join(generation, "videos", os.path.basename(part)), storage.read_bytes(part))
        old_errors = [ErrorRow.from_dict(e) for e in read_rows(gen_in, ERRORS)]
        old_shards = os.path.join(gen_in, "shards")
        log.info("vidcurate filter: %d clips, %d kept -> %s", len(rows), sum(r.keep for r in rows), output)
        n_videos = len({r.video_id for r in rows})

        def build(p):
            clips = p | "Clips" >> beam.Create(rows)
            out = clips | "Materialise" >> Materialise(cfg, output, generation, old_shards)
            out["clips"] | "WriteClips" >> WriteTable(generation, CLIPS, table_shards(n_videos, cfg)[CLIPS])
            errors = (p | "OldErrors" >> beam.Create(old_errors), out["errors"]) | "AllErrors" >> beam.Flatten()
            errors | "WriteErrors" >> WriteTable(generation, ERRORS, 1)

        small = balance.small_job(sorted({r.source for r in rows}))  # one process for a few short sources
        wall = execute(generation, pipeline_options(cfg, beam_args or [], small=small), 0, build)  # no analysis: no bar
        summary = summarize(generation, cfg, ["filter"], wall, n_videos, False)
        summary["source_stages"] = stages
        summary["filtered_from"] = run_dir
        summary["where"] = where
        return publish(output, generation, summary)

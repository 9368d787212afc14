"""The curation graph, top to bottom:

    sources ─ AnalyzeVideos ─┬─ videos ──────────────────────────────────────────── videos/*.parquet
      (+ resumed records)    ├─ errors ──────────────────────────────────────────── errors/*.parquet
                             └─ clips ─ Route ─┬─ ScoreModels ─┬─ FilterClips ─ Materialise ─ clips/*.parquet
                                               └──────────────┘    (the verdict,   └─ shards/*.tar
                                                                   then dedup)

Cheap filters first: only clips that pass the analysis stages' filters reach the model stages.
"""

from __future__ import annotations

import os

import apache_beam as beam

from pipeline import balance
from pipeline.analysis import AnalyzeVideos, Resumed, emit
from pipeline.filtering import FilterClips, Route
from pipeline.media import Materialise
from pipeline.resume import scored_dir, staging_dir
from pipeline.tables import CLIPS, ERRORS, VIDEOS, WriteTable, table_shards
from pipeline.tally import TALLY
from transforms.stages import BY_NAME, MODEL_STAGES


def build(p: beam.Pipeline, sources: list[str], output: str, dest: str, cfg, stages, write_media: bool = True,
          done: list[dict] = (), workers: int = 0, spec: str | None = None) -> None:
    """Add the curation of ``sources`` to ``p``: tables and shards go to the generation ``dest``,
    completion records and staged clips under the run directory ``output``. ``done``: records of
    videos an earlier run analyzed (not redone). ``workers`` > 1: a local run, work dealt out by
    cost (:mod:`pipeline.balance`). ``spec``: instead of ``sources`` and ``done``, the --input
    string, expanded and joined with the completion records inside the pipeline
    (:mod:`pipeline.plan`)."""
    progress = os.path.join(dest, TALLY)
    if spec is not None:
        from pipeline.plan import PLANNED_PARTS, PlanInputs

        planned = p | "Plan" >> PlanInputs(spec, output, cfg, stages, progress)
        fresh = planned["todo"] | "Analyze" >> AnalyzeVideos(cfg, output, stages, 0, progress)
        resumed = planned["done"] | "Resumed" >> beam.FlatMap(emit).with_outputs(CLIPS, ERRORS, main=VIDEOS)
    else:
        work = balance.plan_work(sources, cfg, workers) if workers > 1 else sources
        fresh = p | "Sources" >> beam.Create(work) | "Analyze" >> AnalyzeVideos(cfg, output, stages, workers, progress)
        resumed = p | "Resumed" >> Resumed(list(done))
    videos, clips, errors = ((fresh[t], resumed[t]) | f"All{t.title()}" >> beam.Flatten() for t in (VIDEOS, CLIPS, ERRORS))
    errors = [errors]
    models = [s for s in MODEL_STAGES if s in stages]
    if models:
        from pipeline.scoring import ScoreModels  # Beam's RunInference imports torch: only when needed

        analyzed = [s for s in stages if not BY_NAME[s].is_model]
        score_rejected = getattr(cfg, BY_NAME[models[0]].section).score_rejected
        routed = clips | "Route" >> Route(cfg, analyzed, score_rejected)
        scored = routed["in"] | "Models" >> ScoreModels(cfg, stages, staging_dir(output, cfg) if write_media else None,
                                                        scored_dir(output, cfg, stages) if output else None)
        clips = (routed["out"], scored["clips"]) | "AllScored" >> beam.Flatten()
        errors.append(scored["errors"])
    clips = clips | "Filter" >> FilterClips(cfg, stages)
    if write_media:
        written = clips | "Materialise" >> Materialise(cfg, output, dest, workers=workers)
        clips = written["clips"]
        errors.append(written["errors"])
    files = PLANNED_PARTS if spec is not None else table_shards(len(sources) + len(done), cfg)
    errors = tuple(errors) | "AllErrorRows" >> beam.Flatten()
    videos | "WriteVideos" >> WriteTable(dest, VIDEOS, files[VIDEOS])
    clips | "WriteClips" >> WriteTable(dest, CLIPS, files[CLIPS])
    errors | "WriteErrors" >> WriteTable(dest, ERRORS, files[ERRORS])
    {VIDEOS: videos, CLIPS: clips, ERRORS: errors} | "Counts" >> CountRows(cfg, dest)


class CountRows(beam.PTransform):
    """{videos, clips, errors} -> ``<generation>/logs/counts.json``: what ``summary.json``
    reports (per status, hours, reject reasons, errors by type), combined in the pipeline so
    the driver never reads the rows back."""

    def __init__(self, cfg, dest: str):
        super().__init__()
        self.max_attempts, self.dest = cfg.input.max_attempts, dest

    def expand(self, tables):
        from pipeline import summary

        m = self.max_attempts
        partial = [tables[k] | f"Count{k.title()}" >> beam.CombineGlobally(_RowCounts(k, m)) for k in (VIDEOS, CLIPS, ERRORS)]
        with_kept = (tables[CLIPS]
                     | "KeptVideoIds" >> beam.FlatMap(lambda r: [r.video_id] if r.keep else [])
                     | "DistinctKeptVideos" >> beam.Distinct()
                     | "CountKeptVideos" >> beam.combiners.Count.Globally())
        dest = self.dest

        def write(counts, kept_videos):
            import json
            import os

            from transforms import storage

            out = summary.merge_counts(counts)
            out["videos_with_kept"] = kept_videos
            storage.put_bytes(os.path.join(dest, summary.COUNTS), json.dumps(out, sort_keys=True).encode())

        return (tuple(partial) | "AllCounts" >> beam.Flatten()
                | "OneList" >> beam.combiners.ToList()
                | "WriteCounts" >> beam.Map(write, beam.pvalue.AsSingleton(with_kept)))


class _RowCounts(beam.CombineFn):
    """Typed rows of one table -> their counts (:func:`pipeline.summary.count_row`)."""

    def __init__(self, kind: str, max_attempts: int):
        self.kind, self.max_attempts = kind, max_attempts

    def create_accumulator(self):
        from pipeline.summary import empty_counts

        return empty_counts()

    def add_input(self, acc, row):
        from pipeline.summary import count_row

        return count_row(acc, self.kind, row, self.max_attempts)

    def merge_accumulators(self, accs):
        from pipeline.summary import merge_counts

        return merge_counts(accs)

    def extract_output(self, acc):
        return acc

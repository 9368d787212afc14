"""The curation graph, top to bottom:

    sources ─ AnalyzeVideos ─┬─ videos ──────────────────────────────────────────── videos/*.parquet
      (+ resumed records)    ├─ errors ──────────────────────────────────────────── errors/*.parquet
                             └─ clips ─ Route ─┬─ ScoreModels ─┬─ FilterClips ─ Materialise ─ clips/*.parquet
                                               └──────────────┘    (the verdict,   └─ shards/*.tar
                                                                   then dedup)

Cheap filters first: only clips that pass the analysis stages' filters reach the model stages.
"""

from __future__ import annotations

import apache_beam as beam

from pipeline import balance
from pipeline.analysis import AnalyzeVideos, Resumed
from pipeline.filtering import FilterClips, Route
from pipeline.media import Materialise
from pipeline.resume import scored_dir, staging_dir
from pipeline.tables import CLIPS, ERRORS, VIDEOS, WriteTable, table_shards
from transforms.stages import BY_NAME, MODEL_STAGES


def build(p: beam.Pipeline, sources: list[str], output: str, dest: str, cfg, stages, write_media: bool = True,
          done: list[dict] = (), workers: int = 0) -> None:
    """Add the curation of ``sources`` to ``p``: tables and shards go to the generation ``dest``,
    completion records and staged clips under the run directory ``output``. ``done``: records of
    videos an earlier run analyzed (not redone). ``workers`` > 1: a local run, work dealt out by
    cost (:mod:`pipeline.balance`)."""
    work = balance.plan_work(sources, cfg, workers) if workers > 1 else sources
    fresh = p | "Sources" >> beam.Create(work) | "Analyze" >> AnalyzeVideos(cfg, output, stages, workers)
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
    files = table_shards(len(sources) + len(done), cfg)
    videos | "WriteVideos" >> WriteTable(dest, VIDEOS, files[VIDEOS])
    clips | "WriteClips" >> WriteTable(dest, CLIPS, files[CLIPS])
    tuple(errors) | "AllErrorRows" >> beam.Flatten() | "WriteErrors" >> WriteTable(dest, ERRORS, files[ERRORS])

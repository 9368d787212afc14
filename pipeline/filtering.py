"""The filter verdict over clip rows, and the cheap routing checks before and between model stages.

``FilterClips`` is where ``keep`` and ``reject_reasons`` are decided, once per run, by
:func:`transforms.filters.apply_filters` (the code ``vidcurate filter`` runs). Percentile cuts
need the whole dataset: ``Thresholds`` turns them into absolute bounds with one global combine,
given to the rows as a side input.
"""

from __future__ import annotations

import apache_beam as beam

from transforms.filters import apply_filters, passes, percentile_columns, percentile_thresholds


def collect_values(columns: list[str], rows) -> dict[str, list]:
    """column -> every non-null value of it in ``rows``."""
    values: dict[str, list] = {c: [] for c in columns}
    for row in rows:
        for c in columns:
            x = getattr(row, c, None)
            if x is not None:
                values[c].append(x)
    return values


def merge_values(parts) -> dict[str, list]:
    out: dict[str, list] = {}
    for part in parts:
        for c, xs in part.items():
            out.setdefault(c, []).extend(xs)
    return out


class Thresholds(beam.PTransform):
    """clip rows -> one element: the absolute bounds equal to the config's percentile cuts."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg

    def expand(self, clips):
        cfg, columns = self.cfg, percentile_columns(self.cfg)
        return (clips
                | "ScoreValues" >> beam.Map(lambda r: collect_values(columns, [r]))
                | "AllValues" >> beam.CombineGlobally(merge_values)
                | "Percentiles" >> beam.Map(percentile_thresholds, cfg))


class FilterClips(beam.PTransform):
    """clip rows -> the same rows with ``keep`` and ``reject_reasons`` (the run's verdict); with
    the dedup stage, duplicates among the kept clips are then rejected too."""

    def __init__(self, cfg, ran):
        """``ran``: the stages that have run (their bounds apply)."""
        super().__init__()
        self.cfg, self.ran = cfg, tuple(ran)

    def expand(self, clips):
        cfg, ran = self.cfg, self.ran
        if not percentile_columns(cfg):
            verdict = clips | "Verdict" >> beam.Map(apply_filters, cfg, (), ran)
        else:
            bounds = clips | "Thresholds" >> Thresholds(cfg)
            verdict = clips | "Verdict" >> beam.Map(lambda r, extra: apply_filters(r, cfg, extra, ran),
                                                    beam.pvalue.AsSingleton(bounds))
        if "dedup" in ran:  # across clips: among those every other filter keeps
            from pipeline.dedup import MarkDuplicates

            verdict = verdict | "Dedup" >> MarkDuplicates(cfg)
        return verdict


class Route(beam.PTransform):
    """clip rows -> {"in": rows the model stages score, "out": the rest}: the clips that pass
    every filter of the stages that have run (percentile cuts included), plus all clips when
    the first model stage has ``score_rejected``. A routing check only: no verdict is set."""

    def __init__(self, cfg, ran, score_rejected: bool):
        super().__init__()
        self.cfg, self.ran, self.score_rejected = cfg, tuple(ran), score_rejected

    def expand(self, clips):
        cfg, ran, everything = self.cfg, self.ran, self.score_rejected

        def route(row, extra):
            return 0 if everything or passes(row, cfg, extra, ran) else 1

        if percentile_columns(cfg):
            bounds = beam.pvalue.AsSingleton(clips | "Thresholds" >> Thresholds(cfg))
        else:
            bounds = beam.pvalue.AsSingleton(clips.pipeline | "NoThresholds" >> beam.Create([[]]))
        parts = clips | "Route" >> beam.Partition(lambda r, n, extra: route(r, extra), 2, bounds)
        return {"in": parts[0], "out": parts[1]}

"""``ScoreModels``: the model stages (the registry's, in its order) over clip rows.

    clips ─ ByVideo ─ ReadFrames ─ <step> RunInference ─ Next ─ ... ─┬─ scored rows
            (one decode per source: every stage's frames,           └─ errors
             and the clip media when clips are written)

Each model step is a stock ``RunInference`` with :class:`StepHandler`, a thin ``ModelHandler``
around the step's pure ``load``/``predict`` (:mod:`transforms.stages`): loaded once per worker,
fixed-size batches across clips. A failed batch becomes error rows and its clips go on
unscored. Between stages a cheap routing check lets only passing clips go on (unless the next
stage has ``score_rejected``); the verdict is :class:`pipeline.filtering.FilterClips`'s.
"""

from __future__ import annotations

import dataclasses
import logging
import os

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, PredictionResult, RunInference

from pipeline.tables import ERRORS
from transforms.clips import read_clips
from transforms.filters import passes
from transforms.model_frames import ClipWork
from transforms.rows import error
from transforms.stages import BY_NAME, frame_specs, model_steps

log = logging.getLogger(__name__)

DONE = "done"


class Loaded:
    """A loaded model as Beam's shared-model cache wants it (weak-referenceable)."""

    def __init__(self, value):
        self.value = value


class StepHandler(ModelHandler):
    """One model step as a ModelHandler: ``load_model`` and batched ``run_inference`` call the
    step's pure functions; the inference of each :class:`ClipWork` is the updated work."""

    def __init__(self, cfg, step):
        self.cfg, self.step = cfg, step

    def load_model(self):
        return Loaded(self.step.load(self.cfg))

    def run_inference(self, batch, model, inference_args=None):
        try:
            updated = self.step.predict(model.value, list(batch), self.cfg)
        except Exception as exc:  # noqa: BLE001 - a failed batch is data: its clips go on unscored
            log.warning("%s failed on a batch of %d clips: %s", self.step.name, len(batch), exc)
            updated = [dataclasses.replace(w, failed=(self.step.name, type(exc).__name__, str(exc))) for w in batch]
        return [PredictionResult(w, u, self.step.name) for w, u in zip(batch, updated)]

    def batch_elements_kwargs(self):
        # Fixed-size batches (a bundle's last one may be smaller): Beam's adaptive sizing starts at 1.
        return {"min_batch_size": self.step.batch_size, "max_batch_size": self.step.batch_size}

    def get_num_bytes(self, batch) -> int:
        return sum(w.nbytes for w in batch)

    def get_metrics_namespace(self) -> str:
        return f"vidcurate_{self.step.name}"


class ReadFramesFn(beam.DoFn):
    """(video_id, clip rows) -> (clip_id, ClipWork) with every stage's frames, from one decode of
    the source; with ``staging`` the clips are written in the same decode. A clip whose frames
    cannot be read (or written) goes on unscored (tag ``done``) with an error row."""

    def __init__(self, cfg, stages, staging: str | None = None):
        self.cfg, self.stages, self.staging = cfg, tuple(stages), staging
        self.read = Metrics.counter("vidcurate", "model_clips_read")

    def process(self, element):
        _, rows = element
        rows = list(rows)
        out_dir = os.path.join(self.staging, rows[0].video_id) if self.staging else None
        try:
            for row, _, frames, err in read_clips(rows[0].source, rows, self.cfg,
                                                  frame_specs(self.cfg, self.stages), out_dir):
                if err:  # unscored: the verdict rejects it as <stage>_failed, as `vidcurate filter` would
                    yield beam.pvalue.TaggedOutput(ERRORS, error(row.source, "frames", "FrameReadError", err, row.clip_id))
                    yield beam.pvalue.TaggedOutput(DONE, row)
                    continue
                self.read.inc()
                yield row.clip_id, ClipWork(row, frames)
        except Exception as exc:  # noqa: BLE001 - the source could not be opened: every clip unscored
            for row in rows:
                message = getattr(exc, "message", str(exc))
                yield beam.pvalue.TaggedOutput(ERRORS, error(row.source, "frames", type(exc).__name__, message, row.clip_id))
                yield beam.pvalue.TaggedOutput(DONE, row)


def after_step(cfg, ran, next_stage):
    """The post-processor of a step: its failure as an error row; then the work goes to the
    next step, or out (``done``) when it was the last one or fails the routing check."""
    errors = Metrics.counter("vidcurate", "model_errors")

    def step(kv):
        key, result = kv
        work = result.inference
        if work.failed:
            errors.inc()
            label, kind, message = work.failed
            yield beam.pvalue.TaggedOutput(ERRORS, error(work.row.source, label, kind, message, work.row.clip_id))
            work = dataclasses.replace(work, failed=None)
        if next_stage is None:
            yield beam.pvalue.TaggedOutput(DONE, work.row)
        elif ran is None or passes(work.row, cfg, (), ran) or getattr(cfg, BY_NAME[next_stage].section).score_rejected:
            yield key, work
        else:
            yield beam.pvalue.TaggedOutput(DONE, work.row)
    return step


class ScoreModels(beam.PTransform):
    """clip rows to score -> {"clips": the rows with their scores, "errors": error rows}"""

    def __init__(self, cfg, stages, staging: str | None = None):
        """``stages``: every stage of the run (model stages run in registry order); ``staging``:
        where clip media go when clips are written (then from the same decode)."""
        super().__init__()
        self.cfg, self.stages, self.staging = cfg, tuple(stages), staging

    def expand(self, clips):
        cfg, steps = self.cfg, model_steps(self.cfg, self.stages)
        read = (clips
                | "ByVideo" >> beam.Map(lambda r: (r.video_id, r))
                | "GroupByVideo" >> beam.GroupByKey()
                | "ReadFrames" >> beam.ParDo(ReadFramesFn(cfg, self.stages, self.staging))
                .with_outputs(ERRORS, DONE, main="works"))
        errors, done, works = [read[ERRORS]], [read[DONE]], read["works"]
        ran = [s for s in self.stages if not BY_NAME[s].is_model]
        for i, (stage, step) in enumerate(steps):
            nxt = steps[i + 1][0].name if i + 1 < len(steps) else None
            if nxt != stage.name:
                ran.append(stage.name)  # this stage's scores are complete: route on them
            out = (works
                   | f"{step.label}RunInference" >> RunInference(KeyedModelHandler(StepHandler(cfg, step)))
                   | f"{step.label}Next" >> beam.FlatMap(after_step(cfg, tuple(ran) if nxt != stage.name else None, nxt))
                   .with_outputs(ERRORS, DONE, main="next"))
            errors.append(out[ERRORS])
            done.append(out[DONE])
            works = out["next"]
        return {"clips": tuple(done) | "AllScored" >> beam.Flatten(),
                "errors": tuple(errors) | "AllModelErrors" >> beam.Flatten()}

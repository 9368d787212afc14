"""``ScoreModels``: the model stages (the registry's, in its order) over clip rows.

    clips ─ ByVideo ─ ReadFrames ─ <step> RunInference ─ Next ─ ... ─┬─ scored rows
            (one decode per source: every stage's frames,           └─ errors
             and the clip media when clips are written)

Each model step is a stock ``RunInference`` with :class:`StepHandler`, a thin ``ModelHandler``
around the step's pure ``load``/``predict`` (:mod:`transforms.stages`): loaded once per worker,
fixed-size batches across clips. A failed batch becomes error rows and its clips go on
unscored. Between stages a cheap routing check lets only passing clips go on (unless the next
stage has ``score_rejected``); the verdict is :class:`pipeline.filtering.FilterClips`'s.

Resume per clip: scored clips (with the error rows of their failed steps) are saved in the
output store in small batches (:class:`CheckpointFn`, ``runner.checkpoint_clips`` /
``checkpoint_s``). A re-run joins the clips to score with those checkpoints by video
(the same shuffle that groups them for decoding) and scores only the clips not saved.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, PredictionResult, RunInference

from pipeline import resume
from pipeline.tables import ERRORS
from transforms.clips import read_clips
from transforms.filters import passes
from transforms.model_frames import ClipWork
from transforms.rows import error
from transforms.stages import BY_NAME, frame_specs, model_steps

log = logging.getLogger(__name__)

DONE = "done"
SAVED = "saved"


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

    def share_model_across_processes(self) -> bool:
        return share_models(self.cfg, self.step)

    def model_copies(self) -> int:
        return self.cfg.runner.model_copies


def share_models(cfg, step) -> bool:
    """``runner.share_model_across_processes``: "auto" shares a model that runs on a GPU."""
    mode = cfg.runner.share_model_across_processes
    if mode != "auto":
        return mode == "always"
    section = getattr(cfg, BY_NAME[step.name].section, None) if step.name in BY_NAME else None
    device = getattr(section, "device", "auto")
    if device == "auto":
        import torch

        return torch.cuda.is_available()
    return str(device).startswith("cuda")


class ReadFramesFn(beam.DoFn):
    """(video_id, clip rows) -> (clip_id, ClipWork) with every stage's frames, from one decode of
    the source; with ``staging`` the clips are written in the same decode. A clip whose frames
    cannot be read (or written) goes on unscored (tag ``done``) with an error row."""

    def __init__(self, cfg, stages, staging: str | None = None):
        self.cfg, self.stages, self.staging = cfg, tuple(stages), staging
        self.read = Metrics.counter("vidcurate", "model_clips_read")

        self.reused = Metrics.counter("vidcurate", "model_clips_reused")

    def process(self, element):
        """``(video_id, {"clips": rows, "saved": [(row, errors)]})``: saved clips go out as
        they were saved (tag ``saved``); the others are read for scoring."""
        _, parts = element
        saved = {row.clip_id: (row, errors) for row, errors in parts.get("saved", ())}
        rows = []
        for row in parts["clips"]:
            if row.clip_id in saved:
                self.reused.inc()
                yield beam.pvalue.TaggedOutput(SAVED, saved[row.clip_id])
            else:
                rows.append(row)
        if not rows:
            return
        out_dir = os.path.join(self.staging, rows[0].video_id) if self.staging else None
        try:
            for row, _, frames, err in read_clips(rows[0].source, rows, self.cfg,
                                                  frame_specs(self.cfg, self.stages), out_dir):
                if err:  # unscored: the verdict rejects it as <stage>_failed, as `vidcurate filter` would
                    yield beam.pvalue.TaggedOutput(DONE, (row, [error(row.source, "frames", "FrameReadError", err, row.clip_id)]))
                    continue
                self.read.inc()
                yield row.clip_id, ClipWork(row, frames)
        except Exception as exc:  # noqa: BLE001 - the source could not be opened: every clip unscored
            for row in rows:
                message = getattr(exc, "message", str(exc))
                yield beam.pvalue.TaggedOutput(DONE, (row, [error(row.source, "frames", type(exc).__name__, message, row.clip_id)]))


class CheckpointFn(beam.DoFn):
    """(scored row, its error rows) -> the row (main) and the errors (tag ``errors``), saving
    them to ``directory`` every ``clips`` clips or ``seconds`` seconds and at the end of a
    bundle. Without a directory it only splits."""

    def __init__(self, directory: str | None, clips: int = 64, seconds: float = 30.0):
        self.directory, self.clips, self.seconds = directory, clips, seconds
        self.saved = Metrics.counter("vidcurate", "model_checkpoints_written")

    def start_bundle(self):
        self.buffer, self.since = [], time.monotonic()

    def process(self, item):
        row, errors = item
        if self.directory:
            self.buffer.append((row, errors))
            if len(self.buffer) >= self.clips or time.monotonic() - self.since >= self.seconds:
                self.flush()
        yield row
        for e in errors:
            yield beam.pvalue.TaggedOutput(ERRORS, e)

    def finish_bundle(self):
        self.flush()

    def flush(self):
        if self.buffer:
            resume.write_scored(self.directory, self.buffer)
            self.saved.inc()
        self.buffer, self.since = [], time.monotonic()


def split_saved(item):
    row, errors = item
    yield row
    for e in errors:
        yield beam.pvalue.TaggedOutput(ERRORS, e)


def read_checkpoints(directory: str):
    """A checkpoint directory -> (video_id, (row, errors)) of every clip saved there."""
    return ((row.video_id, (row, errors)) for path in resume.checkpoint_files(directory)
            for row, errors in resume.read_scored(path))


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
            failure = error(work.row.source, label, kind, message, work.row.clip_id)
            work = dataclasses.replace(work, failed=None, errors=[*work.errors, failure])
        if next_stage is None:
            yield beam.pvalue.TaggedOutput(DONE, (work.row, work.errors))
        elif ran is None or passes(work.row, cfg, (), ran) or getattr(cfg, BY_NAME[next_stage].section).score_rejected:
            yield key, work
        else:
            yield beam.pvalue.TaggedOutput(DONE, (work.row, work.errors))
    return step


class ScoreModels(beam.PTransform):
    """clip rows to score -> {"clips": the rows with their scores, "errors": error rows}"""

    def __init__(self, cfg, stages, staging: str | None = None, checkpoints: str | None = None):
        """``stages``: every stage of the run (model stages run in registry order); ``staging``:
        where clip media go when clips are written (then from the same decode);
        ``checkpoints``: where scored clips are saved and found again (None: not saved)."""
        super().__init__()
        self.cfg, self.stages, self.staging, self.checkpoints = cfg, tuple(stages), staging, checkpoints

    def expand(self, clips):
        cfg, steps = self.cfg, model_steps(self.cfg, self.stages)
        by_video = clips | "ByVideo" >> beam.Map(lambda r: (r.video_id, r))
        if self.checkpoints:
            saved = (clips.pipeline
                     | "CheckpointDir" >> beam.Create([self.checkpoints])
                     | "ReadCheckpoints" >> beam.FlatMap(read_checkpoints))
            grouped = {"clips": by_video, "saved": saved} | "GroupByVideo" >> beam.CoGroupByKey()
        else:
            grouped = (by_video | "GroupByVideo" >> beam.GroupByKey()
                       | "AsParts" >> beam.MapTuple(lambda vid, rows: (vid, {"clips": rows})))
        read = grouped | "ReadFrames" >> beam.ParDo(ReadFramesFn(cfg, self.stages, self.staging)).with_outputs(
            DONE, SAVED, main="works")
        errors, done, works = [], [read[DONE]], read["works"]
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
        runner = cfg.runner
        fresh = (tuple(done) | "AllScored" >> beam.Flatten()
                 | "Checkpoint" >> beam.ParDo(CheckpointFn(self.checkpoints, runner.checkpoint_clips, runner.checkpoint_s))
                 .with_outputs(ERRORS, main="clips"))
        again = read[SAVED] | "FromCheckpoints" >> beam.FlatMap(split_saved).with_outputs(ERRORS, main="clips")
        return {"clips": (fresh["clips"], again["clips"]) | "ScoredClips" >> beam.Flatten(),
                "errors": (*errors, fresh[ERRORS], again[ERRORS]) | "AllModelErrors" >> beam.Flatten()}

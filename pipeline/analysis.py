"""``AnalyzeVideos``: sources -> video rows, clip rows and error rows (probe, cuts, motion).

    sources ─ spread ─ AnalyzeOrPlan ─┬─ whole videos: analyzed from their one open ──────┐
                                      └─ long videos: segments ─ AnalyzeSegments ─ Merge ─┴─ videos / clips / errors

Each video's outputs are written as its completion record (last) before they are emitted, so a
killed run resumes from the records (:mod:`pipeline.resume`). Failures are data: an input that
cannot be analyzed is a video row with status ``error`` and an error row.
"""

from __future__ import annotations

import logging
import traceback

import apache_beam as beam
from apache_beam.metrics import Metrics

from pipeline import balance, resume, tally
from pipeline.tables import CLIPS, ERRORS, VIDEOS
from transforms.rows import error, failed_video, failure_of, video_id_for
from transforms.stages import DEFAULT

log = logging.getLogger(__name__)

SEGMENTS = "segments"


def one_thread_per_worker() -> None:
    """The local runner starts one worker process per core (remote runners one per vCPU):
    OpenCV's own thread pool on top of that only adds contention."""
    import cv2

    cv2.setNumThreads(1)


def failed(source: str, exc: Exception) -> tuple:
    """(video row, no clips, error row) of an input whose analysis raised ``exc``."""
    error_type, message = failure_of(exc, source)
    if not hasattr(exc, "error_type"):  # not a VideoError: a bug or an environment problem
        log.error("%s\n%s", message, traceback.format_exc())
    return failed_video(source, error_type, message), [], error(source, "analyze", error_type, message)


def emit(record: dict):
    """A video's record as the outputs of AnalyzeVideos (fresh or resumed)."""
    yield record["video"]
    for clip in record["clips"]:
        yield beam.pvalue.TaggedOutput(CLIPS, clip)
    if record["error"]:
        yield beam.pvalue.TaggedOutput(ERRORS, record["error"])


class _Finishing(beam.DoFn):
    def __init__(self, cfg, output: str | None, stages, progress: str | None = None):
        self.cfg, self.output, self.stages, self.progress = cfg, output, tuple(stages), progress
        self.key = resume.analysis_key(cfg, self.stages)
        self.videos = Metrics.counter("vidcurate", "videos_analyzed")
        self.failures = Metrics.counter("vidcurate", "videos_failed")
        self.clips = Metrics.counter("vidcurate", "clips_found")

    def setup(self):
        one_thread_per_worker()

    def finish_video(self, video, clips, err):
        (self.failures if video.status == "error" else self.videos).inc()
        self.clips.inc(len(clips))
        record = resume.finish(self.output, self.key, video, clips, err)
        tally.bump(self.progress)  # after the record: the bar never runs ahead of what is saved
        yield from emit(record)

    def finish_bundle(self):
        tally.flush(self.progress)


class AnalyzeOrPlanFn(_Finishing):
    """``(source, split_s)`` -> the video's outputs, or its segments (tag ``segments``) when it
    is long (see :func:`transforms.analyze.first_pass`: one open either way)."""

    def __init__(self, cfg, output, stages, workers: int = 0, progress: str | None = None):
        super().__init__(cfg, output, stages, progress)
        self.workers = workers
        self.split = Metrics.counter("vidcurate", "videos_split_into_segments")

    def process(self, element):
        from transforms.analyze import finalise
        from transforms.segments import Segment, first_pass

        source, split_s = element if isinstance(element, tuple) else (element, None)
        try:
            planned = first_pass(source, self.cfg, self.stages, split_s, self.workers)
            if isinstance(planned, tuple):
                index, spans = planned
                self.split.inc()
                for k, (a, b) in enumerate(spans):
                    yield beam.pvalue.TaggedOutput(SEGMENTS, Segment(source, k, len(spans), index, a, b))
                return
            outputs = finalise(planned, self.cfg)
        except Exception as exc:  # noqa: BLE001 - an unexpected failure on one input must not stop the job
            outputs = failed(source, exc)
        yield from self.finish_video(*outputs)


class AnalyzeSegmentFn(beam.DoFn):
    """segment -> (video_id, (segment, its result or None, its failure or None))"""

    def __init__(self, cfg, stages):
        self.cfg, self.stages = cfg, tuple(stages)

    def setup(self):
        one_thread_per_worker()

    def process(self, seg):
        from transforms.segments import analyze_segment

        try:
            result = analyze_segment(seg.source, self.cfg, seg.index, seg.start, seg.end, self.stages)
            yield video_id_for(seg.source), (seg, result, None)
        except Exception as exc:  # noqa: BLE001 - failures are data
            yield video_id_for(seg.source), (seg, None, failed(seg.source, exc))


class MergeSegmentsFn(_Finishing):
    def process(self, element):
        from transforms.analyze import finalise
        from transforms.segments import merge_segments

        parts = sorted(element[1], key=lambda p: p[0].k)
        first = parts[0][0]
        outputs = next((p[2] for p in parts if p[2] is not None), None)
        if outputs is None:
            try:
                analysis = merge_segments(first.source, self.cfg, first.index, [p[1] for p in parts], first.total)
                outputs = finalise(analysis, self.cfg, segments=len(parts))
            except Exception as exc:  # noqa: BLE001 - failures are data
                outputs = failed(first.source, exc)
        yield from self.finish_video(*outputs)


class AnalyzeVideos(beam.PTransform):
    """sources -> {"videos", "clips", "errors"} (typed rows)."""

    def __init__(self, cfg, output=None, stages=DEFAULT, workers: int = 0, progress: str | None = None):
        """``stages``: the run's stages (the analysis does those it holds: motion and the stages
        built on its flow; probe and cuts always). ``workers`` > 1 (local runner): sources are ``(bucket, (source, split_s))`` planned by
        :func:`pipeline.balance.plan_work`, each bucket on one worker, and segments of long
        videos are dealt out by cost too. Otherwise sources are plain and reshuffled.
        ``progress``: where workers keep their counts of finished videos (:mod:`pipeline.tally`)."""
        super().__init__()
        self.cfg, self.output, self.stages, self.workers = cfg, output, tuple(stages), workers
        self.progress = progress

    def expand(self, sources):
        spread = (sources | "DealToWorkers" >> balance.DealToWorkers() if self.workers > 1
                  else sources | "SpreadOverWorkers" >> beam.Reshuffle())
        planned = (spread
                   | "AnalyzeOrPlan" >> beam.ParDo(AnalyzeOrPlanFn(self.cfg, self.output, self.stages, self.workers,
                                                                   self.progress))
                   .with_outputs(SEGMENTS, CLIPS, ERRORS, main=VIDEOS))
        merged = (planned[SEGMENTS]
                  | "SpreadSegments" >> balance.Deal(self.workers, balance.segment_cost)
                  | "AnalyzeSegments" >> beam.ParDo(AnalyzeSegmentFn(self.cfg, self.stages))
                  | "GroupSegments" >> beam.GroupByKey()
                  | "MergeSegments" >> beam.ParDo(MergeSegmentsFn(self.cfg, self.output, self.stages, self.progress))
                  .with_outputs(CLIPS, ERRORS, main=VIDEOS))
        return {tag: (planned[tag], merged[tag]) | f"Join{tag.title()}" >> beam.Flatten()
                for tag in (VIDEOS, CLIPS, ERRORS)}


class Resumed(beam.PTransform):
    """Completion records of an earlier run -> the same outputs as AnalyzeVideos."""

    def __init__(self, records: list[dict]):
        super().__init__()
        self.records = records

    def expand(self, p):
        return (p
                | "Records" >> beam.Create(self.records)
                | "Outputs" >> beam.FlatMap(emit).with_outputs(CLIPS, ERRORS, main=VIDEOS))

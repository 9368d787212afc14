"""The Beam graph: composite PTransforms with named steps over the pure stage functions.

    sources ─ Reshuffle ─ AnalyzeVideos ─┬─ videos ───────────────────────────── videos/*.parquet
                                         ├─ errors ───────────────────────────── errors/*.parquet
                                         └─ clips ─ Filter ─┬─ rejected ────────┐
                                                            └─ kept ─ WriteClipMedia ─ PackShards ─ clips/*.parquet
                                                                                          └─ shards/*.tar
Failures are data: every DoFn sends a row to the ``errors`` output instead of raising, and
counts it with a Beam metric.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import shutil
import traceback

import apache_beam as beam
from apache_beam.metrics import Metrics

from pipeline import balance, resume, schemas
from transforms import decode
from transforms.analyze import analyze_video, finalise, video_id_for
from transforms.filters import apply_filters, percentile_columns, percentile_thresholds

log = logging.getLogger(__name__)

ERRORS = "errors"
CLIPS = "clips"


def error_row(source: str, stage: str, error_type: str, message: str, clip_id: str | None = None) -> dict:
    return {"source": source, "video_id": video_id_for(source), "clip_id": clip_id,
            "stage": stage, "error_type": error_type, "message": message}


def decode_error(source: str, problem: tuple[str, str] | None) -> dict | None:
    """The errors row of a video that was analysed but is not whole (stage ``decode``)."""
    return error_row(source, "decode", *problem) if problem else None


def failed_video_row(source: str, error_type: str, message: str) -> dict:
    row = {name: None for name in schemas.VIDEOS.names}
    row.update(video_id=video_id_for(source), source=source, status="error",
               error_type=error_type, error_message=message, scenes=[], cuts=[], transitions=[],
               num_clips=0)
    return row


class AnalyzeVideoFn(beam.DoFn):
    """Probe + cuts + motion from one decode; emits the video row, its clip rows and errors,
    and (with ``output``) writes the video's completion record last."""

    def __init__(self, cfg, output: str | None = None, motion: bool = True):
        self.cfg = cfg
        self.output = output
        self.motion = motion
        self.key = resume.analysis_key(cfg)
        self.videos_ok = Metrics.counter("vidcurate", "videos_ok")
        self.videos_failed = Metrics.counter("vidcurate", "videos_failed")
        self.clips_found = Metrics.counter("vidcurate", "clips_found")
        self.seconds = Metrics.distribution("vidcurate", "analysis_ms_per_video")

    def setup(self):
        one_thread_per_worker()

    def analyse(self, source: str) -> tuple[dict, list[dict], dict | None]:
        try:
            analysis = analyze_video(source, self.cfg, motion=self.motion)
            row, clips, problem = finalise(analysis, self.cfg.clips, self.cfg.limits)
            self.videos_ok.inc()
            self.clips_found.inc(len(clips))
            self.seconds.update(int(analysis.seconds * 1000))
            return row, clips, decode_error(source, problem)
        except Exception as exc:  # noqa: BLE001 - an unexpected failure on one input must not stop the job
            self.videos_failed.inc()
            return _failure(source, exc)

    def process(self, source: str):
        row, clips, error = self.analyse(source)
        yield from finish_video(self.output, self.key, row, clips, error)


def one_thread_per_worker() -> None:
    """The local runner starts one worker process per core (remote runners one per vCPU):
    OpenCV's own thread pool on top of that only adds contention."""
    import cv2

    cv2.setNumThreads(1)


def finish_video(output: str | None, key: str, row: dict, clips: list[dict], error: dict | None):
    """Write the video's completion record (last), then emit its outputs."""
    yield from emit_record(finish_record(output, key, row, clips, error))


SEGMENTS = "segments"


def _failure(source: str, exc: Exception) -> tuple[dict, list, dict]:
    if isinstance(exc, decode.VideoError):
        error_type, message = exc.error_type, exc.message
    else:
        error_type, message = type(exc).__name__, f"{source}: unexpected {type(exc).__name__}: {exc}"
        log.error("%s\n%s", message, traceback.format_exc())
    return failed_video_row(source, error_type, message), [], error_row(source, "analyze", error_type, message)


class PlanSegmentsFn(beam.DoFn):
    """source -> itself (analysed whole) or, for a long video, its segments as separate work."""

    def __init__(self, cfg, output: str | None = None, workers: int = 0):
        self.cfg, self.output, self.workers = cfg, output, workers
        self.key = resume.analysis_key(cfg)
        self.split = Metrics.counter("vidcurate", "videos_split_into_segments")

    def process(self, element):
        """``element``: a source, or ``(source, split_s)`` where the driver already decided
        (see :func:`pipeline.balance.plan_work`): segments of ``split_s`` seconds, 0.0 whole,
        None undecided (the header is read here)."""
        from transforms.segments import duration_split, index_video, plan_segments

        source, split_s = element if isinstance(element, tuple) else (element, None)
        try:
            if split_s is None:
                split_s = duration_split(decode.probe(source).duration_s, self.cfg.analysis.segment_s)
            if split_s > 0:
                index = index_video(source, self.cfg)
                if index is not None:
                    spans = plan_segments(len(index.pts), index.fps, split_s, max(1, self.workers))
                    self.split.inc()
                    for k, (a, b) in enumerate(spans):
                        yield beam.pvalue.TaggedOutput(SEGMENTS, (source, k, len(spans), index, a, b))
                    return
        except Exception as exc:  # noqa: BLE001 - failures are data
            yield beam.pvalue.TaggedOutput(ERRORS, finish_record(self.output, self.key, *_failure(source, exc)))
            return
        yield source


def finish_record(output, key, row, clips, error) -> dict:
    """The video's record (written, with its attempt count, when there is an output)."""
    if output:
        return resume.write_record(output, key, row, clips, error)
    return {"video": dict(row, attempts=1), "clips": clips, "error": error}


class AnalyzeSegmentFn(beam.DoFn):
    def __init__(self, cfg, motion: bool = True):
        self.cfg, self.motion = cfg, motion

    def setup(self):
        one_thread_per_worker()

    def process(self, element):
        from transforms.segments import analyze_segment

        source, k, total, index, a, b = element
        try:
            result = analyze_segment(source, self.cfg, index, a, b, self.motion)
            yield video_id_for(source), (k, total, source, index if k == 0 else None, result, None)
        except Exception as exc:  # noqa: BLE001 - failures are data
            yield video_id_for(source), (k, total, source, index if k == 0 else None, None, _failure(source, exc))


class MergeSegmentsFn(beam.DoFn):
    def __init__(self, cfg, output: str | None = None):
        self.cfg, self.output = cfg, output
        self.key = resume.analysis_key(cfg)

    def process(self, element):
        from transforms.segments import merge_segments

        _, parts = element
        parts = sorted(parts, key=lambda p: p[0])
        source = parts[0][2]
        failed = next((p[5] for p in parts if p[5] is not None), None)
        if failed is None and len(parts) != parts[0][1]:
            failed = _failure(source, decode.CorruptVideo(f"{source}: only {len(parts)} of {parts[0][1]} segments analysed"))
        if failed is None:
            try:
                analysis = merge_segments(source, self.cfg, parts[0][3], [p[4] for p in parts])
                row, clips, problem = finalise(analysis, self.cfg.clips, self.cfg.limits)
                row["analysis_segments"] = len(parts)
                yield from finish_video(self.output, self.key, row, clips, decode_error(source, problem))
                return
            except Exception as exc:  # noqa: BLE001 - failures are data
                failed = _failure(source, exc)
        yield from finish_video(self.output, self.key, *failed)


def segment_cost(element) -> float:
    source, k, total, index, a, b = element
    return balance.frame_cost(b - a, index.info.width, index.info.height)


def emit_record(record: dict):
    """A video's analysis as the outputs of AnalyzeVideos (also used for resumed records)."""
    yield record["video"]
    for clip in record["clips"]:
        yield beam.pvalue.TaggedOutput(CLIPS, clip)
    if record["error"]:
        yield beam.pvalue.TaggedOutput(ERRORS, record["error"])


class AnalyzeVideos(beam.PTransform):
    """sources -> {"videos", "clips", "errors"}"""

    def __init__(self, cfg, output=None, motion=True, workers: int = 0):
        """``workers`` > 1 (local runner): ``sources`` are ``(bucket, source)`` pairs planned by
        :func:`pipeline.balance.plan` and each bucket runs on one worker; segments of long
        videos are dealt out by cost too. Otherwise sources are plain and reshuffled."""
        super().__init__()
        self.cfg, self.output, self.motion, self.workers = cfg, output, motion, workers

    def expand(self, sources):
        spread = (sources | "DealToWorkers" >> balance.DealToWorkers() if self.workers > 1
                  else sources | "SpreadOverWorkers" >> beam.Reshuffle())
        planned = (spread
                   | "PlanSegments" >> beam.ParDo(PlanSegmentsFn(self.cfg, self.output, self.workers))
                   .with_outputs(SEGMENTS, ERRORS, main="whole"))
        whole = (planned["whole"]
                 | "ProbeCutsMotion" >> beam.ParDo(AnalyzeVideoFn(self.cfg, self.output, self.motion))
                 .with_outputs(CLIPS, ERRORS, main="videos"))
        merged = (planned[SEGMENTS]
                  | "SpreadSegments" >> balance.Deal(self.workers, segment_cost)
                  | "AnalyzeSegments" >> beam.ParDo(AnalyzeSegmentFn(self.cfg, self.motion))
                  | "GroupSegments" >> beam.GroupByKey()
                  | "MergeSegments" >> beam.ParDo(MergeSegmentsFn(self.cfg, self.output))
                  .with_outputs(CLIPS, ERRORS, main="videos"))
        failed = (planned[ERRORS]
                  | "PlanFailures" >> beam.FlatMap(emit_record).with_outputs(CLIPS, ERRORS, main="videos"))
        return {tag: (whole[tag], merged[tag], failed[tag]) | f"Join{tag.title()}" >> beam.Flatten()
                for tag in ("videos", CLIPS, ERRORS)}


class FilterClips(beam.PTransform):
    """clip rows -> clip rows with ``keep``/``reject_reasons``. Percentile cuts need the whole
    dataset: their bounds are computed once (a global combine) and given as a side input."""

    def __init__(self, cfg, scored=()):
        """``scored``: model stages whose scores are complete (their bounds apply)."""
        super().__init__()
        self.cfg, self.scored = cfg, tuple(scored)

    def expand(self, clips):
        cfg, scored = self.cfg, self.scored
        columns = percentile_columns(cfg)
        if not columns:
            return clips | "ApplyBounds" >> beam.Map(apply_filters, cfg, (), scored)

        def collect(rows):
            values = {c: [] for c in columns}
            for row in rows:
                for c in columns:
                    if row.get(c) is not None:
                        values[c].append(row[c])
            return values

        def merge(parts):
            out = {c: [] for c in columns}
            for part in parts:
                for c in columns:
                    out[c].extend(part.get(c, []))
            return out

        thresholds = (clips
                      | "ScoreValues" >> beam.Map(lambda r: collect([r]))
                      | "AllValues" >> beam.CombineGlobally(merge)
                      | "Percentiles" >> beam.Map(percentile_thresholds, cfg))
        return clips | "ApplyBounds" >> beam.Map(
            lambda r, extra: apply_filters(r, cfg, extra, scored), beam.pvalue.AsSingleton(thresholds))


class WriteClipsFn(beam.DoFn):
    """(video_id, kept clip rows) -> rows with staged media; failed clips to errors."""

    def __init__(self, cfg, staging: str):
        self.cfg, self.staging = cfg, staging
        self.written = Metrics.counter("vidcurate", "clips_written")
        self.failed = Metrics.counter("vidcurate", "clips_failed")

    def process(self, element):
        video_id, rows = element
        rows = list(rows)
        from transforms.clips import write_clips

        out_dir = os.path.join(self.staging, video_id)
        done: set[str] = set()
        try:
            for row, media, err in write_clips(rows[0]["source"], rows, out_dir, self.cfg):
                done.add(row["clip_id"])
                row = dict(row)
                if err is None:
                    self.written.inc()
                    row["_media"] = media
                    row["clip_bytes"] = media["bytes"]
                    row["out_width"], row["out_height"] = media["out_width"], media["out_height"]
                    yield row
                else:
                    self.failed.inc()
                    yield beam.pvalue.TaggedOutput(ERRORS, error_row(row["source"], "clips", "ClipWriteError", err, row["clip_id"]))
                    yield _rejected(row, "write_error")
        except Exception as exc:  # noqa: BLE001 - one video's failure must not stop the job
            if isinstance(exc, decode.VideoError):
                error_type, message = exc.error_type, exc.message
            else:
                error_type = type(exc).__name__
                message = f"{rows[0]['source']}: unexpected {error_type} while writing clips: {exc}"
                log.error("%s\n%s", message, traceback.format_exc())
            for row in rows:
                if row["clip_id"] in done:
                    continue
                self.failed.inc()
                yield beam.pvalue.TaggedOutput(ERRORS, error_row(row["source"], "clips", error_type, message, row["clip_id"]))
                yield _rejected(row, "write_error")


def _rejected(row: dict, reason: str) -> dict:
    row = dict(row)
    row.pop("_media", None)
    row["shard"] = None
    row["keep"] = False
    row["reject_reasons"] = sorted(set(row.get("reject_reasons") or []) | {reason})
    return row


def stable_bucket(key: str, buckets: int) -> int:
    return int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) % max(1, buckets)


class PackShardsFn(beam.DoFn):
    """(bucket, rows) -> rows with their shard name; writes the bucket's tars."""

    def __init__(self, cfg, shards_dir: str):
        self.cfg, self.shards_dir = cfg, shards_dir
        self.shards = Metrics.counter("vidcurate", "shards_written")

    def process(self, element):
        from transforms.shards import ShardWriter, pack

        bucket, rows = element
        rows = sorted(rows, key=lambda r: r["clip_id"])
        by_id = {r["clip_id"]: r for r in rows}
        groups = pack([(r["clip_id"], r["clip_bytes"]) for r in rows],
                      self.cfg.write.shard_max_clips, self.cfg.write.shard_max_bytes)
        for k, keys in enumerate(groups):
            name = f"shard-{bucket:05d}-{k:04d}.tar"
            out = []
            with ShardWriter(os.path.join(self.shards_dir, name)) as writer:
                for key in keys:
                    row = dict(by_id[key])
                    media = row.pop("_media")
                    row["shard"] = name
                    sample = {"__key__": key, "mp4": {"path": media["mp4"]}, "jpg": {"path": media["jpg"]},
                                  "json": schemas.shard_json(row)}
                    if row.get("caption"):
                        sample["txt"] = row["caption"]
                    writer.write(sample)
                    out.append((row, media))
            self.shards.inc()
            # Staged media stay until the whole run has succeeded: a killed run resumes from them.
            for row, _ in out:
                yield row


class WriteShards(beam.PTransform):
    """kept clip rows with staged media -> rows with shard names (tars written)."""

    def __init__(self, cfg, shards_dir):
        super().__init__()
        self.cfg, self.shards_dir = cfg, shards_dir

    def expand(self, rows):
        cfg = self.cfg

        def buckets(totals):
            count, size = totals
            return max(1, math.ceil(count / cfg.write.shard_max_clips), math.ceil(size / cfg.write.shard_max_bytes))

        totals = (rows
                  | "Sizes" >> beam.Map(lambda r: (1, r["clip_bytes"]))
                  | "Totals" >> beam.CombineGlobally(lambda xs: tuple(map(sum, zip(*xs))) if xs else (0, 0)))
        n_buckets = totals | "Buckets" >> beam.Map(buckets)
        return (rows
                | "KeyByBucket" >> beam.Map(lambda r, n: (stable_bucket(r["clip_id"], n), r),
                                            beam.pvalue.AsSingleton(n_buckets))
                | "GroupShards" >> beam.GroupByKey()
                | "WriteTars" >> beam.ParDo(PackShardsFn(cfg, self.shards_dir)))


class WriteClipMedia(beam.PTransform):
    """kept clip rows -> {"main": rows with media, "errors": ...}"""

    def __init__(self, cfg, staging, workers: int = 0):
        super().__init__()
        self.cfg, self.staging, self.workers = cfg, staging, workers

    def expand(self, kept):
        max_side = self.cfg.clips.max_side

        def cost(group) -> float:  # encoding work of one video's clips
            from transforms.clips import output_size

            return sum(balance.frame_cost(r["num_frames"], *output_size(r["width"], r["height"], max_side))
                       for r in group[1])

        by_video = (kept
                    | "ByVideo" >> beam.Map(lambda r: (r["video_id"], r))
                    | "GroupByVideo" >> beam.GroupByKey())
        if self.workers > 1:
            by_video = (by_video
                        | "AsLists" >> beam.MapTuple(lambda vid, rows: (vid, list(rows)))
                        | "DealVideos" >> balance.Deal(self.workers, cost))
        return (by_video
                | "EncodeClips" >> beam.ParDo(WriteClipsFn(self.cfg, self.staging)).with_outputs(ERRORS, main="main"))


def write_table(pcoll, path_prefix: str, schema, num_shards: int, label: str):
    return (pcoll
            | f"Conform{label}" >> beam.Map(schemas.conform, schema)
            | f"Write{label}" >> beam.io.WriteToParquet(
                path_prefix, schema, file_name_suffix=".parquet", num_shards=num_shards))


class ExtractFromShardsFn(beam.DoFn):
    """(old shard path, rows) -> rows with media staged from the tar (no decoding)."""

    def __init__(self, staging: str):
        self.staging = staging

    def process(self, element):
        import tarfile

        from transforms.shards import safe_key

        path, rows = element
        wanted = {r["clip_id"]: dict(r) for r in rows}
        try:
            with tarfile.open(path) as tar:
                for member in tar:
                    key, _, ext = member.name.partition(".")
                    if key not in wanted or ext not in ("mp4", "jpg") or not member.isfile():
                        continue
                    row = wanted[key]
                    directory = os.path.join(self.staging, row["video_id"])
                    os.makedirs(directory, exist_ok=True)
                    target = os.path.join(directory, f"{safe_key(key)}.{ext}")
                    with tar.extractfile(member) as src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                    row.setdefault("_media", {})[ext] = target
        except (OSError, tarfile.TarError) as exc:
            for row in wanted.values():
                yield beam.pvalue.TaggedOutput(ERRORS, error_row(row["source"], "filter", "ShardReadError",
                                                                 f"{path}: {exc}", row["clip_id"]))
                yield _rejected(row, "write_error")
            return
        for row in wanted.values():
            media = row.get("_media", {})
            if set(media) != {"mp4", "jpg"}:
                yield beam.pvalue.TaggedOutput(ERRORS, error_row(row["source"], "filter", "ShardReadError",
                                                                 f"{path} lacks {row['clip_id']}", row["clip_id"]))
                yield _rejected(row, "write_error")
                continue
            media["bytes"] = os.path.getsize(media["mp4"]) + os.path.getsize(media["jpg"])
            row["clip_bytes"] = media["bytes"]
            yield row


class MaterialiseClips(beam.PTransform):
    """filtered clip rows -> {"clips": final rows (with shard names), "errors": ...}.

    Kept clips get media, cut from their source or, when ``old_shards`` is given and the row
    names a shard there, copied out of that shard, then are packed into new shards."""

    def __init__(self, cfg, output: str, old_shards: str | None = None, workers: int = 0, dest: str | None = None):
        """``output``: the run directory (staging lives there); ``dest``: the generation the
        shards go to (default ``output``)."""
        super().__init__()
        self.cfg, self.output, self.old_shards, self.workers = cfg, output, old_shards, workers
        self.dest = dest or output

    def expand(self, clips):
        staging = resume.staging_dir(self.output, self.cfg)
        kept = clips | "Kept" >> beam.Filter(lambda r: r["keep"])
        rejected = clips | "Rejected" >> beam.Filter(lambda r: not r["keep"])
        errors = []
        media_rows = []
        if self.old_shards:
            old = self.old_shards
            in_old = kept | "InOldShard" >> beam.Filter(lambda r: bool(r.get("shard")))
            kept = kept | "NotInOldShard" >> beam.Filter(lambda r: not r.get("shard"))
            copied = (in_old
                      | "ByOldShard" >> beam.Map(lambda r: (os.path.join(old, r["shard"]), r))
                      | "GroupByOldShard" >> beam.GroupByKey()
                      | "CopyFromShards" >> beam.ParDo(ExtractFromShardsFn(staging)).with_outputs(ERRORS, main="main"))
            media_rows.append(copied["main"])
            errors.append(copied[ERRORS])
        media = kept | "WriteClipMedia" >> WriteClipMedia(self.cfg, staging, self.workers)
        media_rows.append(media["main"])
        errors.append(media[ERRORS])
        all_media = tuple(media_rows) | "AllMedia" >> beam.Flatten()
        ok = all_media | "WrittenOnly" >> beam.Filter(lambda r: "_media" in r)
        failed = all_media | "FailedWrites" >> beam.Filter(lambda r: "_media" not in r)
        sharded = ok | "Shards" >> WriteShards(self.cfg, os.path.join(self.dest, "shards"))
        return {"clips": (rejected, failed, sharded) | "AllClips" >> beam.Flatten(),
                "errors": tuple(errors) | "MediaErrors" >> beam.Flatten()}


def table_shards(n_inputs: int, cfg) -> dict[str, int]:
    """Deterministic Parquet file counts from the input size."""
    n = max(1, n_inputs)
    return {"videos": max(1, math.ceil(n / 100_000)), "clips": max(1, math.ceil(n * 20 / cfg.write.parquet_max_rows)),
            "errors": 1}


def build(p: beam.Pipeline, sources: list[str], output: str, cfg, write_media: bool = True,
          done: list[dict] | None = None, stages=("probe", "cuts", "motion"), workers: int = 0,
          dest: str | None = None) -> None:
    """Add the whole curation graph to pipeline ``p``. ``sources`` are analysed; ``done`` are
    completion records of videos a killed earlier run already analysed (they are not redone).
    ``workers``: worker processes of a local run (> 1: the work is dealt out balanced by cost,
    see :mod:`pipeline.balance`). Tables and shards go to ``dest`` (a generation directory;
    default ``output``), completion records and staged clips under ``output``."""
    dest = dest or output
    if workers > 1:
        source_pc = p | "Sources" >> beam.Create(balance.plan_work(sources, cfg, workers))
    else:
        source_pc = p | "Sources" >> beam.Create(sources)
    fresh = source_pc | "Analyze" >> AnalyzeVideos(cfg, output, workers=workers)
    resumed = (p | "Resumed" >> beam.Create(done or [])
               | "FromRecords" >> beam.FlatMap(emit_record).with_outputs(CLIPS, ERRORS, main="videos"))
    analysed = {tag: (fresh[tag], resumed[tag]) | f"Merge{tag.title()}" >> beam.Flatten()
                for tag in ("videos", CLIPS, ERRORS)}
    clips = analysed[CLIPS] | "Filter" >> FilterClips(cfg)
    error_parts = [analysed[ERRORS]]
    if any(s in stages for s in ("ocr", "clip", "caption")):
        from pipeline.model_stages import MODEL_STAGES, ScoreModels

        # Cheap filters ran above; the model stages score what survived them (cheapest first,
        # re-filtering after each), then every filter, percentiles included, runs again.
        scored = clips | "Models" >> ScoreModels(cfg, stages)
        clips = scored["clips"] | "FilterAfterModels" >> FilterClips(cfg, [s for s in MODEL_STAGES if s in stages])
        error_parts.append(scored["errors"])
    if write_media:
        out = clips | "Materialise" >> MaterialiseClips(cfg, output, workers=workers, dest=dest)
        final_clips = out["clips"]
        error_parts.append(out["errors"])
    else:
        final_clips = clips
    shards = table_shards(len(sources) + len(done or []), cfg)
    write_table(analysed["videos"], os.path.join(dest, "videos", "part"), schemas.VIDEOS, shards["videos"], "Videos")
    write_table(final_clips, os.path.join(dest, "clips", "part"), schemas.clips_schema(), shards["clips"], "Clips")
    write_table(tuple(error_parts) | "AllErrors" >> beam.Flatten(), os.path.join(dest, "errors", "part"),
                schemas.ERRORS, shards["errors"], "Errors")


def cleanup_staging(output: str) -> None:
    shutil.rmtree(os.path.join(output, resume.STAGING_DIR), ignore_errors=True)

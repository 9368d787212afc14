"""``Materialise``: filtered clip rows -> final rows, with kept clips written and packed into
WebDataset shards.

    clips ─┬─ rejected ────────────────────────────────────────────────┐
           └─ kept ─┬─ in an old shard (vidcurate filter) ─ CopyFromShards ─┤
                    └─ ByVideo ─ WriteClips (one decode per source) ───┴─ WriteShards ─ rows with shard names

Clip media are staged under the run directory (:func:`pipeline.resume.staging_dir`) and stay
until the run has succeeded, so a killed run resumes from them; media already staged (by the
model stages' decode, or an earlier run) are not encoded again.
"""

from __future__ import annotations

import os

import apache_beam as beam
from apache_beam.metrics import Metrics

from pipeline import balance, resume
from pipeline.tables import ERRORS
from transforms import shards, storage
from transforms.rows import OUT_COLUMNS, error, rejected, shard_json


class WriteClipsFn(beam.DoFn):
    """(video_id, kept clip rows) -> (row, media) staged; failed clips to errors and out as
    rejected rows (tag ``failed``)."""

    def __init__(self, cfg, staging: str):
        self.cfg, self.staging = cfg, staging
        self.written = Metrics.counter("vidcurate", "clips_written")
        self.failures = Metrics.counter("vidcurate", "clips_failed")

    def process(self, element):
        from transforms.clips import read_clips

        video_id, rows = element
        rows = list(rows)
        done: set[str] = set()
        try:
            for row, media, _, err in read_clips(rows[0].source, rows, self.cfg, None,
                                                 os.path.join(self.staging, video_id)):
                done.add(row.clip_id)
                if err is None:
                    self.written.inc()
                    yield row, media
                else:
                    yield from self._failed(row, "ClipWriteError", err)
        except Exception as exc:  # noqa: BLE001 - one video's failure must not stop the job
            message = getattr(exc, "message", None) or f"{rows[0].source}: unexpected {type(exc).__name__} while writing clips: {exc}"
            for row in rows:
                if row.clip_id not in done:
                    yield from self._failed(row, getattr(exc, "error_type", type(exc).__name__), message)

    def _failed(self, row, kind: str, message: str):
        self.failures.inc()
        yield beam.pvalue.TaggedOutput(ERRORS, error(row.source, "clips", kind, message, row.clip_id))
        yield beam.pvalue.TaggedOutput("failed", rejected(row, "write_error"))


class CopyFromShardsFn(beam.DoFn):
    """(old shard path, rows) -> (row, media) copied out of the tar (no decoding)."""

    def __init__(self, staging: str):
        self.staging = staging

    def process(self, element):
        path, rows = element
        wanted = {r.clip_id: r for r in rows}
        video_of = {r.clip_id: r.video_id for r in wanted.values()}
        try:
            media = shards.extract_samples(path, set(wanted), lambda key: os.path.join(self.staging, video_of[key]))
        except Exception as exc:  # noqa: BLE001 - an unreadable tar: its clips are reported, the rest goes on
            media, problem = {}, f"{path}: {exc}"
        else:
            problem = None
        for key, row in wanted.items():
            files = media.get(key, {})
            if set(files) != {"mp4", "jpg"}:
                message = problem or f"{path} lacks {key}"
                yield beam.pvalue.TaggedOutput(ERRORS, error(row.source, "filter", "ShardReadError", message, key))
                yield beam.pvalue.TaggedOutput("failed", rejected(row, "write_error"))
                continue
            yield row, dict(files, bytes=storage.size_of(files["mp4"]) + storage.size_of(files["jpg"]),
                            **{k: getattr(row, k) for k in OUT_COLUMNS})


class PackShardsFn(beam.DoFn):
    """((label, bucket), [(row, media)]) -> final rows with their shard names; writes the tars."""

    def __init__(self, cfg, shards_dir: str):
        self.cfg, self.shards_dir = cfg, shards_dir
        self.count = Metrics.counter("vidcurate", "shards_written")

    def process(self, element):
        (label, bucket), items = element
        items = sorted(items, key=lambda rm: rm[0].clip_id)
        by_id = {row.clip_id: (row, media) for row, media in items}
        groups = shards.pack([(row.clip_id, media["bytes"]) for row, media in items],
                             self.cfg.write.shard_max_clips, self.cfg.write.shard_max_bytes)
        for k, keys in enumerate(groups):
            name = shards.shard_name(bucket, k, label)
            out = []
            with shards.TarWriter(os.path.join(self.shards_dir, name)) as writer:
                for key in keys:
                    row, media = by_id[key]
                    row = row.replace(shard=name, clip_bytes=media["bytes"],
                                      **{k: media.get(k) for k in OUT_COLUMNS})
                    writer.write(shards.sample(key, media, shard_json(row), row.caption))
                    out.append(row)
            self.count.inc()
            yield from out


def label_of(write_cfg):
    """(row, media) -> the shard-set label of the written clip (``write.bucket_by``)."""
    def label(rm) -> str:
        if not write_cfg.bucket_by:
            return ""
        m = rm[1]
        return shards.bucket_label(m["out_width"], m["out_height"], m["out_frames"] or 0, write_cfg.bucket_by,
                                   write_cfg.aspect_buckets, write_cfg.frame_buckets)
    return label


class WriteShards(beam.PTransform):
    """(row, media) pairs -> rows with shard names (the tars written): one shard set per
    bucket label, each spread over enough hash buckets to respect the shard bounds."""

    def __init__(self, cfg, shards_dir):
        super().__init__()
        self.cfg, self.shards_dir = cfg, shards_dir

    def expand(self, staged):
        w = self.cfg.write
        labelled = staged | "Label" >> beam.Map(lambda rm, f: (f(rm), rm), label_of(w))
        n_buckets = (labelled
                     | "Sizes" >> beam.MapTuple(lambda label, rm: (label, (1, rm[1]["bytes"])))
                     | "Totals" >> beam.CombinePerKey(lambda xs: tuple(map(sum, zip(*xs))) if xs else (0, 0))
                     | "Buckets" >> beam.MapTuple(lambda label, t: (label, shards.bucket_count(
                         t[0], t[1], w.shard_max_clips, w.shard_max_bytes))))
        return (labelled
                | "KeyByBucket" >> beam.Map(
                    lambda lrm, n: ((lrm[0], shards.stable_bucket(lrm[1][0].clip_id, n[lrm[0]])), lrm[1]),
                    beam.pvalue.AsDict(n_buckets))
                | "GroupShards" >> beam.GroupByKey()
                | "WriteTars" >> beam.ParDo(PackShardsFn(self.cfg, self.shards_dir)))


def encoding_cost(cfg):
    def cost(group) -> float:  # encoding work of one video's clips
        from transforms.clips import output_size

        return sum(balance.frame_cost(r.num_frames, *output_size(r.width, r.height, cfg.clips))
                   for r in group[1])
    return cost


class Materialise(beam.PTransform):
    """filtered clip rows -> {"clips": final rows (kept ones with shard names), "errors": ...}.

    Kept clips get media, cut from their source or, when ``old_shards`` is given and the row
    names a shard there, copied out of that shard; then they are packed into new shards."""

    def __init__(self, cfg, output: str, dest: str, old_shards: str | None = None, workers: int = 0):
        """``output``: the run directory (staging lives there); ``dest``: the generation the
        shards go to."""
        super().__init__()
        self.cfg, self.output, self.dest, self.old_shards, self.workers = cfg, output, dest, old_shards, workers

    def expand(self, clips):
        staging = resume.staging_dir(self.output, self.cfg)
        parts = clips | "KeptOrNot" >> beam.Partition(lambda r, n: 0 if r.keep else 1, 2)
        kept, finished, errors, staged = parts[0], [parts[1]], [], []
        if self.old_shards:
            old = self.old_shards
            in_old = kept | "InOldShard" >> beam.Filter(lambda r: bool(r.shard))
            kept = kept | "NotInOldShard" >> beam.Filter(lambda r: not r.shard)
            copied = (in_old
                      | "ByOldShard" >> beam.Map(lambda r: (os.path.join(old, r.shard), r))
                      | "GroupByOldShard" >> beam.GroupByKey()
                      | "CopyFromShards" >> beam.ParDo(CopyFromShardsFn(staging)).with_outputs(ERRORS, "failed", main="ok"))
            staged.append(copied["ok"])
            errors.append(copied[ERRORS])
            finished.append(copied["failed"])
        by_video = kept | "ByVideo" >> beam.Map(lambda r: (r.video_id, r)) | "GroupByVideo" >> beam.GroupByKey()
        if self.workers > 1:
            by_video = (by_video
                        | "AsLists" >> beam.MapTuple(lambda vid, rows: (vid, list(rows)))
                        | "ShareVideos" >> balance.SharedQueue(self.workers, encoding_cost(self.cfg)))
        written = by_video | "WriteClips" >> beam.ParDo(WriteClipsFn(self.cfg, staging)).with_outputs(
            ERRORS, "failed", main="ok")
        staged.append(written["ok"])
        errors.append(written[ERRORS])
        finished.append(written["failed"])
        packed = tuple(staged) | "AllStaged" >> beam.Flatten() | "Shards" >> WriteShards(
            self.cfg, os.path.join(self.dest, "shards"))
        return {"clips": (*finished, packed) | "AllClips" >> beam.Flatten(),
                "errors": tuple(errors) | "MediaErrors" >> beam.Flatten()}

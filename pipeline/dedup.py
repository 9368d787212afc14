"""The dedup stage across clips, in the pipeline: LSH buckets by ``GroupByKey``, candidate pairs
compared once, groups resolved from the (few) matched pairs, the verdict joined back by
clip_id. No clip list passes through the driver; ``--dedup-against RUN`` reads the earlier run's
kept clips inside the pipeline too."""

from __future__ import annotations

import glob
import os

import apache_beam as beam

from transforms import dedup
from transforms.dedup import Entry

READ_COLUMNS = ["clip_id", "video_id", "keep", "dedup_thumbs", "clip_embedding", "width", "height", "duration_s",
                "aesthetic_score", "motion_score"]


def _keyed(entry, cfg):  # (no type hint: Beam checks it against the upstream Optional[Entry])
    """entry -> (LSH key, (clip_id, video_id, reference)) for every key of its signals: only
    ids travel through the bucket shuffle (the hyperplanes are made once per worker)."""
    member = (entry.clip_id, entry.video_id, entry.reference)
    return ((key, member) for key in dedup.entry_keys(entry, cfg))


def _pairs(bucket, same_video: bool):
    key, members = bucket[0], list(bucket[1])
    return dedup.bucket_pairs(members, same_video, key) if len(members) > 1 else []


def _first_side(joined):
    """(a_id, {"entry": [a], "pair": [b ids]}) -> (b_id, a) for each candidate b."""
    _, parts = joined
    for a in parts["entry"]:
        for b_id in parts["pair"]:
            yield b_id, a


def _verified(joined, cfg):
    _, parts = joined
    for b in parts["entry"]:
        for a in parts["left"]:
            edge = dedup.verify(a, b, cfg)
            if edge is not None:
                yield edge


class Deduplicate(beam.PTransform):
    """kept clip rows -> ``(clip_id, (kept clip_id, kind, similarity))`` for every duplicate.
    ``reference``: a PCollection of :class:`transforms.dedup.Entry` of an earlier run (kept).

    LSH buckets by GroupByKey on ids; each bucket pairs its clips with its leader; pairs that
    share ``dedup.min_shared_keys`` keys are joined with both clips' signatures (two
    CoGroupByKeys) and compared once; the matched pairs (few) are resolved in one place."""

    def __init__(self, cfg, reference=None):
        super().__init__()
        self.cfg, self.reference = cfg, reference

    def expand(self, rows):
        cfg = self.cfg
        entries = rows | "Entries" >> beam.FlatMap(lambda r: [e] if (e := dedup.entry_of(r, cfg)) else [])
        if self.reference is not None:
            entries = (entries, self.reference) | "WithReference" >> beam.Flatten()
        by_id = entries | "ById" >> beam.Map(lambda e: (e.clip_id, e))
        pairs = (entries
                 | "BandKeys" >> beam.FlatMap(_keyed, cfg)
                 | "Buckets" >> beam.GroupByKey()
                 | "LeaderPairs" >> beam.FlatMap(_pairs, cfg.dedup.same_video)
                 | "SharedKeys" >> beam.combiners.Count.PerElement()
                 | "Candidates" >> beam.FlatMap(lambda pn, k: [pn[0]] if pn[1] >= k else [], cfg.dedup.min_shared_keys))
        left = ({"entry": by_id, "pair": pairs} | "JoinFirst" >> beam.CoGroupByKey()
                | "FirstSide" >> beam.FlatMap(_first_side))
        return ({"entry": by_id, "left": left} | "JoinSecond" >> beam.CoGroupByKey()
                | "Compare" >> beam.FlatMap(_verified, cfg)
                | "AllEdges" >> beam.combiners.ToList()
                | "Groups" >> beam.FlatMap(lambda edges: sorted(dedup.resolve(edges).items())))


def reference_files(run_dir: str) -> str:
    """The clips table files of an earlier run (its current generation), as one glob."""
    from pipeline import rundir

    gen = rundir.resolve(run_dir)
    pattern = os.path.join(gen, "clips", "*.parquet")
    files = sorted(glob.glob(pattern))
    if not files:
        raise ValueError(f"--dedup-against {run_dir}: no clips table; give a finished vidcurate run directory")
    import pyarrow.parquet as pq

    missing = sorted(set(READ_COLUMNS) - set(pq.read_schema(files[0]).names))
    if missing:
        raise ValueError(f"--dedup-against {run_dir}: its clips table lacks {', '.join(missing)} (made by an "
                         "earlier vidcurate); run it again with this version and --stages ...,dedup")
    return pattern


def reference_entry(row: dict, cfg) -> list[Entry]:
    """An earlier run's kept clip as a reference entry (ids read back are validated)."""
    from types import SimpleNamespace

    from pipeline import rundir

    if not row.get("keep") or not (row.get("dedup_thumbs") or row.get("clip_embedding")):
        return []
    rundir.check_clip_id(row["clip_id"])
    rundir.check_video_id(row["video_id"])
    e = dedup.entry_of(SimpleNamespace(**{c: row.get(c) for c in READ_COLUMNS}), cfg, reference=True)
    return [e] if e is not None else []


class ReferenceClips(beam.PTransform):
    """An earlier run's kept clips as dedup reference entries, read inside the pipeline."""

    def __init__(self, cfg, run_dir: str):
        super().__init__()
        self.cfg, self.pattern = cfg, reference_files(run_dir)

    def expand(self, p):
        cfg = self.cfg
        return (p | "ReadReference" >> beam.io.ReadFromParquet(self.pattern, columns=READ_COLUMNS)
                | "ReferenceEntries" >> beam.FlatMap(reference_entry, cfg))


class MarkDuplicates(beam.PTransform):
    """verdict rows -> the same rows with the dedup verdict (:func:`transforms.dedup.mark`)."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg

    def expand(self, rows):
        cfg = self.cfg
        reference = rows.pipeline | "Reference" >> ReferenceClips(cfg, cfg.dedup.against) if cfg.dedup.against else None
        found = rows | "Kept" >> beam.Filter(lambda r: r.keep) | "Deduplicate" >> Deduplicate(cfg, reference)
        keyed = rows | "ById" >> beam.Map(lambda r: (r.clip_id, r))
        return ({"row": keyed, "dup": found} | "Join" >> beam.CoGroupByKey()
                | "Mark" >> beam.FlatMap(lambda kv: [dedup.mark(r, next(iter(kv[1]["dup"]), None))
                                                     for r in kv[1]["row"]]))


def dedup_rows(rows: list, cfg) -> list:
    """In memory (``vidcurate filter``): the rows with the dedup verdict over the kept ones, by
    the same buckets and checks as :class:`Deduplicate`."""
    entries = [e for r in rows if r.keep and (e := dedup.entry_of(r, cfg)) is not None]
    if cfg.dedup.against:
        import pyarrow.parquet as pq

        for path in sorted(glob.glob(reference_files(cfg.dedup.against))):
            entries += [e for d in pq.read_table(path, columns=READ_COLUMNS).to_pylist() for e in reference_entry(d, cfg)]
    found = dedup.find_duplicates(entries, cfg)
    return [dedup.mark(r, found.get(r.clip_id)) for r in rows]

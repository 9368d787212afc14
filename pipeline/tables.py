"""The run's tables: their names (also the tags of the Beam outputs that feed them), Parquet
writing from typed rows, reading back, and file counts."""

from __future__ import annotations

import math
import os
import zlib

import apache_beam as beam

from transforms import storage
from transforms.rows import ClipRow, ErrorRow, VideoRow

VIDEOS, CLIPS, ERRORS = "videos", "clips", "errors"
ROWS = {VIDEOS: VideoRow, CLIPS: ClipRow, ERRORS: ErrorRow}


def table_shards(n_inputs: int, cfg) -> dict[str, int]:
    """Deterministic Parquet file counts from the input size."""
    n = max(1, n_inputs)
    return {VIDEOS: max(1, math.ceil(n / 100_000)), CLIPS: max(1, math.ceil(n * 20 / cfg.write.parquet_max_rows)),
            ERRORS: 1}


class WriteTable(beam.PTransform):
    """Typed rows -> ``<directory>/<name>/part-SSSSS-of-NNNNN.parquet`` with the row class's
    schema: every one of the ``num_shards`` files, empty ones included, each written whole (a
    temp file renamed) by one worker.

    One GroupByKey on the shard number instead of Beam's ``WriteToParquet`` (which adds a dozen
    steps of temp-directory bookkeeping per table): the generation directory that holds the
    tables is only switched in once the whole job succeeded (:mod:`pipeline.rundir`), so a
    finalise step would protect nothing more, and a small job starts a second faster."""

    def __init__(self, directory: str, name: str, num_shards: int):
        super().__init__()
        self.directory, self.name, self.num_shards = directory, name, max(1, int(num_shards))

    def expand(self, rows):
        n, directory, name = self.num_shards, self.directory, self.name
        keyed = rows | "ToDicts" >> beam.Map(lambda r: (shard_of(r, n), r.to_dict()))
        every = rows.pipeline | "Shards" >> beam.Create([(k, None) for k in range(n)])  # empty files too
        return ((keyed, every)
                | "Both" >> beam.Flatten()
                | "ByShard" >> beam.GroupByKey()
                | "Write" >> beam.Map(lambda kv: write_part(directory, name, kv[0], n, kv[1])))


# Rows per Parquet row group (and per batch held in memory while a part file is written).
ROW_GROUP = 10_000


def shard_of(row, num_shards: int) -> int:
    """A row's part file: from its first column (the row's id), the same on every run."""
    key = getattr(row, type(row).schema.names[0])
    return zlib.crc32(str(key).encode("utf-8")) % num_shards


def part_name(shard: int, num_shards: int) -> str:
    return f"part-{shard:05d}-of-{num_shards:05d}.parquet"


def write_part(directory: str, name: str, shard: int, num_shards: int, rows) -> str:
    """Write one part file from an iterable of row dicts (``None`` entries skipped), in row
    groups of ROW_GROUP, to a temp file published under its final name (renamed locally,
    uploaded whole to an object store). Returns its path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = ROWS[name].schema
    folder = os.path.join(directory, name)
    path = os.path.join(folder, part_name(shard, num_shards))
    tmp = storage.temp_beside(path, prefix=".tmp-part-", suffix=".tmp")  # never *.parquet
    try:
        with pq.ParquetWriter(tmp, schema) as writer:
            batch = []
            for row in rows:
                if row is not None:
                    batch.append(row)
                if len(batch) >= ROW_GROUP:
                    writer.write_table(pa.Table.from_pylist(batch, schema))
                    batch = []
            if batch:
                writer.write_table(pa.Table.from_pylist(batch, schema))
        storage.put_file(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def table_files(directory: str) -> list[str]:
    """The part files of one table directory (local or on an object store), sorted."""
    return [os.path.join(directory, f) for f in sorted(storage.listdir(directory)) if f.endswith(".parquet")]


def read_parquet(path: str, columns=None):
    """One Parquet file (local or remote) as Arrow."""
    import pyarrow.parquet as pq

    fs, p = storage.pyarrow_fs(path)
    return pq.read_table(p, columns=columns, filesystem=fs)


def read_table(run_dir: str, name: str):
    """Table ``name`` of a run's current generation (or of a generation directory) as Arrow."""
    import pyarrow as pa

    from pipeline import rundir

    files = table_files(os.path.join(rundir.current(run_dir) or run_dir, name))
    if not files:
        return None
    return pa.concat_tables([read_parquet(f) for f in files])


def read_rows(run_dir: str, name: str) -> list[dict]:
    table = read_table(run_dir, name)
    return table.to_pylist() if table is not None else []

"""The run's tables: their names (also the tags of the Beam outputs that feed them), Parquet
writing from typed rows, reading back, and file counts."""

from __future__ import annotations

import math
import os

import apache_beam as beam

from transforms.rows import ClipRow, ErrorRow, VideoRow

VIDEOS, CLIPS, ERRORS = "videos", "clips", "errors"
ROWS = {VIDEOS: VideoRow, CLIPS: ClipRow, ERRORS: ErrorRow}


def table_shards(n_inputs: int, cfg) -> dict[str, int]:
    """Deterministic Parquet file counts from the input size."""
    n = max(1, n_inputs)
    return {VIDEOS: max(1, math.ceil(n / 100_000)), CLIPS: max(1, math.ceil(n * 20 / cfg.write.parquet_max_rows)),
            ERRORS: 1}


class WriteTable(beam.PTransform):
    """Typed rows -> ``<directory>/<name>/part-*.parquet`` with the row class's schema."""

    def __init__(self, directory: str, name: str, num_shards: int):
        super().__init__()
        self.directory, self.name, self.num_shards = directory, name, num_shards

    def expand(self, rows):
        schema = ROWS[self.name].schema
        return (rows
                | "ToDicts" >> beam.Map(lambda r: r.to_dict())
                | "Parquet" >> beam.io.WriteToParquet(os.path.join(self.directory, self.name, "part"), schema,
                                                      file_name_suffix=".parquet", num_shards=self.num_shards))


def read_table(run_dir: str, name: str):
    """Table ``name`` of a run's current generation (or of a generation directory) as Arrow."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline import rundir

    directory = os.path.join(rundir.current(run_dir) or run_dir, name)
    files = sorted(f for f in os.listdir(directory) if f.endswith(".parquet")) if os.path.isdir(directory) else []
    if not files:
        return None
    return pa.concat_tables([pq.read_table(os.path.join(directory, f)) for f in files])


def read_rows(run_dir: str, name: str) -> list[dict]:
    table = read_table(run_dir, name)
    return table.to_pylist() if table is not None else []

"""``PlanInputs``: which inputs to analyze, decided inside the pipeline (remote runners).

    --input ─ ListInputs ─ Reshuffle ─ ById ─┐
                                             ├─ CoGroupByKey ─ Decide ─┬─ todo: sources to analyze
    _analysis/ ─ ListRecords ─ ById ─────────┘  (one per video_id)      └─ done: final records (not redone)

On the local runner the driver lists the inputs, reads the completion records and deals the
work by cost (:mod:`pipeline.balance`). On a remote runner that would put every input and every
record into the submitted job graph, which grows with the collection (Dataflow refuses graphs
over about 10 MB). Here the graph holds only the ``--input`` string and the run directory: a
worker expands the input (a directory, prefix, glob or manifest), another lists the records, and
the join decides per video, so the driver holds no per-input state and the submitted pipeline
has the same size for a thousand inputs or a million. Counts come back as Beam metrics.
"""

from __future__ import annotations

import os

import apache_beam as beam
from apache_beam.metrics import Metrics

from pipeline import resume, rundir, tally
from pipeline.inputs import expand_inputs
from transforms import storage
from transforms.rows import video_id_for

DONE = "done"
# Parquet files per table when the number of inputs is not known when the graph is built.
PLANNED_PARTS = {"videos": 4, "clips": 16, "errors": 1}


def list_inputs(spec: str, extensions, recursive: bool, output: str):
    """--input -> its sources (on a worker), without those inside the run directory."""
    listed = Metrics.counter("vidcurate", "inputs_listed")
    inside = Metrics.counter("vidcurate", "inputs_inside_output")
    for source in expand_inputs(spec, extensions, recursive):
        listed.inc()
        if rundir.inside(source, output):
            inside.inc()
            continue
        yield source


def list_records(directory: str):
    """The completion records in ``_analysis/`` as (video_id, path)."""
    for name in storage.listdir(directory):
        vid = name[: -len(".json")]
        if name.endswith(".json") and rundir.VIDEO_ID.fullmatch(vid):
            yield vid, os.path.join(directory, name)


class DecideFn(beam.DoFn):
    """(video_id, {"source": [...], "record": [...]}) -> the source (to analyze) or its final
    record (tag ``done``); a record whose source is no longer listed is ignored."""

    def __init__(self, key: str, max_attempts: int):
        self.key, self.max_attempts = key, max_attempts
        self.inputs = Metrics.counter("vidcurate", "inputs")
        self.duplicates = Metrics.counter("vidcurate", "inputs_duplicate")
        self.resumed = Metrics.counter("vidcurate", "videos_resumed")

    def process(self, element):
        _, parts = element
        sources = sorted(set(parts["source"]))
        if not sources:
            return
        self.inputs.inc()
        self.duplicates.inc(len(parts["source"]) - 1)
        source = sources[0]
        for path in parts["record"]:
            record = resume.final_record(path, self.key, source, self.max_attempts)
            if record is not None:
                self.resumed.inc()
                yield beam.pvalue.TaggedOutput(DONE, record)
                return
        yield source


class PlanInputs(beam.PTransform):
    """p -> {"todo": sources to analyze, "done": final completion records (typed rows)}."""

    def __init__(self, spec: str, output: str, cfg, stages, progress: str | None = None):
        super().__init__()
        self.spec, self.output, self.cfg, self.stages = spec, output, cfg, tuple(stages)
        self.progress = progress  # where the number of videos to analyze goes (pipeline.tally)

    def expand(self, p):
        cfg = self.cfg
        sources = (p
                   | "InputSpec" >> beam.Create([self.spec])
                   | "ListInputs" >> beam.FlatMap(list_inputs, tuple(cfg.input.extensions), cfg.input.recursive,
                                                  self.output)
                   | "SpreadInputs" >> beam.Reshuffle()
                   | "SourceById" >> beam.Map(lambda s: (video_id_for(s), s)))
        records = (p
                   | "RecordDir" >> beam.Create([os.path.join(self.output, resume.ANALYSIS_DIR)])
                   | "ListRecords" >> beam.FlatMap(list_records)
                   | "SpreadRecords" >> beam.Reshuffle())
        decided = ({"source": sources, "record": records}
                   | "JoinRecords" >> beam.CoGroupByKey()
                   | "Decide" >> beam.ParDo(DecideFn(resume.analysis_key(cfg, self.stages), cfg.input.max_attempts))
                   .with_outputs(DONE, main="todo"))
        if self.progress:
            _ = (decided["todo"]
                 | "CountTodo" >> beam.combiners.Count.Globally()
                 | "WritePlanned" >> beam.Map(tally.write_planned, self.progress))
        return {"todo": decided["todo"], "done": decided[DONE]}

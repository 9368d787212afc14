"""Driver: resolve inputs and options, run the Beam graph, write ``summary.json``."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
import threading
import time
from importlib import metadata

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline import balance, beam_pipeline, resume, rundir
from pipeline.inputs import expand_inputs
from pipeline.options import pipeline_options
from transforms.analyze import video_id_for

log = logging.getLogger(__name__)

ALL_STAGES = ("probe", "cuts", "motion", "ocr", "clip", "caption")
DEFAULT_STAGES = ("probe", "cuts", "motion")


def parse_stages(text: str | None) -> tuple[str, ...]:
    if not text:
        return DEFAULT_STAGES
    stages = tuple(s.strip() for s in text.split(",") if s.strip())
    unknown = [s for s in stages if s not in ALL_STAGES]
    if unknown:
        raise ValueError(f"unknown stage(s) {', '.join(unknown)}; choose from {', '.join(ALL_STAGES)}")
    return stages


@contextlib.contextmanager
def worker_output_to(path: str):
    """Send file descriptor 2 (where Beam's worker processes print their chatter) to ``path``
    while the pipeline runs; our own log lines and the progress bar keep the real stderr."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    log_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    real = os.fdopen(os.dup(saved), "w", buffering=1)
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler)]
    old_streams = [h.setStream(real) for h in handlers]
    os.dup2(log_fd, 2)
    try:
        yield real
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        for h, stream in zip(handlers, old_streams):
            h.setStream(stream)
        real.close()
        os.close(saved)
        os.close(log_fd)


class Progress:
    """Counts the completion records workers write and shows a progress bar (videos done/total,
    rate) on a terminal, or a log line every 10 s otherwise."""

    def __init__(self, directory: str, video_ids: set[str]):
        self.directory, self.ids = directory, set(video_ids)
        self.total = len(self.ids)
        self.stream = sys.stderr
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def count(self) -> int:
        try:
            return sum(1 for f in os.listdir(self.directory) if f.endswith(".json") and f[:-5] in self.ids)
        except OSError:
            return 0

    def _loop(self):
        from tqdm import tqdm

        bar = tqdm(total=self.total, initial=self.count(), unit="video", desc="analysing", file=self.stream,
                   disable=not self.stream.isatty())
        start = last_log = time.time()
        first = logged = bar.n
        while not self._stop.wait(1.0):
            done = self.count()
            bar.update(done - bar.n)
            if bar.disable and done != logged and time.time() - last_log >= 10:
                rate = (done - first) / (time.time() - start) * 60
                log.info("analysed %d/%d videos (%.1f videos/min)", done, self.total, rate)
                logged, last_log = done, time.time()
        bar.update(self.count() - bar.n)
        bar.close()

    @contextlib.contextmanager
    def to(self, stream):
        self.stream = stream
        if self.total:
            self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            if self.total:
                self._thread.join(timeout=5)


def run(input_spec: str, output: str, cfg, stages: str | None = None, no_clips: bool = False,
        beam_args: list[str] | None = None, force: bool = False, profile: str | None = None) -> dict:
    """Run the curation job and return the summary (also written to ``summary.json``).

    The tables go to a new generation of the run directory, switched in when complete (see
    :mod:`pipeline.rundir`). Re-running on the same output resumes: videos with a final
    completion record are not analysed again (failed ones are retried up to
    ``input.max_attempts``) and finished clips are not encoded again; a finished run (same
    inputs, content and config) is not redone unless ``force``."""
    stage_list = parse_stages(stages)
    if "://" in output and not output.startswith("file://"):
        raise ValueError(f"--output {output}: writing to URLs is not supported yet; use a local or mounted "
                         "directory every worker can write (e.g. a gcsfuse or mountpoint-s3 mount)")
    output = os.path.abspath(output.removeprefix("file://"))
    if "://" not in input_spec and rundir.inside(input_spec.removeprefix("file://"), output):
        raise ValueError(f"--input {input_spec} is inside --output {output}; vidcurate writes its clips there. "
                         "Give an output directory outside the inputs, e.g. a sibling folder")
    listed = expand_inputs(input_spec, cfg.input.extensions, cfg.input.recursive)
    sources = list(dict.fromkeys(listed))  # one analysis per source, in first-seen order
    duplicates = len(listed) - len(sources)
    if duplicates:
        log.warning("vidcurate: %d input(s) listed more than once; each is analysed once", duplicates)
    inside = [s for s in sources if "://" not in s and rundir.inside(s, output)]
    if inside:
        log.warning("vidcurate: %d input(s) inside --output %s are left out (vidcurate's own files live there)",
                    len(inside), output)
        sources = [s for s in sources if s not in set(inside)]
    if not sources:
        raise ValueError(f"no videos found at {input_spec!r} (looked for {', '.join(cfg.input.extensions)})")
    rundir.claim(output)
    with rundir.locked(output):
        key = resume.run_key(sources, cfg, no_clips, stage_list)
        ids = {video_id_for(s): s for s in sources}
        if force:
            for table in (resume.ANALYSIS_DIR, resume.STAGING_DIR):
                shutil.rmtree(os.path.join(output, table), ignore_errors=True)
        done = resume.load_records(output, resume.analysis_key(cfg), ids, cfg.input.max_attempts)
        finished = rundir.current(output)
        if finished and not force and len(done) == len(ids):
            with open(os.path.join(finished, "summary.json"), encoding="utf-8") as fh:
                previous = json.load(fh)
            if previous.get("run_key") == key:
                log.info("vidcurate: %s already holds this finished run (same inputs, content and config); "
                         "use --force to redo it", output)
                return previous
        stale = resume.clean_stale(output)
        if {"ocr", "clip", "caption"} & set(stage_list):  # fail fast, before any video is processed
            from pipeline.model_stages import preflight

            preflight(cfg, stage_list)
        generation = rundir.new_generation(output)
        todo = [s for vid, s in ids.items() if vid not in done]
        log.info("vidcurate: %d input(s) -> %s (stages: %s%s)%s", len(sources), output, ",".join(stage_list),
                 ", analysis only" if no_clips else "",
                 f"; resuming: {len(done)} already analysed, {stale} stale temp file(s) removed" if done or stale else "")
        options = pipeline_options(cfg, beam_args or [], profile)
        workers = balance.local_workers(options)
        wall = execute(generation, options, set(ids), progress_dir=output,
                       build=lambda p: beam_pipeline.build(p, todo, output, cfg, write_media=not no_clips,
                                                           done=list(done.values()), stages=stage_list,
                                                           workers=workers, dest=generation))
        summary = summarize(generation, cfg, stage_list, wall, len(sources), no_clips)
        summary["run_key"] = key
        summary["resumed_videos"] = len(done)
        summary["inputs_listed"] = len(listed)
        summary["inputs_duplicate"] = duplicates
        summary["inputs_inside_output"] = len(inside)
        return publish(output, generation, summary)


def execute(generation: str, options: PipelineOptions, video_ids: set[str], build,
            progress_dir: str | None = None) -> float:
    """Run ``build(pipeline)`` with worker output in ``<generation>/logs/beam.log`` and a
    progress bar over the completion records of ``video_ids`` (under ``progress_dir``).
    Returns the wall time."""
    t0 = time.time()
    progress = Progress(os.path.join(progress_dir or generation, resume.ANALYSIS_DIR), video_ids)
    with worker_output_to(os.path.join(generation, "logs", "beam.log")) as stderr, progress.to(stderr):
        with beam.Pipeline(options=options) as p:
            build(p)
    return time.time() - t0


def publish(output: str, generation: str, summary: dict) -> dict:
    """Finish a run of ``run`` or ``filter``: the generation's summary.json (its completion
    mark), then the switch of the run directory to it, then staged media go."""
    write_summary(generation, summary)
    rundir.switch(output, generation)
    beam_pipeline.cleanup_staging(output)
    return summary


def write_summary(output: str, summary: dict) -> dict:
    with open(os.path.join(output, "summary.json"), "w", encoding="utf-8") as fh:
        json.dump(summary, fh, indent=2, sort_keys=True, default=str)
    return summary


def _versions() -> dict:
    names = ("vidcurate", "apache-beam", "scenedetect", "av", "opencv-python-headless", "numpy",
             "pyarrow", "torch", "open-clip-torch", "easyocr")
    out = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = None
    out["python"] = sys.version.split()[0]
    return out


def read_table(run_dir: str, name: str):
    """Table ``name`` of a run's current generation (or of a generation directory) as Arrow."""
    import pyarrow.parquet as pq

    directory = os.path.join(rundir.current(run_dir) or run_dir, name)
    files = sorted(f for f in os.listdir(directory) if f.endswith(".parquet")) if os.path.isdir(directory) else []
    if not files:
        return None
    import pyarrow as pa

    return pa.concat_tables([pq.read_table(os.path.join(directory, f)) for f in files])


def summarize(output: str, cfg, stages, wall: float, n_inputs: int, no_clips: bool) -> dict:
    videos = read_table(output, "videos")
    clips = read_table(output, "clips")
    errors = read_table(output, "errors")
    v = videos.to_pylist() if videos is not None else []
    c = clips.to_pylist() if clips is not None else []
    e = errors.to_pylist() if errors is not None else []
    ok = [r for r in v if r["status"] == "ok"]
    partial = [r for r in v if r["status"] == "partial"]
    no_shot = [r for r in v if r["status"] == "no_usable_shot"]
    failed = [r for r in v if r["status"] == "error"]
    kept = [r for r in c if r["keep"]]
    with_kept = {r["video_id"] for r in kept}
    hours_in = sum(r["duration_s"] or 0 for r in ok + partial) / 3600
    reasons: dict[str, int] = {}
    for r in c:
        for reason in r["reject_reasons"] or []:
            reasons[reason] = reasons.get(reason, 0) + 1
    by_type: dict[str, int] = {}
    for r in e:
        key = f"{r['stage']}:{r['error_type']}"
        by_type[key] = by_type.get(key, 0) + 1
    shards_dir = os.path.join(output, "shards")
    shards = sorted(f for f in os.listdir(shards_dir) if f.endswith(".tar")) if os.path.isdir(shards_dir) else []
    return {
        "inputs": n_inputs,
        "stages": list(stages),
        "analysis_only": no_clips,
        "wall_seconds": round(wall, 2),
        "videos": {"total": len(v), "ok": len(ok), "partial": len(partial), "no_usable_shot": len(no_shot),
                   "error": len(failed), "hours": round(hours_in, 4),
                   "without_kept_clip": sum(1 for r in v if r["video_id"] not in with_kept),
                   "retry_pending": sum(1 for r in failed if (r.get("attempts") or 1) < cfg.input.max_attempts)},
        "clips": {
            "total": len(c), "kept": len(kept), "rejected": len(c) - len(kept),
            "hours_total": round(sum(r["duration_s"] or 0 for r in c) / 3600, 4),
            "hours_kept": round(sum(r["duration_s"] or 0 for r in kept) / 3600, 4),
            "reject_reasons": dict(sorted(reasons.items())),
        },
        "errors": {"total": len(e), "by_type": dict(sorted(by_type.items()))},
        "shards": {"count": len(shards), "bytes": sum(os.path.getsize(os.path.join(shards_dir, s)) for s in shards)},
        "video_seconds_per_wall_second": round(hours_in * 3600 / wall, 3) if wall > 0 else None,
        "config": cfg.to_dict(),
        "versions": _versions(),
    }

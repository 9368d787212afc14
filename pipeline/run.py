"""Driver: resolve inputs and options, run the Beam graph, write ``summary.json``."""

from __future__ import annotations

import json
import logging
import os
import time

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline import balance, graph, resume, rundir
from pipeline.inputs import expand_inputs
from pipeline.options import pipeline_options
from pipeline.progress import Progress, worker_output_to
from pipeline.summary import summarize, write_summary
from pipeline.tally import TALLY
from transforms import storage
from transforms.rows import video_id_for
from transforms.stages import BY_NAME, parse_stages, preflight
from transforms.storage import local_path

log = logging.getLogger(__name__)


def run(input_spec: str, output: str, cfg, stages: str | None = None, no_clips: bool = False,
        beam_args: list[str] | None = None, force: bool = False, profile: str | None = None) -> dict:
    """Run the curation job and return the summary (also written to ``summary.json``).

    The tables go to a new generation of the run directory, switched in when complete (see
    :mod:`pipeline.rundir`). Re-running on the same output resumes: videos with a final
    completion record are not analyzed again (failed ones are retried up to
    ``input.max_attempts``) and finished clips are not encoded again; a finished run (same
    inputs, content and config) is not redone unless ``force``."""
    stage_list = parse_stages(stages)
    if "dedup" in stage_list and "clip" in cfg.dedup.use and "clip" not in stage_list:
        raise ValueError("dedup.use includes clip: add the clip stage to --stages (its embeddings are compared)")
    if cfg.dedup.against and "dedup" not in stage_list:
        raise ValueError("--dedup-against needs the dedup stage: add it to --stages, e.g. --stages probe,cuts,motion,dedup")
    output = os.path.abspath(local_path(output)) if local_path(output) is not None else output.rstrip("/")
    if local_path(input_spec) is not None and rundir.inside(local_path(input_spec), output):
        raise ValueError(f"--input {input_spec} is inside --output {output}; vidcurate writes its clips there. "
                         "Give an output directory outside the inputs, e.g. a sibling folder")
    if plans_in_pipeline(cfg, pipeline_options(cfg, beam_args or [], profile)):
        return run_planned(input_spec, output, cfg, stage_list, no_clips, beam_args, force, profile)
    listed = expand_inputs(input_spec, cfg.input.extensions, cfg.input.recursive)
    sources = list(dict.fromkeys(listed))  # one analysis per source, in first-seen order
    duplicates = len(listed) - len(sources)
    if duplicates:
        log.warning("vidcurate: %d input(s) listed more than once; each is analyzed once", duplicates)
    inside = [s for s in sources if local_path(s) is not None and rundir.inside(local_path(s), output)]
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
            for table in (resume.ANALYSIS_DIR, resume.STAGING_DIR, resume.SCORED_DIR):
                storage.rmtree(os.path.join(output, table))
        done = resume.load_records(output, resume.analysis_key(cfg, stage_list), ids, cfg.input.max_attempts)
        finished = rundir.current(output)
        if finished and not force and len(done) == len(ids):
            previous = json.loads(storage.read_bytes(os.path.join(finished, "summary.json")))
            if previous.get("run_key") == key:
                log.info("vidcurate: %s already holds this finished run (same inputs, content and config); "
                         "use --force to redo it", output)
                return previous
        stale = resume.clean_stale(output)
        preflight(cfg, stage_list)  # fail fast, before any video is processed
        generation = rundir.new_generation(output)
        todo = [s for vid, s in ids.items() if vid not in done]
        options = pipeline_options(cfg, beam_args or [], profile, small=balance.small_job(todo))
        one = options.get_all_options().get("direct_running_mode") == "in_memory"
        log.info("vidcurate: %d input(s) -> %s (stages: %s%s)%s%s", len(sources), output, ",".join(stage_list),
                 ", analysis only" if no_clips else "",
                 f"; resuming: {len(done)} already analyzed, {stale} stale temp file(s) removed" if done or stale else "",
                 "; in one process (no worker processes)" if one else "")
        workers = balance.local_workers(options)
        counted: dict[str, int] = {}
        wall = execute(generation, options, len(todo), counters_out=counted,
                       build=lambda p: graph.build(p, todo, output, generation, cfg, stage_list,
                                                   write_media=not no_clips, done=list(done.values()),
                                                   workers=workers))
        summary = summarize(generation, cfg, stage_list, wall, len(sources), no_clips)
        summary["run_key"] = key
        summary["resumed_videos"] = len(done)
        summary["inputs_listed"] = len(listed)
        summary["inputs_duplicate"] = duplicates
        summary["inputs_inside_output"] = len(inside)
        if any(BY_NAME[s].is_model for s in stage_list):
            summary["model_clips"] = {"scored": counted.get("model_clips_read", 0),
                                      "from_checkpoints": counted.get("model_clips_reused", 0)}
        return publish(output, generation, summary)


def plans_in_pipeline(cfg, options) -> bool:
    """``runner.plan_inputs``: auto lists inputs in the pipeline on every runner but the local ones."""
    if cfg.runner.plan_inputs != "auto":
        return cfg.runner.plan_inputs == "pipeline"
    from apache_beam.options.pipeline_options import StandardOptions

    runner = options.view_as(StandardOptions).runner or ""
    return str(runner) not in ("FnApiRunner", "DirectRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner")


def run_planned(input_spec: str, output: str, cfg, stage_list, no_clips: bool, beam_args, force: bool,
                profile: str | None) -> dict:
    """:func:`run` with the inputs listed and resume decided inside the pipeline
    (:mod:`pipeline.plan`): the driver holds no per-input state, and the job graph only the
    --input string. Every re-run joins the inputs with the completion records again (there is
    no driver-side "already finished" shortcut)."""
    rundir.claim(output)
    with rundir.locked(output):
        if force:
            for table in (resume.ANALYSIS_DIR, resume.STAGING_DIR, resume.SCORED_DIR):
                storage.rmtree(os.path.join(output, table))
        stale = resume.clean_stale(output)
        preflight(cfg, stage_list)
        generation = rundir.new_generation(output)
        options = pipeline_options(cfg, beam_args or [], profile)
        log.info("vidcurate: %s -> %s (stages: %s%s); inputs listed and resume decided in the pipeline%s",
                 input_spec, output, ",".join(stage_list), ", analysis only" if no_clips else "",
                 f"; {stale} stale temp file(s) removed" if stale else "")
        counted: dict[str, int] = {}
        wall = execute(generation, options, None, counters_out=counted,
                       build=lambda p: graph.build(p, [], output, generation, cfg, stage_list,
                                                   write_media=not no_clips, spec=input_spec))
        if not counted.get("inputs"):
            log.warning("vidcurate: no videos found at %r (looked for %s)", input_spec, ", ".join(cfg.input.extensions))
        summary = summarize(generation, cfg, stage_list, wall, counted.get("inputs", 0), no_clips)
        summary["run_key"] = resume.run_key([input_spec], cfg, no_clips, stage_list)
        summary["planned_in_pipeline"] = True
        for name in ("resumed_videos", "inputs_listed", "inputs_duplicate", "inputs_inside_output"):
            summary[name] = counted.get("videos_resumed" if name == "resumed_videos" else name, 0)
        if any(BY_NAME[s].is_model for s in stage_list):
            summary["model_clips"] = {"scored": counted.get("model_clips_read", 0),
                                      "from_checkpoints": counted.get("model_clips_reused", 0)}
        return publish(output, generation, summary)


def execute(generation: str, options: PipelineOptions, total: int | None, build,
            counters_out: dict | None = None) -> float:
    """Run ``build(pipeline)`` with worker output in ``<generation>/logs/beam.log`` and a
    progress bar over ``total`` videos to analyze (None: the pipeline's planning tells), from the
    workers' counts (:mod:`pipeline.tally`).
    Returns the wall time; ``counters_out`` receives the run's vidcurate counters."""
    t0 = time.time()
    progress = Progress(os.path.join(generation, TALLY), total)
    with worker_output_to(os.path.join(generation, "logs", "beam.log")) as stderr, progress.to(stderr):
        p = beam.Pipeline(options=options)
        build(p)
        result = p.run()
        result.wait_until_finish()
    if counters_out is not None:
        counters_out.update(counters(result))
    return time.time() - t0


def counters(result) -> dict[str, int]:
    """The committed vidcurate counters of a finished pipeline (empty when the runner has none)."""
    try:
        found = result.metrics().query()["counters"]
    except Exception:  # noqa: BLE001 - metrics are informational; some runners do not report them
        return {}
    out: dict[str, int] = {}
    for c in found:
        if c.key.metric.namespace == "vidcurate":
            out[c.key.metric.name] = out.get(c.key.metric.name, 0) + int(c.committed or 0)
    return out


def publish(output: str, generation: str, summary: dict) -> dict:
    """Finish a run of ``run`` or ``filter``: the generation's summary.json (its completion
    mark), then the switch of the run directory to it, then staged media go."""
    write_summary(generation, summary)
    rundir.switch(output, generation)
    storage.rmtree(os.path.join(output, resume.STAGING_DIR))
    return summary



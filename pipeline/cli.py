"""``vidcurate`` command line. Unknown ``--flags`` of ``run`` are passed to Beam as pipeline
options (``--runner``, ``--direct_num_workers``, ``--flink_master``, ...)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from pipeline.config import ConfigError, load_config
from transforms.errors import ModelUnavailable
from transforms.stages import DEFAULT, NAMES, STAGES

EPILOG = """examples:
  vidcurate run --input examples/videos --output runs/example
  vidcurate run --input videos.csv --output runs/big --no-clips
  vidcurate run --input 's3://bucket/raw/*.mp4' --output runs/s3 --set clips.max_duration_s=5
  vidcurate run --input examples/videos --output runs/x --runner=PortableRunner \\
      --job_endpoint=embed --environment_type=LOOPBACK
"""


def _run_parser(sub):
    p = sub.add_parser("run", help="curate videos: probe, cut, score, filter, write shards",
                       description="Curate a video collection into clips, Parquet tables and WebDataset shards.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", required=True,
                   help="a directory, a glob, a manifest (.txt/.csv/.parquet) or one file; local or any fsspec URL")
    p.add_argument("--output", required=True,
                   help="run directory: new or empty, or an earlier vidcurate run to resume or redo "
                        "(vidcurate never writes into a non-empty directory it did not create)")
    p.add_argument("--config", default=None, help="YAML config (default: the packaged beam_config.yaml)")
    p.add_argument("--stages", default=None,
                   help=f"comma list of {','.join(NAMES)} (default: {','.join(DEFAULT)}; "
                        f"{' and '.join(s.name for s in STAGES if s.required)} always run)")
    p.add_argument("--no-clips", action="store_true",
                   help="analyze only: write the tables with clip spans and scores, no clip media or shards")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config value, e.g. --set clips.max_duration_s=5 (repeatable)")
    p.add_argument("--profile", default=None,
                   help="a named set of Beam flags from beam_config.yaml runner.profiles: local, portable, flink, spark, dataflow")
    p.add_argument("--force", action="store_true",
                   help="redo everything; without it a re-run resumes (finished videos and clips are kept)")
    p.add_argument("--dedup-against", metavar="RUN", default=None,
                   help="with the dedup stage: also reject clips that duplicate a kept clip of this earlier run")
    return p


def _inspect_parsers(sub):
    f = sub.add_parser("filter", help="re-apply filters to a finished run (no decoding or model work)",
                       description="Re-apply filters to an existing run and write new tables and shards. Clips "
                                   "already in shards are copied; clips never cut (e.g. a --no-clips run) are cut now.")
    f.add_argument("run_dir", help="a directory written by `vidcurate run`")
    f.add_argument("--output", help="new output directory (required unless --dry-run)")
    f.add_argument("--config", default=None, help="YAML config whose filters: section to apply")
    f.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a filter, e.g. --set filters.min_motion=1.0 or "
                        "--set 'filters.drop_bottom_percent={motion_score: 25}'")
    f.add_argument("--where", help="extra SQL condition on the clips table, e.g. \"fps >= 24 AND width >= 640\"")
    f.add_argument("--dry-run", action="store_true", help="print what would be kept, write nothing")
    f.add_argument("--dedup-against", metavar="RUN", default=None,
                   help="(runs with the dedup stage) also reject clips that duplicate a kept clip of this run")
    st = sub.add_parser("stats", help="terminal summary of a run: funnel, score percentiles, errors")
    st.add_argument("run_dir")
    st.add_argument("--json", action="store_true", help="machine-readable output")
    st.add_argument("--what-if", metavar="COLUMN", help="clips and hours kept by candidate cuts on COLUMN")
    st.add_argument("--percents", default="12.5,25,50", help="percentile cuts for --what-if (default 12.5,25,50)")
    st.add_argument("--values", default="", help="absolute thresholds for --what-if, comma list")
    st.add_argument("--top", action="store_true", help="--what-if drops the top instead of the bottom")
    r = sub.add_parser("report", help="self-contained HTML report with plots and sample clips")
    r.add_argument("run_dir")
    r.add_argument("--out", default=None, help="HTML file to write (default <run_dir>/report.html)")
    q = sub.add_parser("query", help="DuckDB SQL over the run's tables clips, videos, errors")
    q.add_argument("run_dir")
    q.add_argument("sql")
    q.add_argument("--json", action="store_true")


def _drop_beam_import_noise(record: logging.LogRecord) -> bool:
    # Beam warns about optional Google Cloud clients on import; irrelevant unless using GCP.
    return not str(record.msg).startswith("apitools not found")


def _cell(x) -> str:
    return f"{x:.6g}" if isinstance(x, float) else str(x)


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _inspect(args, extra) -> int:
    if args.command == "filter":
        from pipeline.refilter import dry_run, refilter, with_run_media

        cfg = with_run_media(args.run_dir, load_config(args.config, args.set))
        if args.dry_run:
            print(json.dumps(dry_run(args.run_dir, cfg, args.where), indent=2))
            return 0
        if not args.output:
            raise ValueError("--output is required (or use --dry-run)")
        summary = refilter(args.run_dir, args.output, cfg, args.where, extra)
        print(json.dumps({k: summary[k] for k in ("clips", "shards", "wall_seconds")}, indent=2, default=str))
        return 0
    if args.command == "stats":
        from pipeline.stats import render_stats, stats, what_if

        if args.what_if:
            table = what_if(args.run_dir, args.what_if, _floats(args.percents), _floats(args.values), args.top)
            if args.json:
                print(json.dumps(table, indent=2))
            else:
                print(f"{'cut on ' + args.what_if:<28}{'threshold':>12}{'clips kept':>12}{'hours kept':>12}")
                for row in table:
                    print(f"{row['cut']:<28}{row['threshold']:>12.4g}{row['clips_kept']:>12}{row['hours_kept']:>12.4f}")
            return 0
        s = stats(args.run_dir)
        print(json.dumps(s, indent=2) if args.json else render_stats(s))
        return 0
    if args.command == "report":
        from pipeline.report import write_report

        path = write_report(args.run_dir, args.out or os.path.join(args.run_dir, "report.html"))
        print(path)
        return 0
    if args.command == "query":
        from pipeline.stats import query

        columns, rows = query(args.run_dir, args.sql)
        if args.json:
            print(json.dumps([dict(zip(columns, r)) for r in rows], indent=2, default=str))
        else:
            cells = [[_cell(x)[:60] for x in r] for r in rows]
            widths = [max([len(str(c))] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
            print("  ".join(str(c).ljust(w) for c, w in zip(columns, widths)).rstrip())
            for r in cells:
                print("  ".join(x.ljust(w) for x, w in zip(r, widths)).rstrip())
        return 0
    return 1


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    trainers = {"train": "model_training.train", "sample": "model_training.sample", "encode": "model_training.encode"}
    if argv and argv[0] in trainers:  # the trainer's commands have their own parsers
        import importlib

        logging.getLogger().addFilter(_drop_beam_import_noise)
        return importlib.import_module(trainers[argv[0]]).main(argv[1:])
    parser = argparse.ArgumentParser(prog="vidcurate", description="Curate video collections for video diffusion training.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    _run_parser(sub)
    _inspect_parsers(sub)
    sub.add_parser("train", help="train the latent video diffusion model on shards (vidcurate train --help)")
    sub.add_parser("sample", help="sample a video from a trained checkpoint (vidcurate sample --help)")
    sub.add_parser("encode", help="latent cache: mp4 shards -> latent shards, a Beam job (vidcurate encode --help)")
    args, extra = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().addFilter(_drop_beam_import_noise)
    for noisy in ("apache_beam", "urllib3", "fsspec"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Worker processes' start-up warnings are relayed here; they are kept in <output>/logs.
    logging.getLogger("apache_beam.runners.portability.local_job_service").setLevel(logging.ERROR)
    if getattr(args, "dedup_against", None):  # a path: quoted so YAML keeps it a string
        args.set.append(f"dedup.against={json.dumps(os.path.abspath(args.dedup_against))}")
    if args.command == "run":
        from pipeline.options import beam_flags
        from pipeline.run import run

        try:
            extra = beam_flags(extra)
        except ValueError as exc:
            parser.error(str(exc))

        try:
            cfg = load_config(args.config, args.set)
            summary = run(args.input, args.output, cfg, args.stages, args.no_clips, extra, force=args.force, profile=args.profile)
        except (ConfigError, ValueError, ModelUnavailable) as exc:
            print(f"vidcurate: error: {exc}", file=sys.stderr)
            return 2
        brief = {k: summary[k] for k in ("videos", "errors", "shards", "wall_seconds")}
        brief["clips"] = {k: summary["clips"][k] for k in ("total", "kept", "hours_kept", "reject_reasons")}
        print(json.dumps(brief, indent=2))
        return 0
    if extra and args.command != "filter":
        parser.error(f"unexpected argument(s): {' '.join(extra)}")
    from pipeline.options import beam_flags

    try:
        extra = beam_flags(extra)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        return _inspect(args, extra)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        print(f"vidcurate: error: {exc}", file=sys.stderr)
        return 2


def entry() -> None:
    """The ``vidcurate`` command: :func:`main`, then :func:`quick_exit`. Output piped into a
    command that stops reading early (``vidcurate stats RUN | head``) ends it quietly."""
    try:
        code = main()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's documented recipe
        code = 1
    quick_exit(code)


def quick_exit(code: int) -> None:
    """End the process once the work is done: other threads joined, the exit handlers run
    (logging's flush, temporary files), the standard streams flushed, then ``os._exit``.
    Python's own finalisation of the ~2,000 modules Beam, PyAV, OpenCV and Arrow load takes
    0.6-0.8 s on 2 cores, a fifth of a one-file run, and has nothing left to save."""
    import atexit
    import threading

    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()  # what normal interpreter exit runs first
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


if __name__ == "__main__":
    entry()

"""``vidcurate`` command line. Unknown ``--flags`` of ``run`` are passed to Beam as pipeline
options (``--runner``, ``--direct_num_workers``, ``--flink_master``, ...)."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from pipeline.config import ConfigError, load_config

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
    p.add_argument("--output", required=True, help="output directory (tables, shards, summary.json)")
    p.add_argument("--config", default=None, help="YAML config (default: the packaged beam_config.yaml)")
    p.add_argument("--stages", default=None,
                   help="comma list of probe,cuts,motion,ocr,clip,caption (default: probe,cuts,motion)")
    p.add_argument("--no-clips", action="store_true",
                   help="analyse only: write the tables with clip spans and scores, no clip media or shards")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config value, e.g. --set clips.max_duration_s=5 (repeatable)")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vidcurate", description="Curate video collections for video diffusion training.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    _run_parser(sub)
    args, extra = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("apache_beam", "urllib3", "fsspec"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Worker processes' start-up warnings are relayed here; they are kept in <output>/logs.
    logging.getLogger("apache_beam.runners.portability.local_job_service").setLevel(logging.ERROR)
    if args.command == "run":
        bad = [a for a in extra if not a.startswith("--")]
        if bad:
            parser.error(f"unexpected argument(s): {' '.join(bad)}")
        from pipeline.run import run

        try:
            cfg = load_config(args.config, args.set)
            summary = run(args.input, args.output, cfg, args.stages, args.no_clips, extra)
        except (ConfigError, ValueError) as exc:
            print(f"vidcurate: error: {exc}", file=sys.stderr)
            return 2
        brief = {k: summary[k] for k in ("videos", "errors", "shards", "wall_seconds")}
        brief["clips"] = {k: summary["clips"][k] for k in ("total", "kept", "hours_kept", "reject_reasons")}
        print(json.dumps(brief, indent=2))
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())

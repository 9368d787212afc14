"""Beam pipeline options of a vidcurate job: the config's runner defaults, a named profile, and
the flags given on the command line (``--flag=value`` or ``--flag value``)."""

from __future__ import annotations

import logging
import os

from apache_beam.options.pipeline_options import PipelineOptions

log = logging.getLogger(__name__)


def profile_args(cfg, profile: str | None) -> list[str]:
    if not profile:
        return []
    if profile not in cfg.runner.profiles:
        known = ", ".join(sorted(cfg.runner.profiles)) or "none defined"
        raise ValueError(f"unknown --profile {profile!r}; beam_config.yaml runner.profiles has: {known}")
    flags = list(cfg.runner.profiles[profile])
    placeholders = [f for f in flags if any(w in f for w in ("JOB_HOST", "JOB_SERVER", "GCP_PROJECT", "BUCKET"))]
    if placeholders:
        log.warning("profile %r still has placeholder values (%s): set them in your config or on the "
                    "command line", profile, " ".join(placeholders))
    return flags


def beam_flags(extra: list[str]) -> list[str]:
    """Beam options as ``--flag=value``: accepts ``--flag value`` too, as Beam does. A bare word
    that follows no flag is an error."""
    out: list[str] = []
    i = 0
    while i < len(extra):
        arg = extra[i]
        if not arg.startswith("--"):
            raise ValueError(f"unexpected argument {arg!r} (Beam options look like --runner=PortableRunner "
                             "or --runner PortableRunner)")
        if "=" not in arg and i + 1 < len(extra) and not extra[i + 1].startswith("--"):
            out.append(f"{arg}={extra[i + 1]}")
            i += 2
            continue
        out.append(arg)
        i += 1
    return out


def pipeline_options(cfg, beam_args: list[str], profile: str | None = None, small: bool = False) -> PipelineOptions:
    """Config runner defaults, then the chosen profile, overridden by any Beam flag given on
    the command line (the last occurrence of a flag wins). ``direct_running_mode: auto`` is
    ``in_memory`` when the job is ``small`` and no worker count was asked for, else
    ``multi_processing``."""
    args = profile_args(cfg, profile) + beam_flags(list(beam_args))
    given = " ".join(args)
    if "--runner" not in given:
        args.append(f"--runner={cfg.runner.runner}")
    runner = next((a.split("=", 1)[1] for a in reversed(args) if a.startswith("--runner=")), cfg.runner.runner)
    if runner in ("FnApiRunner", "DirectRunner"):
        if "--direct_running_mode" not in given:
            args.append(f"--direct_running_mode={cfg.runner.direct_running_mode}")
        mode = next((a.split("=", 1)[1] for a in reversed(args) if a.startswith("--direct_running_mode=")), "")
        if mode == "auto":  # Beam does not know it: resolve it here
            asked = "--direct_num_workers" in given or cfg.runner.direct_num_workers
            mode = "in_memory" if small and not asked else "multi_processing"
            args = [a for a in args if not a.startswith("--direct_running_mode=")] + [f"--direct_running_mode={mode}"]
        if "--direct_num_workers" not in given:
            workers = 1 if mode == "in_memory" else (cfg.runner.direct_num_workers or os.cpu_count() or 1)
            args.append(f"--direct_num_workers={workers}")
    options = PipelineOptions(args)
    # The driver's own reads and writes (run directory, planning, summary) see the --s3_* options
    # as Beam's workers do, and the worker processes it starts inherit them (transforms.s3config).
    from apache_beam.io.filesystems import FileSystems

    from transforms.s3config import export_to_environment

    FileSystems.set_options(options)
    export_to_environment()
    return options

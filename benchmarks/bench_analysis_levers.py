"""Where the analysis pass spends its CPU, and what each decode lever of issue 18 could save.

    python benchmarks/bench_analysis_levers.py [--sets 360p,1080p] [--repeat 2]

Profile first (issue 18): before changing what the analysis decode skips, this measures, on the
sets of ``bench_analysis.py`` (built and cached by it), in interleaved rounds, one process, one
decoder thread, one OpenCV thread (as in a worker):

  * PyAV decode only with each ``skip_frame`` setting of the decoder (``DEFAULT``: every frame;
    ``NONREF``: no non-reference frames; ``BIDIR``: no B-frames; ``NONKEY``: keyframes only),
    with the deblocking filter skipped as the analysis decode does: CPU seconds and frames out.
    This is the ceiling of each lever: what decoding alone would cost if no stage needed the
    frames skipped;
  * ``analyze_video`` as configured by default, without the check after splitting
    (``cuts.post_check: false``) and without the motion stage (stages probe + cuts): the CPU
    each part adds to the decode;
  * the driver's import of ``pipeline.run`` in a fresh interpreter (part of the fixed cost).

Results go to ``benchmarks/results/analysis_levers.{json,md}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import av

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

import bench_analysis  # noqa: E402  (the input sets and their cache)

SKIP_MODES = ("DEFAULT", "NONREF", "BIDIR", "NONKEY")


def decode_cpu(files: list[str], mode: str) -> tuple[float, int]:
    """CPU seconds and frames out of decoding ``files`` with ``skip_frame=mode``."""
    t, n = time.process_time(), 0
    for f in files:
        with av.open(f) as c:
            s = c.streams.video[0]
            s.thread_type = "SLICE"
            s.codec_context.thread_count = 1
            s.codec_context.options = {"skip_loop_filter": "all"}
            s.codec_context.skip_frame = mode
            for _ in c.decode(s):
                n += 1
    return time.process_time() - t, n


def analyze_cpu(files: list[str], variant: str) -> float:
    from pipeline.config import Config
    from transforms.analyze import analyze_video
    from transforms.stages import DEFAULT

    cfg, stages = Config(), DEFAULT
    if variant == "no_post_check":
        cfg = dataclasses.replace(cfg, cuts=dataclasses.replace(cfg.cuts, post_check=False))
    elif variant == "no_motion":
        stages = ("probe", "cuts")
    t = time.process_time()
    for f in files:
        analyze_video(f, cfg, stages)
    return time.process_time() - t


def import_seconds() -> float:
    out = subprocess.run([sys.executable, "-c", "import time; t = time.perf_counter(); import pipeline.run; "
                          "print(time.perf_counter() - t)"], capture_output=True, text=True, check=True, cwd=REPO)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> int:
    import cv2

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", default=str(REPO.parent / "shared" / "videos"))
    ap.add_argument("--sets", default="360p,1080p")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    cv2.setNumThreads(1)
    av.logging.set_level(av.logging.PANIC)  # NONREF/BIDIR make the decoder complain of missing references
    sets = bench_analysis.input_sets(args.videos, args.sets)
    runs: dict[tuple[str, str], list[float]] = {}
    frames: dict[tuple[str, str], int] = {}
    for r in range(args.repeat):
        for name, files in sets.items():
            for mode in SKIP_MODES:
                cpu, n = decode_cpu(files, mode)
                runs.setdefault((name, f"decode_{mode}"), []).append(cpu)
                frames[(name, mode)] = n
            for variant in ("default", "no_post_check", "no_motion"):
                runs.setdefault((name, f"analyze_{variant}"), []).append(analyze_cpu(files, variant))
            print(f"round {r + 1}: {name} done", file=sys.stderr)
        runs.setdefault(("driver", "import_pipeline_run"), []).append(import_seconds())
    med = {k: statistics.median(v) for k, v in runs.items()}
    result = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "av": av.__version__},
              "repeat": args.repeat, "runs": {f"{a}/{b}": [round(x, 2) for x in v] for (a, b), v in runs.items()},
              "frames": {f"{a}/{b}": n for (a, b), n in frames.items()}}
    lines = [f"Median of {args.repeat} interleaved rounds, CPU seconds, one process, one decoder thread", ""]
    for name in sets:
        full = med[(name, "decode_DEFAULT")]
        total = frames[(name, "DEFAULT")]
        lines += [f"### {name}", "", "| case | CPU s | of full decode | frames out |", "|---|---|---|---|"]
        for mode in SKIP_MODES:
            c, n = med[(name, f"decode_{mode}")], frames[(name, mode)]
            lines.append(f"| decode, skip_frame={mode} | {c:.2f} | {c / full:.2f} | {n} ({n / total:.0%}) |")
        a = med[(name, "analyze_default")]
        for variant in ("default", "no_post_check", "no_motion"):
            c = med[(name, f"analyze_{variant}")]
            lines.append(f"| analyze_video, {variant} | {c:.2f} | {c / full:.2f} | {total} |")
        post, motion = a - med[(name, "analyze_no_post_check")], a - med[(name, "analyze_no_motion")]
        lines += ["", f"Of the default pass ({a:.1f} CPU-s): decode {full / a:.0%}, the check after splitting "
                      f"{post / a:.0%}, the motion stage {motion / a:.0%}, the rest of the cut cascade and the "
                      f"per-frame shrinking {(a - full - post - motion) / a:.0%}.", ""]
    lines.append(f"Driver: `import pipeline.run` takes {med[('driver', 'import_pipeline_run')]:.2f} s.")
    bench_analysis.write_results("analysis_levers", result, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())

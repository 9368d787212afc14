"""Benchmark: vidcurate's CPU path against the decode floor, on the real shared videos.

    python benchmarks/bench_analysis.py [--videos ../shared/videos] [--repeat 3]

Measured in the same run, interleaved, each repeated; medians are quoted:
  * floor: ``ffmpeg -threads 2 -i X -f null -`` over all files (decode only), when ffmpeg is
    installed; and PyAV decode-only of the same files;
  * analyse in-process: ``analyze_video`` (probe + cuts cascade + motion) file by file;
  * ``vidcurate run --no-clips`` (whole command: Beam start-up, 2 workers, tables);
  * ``vidcurate run`` (also frame-exact clip writing and shards).
Figures are video-seconds processed per wall-second and the ratio to the ffmpeg floor. Results
go to ``benchmarks/results/analysis.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"


def video_seconds(path: str) -> float:
    with av.open(path) as c:
        s = c.streams.video[0]
        n = 0
        last = 0.0
        for f in c.decode(s):
            n += 1
            last = float(f.time or 0)
        return last + (1.0 / float(s.average_rate) if s.average_rate else 0.04)


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def ffmpeg_floor(files):
    for f in files:
        subprocess.run(["ffmpeg", "-v", "error", "-threads", "2", "-i", f, "-f", "null", "-"], check=True)


def pyav_floor(files):
    for f in files:
        with av.open(f) as c:
            s = c.streams.video[0]
            s.thread_type = "AUTO"
            for _ in c.decode(s):
                pass


def analyse_in_process(files):
    from pipeline.config import Config
    from transforms.analyze import analyze_video

    cfg = Config()
    for f in files:
        analyze_video(f, cfg)


def run_command(input_dir: str, extra: list[str]):
    out = tempfile.mkdtemp(prefix="vidcurate-bench-")
    try:
        subprocess.run([sys.executable, "-m", "pipeline.cli", "run", "--input", input_dir, "--output", out, *extra],
                       check=True, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", default=str(REPO.parent / "shared" / "videos"))
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    files = sorted(str(p) for p in Path(args.videos).iterdir() if p.suffix in (".mp4", ".webm", ".avi"))
    if not files:
        print(f"no videos in {args.videos}", file=sys.stderr)
        return 1
    total = sum(video_seconds(f) for f in files)
    tmp_in = tempfile.mkdtemp(prefix="vidcurate-bench-in-")
    for f in files:
        os.symlink(f, os.path.join(tmp_in, os.path.basename(f)))
    cases = {
        "pyav_decode_only": lambda: pyav_floor(files),
        "analyze_in_process": lambda: analyse_in_process(files),
        "vidcurate_run_no_clips": lambda: run_command(tmp_in, ["--no-clips"]),
        "vidcurate_run_full": lambda: run_command(tmp_in, []),
    }
    if shutil.which("ffmpeg"):
        cases = {"ffmpeg_decode_only": lambda: ffmpeg_floor(files), **cases}
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(args.repeat):  # interleaved: every case once per round
        for name, fn in cases.items():
            times[name].append(timed(fn))
    shutil.rmtree(tmp_in, ignore_errors=True)
    floor_name = "ffmpeg_decode_only" if "ffmpeg_decode_only" in times else "pyav_decode_only"
    floor = statistics.median(times[floor_name])
    rows = []
    for name, ts in times.items():
        med = statistics.median(ts)
        rows.append({"case": name, "median_s": round(med, 3), "runs_s": [round(t, 3) for t in ts],
                     "video_s_per_wall_s": round(total / med, 2), "fraction_of_floor": round(floor / med, 3)})
    result = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "videos": [os.path.basename(f) for f in files],
        "video_seconds": round(total, 2),
        "floor": floor_name,
        "repeat": args.repeat,
        "rows": rows,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "analysis.json").write_text(json.dumps(result, indent=2))
    lines = [f"{len(files)} videos, {total:.1f} s of video, {os.cpu_count()} CPUs, median of {args.repeat} interleaved runs",
             "", "| case | median wall s | video-s per wall-s | fraction of floor |", "|---|---|---|---|"]
    lines += [f"| {r['case']} | {r['median_s']} | {r['video_s_per_wall_s']} | {r['fraction_of_floor']} |" for r in rows]
    (RESULTS / "analysis.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

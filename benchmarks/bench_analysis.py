"""Benchmark: vidcurate's CPU path against the decode floor, on real videos and composites.

    python benchmarks/bench_analysis.py [--sets shared,360p,1080p] [--repeat 3]

Input sets (``--sets``):
  * ``shared``: the real videos in ``../shared/videos`` as they are (176x144 to 1080p, H.264,
    VP8, Cinepak);
  * ``360p``: the same videos transcoded to 640x360 H.264 and looped twice (about 16.5 minutes
    in 13 files), the kind of input the performance issue's reference figures use;
  * ``1080p``: a 10-minute 1080p H.264 composite (stream-copied repeats of the shared slides);
  * ``codecs``: the Sintel trailer (52 s) at 640x360 in H.264, HEVC, VP9 and MPEG-4 part 2,
    one set per codec (``h264``, ``hevc``, ``vp9``, ``mpeg4``): what the pass costs per codec;
  * ``one``: one 4 s QCIF file (``carphone_distorted_qcif.mp4``): the fixed cost of a run, in
    the default mode (``runner.direct_running_mode: auto``: one process for a job this small)
    and with worker processes (``--direct_running_mode=multi_processing``).
Composites are built once with the ``ffmpeg`` command into ``benchmarks/.cache``.

Cases, measured in the same run, interleaved, each repeated; medians are quoted:
  * floor: ``ffmpeg -threads 2 -i X -f null -`` over all files (decode only);
  * PyAV decode-only of the same files (one decoder thread);
  * analyze in-process: ``analyze_video`` (probe + cuts cascade + motion) file by file, one
    process (its CPU seconds are the work the whole command spreads over its workers);
  * ``vidcurate run --no-clips`` (whole command: Beam start-up, 2 workers, tables), with the
    CPU seconds of the driver and of each worker process (read from /proc while it runs);
  * ``vidcurate run`` (also frame-exact clip writing and shards; ``shared`` set only).
Figures: video-seconds per wall-second and the fraction of the ffmpeg floor. Results go to
``benchmarks/results/analysis.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import av

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
CACHE = REPO / "benchmarks" / ".cache"
VIDEO_EXT = (".mp4", ".webm", ".avi")


def video_seconds(path: str) -> float:
    """Length of the video stream: from the header when it says, else by decoding."""
    with av.open(path) as c:
        s = c.streams.video[0]
        if s.duration and s.time_base:
            return float(s.duration * s.time_base)
        last = 0.0
        for f in c.decode(s):
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
            s.codec_context.thread_count = 1
            for _ in c.decode(s):
                pass


def analyze_in_process(files):
    import cv2

    from pipeline.config import Config
    from transforms.analyze import analyze_video

    cv2.setNumThreads(1)  # as in a worker
    cfg = Config()
    for f in files:
        analyze_video(f, cfg)


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/children") as fh:
            out += [int(x) for x in fh.read().split()]
    return out


def run_command(input_dir: str, extra: list[str], cpu: dict | None = None):
    """Run ``vidcurate run``; with ``cpu``, record the CPU seconds of the driver and of each
    Beam worker process (polled from /proc: the last reading before each process exits)."""
    out = tempfile.mkdtemp(prefix="vidcurate-bench-")
    seen: dict[int, tuple[str, float]] = {}
    try:
        proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "run", "--input", input_dir, "--output", out, *extra],
                                cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        stop = threading.Event()

        def poll():
            while not stop.wait(0.2):
                try:
                    todo = [proc.pid]
                    while todo:
                        p = todo.pop()
                        with open(f"/proc/{p}/cmdline", "rb") as fh:
                            cmd = fh.read().replace(b"\0", b" ").decode(errors="replace")
                        seen[p] = ("worker" if "sdk_worker_main" in cmd and not cmd.startswith("/bin/sh") else
                                   "driver" if p == proc.pid else "other", _cpu_seconds(p))
                        todo += _children(p)
                except OSError:
                    pass

        thread = threading.Thread(target=poll, daemon=True)
        thread.start()
        if proc.wait():
            raise RuntimeError(f"vidcurate run {' '.join(extra)} failed on {input_dir}")
        stop.set()
        thread.join()
    finally:
        shutil.rmtree(out, ignore_errors=True)
    if cpu is not None:
        cpu.setdefault("driver", []).append(round(sum(c for k, c in seen.values() if k == "driver"), 2))
        cpu.setdefault("workers", []).append(sorted(round(c, 2) for k, c in seen.values() if k == "worker"))


def _cached(name: str) -> Path:
    d = CACHE / name
    d.mkdir(parents=True, exist_ok=True)
    return d


def set_360p(shared: list[str]) -> list[str]:
    """The shared videos as 640x360 H.264 (letterboxed), each looped twice."""
    d = _cached("b360")
    out = []
    for f in shared:
        dst = d / (Path(f).stem + ".mp4")
        if not dst.exists():
            tmp = dst.with_suffix(".part.mp4")
            subprocess.run(["ffmpeg", "-v", "error", "-y", "-stream_loop", "1", "-i", f, "-an", "-vf",
                            "scale=640:360:force_original_aspect_ratio=decrease,pad=640:360:(ow-iw)/2:(oh-ih)/2,setsar=1",
                            "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p", str(tmp)], check=True)
            tmp.rename(dst)
        out.append(str(dst))
    return out


def set_1080p(shared_dir: str) -> list[str]:
    """A 10-minute 1080p composite: stream-copied repeats of the shared 1080p slides."""
    d = _cached("b1080")
    dst = d / "slides_10min_1080p.mp4"
    if not dst.exists():
        src = Path(shared_dir) / "video2dataset_laion_slides_1080p.mp4"
        with av.open(str(src)) as c:
            n = max(1, round(600 / (c.duration / 1e6)))
        listing = d / "list.txt"
        listing.write_text("".join(f"file '{src}'\n" for _ in range(n)))
        tmp = d / "part.mp4"
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(listing),
                        "-c", "copy", "-an", str(tmp)], check=True)
        tmp.rename(dst)
    return [str(dst)]


CODECS = {"h264": ["-c:v", "libx264", "-preset", "veryfast", "-crf", "23"],
          "hevc": ["-c:v", "libx265", "-preset", "veryfast", "-crf", "28", "-x265-params", "log-level=error"],
          "vp9": ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "1M"],
          "mpeg4": ["-c:v", "mpeg4", "-q:v", "4"]}


def set_codec(shared_dir: str, codec: str) -> list[str]:
    """The Sintel trailer at 640x360 in one codec (mp4; webm for VP9)."""
    d = _cached("codecs")
    dst = d / f"sintel_360p_{codec}.{'webm' if codec == 'vp9' else 'mp4'}"
    if not dst.exists():
        tmp = dst.with_name("part-" + dst.name)
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(Path(shared_dir) / "sintel_trailer_480p.mp4"), "-an",
                        "-vf", "scale=640:360,setsar=1", "-pix_fmt", "yuv420p", *CODECS[codec], str(tmp)], check=True)
        tmp.rename(dst)
    return [str(dst)]


def input_sets(videos: str, names: str) -> dict[str, list[str]]:
    """The files of each named set (comma-separated; ``codecs`` is one set per codec), built
    into the cache on first use. Raises SystemExit when ``videos`` holds no video."""
    shared = sorted(str(p) for p in Path(videos).iterdir() if p.suffix in VIDEO_EXT)
    if not shared:
        raise SystemExit(f"no videos in {videos}")
    builders = {"shared": lambda: shared, "360p": lambda: set_360p(shared), "1080p": lambda: set_1080p(videos),
                "one": lambda: [str(Path(videos) / "carphone_distorted_qcif.mp4")]}
    for codec in CODECS:
        builders[codec] = lambda codec=codec: set_codec(videos, codec)
    chosen = [n for name in names.split(",") for n in (CODECS if name == "codecs" else [name])]
    unknown = [n for n in chosen if n not in builders]
    if unknown:
        raise SystemExit(f"unknown set(s) {', '.join(unknown)}; known: {', '.join(builders)}, codecs")
    return {name: builders[name]() for name in chosen}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", default=str(REPO.parent / "shared" / "videos"))
    ap.add_argument("--sets", default="shared,360p,1080p,codecs,one")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if not shutil.which("ffmpeg"):
        print("the ffmpeg command is needed (decode floor and composites): apt-get install ffmpeg", file=sys.stderr)
        return 1
    sets = input_sets(args.videos, args.sets)
    dirs, cases, cpu = {}, {}, {}
    for name, files in sets.items():
        d = tempfile.mkdtemp(prefix=f"vidcurate-bench-{name}-")
        for f in files:
            os.symlink(f, os.path.join(d, os.path.basename(f)))
        dirs[name] = d
        cpu[name] = {}
        cases[(name, "ffmpeg_decode_floor")] = lambda files=files: ffmpeg_floor(files)
        cases[(name, "pyav_decode_one_thread")] = lambda files=files: pyav_floor(files)
        cases[(name, "analyze_in_process")] = lambda files=files: analyze_in_process(files)
        cases[(name, "vidcurate_run_no_clips")] = lambda d=d, c=cpu[name]: run_command(d, ["--no-clips"], c)
        if name == "one":
            cases[(name, "vidcurate_run_no_clips_worker_processes")] = lambda d=d: run_command(
                d, ["--no-clips", "--direct_running_mode=multi_processing"])
        if name in ("shared", "one"):
            cases[(name, "vidcurate_run_full")] = lambda d=d: run_command(d, [])
    times: dict[tuple, list[float]] = {k: [] for k in cases}
    cpu_in_process: dict[str, list[float]] = {}
    for r in range(args.repeat):  # interleaved: every case once per round
        for key, fn in cases.items():
            before = resource.getrusage(resource.RUSAGE_SELF)
            times[key].append(timed(fn))
            after = resource.getrusage(resource.RUSAGE_SELF)
            if key[1] == "analyze_in_process":
                cpu_in_process.setdefault(key[0], []).append(
                    round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 2))
            print(f"round {r + 1}: {key[0]} {key[1]} {times[key][-1]:.2f} s", file=sys.stderr)
    for d in dirs.values():
        shutil.rmtree(d, ignore_errors=True)
    result = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                          "av": av.__version__},
              "repeat": args.repeat, "sets": {}}
    lines = [f"{os.cpu_count()} CPUs, median of {args.repeat} interleaved rounds", ""]
    for name, files in sets.items():
        total = sum(video_seconds(f) for f in files)
        floor = statistics.median(times[(name, "ffmpeg_decode_floor")])
        rows = []
        for (set_name, case), ts in times.items():
            if set_name != name:
                continue
            med = statistics.median(ts)
            rows.append({"case": case, "median_s": round(med, 3), "runs_s": [round(t, 3) for t in ts],
                         "video_s_per_wall_s": round(total / med, 2), "fraction_of_floor": round(floor / med, 3)})
        result["sets"][name] = {"files": [os.path.basename(f) for f in files], "video_seconds": round(total, 2),
                                "rows": rows, "analyze_in_process_cpu_s": cpu_in_process.get(name),
                                "run_no_clips_cpu_s": cpu[name]}
        lines += [f"### {name}: {len(files)} file(s), {total:.1f} s of video", "",
                  "| case | median wall s | video-s per wall-s | fraction of ffmpeg floor |", "|---|---|---|---|"]
        lines += [f"| {r['case']} | {r['median_s']} | {r['video_s_per_wall_s']} | {r['fraction_of_floor']} |" for r in rows]
        w = cpu[name].get("workers") or []
        lines += ["", f"CPU seconds: analyze in one process {cpu_in_process.get(name)}; whole command driver "
                      f"{cpu[name].get('driver')}, workers {w}", ""]
    write_results("analysis", result, lines)
    return 0


def write_results(name: str, result: dict, lines: list[str]) -> None:
    """``benchmarks/results/<name>.json`` and ``.md``; the table is printed too."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2))
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())

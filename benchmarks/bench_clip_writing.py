"""Benchmark: where clip writing spends its time, step by step, and what each lever buys.

    python benchmarks/bench_clip_writing.py [--videos ../shared/videos] [--side 512] [--repeat 1]

One process, every frame of every video, through the same PyAV calls vidcurate's clip writer
makes (``transforms.shape.Shaper`` for the resize, x264 at CRF 20 for the encode):
  * decode only (frame threads, as the clip reader decodes);
  * decode + resize to ``--side`` px with each swscale filter (``clips.scaler``);
  * decode + resize (area) + x264 encode with each preset (``clips.preset``), at ``--side`` px
    and at source size.
Seconds per case (medians over rounds); the differences between rows are the cost of a step.
Results: ``benchmarks/results/clip_writing.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
RESULTS = REPO / "benchmarks" / "results"

from transforms.shape import Geometry, Shaper  # noqa: E402


def one_pass(files: list[str], side: int, scaler: str | None, preset: str | None) -> tuple[float, int]:
    """Seconds to decode (and resize, and encode) every frame of ``files``; frames done."""
    t0, n = time.perf_counter(), 0
    with tempfile.TemporaryDirectory() as tmp:
        for f in files:
            with av.open(f) as c:
                s = c.streams.video[0]
                s.thread_type = "AUTO"
                width, height = s.codec_context.width, s.codec_context.height
                scale = min(1.0, side / max(width, height)) if side else 1.0
                out_size = (max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2))
                shaper = Shaper(Geometry(out_size, out_size), 0, scaler) if scaler else None
                out = stream = None
                if preset:
                    out = av.open(os.path.join(tmp, "clip.mp4"), "w", format="mp4")
                    stream = out.add_stream("libx264", rate=Fraction(25))
                    stream.width, stream.height = out_size
                    stream.pix_fmt = "yuv420p"
                    stream.options = {"crf": "20", "preset": preset}
                for i, frame in enumerate(c.decode(s)):
                    n += 1
                    if shaper is None:
                        continue
                    g = shaper(frame)
                    if stream is not None:
                        g.pts, g.time_base = i, Fraction(1, 25)
                        for p in stream.encode(g):
                            out.mux(p)
                if stream is not None:
                    for p in stream.encode(None):
                        out.mux(p)
                    out.close()
    return time.perf_counter() - t0, n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", default=str(REPO.parent / "shared" / "videos"))
    ap.add_argument("--side", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args(argv)
    files = sorted(str(p) for p in Path(args.videos).iterdir() if p.suffix in (".mp4", ".webm", ".avi"))
    side = args.side
    cases = {"decode": (0, None, None)}
    for scaler in ("area", "bilinear", "fast_bilinear", "bicubic"):
        cases[f"decode + resize {side} px ({scaler})"] = (side, scaler, None)
    for preset in ("veryfast", "superfast", "ultrafast"):
        cases[f"decode + resize {side} px (area) + x264 {preset}"] = (side, "area", preset)
    for preset in ("veryfast", "ultrafast"):
        cases[f"decode + x264 {preset} at source size"] = (0, "area", preset)
    times: dict[str, list[float]] = {k: [] for k in cases}
    frames = 0
    for r in range(args.repeat):
        for name, (s, scaler, preset) in cases.items():
            t, frames = one_pass(files, s, scaler, preset)
            times[name].append(t)
            print(f"round {r + 1}: {name}: {t:.2f} s", file=sys.stderr)
    med = {k: statistics.median(v) for k, v in times.items()}
    report = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
              "videos": [os.path.basename(f) for f in files], "frames": frames, "side": side,
              "repeat": args.repeat, "times_s": {k: [round(x, 2) for x in v] for k, v in times.items()}}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "clip_writing.json").write_text(json.dumps(report, indent=2))
    md = [f"{frames} frames of {len(files)} videos, one process; medians of {args.repeat} round(s).", "",
          "| case | s | ms per frame |", "|---|---|---|"]
    md += [f"| {k} | {v:.2f} | {1000 * v / frames:.2f} |" for k, v in med.items()]
    (RESULTS / "clip_writing.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())

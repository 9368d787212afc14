"""What ``clips.skip_nonref_deblock`` costs in quality and saves in decode time.

    python benchmarks/bench_nonref_deblock.py [--videos ../shared/videos] [--repeat 2]

Frames decoded for re-encoding skip the deblocking filter on pictures no other picture
references (FFmpeg ``skip_loop_filter=noref``). For each H.264 file of the shared videos:

  * quality: the file decoded twice in lockstep, in full and with the option; per frame the luma
    PSNR between the two, at source size and at half size (area scaling, as clips are shrunk):
    how many frames change, their mean and worst PSNR (unchanged frames are identical);
  * speed: decode CPU seconds (one process, FFmpeg's automatic threads, as clip writing decodes)
    in full, with the option, and without deblocking on every picture (what the analysis pass
    uses), in interleaved rounds; medians.

Results: ``benchmarks/results/nonref_deblock.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
MODES = {"full": None, "noref": "noref", "all": "all"}


def frames(path: str, skip: str | None):
    with av.open(path) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        if skip:
            s.codec_context.options = {"skip_loop_filter": skip}
        yield from c.decode(s)


def luma(frame: av.VideoFrame, scale: float, sws: VideoReformatter) -> np.ndarray:
    w, h = (max(2, int(round(frame.width * scale / 2)) * 2), max(2, int(round(frame.height * scale / 2)) * 2))
    return sws.reformat(frame, width=w, height=h, format="gray", interpolation="AREA").to_ndarray().astype(np.float64)


def quality(path: str, scales=(1.0, 0.5)) -> dict:
    """One lockstep pass of the two decodes; every scale compared on the same frames."""
    sws = {(k, scale): VideoReformatter() for k in "ab" for scale in scales}
    psnr, total = {scale: [] for scale in scales}, 0
    for a, b in zip(frames(path, None), frames(path, "noref"), strict=True):
        total += 1
        for scale in scales:
            mse = float(np.mean((luma(a, scale, sws["a", scale]) - luma(b, scale, sws["b", scale])) ** 2))
            if mse > 0:
                psnr[scale].append(10 * np.log10(255.0 ** 2 / mse))
    return {f"x{scale}": {"frames": total, "changed": len(p),
                          "mean_db": round(float(np.mean(p)), 1) if p else None,
                          "worst_db": round(float(np.min(p)), 1) if p else None} for scale, p in psnr.items()}


def decode_cpu(path: str, skip: str | None) -> float:
    t = time.process_time()
    for _ in frames(path, skip):
        pass
    return time.process_time() - t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", default=str(REPO.parent / "shared" / "videos"))
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args(argv)
    files = []
    for p in sorted(Path(args.videos).glob("*.mp4")):
        with av.open(str(p)) as c:
            if c.streams.video and c.streams.video[0].codec_context.name == "h264":
                files.append(str(p))
    rows = {Path(f).name: {"quality": quality(f), "cpu_s": {m: [] for m in MODES}} for f in files}
    for _ in range(args.repeat):
        for f in files:
            for mode, skip in MODES.items():
                rows[Path(f).name]["cpu_s"][mode].append(round(decode_cpu(f, skip), 3))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "nonref_deblock.json").write_text(json.dumps({"repeat": args.repeat, "files": rows}, indent=2) + "\n")

    def cell(q):
        return f"{q['changed']} of {q['frames']}" + (f" | {q['mean_db']} / {q['worst_db']}" if q["changed"] else " | -")

    lines = ["| video | frames changed | source size: mean / worst dB | half size: worst dB | "
             "decode CPU s: full / noref / all (medians) |", "|---|---|---|---|---|"]
    for name, r in rows.items():
        q, h = r["quality"]["x1.0"], r["quality"]["x0.5"]
        cpu = " / ".join(f"{statistics.median(v):.2f}" for v in r["cpu_s"].values())
        lines.append(f"| {name} | {cell(q)} | {h['worst_db'] if h['changed'] else '-'} | {cpu} |")
    (RESULTS / "nonref_deblock.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

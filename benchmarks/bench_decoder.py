"""Benchmark: flicker of decoded video before and after Video LDM's temporally aligned decoder
(issue 17 item 5).

    python benchmarks/bench_decoder.py [--steps 300]

Curated clips of the training sources from ``../shared/videos`` (``vidcurate run`` defaults, 128 px,
clips of 1-3 s) train ``model_training/configs/decoder_tiny.yaml`` (temporal layers in TAEF2's
decoder, a 3D-conv video discriminator, encoder frozen; 64x64, 8 frames at stride 2) on CPU. The
held-out clips (curated clips of the Sintel trailer and a Big Buck Bunny excerpt, never trained
on) are encoded by TAEF2's frozen encoder and decoded before training (TAEF2's image decoder, frame
by frame: step 0, as the temporal layers start at zero) and after, and scored by
``model_training.decoder.flicker``: the mean absolute difference, in 0-255 pixel units, between the
decoded and the source frame-to-frame changes; the mean frame-to-frame change of each; and PSNR.

Results: ``benchmarks/results/decoder.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from bench_analysis import write_results
from bench_curation import HELD_OUT, TRAIN, curate

REPO = Path(__file__).resolve().parent.parent


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", default=str(REPO.parent / "shared" / "videos"))
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--val-samples", type=int, default=16)
    args = ap.parse_args(argv)

    from model_training.train import load_train_config, train

    with tempfile.TemporaryDirectory(prefix="bench-decoder-") as d:
        d = Path(d)
        shards, counts = curate(args.videos, TRAIN, d / "train", None, None)
        held, held_counts = curate(args.videos, HELD_OUT, d / "held_out", None, None)
        cfg = load_train_config(str(REPO / "model_training" / "configs" / "decoder_tiny.yaml"), {
            "steps": args.steps, "val_every": max(1, args.steps // 3), "ckpt_every": args.steps,
            "val_shards": str(d / "held_out" / "current" / "shards" / "*.tar"), "data": {"val_samples": args.val_samples}})
        t = time.perf_counter()
        train(shards, cfg, str(d / "decoder"), progress=False)
        seconds = time.perf_counter() - t
        rows = [json.loads(x) for x in open(d / "decoder" / "metrics.jsonl")]
    vals = [{"step": r["step"], **{k[4:]: r[k] for k in r if k.startswith("val_")}} for r in rows if "val_flicker" in r]
    report = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
              "steps": args.steps, "train_seconds": round(seconds, 1), "train_clips": counts["clips_kept"],
              "held_out_clips": held_counts["clips_kept"], "val_samples": args.val_samples,
              "train_sources": TRAIN, "held_out_sources": HELD_OUT, "validation": vals}
    write_results("decoder", report, render(report).splitlines())
    return 0


def render(r: dict) -> str:
    lines = [f"`decoder_tiny.yaml`, {r['steps']} steps on {r['train_clips']} curated clips "
             f"({r['train_seconds'] / 60:.1f} min on {os.cpu_count()} cores); scored on "
             f"{min(r['val_samples'], r['held_out_clips'])} held-out curated clips (64x64, 8 frames at stride 2). Step 0 is TAEF2's "
             "image decoder (the temporal layers start at zero).", "",
             "| step | flicker (0-255) | decoded frame-to-frame change | source frame-to-frame change | PSNR dB |",
             "|---|---|---|---|---|"]
    for v in r["validation"]:
        lines.append(f"| {v['step']} | {v['flicker']:.3f} | {v['decoded_change']:.3f} | {v['source_change']:.3f} | "
                     f"{v['psnr']:.2f} |")
    first, last = r["validation"][0], r["validation"][-1]
    lines += ["", f"Flicker {first['flicker']:.3f} -> {last['flicker']:.3f} "
              f"({100 * (last['flicker'] / first['flicker'] - 1):+.0f}%), PSNR {first['psnr']:.2f} -> {last['psnr']:.2f} dB."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())

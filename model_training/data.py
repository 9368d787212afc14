"""Training data from vidcurate's shards: mp4 shards (``<key>.mp4`` + ``.json`` + ``.txt``) or the
latent shards ``vidcurate encode`` writes (``<key>.latents.npy`` + ``.text.npy`` + ``.json``).

Shards are split by node (rank) and by DataLoader worker, deterministically: sorted, shard i goes
to rank i % world. Samples are filtered on their clip metadata, frames are sampled at a stride and
centre-cropped to a size bucket (the bucket nearest the clip's aspect ratio), and batches hold one
bucket each; with bucketed shards (``write.bucket_by``) each batch also comes from one shard set. The iterator's position (samples read, partial buckets) is part of the checkpoint so
a resumed run sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
from dataclasses import dataclass

import numpy as np
import torch

log = logging.getLogger(__name__)


@dataclass
class DataConfig:
    frames: int = 8                 # frames per training clip
    stride: int = 2                 # take every stride-th source frame
    buckets: tuple[tuple[int, int], ...] = ((64, 64),)  # (height, width) pixel sizes, multiples of 64
    batch_size: int = 4
    min_aesthetic: float | None = None  # metadata filters (null: off)
    min_motion: float | None = None
    val_samples: int = 8            # held out from the last shard for validation
    caption_key: str = "caption"
    # Frame windows per clip in the latent cache (`vidcurate encode`): epoch e trains on window
    # e % N, the window the mp4 path would draw in epoch e. Each window costs one autoencoder pass.
    cached_windows: int = 4
    # What the motion bucket describes. "clip": the clip row's motion_score (SVD: one value per
    # clip, mapped to 0-255 by the dataset's quantiles). "window": the motion of the very frames the
    # model sees (the motion stage's flow on the decoded window, in the same unit, on a fixed log
    # scale), so that one clip gives still and moving windows and the bucket is not just a proxy for
    # which clip it is; it is also what `motion_score` measures on a sample.
    motion: str = "clip"
    # Share of examples shown as a still (the window's first frame repeated, motion 0), as video
    # models co-train on images: the same content at two motions, so the bucket has to mean motion.
    still_prob: float = 0.0

    def __post_init__(self):
        if self.motion not in ("clip", "window"):
            raise ValueError(f"data.motion must be 'clip' or 'window', got {self.motion!r}")
        if not 0.0 <= self.still_prob < 1.0:
            raise ValueError(f"data.still_prob must be in [0, 1), got {self.still_prob}")


def shard_split(urls: list[str], rank: int, world: int) -> list[str]:
    """Deterministic disjoint split of shards over ranks (sorted; shard i -> rank i % world)."""
    return [u for i, u in enumerate(sorted(urls)) if i % world == rank]


def iter_tar(path: str):
    """Samples of a WebDataset tar as dicts keyed by extension (the key up to the first dot)."""
    from transforms.shards import iter_members

    sample, key = {}, None
    for k, ext, fh in iter_members(path, None):
        if key is not None and k != key:
            yield {"__key__": key, **sample}
            sample = {}
        key = k
        sample[ext] = fh.read()
    if key is not None:
        yield {"__key__": key, **sample}


def nearest_bucket(width: int, height: int, buckets) -> tuple[int, int]:
    aspect = width / max(1, height)
    return min(buckets, key=lambda b: abs(math.log(aspect / (b[1] / b[0]))))


def decode_clip(mp4: bytes, frames: int, stride: int, size: tuple[int, int], offset: int = 0) -> np.ndarray | None:
    """(frames, H, W, 3) uint8 RGB: ``frames`` frames every ``stride`` from ``offset``, scaled to
    cover ``size`` and centre-cropped; None when the clip is too short."""
    import av
    from av.video.reformatter import VideoReformatter

    h, w = size
    got = []
    sws = VideoReformatter()  # one swscale context for the clip (frame.to_ndarray makes one per frame)
    with av.open(io.BytesIO(mp4)) as container:
        stream = container.streams.video[0]
        sw, sh = stream.codec_context.width, stream.codec_context.height
        scale = max(w / sw, h / sh)
        rw, rh = max(w, round(sw * scale)), max(h, round(sh * scale))
        for i, frame in enumerate(container.decode(stream)):
            if i < offset or (i - offset) % stride:
                continue
            img = sws.reformat(frame, width=rw, height=rh, format="rgb24").to_ndarray()
            y, x = (rh - h) // 2, (rw - w) // 2
            got.append(img[y:y + h, x:x + w])
            if len(got) == frames:
                break
    return np.stack(got) if len(got) == frames else None


def motion_score(pixels: np.ndarray, fps: float) -> float:
    """The motion stage's score of a frame window (a sample, or the frames a model trains on): its
    own Farneback flow on grey frames, every consecutive pair, in percent of the frame width per
    second (the unit clips are scored in). ``pixels``: (T, H, W, 3) uint8 RGB."""
    import cv2

    from transforms.motion import MotionSampler

    sampler = MotionSampler(fps, target_fps=fps)
    for i, frame in enumerate(pixels):
        t = i / fps
        if sampler.wants(t):
            sampler.push(i, t, cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY))
    return float(np.mean([p.score for p in sampler.pairs])) if sampler.pairs else 0.0


def window_motion_edges(top: float = 200.0) -> list[float]:
    """``data.motion: window``'s fixed calibration: 257 bucket edges on a log scale from 0 to
    ``top`` percent of the width per second, the same for every dataset and checkpoint."""
    return [float(x) for x in np.expm1(np.linspace(0.0, math.log1p(top), 257))]


def keep(meta: dict, cfg: DataConfig) -> bool:
    if cfg.min_aesthetic is not None and (meta.get("aesthetic_score") is None or meta["aesthetic_score"] < cfg.min_aesthetic):
        return False
    if cfg.min_motion is not None and (meta.get("motion_score") is None or meta["motion_score"] < cfg.min_motion):
        return False
    return True


def written_frames(meta: dict, default: int) -> int:
    """Frames in the clip's mp4: ``out_frames`` (clips.fps / max_frames), else the span's."""
    return int(meta.get("out_frames") or meta.get("num_frames") or default)


def clip_offset(key: str, epoch: int, span: int, num_frames: int) -> int:
    """A start frame chosen per (clip, epoch), reproducibly."""
    room = max(0, num_frames - span)
    return (int.from_bytes(key.encode()[:8].ljust(8, b"\0"), "little") * 2654435761 + epoch * 40503) % (room + 1)


def window_offsets(key: str, meta: dict, cfg: DataConfig, epochs: int) -> tuple[list[int], list[int]]:
    """The distinct start frames the mp4 path draws for this clip in epochs 0..epochs-1, and
    which of them each epoch uses (short clips repeat theirs)."""
    span = (cfg.frames - 1) * cfg.stride + 1
    offsets: list[int] = []
    of_epoch = []
    for epoch in range(max(1, epochs)):
        offset = clip_offset(key, epoch, span, written_frames(meta, span))
        if offset not in offsets:
            offsets.append(offset)
        of_epoch.append(offsets.index(offset))
    return offsets, of_epoch


def latent_window(meta: dict, epoch: int, windows: int) -> int:
    """The cached window epoch ``epoch`` trains on (the one its mp4 offset was encoded from)."""
    of_epoch = meta.get("latent_window_of_epoch") or [0]
    return min(int(of_epoch[epoch % len(of_epoch)]), windows - 1)


def is_still(key: str, epoch: int, prob: float) -> bool:
    """Whether (clip, epoch) is shown as a still: reproducible, about ``prob`` of them."""
    if prob <= 0:
        return False
    h = hashlib.blake2b(f"{key}/{epoch}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") / 2 ** 64 < prob


def prepare(sample: dict, cfg: DataConfig, epoch: int) -> dict | None:
    """A raw tar sample -> a training example, or None when filtered out / unusable."""
    meta = json.loads(sample["json"]) if "json" in sample else {}
    if not keep(meta, cfg):
        return None
    caption = sample["txt"].decode() if "txt" in sample else (meta.get(cfg.caption_key) or "")
    base = {"key": sample["__key__"], "caption": caption, "fps": float(meta.get("out_fps") or meta.get("fps") or 24.0) / cfg.stride,
            "motion": float(meta.get("motion_score") or 0.0)}
    if "latents.npy" in sample:
        lat = np.load(io.BytesIO(sample["latents.npy"]))           # (W, T, C, h, w) float16 windows
        if lat.ndim == 4:                                           # a cache of one window (older)
            lat = lat[None]
        w = latent_window(meta, epoch, len(lat))
        lat = lat[w]                                                # (T, C, h, w)
        if lat.shape[0] < cfg.frames:
            return None
        if cfg.motion == "window" and meta.get("latent_window_motion"):  # measured at encode time
            base["motion"] = float(meta["latent_window_motion"][min(w, len(meta["latent_window_motion"]) - 1)])
        lat = lat[:cfg.frames]
        if is_still(base["key"], epoch, cfg.still_prob):
            lat, base["motion"] = np.repeat(lat[:1], cfg.frames, 0), 0.0
        out = dict(base, latents=torch.from_numpy(lat.astype(np.float32)),
                   bucket=(lat.shape[2] * 8, lat.shape[3] * 8))
        if "text.npy" in sample:
            out["text"] = torch.from_numpy(np.load(io.BytesIO(sample["text.npy"])).astype(np.float32))
        return out
    if "mp4" not in sample:
        return None
    bucket = nearest_bucket(meta.get("out_width") or meta.get("width") or 1, meta.get("out_height") or meta.get("height") or 1,
                            cfg.buckets)
    span = (cfg.frames - 1) * cfg.stride + 1
    offset = clip_offset(sample["__key__"], epoch, span, written_frames(meta, span))
    frames = decode_clip(sample["mp4"], cfg.frames, cfg.stride, bucket, offset)
    if frames is None and offset:
        frames = decode_clip(sample["mp4"], cfg.frames, cfg.stride, bucket, 0)
    if frames is None:
        return None
    if cfg.motion == "window":
        base["motion"] = motion_score(frames, base["fps"])
    if is_still(base["key"], epoch, cfg.still_prob):
        frames, base["motion"] = np.repeat(frames[:1], cfg.frames, 0), 0.0
    return dict(base, frames=torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255, bucket=bucket)  # (T, 3, H, W)


def collate(examples: list[dict]) -> dict:
    out = {"keys": [e["key"] for e in examples], "captions": [e["caption"] for e in examples],
           "fps": torch.tensor([e["fps"] for e in examples]), "motion": torch.tensor([e["motion"] for e in examples])}
    for name in ("frames", "latents", "text"):
        if all(name in e for e in examples):
            out[name] = torch.stack([e[name] for e in examples])
    return out


def shard_sets(urls: list[str]) -> dict[str, list[str]]:
    """Shards by the bucket label in their names (``write.bucket_by``; "" for unbucketed ones)."""
    from transforms.shards import shard_label

    sets: dict[str, list[str]] = {}
    for u in sorted(urls):
        sets.setdefault(shard_label(u), []).append(u)
    return sets


class ClipBatches:
    """Batches from the shards, forever (epoch after epoch), with a resumable position.

    Each batch comes from one shard set (bucketed shards, ``write.bucket_by``: one set per
    aspect / size / frame-count bucket) and one size bucket. Sets take turns in proportion to
    their number of shards (smooth weighted round robin), so a bucket holding a tenth of the
    data gives about a tenth of the batches all through the epoch. ``state_dict()`` /
    ``load_state_dict()`` hold the epoch, the samples read per set, the turn credits and the
    examples waiting in partially filled buckets."""

    def __init__(self, urls: list[str], cfg: DataConfig, rank: int = 0, world: int = 1, skip_keys=()):
        self.urls = shard_split(urls, rank, world)
        if not self.urls:
            raise ValueError(f"rank {rank} of {world} has no shards: give at least {world} shard files")
        self.sets = shard_sets(self.urls)
        self.cfg, self.skip_keys = cfg, set(skip_keys)
        self.epoch, self.read, self.credit, self.pending, self.done = 0, {}, {}, {}, set()

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "read": dict(self.read), "credit": dict(self.credit), "done": sorted(self.done),
                "pending": {f"{label}|{b[0]}x{b[1]}": list(v) for (label, b), v in self.pending.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.epoch = int(state["epoch"])
        read = state["read"]
        self.read = {"": int(read)} if isinstance(read, int) else {k: int(v) for k, v in read.items()}
        self.credit = {k: int(v) for k, v in state.get("credit", {}).items()}
        self.done = set(state.get("done", ()))
        self.pending = {}
        for k, v in state["pending"].items():
            label, _, size = k.rpartition("|")  # "HxW" in checkpoints made before shard sets
            self.pending[(label, tuple(int(x) for x in size.split("x")))] = list(v)

    def _stream(self, label: str):
        """(index in the set this epoch, example or None) of one set, from its saved position."""
        seen = 0
        for url in self.sets[label]:
            for raw in iter_tar(url):
                seen += 1
                if seen <= self.read.get(label, 0):  # resuming: already consumed
                    continue
                self.read[label] = seen
                if raw["__key__"] in self.skip_keys:
                    yield None
                    continue
                yield prepare(raw, self.cfg, self.epoch)

    def _next_batch(self, label: str, stream) -> dict | None:
        """Read ``label``'s set until one of its size buckets is full; None when it ran out."""
        for ex in stream:
            if ex is None:
                continue
            key = (label, tuple(ex["bucket"]))
            queue = self.pending.setdefault(key, [])
            queue.append(ex)
            if len(queue) == self.cfg.batch_size:
                self.pending[key] = []
                return collate(queue)
        return None

    def __iter__(self):
        weights = {label: len(urls) for label, urls in self.sets.items()}
        while True:
            streams = {label: self._stream(label) for label in self.sets if label not in self.done}
            produced = False
            while streams:
                for label in streams:
                    self.credit[label] = self.credit.get(label, 0) + weights[label]
                label = max(sorted(streams), key=lambda x: self.credit[x])
                self.credit[label] -= sum(weights[x] for x in streams)
                batch = self._next_batch(label, streams[label])
                if batch is None:
                    del streams[label]
                    self.done.add(label)
                    continue
                produced = True
                yield batch
            if not produced and not any(self.read.values()):
                raise ValueError("the shards hold no samples")
            self.epoch, self.read, self.credit, self.done = self.epoch + 1, {}, {}, set()


def validation_set(urls: list[str], cfg: DataConfig, held_out: bool = False) -> list[dict]:
    """The first ``val_samples`` usable clips of the last shard (sorted), which training then
    skips; or, with ``held_out`` (shards kept apart from training), of all ``urls`` in order."""
    out = []
    for url in sorted(urls) if held_out else sorted(urls)[-1:]:
        for raw in iter_tar(url):
            ex = prepare(raw, cfg, 0)
            if ex is not None:
                out.append(ex)
            if len(out) == cfg.val_samples:
                return out
    return out


def motion_calibration(urls: list[str], max_samples: int = 4096, windows: bool = False) -> list[float]:
    """SVD's motion bucket (0-255) needs a mapping from our motion score; we use the dataset's
    quantiles: 257 edges from the clips' ``motion_score`` (json members only). ``windows``: the
    quantiles of the cached windows' own motion where a latent cache has them (``data.motion:
    window``'s training distribution; its buckets use the fixed ``window_motion_edges``)."""
    scores, window_scores = [], []
    for url in sorted(urls):
        for raw in iter_tar(url):
            meta = json.loads(raw.get("json", b"{}"))
            if windows and meta.get("latent_window_motion"):
                window_scores.extend(float(m) for m in meta["latent_window_motion"])
            if meta.get("motion_score") is not None:
                scores.append(float(meta["motion_score"]))
            if len(scores) >= max_samples:
                break
    if windows and window_scores:
        scores = window_scores
    elif windows:
        log.warning("data.motion: window on shards without cached window motion (mp4 shards): the stored "
                    "motion quantiles, sampling's default --motion, are the clips' scores; `vidcurate encode` "
                    "stores each window's own")
    if not scores:
        return [0.0] * 257
    return [float(x) for x in np.quantile(np.asarray(scores), np.linspace(0, 1, 257))]


def motion_bucket(score: torch.Tensor, edges: list[float]) -> torch.Tensor:
    """Motion score -> bucket id 0..255 through the stored calibration table."""
    e = torch.tensor(edges[1:-1], dtype=torch.float32)
    return torch.bucketize(score.float(), e).clamp(0, 255).float()

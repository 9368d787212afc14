"""Near-duplicate clips: a perceptual signature from the analysis decode, matched without
comparing all pairs.

Signature: every frame the motion stage samples (~2 fps, its small grey picture) is shrunk to a
12x12 thumbnail whose pixels are replaced by their ranks (0-143, one byte each). Ranks make the
match indifferent to brightness, contrast, codec and bitrate, and bound what a logo or subtitle
can change. Flat frames (black, fades) have no signature.

Similarity of two clips: each sampled frame of the shorter clip is paired with its best match
in the other (Spearman correlation of the thumbnails); the clip similarity is the median of
those. A trim of a clip therefore matches its original, and so does a mirrored copy (the
thumbnails are flipped too). Recall and precision on real footage and web-style copies of it
are measured by ``benchmarks/bench_dedup.py`` (BENCHMARKS.md).

Matching at scale: random-hyperplane LSH on the thumbnails, ``bands`` bands of ``band_bits``
bits; clips that share ``min_shared_keys`` band keys are candidates. In each key's bucket every
clip is paired with the bucket's leader only (linear in the bucket, however many copies share
it), and each candidate pair is compared once. :func:`resolve` turns the matched pairs into
the verdict: best claim first, a clip that matches a kept one names it in ``duplicate_of``.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

SIDE = 12
KINDS = ("exact", "near", "mirror", "semantic")  # semantic: matched on CLIP embeddings only
SIGNALS = ("thumbs", "clip")
# CLIP embeddings (dedup.use: [clip]): one vector per clip (the mean of its first, middle and
# last frame's), so more bands of fewer bits than the per-frame thumbnails.
CLIP_BANDS, CLIP_BITS = 32, 14
VIA_MIN = 0.95  # a copy of a kept clip this close stands in for it (see resolve)
KEEP_BY = ("resolution", "duration", "aesthetic", "motion")
FLAT_STD = 4.0  # grey levels: below this a sampled frame is flat and gets no signature


def thumb(grey: np.ndarray) -> bytes | None:
    """A sampled frame's signature: the ranks of its 12x12 thumbnail (None: a flat frame)."""
    if float(grey.std()) < FLAT_STD:
        return None
    small = cv2.resize(grey, (SIDE, SIDE), interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
    ranks = np.empty(SIDE * SIDE, dtype=np.uint8)
    ranks[np.argsort(small, kind="stable")] = np.arange(SIDE * SIDE, dtype=np.uint8)
    return ranks.tobytes()


def clip_thumbs(values: list, cfg) -> dict:
    """The clip hook: the signatures of the sampled frames inside the clip, in order."""
    return {"dedup_thumbs": [v for v in values if v is not None]}


def vectors(thumbs, mirror: bool = False) -> np.ndarray:
    """(n, 144) unit vectors of centred ranks (Spearman correlation is their dot product)."""
    if not thumbs:
        return np.zeros((0, SIDE * SIDE), dtype=np.float32)
    r = np.frombuffer(b"".join(thumbs), dtype=np.uint8).reshape(-1, SIDE, SIDE).astype(np.float32)
    if mirror:
        r = r[:, :, ::-1]
    v = r.reshape(len(thumbs), -1) - (SIDE * SIDE - 1) / 2.0
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _median_best(a: np.ndarray, b: np.ndarray) -> float:
    short, long_ = (a, b) if len(a) <= len(b) else (b, a)
    best = np.sort((short @ long_.T).max(axis=1))
    n = len(best)
    return float(best[n // 2] if n % 2 else (best[n // 2 - 1] + best[n // 2]) / 2)


def similarity(a_thumbs, b_thumbs, mirrored: bool = True) -> tuple[float, str]:
    """(similarity, kind) of two clips' signatures: kind ``exact`` (the same sampled pictures),
    ``mirror`` (a flipped copy matches better) or ``near``."""
    if not a_thumbs or not b_thumbs:
        return 0.0, "near"
    if list(a_thumbs) == list(b_thumbs):
        return 1.0, "exact"
    a, b = vectors(a_thumbs), vectors(b_thumbs)
    sim = _median_best(a, b)
    if mirrored:
        flipped = _median_best(vectors(a_thumbs, mirror=True), b)
        if flipped > sim + 0.02:
            return round(flipped, 4), "mirror"
    return round(sim, 4), "near"


@lru_cache(maxsize=8)
def planes(bands: int, bits: int, dim: int = SIDE * SIDE, seed: int = 20261201) -> np.ndarray:
    """The LSH hyperplanes (fixed by the seed, so every worker and run agrees; do not modify)."""
    return np.random.default_rng(seed + dim).standard_normal((bands * bits, dim)).astype(np.float32)


def _codes(signs: np.ndarray, bits: int) -> np.ndarray:
    return (signs * (1 << np.arange(bits, dtype=np.int64))).sum(axis=-1)


def clip_vector(embedding) -> bytes | None:
    """A clip's CLIP signature: the mean of its frames' embeddings, unit length, float16."""
    if not embedding:
        return None
    try:
        v = np.asarray(embedding, dtype=np.float32).reshape(len(embedding), -1).mean(axis=0)
    except (TypeError, ValueError):  # ragged or missing values read back from a table
        return None
    n = float(np.linalg.norm(v))
    return (v / n).astype(np.float16).tobytes() if n > 0 else None


def _clip_array(vec: bytes) -> np.ndarray:
    return np.frombuffer(vec, dtype=np.float16).astype(np.float32)


def entry_keys(entry, cfg) -> set[str]:
    """Every LSH key of an entry: its frames' (``t``) and its CLIP vector's (``c``)."""
    d = cfg.dedup
    keys = {"t" + k for k in band_keys(entry.thumbs, d.bands, d.band_bits, d.mirrored)}
    if entry.embedding:
        v = _clip_array(entry.embedding)
        codes = _codes((planes(CLIP_BANDS, CLIP_BITS, len(v)) @ v > 0).reshape(CLIP_BANDS, CLIP_BITS), CLIP_BITS)
        keys |= {f"c{band}:{int(c):x}" for band, c in enumerate(codes)}
    return keys


def band_keys(thumbs, bands: int, bits: int, mirrored: bool = True, hyperplanes: np.ndarray | None = None
              ) -> set[str]:
    """The LSH keys of a clip: ``"<band>:<hex>"`` for every band of every sampled frame (and of
    its mirror image when ``mirrored``)."""
    if not thumbs:
        return set()
    h = planes(bands, bits) if hyperplanes is None else hyperplanes
    vs = [vectors(thumbs)] + ([vectors(thumbs, mirror=True)] if mirrored else [])
    codes = _codes((np.concatenate(vs) @ h.T > 0).reshape(-1, bands, bits), bits)
    return {f"{band}:{int(c):x}" for row in codes for band, c in enumerate(row)}


@dataclass(frozen=True)
class Entry:
    """One clip taking part in deduplication."""

    clip_id: str
    video_id: str
    thumbs: tuple
    rank: tuple  # larger is better (``keep_score``)
    reference: bool = False  # from an earlier curated run (``--dedup-against``): always kept
    embedding: bytes | None = None  # clip_vector(), with dedup.use: [clip]


def keep_score(row, keep_by) -> tuple:
    """A clip's claim to be the one kept, ``keep_by`` in priority order (missing values last)."""
    values = {"resolution": (row.width or 0) * (row.height or 0), "duration": row.duration_s,
              "aesthetic": getattr(row, "aesthetic_score", None), "motion": getattr(row, "motion_score", None)}
    return tuple(float("-inf") if values[k] is None else float(values[k]) for k in keep_by)


def entry_of(row, cfg, reference: bool = False) -> Entry | None:
    """A clip's entry with the signals of ``dedup.use`` it has (None: it has none)."""
    d = cfg.dedup
    # Signatures read back from a table are checked: only 144-byte ones count.
    thumbs = tuple(t for t in row.dedup_thumbs or () if isinstance(t, bytes) and len(t) == SIDE * SIDE) \
        if "thumbs" in d.use else ()
    thumbs = thumbs if len(thumbs) >= d.min_frames else ()
    embedding = clip_vector(getattr(row, "clip_embedding", None)) if "clip" in d.use else None
    if not thumbs and embedding is None:
        return None
    return Entry(row.clip_id, row.video_id, thumbs, keep_score(row, d.keep_by), reference, embedding)


def verify(a: Entry, b: Entry, cfg) -> tuple | None:
    """An edge ``(a_id, b_id, kind, similarity, a_claim, b_claim)`` (ids ordered; a claim is
    ``(rank, reference)``) when the two clips match."""
    if a.clip_id == b.clip_id or (a.reference and b.reference):
        return None
    if a.video_id == b.video_id and not cfg.dedup.same_video:
        return None
    sim, kind = similarity(a.thumbs, b.thumbs, cfg.dedup.mirrored)
    if sim < cfg.dedup.min_similarity and a.embedding and b.embedding:  # the other signal, if used
        sim, kind = round(float(_clip_array(a.embedding) @ _clip_array(b.embedding)), 4), "semantic"
        if sim < cfg.dedup.clip_min_similarity:
            return None
    elif sim < cfg.dedup.min_similarity:
        return None
    x, y = sorted((a, b), key=lambda e: e.clip_id)
    return (x.clip_id, y.clip_id, kind, sim, (x.rank, x.reference), (y.rank, y.reference))


def bucket_pairs(members: list[tuple], same_video: bool = False, key: str = "") -> list[tuple[str, str]]:
    """The candidate pairs of one LSH bucket. ``members``: ``(clip_id, video_id, reference)``.
    Every member is paired with the bucket's leader only, so a bucket of k clips gives
    at most k - 1 pairs however many copies share it. The leader is an earlier run's clip when
    there is one, else drawn by a hash of the key and the ids: copies share many keys, so each
    is compared with many of the others, and :func:`resolve` can tell the central copy."""
    members = sorted(set(members))
    leader = min(members, key=lambda m: (not m[2], zlib.crc32(f"{key}|{m[0]}".encode())))
    return [tuple(sorted((leader[0], m[0]))) for m in members if m is not leader
            and (same_video or m[1] != leader[1]) and not (leader[2] and m[2])]


def resolve(edges) -> dict[str, tuple]:
    """The verdict from matched pairs (edges as :func:`verify` makes them): clip_id -> (kept
    clip_id, kind, similarity) for every duplicate. Within each connected group, clips are taken
    best claim first: an earlier run's clip, then ``keep_by``, then the most central copy (the
    largest sum of similarities), then the smallest id. A clip that matched a clip already kept
    is its duplicate; any other is kept. A chain A~B~C where A and C do not match keeps both A
    and C, unless B is a near-identical copy (similarity >= ``VIA_MIN``) of the kept one: one
    false match cannot merge two groups."""
    parent: dict[str, str] = {}
    claims: dict[str, tuple] = {}
    matched: dict[str, dict[str, tuple]] = {}

    def find(x):
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b, kind, sim, a_claim, b_claim in edges:
        claims[a], claims[b] = a_claim, b_claim
        matched.setdefault(a, {})[b] = matched.setdefault(b, {})[a] = (kind, sim)
        parent[find(a)] = find(b)
    # Among equal claims the most central copy (the largest sum of similarities) is kept first.
    central = {c: sum(sim for _, sim in m.values()) for c, m in matched.items()}
    groups: dict[str, list[str]] = {}
    for x in parent:
        groups.setdefault(find(x), []).append(x)
    out = {}
    for members in groups.values():
        kept: list[str] = []
        order = sorted(members, key=lambda c: (not claims[c][1], tuple(-v for v in claims[c][0]), -central[c], c))
        for c in order:
            hits = [(sim, k, kind) for k in kept if (m := matched[c].get(k)) for kind, sim in [m]]
            if hits and not claims[c][1]:
                sim, k, kind = max(hits)
                out[c] = (k, kind, sim)
            else:
                kept.append(c)
        # A kept clip that matched a near-identical copy of a kept clip is a copy of that one
        # too (e.g. a crop matched the original, and the original's mirror image is kept).
        leaders = {k for k, _, _ in out.values()}
        for c in kept:
            via = [(min(sim, out[r][2]), out[r][0], _compose(kind, out[r][1])) for r, (kind, sim) in matched[c].items()
                   if r in out and out[r][2] >= VIA_MIN and out[r][0] != c]
            if via and c not in leaders and not claims[c][1]:
                sim, k, kind = max(via)
                out[c] = (k, kind, sim)
    return out


def _compose(first: str, second: str) -> str:
    """The kind of a copy of a copy: mirrored once is a mirror image, twice is not."""
    flips = (first == "mirror") + (second == "mirror")
    if flips == 1:
        return "mirror"
    return "semantic" if "semantic" in (first, second) else "near"


def find_duplicates(entries: list[Entry], cfg) -> dict[str, tuple]:
    """In memory (``vidcurate filter``, tests, benchmarks): clip_id -> (kept, kind, similarity)
    for every duplicate, by the same buckets, pairs and checks as the pipeline."""
    d = cfg.dedup
    by_id = {e.clip_id: e for e in entries}
    buckets: dict[str, list[tuple]] = {}
    for e in entries:
        for k in entry_keys(e, cfg):
            buckets.setdefault(k, []).append((e.clip_id, e.video_id, e.reference))
    shared: dict[tuple, int] = {}
    for key, bucket in buckets.items():
        if len(bucket) > 1:
            for p in bucket_pairs(bucket, d.same_video, key):
                shared[p] = shared.get(p, 0) + 1
    edges = [edge for (a, b), n in sorted(shared.items())
             if n >= d.min_shared_keys and (edge := verify(by_id[a], by_id[b], cfg)) is not None]
    return resolve(edges)


def mark(row, found: tuple | None):
    """``row`` with its dedup verdict: a duplicate is rejected as ``duplicate`` and names the
    kept clip; any other row has the dedup columns cleared (a re-filter decides afresh)."""
    if found is None:
        return row.replace(duplicate_of=None, duplicate_kind=None, duplicate_similarity=None)
    kept, kind, sim = found
    return row.replace(duplicate_of=kept, duplicate_kind=kind, duplicate_similarity=sim,
                       reject_reasons=sorted(set(row.reject_reasons or []) | {"duplicate"}), keep=False)

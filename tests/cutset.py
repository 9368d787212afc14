"""A labelled shot-transition set built from real footage, and its scoring.

Shots are stretches of real videos with no boundary in them (moving, near-static and static).
``build_file`` joins shots with hard cuts, fades to and from black and white, dissolves, wipes
(left, right, up, down) and an iris, encodes the result as H.264 and returns its ground truth:
every frame that is not purely one shot belongs to a transition. Trap files are single shots
made hard on purpose (fast pans, camera shake, flashes, lighting changes) with no boundary at
all. ``score`` matches a detector's boundaries against the truth (a hard cut within 2 frames, a
gradual transition by any overlap) and counts the clips that hold a frame of a transition.

Used by ``benchmarks/bench_cuts.py`` (the full set from ``../shared/videos``) and by
``tests/test_transitions.py`` (a small set from the committed examples).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

FPS = 25
GRADUAL = ("fade_black", "fade_white", "fade_out", "fade_in", "dissolve",
           "wipe_left", "wipe_right", "wipe_up", "wipe_down", "iris")
KINDS = ("cut", *GRADUAL)


@dataclass(frozen=True)
class Shot:
    name: str
    file: str       # file name inside the video folder
    start: int      # first source frame
    stop: int       # one past the last source frame (no boundary in between)
    motion: str     # "moving", "near" (near-static) or "static"
    still: bool = False  # one frame held (a truly static shot)


@dataclass
class Transition:
    kind: str
    start: int      # first frame that is not purely the shot before (for a cut: the new shot's first)
    end: int        # first frame that is purely the shot after (== start for a cut)
    pair: str       # e.g. "moving-static"


@dataclass
class Truth:
    path: str
    frames: int
    transitions: list[Transition] = field(default_factory=list)
    trap: str | None = None  # a single-shot file: what makes it hard

    def to_json(self) -> dict:
        return {**asdict(self), "transitions": [asdict(t) for t in self.transitions]}

    @staticmethod
    def from_json(d: dict) -> Truth:
        return Truth(d["path"], d["frames"], [Transition(**t) for t in d["transitions"]], d.get("trap"))


def _fit(img: np.ndarray, w: int, h: int) -> np.ndarray:
    """Centre-crop to the w:h aspect, then resize (area) to w x h."""
    import cv2

    ih, iw = img.shape[:2]
    if iw * h > ih * w:
        cw = ih * w // h
        img = img[:, (iw - cw) // 2:(iw - cw) // 2 + cw]
    else:
        ch = iw * h // w
        img = img[(ih - ch) // 2:(ih - ch) // 2 + ch]
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)


class ShotSource:
    """Decodes shots (each once per size) from ``folder``; frames are RGB uint8."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self._cache: dict[tuple, np.ndarray] = {}

    def frames(self, shot: Shot, n: int, w: int, h: int) -> np.ndarray:
        """``n`` frames of ``shot`` (played forward, then back and forth if it is shorter)."""
        key = (shot, w, h)
        if key not in self._cache:
            stop = shot.start + 1 if shot.still else shot.stop
            out = []
            with av.open(str(self.folder / shot.file)) as c:
                for i, f in enumerate(c.decode(video=0)):
                    if i >= stop:
                        break
                    if i >= shot.start:
                        out.append(_fit(f.to_ndarray(format="rgb24"), w, h))
            if len(self._cache) > 6:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = np.stack(out)
        src = self._cache[key]
        m = len(src)
        if m == 1:
            return np.repeat(src, n, axis=0)
        period = 2 * (m - 1)
        idx = [(k % period) if (k % period) < m else period - (k % period) for k in range(n)]
        return src[idx]


def _mask(kind: str, alpha: float, h: int, w: int) -> np.ndarray:
    """Where the incoming shot shows during a wipe or iris at progress ``alpha`` (0..1)."""
    y, x = np.mgrid[0:h, 0:w]
    if kind == "wipe_left":  # the edge moves left to right
        return x < alpha * w
    if kind == "wipe_right":
        return x >= (1 - alpha) * w
    if kind == "wipe_down":
        return y < alpha * h
    if kind == "wipe_up":
        return y >= (1 - alpha) * h
    r = np.hypot(x - w / 2, y - h / 2)
    return r < alpha * np.hypot(w / 2, h / 2)


def transition_frames(kind: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The ``len(a) == len(b)`` frames of a transition from ``a`` (the outgoing shot, still
    playing) to ``b`` (the incoming one, already playing). Every frame is a mix: none is purely
    one shot."""
    n = len(a)
    fa, fb = a.astype(np.float32), b.astype(np.float32)
    out = np.empty_like(fa)
    if kind == "dissolve":
        for i in range(n):
            t = (i + 1) / (n + 1)
            out[i] = (1 - t) * fa[i] + t * fb[i]
    elif kind in ("fade_black", "fade_white"):
        level = 0.0 if kind == "fade_black" else 255.0
        half = n // 2
        for i in range(n):  # down into the level over the first half, up out of it over the rest
            t = (i + 1) / (half + 1) if i < half else 1 - (i - half) / (n - half)
            src = fa[i] if i < half else fb[i]
            out[i] = (1 - t) * src + t * level
    elif kind == "fade_out":  # the old shot fades to black, the new one starts at full picture
        for i in range(n):
            out[i] = fa[i] * (1 - (i + 1) / n)
    elif kind == "fade_in":  # a cut to black, the new shot fades in from it
        for i in range(n):
            out[i] = fb[i] * (i / n)
    else:
        h, w = a.shape[1:3]
        for i in range(n):
            m = _mask(kind, (i + 1) / (n + 1), h, w)[..., None]
            out[i] = np.where(m, fb[i], fa[i])
    return out.clip(0, 255).astype(np.uint8)


def encode(path: str, frames, fps: int = FPS) -> int:
    """H.264 (crf 20, yuv420p) at ``fps``; returns the number of frames written."""
    n = 0
    with av.open(path, "w") as out:
        s = None
        for img in frames:
            if s is None:
                s = out.add_stream("libx264", rate=Fraction(fps))
                s.height, s.width = img.shape[:2]
                s.pix_fmt = "yuv420p"
                s.options = {"crf": "20", "preset": "veryfast"}
            for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
                out.mux(p)
            n += 1
        for p in s.encode():
            out.mux(p)
    return n


def build_file(path: str, src: ShotSource, shots: list[Shot], steps: list[tuple[str, int]],
               size: tuple[int, int], hold: int | list[int] = 40) -> Truth:
    """Shots ``shots[k]`` and ``shots[k+1]`` joined by ``steps[k] = (kind, length)``; shot k
    shows ``hold`` (or ``hold[k]``) pure frames between its transitions."""
    assert len(steps) == len(shots) - 1
    holds = [hold] * len(shots) if isinstance(hold, int) else list(hold)
    w, h = size
    truth = Truth(path, 0)
    lens = [0, *[n if k != "cut" else 0 for k, n in steps], 0]

    def gen():
        pos = 0
        prev_tail = None  # the outgoing shot's frames that play on during the next transition
        for k, shot in enumerate(shots):
            into, out, hold = lens[k], lens[k + 1], holds[k]
            fr = src.frames(shot, into + hold + out, w, h)
            if k == 0:
                yield from fr[:hold]
                pos += hold
            else:
                kind, n = steps[k - 1]
                if kind == "cut":
                    truth.transitions.append(Transition(kind, pos, pos, f"{shots[k - 1].motion}-{shot.motion}"))
                else:
                    yield from transition_frames(kind, prev_tail, fr[:into])
                    truth.transitions.append(Transition(kind, pos, pos + into, f"{shots[k - 1].motion}-{shot.motion}"))
                    pos += into
                yield from fr[into:into + hold]
                pos += hold
            prev_tail = fr[into + hold:]

    truth.frames = encode(path, gen())
    return truth


def build_trap(path: str, src: ShotSource, shot: Shot, trap: str, size: tuple[int, int], n: int = 150) -> Truth:
    """One shot of ``n`` frames with no boundary, made hard by ``trap``: "pan" (a fast pan
    across a still), "shake" (a hand-held jitter with zoom), "flash" (two camera flashes) or
    "lighting" (the light dims to 45% and comes back)."""
    import cv2

    w, h = size
    rng = np.random.default_rng(7)

    def gen():
        if trap in ("pan", "shake"):
            big = src.frames(shot, 1, 2 * w, 2 * h)[0] if trap == "pan" else None
            fr = None if trap == "pan" else src.frames(shot, n, int(1.5 * w), int(1.5 * h))
            x, y = 0.0, 0.0
            for i in range(n):
                if trap == "pan":  # across twice the width in n frames: ~w/75 px per frame
                    x = (w - 1) * i / (n - 1)
                    yield big[int(h * 0.5):int(h * 0.5) + h, int(x):int(x) + w]
                else:
                    x = float(np.clip(x + rng.normal(0, 0.04 * w), -0.2 * w, 0.2 * w))
                    y = float(np.clip(y + rng.normal(0, 0.04 * h), -0.2 * h, 0.2 * h))
                    z = 1.0 + 0.15 * np.sin(i / 9)
                    cw, ch = int(w / z), int(h / z)
                    x0 = int(np.clip(0.25 * w + x, 0, fr.shape[2] - cw))
                    y0 = int(np.clip(0.25 * h + y, 0, fr.shape[1] - ch))
                    yield cv2.resize(fr[i, y0:y0 + ch, x0:x0 + cw], (w, h), interpolation=cv2.INTER_AREA)
            return
        fr = src.frames(shot, n, w, h).astype(np.float32)
        for i in range(n):
            img = fr[i]
            if trap == "flash" and (i % 60) in (40, 41):
                img = img * 1.6 + 90
            elif trap == "lighting":
                t = min(1.0, max(0.0, (i - 40) / 15)) - min(1.0, max(0.0, (i - 85) / 15))
                img = img * (1 - 0.55 * t)
            yield img.clip(0, 255).astype(np.uint8)

    return Truth(path, encode(path, gen()), [], trap)


# -- scoring ---------------------------------------------------------------------------------

@dataclass
class Found:
    cuts: list[int]
    gaps: list[tuple[int, int]]
    scenes: list[tuple[int, int]]


def _matches(t: Transition, b: tuple[int, int]) -> bool:
    a, e = b  # a predicted cut is (c, c); a gap [a, e)
    if t.kind == "cut":
        return (a - 2 <= t.start <= a + 2) if a == e else (a - 2 <= t.start <= e + 2)
    if a == e:
        return t.start - 2 <= a <= t.end + 2
    return a < t.end and t.start < e


def score(truths: list[Truth], found: list[Found]) -> dict:
    """Boundary precision/recall/F1, per-kind recall, clips holding a transition frame (per kind),
    false boundaries on trap files (per trap), and ``kept``: the share of pure shot frames that
    end up in a clip (a detector that leaves too much out of clips scores low there)."""
    tp = fp = fn = 0
    pure = kept = 0  # frames of pure shot content, and how many of them a clip keeps
    per: dict[str, dict[str, int]] = {k: {"n": 0, "found": 0, "leaks": 0} for k in KINDS}
    traps: dict[str, int] = {}
    for truth, f in zip(truths, found):
        preds = [(c, c) for c in f.cuts] + [tuple(g) for g in f.gaps]
        used = [False] * len(preds)
        for t in truth.transitions:
            per[t.kind]["n"] += 1
            hit = next((i for i, b in enumerate(preds) if not used[i] and _matches(t, b)), None)
            if hit is None:
                fn += 1
            else:
                used[hit] = True
                tp += 1
                per[t.kind]["found"] += 1
            for s, e in f.scenes:
                inside = (s < t.start < e) if t.kind == "cut" else (s < t.end and t.start < e)
                if inside:
                    per[t.kind]["leaks"] += 1
        mixed = np.zeros(truth.frames, bool)
        for t in truth.transitions:
            mixed[t.start:t.end] = True
        in_clip = np.zeros(truth.frames, bool)
        for s, e in f.scenes:
            in_clip[s:e] = True
        pure += int((~mixed).sum())
        kept += int((in_clip & ~mixed).sum())
        extra = used.count(False)
        fp += extra
        if truth.trap:
            traps[truth.trap] = traps.get(truth.trap, 0) + extra
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    leaks = sum(v["leaks"] for v in per.values())
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f1, 4), "tp": tp, "fp": fp,
            "fn": fn, "leaking_clips": leaks, "kept": round(kept / pure, 4) if pure else 1.0,
            "per_kind": per, "trap_false": traps}


def save_truth(truths: list[Truth], path: str | Path) -> None:
    Path(path).write_text(json.dumps([t.to_json() for t in truths], indent=1))


def load_truth(path: str | Path) -> list[Truth]:
    return [Truth.from_json(d) for d in json.loads(Path(path).read_text())]

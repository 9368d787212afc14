"""Long videos in segments, so one long file does not serialise a run.

1. ``index_container``: demux the video stream once without decoding (cheap) and sort the packet
   timestamps: frame ``i`` of the video is the frame with the i-th smallest pts. This gives every
   segment the same global frame numbers a whole pass would count.
2. ``plan_segments``: consecutive frame ranges of about ``analysis.segment_s`` seconds.
3. ``analyze_segment``: seek to a little before the range, decode through a little after it
   (warm-up and tail overlaps as long as the longest transition the cascade looks for, so no
   boundary falls between two segments unseen), run the same cut cascade and motion sampler as
   a whole pass, and keep what belongs to the range.
4. ``merge_segments``: cuts and motion pairs concatenate; transition gaps that straddle a
   segment boundary are seen by both neighbours and merged; scenes are computed once.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np

from transforms import decode
from transforms.analyze import VideoAnalysis, analyze_container, analyze_video, flow_sampler
from transforms.containers import opened
from transforms.cuts.base import Boundaries
from transforms.cuts.cascade import CutCascade, CutResult, scaled_strides, timed_scenes
from transforms.cuts.fades import merge_ranges
from transforms.errors import CorruptVideo
from transforms.motion import MotionPair
from transforms.pixels import motion_grey, scaled_size, to_bgr_grey
from transforms.rows import video_id_for
from transforms.stages import DEFAULT


@dataclass
class VideoIndex:
    info: decode.ProbeInfo
    pts: np.ndarray  # sorted presentation timestamps, one per frame
    time_base: float
    keys: np.ndarray | None = None  # indices (into pts) of the keyframes

    @property
    def times(self) -> np.ndarray:
        return (self.pts - self.pts[0]) * self.time_base

    @property
    def fps(self) -> float:
        t = self.times
        return (len(t) - 1) / t[-1] if len(t) > 1 and t[-1] > 0 else (self.info.fps or 25.0)


def index_container(container, info: decode.ProbeInfo) -> VideoIndex | None:
    """Every frame's pts of an open container by demuxing only; None when the stream lacks pts."""
    stream = container.streams.video[0]
    pts, keys = [], []
    for packet in container.demux(stream):
        if packet.size == 0:
            continue  # the flush packet
        if packet.pts is None:
            return None
        pts.append(packet.pts)
        if packet.is_keyframe:
            keys.append(packet.pts)
    tb = float(stream.time_base or 0)
    if not pts or tb <= 0:
        return None
    ordered = np.unique(np.asarray(pts, dtype=np.int64))
    return VideoIndex(info, ordered, tb, np.searchsorted(ordered, np.asarray(keys, dtype=np.int64)))


def first_pass(source: str, cfg, stages=DEFAULT, split_s: float | None = None, workers: int = 1):
    """The analysis of ``source`` from one open: its :class:`VideoAnalysis`, or, for a video
    split into segments (``split_s`` seconds each; None: decided here from the header and
    ``analysis.segment_s``; 0.0: never), ``(index, spans)`` for :func:`transforms.segments.analyze_segment`."""
    with opened(source, cfg.input.remote_attempts, cfg.input.remote_timeout_s) as container:
        info = decode.probe_container(container, source)
        decode.check_limits(info, cfg.limits, source)
        if split_s is None:
            split_s = duration_split(info.duration_s, cfg.analysis.segment_s)
        if not split_s:
            return analyze_container(container, info, source, cfg, stages)
        index = index_container(container, info)
    if index is None:  # frames without timestamps cannot be matched across segments
        return analyze_video(source, cfg, stages)
    return index, plan_segments(len(index.pts), index.fps, split_s, max(1, workers))


def warmup_frames(fps: float, cfg) -> int:
    """Overlap decoded on each side of a segment: the longest transition plus the cascade's
    longest stride plus the shortest scene, so every window a detector needs is seen whole."""
    c = cfg.cuts
    return int(np.ceil((c.max_transition_s + c.min_scene_s) * fps)) + 2 * max(scaled_strides(c.cascade_strides, fps)) + 4


def duration_split(duration_s: float, segment_s: float) -> float:
    """Segment length for a video of ``duration_s`` under ``analysis.segment_s``: videos longer
    than 1.5x it are split into segments of about that length; 0.0 = analyzed whole."""
    return segment_s if segment_s > 0 and duration_s > 1.5 * segment_s else 0.0


def plan_segments(n_frames: int, fps: float, segment_s: float, multiple: int = 1) -> list[tuple[int, int]]:
    """Equal consecutive frame ranges of about ``segment_s`` seconds; with ``multiple`` > 1 their
    count is rounded up to a multiple of it (one video over 2 workers: 6 segments, not 5)."""
    per = max(1, int(round(segment_s * fps)))
    k = max(1, int(round(n_frames / per)))
    if multiple > 1 and k > 1:
        k = -(-k // multiple) * multiple
    edges = [round(i * n_frames / k) for i in range(k + 1)]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]


@dataclass
class Segment:
    """Frames ``[start, end)`` of ``source``, segment ``k`` of ``total``: one unit of analysis work."""

    source: str
    k: int
    total: int
    index: VideoIndex
    start: int
    end: int

    @property
    def frames(self) -> int:
        return self.end - self.start


@dataclass
class SegmentResult:
    start: int
    end: int
    cuts: list[int] = field(default_factory=list)
    gaps: list[tuple[int, int]] = field(default_factory=list)
    motion: list[MotionPair] = field(default_factory=list)
    samples: list = field(default_factory=list)  # (frame, stage -> value) of the per-frame hooks
    decoded: int = 0
    seconds: float = 0.0
    rotation: int = 0  # display matrix of the first decoded frame (clockwise degrees)
    decode_errors: int = 0


def analyze_segment(source: str, cfg, index: VideoIndex, start: int, end: int, stages=DEFAULT) -> SegmentResult:
    t0 = time.perf_counter()
    n = len(index.pts)
    fps = index.fps
    warm = warmup_frames(fps, cfg)
    cascade = CutCascade(fps, cfg.cuts, timestamps=True)
    # Start on the cascade's grid, so its windows fall where a whole pass puts them.
    lo, hi = max(0, (start - warm) // cascade.grid * cascade.grid), min(n, end + warm)
    times = index.times
    info = index.info
    aw, ah = scaled_size(info.width, info.height, cfg.analysis.width)
    mw, mh = scaled_size(info.width, info.height, cfg.motion.width)
    sampler = flow_sampler(fps, cfg, stages)
    global_of: list[int] = []  # local position -> global frame number
    stats: dict = {}
    rotation = 0
    with opened(source, cfg.input.remote_attempts, cfg.input.remote_timeout_s) as container:
        for df in decode.iter_frames(container, source, cfg.analysis.decode_threads, start_pts=int(index.pts[lo]),
                                     skip_loop_filter=cfg.analysis.skip_loop_filter, stats=stats):
            if df.index == 0:
                rotation = decode.frame_rotation(df.frame)
            if df.pts is None:
                continue
            g = int(np.searchsorted(index.pts, df.pts))
            if g >= n or index.pts[g] != df.pts or g < lo:
                continue
            if g >= hi:
                break
            local = len(global_of)
            global_of.append(g)
            bgr, grey = to_bgr_grey(df.frame, aw, ah)
            cascade.push(local, bgr, grey, float(times[g]))
            if sampler is not None and sampler.wants(times[g]):
                sampler.push(g, float(times[g]), motion_grey(df.frame, grey, (aw, ah), (mw, mh)))
    m = len(global_of)
    if m == 0:
        raise CorruptVideo(f"{source}: no frame of {start}-{end} could be decoded")
    b: Boundaries = cascade.checked(m, np.asarray(times)[global_of] - times[global_of[0]])
    g_of = np.asarray(global_of + [hi])

    def to_global(i: int) -> int:
        return int(g_of[min(i, m)])

    result = SegmentResult(start, end, decoded=m, rotation=rotation, decode_errors=stats.get("decode_errors", 0))
    # A cut exactly at a segment's decode start is an artefact of starting there.
    result.cuts = [to_global(c) for c in b.cuts if start <= to_global(c) < end and to_global(c) > lo]
    for a, e in b.gaps:
        ga, ge = to_global(a), to_global(e)
        if ga < end and ge > start:
            result.gaps.append((ga, ge))
    if sampler is not None:
        result.motion = [p for p in sampler.pairs if start <= p.a < end]
        result.samples = [x for x in sampler.samples if start <= x[0] < end]
    result.seconds = time.perf_counter() - t0
    return result


def merge_segments(source: str, cfg, index: VideoIndex, results: list[SegmentResult], total: int | None = None
                   ) -> VideoAnalysis:
    """One analysis from a video's segment results (``total``: how many there should be)."""
    if total is not None and len(results) != total:
        raise CorruptVideo(f"{source}: only {len(results)} of {total} segments analyzed")
    results = sorted(results, key=lambda r: r.start)
    n = len(index.pts)
    decode.check_frames(source, n, cfg.limits)
    fps = index.fps
    cuts = sorted({c for r in results for c in r.cuts})
    gaps = merge_ranges([g for r in results for g in r.gaps])
    pairs = [p for _, p in sorted({(p.a, p.b): p for r in results for p in r.motion}.items())]
    scenes = timed_scenes(n, cuts, gaps, cfg.cuts.boundary_margin_frames, cfg.cuts.min_scene_s, index.times, fps)
    info = dataclasses.replace(index.info, rotation=results[0].rotation if results else 0)
    errors = sum(r.decode_errors for r in results)
    samples = sorted({x[0]: x for r in results for x in r.samples}.values(), key=lambda x: x[0])
    return VideoAnalysis(source, video_id_for(source), info, n, fps, CutResult(scenes, cuts, gaps),
                         pairs, index.pts, index.times,
                         sum(r.seconds for r in results), errors, None, errors, samples, index.keys)


def analyze_in_segments(source: str, cfg, segment_s: float, stages=DEFAULT) -> VideoAnalysis:
    """One-call version (one process): index, analyze every segment, merge."""
    planned = first_pass(source, cfg, stages, split_s=segment_s)
    if not isinstance(planned, tuple):
        return planned  # frames without timestamps: analyzed whole
    index, spans = planned
    return merge_segments(source, cfg, index, [analyze_segment(source, cfg, index, a, b, stages) for a, b in spans])

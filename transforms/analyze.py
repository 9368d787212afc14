"""The analysis pass: probe + cut cascade + motion from ONE streaming decode per video.

Every decoded frame is shrunk once to the small colour picture the cut detectors need; every
``fps / motion.fps``-th frame is also shrunk to the grey picture optical flow needs. Nothing else
of the frame is converted, and no frame is kept beyond the detectors' short windows.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from transforms import decode
from transforms.containers import opened
from transforms.cuts.cascade import CutCascade, CutResult
from transforms.errors import CorruptVideo
from transforms.motion import MotionPair, MotionSampler, clip_motion
from transforms.pixels import displayed_size, motion_grey, scaled_size, to_bgr_grey
from transforms.rows import ClipRow, ErrorRow, VideoRow, clip_id_for, error, video_id_for
from transforms.shape import max_clip_seconds
from transforms.stages import DEFAULT, STAGES, frame_hooks, pair_hooks


@dataclass
class VideoAnalysis:
    source: str
    video_id: str
    probe: decode.ProbeInfo
    num_frames: int  # frames actually decoded
    fps: float
    cuts: CutResult
    motion: list[MotionPair] = field(default_factory=list)
    pts: np.ndarray | None = None  # pts of every frame (frame-exact clip writing)
    times: np.ndarray | None = None  # presentation time of every frame, from 0
    seconds: float = 0.0  # wall time of the pass
    decode_errors: int = 0  # packets that failed to decode (and an early stop)
    stopped: str | None = None  # why decoding ended before the stream did, if it did
    errors_inside: int = 0  # decode errors followed by more decoded frames (not just a cut-off end)
    samples: list = field(default_factory=list)  # (frame, stage -> value) of the per-frame hooks
    keys: np.ndarray | None = None  # indices of the keyframes (where a copied clip can start)


def analyze_video(source: str, cfg, stages=DEFAULT) -> VideoAnalysis:
    """One call: open, probe, check limits, decode once through the cut cascade and, with the
    motion stage in ``stages``, optical flow (and the flow-based stages' per-pair work)."""
    with opened(source, cfg.input.remote_attempts, cfg.input.remote_timeout_s) as container:
        info = decode.probe_container(container, source)
        decode.check_limits(info, cfg.limits, source)
        return analyze_container(container, info, source, cfg, stages)


def flow_sampler(fps: float, cfg, stages) -> MotionSampler | None:
    """The motion stage's sampler (None when motion is not among ``stages``), with the per-pair
    hooks of the stages that build on its flow."""
    if "motion" not in stages:
        return None
    return MotionSampler(fps, cfg.motion.fps, cfg.motion.method, hooks=pair_hooks(stages),
                         frame_hooks=frame_hooks(stages))


def analyze_container(container, info: decode.ProbeInfo, source: str, cfg, stages=DEFAULT) -> VideoAnalysis:
    t0 = time.perf_counter()
    fps = info.fps if info.fps > 0 else 25.0
    aw, ah = scaled_size(info.width, info.height, cfg.analysis.width)
    mw, mh = scaled_size(info.width, info.height, cfg.motion.width)
    cascade = CutCascade(fps, cfg.cuts, timestamps=True)
    sampler = flow_sampler(fps, cfg, stages)
    pts: list[int] = []
    times: list[float] = []
    keys: list[int] = []
    n = 0
    stats: dict = {}
    for df in decode.iter_frames(container, source, cfg.analysis.decode_threads,
                                 skip_loop_filter=cfg.analysis.skip_loop_filter, stats=stats):
        if n == 0:  # the display matrix reaches PyAV per frame, not in the stream header
            info.rotation = decode.frame_rotation(df.frame)
        t = df.time if not times else max(df.time, times[-1] + 1e-6)
        bgr, grey = to_bgr_grey(df.frame, aw, ah)
        cascade.push(df.index, bgr, grey, t - (times[0] if times else t))
        if sampler is not None and sampler.wants(t - times[0] if times else 0.0):
            sampler.push(df.index, t - (times[0] if times else t), motion_grey(df.frame, grey, (aw, ah), (mw, mh)))
        pts.append(df.pts if df.pts is not None else -1)
        times.append(t)
        if df.frame.key_frame:
            keys.append(n)
        n += 1
    if n == 0:
        raise CorruptVideo(f"{source}: the video stream has no decodable frame")
    decode.check_frames(source, n, cfg.limits, "decodable ")
    t = np.asarray(times, dtype=np.float64) - times[0]
    cuts = cascade.result(n, t)
    # Average rate actually decoded: equals the header rate for constant-rate files and is
    # right for variable-rate ones whose header claims more frames than they hold.
    if n > 1 and t[-1] > 0:
        fps = (n - 1) / t[-1]
    return VideoAnalysis(source, video_id_for(source), info, n, fps, cuts,
                         sampler.pairs if sampler else [], np.asarray(pts, dtype=np.int64), t,
                         time.perf_counter() - t0, stats.get("decode_errors", 0), stats.get("stopped"),
                         sum(1 for k in stats.get("error_at", []) if k < n), sampler.samples if sampler else [],
                         np.asarray(keys, dtype=np.int64))


def span_times(a: VideoAnalysis, start: int, end: int) -> tuple[float, float]:
    """Start and end time of frames ``[start, end)`` (end = start of frame ``end``)."""
    t = a.times
    if t is None:
        return start / a.fps, end / a.fps
    end_t = t[end] if end < len(t) else t[-1] + 1.0 / a.fps
    return float(t[start]), float(end_t)


def plan_clips(scenes: list[tuple[int, int]], fps: float, max_s: float,
               max_frames: int | None = None, times: np.ndarray | None = None,
               keys: np.ndarray | None = None, min_s: float = 0.0) -> list[tuple[int, int]]:
    """Turn shots into clip spans: shots longer than ``max_s`` are cut into equal pieces no
    longer than it; shorter shots are kept whole (the duration filter rejects too-short ones).

    With ``times`` (each frame's presentation time) durations are measured on timestamps, so a
    variable-frame-rate shot is cut by time, not by an average rate; pieces are equal in time.

    With ``times`` and ``keys`` (indices of the source's keyframes) a long shot is cut at a
    keyframe wherever one makes a piece of at least half ``max_s`` (and ``min_s``) and at most
    ``max_s``, leaving at least as much after it; the rest is cut equally. A cut inside a shot is no transition, so
    it may as well fall where stream copy can start a clip without re-encoding its head."""
    if times is not None and len(times) > 0:
        keys = None if keys is None else np.asarray(keys, dtype=np.int64)
        return [span for a, b in scenes for span in _time_pieces(times, fps, a, b, max_s, max_frames, keys, min_s)]
    max_len = max(1, int(math.floor(max_s * fps + 1e-9)))
    if max_frames:
        max_len = min(max_len, max_frames)
    spans = []
    for a, b in scenes:
        length = b - a
        pieces = max(1, math.ceil(length / max_len))
        edges = [a + round(i * length / pieces) for i in range(pieces + 1)]
        spans.extend((s, e) for s, e in zip(edges[:-1], edges[1:]) if e > s)
    return spans


def _time_pieces(times: np.ndarray, fps: float, a: int, b: int, max_s: float, max_frames: int | None,
                 keys: np.ndarray | None = None, min_s: float = 0.0) -> list[tuple[int, int]]:
    n = len(times)
    end_t = lambda i: float(times[i]) if i < n else float(times[-1]) + 1.0 / (fps or 25.0)  # noqa: E731

    def too_long(s: int, e: int) -> bool:
        return end_t(e) - float(times[s]) > max_s + 1e-6 or bool(max_frames and e - s > max_frames)

    spans, equal = [], None
    inside = keys[(keys > a) & (keys < b)] if keys is not None else np.empty(0, np.int64)
    lo = max(max_s / 2, min_s) - 1e-9
    while len(inside) and too_long(a, b):
        took = times[inside] - times[a]
        fits = (inside > a) & (took >= lo) & (took <= max_s + 1e-6) & (end_t(b) - times[inside] >= lo)
        if max_frames:
            fits &= inside - a <= max_frames
        if fits.any():
            cut, equal = int(inside[fits][-1]), None
        else:  # the next of the equal pieces of the rest (kept, so no keyframe: the plain split)
            equal = equal or _equal_pieces(times, fps, a, b, max_s, max_frames)
            cut = equal.pop(0)[1]
        spans.append((a, cut))
        a = cut
    return spans + (equal if equal else _equal_pieces(times, fps, a, b, max_s, max_frames))


def _equal_pieces(times: np.ndarray, fps: float, a: int, b: int, max_s: float, max_frames: int | None):
    n = len(times)
    end_t = lambda i: float(times[i]) if i < n else float(times[-1]) + 1.0 / (fps or 25.0)  # noqa: E731
    t0, t1 = float(times[a]), end_t(b)
    pieces = max(1, math.ceil((t1 - t0) / max_s - 1e-9), math.ceil((b - a) / max_frames) if max_frames else 1)
    while True:
        targets = [t0 + i * (t1 - t0) / pieces for i in range(1, pieces)]
        inner = [a + int(np.searchsorted(times[a:b], x, side="left")) for x in targets]
        edges = [a, *inner, b]
        spans = [(s, e) for s, e in zip(edges[:-1], edges[1:]) if e > s]
        ok = all(end_t(e) - float(times[s]) <= max_s + 1e-6 and (not max_frames or e - s <= max_frames)
                 for s, e in spans)
        if ok or pieces >= b - a:
            return spans
        pieces += 1


def video_row(a: VideoAnalysis, num_clips: int, segments: int = 1) -> VideoRow:
    facts = {**a.probe.to_dict(), "fps": a.fps, "num_frames": a.num_frames,
             "duration_s": round(span_times(a, 0, a.num_frames)[1], 6)}
    return VideoRow(video_id=a.video_id, source=a.source, status="ok", **facts,
                    scenes=[{"start_frame": s, "end_frame": e} for s, e in a.cuts.scenes],
                    cuts=list(a.cuts.cuts),
                    transitions=[{"start_frame": s, "end_frame": e} for s, e in a.cuts.gaps],
                    num_clips=num_clips, analysis_seconds=round(a.seconds, 3), analysis_segments=segments,
                    decode_errors=a.decode_errors)


def decode_problem(a: VideoAnalysis) -> tuple[str, str] | None:
    """(error type, message) when the input is not whole: packets that failed to decode
    (``CorruptFrames``) or, without such errors, fewer frames than its header promises (a
    truncated download: ``Truncated``). Clips still come from the frames that decoded; the
    video's status says ``partial``."""
    promised = a.probe.header_frames
    short = bool(promised) and a.num_frames < promised - max(3, 0.02 * promised)
    got = f"{a.num_frames} of {promised} frames" if promised else f"{a.num_frames} frames"
    if a.errors_inside or (a.decode_errors and not short):
        return "CorruptFrames", (f"{a.source}: {a.decode_errors} packet(s) failed to decode ({got} decoded"
                                 f"{'; ' + a.stopped if a.stopped else ''}); clips come from the frames that decoded")
    if short:
        return "Truncated", (f"{a.source}: the header promises {promised} frames but only {a.num_frames} could be "
                             f"decoded ({a.stopped or 'the stream ends early'}); clips cover the decodable "
                             f"{a.num_frames / a.fps if a.fps else 0:.2f} s")
    return None


def no_shot_reason(a: VideoAnalysis) -> str:
    gap = sum(e - s for s, e in a.cuts.gaps)  # every scene gives a clip: here there is none
    if gap >= a.num_frames - 1:
        return (f"{a.source}: all {a.num_frames} frames are black, fades or transitions (cuts.fade_black_level, "
                "cuts.max_transition_s); no shot to cut a clip from")
    return (f"{a.source}: every shot is shorter than cuts.min_scene_s ({a.num_frames} frames, "
            f"{len(a.cuts.cuts)} cuts); no shot to cut a clip from")


def finalise(a: VideoAnalysis, cfg, segments: int = 1) -> tuple[VideoRow, list[ClipRow], ErrorRow | None]:
    """The video row and clip rows of an analysis, with its status: ``ok``, ``partial`` (not
    whole, see :func:`decode_problem`; its errors row is returned too) or ``no_usable_shot``
    (nothing to cut: the reason is in ``error_message``)."""
    clips = clip_rows(a, cfg)
    row = video_row(a, len(clips), segments)
    problem = decode_problem(a)
    if problem:
        row = row.replace(status="partial", error_type=problem[0], error_message=problem[1])
    if not clips:
        row = row.replace(status="no_usable_shot", error_type="NoUsableShot",
                          error_message=no_shot_reason(a) + (f"; also {problem[1]}" if problem else ""))
    return row, clips, error(a.source, "decode", *problem) if problem else None


def clip_rows(a: VideoAnalysis, cfg) -> list[ClipRow]:
    """The clip rows of an analysis: spans, motion, and the columns of the flow-based stages."""
    spans = plan_clips(a.cuts.scenes, a.fps, max_clip_seconds(a.fps, cfg.clips), cfg.limits.max_frames_per_clip, a.times,
                       a.keys if cfg.clips.keyframe_splits else None, cfg.clips.min_duration_s)
    hooked = [s for s in STAGES if s.clip is not None and any(s.name in p.extra for p in a.motion)]
    framed = [s for s in STAGES if s.clip is not None and any(s.name in v for _, v in a.samples)]
    width, height = displayed_size(a.probe.width, a.probe.height, a.probe.rotation)
    rows = []
    for s, e in spans:
        score, series = clip_motion(a.motion, s, e)
        inside = [p for p in a.motion if p.a >= s and p.b < e]
        columns = {k: v for st in hooked for k, v in st.clip([p.extra.get(st.name) for p in inside], cfg).items()}
        sampled = [v for i, v in a.samples if s <= i < e]
        columns.update({k: v for st in framed for k, v in st.clip([x.get(st.name) for x in sampled], cfg).items()})
        t0, t1 = span_times(a, s, e)
        rows.append(ClipRow(
            clip_id=clip_id_for(a.video_id, s, e), video_id=a.video_id, source=a.source,
            start_frame=s, end_frame=e, start_time=round(t0, 6), end_time=round(t1, 6),
            start_pts=int(a.pts[s]) if a.pts is not None else None,
            end_pts=int(a.pts[e]) if a.pts is not None and e < len(a.pts) else None,
            fps=round((e - s) / (t1 - t0), 6) if t1 > t0 else a.fps,
            width=width, height=height, rotation=a.probe.rotation, num_frames=e - s,
            duration_s=round(t1 - t0, 6),
            motion_score=None if score is None else round(score, 4), motion_series=series,
            reject_reasons=[], **columns))
    return rows

"""Benchmark: the dedup stage's precision, recall and cost.

    python benchmarks/bench_dedup.py [--videos ../shared/videos] [--seconds 12] [--clips 10000]

Part A, the real pipeline on web-style copies. From every shared video (its first ``--seconds``)
an original is made (re-encoded at CRF 16), then eight copies of it (``tests/media.py``
``variant``: H.264 at CRF 34, half size, VP9/WebM, trimmed, 10% cropped, a logo, a subtitle,
mirrored). ``vidcurate run --stages probe,cuts,motion,dedup --no-clips`` (motion filter off, so
every clip takes part) runs on all of them as one folder. Truth: clips of one original and its
copies whose spans overlap by half of the shorter (times shifted back for the trim) are copies
of each other, and so are the two ``carphone`` files. Precision: share of clips rejected as
duplicates whose kept clip is a true copy. Recall: share of the clips that should go (all but
one per true group) that do, overall and per kind of copy.

Part B, matching at scale: ``--clips`` signatures of 4-20 sampled frames, each its own "video".
A tenth are windows at random places in the shared videos' real frames (2 fps, the motion
stage's grey picture): windows of one source that overlap are true copies. The rest are unique:
a camera panning over a random texture of its own (random grain, contrast and speed). Any match
but overlapping windows of one source is false. Timed: the in-memory matcher (``vidcurate
filter``) and the Beam transform (FnApiRunner, 2 workers), per clip.

Part C, the signature's cost: the analysis of the shared videos with and without the stage
(process CPU, 3 interleaved rounds, medians).

Results: ``benchmarks/results/dedup.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]
RESULTS = REPO / "benchmarks" / "results"
CACHE = REPO / "benchmarks" / ".cache" / "dedup"
RELATED = {"carphone_distorted_qcif": "carphone_pristine_qcif"}  # one video, two qualities (frame-aligned)
CUT_FROM = {"sintel_fadein_5s_480p": "sintel_trailer_480p"}  # the same footage, offset unknown
VIDEO_EXT = (".mp4", ".webm", ".mkv", ".avi", ".mov")


def build_set(videos: Path, seconds: float) -> Path:
    import av
    from media import VARIANTS, variant

    out = CACHE / f"set-{seconds:g}s"
    out.mkdir(parents=True, exist_ok=True)
    for src in sorted(p for p in videos.iterdir() if p.suffix in VIDEO_EXT):
        name = src.stem
        original = out / f"{name}__original.mp4"
        if not original.exists():
            variant(str(src), str(original), "original", max_s=seconds)
        with av.open(str(original)) as c:
            if float(c.duration or 0) / 1e6 < 4.0:  # too short for a trimmed copy and a 2 s clip
                original.unlink()
                continue
        for kind in VARIANTS:
            dst = out / f"{name}__{kind}.{'webm' if kind == 'webm' else 'mp4'}"
            if not dst.exists():
                variant(str(original), str(dst), kind)
    return out


def family_and_kind(source: str) -> tuple[str, str]:
    name, kind = Path(source).stem.rsplit("__", 1)
    return RELATED.get(name, name), kind


def true_groups(clips: list[dict]) -> dict[str, int]:
    """clip_id -> true group number (union of same-family clips overlapping by half)."""
    parent = {c["clip_id"]: c["clip_id"] for c in clips}

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def span(c):
        shift = 1.3 if family_and_kind(c["source"])[1] == "trim" else 0.0
        return c["start_time"] + shift, c["end_time"] + shift

    by_family: dict[str, list[dict]] = {}
    for c in clips:
        by_family.setdefault(family_and_kind(c["source"])[0], []).append(c)
    for members in by_family.values():
        for i, a in enumerate(members):
            for b in members[i + 1:]:
                (a0, a1), (b0, b1) = span(a), span(b)
                if min(a1, b1) - max(a0, b0) >= 0.5 * min(a1 - a0, b1 - b0):
                    parent[find(a["clip_id"])] = find(b["clip_id"])
    roots = {}
    return {c["clip_id"]: roots.setdefault(find(c["clip_id"]), len(roots)) for c in clips}


def part_a(videos: Path, seconds: float, shared_keys: int) -> dict:
    from pipeline.tables import read_rows

    folder = build_set(videos, seconds)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "run")
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pipeline.cli", "run", "--input", str(folder), "--output", out,
                        "--stages", "probe,cuts,motion,dedup", "--no-clips", "--set", "filters.min_motion=null",
                        "--set", f"dedup.min_shared_keys={shared_keys}"],
                       check=True, cwd=REPO, capture_output=True)
        wall = time.perf_counter() - t
        clips = [c for c in read_rows(out, "clips")]
    taking_part = [c for c in clips if c["keep"] or c["reject_reasons"] == ["duplicate"]]
    group = true_groups(taking_part)
    members: dict[int, list[dict]] = {}
    for c in taking_part:
        members.setdefault(group[c["clip_id"]], []).append(c)
    dups = [c for c in taking_part if c["duplicate_of"]]
    correct = [c for c in dups if group.get(c["duplicate_of"]) == group[c["clip_id"]]]
    by_id = {c["clip_id"]: c for c in clips}

    def related(a, b):
        fa, fb = family_and_kind(a["source"])[0], family_and_kind(b["source"])[0]
        return fa == fb or CUT_FROM.get(fa) == fb or CUT_FROM.get(fb) == fa

    lookalike = [c for c in dups if c not in correct and related(c, by_id[c["duplicate_of"]])]
    should_go = sum(len(m) - 1 for m in members.values())
    extra_kept = sum(max(0, sum(1 for c in m if c["keep"]) - 1) for m in members.values())
    per_kind: dict[str, list[int]] = {}
    for m in members.values():
        if len(m) < 2:
            continue
        kept = {c["clip_id"] for c in m if c["keep"]}
        for c in m:
            grouped = (c["duplicate_of"] is not None and group.get(c["duplicate_of"]) == group[c["clip_id"]]) or (
                c["clip_id"] in kept and len(kept) == 1)
            per_kind.setdefault(family_and_kind(c["source"])[1], [0, 0])
            per_kind[family_and_kind(c["source"])[1]][0] += grouped
            per_kind[family_and_kind(c["source"])[1]][1] += 1
    wrong = [(Path(c["source"]).name, c["start_time"], Path(by_id[c["duplicate_of"]]["source"]).name,
              by_id[c["duplicate_of"]]["start_time"], c["duplicate_similarity"])
             for c in dups if c not in correct]
    false = len(dups) - len(correct) - len(lookalike)
    return {"files": len({c["source"] for c in clips}), "clips": len(clips), "taking_part": len(taking_part),
            "duplicates_found": len(dups), "true_copy": len(correct), "same_video_lookalike": len(lookalike),
            "other_video": false, "precision": 1 - false / max(1, len(dups)),
            "precision_strict": len(correct) / max(1, len(dups)),
            "should_go": should_go, "recall": (should_go - extra_kept) / max(1, should_go),
            "per_kind_grouped": {k: round(a / b, 3) for k, (a, b) in sorted(per_kind.items())},
            "false_matches": wrong[:20], "wall_s": round(wall, 1), "seconds_per_file": seconds}


def sampled_thumbs(videos: Path) -> dict[str, list[bytes | None]]:
    """Every video's motion-stage samples (2 fps, 128 px grey) as dedup signatures."""
    import av

    from transforms.dedup import thumb
    from transforms.pixels import scaled_size, to_gray

    out = {}
    for src in sorted(p for p in videos.iterdir() if p.suffix in VIDEO_EXT):
        sigs, nxt = [], 0.0
        with av.open(str(src)) as c:
            s = c.streams.video[0]
            w, h = scaled_size(s.codec_context.width, s.codec_context.height, 128)
            for f in c.decode(s):
                if float(f.time or 0) + 1e-6 >= nxt:
                    sigs.append(thumb(to_gray(f, w, h)))
                    nxt += 0.5
        out[src.stem] = sigs
    return out


def unique_clip(rng, length: int) -> tuple:
    """Signatures of a camera panning over a random texture of its own."""
    import cv2

    from transforms.dedup import thumb

    grain = float(rng.uniform(0.8, 4.0))
    speed = int(rng.integers(1, 8))
    tex = rng.integers(0, 256, (72, 128 + speed * length), dtype=np.uint8)
    tex = cv2.GaussianBlur(tex, (0, 0), grain).astype(np.float32)
    tex = np.clip((tex - tex.mean()) * rng.uniform(2, 8) + 128, 0, 255).astype(np.uint8)
    return tuple(t for t in (thumb(np.ascontiguousarray(tex[:, speed * i:speed * i + 128])) for i in range(length))
                 if t is not None)


def part_b(videos: Path, n: int, shared_keys: int) -> dict:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipeline.config import Config, with_changes
    from pipeline.dedup import Deduplicate
    from transforms import dedup
    from transforms.rows import ClipRow

    cfg = with_changes(Config(), dedup={"min_shared_keys": shared_keys})
    frames = {k: v for k, v in sampled_thumbs(videos).items() if sum(x is not None for x in v) >= 4}
    rng = np.random.default_rng(0)
    names = sorted(frames)
    entries, spans = [], {}
    for i in range(n):
        length = int(rng.integers(4, 21))
        if rng.random() < 0.1:
            src = names[rng.integers(len(names))]
            start = int(rng.integers(0, max(1, len(frames[src]) - length)))
            thumbs = tuple(x for x in frames[src][start:start + length] if x is not None)
        else:
            src, start, thumbs = f"synthetic-{i}", 0, unique_clip(rng, length)
        vid = f"{i:016x}"
        if len(thumbs) >= cfg.dedup.min_frames:
            entries.append(dedup.Entry(f"{vid}_{start:07d}_{start + length:07d}", vid, thumbs, (float(length),)))
            spans[entries[-1].clip_id] = (src, start, start + length)
    t = time.perf_counter()
    found = dedup.find_duplicates(entries, cfg)
    memory_s = time.perf_counter() - t

    def kind_of(a, b):
        (sa, a0, a1), (sb, b0, b1) = spans[a], spans[b]
        fa, fb = RELATED.get(sa, sa), RELATED.get(sb, sb)
        if fa == fb:
            return "true_copy" if min(a1, b1) - max(a0, b0) > 0 else "same_video_lookalike"
        if CUT_FROM.get(sa) == sb or CUT_FROM.get(sb) == sa:
            return "related_source"
        return "false"

    kinds = [kind_of(c, kept) for c, (kept, _, _) in found.items()]
    false = kinds.count("false")
    has_copy = set()
    for a in spans:
        for b in spans:
            if a < b and kind_of(a, b) == "true_copy":
                (_, a0, a1), (_, b0, b1) = spans[a], spans[b]
                if min(a1, b1) - max(a0, b0) >= 0.5 * min(a1 - a0, b1 - b0):
                    has_copy |= {a, b}
    grouped = set(found) | {k for k, _, _ in found.values()}
    rows = [ClipRow(clip_id=e.clip_id, video_id=e.video_id, source=f"{e.video_id}.mp4", start_frame=0, end_frame=1,
                    width=100, height=100, duration_s=e.rank[0], dedup_thumbs=list(e.thumbs)) for e in entries]
    t = time.perf_counter()
    with beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner", "--direct_num_workers=2",
                                                "--direct_running_mode=multi_processing"])) as p:
        _ = p | beam.Create(rows) | Deduplicate(cfg) | beam.combiners.Count.Globally()
    beam_s = time.perf_counter() - t
    real = sum(1 for c in spans.values() if not c[0].startswith("synthetic-"))
    return {"signatures": len(entries), "real_windows": real, "sources": len(names), "duplicates_found": len(found),
            **{k: kinds.count(k) for k in ("true_copy", "same_video_lookalike", "related_source")},
            "false_matches": false, "precision": 1 - false / max(1, len(found)),
            "recall": len(has_copy & grouped) / max(1, len(has_copy)), "with_a_copy": len(has_copy),
            "in_memory_s": round(memory_s, 2), "in_memory_ms_per_clip": round(1000 * memory_s / len(entries), 3),
            "beam_s": round(beam_s, 1), "beam_ms_per_clip": round(1000 * beam_s / len(entries), 2)}


def part_c(videos: Path, rounds: int = 3) -> dict:
    """The signature's cost in the analysis decode: analyze_video with and without the stage,
    rounds interleaved, process CPU time, medians."""
    import statistics

    from pipeline.config import Config
    from transforms.analyze import analyze_video

    cfg = Config()
    files = sorted(str(p) for p in videos.iterdir() if p.suffix in VIDEO_EXT)
    times: dict[str, list[float]] = {"without": [], "with": []}
    for _ in range(rounds):
        for name, stages in (("without", ("probe", "cuts", "motion")), ("with", ("probe", "cuts", "motion", "dedup"))):
            t = time.process_time()
            for f in files:
                analyze_video(f, cfg, stages)
            times[name].append(time.process_time() - t)
    a, b = statistics.median(times["without"]), statistics.median(times["with"])
    return {"files": len(files), "cpu_s_without": round(a, 2), "cpu_s_with": round(b, 2),
            "added": round(b / a - 1, 4), "rounds": times}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", default=str(REPO.parent / "shared" / "videos"))
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--clips", type=int, default=10_000)
    ap.add_argument("--min-shared-keys", type=int, default=1, help="dedup.min_shared_keys (results: dedup-kN.*)")
    ap.add_argument("--part", choices=("all", "copies", "scale", "cost"), default="all",
                    help="run one part (the other's last figures are kept)")
    args = ap.parse_args()
    videos = Path(args.videos)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = "dedup" if args.min_shared_keys == 1 else f"dedup-k{args.min_shared_keys}"
    path = RESULTS / f"{stem}.json"
    result = json.loads(path.read_text()) if path.exists() else {}
    for part, fn in (("copies", lambda: part_a(videos, args.seconds, args.min_shared_keys)),
                     ("scale", lambda: part_b(videos, args.clips, args.min_shared_keys)),
                     ("cost", lambda: part_c(videos))):
        if args.part in ("all", part):
            result[part] = fn()
            path.write_text(json.dumps(result, indent=2))
    a, b = result["copies"], result["scale"]
    md = ["| part | figure | value |", "|---|---|---|",
          f"| copies | files / clips taking part | {a['files']} / {a['taking_part']} |",
          f"| copies | rejected as duplicates: of a true copy / of another part of the same (or a related) "
          f"video / of an unrelated video | {a['true_copy']} / {a['same_video_lookalike']} / {a['other_video']} |",
          f"| copies | precision (another video's clip is wrong) | {a['precision']:.3f} |",
          f"| copies | recall | {a['recall']:.3f} (of {a['should_go']} that should go) |",
          *(f"| copies | grouped: {k} | {v:.3f} |" for k, v in a["per_kind_grouped"].items()),
          f"| copies | whole run (analysis + dedup) | {a['wall_s']} s |",
          f"| scale | signatures (real windows) | {b['signatures']} ({b['real_windows']}) |",
          f"| scale | duplicates: true copy / look-alike of the same video / related source / false | "
          f"{b['true_copy']} / {b['same_video_lookalike']} / {b['related_source']} / {b['false_matches']} |",
          f"| scale | precision / recall (windows overlapping another by half) | {b['precision']:.4f} / "
          f"{b['recall']:.3f} of {b['with_a_copy']} |",
          f"| scale | in memory | {b['in_memory_s']} s ({b['in_memory_ms_per_clip']} ms per clip) |",
          f"| scale | Beam transform, FnApiRunner 2 workers | {b['beam_s']} s ({b['beam_ms_per_clip']} ms per clip) |"]
    if "cost" in result:
        c = result["cost"]
        md.append(f"| cost | analysis CPU of the {c['files']} shared videos without / with dedup | {c['cpu_s_without']} s / "
                  f"{c['cpu_s_with']} s ({100 * c['added']:+.1f}%) |")
    (RESULTS / f"{stem}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())

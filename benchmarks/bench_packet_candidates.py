"""Can packets alone say where to decode? (issue 18: a coarse pass that decodes fewer pictures)

    python benchmarks/bench_packet_candidates.py [--parts dev held ...] [--factors 1.5 2 3]

A pass that leaves pictures undecoded must still find every transition. The cheapest guide is
the compressed stream itself: a keyframe (x264 puts one at a detected scene change), or a
picture much larger than the recent ones of its kind (reference or not, ``transforms.h264
.is_reference``), marks a candidate; only around candidates would every picture be decoded.
This demuxes the labelled cut set of ``bench_cuts.py`` (built and cached by it) and reports,
for each size factor, how many labelled transitions have a candidate within 2 frames of their
span, and how many candidates there are per 100 frames (in the transition files and in the
trap files, which hold no boundary). No picture is decoded. Results:
``benchmarks/results/packet_candidates.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import av
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "benchmarks"), str(REPO / "tests")]

import bench_cuts  # noqa: E402  (the labelled set and its cache)

from transforms.h264 import is_reference  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
WINDOW = 12  # recent pictures of the same kind a size is compared with (their median)


def packets(path: str) -> list[tuple[int, int, bool, bool]]:
    """(display index, size, keyframe, reference) per picture, in decode order."""
    with av.open(path) as c:
        rows = [(p.pts, p.size, p.is_keyframe, is_reference(bytes(p), 4)) for p in c.demux(video=0) if p.size]
    shown = {pts: i for i, pts in enumerate(sorted(r[0] for r in rows))}
    return [(shown[pts], size, key, ref) for pts, size, key, ref in rows]


def candidates(rows, factor: float) -> set[int]:
    """Display indices of keyframes and of pictures over ``factor`` x the median size of the
    last ``WINDOW`` pictures of their kind (reference or not)."""
    out, seen = set(), {True: [], False: []}
    for index, size, key, ref in rows:
        recent = seen[ref][-WINDOW:]
        if key or (len(recent) >= 3 and size > factor * float(np.median(recent))):
            out.add(index)
        seen[ref].append(size)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", default=str(REPO.parent / "shared" / "videos"))
    ap.add_argument("--parts", nargs="+", default=list(bench_cuts.PARTS), choices=list(bench_cuts.PARTS))
    ap.add_argument("--factors", nargs="+", type=float, default=[1.5, 2.0, 3.0])
    args = ap.parse_args(argv)
    files = [t for part in args.parts for t in bench_cuts.build_part(part, Path(args.videos))]
    demuxed = {t.path: packets(t.path) for t in files}
    rows = []
    for factor in args.factors:
        found, total, missed = 0, 0, Counter()
        cands = {"transitions": [0, 0], "traps": [0, 0]}  # candidates, frames
        for t in files:
            c = candidates(demuxed[t.path], factor)
            key = "traps" if t.trap else "transitions"
            cands[key][0] += len(c)
            cands[key][1] += t.frames
            for tr in t.transitions:
                total += 1
                if any(tr.start - 2 <= x <= tr.end + 2 for x in c):
                    found += 1
                else:
                    missed[tr.kind] += 1
        rows.append({"factor": factor, "found": found, "transitions": total,
                     "candidates_per_100_frames": round(100 * cands["transitions"][0] / cands["transitions"][1], 1),
                     "trap_candidates_per_100_frames": round(100 * cands["traps"][0] / max(1, cands["traps"][1]), 1),
                     "missed_by_kind": dict(sorted(missed.items()))})
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "packet_candidates.json").write_text(json.dumps({"parts": args.parts, "rows": rows}, indent=2) + "\n")
    lines = ["| size factor | transitions with a candidate | candidates / 100 frames | on traps | missed |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['factor']} | {r['found']} / {r['transitions']} | {r['candidates_per_100_frames']} | "
              f"{r['trap_candidates_per_100_frames']} | "
              f"{', '.join(f'{k} {v}' for k, v in r['missed_by_kind'].items()) or 'none'} |" for r in rows]
    (RESULTS / "packet_candidates.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

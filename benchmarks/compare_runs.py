"""Same tables and shards before and after a change.

    python benchmarks/compare_runs.py make OUT [--cases examples,shared,models,filter]
    python benchmarks/compare_runs.py compare OLD NEW

``make`` runs the cases with the installed vidcurate (run it once on the old checkout and once
on the new one); ``compare`` reads both sets of run directories and reports every difference:
table rows (keyed by video_id / clip_id / error identity; timing columns left out, floats
compared to 1e-6 relative), shard members (names and bytes), and summary counts. Exit status 1
when anything differs.

Cases: ``examples`` (the README's run on examples/videos), ``shared`` (../shared/videos, default
stages), ``models`` (examples with every model stage on the tiny test models; needs
../shared/weights), ``filter`` (``vidcurate filter`` on the examples run with other bounds).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

# Columns that measure time taken, not what was computed.
VOLATILE = {"analysis_seconds", "wall_seconds", "video_seconds_per_wall_second"}
KEYS = {"videos": ("video_id",), "clips": ("clip_id",), "errors": ("video_id", "clip_id", "stage", "error_type")}


# Video ids hash the source path: both checkouts read the inputs through these links.
INPUTS = "/tmp/vidcurate-compare-inputs"


def _inputs(name: str, folder: Path) -> str:
    target = os.path.join(INPUTS, name)
    os.makedirs(target, exist_ok=True)
    for f in sorted(folder.iterdir()):
        link = os.path.join(target, f.name)
        if f.suffix in (".mp4", ".webm", ".avi", ".mkv", ".mov") and not os.path.lexists(link):
            os.symlink(f, link)
    return target


def make(out: str, cases: list[str]) -> None:
    from pipeline.config import Config, with_changes
    from pipeline.refilter import refilter
    from pipeline.run import run

    out = os.path.abspath(out)
    os.makedirs(out, exist_ok=True)
    shared = Path(os.environ.get("VIDCURATE_SHARED", ROOT.parent / "shared")) / "videos"
    examples = _inputs("examples", ROOT / "examples" / "videos")
    if "examples" in cases or "filter" in cases:
        run(examples, os.path.join(out, "examples"), Config())
    if "filter" in cases:
        cfg = with_changes(Config(), filters={"min_motion": 1.0, "drop_bottom_percent": {"motion_score": 25}})
        refilter(os.path.join(out, "examples"), os.path.join(out, "filter"), cfg)
    if "shared" in cases and shared.is_dir():
        run(_inputs("shared", shared), os.path.join(out, "shared"), Config())
    if "models" in cases:
        from tiny_models import AESTHETIC_MLP, model_config_overrides, tiny_model_set

        models = tiny_model_set(Path(INPUTS) / "_tiny_models")  # same paths in both runs
        cfg = with_changes(Config(), clips={"max_side": 256}, filters={"min_motion": 0.05},
                           **model_config_overrides(models, AESTHETIC_MLP))
        run(examples, os.path.join(out, "models"), cfg,
            stages="probe,cuts,motion,ocr,clip,caption")


def _generation(run_dir: str) -> str:
    marker = os.path.join(run_dir, "CURRENT")
    if os.path.exists(marker):
        return os.path.join(run_dir, open(marker, encoding="utf-8").read().strip())
    return run_dir


def _rows(gen: str, table: str) -> dict[tuple, dict]:
    import pyarrow.parquet as pq

    directory = os.path.join(gen, table)
    rows = []
    for f in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
        if f.endswith(".parquet"):
            rows += pq.read_table(os.path.join(directory, f)).to_pylist()
    return {tuple(r.get(k) for k in KEYS[table]): r for r in rows}


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-6 * max(1.0, abs(a), abs(b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):  # a column one side lacks counts as null there
        return all(_same(a.get(k), b.get(k)) for k in a.keys() | b.keys())
    return a == b


def _shards(gen: str) -> dict[str, dict[str, bytes]]:
    directory = os.path.join(gen, "shards")
    out = {}
    for f in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
        if f.endswith(".tar"):
            with tarfile.open(os.path.join(directory, f)) as tar:
                out[f] = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
    return out


def _same_pictures(a: bytes, b: bytes) -> bool:
    """Two encodings of the same frames: x264 is not bit-exact between runs here (the old code
    against itself differs on one Sintel clip by 0.01-0.12 grey levels per frame)."""
    import io

    import av
    import numpy as np

    def frames(data):
        with av.open(io.BytesIO(data)) as c:
            return [f.to_ndarray(format="gray").astype(np.int16) for f in c.decode(video=0)]

    x, y = frames(a), frames(b)
    return len(x) == len(y) and all(float(np.abs(p - q).mean()) < 0.5 for p, q in zip(x, y))


def compare_run(old: str, new: str) -> list[str]:
    problems = []
    go, gn = _generation(old), _generation(new)
    sa, sb = _shards(go), _shards(gn)
    reencoded = {m[:-4] for name in sa.keys() & sb.keys() for m in sa[name].keys() & sb[name].keys()
                 if m.endswith(".mp4") and sa[name][m] != sb[name][m] and _same_pictures(sa[name][m], sb[name][m])}
    if reencoded:
        print(f"  note: {len(reencoded)} clip(s) encoded to other bytes with the same pictures: {sorted(reencoded)}")
    for table in ("videos", "clips", "errors"):
        a, b = _rows(go, table), _rows(gn, table)
        if a.keys() != b.keys():
            problems.append(f"{table}: rows only in old {sorted(a.keys() - b.keys())[:3]}, "
                            f"only in new {sorted(b.keys() - a.keys())[:3]}")
        for key in sorted(a.keys() & b.keys(), key=str):
            for col in sorted(set(a[key]) | set(b[key])):
                if col in VOLATILE or (col == "clip_bytes" and key[0] in reencoded):
                    continue
                if not _same(a[key].get(col), b[key].get(col)):
                    problems.append(f"{table} {key} {col}: {str(a[key].get(col))[:80]} != {str(b[key].get(col))[:80]}")
    if sa.keys() != sb.keys():
        problems.append(f"shards: {sorted(sa)} != {sorted(sb)}")
    for name in sorted(sa.keys() & sb.keys()):
        if sa[name].keys() != sb[name].keys():
            problems.append(f"{name}: members differ")
        for member in sorted(sa[name].keys() & sb[name].keys()):
            x, y = sa[name][member], sb[name][member]
            key = member.partition(".")[0]
            if member.endswith(".json"):
                mx, my = json.loads(x), json.loads(y)
                if key in reencoded:
                    mx.pop("clip_bytes", None), my.pop("clip_bytes", None)
                if not _same(mx, my):
                    problems.append(f"{name}/{member}: json differs")
            elif x != y and key not in reencoded:
                problems.append(f"{name}/{member}: {len(x)} != {len(y)} bytes or content differs")
    return problems


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make", help="run the cases into OUT")
    m.add_argument("out")
    m.add_argument("--cases", default="examples,shared,models,filter")
    c = sub.add_parser("compare", help="compare two directories written by make")
    c.add_argument("old")
    c.add_argument("new")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.cmd == "make":
        make(args.out, args.cases.split(","))
        return 0
    failed = False
    for case in sorted(d for d in os.listdir(args.old) if not d.startswith("_")):
        if not os.path.isdir(os.path.join(args.new, case)):
            print(f"{case}: missing in {args.new}")
            failed = True
            continue
        problems = compare_run(os.path.join(args.old, case), os.path.join(args.new, case))
        print(f"{case}: {'identical' if not problems else f'{len(problems)} difference(s)'}")
        for line in problems[:40]:
            print("   ", line)
        failed |= bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

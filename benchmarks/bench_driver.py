"""Benchmark: what the driver costs as the number of inputs grows (issue 14).

    python benchmarks/bench_driver.py [--sizes 5000,50000] [--modes driver,pipeline,remote]

A manifest of N entries: 10 real short videos (the committed examples, linked under ten names)
and N - 10 files that do not exist, each of which must end as an error row. ``vidcurate run
--no-clips --stages probe,cuts,motion`` on the local runner, once per size and planning mode
(``runner.plan_inputs``: ``driver``, the local default, which lists the inputs and deals them by
cost; ``pipeline``, the remote runners' default, where a worker lists them and resume is a
join). On the local runner the runner itself (Beam's FnApiRunner: its data plane and the buffers
between stages) lives in the driver process, so mode ``remote`` also runs the job the way a
cluster does: Beam's job service in a process of its own (``local_job_service_main``), SDK workers
from a worker pool process (``worker_pool_main``), the driver submitting with
``--runner=PortableRunner --environment_type=EXTERNAL`` (planning in the pipeline, the remote
default) and then only waiting. Measured for the driver process alone (the job runs in a child process whose own
``ru_maxrss`` it reports at exit; its SDK workers are not counted): wall seconds, seconds per
input, peak resident memory. Checked: every input accounted for (videos table rows == N; N - 10
``missing`` error rows). Also: the submitted job graph's bytes at 1,000 and 50,000 inputs with
planning in the pipeline.

Results: ``benchmarks/results/driver.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
EXAMPLES = REPO / "examples" / "videos"

# The job in a child process: the CLI, then this process's own peak RSS (KiB on Linux).
CHILD = """
import json, resource, sys
from pipeline.cli import main
rc = main(sys.argv[2:])
with open(sys.argv[1], "w") as fh:
    json.dump({"rc": rc, "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}, fh)
sys.exit(rc)
"""


def make_manifest(folder: Path, n: int) -> Path:
    videos = folder / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    real = sorted(p for p in EXAMPLES.iterdir() if p.suffix == ".mp4")
    lines = []
    for i in range(10):
        link = videos / f"real-{i:02d}{real[i % len(real)].suffix}"
        if not link.exists():
            os.symlink(real[i % len(real)], link)
        lines.append(str(link))
    lines += [str(folder / "missing" / f"video-{i:07d}.mp4") for i in range(n - 10)]
    manifest = folder / f"inputs-{n}.txt"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(port: int, timeout: float = 60) -> None:
    import socket

    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on port {port}")


def cluster() -> tuple[list[str], list[subprocess.Popen]]:
    """A job service and a worker pool, each a process of its own: (Beam flags, processes)."""
    job, pool = free_port(), free_port()
    procs = [subprocess.Popen([sys.executable, "-m", "apache_beam.runners.portability.local_job_service_main",
                               f"--port={job}"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True),
             subprocess.Popen([sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main",
                               f"--service_port={pool}"], cwd=REPO, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)]
    wait_for(job)
    wait_for(pool)
    return ["--runner=PortableRunner", f"--job_endpoint=localhost:{job}", "--environment_type=EXTERNAL",
            f"--environment_config=localhost:{pool}"], procs


def one_run(work: Path, n: int, mode: str) -> dict:
    import signal

    manifest = make_manifest(work, n)
    out = work / f"run-{mode}-{n}"
    stats = work / f"stats-{mode}-{n}.json"
    flags, procs = cluster() if mode == "remote" else ([], [])
    plan = "auto" if mode == "remote" else mode
    cmd = [sys.executable, "-c", CHILD, str(stats), "run", "--input", str(manifest), "--output", str(out),
           "--no-clips", "--stages", "probe,cuts,motion", "--set", f"runner.plan_inputs={plan}", *flags]
    t0 = time.perf_counter()
    try:
        r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{mode} {n}: rc {r.returncode}\n{r.stderr[-3000:]}")
    sys.path.insert(0, str(REPO))
    from pipeline.tables import read_table

    videos = read_table(str(out), "videos").to_pylist()
    errors = read_table(str(out), "errors").to_pylist()
    missing = sum(1 for e in errors if "no such file" in (e["message"] or "").lower())
    accounted = len(videos) == n and sum(1 for v in videos if v["status"] == "error") == n - 10 and missing == n - 10
    peak = json.loads(stats.read_text())["maxrss_kib"] / 1024
    return {"mode": mode, "inputs": n, "wall_s": round(wall, 1), "ms_per_input": round(1000 * wall / n, 3),
            "driver_peak_mib": round(peak, 1), "videos_rows": len(videos), "missing_error_rows": missing,
            "every_input_accounted_for": accounted}


def graph_bytes(work: Path, n: int) -> int:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    sys.path.insert(0, str(REPO))
    from pipeline import graph
    from pipeline.config import Config

    manifest = make_manifest(work / f"graph-{n}", n)
    out = str(work / f"graph-{n}" / "out")
    p = beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"]))
    graph.build(p, [], out, out + "/gen", Config(), ["probe", "cuts", "motion"], write_media=False, spec=str(manifest))
    return len(p.to_runner_api().SerializeToString())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="5000,50000")
    ap.add_argument("--modes", default="driver,pipeline,remote")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-driver-") as tmp:
        work = Path(tmp)
        for mode in args.modes.split(","):
            for n in sizes:
                row = one_run(work, n, mode)
                print(json.dumps(row), flush=True)
                rows.append(row)
        graphs = {n: graph_bytes(work, n) for n in (1_000, 50_000)}
    ratios = {}
    for mode in args.modes.split(","):
        small, large = (next(r for r in rows if r["mode"] == mode and r["inputs"] == n) for n in (min(sizes), max(sizes)))
        ratios[mode] = {"time_per_input": round(large["ms_per_input"] / small["ms_per_input"], 3),
                        "driver_peak_memory": round(large["driver_peak_mib"] / small["driver_peak_mib"], 3)}
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "python": platform.python_version(),
              "runs": rows, "ratios_largest_to_smallest": ratios, "graph_bytes_planned_in_pipeline": graphs}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "driver.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["| planning | inputs | wall s | ms per input | driver peak MiB | all accounted for |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['mode']} | {r['inputs']:,} | {r['wall_s']} | {r['ms_per_input']} | {r['driver_peak_mib']} | "
              f"{'yes' if r['every_input_accounted_for'] else 'NO'} |" for r in rows]
    lines += ["", "| planning | time per input, largest / smallest | driver peak memory, largest / smallest |",
              "|---|---|---|"]
    lines += [f"| {m} | {v['time_per_input']} | {v['driver_peak_memory']} |" for m, v in ratios.items()]
    lines += ["", f"Job graph with planning in the pipeline: {graphs[1_000]:,} bytes at 1,000 inputs, "
              f"{graphs[50_000]:,} at 50,000."]
    (RESULTS / "driver.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""Dealing analysis work to a fixed set of local workers, balanced by estimated cost.

Beam's local runner (FnApiRunner) splits each stage's input among its worker processes up
front, with no dynamic rebalancing: after a ``Reshuffle`` it deals elements out in a pattern
that ignores their size, so one worker can get the long 1080p files and finish seconds after
the other went idle. On the local runner vidcurate therefore deals the work itself:

* ``plan``: longest-processing-time-first greedy assignment of work items to ``workers``
  buckets by estimated cost;
* :class:`DealToWorkers`: keys each item by its bucket and groups, so each bucket is one
  element and runs on one worker (the runner gives distinct keys to distinct workers);
* ``plan_work`` also splits a video that alone would outweigh half a worker's share into
  segments, and :class:`Deal` deals segments out the same way;
* :class:`SharedQueue`: for work no estimate can cost well before doing it (clip writing: what
  stream copy saves depends on where a source's keyframes fall), every worker gets the whole
  list and takes the next item no other worker has taken, so one that finishes early takes more.

Remote runners (Dataflow, Flink, Spark) rebalance dynamically and have many more workers: they
keep the plain ``Reshuffle``.
"""

from __future__ import annotations

import atexit
import heapq
import os
import shutil
import tempfile

import apache_beam as beam

# Analysis cost model: per decoded frame, decoding grows with the pixel count and the
# detectors + flow cost about as much as decoding 400k pixels (measured at 128 px analysis).
PER_FRAME_PIXELS = 400_000
# Probing every input in the driver costs a few ms per local file; above this many inputs the
# file size stands in for the cost (many inputs balance well by themselves anyway).
MAX_PROBED = 2000


def frame_cost(num_frames: float, width: int, height: int) -> float:
    return float(num_frames) * (width * height + PER_FRAME_PIXELS)


def segment_cost(seg) -> float:
    """Analysis cost of a :class:`transforms.segments.Segment`."""
    return frame_cost(seg.frames, seg.index.info.width, seg.index.info.height)


# A job is "small" (pipeline.options: direct_running_mode auto runs it in one process) when it
# has at most SMALL_INPUTS local inputs whose estimated cost is at most SMALL_COST in all:
# about 4 s of analysis on one core here (2.5 ns per unit, measured on the 360p and 1080p sets),
# less than what starting and feeding worker processes costs (about 2 s) plus what a second
# worker would save.
SMALL_INPUTS = 4
SMALL_COST = 1.5e9


def small_job(sources: list[str]) -> bool:
    """Whether the inputs are a job too small to pay for worker processes (see SMALL_COST)."""
    from transforms import decode
    from transforms.storage import local_path

    if not 0 < len(sources) <= SMALL_INPUTS or any(local_path(s) is None for s in sources):
        return False
    total = 0.0
    for s in sources:
        try:
            info = decode.probe(s)
        except Exception:  # noqa: BLE001 - a broken input is cheap: it becomes an error row
            continue
        total += frame_cost(info.num_frames or info.duration_s * (info.fps or 25.0), info.width, info.height)
    return total <= SMALL_COST


def plan(costs: list[float], workers: int) -> list[int]:
    """Bucket of each item: most expensive first, each to the least loaded bucket."""
    heap = [(0.0, w) for w in range(max(1, workers))]
    bucket = [0] * len(costs)
    for i in sorted(range(len(costs)), key=lambda i: -costs[i]):
        load, w = heapq.heappop(heap)
        bucket[i] = w
        heapq.heappush(heap, (load + costs[i], w))
    return bucket


# A video whose estimated cost exceeds this fraction of one worker's share of the run is split
# into segments (a multiple of the worker count), so one heavy file cannot serialise a run...
SPLIT_SHARE = 0.5
# ...unless its segments would be shorter than this (each segment decodes a few seconds of
# overlap at both ends: short segments waste more than they balance).
MIN_SPLIT_S = 20.0


# Cost of a video that is split into segments, in its first step (the demux-only index pass),
# as a fraction of analyzing it whole.
INDEX_PASS_SHARE = 0.03


def plan_work(sources: list[str], cfg, workers: int) -> list[tuple[int, tuple[str, float | None]]]:
    """``(bucket, (source, split_s))`` for each input: the worker bucket of its first step, and
    how to analyze it: segments of ``split_s`` seconds, 0.0 whole, None undecided (an input
    whose header was not read here; the worker reads it).

    Costs come from the headers of local files (remote inputs, failures and runs of more than
    ``MAX_PROBED`` inputs count as equal or by file size). Besides the ``analysis.segment_s``
    duration rule, a video over ``SPLIT_SHARE`` of one worker's share is split into one segment
    per worker. Split videos cost only their index pass here: their segments are dealt out
    separately, by cost. ``segment_s`` 0 (never split) turns all splitting off.
    """
    from transforms import decode
    from transforms.segments import duration_split
    from transforms.storage import local_path

    infos, costs = [], []
    for s in sources:
        path = local_path(s)
        info = None
        try:
            if path is not None and len(sources) <= MAX_PROBED:
                info = decode.probe(s)
                frames = info.num_frames or info.duration_s * (info.fps or 25.0)
                costs.append(frame_cost(frames, info.width, info.height))
            elif path is not None:
                costs.append(float(os.path.getsize(path)))
            else:
                costs.append(1.0)
        except Exception:  # noqa: BLE001 - a broken input becomes an error row quickly: cheap
            costs.append(1.0)
        infos.append(info)
    share = sum(costs) / max(1, workers)
    seg = cfg.analysis.segment_s
    split: list[float | None] = []
    for info, cost in zip(infos, costs):
        if info is None:
            split.append(None)
            continue
        s_len = duration_split(info.duration_s, seg)
        if not s_len and seg > 0 and workers > 1 and cost > SPLIT_SHARE * share \
                and info.duration_s >= workers * MIN_SPLIT_S:
            s_len = info.duration_s / workers
        split.append(s_len)
    first_step = [c * INDEX_PASS_SHARE if s else c for c, s in zip(costs, split)]
    buckets = plan(first_step, workers)
    return [(b, (src, s)) for b, src, s in zip(buckets, sources, split)]


class DealToWorkers(beam.PTransform):
    """(bucket, item) pairs -> items, each bucket processed by one worker."""

    def expand(self, pairs):
        return (pairs
                | "ByWorker" >> beam.GroupByKey()
                | "Unpack" >> beam.FlatMap(lambda kv: kv[1]))


class Deal(beam.PTransform):
    """Work items -> the same items, dealt to ``workers`` buckets by ``cost_of(item)`` (a global
    step: only small descriptors pass through it) when ``workers`` > 1, else a Reshuffle."""

    def __init__(self, workers: int, cost_of):
        super().__init__()
        self.workers, self.cost_of = workers, cost_of

    def expand(self, items):
        if self.workers <= 1:
            return items | "Spread" >> beam.Reshuffle()
        return self.spread(items | "Collect" >> beam.combiners.ToList())

    def spread(self, collected):
        """The one list of every item -> the items, each on the worker that does it."""
        workers, cost_of = self.workers, self.cost_of

        def deal(all_items):
            buckets = plan([cost_of(x) for x in all_items], workers)
            return list(zip(buckets, all_items))

        return collected | "Plan" >> beam.FlatMap(deal) | "Deal" >> DealToWorkers()


def claim(claims: str, item: int, worker: int) -> bool:
    """Whether ``worker`` may do ``item``: it creates the item's claim file first, or made it
    before (a retried bundle re-does its own items; another worker's claim is never taken)."""
    path = os.path.join(claims, str(item))
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        with open(path) as f:
            return f.read() == str(worker)
    with os.fdopen(fd, "w") as f:
        f.write(str(worker))
    return True


class SharedQueue(Deal):
    """Work items -> the same items, each done by one of ``workers`` local worker processes,
    which take them most costly first (by ``cost_of``) from one queue: every worker gets the
    whole list (a global step: only small descriptors pass through it) and claims each next
    item with a file in a directory of this machine (local runner: the workers share its file
    system), so the split follows the actual work, not the estimate. The step that does the
    work must be fused after this one (a ParDo straight after it), so a worker claims its next
    item only when it has finished the last. ``workers`` <= 1: a Reshuffle."""

    def spread(self, collected):
        workers, cost_of = self.workers, self.cost_of
        claims = tempfile.mkdtemp(prefix="vidcurate-queue-")  # on the driver, at construction
        atexit.register(shutil.rmtree, claims, True)

        def share(all_items):
            ordered = sorted(all_items, key=lambda x: -cost_of(x))
            return [(w, ordered) for w in range(workers)]

        def take(kv):
            worker, (ordered,) = kv[0], list(kv[1])
            for i, item in enumerate(ordered):
                if claim(claims, i, worker):
                    yield item

        return (collected
                | "Share" >> beam.FlatMap(share)
                | "ToEachWorker" >> beam.GroupByKey()
                | "Take" >> beam.FlatMap(take))


def local_workers(options) -> int:
    """Worker processes of a local multi-process/thread run (0 when not the local runner)."""
    from apache_beam.options.pipeline_options import DirectOptions, StandardOptions

    runner = options.view_as(StandardOptions).runner or ""
    runner = runner if isinstance(runner, str) else type(runner).__name__
    if runner.split(".")[-1] not in ("FnApiRunner", "DirectRunner", "BundleBasedDirectRunner"):
        return 0
    direct = options.view_as(DirectOptions)
    if direct.direct_running_mode == "in_memory":
        return 0
    return int(direct.direct_num_workers or 0)

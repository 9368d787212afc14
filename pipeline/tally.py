"""Progress counters the workers keep, so that the driver's progress bar costs the same for a
hundred videos or a million: each worker process writes how many videos it has finished in this
generation to ``<generation>/logs/progress/<process>.json`` (a few bytes; at most every second
on a local disk and every 10 s on an object store, and at the end of every bundle), and the
planning step writes ``planned.json``, the number of videos to analyze, when the driver does not
know it (inputs listed in the pipeline). The driver sums those few files: one per worker process,
none per video."""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
import uuid

from transforms import storage

TALLY = os.path.join("logs", "progress")  # in a generation
PLANNED = "planned.json"

_lock = threading.Lock()
_counts: dict[str, list] = {}  # directory -> [done, last flush time]
_process: dict[int, str] = {}  # pid -> this process's file name (a new one after a fork)


def _name() -> str:
    pid = os.getpid()
    if pid not in _process:
        host = re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname())[:64] or "host"
        _process[pid] = f"{host}-{pid}-{uuid.uuid4().hex[:8]}.json"
    return _process[pid]


def _interval(directory: str) -> float:
    return 1.0 if storage.is_local(directory) else 10.0


def bump(directory: str | None, n: int = 1) -> None:
    """Count ``n`` finished videos of this process under ``directory`` (written when due)."""
    if not directory:
        return
    with _lock:
        entry = _counts.setdefault(directory, [0, 0.0])
        entry[0] += n
        due = time.monotonic() - entry[1] >= _interval(directory)
    if due:
        flush(directory)


def flush(directory: str | None) -> None:
    """Write this process's count under ``directory`` now (a lost write only delays the bar)."""
    if not directory:
        return
    with _lock:
        entry = _counts.get(directory)
        if entry is None:
            return
        entry[1] = time.monotonic()
        done = entry[0]
    try:
        storage.put_bytes(os.path.join(directory, _name()), json.dumps({"done": done}).encode())
    except Exception:  # noqa: BLE001 - progress is informational; the records are what count
        pass


def write_planned(n: int, directory: str) -> int:
    storage.put_bytes(os.path.join(directory, PLANNED), json.dumps({"todo": int(n)}).encode())
    return n


def read(directory: str) -> tuple[int, int | None]:
    """(videos finished so far, videos planned or None when not known yet) under ``directory``."""
    done, planned = 0, None
    try:
        names = storage.listdir(directory)
    except Exception:  # noqa: BLE001
        return 0, None
    for name in names:
        if not name.endswith(".json"):
            continue
        try:
            data = json.loads(storage.read_bytes(os.path.join(directory, name)))
        except (OSError, ValueError):
            continue  # not there yet, or being replaced
        if name == PLANNED:
            planned = int(data.get("todo", 0))
        else:
            done += int(data.get("done", 0))
    return done, planned

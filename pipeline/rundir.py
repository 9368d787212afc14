"""The run directory: what vidcurate owns in it, and how a finished run is switched in.

    <output>/
      .vidcurate-run       marker: this directory was created by vidcurate (nothing else is touched)
      CURRENT              pointer, written last: the name of the finished generation
      current -> gen-...   the same as a symlink, for humans and globs (local disks only)
      gen-<stamp>/         one generation: videos/ clips/ errors/ shards/ logs/ summary.json
      _analysis/ _staging/ resume state shared by the generations

A run writes a new generation beside the current one and switches ``CURRENT`` only when the new
one is complete (its ``summary.json`` written), so a failed or killed re-run leaves the previous
finished run readable. Switching is one small write, which also works on object stores (no
rename of a folder). Only then are older generations removed. vidcurate refuses to write into a
non-empty directory it did not create, and removes only names it wrote there.

Ids read back from tables become file names: :func:`check_clip_id`, :func:`check_video_id` and
:func:`check_shard_name` reject anything but the forms vidcurate writes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time

from transforms import storage

log = logging.getLogger(__name__)

MARKER = ".vidcurate-run"
POINTER = "CURRENT"
LINK = "current"
GEN_PREFIX = "gen-"

VIDEO_ID = re.compile(r"[0-9a-f]{16}")
CLIP_ID = re.compile(r"[0-9a-f]{16}_[0-9]{7,}_[0-9]{7,}")
SHARD_NAME = re.compile(r"shard-(?:[a-z0-9x_]{1,64}-)?[0-9]{5}-[0-9]{4}\.tar")  # optional bucket label
GEN_NAME = re.compile(r"gen-[0-9]{8}T[0-9]{6}-[0-9a-f]{6}")


class RunDirError(ValueError):
    """The output or run directory is not one vidcurate may use, or a table in it is malformed."""


def check_video_id(value) -> str:
    if not isinstance(value, str) or not VIDEO_ID.fullmatch(value):
        raise RunDirError(f"malformed video_id {value!r} in the run's tables (expected 16 hex digits); "
                          "the run directory was not written by vidcurate or was altered")
    return value


def check_clip_id(value) -> str:
    if not isinstance(value, str) or not CLIP_ID.fullmatch(value):
        raise RunDirError(f"malformed clip_id {value!r} in the run's tables (expected <video_id>_<start>_<end>); "
                          "the run directory was not written by vidcurate or was altered")
    return value


def check_shard_name(value) -> str:
    if not isinstance(value, str) or not SHARD_NAME.fullmatch(value):
        raise RunDirError(f"malformed shard name {value!r} in the run's tables (expected shard-[BUCKET-]NNNNN-NNNN.tar); "
                          "the run directory was not written by vidcurate or was altered")
    return value


def is_run(path: str) -> bool:
    return storage.isfile(os.path.join(path, MARKER))


def claim(output: str) -> None:
    """Make ``output`` a run directory, or check that it is one. Refuses a non-empty directory
    vidcurate did not create (its files are the user's), and a file. An object store that
    cannot be reached or written says so, with what to check."""
    if storage.is_local(output):
        return _claim(output)
    try:
        return _claim(output)
    except RunDirError:
        raise
    except Exception as exc:  # noqa: BLE001 - credentials, endpoint, bucket: many error types
        raise RunDirError(f"cannot use --output {output}: {type(exc).__name__}: {exc}. Check the bucket exists and "
                          "the credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile, AWS_ENDPOINT_URL for "
                          "an S3-compatible store; Google application default credentials for gs://)") from None


def _claim(output: str) -> None:
    if storage.isfile(output):
        raise RunDirError(f"--output {output} is a file; give a new or empty directory")
    if not is_run(output):
        if storage.listdir(output):
            raise RunDirError(
                f"--output {output} is not empty and was not created by vidcurate (no {MARKER} file); "
                "vidcurate never writes into or deletes other files. Give a new or empty directory, "
                f"e.g. --output {os.path.join(output, 'vidcurate-run')}")
    storage.makedirs(output)
    if not is_run(output):
        _write_small(os.path.join(output, MARKER), json.dumps({"created_by": "vidcurate", "layout": 2,
                                                                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                         time.gmtime())}))


@contextlib.contextmanager
def locked(output: str):
    """Hold the run directory for one vidcurate process at a time (an advisory lock on the
    marker; the kernel releases it when the process dies, kill -9 included). Object stores
    have no locks: there one process per output is the user's rule, not enforced."""
    import fcntl

    if not storage.is_local(output):
        log.debug("vidcurate: %s is on an object store: not locked", output)
        yield
        return
    output = storage.local_path(output)
    with open(os.path.join(output, MARKER), "rb") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunDirError(f"{output} is in use by another vidcurate process; wait for it to finish "
                              "or choose another --output") from None
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def inside(path: str, directory: str) -> bool:
    if not (storage.is_local(path) and storage.is_local(directory)):
        return path.rstrip("/") == directory.rstrip("/") or path.startswith(directory.rstrip("/") + "/")
    path, directory = storage.local_path(path), storage.local_path(directory)
    path, directory = os.path.realpath(path), os.path.realpath(directory)
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


def current(run_dir: str) -> str | None:
    """The directory holding the finished tables of ``run_dir`` (None: no finished run).
    Accepts a generation directory itself and the older layout with tables at the top."""
    run_dir = run_dir.removeprefix("file://")
    pointer = os.path.join(run_dir, POINTER)
    try:
        name = storage.read_bytes(pointer).decode("utf-8", "replace").strip()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        name = None
    if name is not None:
        if not GEN_NAME.fullmatch(name):
            raise RunDirError(f"{pointer} names {name!r}, not a generation vidcurate writes")
        gen = os.path.join(run_dir, name)
        return gen if storage.isfile(os.path.join(gen, "summary.json")) else None
    if storage.isfile(os.path.join(run_dir, "summary.json")):
        return run_dir  # a generation directory, or a run written before generations
    return None


def resolve(run_dir: str) -> str:
    """Like :func:`current` but for reading: an error saying what to do when nothing is finished."""
    gen = current(run_dir)
    if gen is None:
        if not storage.isdir(run_dir):
            raise RunDirError(f"{run_dir} does not exist")
        raise RunDirError(f"{run_dir} holds no finished vidcurate run (no {POINTER} pointer or summary.json); "
                          "run `vidcurate run` on it first, or let an interrupted run finish by re-running it")
    return gen


def new_generation(output: str) -> str:
    """Create a fresh generation directory and return its path. Unfinished generations of
    killed runs (vidcurate's own, never the current one) are removed first."""
    keep = current(output)
    for name in storage.listdir(output):
        path = os.path.join(output, name)
        if GEN_NAME.fullmatch(name) and path != keep:
            storage.rmtree(path)
    name = f"{GEN_PREFIX}{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{os.urandom(3).hex()}"
    path = os.path.join(output, name)
    storage.makedirs(path)
    return path


def switch(output: str, generation: str) -> None:
    """Make ``generation`` (complete: its summary.json exists) the current one, then remove the
    older generations. The pointer is written last and atomically."""
    name = os.path.basename(generation)
    if not storage.isfile(os.path.join(generation, "summary.json")):
        raise RunDirError(f"{generation} is not complete; not switching to it")
    _write_small(os.path.join(output, POINTER), name + "\n")
    if storage.is_local(output):
        _link(storage.local_path(output), name)
    for other in storage.listdir(output):
        if GEN_NAME.fullmatch(other) and other != name:
            storage.rmtree(os.path.join(output, other))


def _link(output: str, name: str) -> None:
    """``current -> gen-...`` for humans and globs (local disks only)."""
    link = os.path.join(output, LINK)
    tmp = os.path.join(output, f".tmp-link-{os.urandom(3).hex()}")
    try:
        os.symlink(name, tmp)
        if os.path.lexists(link) and not os.path.islink(link):
            os.remove(tmp)  # something else sits there: leave it
        else:
            os.replace(tmp, link)
    except OSError:  # no symlinks on this filesystem: the pointer is enough
        if os.path.lexists(tmp):
            os.remove(tmp)


def _write_small(path: str, text: str) -> None:
    storage.put_bytes(path, text.encode("utf-8"))

"""What a run shows while it runs: a progress bar over the workers' counts of finished videos, and
Beam's worker chatter kept in the generation's ``logs/beam.log`` instead of the terminal."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time

from pipeline import tally
from transforms import storage

log = logging.getLogger(__name__)


@contextlib.contextmanager
def worker_output_to(path: str):
    """Send file descriptor 2 (where Beam's worker processes print their chatter) to ``path``
    while the pipeline runs; our own log lines and the progress bar keep the real stderr.
    For a ``path`` on an object store the log is kept in a local temp file and uploaded at the end."""
    url = path
    if not storage.is_local(url):
        path = storage.temp_beside(url, suffix=".log")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    log_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    real = os.fdopen(os.dup(saved), "w", buffering=1)
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler)]
    old_streams = [h.setStream(real) for h in handlers]
    os.dup2(log_fd, 2)
    try:
        yield real
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        for h, stream in zip(handlers, old_streams):
            h.setStream(stream)
        real.close()
        os.close(saved)
        os.close(log_fd)
        if url != path:
            try:
                storage.put_file(path, url)
            except Exception as exc:  # noqa: BLE001 - a lost log must not fail a finished run
                log.warning("vidcurate: could not upload the worker log to %s: %s", url, exc)


class Progress:
    """A progress bar (videos done/total, rate) on a terminal, or a log line every 10 s
    otherwise, from the counts the workers keep (:mod:`pipeline.tally`): a few small files, one
    per worker process, read every second (every 10 s on an object store). ``total``: videos to
    analyze, or None when the inputs are listed in the pipeline (the planning step writes it)."""

    def __init__(self, directory: str, total: int | None):
        self.directory, self.total = directory, total
        self.interval = 1.0 if storage.is_local(directory) else 10.0
        self.stream = sys.stderr
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def count(self) -> tuple[int, int | None]:
        done, planned = tally.read(self.directory)
        return done, self.total if self.total is not None else planned

    def _loop(self):
        from tqdm import tqdm

        bar = tqdm(total=self.total, unit="video", desc="analyzing", file=self.stream, disable=not self.stream.isatty())
        start = last_log = time.time()
        logged = 0
        while not self._stop.wait(self.interval):
            done, total = self.count()
            if total is not None and bar.total != total:
                bar.total = total
                bar.refresh()
            bar.update(done - bar.n)
            if bar.disable and done != logged and time.time() - last_log >= 10:
                rate = done / (time.time() - start) * 60
                log.info("analyzed %d/%s videos (%.1f videos/min)", done, total if total is not None else "?", rate)
                logged, last_log = done, time.time()
        done, _ = self.count()
        bar.update(done - bar.n)
        bar.close()

    @contextlib.contextmanager
    def to(self, stream):
        self.stream = stream
        show = self.total is None or self.total > 0
        if show:
            self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            if show:
                self._thread.join(timeout=5)
